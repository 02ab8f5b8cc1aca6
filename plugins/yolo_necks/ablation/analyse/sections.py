"""The plain-words sections of ``summary.md``: a verdict per arm, precision planning (and adaptive seeds), and
equivalence against a margin. Every sentence is derived from the summary's columns (:mod:`.stats`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .formatting import (NA, floats, fmt, interval_text, latency_kind, latency_pct, level_text, md_table, p_is,
                         signed, unique)
from ..records.columns import METRICS, SIZE_METRICS, as_strings, is_true, num
from .sizes import size_clause
from .decide import verdict_of
from .stopping import stein_seeds


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
    stats = f"Δ {signed(metric, d)}, {_difference_text(metric, r)}"
    margin = num(r.get("margin"))
    if verdict in ("better", "worse"):
        text = f"**{verdict}** on {label}: {stats}"
    elif verdict in ("equivalent", "not worse", "undecided"):
        text = _margin_verdict(verdict, metric, r, margin)
    else:
        text = f"no detectable difference in {label} at this precision: {stats}"
        lo, hi = num(r.get(f"{metric}_delta_adj_lo")), num(r.get(f"{metric}_delta_adj_hi"))
        if -target <= lo and hi <= target:
            text += f"; the interval rules out differences beyond ±{fmt(metric, target)}"
    parts = [text]
    if metric not in SIZE_METRICS:  # one clause for the size buckets where the adjusted interval excludes 0
        parts += [c for c in [size_clause(r)] if c]
    if metric != "latency_ms":
        parts += [c for c in [_latency_clause(r)] if c]
    if is_true(r.get("pareto")):
        parts.append("Pareto-optimal")
    return head + "; ".join(parts) + "."


def covers(r, metric: str) -> str:
    """What a Δ's interval covers: ``seeds and val images`` when the runs' paired bootstrap replicates gave its val
    set's part, else ``seeds only`` (the val images held fixed)."""
    return "seeds and val images" if math.isfinite(num(r.get(f"{metric}_val_se"))) else "seeds only"


def _difference_text(metric: str, r) -> str:
    """``Holm-adjusted 99% interval [−0.04, +0.10] (seeds and val images; Holm p = 0.28)``: the one interval every
    verdict on ``metric`` reads off, named."""
    return (f"Holm-adjusted {level_text(r.get(f'{metric}_delta_adj_level'))} interval {interval_text(metric, r)} "
            f"({covers(r, metric)}; Holm p {p_is(r.get(f'{metric}_delta_p_holm'))})")


def _margin_verdict(verdict: str, metric: str, r, margin: float) -> str:
    """The verdict of an arm whose adjusted interval contains 0, against the margin, with the one interval (or its
    lower end) the verdict rests on, named: equivalence as TOST's 1 − 2α′ interval, non-inferiority as a one-sided
    bound."""
    label, d = METRICS[metric][0], num(r.get(f"{metric}_delta"))
    m = fmt(metric, margin)
    level = num(r.get(f"{metric}_delta_adj_level"))
    lo = num(r.get(f"{metric}_delta_adj_lo"))
    name = f"Holm-adjusted {level_text(level)} interval"
    if verdict == "equivalent":
        return (f"**equivalent** within ±{m} on {label}: Δ {signed(metric, d)}; its {name} {interval_text(metric, r)} "
                f"(TOST's 1 − 2α′ interval, α′ = {level_text((1 - level) / 2)}; {covers(r, metric)}) lies inside ±{m}")
    if verdict == "not worse":
        return (f"**not worse** than −{m} on {label}: Δ {signed(metric, d)}; its one-sided "
                f"{level_text(1 - (1 - level) / 2)} lower bound {signed(metric, lo)} (the lower end of its {name}; "
                f"{covers(r, metric)}) lies above −{m}")
    return (f"undecided on {label} at ±{m}: Δ {signed(metric, d)}; its {name} {interval_text(metric, r)} "
            f"({covers(r, metric)}) contains 0 and reaches below −{m}: more seeds (or more val images), or a wider "
            "margin")


