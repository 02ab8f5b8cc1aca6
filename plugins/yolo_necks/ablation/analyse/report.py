"""Reports derived from ``results.csv``: ``summary.csv``, ``summary.md``, ``pareto.png`` and ``curves.png`` (the
training curves, from the ultralytics ``results.csv`` in each run folder it names).

Nothing here trains: ``yolo-necks report DIR`` regenerates every file of a sweep folder from its ``results.csv``
(the only thing read from the folder's ``spec.yaml`` is the primary ``metric`` and the precision ``target``), and
``yolo-necks compare`` puts several sweeps side by side. Figures are drawn on matplotlib's Agg canvas directly (no
pyplot, no change of the process-wide backend).

``summary.md`` opens with a verdict per arm in plain words (better / worse / no detectable difference on the primary
metric, with Δ and its Holm-adjusted interval, and the Pareto trade-off against latency), then the table (every Δ
with its adjusted interval, paired-t p and Holm-adjusted p; **bold** where the adjusted interval excludes 0; a
Pareto column), then one precision-planning line per arm ("±0.031 now; ±0.010 needs 9 seeds").
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ...errors import NeckConfigError
from ..records.columns import METRICS, is_true, num, upgrade_results
from ..records.perclass import read as read_per_class
from ..records.timings import format_rows, latest_timings
from .formatting import NA, floats, fmt_delta, fmt_mean_std, latency_kind, level_text, md_table, unique
from .plots import plot_curves, plot_pareto
from .sections import (adaptive_policy, equivalence_section, placement_text, precision_section,
                       reproducibility_line, speed_lines, stop_reasons, verdict_section)
from .stats import (DEFAULT_METRIC, DEFAULT_TARGET, check_margin, check_metric_target, latest_runs, mixed_settings,
                    summarize)
from .classes import SUMMARY_PER_CLASS, add_class_columns, class_section, class_summary
from .sizes import size_section
from .contrasts import contrast_section, report_contrasts
from .deployment import add_format_columns, deployment_section, format_cells, format_headers

RESULTS, SUMMARY_CSV, SUMMARY_MD = "results.csv", "summary.csv", "summary.md"
PARETO, CURVES = "pareto.png", "curves.png"
# columns of the summary table: (metric, show a Δ column)
TABLE = [("params", False), ("gflops", False), ("map50_95", True), ("map50", True), ("precision", False),
         ("recall", False), ("latency_ms", True), ("throughput_ips", False)]


# ------------------------------------------------------------------------------------------------------ loading
def load_results(path: str | Path) -> pd.DataFrame:
    """``results.csv`` (or a sweep folder holding one) as a DataFrame of its readable rows.

    Unreadable lines (truncated, garbage) are reported once by the store, left out here and listed in
    ``df.attrs["unreadable"]`` (1-based line numbers), so the summary can say so; the file keeps them.
    """
    from ..records.store import ResultsStore

    p = Path(path)
    if p.is_dir():
        p = p / RESULTS
    if not p.is_file():
        raise NeckConfigError(f"{p}: results file not found")
    store = ResultsStore(p)
    records = store.read_records(warn=True)
    missing = [c for c in ("arm", "seed", "status") if c not in records.header]
    if missing:
        raise NeckConfigError(f"{p}: not a results.csv (missing columns {', '.join(missing)})")
    try:
        df = store.frame(warn=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:  # pragma: no cover - rows were checked
        raise NeckConfigError(f"{p}: not a readable results.csv ({' '.join(str(e).split())})") from None
    df = upgrade_results(df)
    df.attrs["unreadable"] = records.bad_lines
    return df




# -------------------------------------------------------------------------------------------------------- summary
def _primary(summary: pd.DataFrame) -> tuple[str, float]:
    """The (primary metric, target) the summary was computed with (the defaults for an older summary)."""
    metric = str(summary["primary_metric"].iloc[0]) if "primary_metric" in summary.columns else DEFAULT_METRIC
    target = num(summary["target"].iloc[0]) if "target" in summary.columns else DEFAULT_TARGET
    return metric, target





def _start_line(runs: pd.DataFrame) -> str:
    """Where the arms' weights started: from scratch, or a pretrained checkpoint with, per arm, the tensors it
    filled and the layers that trained from scratch (the swapped block, class-count-dependent head convs)."""
    checkpoint = unique(runs, "pretrained")
    if not checkpoint:
        return "- start: from scratch (random initialisation, no pretrained checkpoint)"
    freeze = unique(runs, "freeze")
    per_arm = []
    for arm in dict.fromkeys(runs["arm"]):
        arm_runs = runs[runs["arm"] == arm]
        transferred = unique(arm_runs, "transferred") or NA
        scratch = unique(arm_runs, "scratch_layers").replace("; ", ", ") or "none"
        per_arm.append(f"{arm} {transferred} tensors (from scratch: {scratch})")
    return (f"- start: every arm from `{checkpoint}` (sha256 {unique(runs, 'pretrained_sha')}), "
            f"freeze {freeze or 'none'}; transferred: " + "; ".join(per_arm))


def render_markdown(results: pd.DataFrame, summary: pd.DataFrame, level: float = 0.95,
                    per_class: pd.DataFrame | None = None, notes: list[str] | None = None) -> str:
    """``summary.md``: title, verdict, setting, the table with its note, precision planning, AP by size and per
    class, contrasts (``notes``: contrasts left out), failed runs."""
    runs = latest_runs(results)
    summary, contrasts = split_contrasts(summary)
    metric, target = _primary(summary)
    sweep = unique(runs, "sweep") or "sweep"
    reduced = unique(runs, "reduced")
    title = f"# Neck ablation `{sweep}`" + (f" (reduced: {reduced})" if reduced else "")
    lines = [title, ""]
    if reduced:
        lines += [f"> **Reduced sweep ({reduced})**: smaller images, fewer images and epochs (and easier dataset parameters) than the full sweep so "
                  "that it finishes on this machine. Params, GFLOPs and latency are exact for this setting; mAP after "
                  "so short a schedule from scratch is a rough early-training signal, not a final result.", ""]
    lines += verdict_section(summary, metric, target, level)
    lines += ["## Runs", ""]
    base = summary[summary["baseline"]]["arm"].tolist() if len(summary) else []
    seeds = " ".join(str(s) for s in dict.fromkeys(runs["seed"]))
    setting = [
        f"model {unique(runs, 'model')} scale {unique(runs, 'scale')}",
        f"data {unique(runs, 'data')} {unique(runs, 'data_params').replace('{}', '')}".rstrip(),
        f"{unique(runs, 'epochs')} epochs, imgsz {unique(runs, 'imgsz')}, batch {unique(runs, 'batch')}",
        f"seeds {seeds}, deterministic",
        f"device {unique(runs, 'device')} ({unique(runs, 'device_name')})",
        f"train_args {unique(runs, 'train_args') or '{}'}",
    ]
    lines += ["- " + "; ".join(setting[:3]), "- " + "; ".join(setting[3:])]
    ok = runs[runs["status"].astype(str) == "ok"]
    timed = "speed_session" in summary.columns and summary["speed_session"].astype(str).str.len().gt(0).any()
    if timed:
        lines += speed_lines(summary)
    elif len(ok):
        lines.append(
            f"- speed (timed per run, as sweeps before per-arm timing did): fused model in eval mode, forward pass "
            f"only (no pre-processing or NMS), "
            f"{unique(ok, 'speed_dtype')} on {unique(ok, 'speed_device')} ({unique(ok, 'speed_device_name')}); "
            f"latency = batch-1 median (and p90) of {unique(ok, 'speed_repeats')} timed passes after "
            f"{unique(ok, 'speed_warmup')} warm-up passes; throughput at batch {unique(ok, 'throughput_batch')} "
            f"({unique(ok, 'throughput_repeats')} timed passes)"
        )
    lines.append(
        "- mAP from ultralytics' validator on the val split with each run's best weights; params/GFLOPs from "
        "ultralytics (unfused model, at imgsz). Failed runs are not averaged."
    )
    lines.append(_start_line(runs))
    lines.append(reproducibility_line(runs))
    mixed = mixed_settings(results)
    if mixed:
        what = "; ".join(f"{k}: {' vs '.join(v)}" for k, v in mixed.items())
        lines += ["", f"> **Warning**: the latest runs do not share the same settings ({what}); deltas mix them."]
    lines.append("")
    placed = any(placement_text(r) for _, r in summary.iterrows())  # results recorded before placements: no column
    header = ["Arm", "Block"] + ["Placement"] * placed + ["Runs ok"]
    for col, delta in TABLE:
        label = METRICS[col][0]
        header.append("Latency, median (ms)" if col == "latency_ms" and timed else label)
        if delta:
            header.append(f"Δ {label} [adj. CI] p (Holm)")
    header += format_headers(summary)  # a latency column per deployment format beyond torch (speed.formats)
    header.append("Pareto")
    rows = []
    for _, r in summary.iterrows():
        arm = f"**{r['arm']}** (baseline)" if r["baseline"] else str(r["arm"])
        runs_ok = f"{int(r['n_ok'])}/{int(r['n_runs'])}"
        if int(r["n_failed"]):
            runs_ok += f" ({int(r['n_failed'])} failed)"
        cells = [arm, str(r["block"])] + [placement_text(r)] * placed + [runs_ok]
        for col, delta in TABLE:
            if int(r["n_ok"]) == 0:
                cells.append("failed")
                if delta:
                    cells.append(NA)
                continue
            cells.append(fmt_mean_std(col, r))
            if delta:
                cells.append(fmt_delta(col, r))
        cells += format_cells(summary, r)
        cells.append("yes" if is_true(r.get("pareto")) else "")
        rows.append(cells)
    lines += md_table(header, rows)
    lines += ["", _table_note(summary, base, metric, level) + (LATENCY_NOTE if timed else "")]
    lines += ["", f"Training curves: [{CURVES}]({CURVES}) (box, cls and dfl training losses and val mAP50-95 per "
              "epoch, mean over seeds with a min-max band, from each run's ultralytics results.csv)."]
    lines += precision_section(summary, metric, target)
    lines += equivalence_section(summary, metric)
    lines += size_section(summary, runs)
    lines += class_section(per_class if per_class is not None else pd.DataFrame())
    lines += contrast_section(contrasts, summary, metric, level, notes)
    lines += deployment_section(summary, level)
    failed = runs[runs["status"].astype(str) != "ok"]
    if len(failed):
        lines += ["", "## Failed runs", ""]
        lines += md_table(
            ["Arm", "Seed", "Status", "Error", "Run folder"],
            [[str(r["arm"]), str(r["seed"]), str(r["status"]), str(r.get("error", "")), str(r.get("run_dir", ""))]
             for _, r in failed.iterrows()],
        )
    bad = results.attrs.get("unreadable") or []
    if bad:
        lines += ["", f"> **Warning**: {RESULTS} has {len(bad)} unreadable line(s) ({', '.join(map(str, bad))}: "
                  "truncated or not a results row); they are left out of this summary and kept in the file."]
    lines += ["", f"Generated by `yolo-necks report` from {RESULTS} ({len(results)} rows, {len(runs)} latest runs)."]
    return "\n".join(lines) + "\n"


# what the latency columns are when the arms were timed once per sweep (:mod:`..execute.arm_speed`)
LATENCY_NOTE = (
    " Latency: the median over the rounds of one timing session ± their SD. Δ Latency: the mean of the per-round "
    "paired differences to the baseline (paired by timing round, not by seed; % of the baseline's median), its "
    "[adj. CI] over the timing rounds of that one session: timing noise only, not the spread between machines or "
    "seeds; adjusted over the arms like the other metrics."
)


def _covers_note(others: pd.DataFrame) -> str:
    """What the table's intervals cover, metric by metric: the seeds and the val set's images where the runs stored
    paired bootstrap replicates (their val-set SE is summary.csv's ``*_val_se``), else the seeds only."""
    with_val = [METRICS[c][0] for c, _ in TABLE if f"{c}_val_se" in others.columns
                and pd.to_numeric(others[f"{c}_val_se"], errors="coerce").notna().any()]
    if not with_val:
        return ("it covers the seeds only (the runs stored no bootstrap replicates over the val images: the interval "
                "is conditional on this val split)")
    return (f"for {', '.join(with_val)} it covers the seeds and the val set's images (half-width "
            "√((t·sd/√n)² + (t′·SE_val)²): sd over the paired seeds with n − 1 degrees of freedom, SE_val the SD of "
            "the seed-averaged Δ over the runs' paired bootstrap replicates of the val images, `*_val_se` in "
            "summary.csv, with the val images − 1), for an arm without replicates and for the other metrics the seeds "
            "only (latency: the timing rounds)")


def _table_note(summary: pd.DataFrame, base: list[str], metric: str, level: float) -> str:
    """The note under the table: what Δ, the adjusted interval, the bold mark, p, Holm and Pareto mean."""
    alpha = 1.0 - level
    others = summary[~summary["baseline"].map(is_true)]
    m = sum(map(math.isfinite, floats(others[f"{metric}_delta_p_holm"])))
    family = (f"the m = {m} arms compared with the baseline (per metric; arms with fewer than 2 paired seeds have no "
              "p-value and do not count)")
    c = int(summary.attrs.get("contrasts_in_family", 0))
    if c:
        family = (f"the m = {m + c} comparisons of each metric's family: the {m} arms compared with the baseline and "
                  f"the {c} contrasts between arms (comparisons with fewer than 2 paired seeds have no p-value and do "
                  "not count)")
        m += c
    return (
        f"Δ = arm − baseline ({', '.join(base) or 'none'}), paired by seed. [adj. CI]: Student-t interval of the "
        f"seed-averaged Δ; {_covers_note(others)}; adjusted for {family} consistently with Holm's procedure: at "
        f"level 1 − {alpha:g}/m "
        + (f"({level_text(1 - alpha / m)}) " if m else "")
        + f"for a Δ Holm does not reject, at 1 − {alpha:g}/(m − j + 1) for the Δ rejected at Holm step j. "
        f"**Bold** Δ: the adjusted interval excludes 0, exactly when the Holm-adjusted p ≤ {alpha:g} (family-wise "
        f"error ≤ {alpha:.0%}). p: t-test of Δ = 0 with that standard error; Holm: Holm-adjusted p. CI n/a: fewer "
        "than 2 paired seeds. "
        f"Unadjusted {level:.0%} intervals are in summary.csv (`*_delta_lo`, `*_delta_hi`). Pareto: no other arm is "
        f"at least as accurate (mean mAP50-95) and at least as fast ({latency_kind(summary)} latency) and better on one "
        "(the front in pareto.png)."
    )





def report_settings(folder: str | Path, target: float | None = None, metric: str | None = None,
                    margin: float | None = None) -> tuple[str, float, float | None]:
    """The primary ``metric``, precision ``target`` and equivalence ``margin`` of a sweep's report: the arguments when
    given, else the sweep folder's ``spec.yaml`` (a ``target`` inside a ``seeds`` mapping such as ``{min: 3, max: 20,
    target: 0.01}`` first: the one adaptive seeds planned with; else the top-level keys), else ``map50_95``, 0.01 and
    no margin."""
    spec: dict = {}
    path = Path(folder) / "spec.yaml"
    if (target is None or metric is None or margin is None) and path.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            loaded = None  # the report only needs results.csv; an unreadable spec means the defaults
        spec = loaded if isinstance(loaded, dict) else {}
    seeds = spec.get("seeds") if isinstance(spec.get("seeds"), dict) else {}
    values = {}
    for key, given, default in (("metric", metric, DEFAULT_METRIC), ("target", target, DEFAULT_TARGET),
                                ("margin", margin, None)):
        if given is not None:
            values[key] = (given, "report")
        elif key in seeds:  # the adaptive seeds' own target wins, as it did when the sweep planned its seeds
            values[key] = (seeds[key], f"{path}: key 'seeds.{key}'")
        elif key in spec:
            values[key] = (spec[key], f"{path}: key '{key}'")
        else:
            values[key] = (default, "report")
    (metric, metric_src), (target, target_src), (margin, margin_src) = values["metric"], values["target"], \
        values["margin"]
    try:
        check_metric_target(str(metric), DEFAULT_TARGET)
    except ValueError as e:
        raise NeckConfigError(f"{metric_src}: {e}") from None
    try:
        metric, target = check_metric_target(str(metric), target)
        return metric, target, check_margin(margin)
    except ValueError as e:
        raise NeckConfigError(f"{target_src if 'target' in str(e) else margin_src}: {e}") from None


def split_contrasts(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the arms' rows, the contrasts' rows) of a summary; the arms' frame carries in ``attrs`` how many contrasts
    share the primary metric's Holm family (the sentences about the family say so)."""
    if "contrast" not in summary.columns:
        return summary, summary.iloc[0:0]
    flag = summary["contrast"].map(is_true)
    arms, contrasts = summary[~flag].copy(), summary[flag].copy()
    metric = _primary(summary)[0] if len(summary) else DEFAULT_METRIC
    col = f"{metric}_delta_p_holm"
    arms.attrs["contrasts_in_family"] = sum(math.isfinite(num(v)) for v in contrasts[col]) if col in contrasts else 0
    return arms, contrasts


def _baseline_arm(summary: pd.DataFrame) -> str | None:
    rows = summary[summary["baseline"].map(is_true)]
    return str(rows["arm"].iloc[0]) if len(rows) else None


def write_report(sweep: str | Path, target: float | None = None, metric: str | None = None,
                 margin: float | None = None, contrasts: list[str] | None = None) -> dict:
    """(Re)generate ``summary.csv``, ``summary.md``, ``pareto.png`` and ``curves.png`` of a sweep folder (or next to
    a results.csv).

    ``metric`` (primary metric of the verdicts and planning), ``target`` (wanted half-width of its 95% interval of
    Δ) and ``margin`` (equivalence margin, mAP units) default to the folder's spec.yaml, else ``map50_95``, 0.01 and
    none (:func:`report_settings`).
    ``contrasts``: ``A:B`` comparisons between two arms added to those of the folder's spec.yaml
    (:mod:`.contrasts`; rows with ``contrast`` True in the summary).
    Returns ``{"summary": DataFrame, "markdown": str, "paths": [...], "metric": str, "target": float,
    "margin": float | None}``.
    """
    p = Path(sweep)
    folder = p if p.is_dir() else p.parent
    results = load_results(p)
    metric, target, margin = report_settings(folder, target, metric, margin)
    timings = latest_timings(folder)
    policy = adaptive_policy(folder)
    pairs, notes = report_contrasts(folder, contrasts, latest_runs(results))
    summary = summarize(results, metric=metric, target=target, margin=margin,
                        timings=timings if len(timings) else None, pilot=policy["min"] if policy else None,
                        contrasts=tuple(pairs))
    summary = add_format_columns(summary, timings if len(timings) else None)  # speed.formats beyond torch
    if summary.empty:
        raise NeckConfigError(f"{folder / RESULTS}: no runs recorded yet")
    per_class = class_summary(read_per_class(folder), latest_runs(results), _baseline_arm(summary))
    summary = add_class_columns(summary, per_class)
    if policy is not None:
        summary["seeds_stop"] = stop_reasons(summary, metric, target, policy)
    md = render_markdown(results, summary, per_class=per_class, notes=notes)
    from ..records.store import atomic_write

    atomic_write(folder / SUMMARY_CSV, summary.to_csv(index=False))
    if len(per_class):
        atomic_write(folder / SUMMARY_PER_CLASS, per_class.to_csv(index=False))
    atomic_write(folder / SUMMARY_MD, md)
    runs = latest_runs(results)
    ok = runs[runs["status"].astype(str) == "ok"]
    sweep_name = unique(runs, "sweep") or folder.name
    reduced = unique(runs, "reduced")
    title = f"{sweep_name}: mAP50-95 vs latency" + (f" (reduced: {reduced})" if reduced else "")
    xlabel = "batch-1 latency (ms)"
    if len(timings):
        torch_t = format_rows(timings)  # the plot's latency is torch's
        xlabel += f", {unique(torch_t, 'dtype')} on {unique(torch_t, 'device_name')}, timed once per arm"
    elif len(ok):
        xlabel += f", {unique(ok, 'speed_dtype')} on {unique(ok, 'speed_device_name') or unique(ok, 'speed_device')}"
    plot_pareto(split_contrasts(summary)[0], folder / PARETO, title, xlabel)
    plot_curves(runs, folder / CURVES, f"{sweep_name}: training curves" + (f" (reduced: {reduced})" if reduced else ""),
                folder)
    paths = [folder / n for n in (SUMMARY_CSV, SUMMARY_MD, PARETO, CURVES)]
    paths += [folder / SUMMARY_PER_CLASS] * bool(len(per_class))
    return {"summary": summary, "markdown": md, "paths": paths, "metric": metric, "target": target, "margin": margin}
