"""``val_bootstrap.npz`` in a run folder: the run's bootstrap replicates of its mAPs over the val images (one row per
resample, the same image indices in every run of a sweep), with a hash of the image names that pairs two runs'
replicates only when they were validated on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "val_bootstrap.npz"


def save(result: dict, folder: Path) -> None:
    """The replicates of a run, for the paired share in the report."""
    if "replicates" in result:
        np.savez(Path(folder) / FILE, replicates=result["replicates"], names_hash=result["names_hash"])


def load(folder) -> tuple[np.ndarray, str] | None:
    """(replicates, image-names hash) of a run folder, or None."""
    path = Path(str(folder)) / FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return z["replicates"], str(z["names_hash"])
    except (OSError, ValueError, KeyError):
        return None
