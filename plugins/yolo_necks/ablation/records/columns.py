"""The one table of result columns: every column of ``results.csv`` (and the per-arm speed metrics of ``speed.csv``
that the summaries treat alike), defined once.

Each :class:`Column` says what it is (``role``: identity of a run, a setting it shares with the other runs of a
comparable sweep, a metric, or provenance: where, when and with what it ran), how a table shows it (``label``,
``fmt``), which way is better, and how MLflow tracks it (``tracked``: ``tag``, ``param``, ``metric``, several, or
none). The store writes :data:`RESULTS_COLUMNS` in this order; the statistics summarise :data:`METRICS`; the summary
warns when a :data:`SETTING_COLUMNS` differs between runs; tracking reads :data:`TAG_COLUMNS`, :data:`PARAM_COLUMNS`
and :data:`NOT_METRICS`. A new column is one row here (and the code that fills it).

``results.csv`` holds no always-empty column: latency and throughput are timed once per arm per sweep and live in
``speed.csv``; the per-run speed columns that sweeps recorded before that (``legacy``) are still understood when an
older file is read (:func:`upgrade_results`), never written.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Column:
    name: str
    role: str  # "identity" | "setting" | "metric" | "provenance"
    label: str = ""  # how a summary table names a metric
    fmt: str = ""  # how a summary table formats a metric
    higher_is_better: bool | None = None
    tracked: tuple[str, ...] = ()  # MLflow: "tag", "param", "metric"
    summary: int = 0  # position among the metrics a summary gives mean ± std and Δ for (0: not summarised)
    shared: bool = False  # a setting every run of a comparable sweep shares (the summary warns when it differs)
    fraction: bool = False  # a metric on the 0..1 scale (one target or margin applies to all of them)
    legacy: bool = False  # recorded by older harness versions only: read, never written


ROLES = ("identity", "setting", "metric", "provenance")
M, TAG, PARAM = ("metric",), ("tag",), ("tag", "param")

TABLE: tuple[Column, ...] = (
    Column("sweep", "identity", tracked=TAG),
    Column("arm", "identity", tracked=PARAM),
    Column("block", "identity", tracked=PARAM),
    Column("placement", "identity", tracked=PARAM),
    Column("edited_layers", "identity"),
    Column("baseline", "identity"),
    Column("seed", "identity", tracked=PARAM),
    Column("status", "provenance", tracked=TAG),
    Column("error", "provenance"),  # a tag of failed runs only (tracking.row_tags)
    Column("params", "metric", "Params", "{:,.0f}", False, M, summary=8),
    Column("gflops", "metric", "GFLOPs", "{:.2f}", False, M, summary=9),
    Column("map50", "metric", "mAP50", "{:.3f}", True, M, summary=2, fraction=True),
    Column("map50_95", "metric", "mAP50-95", "{:.3f}", True, M, summary=1, fraction=True),
    Column("precision", "metric", "Precision", "{:.3f}", True, M, summary=3, fraction=True),
    Column("recall", "metric", "Recall", "{:.3f}", True, M, summary=4, fraction=True),
    Column("map50_se", "metric", tracked=M),
    Column("map50_95_se", "metric", tracked=M),
    # COCO's evaluator on the same predictions (cocoeval.py): overall AP, AP by object size, AR@100; an empty size
    # bucket is an empty cell, its count 0. Bootstrap SEs over the val images as for the mAPs above.
    Column("coco_map50_95", "metric", "COCO AP", "{:.3f}", True, M, summary=11, fraction=True),
    Column("map_small", "metric", "AP small", "{:.3f}", True, M, summary=12, fraction=True),
    Column("map_medium", "metric", "AP medium", "{:.3f}", True, M, summary=13, fraction=True),
    Column("map_large", "metric", "AP large", "{:.3f}", True, M, summary=14, fraction=True),
    Column("coco_map50", "metric", "COCO AP50", "{:.3f}", True, M),
    Column("ar100", "metric", "AR@100", "{:.3f}", True, M),
    Column("coco_map50_95_se", "metric", tracked=M),
    Column("map_small_se", "metric", tracked=M),
    Column("map_medium_se", "metric", tracked=M),
    Column("map_large_se", "metric", tracked=M),
    Column("coco_map50_se", "metric", tracked=M),
    Column("ar100_se", "metric", tracked=M),
    Column("n_small", "provenance", tracked=M),  # ground-truth boxes of the val split per size bucket
    Column("n_medium", "provenance", tracked=M),
    Column("n_large", "provenance", tracked=M),
    Column("epochs", "setting", tracked=M, shared=True),
    Column("epochs_run", "metric", tracked=M),
    Column("train_s", "metric", "Train time (s)", "{:.1f}", False, M, summary=10),
    Column("train_ips", "metric", tracked=M),
    Column("val_s", "metric", tracked=M),
    Column("wall_s", "metric", tracked=M),
    Column("cpu_s", "metric", tracked=M),
    # per-arm speed (speed.csv); per-run columns of results.csv before per-arm timing
    Column("latency_ms", "metric", "Latency (ms)", "{:.2f}", False, M, summary=5, legacy=True),
    Column("latency_p90_ms", "metric", "Latency p90 (ms)", "{:.2f}", False, M, summary=6, legacy=True),
    Column("latency_std_ms", "metric", tracked=M, legacy=True),
    Column("throughput_ips", "metric", "Throughput (img/s)", "{:.1f}", True, M, summary=7, legacy=True),
    Column("speed_device", "setting", shared=True, legacy=True),
    Column("speed_device_name", "setting", shared=True, legacy=True),
    Column("speed_dtype", "setting", shared=True, legacy=True),
    Column("speed_repeats", "setting", tracked=M, shared=True, legacy=True),
    Column("speed_warmup", "setting", tracked=M, legacy=True),
    Column("throughput_batch", "setting", tracked=M, shared=True, legacy=True),
    Column("throughput_repeats", "setting", tracked=M, legacy=True),
    Column("speed_threads", "setting", tracked=M, legacy=True),
    Column("speed_concurrent", "provenance", tracked=M, legacy=True),
    Column("imgsz", "setting", tracked=M, shared=True),
    Column("batch", "setting", tracked=M, shared=True),
    Column("workers", "setting", tracked=M),
    Column("model", "setting", shared=True),
    Column("scale", "setting", shared=True),
    Column("data", "setting", shared=True),
    Column("data_params", "setting", shared=True),
    Column("train_args", "setting", shared=True),
    Column("reduced", "setting", shared=True),
    Column("pretrained", "setting"),
    Column("pretrained_sha", "setting", tracked=TAG, shared=True),
    Column("transferred", "provenance"),
    Column("scratch_layers", "provenance"),
    Column("freeze", "setting", shared=True),
    Column("size_buckets", "setting", tracked=TAG, shared=True),  # [a, b] px² of the original image
    Column("device", "setting", tracked=TAG, shared=True),
    Column("device_name", "provenance"),
    Column("run_device", "provenance", tracked=TAG),
    Column("threads", "provenance", tracked=M),
    Column("executor", "provenance", tracked=TAG),
    Column("node", "provenance", tracked=TAG),
    Column("node_id", "provenance"),
    Column("torch", "provenance", tracked=TAG),
    Column("torch_build", "provenance"),
    Column("ultralytics", "provenance", tracked=TAG),
    Column("yolo_necks", "provenance", tracked=TAG),
    Column("python", "provenance"),
    Column("git_commit", "provenance", tracked=TAG),
    Column("config_hash", "provenance", tracked=TAG),
    Column("run_dir", "provenance", tracked=TAG),
    Column("weights", "provenance"),
    Column("model_yaml", "provenance"),
    Column("started_at", "provenance", tracked=TAG),
    Column("finished_at", "provenance", tracked=TAG),
)
BY_NAME = {c.name: c for c in TABLE}

# what the stages read
RESULTS_COLUMNS = [c.name for c in TABLE if not c.legacy]  # results.csv, in this order
# metric -> (label, higher is better, format), in the order summaries show them
METRICS: dict[str, tuple[str, bool, str]] = {
    c.name: (c.label, bool(c.higher_is_better), c.fmt) for c in sorted(TABLE, key=lambda c: c.summary) if c.summary
}
FRACTION_METRICS = tuple(m for m in METRICS if BY_NAME[m].fraction)
SIZE_METRICS = {"map_small": "small", "map_medium": "medium", "map_large": "large"}  # metric -> its size bucket
SETTING_COLUMNS = tuple(c.name for c in TABLE if c.shared)
TAG_COLUMNS = tuple(c.name for c in TABLE if "tag" in c.tracked)
PARAM_COLUMNS = tuple(c.name for c in TABLE if "param" in c.tracked)
# columns that may look numeric but are never metrics (MLflow): every column not tracked as one, and the run id
NOT_METRICS = frozenset([c.name for c in TABLE if "metric" not in c.tracked] + ["mlflow_run_id"])


# --------------------------------------------------------------------------------------------------- cell values
def is_true(v) -> bool:
    """A boolean cell as pandas or csv may give it back (True, 'True', 1, 1.0, 'yes')."""
    return str(v).strip().lower() in ("true", "1", "1.0", "yes")


def num(v) -> float:
    """A cell as a float (NaN when empty or not a number)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def as_strings(col: pd.Series) -> list[str]:
    """Cells as text; whole floats (ints that pandas read as floats next to empty cells) without '.0'."""
    out = []
    for v in col:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append("" if pd.isna(v) else str(v))
    return out


# -------------------------------------------------------------------------------------------------- older files
def upgrade_results(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of a ``results.csv`` of any harness version in today's terms, converted once, when read: error cells as
    text. Columns an older version did not record stay absent (the summaries say what they cannot show); the per-run
    speed columns of sweeps timed before per-arm timing (``legacy``) are kept, since those sweeps have no
    ``speed.csv``."""
    if "error" in df.columns:
        df["error"] = ["" if pd.isna(v) else str(v) for v in df["error"]]
    return df