def equivalence_section(summary: pd.DataFrame, metric: str) -> list[str]:
    """Per arm and mAP metric, with a margin: the verdict the adjusted interval gives and that interval."""
    margin = num(summary["margin"].iloc[0]) if "margin" in summary.columns else float("nan")
    others = summary[~summary["baseline"].map(is_true)]
    metrics = [c for c in dict.fromkeys([metric, "map50_95", "map50"]) if f"{c}_equiv" in summary.columns]
    if not math.isfinite(margin) or not len(others) or not metrics:
        return []
    m = fmt(metrics[0], margin)
    header = ["Arm"] + [f"{METRICS[c][0]} (±{m})" for c in metrics]
    rows = []
    for _, r in others.iterrows():
        cells = [str(r["arm"])]
        for c in metrics:
            lo, hi = num(r.get(f"{c}_delta_adj_lo")), num(r.get(f"{c}_delta_adj_hi"))
            if not (math.isfinite(lo) and math.isfinite(hi)):
                cells.append(NA)
                continue
            word = verdict_of(lo, hi, margin, METRICS[c][1])
            word = f"**{word}**" if word != "undecided" else word
            cells.append(f"{word}: {interval_text(c, r)} ({level_text(r.get(f'{c}_delta_adj_level'))}, "
                         f"{covers(r, c)})")
        rows.append(cells)
    return ["", f"## Equivalence and non-inferiority (margin ±{m})", "",
            f"One interval per arm and metric, the Holm-adjusted one of the table above, and one rule: **better** or "
            f"**worse** when it excludes 0; else **equivalent** when it lies inside ±{m} (it is then TOST's 1 − 2α′ "
            f"interval at α′ = (1 − level)/2 per side), **not worse** when its lower end (a one-sided bound at "
            f"1 − α′) lies above −{m}; else undecided. So the verdicts of an arm never disagree, and the family-wise "
            "error of all of them together is what the calibration benchmark measures (docs/statistics.md). The "
            "unadjusted one-sided p-values are in summary.csv (`*_tost_p`, `*_noninf_p`).", ""] + md_table(header, rows)


