"""COCO AP by object size and per-class AP of one validation, by maintained evaluators (never re-implemented here).

The COCO numbers (AP@[.5:.95], AP50, AP of small / medium / large objects, AR@100) come from faster-coco-eval's
``COCOeval_faster`` run on the validator's own predictions (its ``jdict``, in original-image pixels) against the
ground truth of the val labels in original-image pixels. The size buckets are areas in px² of the original image:
``[a, b]`` sets the evaluator's ``params.areaRng`` to ``[[0, 1e10], [0, a], [a, b], [b, 1e10]]`` (COCO's own
``[32², 96²]`` by default). As in COCO, an object of area exactly ``a`` or ``b`` belongs to both neighbouring buckets.

How a validation is captured: ``model.val(..., save_json=True)`` with a :class:`CocoCapture` added as an
``on_val_end`` callback. ``save_json`` makes the validator keep its predictions (``jdict``); where ultralytics also
builds the COCO ground truth of a custom dataset from the labels (its ``gdict``, ultralytics 8.4.133 and later), the
capture takes that one; elsewhere (8.3.x, 8.4.0-8.4.132, or ``use_gdict=False``) it converts the dataset's YOLO labels
itself (normalised xywh times the original image size, read from the image file where a rect dataloader dropped it).
Predictions are tied to the validator's images by its own per-image prediction counts where it keeps them, else by
file name, else by the stem id ultralytics writes. Image ``i`` of a capture is the validator's ``i``-th image, the
same index the val bootstrap of the ablation harness resamples. (Where ultralytics has the ``gdict`` path it also
evaluates that ground truth itself with COCO's fixed buckets after ``on_val_end``; faster-coco-eval being a dependency,
it finds it installed and installs nothing.)

The size bootstrap (:func:`bootstrap_sizes`) runs the evaluator's matching once per image and category
(``separate_eval``) and re-runs only faster-coco-eval's accumulate and summary on the per-image results of each
resample (images drawn with replacement, repeats included), so its replicates use the resample index sets of the mAP
bootstrap and pair with it; the identity resample reproduces :func:`evaluate` exactly (tested, as is a resample
against pycocotools on the physically resampled images).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from yolo_necks.errors import NeckConfigError, NeckError

DEFAULT_BUCKETS = (32.0**2, 96.0**2)
MAX_AREA = 1e5**2  # the evaluator's upper end of "all"
SIZES = ("small", "medium", "large")
METRICS = ("coco_map50_95", "coco_map50", "map_small", "map_medium", "map_large", "ar100")
KEYS = METRICS + ("n_small", "n_medium", "n_large")


def _quiet(*_args, **_kwargs) -> None:
    return None


# ------------------------------------------------------------------------------------------------------ buckets
def check_buckets(buckets: Sequence[float] | None) -> tuple[float, float]:
    """``[a, b]`` as two floats with ``0 < a < b``; None gives COCO's ``[32², 96²]``."""
    if buckets is None:
        return DEFAULT_BUCKETS
    try:
        a, b = (float(x) for x in buckets)
    except (TypeError, ValueError):
        raise NeckConfigError(f"size_buckets must be two areas [a, b] in px² of the original image, got {buckets!r}")
    if not (math.isfinite(a) and math.isfinite(b) and 0 < a < b < MAX_AREA):
        raise NeckConfigError(f"size_buckets must satisfy 0 < a < b (areas in px²), got [{a:g}, {b:g}]")
    return a, b


def area_ranges(buckets: Sequence[float] | None = None) -> list[list[float]]:
    """The evaluator's ``params.areaRng``: all, small, medium, large."""
    a, b = check_buckets(buckets)
    return [[0.0, MAX_AREA], [0.0, a], [a, b], [b, MAX_AREA]]


# ------------------------------------------------------------------------------------------------- ground truth
def image_shape(path) -> tuple[int, int]:
    """(h, w) of an image file as ultralytics' label cache records it (EXIF orientation applied)."""
    from PIL import Image

    try:
        from ultralytics.data.utils import exif_size
    except ImportError:  # pragma: no cover - every supported ultralytics has it
        exif_size = None
    try:
        with Image.open(path) as im:
            w, h = exif_size(im) if exif_size else im.size
    except OSError as e:
        raise NeckConfigError(f"cannot read the size of val image '{path}' ({type(e).__name__})") from None
    return int(h), int(w)


