"""``per_class.csv`` of a sweep: AP per class of every finished run, in long format (one line per run and class).

The rows come from ultralytics' own per-class results of each run's validation (:func:`yolo_necks.cocoeval.per_class`:
one row per class with ground truth in the val split). A run returns them inside its row under :data:`ROW_KEY`; the
sweep process (the only writer, like ``results.csv``) takes them out and appends them here *before* it appends the
run's row to ``results.csv``, through a temporary file and ``os.replace`` under the folder lock. So a run recorded in
``results.csv`` always has its classes here; a crash between the two appends leaves classes of a run that is not
recorded yet, which trains again on resume and appends its classes again: readers keep the last rows of each
(config_hash, class) (:func:`read`), and the summaries use only the runs ``results.csv`` records as finished. A
failed run has no rows.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .store import atomic_write, folder_lock

PER_CLASS = "per_class.csv"
ROW_KEY = "_per_class"  # where a run's row carries its per-class rows to the sweep process (never a column)
COLUMNS = ["sweep", "arm", "seed", "config_hash", "class", "name", "n_instances", "ap50", "ap50_95"]


def _cell(v) -> str:
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def append(folder: str | Path, row: dict, classes: list[dict]) -> int:
    """Append the per-class rows of one run (``row``: its results row, for sweep, arm, seed and config hash); returns
    how many lines were written."""
    if not classes:
        return 0
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PER_CLASS
    ident = {k: row.get(k, "") for k in ("sweep", "arm", "seed", "config_hash")}
    lines = [{**ident, **{k: c.get(k, "") for k in COLUMNS[4:]}} for c in classes]
    with folder_lock(folder):
        old = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""
        header = next(csv.reader(io.StringIO(old)), None) if old else None
        buf = io.StringIO()
        if header == COLUMNS:
            buf.write(old if old.endswith("\n") else old + "\n")
            columns = COLUMNS
        else:  # new, or written with other columns: every old line under the union
            previous = list(csv.DictReader(io.StringIO(old))) if old else []
            columns = list(header or []) + [c for c in COLUMNS if c not in (header or [])]
            writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(previous)
        writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
        writer.writerows([{k: _cell(v) for k, v in line.items()} for line in lines])
        atomic_write(path, buf.getvalue())
    return len(lines)


def read(folder: str | Path):
    """The per-class rows of a sweep folder as a DataFrame (the last rows of each run's config hash and class; empty
    with :data:`COLUMNS` when the sweep has none, e.g. it was recorded before per-class AP)."""
    import pandas as pd

    path = Path(folder) / PER_CLASS
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return pd.DataFrame(columns=COLUMNS)
    if not len(df) or not {"config_hash", "class"} <= set(df.columns):
        return pd.DataFrame(columns=COLUMNS)
    return df.drop_duplicates(subset=["config_hash", "class"], keep="last").reset_index(drop=True)
