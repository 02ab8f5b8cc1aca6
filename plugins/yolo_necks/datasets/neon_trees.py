"""``neon-trees``: real aerial RGB tiles of tree crowns (NEON benchmark), one class ``tree``.

The images and box annotations are the data files shipped inside the ``deepforest`` wheel on PyPI. Only the wheel's
data folder is read, as a zip: the package itself is neither installed nor imported. The wheel is fetched once with
``python -m pip download deepforest==VERSION --no-deps --only-binary=:all:`` into ``<root>/_downloads/``, or taken
from ``wheel=PATH`` (or env ``YOLO_NECKS_DEEPFOREST_WHEEL``) for offline use.

Annotations: every ``*.csv`` with columns ``image_path,xmin,ymin,xmax,ymax,label`` (and no ``score`` column, which
marks predictions) and every Pascal VOC ``*.xml`` in a folder named ``data``. Boxes whose label is in ``labels``
(comma-separated, case-insensitive, ``*`` for all) become class 0. The same scene may be shipped several times
(``X.tif`` and ``X.png``, a CSV and an XML): per image stem only the annotation file with the most boxes is used, so
no scene is counted twice.

Tiling: each image is cut into ``tile`` x ``tile`` tiles with ``overlap`` (fraction of ``tile``); the last tile of a
row/column is moved back to end at the region's edge, and a region narrower than ``tile`` gives narrower tiles. A box
is clipped to each tile it touches and kept only if at least ``min_visible`` of its area (and 2 px each way) is inside.

Split rule, by image region so that no pixel is in both splits:

* an image whose longer side L is at least ``2 * tile``: the last ``v = clamp(round(val_frac * L), tile, L - tile)``
  pixels along that side (bottom band, or right band for wide images) are val, the rest train; each band is tiled on
  its own, so no tile straddles the boundary (a crown that crosses it is clipped into both bands like at any tile
  edge);
* a smaller image goes whole to one split: val when ``rng([seed, crc32(stem)]).random() < val_frac``; should that
  leave a split empty, the small image closest to the threshold moves over.

``tiles.csv`` records split, tile file, source image, tile rectangle in source pixels and box count per tile.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from yolo_necks.datasets._common import BuiltinDataset, save_labels, xyxy_to_yolo
from yolo_necks.errors import NeckConfigError, NeckError

NAMES = ["tree"]
DEFAULT_VERSION = "2.1.0"  # verified: its wheel ships NEON tiles (OSBS, SOAP, YELL) with CSV and VOC annotations
ENV_WHEEL = "YOLO_NECKS_DEEPFOREST_WHEEL"
IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")  # preference order when a stem has several images
CSV_COLUMNS = {"image_path", "xmin", "ymin", "xmax", "ymax", "label"}
MIN_SIDE = 2.0  # px: clipped boxes thinner than this are dropped
_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$")

DEFAULTS: dict[str, Any] = {
    "version": DEFAULT_VERSION,
    "wheel": None,
    "tile": 400,
    "overlap": 0.2,
    "val_frac": 0.2,
    "min_visible": 0.4,
    "labels": "tree,alive,dead",
    "seed": 0,
}
HELP = {
    "version": "deepforest wheel version to download from PyPI",
    "wheel": f"local deepforest wheel to read instead of downloading (also env {ENV_WHEEL})",
    "tile": "tile side in pixels",
    "overlap": "overlap between neighbouring tiles, fraction of tile",
    "val_frac": "share of each large image (a band at its end) or chance of a small image going to val",
    "min_visible": "drop a clipped box when less than this share of its area is inside the tile",
    "labels": "annotation labels kept as 'tree' (comma-separated, case-insensitive, * for all)",
    "seed": "seed for assigning small whole images to a split",
}


def _checks(p: dict[str, Any]) -> None:
    def bad(msg: str) -> NeckConfigError:
        return NeckConfigError(f"dataset 'neon-trees': {msg}")

    if not _VERSION_RE.match(p["version"]):
        raise bad(f"version must be a release number like {DEFAULT_VERSION!r}, got {p['version']!r}")
    if p["tile"] < 32:
        raise bad(f"tile must be >= 32, got {p['tile']}")
    if not 0 <= p["overlap"] < 0.9:
        raise bad(f"overlap must be in [0, 0.9), got {p['overlap']}")
    if not 0 < p["val_frac"] < 1:
        raise bad(f"val_frac must be in (0, 1), got {p['val_frac']}")
    if not 0 < p["min_visible"] <= 1:
        raise bad(f"min_visible must be in (0, 1], got {p['min_visible']}")
    if not p["labels"].strip():
        raise bad("labels must name at least one label (or '*')")


# ---------------------------------------------------------------------------------------------------- the wheel


def _local_wheel(p: dict[str, Any]) -> Path | None:
    w = p["wheel"] or os.environ.get(ENV_WHEEL) or None
    if w is None:
        return None
    path = Path(w).expanduser()
    if not path.is_file():
        raise NeckConfigError(f"dataset 'neon-trees': wheel not found: '{w}'")
    return path.resolve()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _identity(p: dict[str, Any]) -> dict[str, Any]:
    wheel = _local_wheel(p)
    return {"source": f"sha256:{_sha256(wheel)}" if wheel else f"pypi:deepforest=={p['version']}"}


def _offline() -> bool:
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def fetch_wheel(version: str, root: Path) -> Path:
    """The deepforest ``version`` wheel under ``root/_downloads``, downloaded with pip on first use."""
    dest = root / "_downloads" / f"deepforest-{version}"
    found = sorted(dest.glob(f"deepforest-{version}-*.whl"))
    if found:
        return found[0]
    hint = f"pass wheel=PATH to a local deepforest wheel (or set {ENV_WHEEL})"
    if _offline():
        raise NeckError(f"dataset 'neon-trees': YOLO_OFFLINE is set and deepforest=={version} is not cached; {hint}")
    from ultralytics.utils import LOGGER

    LOGGER.info(f"yolo-necks: downloading the deepforest=={version} wheel (data files only are used) with pip")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
    try:
        cmd = [sys.executable, "-m", "pip", "download", f"deepforest=={version}", "--no-deps", "--only-binary=:all:"]
        cmd += ["--ignore-requires-python", "--disable-pip-version-check", "--quiet", "-d", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(tmp.glob("deepforest-*.whl"))
        if r.returncode or not wheels:
            why = (r.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise NeckError(f"dataset 'neon-trees': pip could not download deepforest=={version} ({why}); {hint}")
        os.replace(wheels[0], dest / wheels[0].name)
        return dest / wheels[0].name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Annotated:
    """One scene: the zip member of its image, the annotation file used and its boxes (N, 4) xyxy pixels."""

    stem: str
    image: str
    source: str
    boxes: np.ndarray


def _label_filter(labels: str):
    keep = {s.strip().lower() for s in labels.split(",") if s.strip()}
    return (lambda _: True) if "*" in keep else (lambda s: str(s).strip().lower() in keep)


def _parse_csv(data: bytes) -> dict[str, list[tuple[str, list[float]]]] | None:
    rows = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    fields = {f.strip().lower() for f in rows.fieldnames or ()}
    if not CSV_COLUMNS <= fields or fields & {"score", "scores"}:
        return None  # not ground truth: another table (classes.csv) or model predictions (a score column)
    out: dict[str, list[tuple[str, list[float]]]] = {}
    for row in rows:
        r = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            box = [float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            continue  # a blank or malformed row
        out.setdefault(PurePosixPath(r["image_path"].replace("\\", "/")).name, []).append((r["label"], box))
    return out


def _parse_voc(data: bytes) -> dict[str, list[tuple[str, list[float]]]] | None:
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    if root.tag != "annotation" or not root.findtext("filename"):
        return None
    objs = []
    for o in root.iter("object"):
        bb = o.find("bndbox")
        if bb is not None:
            box = [float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax")]
            objs.append((o.findtext("name") or "", box))
    return {PurePosixPath(root.findtext("filename").strip()).name: objs}


def read_annotations(zf: zipfile.ZipFile, labels: str = DEFAULTS["labels"]) -> list[Annotated]:
    """All annotated scenes in the ``data`` folders of a deepforest-like wheel, one per image stem."""
    keep = _label_filter(labels)
    members = [n for n in zf.namelist() if not n.endswith("/") and PurePosixPath(n).parent.name == "data"]
    candidates: dict[tuple[str, str], list[tuple[int, str, str, np.ndarray]]] = {}  # (folder, stem) -> options
    for m in sorted(members):
        suffix = PurePosixPath(m).suffix.lower()
        parse = {".csv": _parse_csv, ".xml": _parse_voc}.get(suffix)
        if parse is None:
            continue
        parsed = parse(zf.read(m))
        for image_name, objs in (parsed or {}).items():
            boxes = np.array([b for lab, b in objs if keep(lab)], dtype=np.float64).reshape(-1, 4)
            boxes = boxes[np.isfinite(boxes).all(1)]
            folder = str(PurePosixPath(m).parent)
            candidates.setdefault((folder, PurePosixPath(image_name).stem), []).append(
                (-len(boxes), m, image_name, boxes)
            )
    images = {str(PurePosixPath(n)): n for n in members if PurePosixPath(n).suffix.lower() in IMAGE_EXTS}
    scenes = []
    for (folder, stem), options in sorted(candidates.items()):
        _, source, image_name, boxes = min(options, key=lambda o: (o[0], o[1]))  # most boxes, then file name
        if len(boxes) == 0:
            continue
        same_stem = [f"{folder}/{stem}{e}" for ext in IMAGE_EXTS for e in (ext, ext.upper())]
        image = images.get(f"{folder}/{image_name}") or next((images[k] for k in same_stem if k in images), None)
        if image is None:
            continue
        scenes.append(Annotated(stem, image, source, boxes))
    return scenes


def load_image(data: bytes, name: str) -> Image.Image:
    """An RGB image from file bytes: Pillow, or ``tifffile`` for TIFFs Pillow cannot read (if it is installed)."""
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")
    except Exception as e:  # Pillow could not decode it
        if name.lower().endswith((".tif", ".tiff")):
            try:
                import tifffile
            except ImportError:
                raise NeckError(
                    f"dataset 'neon-trees': Pillow cannot read '{name}' ({e}) and tifffile is not installed"
                ) from None
            a = np.asarray(tifffile.imread(io.BytesIO(data)))
            if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
                a = np.moveaxis(a, 0, -1)
            if a.dtype != np.uint8:
                a = (255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)).astype(np.uint8)
            return Image.fromarray(a[..., :3] if a.ndim == 3 else a).convert("RGB")
        raise NeckError(f"dataset 'neon-trees': cannot read image '{name}': {e}") from None


# ---------------------------------------------------------------------------------------------------- tiling


def tile_starts(a: int, b: int, tile: int, stride: int) -> list[int]:
    """Starts of tiles covering ``[a, b)`` with tiles inside it; the last one ends at ``b``."""
    if b - a <= tile:
        return [a]
    return sorted({*range(a, b - tile, stride), b - tile})


def split_regions(w: int, h: int, tile: int, val_frac: float) -> dict[str, tuple[int, int, int, int]] | None:
    """Train and val rectangles ``(x0, y0, x1, y1)`` of a ``w`` x ``h`` image, or None if it is too small to band."""
    vertical = h >= w  # band along the longer side
    n = h if vertical else w
    if n < 2 * tile:
        return None
    v = min(max(tile, round(val_frac * n)), n - tile)
    if vertical:
        return {"train": (0, 0, w, h - v), "val": (0, h - v, w, h)}
    return {"train": (0, 0, w - v, h), "val": (w - v, 0, w, h)}


def tile_boxes(boxes: np.ndarray, rect: tuple[int, int, int, int], min_visible: float) -> np.ndarray:
    """``boxes`` clipped to ``rect`` in the tile's pixel frame, keeping those with enough visible area."""
    x0, y0, x1, y1 = rect
    c = np.clip(boxes, [x0, y0, x0, y0], [x1, y1, x1, y1])
    cw, ch = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ok = (cw >= MIN_SIDE) & (ch >= MIN_SIDE) & (cw * ch >= min_visible * area - 1e-9)
    return c[ok] - np.array([x0, y0, x0, y0], dtype=c.dtype)