def _latency_clause(r) -> str | None:
    """``latency +0.04 ms (+0.5%) [−2.9, +3.0]: no detectable difference`` (adjusted interval), or None."""
    d = num(r.get("latency_ms_delta"))
    if not math.isfinite(d):
        return None
    text = f"latency {signed('latency_ms', d)} ms" + latency_pct(r)
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
    c = int(summary.attrs.get("contrasts_in_family", 0))  # contrasts between arms share each metric's family
    with_contrasts = f" and the {c} contrast{'s' * (c != 1)} between arms below" if c else ""
    lines += [f"Δ {label} vs the baseline **{base}** over {seeds} paired seeds; intervals and p-values Holm-adjusted "
              f"for the {m} arm{'s' * (m != 1)} compared{with_contrasts} (family-wise {level:.0%}){against}. "
              + covers_sentence(others, metric), ""]
    lines += [_arm_verdict(r, metric, target, base) for _, r in others.iterrows()]
    front = summary[summary["pareto"].map(is_true)] if "pareto" in summary.columns else summary.iloc[0:0]
    if len(front):
        pts = ", ".join(f"{r['arm']} ({fmt('map50_95', r['map50_95_mean'])}, {fmt('latency_ms', r['latency_ms_mean'])}"
                        " ms)" for _, r in front.sort_values("latency_ms_mean").iterrows())
        text = (f"- **Trade-off** (mean mAP50-95 vs {latency_kind(summary)} latency): Pareto-optimal {pts}; each other arm is matched "
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
    val_se = num(r.get(f"{metric}_val_se"))
    if math.isfinite(val_se) and not (math.isfinite(need) and need > n):
        return head + (f"{now}; ±{fmt(metric, target)} is out of reach of more seeds: the seed part is within it, the "
                       f"val set's part is not (more val images would shrink it){stop}")
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
    """Why each arm's adaptive seeds stopped, from its runs alone: Stein's total from its pilot (the SD the summary's
    seed part used, ``{metric}_seed_sd``, over ``_seed_df`` + 1 pilot pairs, :func:`~.stopping.stein_seeds`):
    ``planned`` (it has that total), ``max`` (the total was capped), ``no finished run``, ``too few pilot pairs``;
    ``open`` for an arm a sweep has not finished."""
    out = []
    for _, r in summary.iterrows():
        sd, df = num(r.get(f"{metric}_seed_sd")), num(r.get(f"{metric}_seed_df"))
        runs = int(num(r.get("n_runs")) or 0)
        if is_true(r.get("baseline")):
            out.append("")
        elif not int(num(r.get("n_ok")) or 0):
            out.append("no finished run")
        elif not (math.isfinite(sd) and math.isfinite(df)):
            out.append("stopped: too few pilot pairs for an SD")
        else:
            wanted = stein_seeds(sd, int(df) + 1, target)
            total = min(wanted, int(policy["max"]))
            pilot = f"pilot SD {fmt(metric, sd)} over {int(df) + 1} seeds"
            if runs < total:
                out.append(f"open: {total} planned ({pilot})")
            elif wanted > total:
                out.append(f"stopped: max {total} seeds ({pilot} asked for {wanted})")
            else:
                out.append(f"stopped: planned ({pilot} -> {total})")
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
        saved = ["", f"Adaptive seeds, per arm (Stein's two-stage rule): each arm's pilot SD fixed its total once "
                 f"(the seeds whose interval's seed part is ±{fmt(metric, target)} at that SD, at most max), and its "
                 "interval uses the pilot's SD and degrees of freedom, so its level is exact however many seeds the "
                 f"pilot asked for; the baseline ran every seed an arm needed. {sum(runs)} runs, where giving every "
                 f"arm every seed would have run {whole} (saved {whole - sum(runs)})."]
    return ["", "## Precision", "",
            f"Paired seeds needed for a 95% interval of ±{fmt(metric, target)} on Δ {label} (the target: "
            "`yolo-necks report --target`, or `target` in the spec), from the observed SD of the paired differences. "
            "\"now\" is the half-width of the current 95% interval (the seeds and, where the runs stored bootstrap "
            "replicates, the val set): the smallest Δ these runs resolve (the adjusted intervals above are wider); "
            "the seed count is for the seed part, since more seeds do not shrink the val set's. An SD from a few "
            "seeds is itself rough, so read the count as a guide, and never add seeds until an interval looks "
            "narrow enough: that biases the SD at the stop downwards (adaptive seeds fix each arm's total from a "
            "pilot instead).", ""] + [
        "- " + planning_line(r, metric, target, base) for _, r in others.iterrows()] + saved


def _val_text(r, metric: str) -> str:
    """``; val set: SE 0.004 of the seed-averaged Δ (in the interval; more seeds do not shrink it)``, or ''."""
    se = num(r.get(f"{metric}_val_se"))
    if not math.isfinite(se):
        return ""
    return f"; val set: SE {fmt(metric, se)} of the seed-averaged Δ (in the interval; more seeds do not shrink it)"


def covers_sentence(others: pd.DataFrame, metric: str) -> str:
    """What the verdicts' intervals cover: the seeds and the val set's images, or the seeds only, and by which arms."""
    label = METRICS[metric][0]
    with_val = [str(r["arm"]) for _, r in others.iterrows() if covers(r, metric) != "seeds only"]
    both = ("the seeds and the val set's images (the seed part from the SD over paired seeds, the val set's from the "
            "runs' paired bootstrap replicates over the val images)")
    only = "the seeds only (no bootstrap replicates: conditional on this val split)"
    if len(with_val) == len(others):
        text = f"The intervals of Δ {label} cover {both}."
    elif not with_val:
        text = f"The intervals of Δ {label} cover {only}."
    else:
        text = f"The intervals of Δ {label} cover {both} for {', '.join(with_val)}, {only} for the other arms."
    pilot = f"{metric}_seed_df" in others.columns and bool((
        pd.to_numeric(others[f"{metric}_seed_df"], errors="coerce") + 1
        < pd.to_numeric(others[f"{metric}_delta_n"], errors="coerce")).any())
    return text + (" With adaptive seeds the seed part is each arm's pilot SD with its degrees of freedom (Stein)."
                   if pilot else "")


def speed_lines(summary: pd.DataFrame) -> list[str]:
    """How the arms were timed (once per sweep, interleaved), where, and what to distrust."""
    def distinct(col: str) -> list[str]:
        return [v for v in dict.fromkeys(as_strings(summary[col])) if v] if col in summary.columns else []

    devices, sessions = distinct("speed_device_name"), distinct("speed_session")
    shares = [(str(r["arm"]), num(r.get("speed_cpu_share"))) for _, r in summary.iterrows()]
    seeds = distinct("speed_order_seed")
    order = (f"in an order shuffled every round (seed {', '.join(seeds)}), over" if seeds  # older sessions: fixed
             else "round-robin (the same order every round) over")
    lines = [
        f"- speed: every arm timed once, after training, in one session with nothing else of the sweep running "
        f"({', '.join(distinct('speed_dtype'))} on {', '.join(distinct('speed_device'))}: {', '.join(devices)}, "
        f"{', '.join(distinct('speed_threads')) or '-'} thread(s), host {', '.join(distinct('speed_host'))}): fused "
        f"models in eval mode, forward pass only (no pre-processing or NMS), interleaved {order} "
        f"{', '.join(distinct('speed_rounds'))} rounds; latency = batch-1 median over the rounds of that one timing "
        "session ± their SD; Δ latency = mean of the per-round paired differences to the baseline (and its % of the "
        "baseline's median), its interval over the timing rounds of that one session: timing noise only, not "
        "the spread between machines or seeds (speed.csv" + ("; every round in speed_rounds.csv)" if seeds else ")")
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
