"""The plain-words sections of ``summary.md``: a verdict per arm, precision planning (and adaptive seeds), and
equivalence against a margin. Every sentence is derived from the summary's columns (:mod:`.stats`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .formatting import NA, floats, fmt, interval_text, level_text, md_table, p_is, signed, unique
from ..records.columns import METRICS, as_strings, is_true, num


def placement_text(r) -> str:
    """Where the arm's block sits: ``replace sppf``, ``insert p3,p4,p5``, ``base`` ('' for older results)."""
    text = r.get("placement")
    return "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)


def _arm_verdict(r, metric: str, target: float, base: str) -> str:
    """One plain-words line for a non-baseline arm: the verdict on the primary metric, then latency and Pareto."""
    label = METRICS[metric][0]
    verdict = str(r.get("verdict", ""))
    n = int(num(r.get(f"{metric}_delta_n")) or 0)
    where = f", {placement_text(r)}" if placement_text(r) not in ("", "base") else ""
    head = f"- **{r['arm']}** ({r['block']}{where}): "
    if verdict == "failed":
        return head + f"failed: none of its {int(r['n_runs'])} runs finished; no comparison."
    d = num(r.get(f"{metric}_delta"))
    if verdict == "undetermined":
        if n == 1:
            return head + f"undetermined: needs ≥2 paired seeds (has 1; Δ {label} {signed(metric, d)} from it)."
        return head + f"undetermined: no seed finished in both this arm and the baseline {base}."
    stats = (f"Δ {signed(metric, d)} {interval_text(metric, r)} ({level_text(r.get(f'{metric}_delta_adj_level'))} "
             f"interval, Holm p {p_is(r.get(f'{metric}_delta_p_holm'))})")
    margin = num(r.get("margin"))
    if verdict in ("better", "worse"):
        text = f"**{verdict}** on {label}: {stats}"
        if math.isfinite(margin) and is_true(r.get(f"{metric}_noninf")) and verdict == "worse":
            text += f"; but by less than the margin: not worse than −{fmt(metric, margin)}, {_noninf_text(metric, r)}"
    elif verdict in ("equivalent", "not worse", "undecided"):
        text = _margin_verdict(verdict, metric, r, margin) + f"; difference: {stats}"
    else:
        text = f"no detectable difference in {label} at this precision: {stats}"
        lo, hi = num(r.get(f"{metric}_delta_adj_lo")), num(r.get(f"{metric}_delta_adj_hi"))
        if -target <= lo and hi <= target:
            text += f"; the interval rules out differences beyond ±{fmt(metric, target)}"
    parts = [text]
    if metric != "latency_ms":
        parts += [c for c in [_latency_clause(r)] if c]
    if is_true(r.get("pareto")):
        parts.append("Pareto-optimal")
    return head + "; ".join(parts) + "."


def _equiv_text(metric: str, r) -> str:
    """``[−0.004, +0.008] (90% interval, TOST Holm p = 0.01)``: the interval the equivalence decision rests on."""
    lo, hi = num(r.get(f"{metric}_equiv_lo")), num(r.get(f"{metric}_equiv_hi"))
    return (f"[{signed(metric, lo)}, {signed(metric, hi)}] ({level_text(r.get(f'{metric}_equiv_level'))} interval, "
            f"TOST Holm p {p_is(r.get(f'{metric}_tost_p_holm'))})")


def _noninf_text(metric: str, r) -> str:
    """``lower bound −0.006 (one-sided 97.5%, Holm p = 0.02)``: the bound the non-inferiority decision rests on."""
    lo = num(r.get(f"{metric}_noninf_lo"))
    return (f"lower bound {signed(metric, lo)} (one-sided {level_text(r.get(f'{metric}_noninf_level'))}, "
            f"Holm p {p_is(r.get(f'{metric}_noninf_p_holm'))})")


def _margin_verdict(verdict: str, metric: str, r, margin: float) -> str:
    """The verdict of an arm whose difference is not detectable, against the equivalence margin."""
    label, d = METRICS[metric][0], num(r.get(f"{metric}_delta"))
    m = fmt(metric, margin)
    if verdict == "equivalent":
        return f"**equivalent** within ±{m} on {label}: Δ {signed(metric, d)}, {_equiv_text(metric, r)} inside ±{m}"
    if verdict == "not worse":
        return f"**not worse** than −{m} on {label}: Δ {signed(metric, d)}, {_noninf_text(metric, r)}"
    return (f"undecided on {label} at ±{m}: Δ {signed(metric, d)}, {_equiv_text(metric, r)} reaches beyond ±{m} and "
            f"the non-inferiority bound {signed(metric, num(r.get(f'{metric}_noninf_lo')))} does not clear −{m} "
            f"(Holm p {p_is(r.get(f'{metric}_noninf_p_holm'))}); more seeds or a wider margin")


