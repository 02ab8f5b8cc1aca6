"""The val set's share of the noise: a bootstrap over the val images of one run's mAP, from the validator's own
per-image statistics (no re-inference).

While ultralytics validates a run, :class:`ValCapture` (an ``on_val_batch_end`` callback) keeps each image's
statistics as the validator records them (true positives at the 10 IoU thresholds, confidences, predicted and target
classes). :func:`bootstrap` then resamples *images* with replacement (``resamples`` >= 200 times, a fixed seed) and
recomputes mAP50 and mAP50-95 of every resample with ultralytics' own ``DetMetrics`` (the metric is never
re-implemented here); the full sample reproduces the validator's numbers exactly (tested). The standard deviation of
the resampled values is the run's bootstrap standard error (``map50_se``, ``map50_95_se`` in results.csv).

The resamples use the same image indices in every run of a sweep (the seed is fixed and the val set is the same), so
the replicates of two runs are paired: ``var(arm_b - baseline_b)`` over resamples is the val sampling's share of the
variance of a paired Δ, without looking at any image again. Each run's replicates go to ``val_bootstrap.npz`` in its
folder, with a hash of the image names that pairs them only when the images match.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

RESAMPLES = 200
SEED = 20260
KEYS = ("tp", "conf", "pred_cls", "target_cls", "target_img")


class ValCapture:
    """``on_val_batch_end`` callback: every validated image's statistics, in the validator's order."""

    def __init__(self):
        self.images: list[dict[str, np.ndarray]] = []
        self.names: list[str] = []
        self.class_names: dict[int, str] = {}

    def __call__(self, validator) -> None:
        stats = validator.metrics.stats
        self.class_names = dict(getattr(validator.metrics, "names", {}) or {})
        for j in range(len(self.images), len(stats["tp"])):  # the images this batch added
            self.images.append({k: np.asarray(stats[k][j]) for k in KEYS})
        if not self.names:
            dataset = getattr(getattr(validator, "dataloader", None), "dataset", None)
            self.names = [Path(f).name for f in getattr(dataset, "im_files", [])]


def maps(images: list[dict[str, np.ndarray]], names: dict[int, str], index=None) -> tuple[float, float]:
    """(mAP50, mAP50-95) of the images at ``index`` (all by default), by ultralytics' ``DetMetrics``."""
    from ultralytics.utils.metrics import DetMetrics

    metrics = DetMetrics(names=names)
    for i in range(len(images)) if index is None else index:
        for k in KEYS:
            metrics.stats[k].append(images[i][k])
    metrics.process(plot=False)
    return float(metrics.box.map50), float(metrics.box.map)


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``resamples`` x ``n`` image indices drawn with replacement; the same for every run with ``n`` val images."""
    return np.random.default_rng([seed, n]).integers(0, n, size=(resamples, n))


def bootstrap(capture: ValCapture, resamples: int = RESAMPLES) -> dict:
    """Bootstrap replicates and standard errors of mAP50 and mAP50-95 over the captured images."""
    n = len(capture.images)
    if n < 2:
        return {"map50_se": float("nan"), "map50_95_se": float("nan")}
    reps = np.array([maps(capture.images, capture.class_names, idx) for idx in resample_indices(n, resamples)])
    return {
        "map50_se": float(reps[:, 0].std(ddof=1)),
        "map50_95_se": float(reps[:, 1].std(ddof=1)),
        "replicates": reps,
        "images": n,
        "names_hash": hashlib.sha256("\n".join(capture.names[:n]).encode()).hexdigest()[:16],
    }
