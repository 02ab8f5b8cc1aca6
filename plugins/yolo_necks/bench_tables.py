"""The tables of ``yolo-necks bench``: its rows as GitHub Markdown, and the notes printed under them."""

from __future__ import annotations

import math

import torch

ORDER_SEED = 0  # the seed of the per-round shuffled order of a case's modules (timing.time_interleaved)


def _fmt(value, col: str) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if col in ("vs_ref", "vs_sppf", "vs_torch"):
            return f"{value:.2f}"
        if col == "gflops":
            return f"{value:.3f}"
        if col in ("max_abs_diff_vs_ref", "max_abs_diff_vs_torch"):
            return f"{value:.1e}" if value else "0"
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if col == "params":
        return f"{int(value):,}"
    return str(value)


MD_COLUMNS = {
    "device": "device",
    "dtype": "dtype",
    "layout": "layout",
    "batch": "batch",
    "shape": "CxHxW",
    "module": "module",
    "params": "params",
    "gflops": "GFLOPs/img",
    "median_ms": "median ms",
    "p90_ms": "p90 ms",
    "min_ms": "min ms",
    "std_ms": "std ms",
    "vs_ref": "vs ref",
    "vs_sppf": "vs SPPF",
    "max_abs_diff_vs_ref": "max abs diff vs ref",
}


def to_markdown(df, columns: dict[str, str] | None = None) -> str:
    """A GitHub Markdown table of the bench rows (no extra dependency); ``columns``: {column: header} to show
    instead of the default ones (numbers right-aligned)."""
    names = columns or MD_COLUMNS
    cols = [c for c in names if c in df.columns]
    right = {"batch", "params", "gflops", "median_ms", "p90_ms", "min_ms", "std_ms", "vs_ref", "vs_sppf",
             "max_abs_diff_vs_ref"}
    right |= {c for c in names if c not in MD_COLUMNS and c not in ("format", "runtime", "status", "exact_vs_ref")}
    lines = ["| " + " | ".join(names[c] for c in cols) + " |",
             "|" + "|".join("---:" if c in right else "---" for c in cols) + "|"]
    for rec in df.to_dict("records"):
        lines.append("| " + " | ".join(_fmt(rec[c], c) for c in cols) + " |")
    return "\n".join(lines)


def notes(fuse: bool, threads: int, skipped: list[str]) -> str:
    notes = [
        f"Modules {'fused (Conv+BN folded)' if fuse else 'unfused'}, eval mode; torch {torch.__version__}, "
        f"{threads} CPU thread(s). Timings interleaved per case via yolo_necks.timing.measure, the modules' order "
        f"shuffled every round (seed {ORDER_SEED}).",
        "vs ref: median / median of the block's plain reference formulation (yolo_necks.reference), or of the "
        "ultralytics module a Fast* module replaces; < 1 is faster. vs SPPF: median / ultralytics SPPF's median at "
        "the same device, dtype, layout, batch and shape.",
        "GFLOPs per image: operator-level count (torch FlopCounterMode, 2 per multiply-add as thop x 2); pooling "
        "and other element-wise work are not counted.",
    ]
    notes += [f"Skipped: {s}" for s in skipped]
    return "\n".join(f"- {n}" for n in notes)
