"""COCO AP by object size and per-class AP (yolo_necks.cocoeval): the numbers equal an independent pycocotools
evaluation of the same boxes, the size bootstrap equals evaluating the resampled set, and a real validation feeds it
without ultralytics installing anything."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolo_necks import cocoeval
from yolo_necks.errors import NeckConfigError

pytest.importorskip("faster_coco_eval")
pycoco = pytest.importorskip("pycocotools.cocoeval")

# Hand-placed boxes in original-image pixels (x, y, w, h), on images of different sizes (h, w). Areas: small < 256,
# medium 256..2304, large > 2304 for the custom buckets [16², 48²]; with COCO's [32², 96²] nothing is large.
IMAGES = [(120, 200), (300, 160), (90, 90), (64, 256), (200, 100)]
GT = {  # image: [(class, box)]
    0: [(0, (10, 12, 10, 12)), (1, (50, 40, 30, 40)), (0, (120, 20, 60, 70))],
    1: [(1, (5, 200, 14, 9)), (2, (40, 30, 80, 50)), (0, (100, 250, 20, 30))],
    2: [(2, (3, 4, 8, 8)), (1, (30, 30, 40, 40))],
    3: [],  # no objects: only a false positive
    4: [(0, (10, 10, 25, 20)), (2, (40, 100, 55, 45))],
}
PRED = {  # image: [(class, box, score)]
    0: [(0, (11, 12, 10, 11), 0.9), (1, (52, 43, 30, 38), 0.8), (0, (118, 25, 60, 60), 0.55), (2, (0, 0, 30, 30), 0.3)],
    1: [(1, (6, 201, 13, 9), 0.7), (2, (45, 30, 70, 50), 0.65), (1, (100, 250, 20, 30), 0.4)],
    2: [(2, (2, 5, 9, 7), 0.35), (1, (31, 28, 40, 42), 0.95), (1, (0, 0, 20, 20), 0.2)],
    3: [(0, (100, 10, 40, 30), 0.6)],
    4: [(0, (12, 11, 22, 20), 0.5), (2, (38, 98, 60, 50), 0.45), (3, (0, 0, 50, 50), 0.1)],
}
NAMES = {0: "zero", 1: "one", 2: "two", 3: "three"}
FILES = [f"/data/images/val/{i:06d}.jpg" for i in range(len(IMAGES))]
CUSTOM = (16**2, 48**2)


def yolo_labels() -> list[dict]:
    """The hand-placed boxes as ultralytics dataset labels (normalised xywh, original shape)."""
    out = []
    for i, (h, w) in enumerate(IMAGES):
        boxes = [((x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h) for _, (x, y, bw, bh) in GT[i]]
        out.append({"cls": np.array([[c] for c, _ in GT[i]], dtype=np.float32).reshape(-1, 1),
                    "bboxes": np.array(boxes, dtype=np.float32).reshape(-1, 4), "shape": (h, w)})  # fmt: skip
    return out


def jdict() -> list[dict]:
    """The predictions as the validator writes them (image id from the stem, category id = class + 1)."""
    return [{"image_id": i, "file_name": Path(FILES[i]).name, "category_id": c + 1, "bbox": list(map(float, b)),
             "score": s} for i, preds in PRED.items() for c, b, s in preds]  # fmt: skip


def pycocotools_stats(images: list[int], buckets) -> np.ndarray:
    """pycocotools' COCOeval of the hand-placed boxes of ``images`` (repeats become new images), from the pixel boxes
    directly: [AP, AP50, AP_small, AP_medium, AP_large, AR@100]."""
    from pycocotools.coco import COCO

    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1} for c in NAMES]}
    dets = []
    for j, i in enumerate(images):
        gt["images"].append({"id": j, "height": IMAGES[i][0], "width": IMAGES[i][1]})
        for c, box in GT[i]:
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": j, "category_id": c + 1,
                                      "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
        dets += [{"image_id": j, "category_id": c + 1, "bbox": list(b), "score": s} for c, b, s in PRED[i]]
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = pycoco.COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.params.areaRng = [[0, 1e10], [0, buckets[0]], [buckets[0], buckets[1]], [buckets[1], 1e10]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[[0, 1, 3, 4, 5, 8]]


def as_array(result: dict) -> np.ndarray:
    return np.array([-1.0 if result[k] is None else result[k] for k in cocoeval.METRICS])


@pytest.fixture(scope="module")
def hand() -> cocoeval.CocoInput:
    return cocoeval.CocoInput.from_labels(yolo_labels(), jdict(), FILES, names=NAMES)


@pytest.mark.parametrize("buckets", [None, CUSTOM])
def test_equals_pycocotools_on_hand_placed_boxes(hand, buckets):
    result = cocoeval.evaluate(hand, buckets)
    expected = pycocotools_stats(list(range(len(IMAGES))), buckets or cocoeval.DEFAULT_BUCKETS)
    assert np.allclose(as_array(result), expected, rtol=0, atol=1e-9), (result, expected)
    areas = [b[2] * b[3] for boxes in GT.values() for _, b in boxes]
    a, b = buckets or cocoeval.DEFAULT_BUCKETS
    assert (result["n_small"], result["n_medium"], result["n_large"]) == (
        sum(x <= a for x in areas), sum(a <= x <= b for x in areas), sum(x >= b for x in areas))
    assert result["n_small"] + result["n_medium"] + result["n_large"] == len(areas)
    if buckets is None:  # nothing over 96²: the empty bucket is None (COCO's -1), its count 0
        assert result["map_large"] is None and result["n_large"] == 0
    else:
        assert all(result[f"map_{s}"] is not None and result[f"n_{s}"] > 0 for s in cocoeval.SIZES)
    assert 0 < result["coco_map50_95"] < result["coco_map50"] <= 1


def test_labels_become_pixel_boxes_on_images_of_different_sizes(hand):
    boxes = sorted((a["image_id"], tuple(round(v, 3) for v in a["bbox"])) for a in hand.gt["annotations"])
    assert boxes == sorted((i, tuple(map(float, b))) for i, gt in GT.items() for _, b in gt)
    assert [(im["height"], im["width"]) for im in hand.gt["images"]] == IMAGES
    assert hand.counts.tolist() == [4, 3, 3, 0]  # boxes per class; class 3 is never labelled


def test_bootstrap_replicates_equal_evaluating_the_resampled_images(hand):
    n = len(IMAGES)
    index_sets = np.vstack([np.arange(n), [2, 2, 3, 3, 2], [0, 0, 4, 1, 1], [3, 3, 3, 3, 3]])
    reps = cocoeval.bootstrap_sizes(hand, index_sets, CUSTOM)
    assert set(reps) == set(cocoeval.METRICS) and all(v.shape == (len(index_sets),) for v in reps.values())
    full = as_array(cocoeval.evaluate(hand, CUSTOM))
    assert np.array_equal(np.array([reps[k][0] for k in cocoeval.METRICS]), full)  # the identity resample
    for r, row in enumerate(index_sets[1:3], start=1):
        got = np.array([reps[k][r] for k in cocoeval.METRICS])
        assert np.allclose(np.nan_to_num(got, nan=-1.0), pycocotools_stats(list(row), CUSTOM), atol=1e-9)
    assert np.isnan(reps["map_large"][1])  # images 2 and 3 hold no large object
    assert all(np.isnan(v[3]) for v in reps.values())  # no object at all
    se = cocoeval.bootstrap_se(reps)
    assert set(se) == {f"{k}_se" for k in cocoeval.METRICS} and all(v >= 0 for v in se.values())


def test_per_class_rows_cover_exactly_the_classes_present():
    from ultralytics.utils.metrics import DetMetrics

    metrics = DetMetrics(names=NAMES)
    # class 0: two boxes, one found; class 1: one box, found; class 2: one box, nothing predicted; class 3: absent
    stats = {"tp": np.array([[True] * 10, [True] * 10, [False] * 10]), "conf": np.array([0.9, 0.8, 0.3]),
             "pred_cls": np.array([0.0, 1.0, 3.0]), "target_cls": np.array([0.0, 0.0, 1.0, 2.0]),
             "target_img": np.array([0.0, 1.0, 2.0])}  # one image's statistics, as the validator records them
    for k in metrics.stats:
        metrics.stats[k].append(stats[k])
    metrics.process()
    rows = cocoeval.per_class(metrics)
    assert [r["class"] for r in rows] == [0, 1, 2] and [r["name"] for r in rows] == ["zero", "one", "two"]
    assert sum(r["n_instances"] for r in rows) == 4
    assert rows[2]["ap50"] == rows[2]["ap50_95"] == 0.0 and rows[1]["ap50"] > 0.9
    empty = DetMetrics(names=NAMES)  # nothing predicted anywhere: every present class is a row with 0
    assert [r["ap50_95"] for r in cocoeval.per_class(empty, counts=[2, 0, 1, 0])] == [0.0, 0.0]


@pytest.mark.parametrize("bad, words", [
    (lambda h: cocoeval.evaluate(h, [96**2, 32**2]), "0 < a < b"),
    (lambda h: cocoeval.evaluate(h, [100]), "two areas"),
    (lambda h: cocoeval.bootstrap_sizes(h, np.zeros((3, 4), dtype=int)), "R x 5 image indices"),
    (lambda h: cocoeval.bootstrap_sizes(h, np.full((3, 5), 5)), "R x 5 image indices"),
    (lambda h: cocoeval.CocoInput.from_labels(yolo_labels(), [{**jdict()[0], "file_name": "x.jpg", "image_id": 99}],
                                              FILES), "99"),
    (lambda h: cocoeval.CocoInput.from_labels([{"cls": [[0]], "bboxes": [[0.5, 0.5, 0.1]], "shape": (9, 9)}], [],
                                              FILES[:1]), "label 0"),
])  # fmt: skip
def test_bad_input_is_one_line(hand, bad, words):
    with pytest.raises(NeckConfigError) as info:
        bad(hand)
    assert words in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------- a real validation
@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """yolov8n trained one epoch at 64 px on the tiny digits, and a copy of its val images at different sizes."""
    from PIL import Image
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("coco")
    model = YOLO("yolov8n.yaml", task="detect")
    model.train(data=str(tiny_data), epochs=1, imgsz=64, batch=8, workers=0, device="cpu", plots=False, val=False,
                project=str(root), name="train", exist_ok=True, seed=0, deterministic=True, amp=False)  # fmt: skip
    src = Path(tiny_data).parent
    for sub in ("images", "labels"):
        (root / "sized" / sub / "val").mkdir(parents=True)
    sizes = [(64, 64), (96, 48), (40, 80), (128, 72), (64, 100), (50, 50), (80, 120), (72, 96)]
    for k, image in enumerate(sorted((src / "images" / "val").iterdir())):
        Image.open(image).resize(sizes[k % len(sizes)]).save(root / "sized" / "images" / "val" / image.name)
        label = src / "labels" / "val" / f"{image.stem}.txt"  # normalised boxes stay right after a resize
        (root / "sized" / "labels" / "val" / label.name).write_text(label.read_text())
    info = yaml.safe_load(Path(tiny_data).read_text())
    info.update(path=str(root / "sized"), train=str(src / "images" / "train"), val="images/val")
    (root / "sized" / "data.yaml").write_text(yaml.safe_dump(info))
    return Path(model.trainer.last), root / "sized" / "data.yaml"


def test_a_real_validation(trained, monkeypatch, logged):
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import val as detect_val

    checked, theirs = [], []
    if hasattr(detect_val, "check_requirements"):  # never install: report what would have been installed
        real = detect_val.check_requirements
        monkeypatch.setattr(detect_val, "check_requirements",
                            lambda req, *a, **k: checked.append((req, real(req, install=False))) or checked[-1][1])
    if hasattr(detect_val.DetectionValidator, "coco_evaluate"):  # ultralytics' own run, with COCO's buckets
        own = detect_val.DetectionValidator.coco_evaluate
        monkeypatch.setattr(detect_val.DetectionValidator, "coco_evaluate",
                            lambda self, stats, *a, **k: theirs.append(own(self, stats, *a, **k)) or theirs[-1])
    weights, data = trained
    model = YOLO(str(weights), task="detect")
    ours, from_labels = cocoeval.CocoCapture(), cocoeval.CocoCapture(use_gdict=False)
    model.add_callback("on_val_end", ours)
    model.add_callback("on_val_end", from_labels)
    metrics = model.val(data=str(data), imgsz=64, batch=4, device="cpu", workers=0, plots=False, verbose=False,
                        save_json=True, project=str(data.parent), name="val", exist_ok=True)  # fmt: skip

    assert all(ok for _, ok in checked), checked  # faster-coco-eval was there: nothing to install
    assert not [m for m in logged if "faster-coco-eval" in m and ("unable" in m or "install" in m.lower())]
    lines = [ln.split() for p in (data.parent / "labels" / "val").glob("*.txt") for ln in p.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    n_boxes, present = len(lines), {int(ln[0]) for ln in lines}
    result = cocoeval.evaluate(ours.data)
    assert 0 <= result["coco_map50_95"] <= 1 and 0 <= result["ar100"] <= 1
    assert result["n_small"] + result["n_medium"] + result["n_large"] == n_boxes == int(ours.data.counts.sum())
    if theirs and ours.data.source == "ultralytics gdict":
        stats = theirs[-1]  # the same evaluator on the same boxes: the same numbers
        for s in cocoeval.SIZES:
            assert math.isclose(stats[f"metrics/mAP_{s}(B)"], -1 if result[f"map_{s}"] is None else result[f"map_{s}"])
    # the labels converted here equal ultralytics' ground truth through the letterbox (images of different sizes)
    mine, yours = from_labels.data.gt["annotations"], ours.data.gt["annotations"]  # both in label order
    assert [(a["image_id"], a["category_id"]) for a in mine] == [(a["image_id"], a["category_id"]) for a in yours]
    assert np.allclose([a["bbox"] for a in mine], [a["bbox"] for a in yours], atol=2e-3)
    assert from_labels.data.dets == ours.data.dets
    other = cocoeval.evaluate(from_labels.data)
    assert all(math.isclose(result[k], other[k], abs_tol=1e-6) for k in cocoeval.METRICS if result[k] is not None)

    rows = ours.per_class
    assert {r["class"] for r in rows} == present and sum(r["n_instances"] for r in rows) == n_boxes
    assert rows == cocoeval.per_class(metrics)
    reps = cocoeval.bootstrap_sizes(ours.data, np.random.default_rng(0).integers(0, 8, (20, 8)))
    assert reps["coco_map50_95"].shape == (20,) and np.isfinite(reps["coco_map50_95"]).all()
    assert copy.deepcopy(result) == cocoeval.evaluate(ours.data)  # evaluating leaves the capture as it was
