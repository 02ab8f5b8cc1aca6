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

from ..errors import NeckConfigError
from .formatting import (NA, floats, fmt, fmt_delta, fmt_mean_std, interval_text, level_text, md_table, p_is,
                         signed, unique)  # fmt: skip
from .plots import plot_curves, plot_pareto
from .stats import (DEFAULT_METRIC, DEFAULT_TARGET, METRICS, _is_true, _num, check_metric_target, latest_runs,
                    mixed_settings, summarize)  # fmt: skip

RESULTS, SUMMARY_CSV, SUMMARY_MD = "results.csv", "summary.csv", "summary.md"
PARETO, CURVES = "pareto.png", "curves.png"
# columns of the summary table: (metric, show a Δ column)
TABLE = [("params", False), ("gflops", False), ("map50_95", True), ("map50", True), ("precision", False),
         ("recall", False), ("latency_ms", True), ("throughput_ips", False)]  # fmt: skip


# ------------------------------------------------------------------------------------------------------ loading
def load_results(path: str | Path) -> pd.DataFrame:
    """``results.csv`` (or a sweep folder holding one) as a DataFrame of its readable rows.

    Unreadable lines (truncated, garbage) are reported once by the store, left out here and listed in
    ``df.attrs["unreadable"]`` (1-based line numbers), so the summary can say so; the file keeps them.
    """
    from .store import ResultsStore

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
    if "error" in df.columns:
        df["error"] = ["" if pd.isna(v) else str(v) for v in df["error"]]
    df.attrs["unreadable"] = records.bad_lines
    return df




# -------------------------------------------------------------------------------------------------------- summary
def _primary(summary: pd.DataFrame) -> tuple[str, float]:
    """The (primary metric, target) the summary was computed with (the defaults for an older summary)."""
    metric = str(summary["primary_metric"].iloc[0]) if "primary_metric" in summary.columns else DEFAULT_METRIC
    target = _num(summary["target"].iloc[0]) if "target" in summary.columns else DEFAULT_TARGET
    return metric, target





def _arm_verdict(r, metric: str, target: float, base: str) -> str:
    """One plain-words line for a non-baseline arm: the verdict on the primary metric, then latency and Pareto."""
    label = METRICS[metric][0]
    verdict = str(r.get("verdict", ""))
    n = int(_num(r.get(f"{metric}_delta_n")) or 0)
    head = f"- **{r['arm']}** ({r['block']}): "
    if verdict == "failed":
        return head + f"failed: none of its {int(r['n_runs'])} runs finished; no comparison."
    d = _num(r.get(f"{metric}_delta"))
    if verdict == "undetermined":
        if n == 1:
            return head + f"undetermined: needs ≥2 paired seeds (has 1; Δ {label} {signed(metric, d)} from it)."
        return head + f"undetermined: no seed finished in both this arm and the baseline {base}."
    stats = (f"Δ {signed(metric, d)} {interval_text(metric, r)} ({level_text(r.get(f'{metric}_delta_adj_level'))} "
             f"interval, Holm p {p_is(r.get(f'{metric}_delta_p_holm'))})")  # fmt: skip
    if verdict in ("better", "worse"):
        text = f"**{verdict}** on {label}: {stats}"
    else:
        text = f"no detectable difference in {label} at this precision: {stats}"
        lo, hi = _num(r.get(f"{metric}_delta_adj_lo")), _num(r.get(f"{metric}_delta_adj_hi"))
        if -target <= lo and hi <= target:
            text += f"; the interval rules out differences beyond ±{fmt(metric, target)}"
    parts = [text]
    if metric != "latency_ms":
        parts += [c for c in [_latency_clause(r)] if c]
    if _is_true(r.get("pareto")):
        parts.append("Pareto-optimal")
    return head + "; ".join(parts) + "."


def _latency_clause(r) -> str | None:
    """``latency +0.04 ms (+0.5%) [−2.9, +3.0]: no detectable difference`` (adjusted interval), or None."""
    d = _num(r.get("latency_ms_delta"))
    if not math.isfinite(d):
        return None
    text = f"latency {signed('latency_ms', d)} ms"
    base = _num(r.get("latency_ms_mean")) - d
    if base > 0:
        text += f" ({100 * d / base:+.1f}%)".replace("-", "−")
    if int(_num(r.get("latency_ms_delta_n")) or 0) < 2 or not math.isfinite(_num(r.get("latency_ms_delta_adj_lo"))):
        return text + ": not resolved (fewer than 2 paired seeds)"
    word = ("faster" if d < 0 else "slower") if _is_true(r.get("latency_ms_delta_sig")) else "no detectable difference"
    return f"{text} {interval_text('latency_ms', r)}: {word}"


