"""Figures of a sweep, drawn on matplotlib's Agg canvas directly (no pyplot, no change of the process-wide backend):
``pareto.png`` (accuracy against latency, from the summary) and ``curves.png`` (training curves, from each run's
ultralytics ``results.csv``)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..records.columns import is_true, num
from .stats import pareto_arms


def plot_pareto(summary: pd.DataFrame, path: Path, title: str, xlabel: str) -> Path:
    """mAP50-95 against batch-1 latency, mean ± std over seeds, baseline marked, Pareto front drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pts = summary[(summary["n_ok"] > 0)].copy()
    pts = pts[pts["latency_ms_mean"].map(num).map(math.isfinite) & pts["map50_95_mean"].map(num).map(math.isfinite)]
    for _, r in pts.iterrows():
        x, y = float(r["latency_ms_mean"]), float(r["map50_95_mean"])
        xerr = num(r["latency_ms_std"])
        yerr = num(r["map50_95_std"])
        is_base = bool(r["baseline"])
        ax.errorbar(
            x, y, xerr=xerr if math.isfinite(xerr) else None, yerr=yerr if math.isfinite(yerr) else None,
            fmt="*" if is_base else "o", ms=14 if is_base else 7, color="tab:red" if is_base else "tab:blue",
            ecolor="0.55", elinewidth=1, capsize=3, zorder=3,
        )
        ax.annotate(f"{r['arm']}" + (" (baseline)" if is_base else ""), (x, y), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    front = pts[pts["arm"].isin(pareto_arms(pts))].sort_values("latency_ms_mean")  # the table's Pareto column
    if len(front) > 1:
        ax.plot(front["latency_ms_mean"].astype(float), front["map50_95_mean"].astype(float), "--", color="0.6", lw=1,
                zorder=1, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    if not len(pts):
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    failed = [str(a) for a in summary[summary["n_ok"] == 0]["arm"]]
    if failed:
        ax.text(0.01, 0.01, f"failed, not shown: {', '.join(failed)}", transform=ax.transAxes, fontsize=8,
                color="tab:red", va="bottom")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP50-95 (val), mean ± std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


# ------------------------------------------------------------------------------------------------ training curves
CURVE_PANELS = (("train/box_loss", "box loss (train)"), ("train/cls_loss", "cls loss (train)"),
                ("train/dfl_loss", "dfl loss (train)"), ("metrics/mAP50-95(B)", "mAP50-95 (val)"))
MAP_CURVE = "metrics/mAP50-95(B)"
ARM_COLOURS = ("tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive",
               "tab:cyan")
BASELINE_COLOUR = "tab:red"  # as in pareto.png


def _validated_every_epoch(run_dir: Path, row) -> bool:
    """Whether a run validated after every epoch: ultralytics' ``val`` argument as the run's ``args.yaml`` recorded
    it (else the row's train_args). With ``val=False`` ultralytics validates only the final epoch and writes zeros
    for the others in its results.csv."""
    import json

    import yaml

    val = None
    try:
        args = yaml.safe_load((run_dir / "args.yaml").read_text(encoding="utf-8"))
        val = args.get("val") if isinstance(args, dict) else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        pass
    if val is None:
        try:
            train_args = json.loads(str(row.get("train_args") or "{}"))
            val = train_args.get("val", True) if isinstance(train_args, dict) else True
        except ValueError:
            val = True
    return val is True or str(val).strip().lower() == "true"


def _run_folder(run_dir, folder: Path | None) -> Path | None:
    """A run's folder: as recorded, else under ``folder/runs/`` (a sweep folder that was moved or copied)."""
    if not isinstance(run_dir, str) or not run_dir:
        return None
    recorded = Path(run_dir)
    if (recorded / "results.csv").is_file() or folder is None:
        return recorded
    return folder / "runs" / recorded.name


def read_curves(runs: pd.DataFrame, folder: Path | None = None) -> dict:
    """The per-epoch training records (ultralytics' ``results.csv`` in each run folder) of the latest runs.

    Returns ``{"arms": {arm: [(seed, frame, validated_every_epoch)]}, "baseline": arm or None, "left_out": ["spp
    seed 1 (failed)", ...]}``; arms in the order of ``runs``, the baseline first. A failed run, or one whose folder
    has no readable results.csv, is left out and named.
    """

    arms: dict[str, list] = {}
    left_out: list[str] = []
    baseline = None
    for _, r in runs.iterrows():
        arm = str(r["arm"])
        if is_true(r.get("baseline")):
            baseline = arm
        seed = int(num(r.get("seed"))) if math.isfinite(num(r.get("seed"))) else r.get("seed")
        label = f"{arm} seed {seed}"
        if str(r.get("status")) != "ok":
            left_out.append(f"{label} (failed)")
            continue
        run_dir = _run_folder(r.get("run_dir"), folder)
        if run_dir is None or not (run_dir / "results.csv").is_file():
            left_out.append(f"{label} (no results.csv)")
            continue
        try:
            df = pd.read_csv(run_dir / "results.csv")
            df.columns = [str(c).strip() for c in df.columns]
            df = df.apply(pd.to_numeric, errors="coerce").dropna(subset=["epoch"])
        except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
            left_out.append(f"{label} (unreadable results.csv)")
            continue
        if df.empty:
            left_out.append(f"{label} (empty results.csv)")
            continue
        arms.setdefault(arm, []).append((seed, df, _validated_every_epoch(run_dir, r)))
    if baseline in arms:
        arms = {baseline: arms[baseline], **{a: v for a, v in arms.items() if a != baseline}}
    return {"arms": arms, "baseline": baseline, "left_out": left_out}


def plot_curves(runs: pd.DataFrame, path: Path, title: str, folder: Path | None = None) -> dict:
    """Training losses (box, cls, dfl) and val mAP50-95 per epoch, one panel each: per arm the mean over seeds and a
    min-max band over seeds, the baseline drawn first. mAP is drawn only for arms whose runs validated after every
    epoch over at least two epochs (with ``val=False`` there is one point, at the end). Runs left out are named
    under the figure. Returns what was drawn: ``{"panels": {column: [arms]}, "left_out": [...], "notes": [...]}``.
    """
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves = read_curves(runs, folder)
    arms, baseline = curves["arms"], curves["baseline"]
    colours = {}
    others = iter(ARM_COLOURS * (1 + len(arms) // len(ARM_COLOURS)))
    for arm in arms:
        colours[arm] = BASELINE_COLOUR if arm == baseline else next(others)
    fig = Figure(figsize=(11.0, 7.5), dpi=120)
    FigureCanvasAgg(fig)
    drawn: dict[str, list[str]] = {}
    notes: list[str] = []
    for i, (column, label) in enumerate(CURVE_PANELS):
        ax = fig.add_subplot(2, 2, i + 1)
        drawn[column] = []
        for arm, seeds in arms.items():
            usable = [(s, df) for s, df, validated in seeds if column in df.columns and
                      (column != MAP_CURVE or (validated and df["epoch"].nunique() >= 2))]
            if column == MAP_CURVE and len(usable) < len(seeds):
                notes.append(arm)
            if not usable:
                continue
            per_epoch = pd.concat([df[["epoch", column]] for _, df in usable]).dropna().groupby("epoch")[column]
            mean, lo, hi = per_epoch.mean(), per_epoch.min(), per_epoch.max()
            name = f"{arm} (baseline)" if arm == baseline else arm
            ax.plot(mean.index, mean.values, "-o" if len(mean) < 12 else "-", ms=3, lw=2.0 if arm == baseline else 1.4,
                    color=colours[arm], label=f"{name}, {len(usable)} seed{'s' * (len(usable) != 1)}")
            if len(usable) > 1:
                ax.fill_between(mean.index, lo.values, hi.values, color=colours[arm], alpha=0.15, lw=0)
            drawn[column].append(arm)
        if not drawn[column]:
            why = "no finished run with a results.csv"
            if column == MAP_CURVE and arms:
                why = ("no per-epoch mAP: with val=False ultralytics validates only the final epoch\n"
                       "(or the runs trained one epoch); see summary.md for the final mAP")
            ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=8, transform=ax.transAxes, color="0.35")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if drawn[column]:
            ax.legend(fontsize=7, loc="best")
    foot = []
    if curves["left_out"]:
        foot.append("left out: " + "; ".join(curves["left_out"]))
    notes = list(dict.fromkeys(notes))
    if notes and drawn[MAP_CURVE]:
        foot.append("mAP50-95 per epoch not drawn for " + ", ".join(notes) + " (not validated every epoch: val=False)")
    text = "\n".join(textwrap.fill(line, 170) for line in foot)
    if text:
        fig.text(0.01, 0.01, text, fontsize=7, color="tab:red", va="bottom", ha="left")
    fig.suptitle(f"{title}\nline: mean over seeds; band: min-max over seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.022 * (text.count("\n") + 1 if text else 0), 1, 1))
    fig.savefig(path)
    return {"panels": drawn, "left_out": curves["left_out"], "notes": notes}