def ground_truth(labels: Sequence[dict], class_map: Sequence[int] | None = None, im_files=None) -> dict:
    """COCO ground truth of YOLO labels, in original-image pixels; image ``i`` is ``labels[i]``.

    ``labels``: ultralytics' dataset labels, each ``{"cls": (n, 1), "bboxes": (n, 4) normalised xywh, "shape": (h, w)
    of the original image}``; without ``shape`` (a rect dataloader takes it out) the size is read from ``im_files[i]``.
    ``class_map[c]`` is the category id of class ``c`` (the validator's; ``c + 1`` by default).
    """
    nc = 1 + max((int(np.max(lb["cls"])) for lb in labels if len(np.asarray(lb.get("cls", ())))), default=-1)
    class_map = list(class_map) if class_map is not None else list(range(1, nc + 1))
    images, anns = [], []
    for i, lb in enumerate(labels):
        try:
            shape = lb["shape"] if "shape" in lb or im_files is None else image_shape(im_files[i])
            h, w = (float(x) for x in shape)
            cls = np.asarray(lb["cls"], dtype=np.float64).reshape(-1)
            xywh = np.asarray(lb["bboxes"], dtype=np.float64).reshape(-1, 4)
        except (KeyError, TypeError, ValueError):
            raise NeckConfigError(f"label {i} is not an ultralytics detection label (cls, normalised bboxes, shape)")
        if len(cls) != len(xywh) or h <= 0 or w <= 0:
            raise NeckConfigError(f"label {i}: {len(cls)} classes for {len(xywh)} boxes, image shape {shape}")
        if len(cls) and (cls.min() < 0 or cls.max() >= len(class_map)):
            raise NeckConfigError(f"label {i}: class {int(cls.max())} outside the {len(class_map)} classes")
        image = {"id": i, "height": h, "width": w}
        if im_files is not None:
            image["file_name"] = Path(im_files[i]).name
        images.append(image)
        for c, (x, y, bw, bh) in zip(cls, xywh):
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": class_map[int(c)], "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": [{"id": c} for c in class_map]}


def _image_key(path) -> Any:
    """The image id ultralytics' ``pred_to_json`` writes for a file: its stem, as an int where numeric."""
    stem = Path(str(path)).stem
    return int(stem) if stem.isnumeric() else stem


def tie_predictions(jdict: Sequence[dict], im_files: Sequence[str], pred_counts=None) -> list[dict]:
    """The validator's predictions with ``image_id`` set to the index of their image in ``im_files``.

    With ``pred_counts`` (predictions per image, in the validator's order) the ``j``-th prediction goes to the image its
    count places it in, as ultralytics' own ``eval_json`` does; else by ``file_name`` where present, then by the id
    ``pred_to_json`` derives from the file stem (which must then be unique among the val images)."""
    if pred_counts is not None:
        if sum(pred_counts) != len(jdict) or len(pred_counts) != len(im_files):
            raise NeckConfigError(f"{len(jdict)} predictions do not match the counts of {len(im_files)} images")
        ids = np.repeat(np.arange(len(pred_counts)), np.asarray(pred_counts, dtype=int))
        return [{**p, "image_id": int(i)} for p, i in zip(jdict, ids)]
    by_name = {Path(str(f)).name: i for i, f in enumerate(im_files)}
    by_key: dict[Any, int] = {}
    for i, f in enumerate(im_files):
        key = _image_key(f)
        by_key[key] = -1 if key in by_key else i  # -1: a stem several images share
    out = []
    for p in jdict:
        i = by_name.get(p["file_name"], None) if "file_name" in p and len(by_name) == len(im_files) else None
        if i is None:
            i = by_key.get(p["image_id"])
        if i is None or i < 0:
            why = "is not a val image" if i is None else "names several val images (same file stem)"
            raise NeckConfigError(f"prediction image id {p['image_id']!r} {why}")
        out.append({**p, "image_id": i})
    return out