def _verdict_section(summary: pd.DataFrame, metric: str, target: float, level: float) -> list[str]:
    label = METRICS[metric][0]
    lines = ["## Verdict", ""]
    base_rows = summary[summary["baseline"].map(_is_true)]
    if not len(base_rows):
        return lines + ["No baseline arm in this sweep: no Δ, no verdict.", ""]
    base = str(base_rows["arm"].iloc[0])
    others = summary[~summary["baseline"].map(_is_true)]
    if not len(others):
        return lines + [f"Only the baseline {base}: nothing to compare.", ""]
    if int(_num(base_rows["n_ok"].iloc[0]) or 0) == 0:
        return lines + [f"The baseline {base} has no finished run: no Δ, no verdict.", ""]
    m = sum(map(math.isfinite, floats(others[f"{metric}_delta_p_holm"])))
    ns = sorted({int(_num(v) or 0) for v in others[f"{metric}_delta_n"] if int(_num(v) or 0) >= 2})
    seeds = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}") if ns else "fewer than 2"
    lines += [f"Δ {label} vs the baseline **{base}** over {seeds} paired seeds; intervals and p-values Holm-adjusted "
              f"for the {m} arm{'s' * (m != 1)} compared (family-wise {level:.0%}).", ""]  # fmt: skip
    lines += [_arm_verdict(r, metric, target, base) for _, r in others.iterrows()]
    front = summary[summary["pareto"].map(_is_true)] if "pareto" in summary.columns else summary.iloc[0:0]
    if len(front):
        pts = ", ".join(f"{r['arm']} ({fmt('map50_95', r['map50_95_mean'])}, {fmt('latency_ms', r['latency_ms_mean'])}"
                        " ms)" for _, r in front.sort_values("latency_ms_mean").iterrows())  # fmt: skip
        text = (f"- **Trade-off** (mean mAP50-95 vs mean latency): Pareto-optimal {pts}; each other arm is matched "
                "or beaten on both by one of these.")  # fmt: skip
        lat_n = floats(others["latency_ms_delta_n"]) if "latency_ms_delta_n" in others else []
        if any(k >= 2 for k in lat_n) and not others["latency_ms_delta_sig"].map(_is_true).any():
            text += " No latency Δ is detectable, so the ordering by latency may be noise."
        lines.append(text)
    half = [v for v in floats(others[f"{metric}_delta_half"]) if math.isfinite(v)]
    need = [int(v) for v in floats(others[f"{metric}_seeds_needed"]) if math.isfinite(v)]
    if half and need:
        lo_h, hi_h = fmt(metric, min(half)), fmt(metric, max(half))
        now = f"±{lo_h}" if lo_h == hi_h else f"±{lo_h} to ±{hi_h}"
        text = f"- **Precision**: the 95% intervals of Δ {label} are {now} now"
        if max(half) <= target:
            text += f": the target ±{fmt(metric, target)} is reached"
        else:
            many = f"{min(need)}" if min(need) == max(need) else f"{min(need)}–{max(need)}"
            text += f"; ±{fmt(metric, target)} needs {many} paired seeds per arm"
        few = [str(r["arm"]) for _, r in others.iterrows()
               if int(_num(r.get("n_ok")) or 0) and int(_num(r.get(f"{metric}_delta_n")) or 0) < 2]  # fmt: skip
        if few:
            text += f" ({', '.join(few)}: fewer than 2 paired seeds, no interval yet)"
        lines.append(text + " (see Precision below).")
    return lines + [""]


def planning_line(r, metric: str, target: float, base: str) -> str:
    """``focal vs sppf, mAP50-95: ±0.031 now (3 seeds, SD 0.012); ±0.010 needs 9 seeds``, or why not."""
    label = METRICS[metric][0]
    head = f"{r['arm']} vs {base}, {label}: "
    if int(_num(r.get("n_ok")) or 0) == 0:
        return head + f"no finished run ({int(r['n_runs'])} failed)"
    n = int(_num(r.get(f"{metric}_delta_n")) or 0)
    half, sd = _num(r.get(f"{metric}_delta_half")), _num(r.get(f"{metric}_delta_sd"))
    need = _num(r.get(f"{metric}_seeds_needed"))
    if n < 2 or not math.isfinite(half):
        return head + f"needs ≥2 paired seeds (has {n})"
    now = f"±{fmt(metric, half)} now ({n} seeds, SD {fmt(metric, sd)}"
    if sd == 0:
        now += ": identical differences on every seed"
    now += ")"
    if half <= target:
        return head + f"{now}; target ±{fmt(metric, target)} reached"
    return head + f"{now}; ±{fmt(metric, target)} needs {int(need)} seeds"