def equivalence_section(summary: pd.DataFrame, metric: str) -> list[str]:
    """Per arm and mAP metric: the equivalence interval and TOST p, the non-inferiority bound and p (with a margin)."""
    margin = num(summary["margin"].iloc[0]) if "margin" in summary.columns else float("nan")
    others = summary[~summary["baseline"].map(is_true)]
    metrics = [c for c in dict.fromkeys([metric, "map50_95", "map50"]) if f"{c}_tost_p" in summary.columns]
    if not math.isfinite(margin) or not len(others) or not metrics:
        return []
    m = fmt(metrics[0], margin)
    header = ["Arm"]
    for c in metrics:
        header += [f"{METRICS[c][0]}: equivalent within ±{m}?", f"{METRICS[c][0]}: not worse than −{m}?"]
    rows = []
    for _, r in others.iterrows():
        cells = [str(r["arm"])]
        for c in metrics:
            if not math.isfinite(num(r.get(f"{c}_tost_p"))):
                cells += [NA, NA]
                continue
            eq = "**yes**" if is_true(r.get(f"{c}_equiv")) else "no"
            ni = "**yes**" if is_true(r.get(f"{c}_noninf")) else "no"
            cells += [f"{eq}: {_equiv_text(c, r)}", f"{ni}: {_noninf_text(c, r)}"]
        rows.append(cells)
    return ["", f"## Equivalence and non-inferiority (margin ±{m})", "",
            f"Two one-sided paired t-tests (TOST) per arm: *equivalent* when Δ is shown to lie inside ±{m}, *not worse* "
            f"when Δ is shown to lie above −{m}; p-values Holm-adjusted over the arms, like the difference tests. The "
            "interval shown is the one each decision rests on: at 1 − 2α/(m − j + 1) two-sided for the arm Holm "
            "decided at step j (1 − 2α/m when it did not), so 'yes' exactly when it lies inside the margin. "
            "Precision and recall: summary.csv (`*_tost_p`, `*_noninf_p`, ...).", ""] + md_table(header, rows)


def _latency_clause(r) -> str | None:
    """``latency +0.04 ms (+0.5%) [−2.9, +3.0]: no detectable difference`` (adjusted interval), or None."""
    d = num(r.get("latency_ms_delta"))
    if not math.isfinite(d):
        return None
    text = f"latency {signed('latency_ms', d)} ms"
    base = num(r.get("latency_ms_mean")) - d
    if base > 0:
        text += f" ({100 * d / base:+.1f}%)".replace("-", "−")
    if int(num(r.get("latency_ms_delta_n")) or 0) < 2 or not math.isfinite(num(r.get("latency_ms_delta_adj_lo"))):
        return text + ": not resolved (fewer than 2 paired seeds)"
    word = ("faster" if d < 0 else "slower") if is_true(r.get("latency_ms_delta_sig")) else "no detectable difference"
    return f"{text} {interval_text('latency_ms', r)}: {word}"


