"""``val_bootstrap.npz`` in a run folder: the run's bootstrap replicates over the val images (one per resample, the
same image indices in every run of a sweep) of every metric it has them for, with a hash of the image names that pairs
two runs' replicates only when they were validated on the same images.

The file holds a named mapping metric -> replicates (``metric_names`` and the R x k ``metric_values``: mAP50,
mAP50-95 and the COCO metrics of :mod:`yolo_necks.cocoeval`, NaN where a resample has no ground truth for a metric),
so that any summarised metric can get its val-set term; ``replicates`` (R x 2: mAP50, mAP50-95) stays beside it as
older harness versions wrote it, and files holding only that are still read (:func:`load_metrics`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "val_bootstrap.npz"
LEGACY = ("map50", "map50_95")  # the columns of ``replicates``


def save(result: dict, folder: Path, extra: dict[str, np.ndarray] | None = None) -> None:
    """The replicates of a run (``result`` from the mAP bootstrap; ``extra``: more metrics' replicates over the same
    resamples, e.g. the COCO size metrics), for the paired val-set terms in the report."""
    if "replicates" not in result:
        return
    reps = np.asarray(result["replicates"], dtype=np.float64)
    named = {m: reps[:, i] for i, m in enumerate(LEGACY)}
    for m, v in (extra or {}).items():
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if len(v) == len(reps) and m not in named:
            named[m] = v
    np.savez(Path(folder) / FILE, replicates=reps, names_hash=result["names_hash"],
             metric_names=np.array(list(named)), metric_values=np.column_stack(list(named.values())),
             images=int(result.get("images", 0)))


def images(folder) -> int | None:
    """The number of val images the replicates resampled (the val-set term's degrees of freedom are one fewer); None
    for a file written before it was recorded, or no file."""
    path = Path(str(folder)) / FILE
    try:
        with np.load(path) as z:
            return (int(z["images"]) or None) if "images" in z.files else None
    except (OSError, ValueError, KeyError):
        return None


def load(folder) -> tuple[np.ndarray, str] | None:
    """(replicates R x 2 of mAP50 and mAP50-95, image-names hash) of a run folder, or None."""
    path = Path(str(folder)) / FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return z["replicates"], str(z["names_hash"])
    except (OSError, ValueError, KeyError):
        return None


def load_metrics(folder) -> tuple[dict[str, np.ndarray], str] | None:
    """({metric: replicates (R,)}, image-names hash) of a run folder, or None; a file of an older harness version
    gives mAP50 and mAP50-95 only."""
    path = Path(str(folder)) / FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if "metric_names" in z.files:
                values = np.asarray(z["metric_values"], dtype=np.float64)
                named = {str(m): values[:, i] for i, m in enumerate(z["metric_names"])}
            else:
                reps = np.asarray(z["replicates"], dtype=np.float64)
                named = {m: reps[:, i] for i, m in enumerate(LEGACY)}
            return named, str(z["names_hash"])
    except (OSError, ValueError, KeyError, IndexError):
        return None