def _precision_section(summary: pd.DataFrame, metric: str, target: float) -> list[str]:
    others = summary[~summary["baseline"].map(_is_true)]
    base_rows = summary[summary["baseline"].map(_is_true)]
    if not len(others) or not len(base_rows) or f"{metric}_delta_half" not in summary.columns:
        return []
    base = str(base_rows["arm"].iloc[0])
    label = METRICS[metric][0]
    return ["", "## Precision", "",
            f"Paired seeds needed for a 95% interval of ±{fmt(metric, target)} on Δ {label} (the target: "
            "`yolo-necks report --target`, or `target` in the spec), from the observed SD of the paired differences. "
            "\"now\" is the half-width of the current 95% interval: the smallest Δ these seeds resolve (the adjusted "
            "intervals above are wider). An SD from a few seeds is itself rough, so read the seed count as a guide; "
            "a sweep that adds seeds should stop on this precision, never on a p-value.", ""] + [
        "- " + planning_line(r, metric, target, base) for _, r in others.iterrows()]  # fmt: skip


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


def render_markdown(results: pd.DataFrame, summary: pd.DataFrame, level: float = 0.95) -> str:
    """``summary.md``: title, verdict, setting, the table with its note, precision planning, failed runs."""
    runs = latest_runs(results)
    metric, target = _primary(summary)
    sweep = unique(runs, "sweep") or "sweep"
    reduced = unique(runs, "reduced")
    title = f"# Neck ablation `{sweep}`" + (f" (reduced: {reduced})" if reduced else "")
    lines = [title, ""]
    if reduced:
        lines += [f"> **Reduced sweep ({reduced})**: smaller images, fewer images and epochs (and easier dataset parameters) than the full sweep so "
                  "that it finishes on this machine. Params, GFLOPs and latency are exact for this setting; mAP after "
                  "so short a schedule from scratch is a rough early-training signal, not a final result.", ""]  # fmt: skip
    lines += _verdict_section(summary, metric, target, level)
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
    if len(ok):
        lines.append(
            f"- speed: fused model in eval mode, forward pass only (no pre-processing or NMS), "
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
    mixed = mixed_settings(results)
    if mixed:
        what = "; ".join(f"{k}: {' vs '.join(v)}" for k, v in mixed.items())
        lines += ["", f"> **Warning**: the latest runs do not share the same settings ({what}); deltas mix them."]
    lines.append("")
    header = ["Arm", "Block", "Runs ok"]
    for col, delta in TABLE:
        label = METRICS[col][0]
        header.append(label)
        if delta:
            header.append(f"Δ {label} [adj. CI] p (Holm)")
    header.append("Pareto")
    rows = []
    for _, r in summary.iterrows():
        arm = f"**{r['arm']}** (baseline)" if r["baseline"] else str(r["arm"])
        runs_ok = f"{int(r['n_ok'])}/{int(r['n_runs'])}"
        if int(r["n_failed"]):
            runs_ok += f" ({int(r['n_failed'])} failed)"
        cells = [arm, str(r["block"]), runs_ok]
        for col, delta in TABLE:
            if int(r["n_ok"]) == 0:
                cells.append("failed")
                if delta:
                    cells.append(NA)
                continue
            cells.append(fmt_mean_std(col, r))
            if delta:
                cells.append(fmt_delta(col, r))
        cells.append("yes" if _is_true(r.get("pareto")) else "")
        rows.append(cells)
    lines += md_table(header, rows)
    lines += ["", _table_note(summary, base, metric, level)]
    lines += ["", f"Training curves: [{CURVES}]({CURVES}) (box, cls and dfl training losses and val mAP50-95 per "
              "epoch, mean over seeds with a min-max band, from each run's ultralytics results.csv)."]
    lines += _precision_section(summary, metric, target)
    failed = runs[runs["status"].astype(str) != "ok"]
    if len(failed):
        lines += ["", "## Failed runs", ""]
        lines += md_table(
            ["Arm", "Seed", "Status", "Error", "Run folder"],
            [[str(r["arm"]), str(r["seed"]), str(r["status"]), str(r.get("error", "")), str(r.get("run_dir", ""))]
             for _, r in failed.iterrows()],
        )  # fmt: skip
    bad = results.attrs.get("unreadable") or []
    if bad:
        lines += ["", f"> **Warning**: {RESULTS} has {len(bad)} unreadable line(s) ({', '.join(map(str, bad))}: "
                  "truncated or not a results row); they are left out of this summary and kept in the file."]
    lines += ["", f"Generated by `yolo-necks report` from {RESULTS} ({len(results)} rows, {len(runs)} latest runs)."]
    return "\n".join(lines) + "\n"


def _table_note(summary: pd.DataFrame, base: list[str], metric: str, level: float) -> str:
    """The note under the table: what Δ, the adjusted interval, the bold mark, p, Holm and Pareto mean."""
    alpha = 1.0 - level
    others = summary[~summary["baseline"].map(_is_true)]
    m = sum(map(math.isfinite, floats(others[f"{metric}_delta_p_holm"])))
    family = (f"the m = {m} arms compared with the baseline (per metric; arms with fewer than 2 paired seeds have no "
              "p-value and do not count)")  # fmt: skip
    return (
        f"Δ = arm − baseline ({', '.join(base) or 'none'}), paired by seed. [adj. CI]: Student-t interval over the "
        f"paired seeds, adjusted for {family} consistently with Holm's procedure: at level 1 − {alpha:g}/m "
        + (f"({level_text(1 - alpha / m)}) " if m else "")
        + f"for a Δ Holm does not reject, at 1 − {alpha:g}/(m − j + 1) for the Δ rejected at Holm step j. "
        f"**Bold** Δ: the adjusted interval excludes 0, exactly when the Holm-adjusted p ≤ {alpha:g} (family-wise "
        f"error ≤ {alpha:.0%}). p: paired t-test; Holm: Holm-adjusted p. CI n/a: fewer than 2 paired seeds. "
        f"Unadjusted {level:.0%} intervals are in summary.csv (`*_delta_lo`, `*_delta_hi`). Pareto: no other arm is "
        "at least as accurate (mean mAP50-95) and at least as fast (mean latency) and better on one (the front in "
        "pareto.png)."
    )





def report_settings(folder: str | Path, target: float | None = None, metric: str | None = None) -> tuple[str, float]:
    """The primary ``metric`` and precision ``target`` of a sweep's report: the arguments when given, else the
    sweep folder's ``spec.yaml`` (top-level ``metric``/``target``, or ``target``/``metric`` inside a ``seeds``
    mapping such as ``{min: 3, max: 20, target: 0.01}``), else ``map50_95`` and 0.01."""
    spec: dict = {}
    path = Path(folder) / "spec.yaml"
    if (target is None or metric is None) and path.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            loaded = None  # the report only needs results.csv; an unreadable spec means the defaults
        spec = loaded if isinstance(loaded, dict) else {}
    seeds = spec.get("seeds") if isinstance(spec.get("seeds"), dict) else {}
    values = {}
    for key, given, default in (("metric", metric, DEFAULT_METRIC), ("target", target, DEFAULT_TARGET)):
        if given is not None:
            values[key] = (given, "report")
        elif key in spec or key in seeds:
            values[key] = (spec[key] if key in spec else seeds[key], f"{path}: key '{key}'")
        else:
            values[key] = (default, "report")
    (metric, metric_src), (target, target_src) = values["metric"], values["target"]
    try:
        check_metric_target(str(metric), DEFAULT_TARGET)
    except ValueError as e:
        raise NeckConfigError(f"{metric_src}: {e}") from None
    try:
        return check_metric_target(str(metric), target)
    except ValueError as e:
        raise NeckConfigError(f"{target_src}: {e}") from None


def write_report(sweep: str | Path, target: float | None = None, metric: str | None = None) -> dict:
    """(Re)generate ``summary.csv``, ``summary.md``, ``pareto.png`` and ``curves.png`` of a sweep folder (or next to
    a results.csv).

    ``metric`` (primary metric of the verdicts and planning) and ``target`` (wanted half-width of its 95% interval
    of Δ) default to the folder's spec.yaml, else ``map50_95`` and 0.01 (:func:`report_settings`).
    Returns ``{"summary": DataFrame, "markdown": str, "paths": [...], "metric": str, "target": float}``.
    """
    p = Path(sweep)
    folder = p if p.is_dir() else p.parent
    results = load_results(p)
    metric, target = report_settings(folder, target, metric)
    summary = summarize(results, metric=metric, target=target)
    if summary.empty:
        raise NeckConfigError(f"{folder / RESULTS}: no runs recorded yet")
    md = render_markdown(results, summary)
    from .store import atomic_write

    atomic_write(folder / SUMMARY_CSV, summary.to_csv(index=False))
    atomic_write(folder / SUMMARY_MD, md)
    runs = latest_runs(results)
    ok = runs[runs["status"].astype(str) == "ok"]
    sweep_name = unique(runs, "sweep") or folder.name
    reduced = unique(runs, "reduced")
    title = f"{sweep_name}: mAP50-95 vs latency" + (f" (reduced: {reduced})" if reduced else "")
    xlabel = "batch-1 latency (ms)"
    if len(ok):
        xlabel += f", {unique(ok, 'speed_dtype')} on {unique(ok, 'speed_device_name') or unique(ok, 'speed_device')}"
    plot_pareto(summary, folder / PARETO, title, xlabel)
    plot_curves(runs, folder / CURVES, f"{sweep_name}: training curves" + (f" (reduced: {reduced})" if reduced else ""),
                folder)  # fmt: skip
    paths = [folder / n for n in (SUMMARY_CSV, SUMMARY_MD, PARETO, CURVES)]
    return {"summary": summary, "markdown": md, "paths": paths, "metric": metric, "target": target}