def verdict_section(summary: pd.DataFrame, metric: str, target: float, level: float) -> list[str]:
    label = METRICS[metric][0]
    lines = ["## Verdict", ""]
    base_rows = summary[summary["baseline"].map(is_true)]
    if not len(base_rows):
        return lines + ["No baseline arm in this sweep: no Δ, no verdict.", ""]
    base = str(base_rows["arm"].iloc[0])
    others = summary[~summary["baseline"].map(is_true)]
    if not len(others):
        return lines + [f"Only the baseline {base}: nothing to compare.", ""]
    if int(num(base_rows["n_ok"].iloc[0]) or 0) == 0:
        return lines + [f"The baseline {base} has no finished run: no Δ, no verdict.", ""]
    m = sum(map(math.isfinite, floats(others[f"{metric}_delta_p_holm"])))
    ns = sorted({int(num(v) or 0) for v in others[f"{metric}_delta_n"] if int(num(v) or 0) >= 2})
    seeds = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}") if ns else "fewer than 2"
    margin = num(summary["margin"].iloc[0]) if "margin" in summary.columns else float("nan")
    against = f", and against the equivalence margin ±{fmt(metric, margin)}" if math.isfinite(margin) else ""
    lines += [f"Δ {label} vs the baseline **{base}** over {seeds} paired seeds; intervals and p-values Holm-adjusted "
              f"for the {m} arm{'s' * (m != 1)} compared (family-wise {level:.0%}){against}.", ""]
    lines += [_arm_verdict(r, metric, target, base) for _, r in others.iterrows()]
    front = summary[summary["pareto"].map(is_true)] if "pareto" in summary.columns else summary.iloc[0:0]
    if len(front):
        pts = ", ".join(f"{r['arm']} ({fmt('map50_95', r['map50_95_mean'])}, {fmt('latency_ms', r['latency_ms_mean'])}"
                        " ms)" for _, r in front.sort_values("latency_ms_mean").iterrows())
        text = (f"- **Trade-off** (mean mAP50-95 vs mean latency): Pareto-optimal {pts}; each other arm is matched "
                "or beaten on both by one of these.")
        lat_n = floats(others["latency_ms_delta_n"]) if "latency_ms_delta_n" in others else []
        if any(k >= 2 for k in lat_n) and not others["latency_ms_delta_sig"].map(is_true).any():
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
               if int(num(r.get("n_ok")) or 0) and int(num(r.get(f"{metric}_delta_n")) or 0) < 2]
        if few:
            text += f" ({', '.join(few)}: fewer than 2 paired seeds, no interval yet)"
        lines.append(text + " (see Precision below).")
    return lines + [""]


def planning_line(r, metric: str, target: float, base: str) -> str:
    """``focal vs sppf, mAP50-95: ±0.031 now (3 seeds, SD 0.012); ±0.010 needs 9 seeds``, or why not."""
    label = METRICS[metric][0]
    head = f"{r['arm']} vs {base}, {label}: "
    if int(num(r.get("n_ok")) or 0) == 0:
        return head + f"no finished run ({int(r['n_runs'])} failed)"
    n = int(num(r.get(f"{metric}_delta_n")) or 0)
    half, sd = num(r.get(f"{metric}_delta_half")), num(r.get(f"{metric}_delta_sd"))
    need = num(r.get(f"{metric}_seeds_needed"))
    if n < 2 or not math.isfinite(half):
        return head + f"needs ≥2 paired seeds (has {n})"
    now = f"±{fmt(metric, half)} now ({n} seeds, SD {fmt(metric, sd)}"
    if sd == 0:
        now += ": identical differences on every seed"
    now += ")"
    now += _val_text(r, metric)
    stop = str(r.get("seeds_stop") or "")
    stop = "" if stop in ("", "nan") else f"; adaptive seeds: {int(num(r.get('n_runs')))} run, {stop}"
    if half <= target:
        return head + f"{now}; target ±{fmt(metric, target)} reached{stop}"
    return head + f"{now}; ±{fmt(metric, target)} needs {int(need)} seeds{stop}"


def adaptive_policy(folder: str | Path) -> dict | None:
    """``{min, max}`` of the sweep's adaptive seeds (its spec.yaml's ``seeds`` mapping, or ``auto``), else None."""
    path = Path(folder) / "spec.yaml"
    if not path.is_file():
        return None
    import yaml

    try:
        seeds = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("seeds")
    except (yaml.YAMLError, UnicodeDecodeError, OSError, AttributeError):
        return None
    if isinstance(seeds, str) and seeds.strip().lower() == "auto":
        seeds = {}
    if not isinstance(seeds, dict):
        return None
    lo = seeds.get("min", 3)
    return {"min": lo, "max": seeds.get("max", max(20, lo))}


def stop_reasons(summary: pd.DataFrame, metric: str, target: float, policy: dict) -> list[str]:
    """Why each arm's adaptive seeds stopped, from its runs alone: ``precise`` (its half-width is within target),
    ``max`` (it has max seeds), ``no finished run``; ``open`` for an arm a sweep has not finished deciding."""
    out = []
    for _, r in summary.iterrows():
        if is_true(r.get("baseline")):
            out.append("")
        elif not int(num(r.get("n_ok")) or 0):
            out.append("no finished run")
        elif num(r.get(f"{metric}_delta_half")) <= target:
            out.append("stopped: precise")
        elif int(num(r.get("n_runs")) or 0) >= int(policy["max"]):
            out.append(f"stopped: max {int(policy['max'])} seeds")
        else:
            out.append("open: not finished")
    return out