def _safe(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)


def build(out: Path, p: dict[str, Any], root: Path) -> list[str]:
    from ultralytics.utils import LOGGER, TQDM

    wheel = _local_wheel(p) or fetch_wheel(p["version"], root)
    tile, stride = p["tile"], max(1, round(p["tile"] * (1 - p["overlap"])))
    with zipfile.ZipFile(wheel) as zf:
        scenes = read_annotations(zf, p["labels"])
        if not scenes:
            raise NeckError(f"dataset 'neon-trees': no annotated images found in the data folder of '{wheel.name}'")
        loaded = [(s, load_image(zf.read(s.image), s.image)) for s in TQDM(scenes, desc="neon-trees: reading images")]

    # plan: (scene, image, split, region) for every region to tile
    plan: list[tuple[Annotated, Image.Image, str, tuple[int, int, int, int]]] = []
    small: list[tuple[float, Annotated, Image.Image]] = []
    for s, im in loaded:
        w, h = im.size
        s.boxes = np.clip(s.boxes, 0, [w, h, w, h])
        s.boxes = s.boxes[(s.boxes[:, 2] - s.boxes[:, 0] > 0) & (s.boxes[:, 3] - s.boxes[:, 1] > 0)]
        regions = split_regions(w, h, tile, p["val_frac"])
        if regions is None:
            u = float(np.random.default_rng([p["seed"], zlib.crc32(s.stem.encode())]).random())
            small.append((u, s, im))
        else:
            plan += [(s, im, split, rect) for split, rect in regions.items()]
    small.sort(key=lambda t: t[0])
    assign = {id(s): ("val" if u < p["val_frac"] else "train") for u, s, _ in small}
    banded = {split for _, _, split, _ in plan}
    for split, other in (("val", "train"), ("train", "val")):
        if split in banded or split in assign.values():
            continue
        donors = [s for _, s, _ in small if assign[id(s)] == other]  # sorted by u
        if len(donors) < (1 if other in banded else 2):
            raise NeckError("dataset 'neon-trees': need at least two images, or one large one, to split train/val")
        assign[id(donors[0] if split == "val" else donors[-1])] = split  # the one nearest the val_frac threshold
    plan += [(s, im, assign[id(s)], (0, 0, *im.size)) for _, s, im in small]

    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
    records = []
    counts = {"train": [0, 0], "val": [0, 0]}
    for s, im, split, (rx0, ry0, rx1, ry1) in TQDM(plan, desc="neon-trees: tiling"):
        for y in tile_starts(ry0, ry1, tile, stride):
            for x in tile_starts(rx0, rx1, tile, stride):
                rect = (x, y, min(x + tile, rx1), min(y + tile, ry1))
                tw, th = rect[2] - rect[0], rect[3] - rect[1]
                boxes = tile_boxes(s.boxes, rect, p["min_visible"])
                name = f"{_safe(s.stem)}_x{x}_y{y}"
                im.crop(rect).save(out / "images" / split / f"{name}.png")
                save_labels(out / "labels" / split / f"{name}.txt", [(0, *xyxy_to_yolo(b, tw, th)) for b in boxes])
                records.append([split, f"{name}.png", s.stem, *rect, len(boxes)])
                counts[split][0] += 1
                counts[split][1] += len(boxes)
    with open(out / "tiles.csv", "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["split", "image", "source", "x0", "y0", "x1", "y1", "boxes"])
        wr.writerows(records)
    LOGGER.info(
        f"neon-trees: {len(scenes)} source images -> train {counts['train'][0]} tiles / {counts['train'][1]} boxes, "
        f"val {counts['val'][0]} tiles / {counts['val'][1]} boxes"
    )
    return list(NAMES)


DATASET = BuiltinDataset(
    name="neon-trees",
    description="real aerial RGB tiles of tree crowns (NEON, from the deepforest wheel's data files), 1 class",
    defaults=DEFAULTS,
    build=build,
    identity=_identity,
    checks=_checks,
    help=HELP,
    unhashed=("wheel",),
)
