"""Figures of a sweep, drawn on matplotlib's Agg canvas directly (no pyplot, no change of the process-wide backend)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .stats import _num, pareto_arms


def plot_pareto(summary: pd.DataFrame, path: Path, title: str, xlabel: str) -> Path:
    """mAP50-95 against batch-1 latency, mean ± std over seeds, baseline marked, Pareto front drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pts = summary[(summary["n_ok"] > 0)].copy()
    pts = pts[pts["latency_ms_mean"].map(_num).map(math.isfinite) & pts["map50_95_mean"].map(_num).map(math.isfinite)]
    for _, r in pts.iterrows():
        x, y = float(r["latency_ms_mean"]), float(r["map50_95_mean"])
        xerr = _num(r["latency_ms_std"])
        yerr = _num(r["map50_95_std"])
        is_base = bool(r["baseline"])
        ax.errorbar(
            x, y, xerr=xerr if math.isfinite(xerr) else None, yerr=yerr if math.isfinite(yerr) else None,
            fmt="*" if is_base else "o", ms=14 if is_base else 7, color="tab:red" if is_base else "tab:blue",
            ecolor="0.55", elinewidth=1, capsize=3, zorder=3,
        )  # fmt: skip
        ax.annotate(f"{r['arm']}" + (" (baseline)" if is_base else ""), (x, y), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)  # fmt: skip
    front = pts[pts["arm"].isin(pareto_arms(pts))].sort_values("latency_ms_mean")  # the table's Pareto column
    if len(front) > 1:
        ax.plot(front["latency_ms_mean"].astype(float), front["map50_95_mean"].astype(float), "--", color="0.6", lw=1,
                zorder=1, label="Pareto front")  # fmt: skip
        ax.legend(loc="lower right", fontsize=8)
    if not len(pts):
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    failed = [str(a) for a in summary[summary["n_ok"] == 0]["arm"]]
    if failed:
        ax.text(0.01, 0.01, f"failed, not shown: {', '.join(failed)}", transform=ax.transAxes, fontsize=8,
                color="tab:red", va="bottom")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP50-95 (val), mean ± std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
