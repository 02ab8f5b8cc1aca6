"""``digits``: multi-scale detection scenes generated offline from scikit-learn's UCI handwritten digits.

Each scene is an RGB image with a textured, noisy background, unlabelled clutter (scratches, blobs, noise patches and
partial "fake strokes" cut from real digits) and ``min_objects..max_objects`` labelled digits. Digit sizes are
sampled log-uniformly between ``min_size`` pixels and ``max_frac * imgsz`` (longer side of the ink), so a detector
sees very small and large objects in the same image; that is what makes multi-scale necks matter here.

Rules that the tests rely on:

* the 1797 source images are split per class (``SOURCE_VAL_FRAC`` to val) before anything is drawn; train scenes
  (digits and fake strokes) use only train sources and val scenes only val sources, so val measures generalisation;
* boxes are the tight box of the drawn ink (alpha >= ``INK_THRESHOLD`` after resize, aspect jitter and rotation),
  not the padded 8x8 cell;
* two objects never overlap with IoU above ``max_iou`` and no object is covered by another over more than
  ``MAX_COVER`` of its own area;
* scene ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split, i])``: same parameters → the same
  dataset, byte for byte in the label files, whatever the number of worker processes.

Besides the YOLO layout the build writes ``objects.csv`` (split, image, class, source index, pixel box) per object.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from yolo_necks.datasets._common import BuiltinDataset, save_labels, xyxy_to_yolo
from yolo_necks.errors import NeckConfigError, NeckError

NAMES = [str(i) for i in range(10)]
SOURCE_VAL_FRAC = 0.25  # share of the 1797 source digits (per class) reserved for val scenes
INK_THRESHOLD = 0.3  # alpha (0..1, relative to the sprite's peak) at which a pixel counts as ink for the box
MAX_COVER = 0.5  # no object may have more than this share of its box covered by another box
PLACE_TRIES = 30
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
SPLITS = {"train": 0, "val": 1}
JPEG_QUALITY = 92

DEFAULTS: dict[str, Any] = {
    "n_train": 800,
    "n_val": 200,
    "imgsz": 320,
    "min_objects": 3,
    "max_objects": 12,
    "min_size": 6,
    "max_frac": 0.5,
    "max_iou": 0.2,
    "clutter": 1.0,
    "seed": 0,
}
HELP = {
    "n_train": "number of training scenes",
    "n_val": "number of validation scenes",
    "imgsz": "scene side in pixels (square)",
    "min_objects": "fewest labelled digits per scene",
    "max_objects": "most labelled digits per scene (fewer if they do not fit)",
    "min_size": "smallest digit, pixels (longer side of the ink)",
    "max_frac": "largest digit as a fraction of imgsz",
    "max_iou": "largest IoU allowed between two labelled digits",
    "clutter": "density of unlabelled distractors (0 = none, 1 = about 12 per 320x320 scene)",
    "seed": "random seed (source split and scenes)",
}


def _checks(p: dict[str, Any]) -> None:
    def bad(msg: str) -> NeckConfigError:
        return NeckConfigError(f"dataset 'digits': {msg}")

    if p["n_train"] < 1 or p["n_val"] < 1:
        raise bad(f"n_train and n_val must be >= 1, got n_train={p['n_train']}, n_val={p['n_val']}")
    if p["imgsz"] < 32:
        raise bad(f"imgsz must be >= 32, got {p['imgsz']}")
    if not 0 <= p["min_objects"] <= p["max_objects"] or p["max_objects"] < 1:
        got = f"min_objects={p['min_objects']}, max_objects={p['max_objects']}"
        raise bad(f"need 0 <= min_objects <= max_objects and max_objects >= 1, got {got}")
    if not 0 < p["max_frac"] <= 1:
        raise bad(f"max_frac must be in (0, 1], got {p['max_frac']}")
    if not 3 <= p["min_size"] <= p["max_frac"] * p["imgsz"]:
        raise bad(f"min_size must be in [3, max_frac*imgsz={p['max_frac'] * p['imgsz']:g}], got {p['min_size']}")
    if not 0 <= p["max_iou"] <= 1:
        raise bad(f"max_iou must be in [0, 1], got {p['max_iou']}")
    if p["clutter"] < 0:
        raise bad(f"clutter must be >= 0, got {p['clutter']}")


# ---------------------------------------------------------------------------------------------------- sources


def load_sources() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 UCI digits as float32 (N, 8, 8) in [0, 1] and their int64 classes.

    Read straight from the CSV that scikit-learn ships (what ``sklearn.datasets.load_digits`` reads) when it is at its
    usual place, which spares the slow ``sklearn`` import in every worker process; else through ``load_digits``.
    """
    spec = importlib.util.find_spec("sklearn")
    csv_gz = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv_gz is not None and csv_gz.is_file():
        d = np.loadtxt(csv_gz, delimiter=",")
        images, target = d[:, :-1].reshape(-1, 8, 8), d[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.images, bunch.target
    if images.shape != (1797, 8, 8):
        raise NeckError(f"dataset 'digits': unexpected scikit-learn digits data of shape {images.shape}")
    return (images / 16.0).astype(np.float32), target.astype(np.int64)


def split_sources(targets: np.ndarray, seed: int, val_frac: float = SOURCE_VAL_FRAC) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint, sorted train/val indices into the source digits, stratified by class."""
    rng = np.random.default_rng([seed, 0x5EED])
    train, val = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        n_val = max(1, round(len(idx) * val_frac))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# ---------------------------------------------------------------------------------------------------- drawing


def _resize(a: np.ndarray, size: tuple[int, int], resample=Image.BICUBIC) -> np.ndarray:
    """Smoothly resize a float32 2-D array to ``size`` = (width, height)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize(size, resample))


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """A textured, colour-tinted, float32 (n, n, 3) background in roughly [0, 1]."""
    k = int(rng.integers(2, 7))
    texture = _resize(rng.standard_normal((k, k), dtype=np.float32), (n, n)) * np.float32(rng.uniform(0.03, 0.18))
    k2 = int(rng.integers(max(4, n // 24), max(6, n // 6)))
    mid = _resize(rng.standard_normal((k2, k2), dtype=np.float32), (n, n), Image.BILINEAR)
    texture += mid * np.float32(rng.uniform(0.0, 0.07))
    ramp = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    gx, gy = (rng.uniform(-0.15, 0.15, 3).astype(np.float32) for _ in range(2))  # per-channel colour gradient
    tint = ramp[None, :, None] * gx + ramp[:, None, None] * gy
    return tint + (texture[..., None] + rng.uniform(0.1, 0.9, 3).astype(np.float32))


def _sprite(rng: np.random.Generator, digit: np.ndarray, size: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Alpha (h, w) of ``digit`` drawn with its ink's longer side ~``size`` px, and the tight ink box in it."""
    ys, xs = np.nonzero(digit > 0.05)
    crop = np.pad(digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], 1)  # zero border: edges fade out
    h, w = crop.shape[0] - 2, crop.shape[1] - 2
    ppc = size / max(h, w)  # output pixels per 8x8 cell
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    out = (max(2, round((w + 2) * ppc * aspect)), max(2, round((h + 2) * ppc / aspect)))
    im = Image.fromarray(crop).resize(out, Image.BICUBIC)
    angle = rng.uniform(-12.0, 12.0)
    if abs(angle) > 0.5:
        im = im.rotate(angle, resample=Image.BICUBIC, expand=True)
    a = np.asarray(im, dtype=np.float32)
    a = np.clip(a / max(float(a.max()), 1e-6), 0.0, 1.0)
    ink = a >= INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return a, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


_NOISE_BANK = np.random.default_rng(0x0015E).standard_normal(1 << 21, dtype=np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise of ``shape``: a random window of a fixed bank, much cheaper than fresh draws."""
    size = math.prod(shape)
    if size > _NOISE_BANK.size // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, _NOISE_BANK.size - size))
    return _NOISE_BANK[start : start + size].reshape(shape)


def _ink_colour(rng: np.random.Generator, bg: np.ndarray) -> np.ndarray:
    """A random RGB colour whose luma differs from the local background mean ``bg`` by at least 0.25."""
    lb = float(bg @ LUMA)
    for _ in range(10):
        c = rng.random(3, dtype=np.float32)
        if abs(float(c @ LUMA) - lb) >= 0.25:
            return c
    return np.full(3, 0.05 if lb > 0.5 else 0.95, dtype=np.float32)


def _paste(img: np.ndarray, alpha: np.ndarray, x: int, y: int, colour: np.ndarray | None, rng) -> None:
    """Alpha-blend ``colour`` (or per-pixel noise if None) through ``alpha`` at top-left ``(x, y)``, clipped."""
    H, W = img.shape[:2]
    h, w = alpha.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    region = img[y0:y1, x0:x1]
    if colour is None:
        colour = rng.random((y1 - y0, x1 - x0, 1 if rng.random() < 0.5 else 3), dtype=np.float32)
    region *= 1.0 - a
    region += a * colour


def _local_mean(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    H, W = img.shape[:2]
    r = img[max(y0, 0) : min(y1, H), max(x0, 0) : min(x1, W)]
    return r.reshape(-1, 3).mean(0) if r.size else img.reshape(-1, 3).mean(0)


def _clutter(rng: np.random.Generator, img: np.ndarray, pool: np.ndarray, min_size: float, max_size: float) -> None:
    """Draw one unlabelled distractor: a scratch, a blob, a noise patch or a partial digit ("fake stroke")."""
    n = img.shape[0]
    kind = rng.choice(4, p=[0.35, 0.2, 0.15, 0.3])
    if kind == 0:  # scratch: a thin smooth polyline
        s = max(4, int(n * rng.uniform(0.05, 0.4)))
        m = Image.new("L", (s, s))
        pts = [tuple(p) for p in rng.uniform(0, s, (int(rng.integers(2, 5)), 2)).tolist()]
        width = int(rng.integers(1, max(2, n // 100) + 1))
        ImageDraw.Draw(m).line(pts, fill=255, width=width, joint="curve")
        alpha = np.asarray(m.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) / 255.0
    elif kind == 1:  # blob: a soft ellipse
        s = max(3, int(n * rng.uniform(0.02, 0.2)))
        m = Image.new("L", (s * 2, s * 2))
        e = rng.uniform(0.3, 1.0, 2) * s
        ImageDraw.Draw(m).ellipse([s - e[0] / 2, s - e[1] / 2, s + e[0] / 2, s + e[1] / 2], fill=255)
        alpha = np.asarray(m.filter(ImageFilter.GaussianBlur(s / 6)), dtype=np.float32) / 255.0
    elif kind == 2:  # noise patch
        h, w = (max(2, int(n * v)) for v in rng.uniform(0.03, 0.2, 2))
        alpha = np.full((h, w), rng.uniform(0.3, 0.7), dtype=np.float32)
        x, y = (int(v) for v in rng.integers(-w // 2, n - w // 2, 2))
        _paste(img, alpha, x, y, None, rng)
        return
    else:  # fake stroke: part of a real digit (30-60% of its ink), cut by a random straight line; never labelled
        size = math.exp(rng.uniform(math.log(min_size), math.log(max_size)))
        alpha, _ = _sprite(rng, pool[int(rng.integers(len(pool)))], size)
        yy, xx = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
        t = rng.uniform(0, 2 * math.pi)
        proj = xx * math.cos(t) + yy * math.sin(t)
        cut = np.quantile(proj[alpha >= INK_THRESHOLD], rng.uniform(0.4, 0.7))
        alpha = alpha * (proj > cut)
    alpha = alpha * np.float32(rng.uniform(0.4, 1.0))
    h, w = alpha.shape
    x, y = (int(v) for v in rng.integers(-w // 3, n - w // 3 * 2 + 1, 2))
    _paste(img, alpha, x, y, _ink_colour(rng, _local_mean(img, x, y, x + w, y + h)), rng)


def _overlap_ok(box: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]], max_iou: float) -> bool:
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for bx0, by0, bx1, by1 in boxes:
        iw, ih = min(x1, bx1) - max(x0, bx0), min(y1, by1) - max(y0, by0)
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        barea = (bx1 - bx0) * (by1 - by0)
        if inter / (area + barea - inter) > max_iou or inter > MAX_COVER * min(area, barea):
            return False
    return True


def render_scene(
    rng: np.random.Generator, p: dict[str, Any], images: np.ndarray, classes: np.ndarray, pool: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, tuple[int, int, int, int]]]]:
    """One scene: uint8 (n, n, 3) RGB and its objects ``(class, source index, (x0, y0, x1, y1))``.

    ``pool`` holds the indices into ``images``/``classes`` this split may use (digits and fake strokes alike).
    """
    n = p["imgsz"]
    min_size, max_size = float(p["min_size"]), float(p["max_frac"] * n)
    img = _background(rng, n)
    for _ in range(int(rng.poisson(p["clutter"] * 12 * (n / 320) ** 2))):
        _clutter(rng, img, images[pool], min_size, max_size)

    count = int(rng.integers(p["min_objects"], p["max_objects"] + 1))
    sizes = np.sort(np.exp(rng.uniform(math.log(min_size), math.log(max_size), count)))[::-1]  # large first: they fit
    objects: list[tuple[int, int, tuple[int, int, int, int]]] = []
    boxes: list[tuple[int, int, int, int]] = []
    for size in sizes:
        src = int(pool[int(rng.integers(len(pool)))])
        alpha, (bx0, by0, bx1, by1) = _sprite(rng, images[src], float(size))
        bw, bh = bx1 - bx0, by1 - by0
        if bw > n or bh > n:
            continue
        for _ in range(PLACE_TRIES):
            x, y = int(rng.integers(0, n - bw + 1)), int(rng.integers(0, n - bh + 1))  # the box's top-left
            box = (x, y, x + bw, y + bh)
            if _overlap_ok(box, boxes, p["max_iou"]):
                break
        else:
            continue
        opacity = np.float32(rng.uniform(0.7, 1.0))
        _paste(img, alpha * opacity, x - bx0, y - by0, _ink_colour(rng, _local_mean(img, *box)), rng)
        boxes.append(box)
        objects.append((int(classes[src]), src, box))

    img += _noise(rng, img.shape) * np.float32(rng.uniform(0.0, 0.05))  # sensor noise
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), objects


# ---------------------------------------------------------------------------------------------------- build

_WORKER: dict[str, Any] = {}


def _init_worker(p: dict[str, Any], out: str, pools: dict[str, np.ndarray]) -> None:
    images, classes = load_sources()
    _WORKER.update(p=p, out=Path(out), images=images, classes=classes, pools=pools)


def _make(job: tuple[str, int]) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    """Render and write scene ``i`` of ``split``; return its objects."""
    split, i = job
    w = _WORKER
    p, out = w["p"], w["out"]
    rng = np.random.default_rng([p["seed"], SPLITS[split], i])
    img, objects = render_scene(rng, p, w["images"], w["classes"], w["pools"][split])
    stem = f"{i:06d}"
    Image.fromarray(img).save(out / "images" / split / f"{stem}.jpg", quality=JPEG_QUALITY, subsampling=0)
    n = p["imgsz"]
    save_labels(out / "labels" / split / f"{stem}.txt", [(c, *xyxy_to_yolo(b, n, n)) for c, _, b in objects])
    return objects


def build(out: Path, p: dict[str, Any], root: Path | None = None) -> list[str]:
    from ultralytics.utils import TQDM

    images, classes = load_sources()
    train_idx, val_idx = split_sources(classes, p["seed"])
    pools = {"train": train_idx, "val": val_idx}
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
    jobs = [(s, i) for s in SPLITS for i in range(p[f"n_{s}"])]
    desc = f"digits: {p['n_train']} train + {p['n_val']} val scenes"
    # Worker processes only where fork is safe and cheap (Linux): the workers run numpy/Pillow code only, and spawn
    # would re-import the caller's main module, which breaks scripts without a ``__main__`` guard. Scene i is seeded
    # on its own, so the output does not depend on the number of workers.
    workers = min(len(jobs) // 64, os.cpu_count() or 1, 8) if sys.platform.startswith("linux") else 1
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp.get_context("fork"), _init_worker, (p, str(out), pools)) as ex:
            results = list(TQDM(ex.map(_make, jobs, chunksize=16), total=len(jobs), desc=desc))
    else:
        _init_worker(p, str(out), pools)
        results = [_make(j) for j in TQDM(jobs, desc=desc)]
    _WORKER.clear()

    with open(out / "objects.csv", "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["split", "image", "cls", "source", "x0", "y0", "x1", "y1"])
        for (split, i), objects in zip(jobs, results, strict=True):
            for c, src, b in objects:
                wr.writerow([split, f"{i:06d}.jpg", c, src, *b])
    return list(NAMES)


DATASET = BuiltinDataset(
    name="digits",
    description="multi-scale scenes of UCI handwritten digits (scikit-learn), 10 classes, generated offline",
    defaults=DEFAULTS,
    build=build,
    checks=_checks,
    help=HELP,
)
