"""The val set's part of a seed-averaged paired Δ, from the runs' stored bootstrap replicates
(:mod:`..records.replicates`).

Every run of a sweep resamples the same val images (the same indices, :mod:`..execute.valnoise`), so for each
resample ``b`` the difference ``arm_b − baseline_b`` of one seed's two runs is a replicate of that seed's Δ, and the
mean of those over the paired seeds is a replicate of the seed-averaged Δ. Its variance over the resamples, ``v``, is
how much the seed-averaged Δ would move with another draw of val images: the part that every seed shares (all runs
see the same images), which the SD over seeds cannot see and more seeds do not shrink. :mod:`.decide` adds it to the
seed part of the standard error; ``sqrt(v)`` is the ``{metric}_val_se`` of the summary.
"""

from __future__ import annotations

import math

import numpy as np

from ..records import replicates


def seed_mean_val_variance(diffs) -> np.ndarray | float:
    """Variance over resamples (last axis, ddof 1) of the mean over seeds (the axis before it) of per-seed replicate
    differences ``arm_b − baseline_b``; leading axes are independent batches. A resample where some seed's difference
    is NaN (a metric with no ground truth in that resample) is left out; fewer than 2 left: NaN."""
    d = np.asarray(diffs, dtype=np.float64)
    mean = d.mean(axis=-2)
    if not np.isnan(mean).any():
        return mean.var(axis=-1, ddof=1) if mean.ndim > 1 else float(mean.var(ddof=1))
    out = np.apply_along_axis(lambda row: np.var(row[~np.isnan(row)], ddof=1) if (~np.isnan(row)).sum() > 1
                              else math.nan, -1, mean)
    return out if out.ndim else float(out)


def run_replicates(ok) -> dict:
    """``{(arm, seed): ({metric: replicates}, image-names hash, val images or None)}`` of the finished runs whose
    folders hold replicates (``ok``: finished runs with ``run_dir``)."""
    out = {}
    if "run_dir" not in ok.columns:
        return out
    for arm, seed, folder in zip(ok["arm"], ok["seed"], ok["run_dir"]):
        if not isinstance(folder, str) or not folder:
            continue
        loaded = replicates.load_metrics(folder)
        if loaded is not None:
            out[(arm, seed)] = (*loaded, replicates.images(folder))
    return out


def val_variance(reps: dict, arm, base, seeds, metric: str) -> tuple[float, float, int]:
    """``(v, df, k)``: the val-set variance of the seed-averaged Δ ``arm − base`` on ``metric`` over the paired
    ``seeds`` that have replicates of it in both runs on the same images (``reps`` from :func:`run_replicates`),
    its degrees of freedom (val images − 1; ``inf`` when the files do not record the count) and the seeds it used
    (``k < len(seeds)``: over fewer seeds, which overstates the per-run part). ``(NaN, inf, 0)`` without any."""
    diffs, counts = [], set()
    for seed in seeds:
        a, b = reps.get((arm, seed)), reps.get((base, seed))
        if a is None or b is None or a[1] != b[1] or metric not in a[0] or metric not in b[0]:
            continue
        if a[0][metric].shape != b[0][metric].shape:
            continue
        diffs.append(a[0][metric] - b[0][metric])
        counts.add(a[2])
    if not diffs:
        return math.nan, math.inf, 0
    v = seed_mean_val_variance(np.stack(diffs))
    images = min((c for c in counts if c), default=None) if None not in counts else None
    return float(v), (images - 1.0 if images and images > 1 else math.inf), len(diffs)
