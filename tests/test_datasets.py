"""Built-in datasets: digits scenes, neon-trees tiles from a (fake) deepforest wheel, caching, resolve_data, CLI."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from yolo_necks.datasets import BUILTIN, _common, dataset_params, resolve_data
from yolo_necks.datasets import digits as D
from yolo_necks.datasets import neon_trees as NT
from yolo_necks.errors import NeckConfigError

# ---------------------------------------------------------------------------------------------------- helpers


def read_labels(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    assert all(len(r) == 5 for r in rows), path
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def iou(a, b) -> float:
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def label_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "labels").rglob("*.txt"))}


# ---------------------------------------------------------------------------------------------------- digits

DIGITS = dict(n_train=40, n_val=16, imgsz=320, seed=0)


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("digits")


@pytest.fixture(scope="module")
def digits_yaml(digits_root) -> Path:
    return Path(resolve_data("digits", root=digits_root, **DIGITS))


@pytest.fixture(scope="module")
def digits_objects(digits_yaml) -> list[dict]:
    return read_csv(digits_yaml.parent / "objects.csv")


def test_digits_layout_and_yaml(digits_yaml):
    assert digits_yaml.is_absolute() and digits_yaml.name == "data.yaml"
    data = yaml.safe_load(digits_yaml.read_text())
    assert data["path"] == str(digits_yaml.parent)
    assert (data["train"], data["val"], data["nc"]) == ("images/train", "images/val", 10)
    assert [data["names"][i] for i in range(10)] == [str(i) for i in range(10)]  # strings, not ints
    for split in ("train", "val"):
        images = sorted((digits_yaml.parent / "images" / split).iterdir())
        labels = sorted((digits_yaml.parent / "labels" / split).iterdir())
        assert len(images) == len(labels) == DIGITS[f"n_{split}"]
        assert [p.stem for p in images] == [p.stem for p in labels]
        with Image.open(images[0]) as im:
            assert im.size == (DIGITS["imgsz"],) * 2 and im.mode == "RGB"


def test_digits_labels_valid_and_match_objects(digits_yaml, digits_objects):
    n = DIGITS["imgsz"]
    by_image = {}
    for o in digits_objects:
        by_image.setdefault((o["split"], Path(o["image"]).stem), []).append(o)
    total = 0
    for split in ("train", "val"):
        for p in sorted((digits_yaml.parent / "labels" / split).glob("*.txt")):
            lab = read_labels(p)
            total += len(lab)
            assert 1 <= len(lab) <= D.DEFAULTS["max_objects"]
            cls, cx, cy, w, h = lab.T
            assert np.all(cls == cls.astype(int)) and cls.min() >= 0 and cls.max() <= 9
            assert np.all(w > 0) and np.all(h > 0)
            assert np.all(cx - w / 2 >= -1e-6) and np.all(cx + w / 2 <= 1 + 1e-6)
            assert np.all(cy - h / 2 >= -1e-6) and np.all(cy + h / 2 <= 1 + 1e-6)
            objs = by_image[(split, p.stem)]
            xyxy = np.array([[float(o[k]) for k in ("x0", "y0", "x1", "y1")] for o in objs]) / n
            got = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
            np.testing.assert_allclose(got, xyxy, atol=2e-6)
            assert [int(o["cls"]) for o in objs] == cls.astype(int).tolist()
    assert total == len(digits_objects) and total / (DIGITS["n_train"] + DIGITS["n_val"]) >= 5
    assert len({int(o["cls"]) for o in digits_objects}) == 10


def test_digits_train_val_sources_disjoint(digits_objects):
    train = {int(o["source"]) for o in digits_objects if o["split"] == "train"}
    val = {int(o["source"]) for o in digits_objects if o["split"] == "val"}
    assert train and val and not train & val
    images, classes = D.load_sources()
    assert images.shape == (1797, 8, 8) and 0 <= images.min() and images.max() <= 1
    tr, va = D.split_sources(classes, seed=0)
    assert not set(tr) & set(va) and len(tr) + len(va) == 1797
    assert train <= set(tr) and val <= set(va)
    assert set(classes[va]) == set(range(10))  # stratified: every class in val
    for o in digits_objects:  # the label is the class of the source digit
        assert classes[int(o["source"])] == int(o["cls"])
    tr1, _ = D.split_sources(classes, seed=1)
    assert not np.array_equal(tr, tr1)


def test_digits_scale_distribution_spans_small_and_large(digits_objects):
    n = DIGITS["imgsz"]
    size = np.array([max(int(o["x1"]) - int(o["x0"]), int(o["y1"]) - int(o["y0"])) for o in digits_objects])
    assert len(size) >= 150
    assert size.min() <= 10  # very small digits exist (min_size=6)
    assert size.max() >= 0.35 * n  # and large ones (up to max_frac=0.5 of the image)
    assert (size < 32).mean() >= 0.25  # COCO "small" is a big share...
    assert (size > 96).mean() >= 0.05  # ...and "large" is present too
    assert 0.25 <= (size >= 32).mean() <= 0.8  # not all at one end


def test_digits_overlap_capped(digits_objects):
    per_image = {}
    for o in digits_objects:
        per_image.setdefault((o["split"], o["image"]), []).append([int(o[k]) for k in ("x0", "y0", "x1", "y1")])
    worst = max(iou(a, b) for boxes in per_image.values() for i, a in enumerate(boxes) for b in boxes[:i])
    assert worst <= D.DEFAULTS["max_iou"] + 1e-9


def test_digits_boxes_are_tight_to_the_ink():
    images, classes = D.load_sources()
    rng = np.random.default_rng(0)
    for size in (6, 20, 120):
        for k in (0, 1, 8):
            alpha, (x0, y0, x1, y1) = D._sprite(rng, images[k], size)
            ink = alpha >= D.INK_THRESHOLD
            assert ink[y0:y1, x0:x1].sum() == ink.sum()  # every ink pixel is in the box
            assert ink[y0].any() and ink[y1 - 1].any() and ink[:, x0].any() and ink[:, x1 - 1].any()  # edges touch ink
            assert 0.7 * size <= max(x1 - x0, y1 - y0) <= 1.5 * size + 2
    # a "1" is much narrower than its 8x8 cell: its boxes are narrow too
    ones = [D._sprite(rng, images[i], 80.0)[1] for i in np.flatnonzero(classes == 1)[:30]]
    assert np.mean([(b[2] - b[0]) / (b[3] - b[1]) for b in ones]) < 0.75


def test_digits_deterministic_and_seed_dependent(tmp_path, monkeypatch):
    params = dict(n_train=6, n_val=3, imgsz=96, seed=3)
    a = Path(resolve_data("digits", root=tmp_path / "a", **params)).parent
    b = Path(resolve_data("digits", root=tmp_path / "b", **params)).parent
    assert a.name == b.name  # same key
    assert label_bytes(a) == label_bytes(b) and len(label_bytes(a)) == 9
    assert (a / "objects.csv").read_bytes() == (b / "objects.csv").read_bytes()
    c = Path(resolve_data("digits", root=tmp_path / "a", **{**params, "seed": 4})).parent
    assert c != a and label_bytes(c) != label_bytes(a)


def test_digits_parallel_build_equals_serial(tmp_path, monkeypatch):
    params = dict(n_train=130, n_val=10, imgsz=48, min_size=4, clutter=2.0)
    par = Path(resolve_data("digits", root=tmp_path / "par", **params)).parent  # 140 scenes: worker processes
    monkeypatch.setattr(D.os, "cpu_count", lambda: 1)
    ser = Path(resolve_data("digits", root=tmp_path / "ser", **params)).parent
    assert label_bytes(par) == label_bytes(ser) and len(label_bytes(par)) == 140


def test_ultralytics_reads_digits(digits_yaml, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(digits_yaml))
    assert data["nc"] == 10 and data["names"][3] == "3"
    assert Path(data["train"]) == digits_yaml.parent / "images" / "train"
    ds = YOLODataset(img_path=data["val"], imgsz=160, augment=False, data=data, task="detect")
    assert len(ds) == DIGITS["n_val"]
    n_val_objects = sum(o["split"] == "val" for o in read_csv(digits_yaml.parent / "objects.csv"))
    assert sum(len(lb["cls"]) for lb in ds.labels) == n_val_objects


# ---------------------------------------------------------------------------------------------------- caching


def test_cache_reuse_without_rebuild(tmp_path, monkeypatch):
    params = dict(n_train=4, n_val=2, imgsz=64)
    first = resolve_data("digits", root=tmp_path, **params)

    def boom(*_a, **_k):
        raise AssertionError("rebuilt a cached dataset")

    monkeypatch.setitem(BUILTIN, "digits", dataclasses.replace(BUILTIN["digits"], build=boom))
    t0 = time.perf_counter()
    assert resolve_data("digits", root=tmp_path, **params) == first
    assert resolve_data("digits", root=tmp_path, n_val=2, imgsz=64, n_train=4.0) == first  # same values, same key
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(AssertionError, match="rebuilt"):  # different params: a different directory, built anew
        resolve_data("digits", root=tmp_path, **{**params, "n_val": 3})


def test_cache_dir_differs_by_params_and_default_root(tmp_path, monkeypatch):
    a = resolve_data("digits", root=tmp_path, n_train=3, n_val=2, imgsz=64)
    b = resolve_data("digits", root=tmp_path, n_train=3, n_val=2, imgsz=64, clutter=0.0)
    assert Path(a).parent != Path(b).parent and Path(a).parent.name.startswith("digits-")
    monkeypatch.setenv("YOLO_NECKS_DATA_DIR", str(tmp_path / "env"))
    c = resolve_data("digits", n_train=3, n_val=2, imgsz=64)
    assert Path(c).parent.parent == (tmp_path / "env").resolve() and Path(c).parent.name == Path(a).parent.name


def test_cache_moved_root_repoints_yaml(tmp_path):
    a = Path(resolve_data("digits", root=tmp_path / "one", n_train=2, n_val=2, imgsz=64))
    shutil.move(str(tmp_path / "one"), str(tmp_path / "two"))
    b = Path(resolve_data("digits", root=tmp_path / "two", n_train=2, n_val=2, imgsz=64))
    assert yaml.safe_load(b.read_text())["path"] == str(b.parent) and b.parent.name == a.parent.name


def test_half_written_builds_are_never_reused(tmp_path, monkeypatch):
    ds = BUILTIN["digits"]
    params = dict(n_train=3, n_val=2, imgsz=64)
    final, _ = _common.cache_dir(ds, _common.check_params(ds, params), tmp_path)
    # a leftover temp dir of a crashed build (with a data.yaml even) and a final-named dir without its params.json
    leftover = tmp_path / f"{_common.TMP_PREFIX}{final.name}-crashed"
    (leftover / "labels").mkdir(parents=True)
    (leftover / "data.yaml").write_text("path: nowhere\ntrain: x\nval: x\nnames: {0: a}\n")
    got = Path(resolve_data("digits", root=tmp_path, **params))
    assert got == final / "data.yaml" and (final / "params.json").is_file()
    assert len(list((final / "labels" / "train").glob("*.txt"))) == 3
    assert leftover.exists()  # not touched (it may belong to a running build), not used

    shutil.rmtree(final)
    (final / "images").mkdir(parents=True)  # incomplete: no data.yaml / params.json
    assert Path(resolve_data("digits", root=tmp_path, **params)) == final / "data.yaml"
    assert (final / "params.json").is_file()

    # a build that fails half way leaves neither a final dir nor its temp dir
    def half(out, p, root):
        (out / "images" / "train").mkdir(parents=True)
        raise RuntimeError("disk full")

    monkeypatch.setitem(BUILTIN, "digits", dataclasses.replace(ds, build=half))
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_data("digits", root=tmp_path, n_train=5, n_val=2, imgsz=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([final.name, leftover.name])


# ---------------------------------------------------------------------------------------------------- params, resolve


def test_bad_params_raise_one_line_config_errors(tmp_path):
    with pytest.raises(NeckConfigError) as e:
        resolve_data("digits", root=tmp_path, n_trian=5)
    msg = str(e.value)
    assert "\n" not in msg and "'digits'" in msg and "n_trian" in msg and "n_train" in msg and "clutter" in msg
    with pytest.raises(NeckConfigError, match="n_train.*must be int"):
        resolve_data("digits", root=tmp_path, n_train="many")
    with pytest.raises(NeckConfigError, match="imgsz"):
        resolve_data("digits", root=tmp_path, imgsz=8)
    with pytest.raises(NeckConfigError, match="min_objects"):
        resolve_data("digits", root=tmp_path, min_objects=5, max_objects=2)
    with pytest.raises(NeckConfigError, match="neon-trees.*tile_size.*overlap"):
        resolve_data("neon-trees", root=tmp_path, tile_size=300)
    with pytest.raises(NeckConfigError, match="wheel not found"):
        resolve_data("neon-trees", root=tmp_path, wheel=str(tmp_path / "nope.whl"))
    with pytest.raises(NeckConfigError, match="unknown built-in dataset 'mnist'"):
        dataset_params("mnist")
    assert not any(tmp_path.iterdir())  # nothing built or left behind


def test_dataset_params():
    d = dataset_params("digits")
    assert {"n_train": 800, "n_val": 200, "imgsz": 320, "seed": 0}.items() <= d.items()
    assert {"min_objects", "max_objects", "clutter"} <= set(d)
    d["n_train"] = 1
    assert dataset_params("digits")["n_train"] == 800  # a copy
    assert {"tile", "overlap", "version", "wheel", "val_frac"} <= set(dataset_params("neon-trees"))
    assert set(BUILTIN) == {"digits", "neon-trees"}


def test_resolve_data_passthrough(tmp_path):
    assert resolve_data("coco8.yaml") == "coco8.yaml"  # bare names go to ultralytics untouched, not checked
    assert resolve_data("VOC.yaml") == "VOC.yaml"
    assert resolve_data("https://example.com/data.zip") == "https://example.com/data.zip"
    mine = tmp_path / "mine.yaml"
    mine.write_text("train: a\nval: b\nnames: {0: x}\n")
    assert resolve_data(str(mine)) == str(mine) and resolve_data(mine) == str(mine)
    with pytest.raises(NeckConfigError, match="not found"):
        resolve_data(str(tmp_path / "missing.yaml"))
    with pytest.raises(NeckConfigError, match="only apply to built-in"):
        resolve_data("coco8.yaml", n_train=3)


def test_callable_builtin(tmp_path):
    a = BUILTIN["digits"](root=tmp_path, n_train=2, n_val=2, imgsz=64)
    assert a == resolve_data("digits", root=tmp_path, n_train=2, n_val=2, imgsz=64) and Path(a).is_file()


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_build_list_help(tmp_path, capsys):
    from yolo_necks.cli import main

    rc = main(["data", "build", "digits", "n_train=8", "n_val=4", "imgsz=64", f"root={tmp_path}"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and Path(out[-1]).is_file() and Path(out[-1]).parent.parent == tmp_path.resolve()
    assert len(list((Path(out[-1]).parent / "images" / "train").iterdir())) == 8

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "neon-trees" in out

    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert "n_train=800" in out and "clutter=1.0" in out and "tile=400" in out and "wheel=None" in out

    assert main(["data", "build", "digits", "bogus=1", f"root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bogus" in err and "n_train" in err
    assert main(["data", "build", "digits", "n_train"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["data", "frobnicate"]) == 2
    assert main(["data", "build", "nope"]) == 2


def test_cli_value_parsing():
    from yolo_necks.datasets.cli import parse_kv, parse_value

    assert parse_value("12") == 12 and parse_value("0.5") == 0.5 and parse_value("True") is True
    assert parse_value("abc") == "abc" and parse_value("/tmp/x.whl") == "/tmp/x.whl"
    assert parse_value("__import__('os').getcwd()") == "__import__('os').getcwd()"  # never evaluated
    assert parse_value("2.1", default="2.1.0") == "2.1"  # string parameters are taken as written
    assert parse_value("None", default=None) is None
    params, root = parse_kv(["version=2.0", "tile=256", "root=/x"], dataset_params("neon-trees"))
    assert params == {"version": "2.0", "tile": 256} and root == "/x"
    with pytest.raises(NeckConfigError, match="twice"):
        parse_kv(["tile=1", "tile=2"], {})


# ---------------------------------------------------------------------------------------------------- neon-trees

TILE, OVERLAP, MIN_VISIBLE = 256, 0.25, 0.4
NEON = dict(tile=TILE, overlap=OVERLAP, min_visible=MIN_VISIBLE)


def _rand_boxes(rng, w, h, n, lo=12, hi=70):
    out = []
    for _ in range(n):
        bw, bh = rng.integers(lo, hi, 2)
        x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
        out.append([int(x), int(y), int(x + bw), int(y + bh)])
    return out


def _voc(filename, w, h, boxes, label="Tree"):
    objs = "".join(
        f"<object><name>{label}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for b in boxes
    )
    size = f"<size><width>{w}</width><height>{h}</height></size>"
    return f"<annotation><filename>{filename}</filename>{size}{objs}</annotation>"


def _img_bytes(rng, w, h, fmt):
    a = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(a).resize((w, h), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue(), np.asarray(im)


@pytest.fixture(scope="module")
def fake_wheel(tmp_path_factory):
    """A deepforest-like wheel: two large images (tall TIFF, wide PNG), two small ones, a duplicate, noise files."""
    rng = np.random.default_rng(7)
    files, truth, pixels = {}, {}, {}
    d = "deepforest/data/"
    # tall TIFF with CSV annotations, including non-tree labels that must be dropped and boundary-crossing boxes
    data, pixels["big"] = _img_bytes(rng, 700, 900, "TIFF")
    files[d + "big.tif"] = data
    boxes = _rand_boxes(rng, 700, 900, 60) + [[180, 630, 260, 700], [240, 100, 300, 140], [500, 190, 560, 260]]
    truth["big"] = boxes
    rows = ["image_path,xmin,ymin,xmax,ymax,label"] + [f"big.tif,{','.join(map(str, b))},Tree" for b in boxes]
    rows += [f"big.tif,{','.join(map(str, b))},Bird" for b in _rand_boxes(rng, 700, 900, 5)]
    files[d + "big.csv"] = "\n".join(rows).encode()
    # wide PNG with a Pascal VOC file; labels Alive/Dead count as trees
    data, pixels["wide"] = _img_bytes(rng, 820, 300, "PNG")
    files[d + "wide.png"] = data
    truth["wide"] = _rand_boxes(rng, 820, 300, 25)
    files[d + "wide.xml"] = _voc("wide.png", 820, 300, truth["wide"], "Dead").encode()
    # two small images that go whole to a split; small_a is also shipped as .tif with a poorer annotation file
    data, pixels["small_a"] = _img_bytes(rng, 200, 200, "PNG")
    files[d + "small_a.png"] = data
    files[d + "small_a.tif"] = _img_bytes(np.random.default_rng(99), 200, 200, "TIFF")[0]  # differs: must not be used
    truth["small_a"] = _rand_boxes(rng, 200, 200, 8)
    rows = ["image_path,xmin,ymin,xmax,ymax,label"]
    rows += [f"small_a.png,{','.join(map(str, b))},Tree" for b in truth["small_a"]]
    files[d + "small_a.csv"] = "\n".join(rows).encode()
    files[d + "dup.csv"] = b"image_path,xmin,ymin,xmax,ymax,label\nsmall_a.tif,1,1,30,30,Tree\n"
    data, pixels["small_b"] = _img_bytes(rng, 240, 180, "TIFF")
    files[d + "small_b.tif"] = data
    truth["small_b"] = _rand_boxes(rng, 240, 180, 6)
    files[d + "small_b.xml"] = _voc("small_b.tif", 240, 180, truth["small_b"], "Alive").encode()
    # things to ignore: a class table, predictions (score column), an image without annotations, code
    files[d + "classes.csv"] = b"Dead,0\nAlive,1\n"
    files[d + "preds.csv"] = b"image_path,xmin,ymin,xmax,ymax,score,label\nbig.tif,0,0,50,50,0.9,Tree\n"
    files[d + "birds.png"] = _img_bytes(rng, 300, 300, "PNG")[0]
    files["deepforest/__init__.py"] = b""
    files["deepforest-0.0.1.dist-info/METADATA"] = b"Name: deepforest\nVersion: 0.0.1\n"
    path = tmp_path_factory.mktemp("wheel") / "deepforest-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in files.items():
            zf.writestr(name, blob)
    return path, {k: np.array(v, dtype=np.float64) for k, v in truth.items()}, pixels


@pytest.fixture(scope="module")
def neon_fake(fake_wheel, tmp_path_factory):
    wheel, truth, pixels = fake_wheel
    root = tmp_path_factory.mktemp("neon")
    y = Path(resolve_data("neon-trees", root=root, wheel=str(wheel), **NEON))
    return y, read_csv(y.parent / "tiles.csv"), truth, pixels


def _intersect(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _rect(t):
    return [int(t[k]) for k in ("x0", "y0", "x1", "y1")]


def test_neon_fake_wheel_builds_a_yolo_dataset(neon_fake, monkeypatch):
    y, tiles, truth, _ = neon_fake
    data = yaml.safe_load(y.read_text())
    assert data["nc"] == 1 and data["names"] == {0: "tree"}
    assert {t["source"] for t in tiles} == set(truth)  # duplicates, predictions, class tables, birds: ignored
    assert {t["split"] for t in tiles} == {"train", "val"}
    for t in tiles:
        img = y.parent / "images" / t["split"] / t["image"]
        with Image.open(img) as im:
            x0, y0, x1, y1 = _rect(t)
            assert im.size == (x1 - x0, y1 - y0) and max(im.size) <= TILE
        lab = read_labels(y.parent / "labels" / t["split"] / (img.stem + ".txt"))
        assert len(lab) == int(t["boxes"]) and np.all(lab[:, 0] == 0)
        assert np.all(lab[:, 1:] >= 0) and np.all(lab[:, 1:] <= 1)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics.data.utils import check_det_dataset

    assert check_det_dataset(str(y))["nc"] == 1


def test_neon_region_split_has_no_leaks(neon_fake):
    _, tiles, truth, pixels = neon_fake
    for src in truth:
        h, w = pixels[src].shape[:2]
        train = [_rect(t) for t in tiles if t["source"] == src and t["split"] == "train"]
        val = [_rect(t) for t in tiles if t["source"] == src and t["split"] == "val"]
        assert not any(_intersect(a, b) for a in train for b in val), src
        for r in train + val:
            assert 0 <= r[0] < r[2] <= w and 0 <= r[1] < r[3] <= h
        if max(w, h) >= 2 * TILE:  # banded: both splits, val is a band at the end of the longer side
            assert train and val
            covered = np.zeros((h, w), bool)
            for r in train + val:
                covered[r[1] : r[3], r[0] : r[2]] = True
            assert covered.all()  # tiling covers the whole image
            if h >= w:
                assert min(r[1] for r in val) >= max(r[3] for r in train) and max(r[3] for r in val) == h
            else:
                assert min(r[0] for r in val) >= max(r[2] for r in train) and max(r[2] for r in val) == w
        else:  # small: whole image, one split
            assert len(train) + len(val) == 1 and (train + val)[0] == [0, 0, w, h]


def test_neon_tiles_clip_and_drop_slivers(neon_fake):
    y, tiles, truth, pixels = neon_fake
    clipped = dropped = 0
    for t in tiles:
        x0, y0, x1, y1 = r = _rect(t)
        tw, th = x1 - x0, y1 - y0
        b = truth[t["source"]]
        c = np.stack([b[:, 0].clip(x0, x1), b[:, 1].clip(y0, y1), b[:, 2].clip(x0, x1), b[:, 3].clip(y0, y1)], 1)
        cw, ch = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
        touching = (cw > 0) & (ch > 0)
        keep = touching & (cw >= 2) & (ch >= 2) & (cw * ch >= MIN_VISIBLE * (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        dropped += int((touching & ~keep).sum())
        clipped += int((keep & ((c != b).any(1))).sum())
        e = c[keep] - [x0, y0, x0, y0]
        expected = np.stack([(e[:, 0] + e[:, 2]) / 2, (e[:, 1] + e[:, 3]) / 2, e[:, 2] - e[:, 0], e[:, 3] - e[:, 1]], 1)
        expected /= [tw, th, tw, th]
        got = read_labels(y.parent / "labels" / t["split"] / (Path(t["image"]).stem + ".txt"))[:, 1:]
        np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])], atol=2e-6)
        with Image.open(y.parent / "images" / t["split"] / t["image"]) as im:  # the pixels are the source's crop
            assert np.array_equal(np.asarray(im), pixels[t["source"]][r[1] : r[3], r[0] : r[2]])
    assert clipped > 0 and dropped > 0  # the fixture exercises both rules


def test_neon_cache_key_follows_wheel_content(fake_wheel, neon_fake, tmp_path):
    wheel, _, _ = fake_wheel
    y, *_ = neon_fake
    root = y.parent.parent
    copy = tmp_path / "elsewhere.whl"
    shutil.copy(wheel, copy)
    again = resolve_data("neon-trees", root=root, wheel=str(copy), **NEON)
    assert Path(again) == y  # same content at another path: reused
    with zipfile.ZipFile(copy, "a") as zf:
        zf.writestr("deepforest/data/extra.txt", b"x")
    other = resolve_data("neon-trees", root=root, wheel=str(copy), **NEON)
    assert Path(other).parent != y.parent


def test_neon_helpers():
    assert NT.tile_starts(0, 200, 256, 192) == [0]
    s = NT.tile_starts(100, 1000, 256, 192)
    assert s[0] == 100 and s[-1] + 256 == 1000 and all(b - a <= 192 for a, b in zip(s[:-1], s[1:], strict=True))
    assert NT.split_regions(400, 400, 400, 0.2) is None
    r = NT.split_regions(1000, 900, 400, 0.2)  # wide: right band, at least one tile wide
    assert r == {"train": (0, 0, 600, 900), "val": (600, 0, 1000, 900)}


def test_neon_small_images_only_still_fill_both_splits(tmp_path):
    rng = np.random.default_rng(1)
    wheel = tmp_path / "deepforest-0.0.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in ("a", "b", "c"):
            zf.writestr(f"deepforest/data/{name}.png", _img_bytes(rng, 120, 100, "PNG")[0])
            zf.writestr(f"deepforest/data/{name}.xml", _voc(f"{name}.png", 120, 100, _rand_boxes(rng, 120, 100, 4)))
    y = Path(resolve_data("neon-trees", root=tmp_path, wheel=str(wheel), tile=128, val_frac=0.01))
    splits = [t["split"] for t in read_csv(y.parent / "tiles.csv")]
    assert sorted(splits) == ["train", "train", "val"]


@pytest.mark.skipif(not os.environ.get("YOLO_NECKS_DEEPFOREST_WHEEL"), reason="set YOLO_NECKS_DEEPFOREST_WHEEL")
def test_neon_real_wheel(tmp_path):
    y = Path(resolve_data("neon-trees", root=tmp_path, wheel=os.environ["YOLO_NECKS_DEEPFOREST_WHEEL"]))
    tiles = read_csv(y.parent / "tiles.csv")
    assert len({t["source"] for t in tiles}) >= 3
    assert sum(int(t["boxes"]) for t in tiles if t["split"] == "train") >= 200
    assert sum(int(t["boxes"]) for t in tiles if t["split"] == "val") >= 50
    for src in {t["source"] for t in tiles}:
        train = [_rect(t) for t in tiles if t["source"] == src and t["split"] == "train"]
        val = [_rect(t) for t in tiles if t["source"] == src and t["split"] == "val"]
        assert not any(_intersect(a, b) for a in train for b in val)
