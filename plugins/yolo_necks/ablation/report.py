"""Reports derived from ``results.csv`` only: ``summary.csv``, ``summary.md``, ``pareto.png``, and ``compare``.

Nothing here reads a spec or trains: ``yolo-necks report DIR`` regenerates every file of a sweep folder from its
``results.csv``, and ``yolo-necks compare`` puts several sweeps side by side. Figures are drawn on matplotlib's Agg
canvas directly (no pyplot, no change of the process-wide backend).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import NeckConfigError
from .stats import METRICS, as_strings, latest_runs, mixed_settings, summarize

RESULTS, SUMMARY_CSV, SUMMARY_MD, PARETO = "results.csv", "summary.csv", "summary.md", "pareto.png"
# columns of the summary table: (metric, show a Δ column)
TABLE = [("params", False), ("gflops", False), ("map50_95", True), ("map50", True), ("precision", False),
         ("recall", False), ("latency_ms", True), ("throughput_ips", False)]  # fmt: skip
NA = "n/a"


# ------------------------------------------------------------------------------------------------------ loading
def load_results(path: str | Path) -> pd.DataFrame:
    """``results.csv`` (or a sweep folder holding one) as a DataFrame."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS
    if not p.is_file():
        raise NeckConfigError(f"{p}: results file not found")
    try:
        df = pd.read_csv(p, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise NeckConfigError(f"{p}: not a readable results.csv ({' '.join(str(e).split())})") from None
    missing = [c for c in ("arm", "seed", "status") if c not in df.columns]
    if missing:
        raise NeckConfigError(f"{p}: not a results.csv (missing columns {', '.join(missing)})")
    if "error" in df.columns:
        df["error"] = ["" if pd.isna(v) else str(v) for v in df["error"]]
    return df


# ----------------------------------------------------------------------------------------------------- formatting
def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def fmt(metric: str, v) -> str:
    v = _num(v)
    if not math.isfinite(v):
        return NA
    if metric == "params":
        return f"{v / 1e6:.3f}M"
    return METRICS[metric][2].format(v)


def fmt_mean_std(metric: str, row) -> str:
    mean, std = _num(row.get(f"{metric}_mean")), _num(row.get(f"{metric}_std"))
    if not math.isfinite(mean):
        return NA
    if metric in ("params", "gflops") or not math.isfinite(std):
        return fmt(metric, mean)
    return f"{fmt(metric, mean)} ± {fmt(metric, std)}"


def _signed(metric: str, v: float) -> str:
    text = fmt(metric, abs(v))
    return ("+" if v >= 0 else "−") + text


def fmt_delta(metric: str, row, ci: bool | None = None) -> str:
    """``+0.012 [−0.004, +0.028]`` (paired 95% CI), ``+0.012 [CI n/a, n=1]``, or ``—`` for the baseline. Params and
    GFLOPs do not vary over seeds: no interval by default."""
    if ci is None:
        ci = metric not in ("params", "gflops")
    if bool(row.get("baseline")) and str(row.get("baseline")).lower() not in ("false", "0"):
        return "—"
    d, n = _num(row.get(f"{metric}_delta")), int(_num(row.get(f"{metric}_delta_n")) or 0)
    if not math.isfinite(d):
        return NA
    text = _signed(metric, d)
    if metric == "latency_ms":
        base = _num(row.get(f"{metric}_mean")) - d
        if base > 0:
            text += f" ({100 * d / base:+.1f}%)".replace("-", "−")
    if not ci:
        return text
    lo, hi = _num(row.get(f"{metric}_delta_lo")), _num(row.get(f"{metric}_delta_hi"))
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{text} [CI {NA}, n={n}]"
    return f"{text} [{_signed(metric, lo)}, {_signed(metric, hi)}]"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + [
        "| " + " | ".join(r) + " |" for r in esc
    ]


def _unique(runs: pd.DataFrame, col: str) -> str:
    """The distinct non-empty values of a column, comma-separated."""
    if col not in runs.columns:
        return ""
    return ", ".join(v for v in dict.fromkeys(as_strings(runs[col])) if v)


# -------------------------------------------------------------------------------------------------------- summary
def render_markdown(results: pd.DataFrame, summary: pd.DataFrame) -> str:
    runs = latest_runs(results)
    sweep = _unique(runs, "sweep") or "sweep"
    reduced = _unique(runs, "reduced")
    title = f"# Neck ablation `{sweep}`" + (f" (reduced: {reduced})" if reduced else "")
    lines = [title, ""]
    if reduced:
        lines += [f"> **Reduced sweep ({reduced})**: smaller images, fewer images and epochs (and easier dataset parameters) than the full sweep so "
                  "that it finishes on this machine. Params, GFLOPs and latency are exact for this setting; mAP after "
                  "so short a schedule from scratch is a rough early-training signal, not a final result.", ""]  # fmt: skip
    base = summary[summary["baseline"]]["arm"].tolist() if len(summary) else []
    seeds = " ".join(str(s) for s in dict.fromkeys(runs["seed"]))
    setting = [
        f"model {_unique(runs, 'model')} scale {_unique(runs, 'scale')}",
        f"data {_unique(runs, 'data')} {_unique(runs, 'data_params').replace('{}', '')}".rstrip(),
        f"{_unique(runs, 'epochs')} epochs, imgsz {_unique(runs, 'imgsz')}, batch {_unique(runs, 'batch')}",
        f"seeds {seeds}, deterministic",
        f"device {_unique(runs, 'device')} ({_unique(runs, 'device_name')})",
        f"train_args {_unique(runs, 'train_args') or '{}'}",
    ]
    lines += ["- " + "; ".join(setting[:3]), "- " + "; ".join(setting[3:])]
    ok = runs[runs["status"].astype(str) == "ok"]
    if len(ok):
        lines.append(
            f"- speed: fused model in eval mode, forward pass only (no pre-processing or NMS), "
            f"{_unique(ok, 'speed_dtype')} on {_unique(ok, 'speed_device')} ({_unique(ok, 'speed_device_name')}); "
            f"latency = batch-1 median (and p90) of {_unique(ok, 'speed_repeats')} timed passes after "
            f"{_unique(ok, 'speed_warmup')} warm-up passes; throughput at batch {_unique(ok, 'throughput_batch')} "
            f"({_unique(ok, 'throughput_repeats')} timed passes)"
        )
    lines.append(
        f"- Δ = arm − baseline ({', '.join(base) or 'none'}), paired by seed; [95% CI] from Student's t over the "
        "paired seeds (n/a with fewer than 2 pairs). mAP from ultralytics' validator on the val split with each "
        "run's best weights; params/GFLOPs from ultralytics (unfused model, at imgsz). Failed runs are not averaged."
    )
    mixed = mixed_settings(results)
    if mixed:
        what = "; ".join(f"{k}: {' vs '.join(v)}" for k, v in mixed.items())
        lines += ["", f"> **Warning**: the latest runs do not share the same settings ({what}); deltas mix them."]
    lines.append("")
    header = ["Arm", "Block", "Runs ok"]
    for metric, delta in TABLE:
        label = METRICS[metric][0]
        header.append(label)
        if delta:
            header.append(f"Δ {label} [95% CI]")
    rows = []
    for _, r in summary.iterrows():
        arm = f"**{r['arm']}** (baseline)" if r["baseline"] else str(r["arm"])
        runs_ok = f"{int(r['n_ok'])}/{int(r['n_runs'])}"
        if int(r["n_failed"]):
            runs_ok += f" ({int(r['n_failed'])} failed)"
        cells = [arm, str(r["block"]), runs_ok]
        for metric, delta in TABLE:
            if int(r["n_ok"]) == 0:
                cells.append("failed")
                if delta:
                    cells.append(NA)
                continue
            cells.append(fmt_mean_std(metric, r))
            if delta:
                cells.append(fmt_delta(metric, r))
        rows.append(cells)
    lines += _md_table(header, rows)
    failed = runs[runs["status"].astype(str) != "ok"]
    if len(failed):
        lines += ["", "## Failed runs", ""]
        lines += _md_table(
            ["Arm", "Seed", "Status", "Error", "Run folder"],
            [[str(r["arm"]), str(r["seed"]), str(r["status"]), str(r.get("error", "")), str(r.get("run_dir", ""))]
             for _, r in failed.iterrows()],
        )  # fmt: skip
    lines += ["", f"Generated by `yolo-necks report` from {RESULTS} ({len(results)} rows, {len(runs)} latest runs)."]
    return "\n".join(lines) + "\n"


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
    if len(pts) > 1:  # non-dominated arms: no other arm is both faster and more accurate
        order = pts.sort_values(["latency_ms_mean", "map50_95_mean"], ascending=[True, False])
        front, best = [], -math.inf
        for _, r in order.iterrows():
            if float(r["map50_95_mean"]) > best:
                front.append((float(r["latency_ms_mean"]), float(r["map50_95_mean"])))
                best = float(r["map50_95_mean"])
        if len(front) > 1:
            xs, ys = zip(*front)
            ax.plot(xs, ys, "--", color="0.6", lw=1, zorder=1, label="Pareto front")
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


def write_report(sweep: str | Path) -> dict:
    """(Re)generate ``summary.csv``, ``summary.md`` and ``pareto.png`` of a sweep folder (or next to a results.csv).

    Returns ``{"summary": DataFrame, "markdown": str, "paths": [...]}``.
    """
    p = Path(sweep)
    folder = p if p.is_dir() else p.parent
    results = load_results(p)
    summary = summarize(results)
    if summary.empty:
        raise NeckConfigError(f"{folder / RESULTS}: no runs recorded yet")
    md = render_markdown(results, summary)
    from .runner import atomic_write

    atomic_write(folder / SUMMARY_CSV, summary.to_csv(index=False))
    atomic_write(folder / SUMMARY_MD, md)
    runs = latest_runs(results)
    ok = runs[runs["status"].astype(str) == "ok"]
    sweep_name = _unique(runs, "sweep") or folder.name
    reduced = _unique(runs, "reduced")
    title = f"{sweep_name}: mAP50-95 vs latency" + (f" (reduced: {reduced})" if reduced else "")
    xlabel = "batch-1 latency (ms)"
    if len(ok):
        xlabel += f", {_unique(ok, 'speed_dtype')} on {_unique(ok, 'speed_device_name') or _unique(ok, 'speed_device')}"
    plot_pareto(summary, folder / PARETO, title, xlabel)
    return {"summary": summary, "markdown": md, "paths": [folder / n for n in (SUMMARY_CSV, SUMMARY_MD, PARETO)]}


# -------------------------------------------------------------------------------------------------------- compare
def load_summary(path: str | Path) -> tuple[pd.DataFrame, str]:
    """(summary, label) from a sweep folder, a results.csv or a summary.csv."""
    p = Path(path)
    if p.is_dir():
        if (p / RESULTS).is_file():
            p = p / RESULTS
        elif (p / SUMMARY_CSV).is_file():
            p = p / SUMMARY_CSV
        else:
            raise NeckConfigError(f"{path}: no {RESULTS} or {SUMMARY_CSV} in this folder")
    if not p.is_file():
        raise NeckConfigError(f"{path}: file not found")
    try:
        head = pd.read_csv(p, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise NeckConfigError(f"{p}: not a readable CSV ({' '.join(str(e).split())})") from None
    if "n_ok" in head:
        summary = pd.read_csv(p)
        summary["baseline"] = summary["baseline"].astype(str).str.lower().isin(["true", "1"])
    elif "status" in head:
        summary = summarize(load_results(p))
    else:
        raise NeckConfigError(f"{p}: neither a results.csv nor a summary.csv of a sweep")
    if summary.empty:
        raise NeckConfigError(f"{p}: no runs recorded")
    label = str(summary["sweep"].dropna().iloc[0]) if "sweep" in summary and summary["sweep"].notna().any() else ""
    return summary, label or p.parent.name


def compare(paths: list[str | Path], metrics: list[str] | None = None) -> str:
    """Markdown: the arms of several sweeps side by side; per sweep each metric (mean ± std) and its Δ vs that
    sweep's baseline (paired 95% CI); then, for the first metric, each sweep's difference to the first sweep."""
    metrics = list(metrics or ["map50_95", "latency_ms"])
    for m in metrics:
        if m not in METRICS:
            raise NeckConfigError(f"compare: unknown metric '{m}' (choose from {', '.join(METRICS)})")
    if len(paths) < 1:
        raise NeckConfigError("compare: give at least one results.csv, summary.csv or sweep folder")
    loaded, labels = [], []
    for p in paths:
        summary, label = load_summary(p)
        base = label
        k = 2
        while label in labels:
            label, k = f"{base} ({k})", k + 1
        loaded.append(summary)
        labels.append(label)
    arms = list(dict.fromkeys(a for s in loaded for a in s["arm"]))
    header = ["Arm"]
    for label in labels:
        for m in metrics:
            header += [f"{label}: {METRICS[m][0]}", f"{label}: Δ vs baseline"]
    first = metrics[0]
    for label in labels[1:]:
        header.append(f"{METRICS[first][0]}: {label} − {labels[0]}")
    rows = []
    for arm in arms:
        cells = [arm]
        means = []
        for s in loaded:
            hit = s[s["arm"] == arm]
            r = hit.iloc[0].to_dict() if len(hit) else None
            means.append(_num(r.get(f"{first}_mean")) if r else float("nan"))
            for m in metrics:
                if r is None:
                    cells += ["—", "—"]
                elif int(_num(r.get("n_ok")) or 0) == 0:
                    cells += ["failed", NA]
                else:
                    cells += [fmt_mean_std(m, r), fmt_delta(m, r)]
        for mean in means[1:]:
            d = mean - means[0]
            cells.append(_signed(first, d) if math.isfinite(d) else NA)
        rows.append(cells)
    lines = ["# Sweep comparison", ""]
    for label, s, p in zip(labels, loaded, paths):
        base = ", ".join(s[s["baseline"]]["arm"]) or "none"
        info = [f"baseline {base}"]
        for col, name in (("reduced", "reduced"), ("epochs", "epochs"), ("imgsz", "imgsz"), ("data", "data"),
                          ("device", "device")):  # fmt: skip
            if col in s.columns and s[col].notna().any() and str(s[col].dropna().iloc[0]) not in ("", "nan"):
                info.append(f"{name} {s[col].dropna().iloc[0]}")
        lines.append(f"- **{label}** ({p}): " + ", ".join(info))
    lines += [
        "",
        "Δ vs baseline: paired by seed within each sweep, [95% CI] from Student's t. The last column(s): difference of "
        "means between sweeps (not paired).",
        "",
    ]
    lines += _md_table(header, rows)
    return "\n".join(lines) + "\n"