def precision_section(summary: pd.DataFrame, metric: str, target: float) -> list[str]:
    others = summary[~summary["baseline"].map(is_true)]
    base_rows = summary[summary["baseline"].map(is_true)]
    if not len(others) or not len(base_rows) or f"{metric}_delta_half" not in summary.columns:
        return []
    base = str(base_rows["arm"].iloc[0])
    label = METRICS[metric][0]
    saved = []
    if "seeds_stop" in summary.columns:
        runs = [int(num(v) or 0) for v in summary["n_runs"]]
        whole = max(runs) * len(runs)
        saved = ["", f"Adaptive seeds, per arm: each arm stopped when its own interval was within the target (or at "
                 f"max); the baseline ran every seed an arm needed. {sum(runs)} runs, where giving every arm every "
                 f"seed would have run {whole} (saved {whole - sum(runs)})."]
    return ["", "## Precision", "",
            f"Paired seeds needed for a 95% interval of ±{fmt(metric, target)} on Δ {label} (the target: "
            "`yolo-necks report --target`, or `target` in the spec), from the observed SD of the paired differences. "
            "\"now\" is the half-width of the current 95% interval: the smallest Δ these seeds resolve (the adjusted "
            "intervals above are wider). An SD from a few seeds is itself rough, so read the seed count as a guide; "
            "a sweep that adds seeds should stop on this precision, never on a p-value.", ""] + [
        "- " + planning_line(r, metric, target, base) for _, r in others.iterrows()] + saved


def _val_text(r, metric: str) -> str:
    """``; val sampling: SD 0.006 of a paired Δ, ~12% of its variance over seeds (paired bootstrap)``, or ''."""
    sd, share, basis = num(r.get(f"{metric}_val_sd")), num(r.get(f"{metric}_val_share")), r.get(f"{metric}_val_basis")
    if not math.isfinite(sd):
        return ""
    part = f"~{100 * share:.0f}% of its variance over seeds" if math.isfinite(share) else "no variance over seeds yet"
    return f"; val sampling: SD {fmt(metric, sd)} of a paired Δ, {part} ({basis})"


def speed_lines(summary: pd.DataFrame) -> list[str]:
    """How the arms were timed (once per sweep, interleaved), where, and what to distrust."""
    def distinct(col: str) -> list[str]:
        return [v for v in dict.fromkeys(as_strings(summary[col])) if v] if col in summary.columns else []

    devices, sessions = distinct("speed_device_name"), distinct("speed_session")
    shares = [(str(r["arm"]), num(r.get("speed_cpu_share"))) for _, r in summary.iterrows()]
    lines = [
        f"- speed: every arm timed once, after training, in one session with nothing else of the sweep running "
        f"({', '.join(distinct('speed_dtype'))} on {', '.join(distinct('speed_device'))}: {', '.join(devices)}, "
        f"{', '.join(distinct('speed_threads')) or '-'} thread(s), host {', '.join(distinct('speed_host'))}): fused "
        f"models in eval mode, forward pass only (no pre-processing or NMS), interleaved round-robin over "
        f"{', '.join(distinct('speed_rounds'))} rounds; latency = batch-1 median over rounds ± their SD; Δ latency "
        "from the per-round paired differences to the baseline (speed.csv)"
    ]
    starved = [f"{arm} ({100 * s:.0f}%)" for arm, s in shares if math.isfinite(s) and s < 0.9]
    if starved:
        lines.append(f"> **Warning**: timings that got less than 90% of their thread budget (the machine was busy): "
                     f"{', '.join(starved)}; their latency is not the architecture's.")
    if len(devices) > 1:
        lines.append(f"> **Warning**: the arms' timings come from {len(devices)} device models ({', '.join(devices)}); "
                     "latencies from different devices are not comparable.")
    elif len(sessions) > 1:
        lines.append(f"- (timed in {len(sessions)} sessions on the same device model: {', '.join(sessions)})")
    return lines


def reproducibility_line(runs: pd.DataFrame) -> str:
    """What the numbers reproduce on: the device model, torch build and thread count the runs recorded."""
    return (f"- reproducible: bit-identical on the same device model ({unique(runs, 'device_name') or 'not recorded'}), "
            f"torch build ({unique(runs, 'torch_build') or unique(runs, 'torch') or 'not recorded'}) and threads per "
            f"run ({unique(runs, 'threads') or 'not recorded'}); on other hardware expect differences of the size of the "
            "seed-to-seed spread (CPU and GPU kernels differ, and training amplifies them)")