# ------------------------------------------------------------------------------------------------------ capture
class CocoInput:
    """One validation in COCO form: ``gt`` (dict, image ids 0..n-1 in the validator's order), ``dets`` (the
    predictions with those image ids), ``counts`` (ground-truth boxes per class index), ``names``, ``source``."""

    def __init__(self, gt: dict, dets: list[dict], names: dict | None = None, source: str = "labels"):
        self.gt, self.dets, self.source = gt, dets, source
        n = len(gt["images"])
        if [im["id"] for im in gt["images"]] != list(range(n)):
            raise NeckConfigError("ground-truth image ids must be 0..n-1 in the validator's order")
        cat_index = {c["id"]: k for k, c in enumerate(gt["categories"])}
        self.counts = np.bincount([cat_index[a["category_id"]] for a in gt["annotations"]], minlength=len(cat_index))
        self.names = dict(names or {k: str(k) for k in range(len(cat_index))})

    @property
    def n_images(self) -> int:
        return len(self.gt["images"])

    @classmethod
    def from_labels(cls, labels, jdict, im_files, class_map=None, names=None, pred_counts=None) -> CocoInput:
        """From YOLO labels and the validator's predictions (what any ultralytics 8.3+/8.4 validator has)."""
        if class_map is None and names:
            class_map = list(range(1, len(names) + 1))
        gt = ground_truth(labels, class_map, im_files)
        return cls(gt, tie_predictions(jdict, im_files, pred_counts), names, "labels")


class CocoCapture:
    """``on_val_end`` callback (validate with ``save_json=True``): the validation in COCO form (:attr:`data`) and
    its per-class rows (:attr:`per_class`). ``use_gdict=False`` converts the labels even where ultralytics built a
    ground truth itself."""

    def __init__(self, use_gdict: bool = True):
        self.use_gdict = use_gdict
        self.data: CocoInput | None = None
        self.per_class: list[dict] = []

    def __call__(self, validator) -> None:
        dataset = validator.dataloader.dataset
        files, names = list(dataset.im_files), dict(getattr(validator, "names", None) or {})
        if not getattr(validator.args, "save_json", False):
            raise NeckConfigError("COCO metrics need the validator's predictions: validate with save_json=True")
        counts, gdict = getattr(validator, "pred_counts", None), getattr(validator, "gdict", None)
        order = getattr(validator, "eval_ids", None)
        if self.use_gdict and gdict and counts is not None and order == list(range(len(files))):
            gt = copy.deepcopy(gdict)  # ultralytics' own: labels through the letterbox and back to original pixels
            gt["images"] = [{**im, "file_name": Path(files[im["id"]]).name} for im in gt["images"]]
            self.data = CocoInput(gt, tie_predictions(validator.jdict, files, counts), names, "ultralytics gdict")
        else:
            self.data = CocoInput.from_labels(dataset.labels, validator.jdict, files, validator.class_map, names,
                                              counts if order == list(range(len(files))) else None)
        self.per_class = per_class(validator.metrics, self.data.counts)


# --------------------------------------------------------------------------------------------------- evaluation
def _evaluator(data: CocoInput, buckets):
    """faster-coco-eval's COCOeval_faster, matched per image (``separate_eval``) with the buckets set."""
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:
        raise NeckError("COCO metrics need faster-coco-eval (pip install 'faster-coco-eval>=1.6.7')") from None
    gt = COCO({**data.gt, "annotations": [dict(a) for a in data.gt["annotations"]]})  # it marks them in place
    gt.print_function = _quiet
    dt = gt.loadRes([dict(d) for d in data.dets])
    ev = COCOeval_faster(gt, dt, iouType="bbox", print_function=_quiet, separate_eval=True)
    ev.params.areaRng = area_ranges(buckets)
    ev.params.areaRngLbl = ["all", *SIZES]
    ev.params.imgIds = list(range(data.n_images))  # every val image, those without boxes included
    ev.evaluate()
    return ev


def _summary(ev) -> dict[str, float | None]:
    """Accumulate, then the six numbers by the evaluator's own summary (at 100 detections per image; -1 -> None)."""
    ev.accumulate()
    get = ev._summarize  # what summarize() calls for each of its lines, in every faster-coco-eval version
    values = {"coco_map50_95": get(1, maxDets=100), "coco_map50": get(1, iouThr=0.5, maxDets=100),
              **{f"map_{s}": get(1, areaRng=s, maxDets=100) for s in SIZES}, "ar100": get(0, maxDets=100)}
    return {k: None if v < 0 else float(v) for k, v in values.items()}


def size_counts(data: CocoInput, buckets=None) -> dict[str, int]:
    """Ground-truth boxes per bucket, with the evaluator's bounds (``a <= area <= b``; crowd boxes left out)."""
    ranges = area_ranges(buckets)[1:]
    areas = np.array([a["area"] for a in data.gt["annotations"] if not a.get("iscrowd", 0)], dtype=np.float64)
    return {f"n_{s}": int(((areas >= lo) & (areas <= hi)).sum()) for s, (lo, hi) in zip(SIZES, ranges)}


def evaluate(data: CocoInput, buckets: Sequence[float] | None = None) -> dict[str, Any]:
    """``{coco_map50_95, coco_map50, map_small, map_medium, map_large, ar100, n_small, n_medium, n_large}``.

    A metric without ground truth (a bucket with no object, where COCO reports -1) is None; its count is 0."""
    counts = size_counts(data, buckets)
    out = {**_summary(_evaluator(data, buckets)), **counts}
    for s in SIZES:  # the evaluator's -1 and an empty bucket are the same thing; say so in one way
        if counts[f"n_{s}"] == 0:
            out[f"map_{s}"] = None
    return out


def bootstrap_sizes(data: CocoInput, index_sets, buckets: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """Replicates of every COCO metric over resampled val images: ``{metric: array (R,)}``, NaN where a resample
    has no ground truth for the metric. ``index_sets``: R x n image indices (the mAP bootstrap's, for pairing).

    The evaluator matches each image and category once; each resample re-accumulates the per-image results of its
    images (repeats included) with faster-coco-eval's own accumulate and summarize."""
    idx = np.asarray(index_sets)
    n = data.n_images
    shaped = idx.ndim == 2 and idx.shape[1] == n and np.issubdtype(idx.dtype, np.integer)
    if not shaped or (idx.size and (idx.min() < 0 or idx.max() >= n)):
        raise NeckConfigError(f"index_sets must be R x {n} image indices in [0, {n}), got shape {idx.shape}")
    ev = _evaluator(data, buckets)
    per_image = getattr(ev, "_evalImgs_cpp", None)
    if per_image is None:
        raise NeckError("this faster-coco-eval keeps no per-image evaluations (separate_eval); need >=1.6.7")
    k, a = len(ev._paramsEval.catIds), len(ev._paramsEval.areaRng)
    cells = np.empty(len(per_image), dtype=object)
    cells[:] = list(per_image)
    cells = cells.reshape(k, a, n)  # categories, area ranges, images: the evaluator's layout
    base = copy.copy(ev._paramsEval)
    base.maxDets = ev.params.maxDets = [100]  # the only one read: a third of accumulate's work (matching used 100)
    reps = {m: np.full(len(idx), np.nan) for m in METRICS}
    for r, row in enumerate(idx):
        ev._evalImgs_cpp = cells[:, :, row].ravel().tolist()
        ev._paramsEval = copy.copy(base)
        ev._paramsEval.imgIds = row.tolist()  # accumulate reads the image count from here
        for m, v in _summary(ev).items():
            reps[m][r] = np.nan if v is None else v
    return reps


def bootstrap_se(replicates: dict[str, np.ndarray]) -> dict[str, float]:
    """``{metric_se}``: standard deviation of each metric's finite replicates (NaN with fewer than two)."""
    out = {}
    for m, v in replicates.items():
        v = np.asarray(v, dtype=np.float64)
        v = v[np.isfinite(v)]
        out[f"{m}_se"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    return out


# ------------------------------------------------------------------------------------------------------ per class
def per_class(metrics, counts=None) -> list[dict]:
    """Rows ``{class, name, n_instances, ap50, ap50_95}`` from ultralytics' validator metrics, one per class with
    ground truth in the val set (``counts[c]`` boxes; ``metrics.nt_per_class`` by default), in class order; a class
    without any prediction gets 0, a class absent from val is no row."""
    box = metrics.box
    counts = getattr(metrics, "nt_per_class", None) if counts is None else counts
    if counts is None:
        raise NeckConfigError("per-class rows need the boxes per class (metrics.nt_per_class or counts)")
    names = dict(getattr(metrics, "names", None) or {})
    index = [int(c) for c in getattr(box, "ap_class_index", [])]
    ap50, ap = np.asarray(box.ap50, dtype=np.float64), np.asarray(box.ap, dtype=np.float64)
    rows = []
    for c, n in enumerate(np.asarray(counts).astype(int)):
        if n > 0:
            i = index.index(c) if c in index else None
            rows.append({"class": c, "name": str(names.get(c, c)), "n_instances": int(n),
                         "ap50": float(ap50[i]) if i is not None else 0.0,
                         "ap50_95": float(ap[i]) if i is not None else 0.0})
    return rows
