"""Statistics over seeds: per-arm mean ± std, paired differences against the baseline arm, family-wise control
over the arms compared with the baseline, and precision planning.

Runs are paired by seed: for each seed where both the arm and the baseline finished, ``d = arm - baseline``. The
reported Δ is the mean of those differences. Its interval has a seed part (``sd(d)/√n`` with ``n − 1`` degrees of
freedom, or Stein's pilot with adaptive seeds) and, where the runs stored bootstrap replicates over the val images, a
val-set part (``{metric}_val_se``, :mod:`.valshare`), each at its own t quantile (:mod:`.decide`, where the rule
lives). With fewer than two pairs there is no interval ("n/a"). Student-t quantiles and tails come from
:mod:`.tdist` (no scipy needed). Failed runs never enter a mean; they are counted and listed separately.

Several arms are compared with one baseline, so the chance that at least one of ``m`` null differences looks
"significant" is far above 5%. Per metric, the p-values of the ``m`` arms that have one are Holm-adjusted
(:func:`holm`), and each Δ gets one *adjusted interval* consistent with Holm's decisions (:func:`holm_levels`): an
arm is declared different (its adjusted interval excludes 0) exactly when its Holm-adjusted p <= alpha = 1 - level,
and the equivalence and non-inferiority verdicts are read off the same interval.

Precision planning (:func:`~yolo_necks.ablation.analyse.tdist.seeds_needed`, per arm in the summary) answers "how many
seeds until the seed part of the 95% interval of Δ is ±target?" from the observed SD of the paired differences;
adaptive seeds fix each arm's seeds from a pilot (:mod:`.stopping`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..records.columns import FRACTION_METRICS, METRICS, SETTING_COLUMNS, as_strings, is_true, num
from ..records.timings import format_rows, round_key
from .decide import Evidence, decide, interval, margin_pvalues, p_value
from .decide import half_width as interval_half
from .decide import paired_evidence
from .tdist import finite as _finite
from .tdist import half_width, seeds_needed, t_ppf, t_sf
from .valshare import run_replicates, val_variance

# the primary metric of verdicts and precision planning, and the default target half-width of its 95% interval
DEFAULT_METRIC = "map50_95"
DEFAULT_TARGET = 0.01

# ----------------------------------------------------------------------------------------------- paired deltas
@dataclass(frozen=True)
class PairedDelta:
    """Mean paired difference (arm - baseline) over ``n`` seeds, with its confidence interval and p-value."""

    mean: float
    lo: float
    hi: float
    n: int
    sd: float
    p: float

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and math.isfinite(self.lo)


def paired_delta(arm: dict, baseline: dict, level: float = 0.95) -> PairedDelta:
    """Paired difference of ``{seed: value}`` maps over the seeds both have (non-NaN values only).

    Differences equal up to floating-point rounding (SD below 1e-12 of their magnitude) count as identical: SD 0,
    a zero-width interval, p 0 (or 1 when they are all 0)."""
    seeds = sorted(s for s in arm if s in baseline and _finite(arm[s]) and _finite(baseline[s]))
    d = [float(arm[s]) - float(baseline[s]) for s in seeds]
    n = len(d)
    nan = float("nan")
    if n == 0:
        return PairedDelta(nan, nan, nan, 0, nan, nan)
    mean = sum(d) / n
    if n == 1:
        return PairedDelta(mean, nan, nan, 1, nan, nan)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd <= 1e-12 * max(abs(x) for x in d):
        sd = 0.0
    se = sd / math.sqrt(n)
    half = t_ppf(0.5 + level / 2.0, n - 1) * se
    return PairedDelta(mean, mean - half, mean + half, n, sd, paired_p(mean, sd, n))


def paired_p(mean: float, sd: float, n: int) -> float:
    """Two-sided paired-t p-value of ``H0: mu = 0`` from the mean and SD of ``n`` paired differences, from the t
    tail itself (:func:`~.tdist.t_sf`: no rounding to 0 however far out); SD 0 gives p 0 (1 when the mean is 0);
    NaN with n < 2."""
    if n < 2 or not (_finite(mean) and _finite(sd)):
        return float("nan")
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return min(1.0, 2.0 * t_sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def latency_deltas(rows: list[dict], rounds: dict[str, list[float]]) -> list[dict]:
    """A timing session's ``speed.csv`` rows with each arm's Δ latency to the baseline (``delta_ms`` and its
    interval, SD, n, p) from the per-round paired differences: the arms ran next to each other in every round. Per
    format (``format``; none: torch): against the baseline in the same format (``rounds`` keyed by
    :func:`~..records.timings.round_key`); a cell without rounds (it did not export or run) has no Δ."""
    base = next((r["arm"] for r in rows if r.get("baseline")), None)
    out = []
    for r in rows:
        r = dict(r)
        key, base_key = round_key(r["arm"], r.get("format")), round_key(str(base), r.get("format"))
        if base is not None and r["arm"] != base and key in rounds and base_key in rounds:
            d = paired_delta(dict(enumerate(rounds[key])), dict(enumerate(rounds[base_key])))
            r.update({"delta_ms": d.mean, "delta_lo_ms": d.lo, "delta_hi_ms": d.hi, "delta_sd_ms": d.sd,
                      "delta_n": d.n, "delta_p": d.p})
        out.append(r)
    return out


# ----------------------------------------------------------------------------------------------------- summary
def latest_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The latest row of every (sweep, arm, seed): a retried run supersedes its failed attempt."""
    if results.empty:
        return results
    keys = [k for k in ("sweep", "arm", "seed") if k in results.columns]
    return results.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def _last_text(runs: pd.DataFrame, col: str) -> str:
    """The latest non-empty text of a column ('' when absent: results written before it existed)."""
    values = [v for v in as_strings(runs[col]) if v] if col in runs.columns else []
    return values[-1] if values else ""


def split_runs(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(latest runs with numeric metric columns, their finished subset, the baseline arm or None)."""
    runs = latest_runs(results)
    if runs.empty:
        return runs, runs, None
    runs = runs.copy()
    for col in METRICS:
        if col not in runs.columns:
            runs[col] = float("nan")
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    ok = runs[runs["status"].astype(str) == "ok"]
    base_rows = runs[runs["baseline"].map(is_true)] if "baseline" in runs.columns else runs.iloc[0:0]
    return runs, ok, (base_rows["arm"].iloc[0] if len(base_rows) else None)


def summarize(results: pd.DataFrame, level: float = 0.95, metric: str = DEFAULT_METRIC,
              target: float = DEFAULT_TARGET, margin: float | None = None,
              timings: pd.DataFrame | None = None, pilot: int | None = None,
              contrasts: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    """One row per arm: runs ok/failed, mean and std of every metric over ok seeds, paired Δ vs the baseline, and
    the family-wise inference and precision planning of :func:`add_inference` (``metric`` is the primary metric of
    the verdicts, ``target`` the wanted half-width of its ``level`` interval, ``margin`` the equivalence margin).

    Each Δ's standard error (:func:`_paired_columns`) holds the seeds and, where the runs stored bootstrap replicates
    of the metric, the val set (``{m}_val_se``); ``pilot``: a sweep with adaptive seeds, whose seeds below ``pilot``
    were Stein's pilot: their SD and degrees of freedom make the seed part (:mod:`.stopping`).

    ``timings``: each arm's latest row of the sweep's ``speed.csv`` (:mod:`.arm_speed`). With them, latency and
    throughput are the arm's once-per-sweep timing (the median and SD over rounds; Δ latency from the per-round paired
    differences to the baseline) instead of means over runs; sweeps recorded before per-arm timing have none."""
    runs, ok, base_arm = split_runs(results)
    if runs.empty:
        return pd.DataFrame()
    timings = format_rows(timings)  # latency and Δ latency are torch's; the other formats: .deployment
    base_ok = ok[ok["arm"] == base_arm]
    reps = run_replicates(ok) if base_arm is not None else {}
    timed = timings is not None and len(timings) > 0
    rows = []
    # the baseline first, then the arms in order of first appearance (parallel runs finish in any order)
    arms = sorted(dict.fromkeys(runs["arm"]), key=lambda a: a != base_arm)
    for arm in arms:
        arm_runs = runs[runs["arm"] == arm]
        arm_ok = ok[ok["arm"] == arm]
        row = {
            "sweep": arm_runs["sweep"].iloc[0] if "sweep" in arm_runs else "",
            "arm": arm,
            "block": arm_runs["block"].iloc[-1] if "block" in arm_runs else "",
            "placement": _last_text(arm_runs, "placement"),
            "baseline": arm == base_arm,
            "n_runs": len(arm_runs),
            "n_ok": len(arm_ok),
            "n_failed": int((arm_runs["status"].astype(str) != "ok").sum()),
            "seeds_ok": " ".join(str(s) for s in arm_ok["seed"]),
            "seeds_failed": " ".join(str(s) for s in arm_runs[arm_runs["status"].astype(str) != "ok"]["seed"]),
        }
        for col in METRICS:
            vals = arm_ok[col].dropna()
            row[f"{col}_mean"] = float(vals.mean()) if len(vals) else float("nan")
            row[f"{col}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            if base_arm is None or arm == base_arm:  # no baseline, or the baseline itself: no delta
                delta = PairedDelta(*(float("nan"),) * 3, 0, float("nan"), float("nan"))
            else:
                delta = paired_delta(dict(zip(arm_ok["seed"], arm_ok[col])), dict(zip(base_ok["seed"], base_ok[col])),
                                     level)
            row[f"{col}_delta"] = delta.mean
            row[f"{col}_delta_lo"] = delta.lo
            row[f"{col}_delta_hi"] = delta.hi
            row[f"{col}_delta_n"] = delta.n
            row[f"{col}_delta_p"] = delta.p
            row[f"{col}_delta_sd"] = delta.sd
            if base_arm is not None and arm != base_arm and not (timed and col in TIMED):
                row.update(_paired_columns(col, arm, base_arm, arm_ok, base_ok, reps, pilot, level))
        for col in SETTING_COLUMNS:
            if col in arm_runs.columns:
                values = list(dict.fromkeys(as_strings(arm_runs[col])))
                row[col] = values[0] if len(values) == 1 else " | ".join(values)
        if timings is not None and len(timings):
            base_t = timings[timings["arm"] == base_arm]
            base_ms = num(base_t["latency_ms"].iloc[-1]) if len(base_t) else float("nan")
            _use_timing(row, timings[timings["arm"] == arm], level, base_ms)
        rows.append(row)
    if contrasts:  # extra comparisons A − B: rows of their own, in each metric's family with the arms (contrasts.py)
        rows += contrast_rows(contrasts, ok, reps if base_arm is not None else run_replicates(ok), pilot, level, timed)
    frame = pd.DataFrame(rows)
    if "contrast" in frame.columns:
        frame["contrast"] = frame["contrast"].map(is_true)
    return add_inference(frame, level, metric, target, margin)


TIMED = ("latency_ms", "latency_p90_ms", "throughput_ips")  # the metrics an arm's timing session provides


def _paired_columns(col: str, arm, base, arm_ok: pd.DataFrame, base_ok: pd.DataFrame, reps: dict, pilot: int | None,
                    level: float) -> dict:
    """An arm's Δ on ``col`` as :mod:`.decide` sees it: ``{col}_seed_sd``/``_seed_df`` (the SD over seeds the
    interval's seed part uses: every paired seed's, or Stein's pilot's, and its degrees of freedom),
    ``{col}_val_se``/``_val_df`` (the val set's standard error of the seed-averaged Δ from the runs' paired bootstrap
    replicates, and the val images − 1; NaN without replicates) and the unadjusted ``level`` interval and p."""
    a, b = dict(zip(arm_ok["seed"], arm_ok[col])), dict(zip(base_ok["seed"], base_ok[col]))
    seeds = sorted(s for s in a if s in b and _finite(a[s]) and _finite(b[s]))
    d = [float(a[s]) - float(b[s]) for s in seeds]
    v, v_df, _ = val_variance(reps, arm, base, seeds, col) if reps else (math.nan, math.inf, 0)
    ev = paired_evidence(d, None if pilot is None else [x for s, x in zip(seeds, d) if s < pilot], v, v_df)
    nan = float("nan")
    out = {f"{col}_seed_sd": nan, f"{col}_seed_df": nan, f"{col}_val_se": math.sqrt(v) if _finite(v) else nan,
           f"{col}_val_df": v_df if _finite(v) else nan}
    if ev is None:
        out.update({f"{col}_delta_lo": nan, f"{col}_delta_hi": nan, f"{col}_delta_p": nan})
        return out
    lo, hi = interval(ev, level)
    out.update({f"{col}_seed_sd": ev.seed_sd, f"{col}_seed_df": ev.seed_df, f"{col}_delta_lo": lo,
                f"{col}_delta_hi": hi, f"{col}_delta_p": p_value(ev)})
    return out


def contrast_rows(contrasts, ok: pd.DataFrame, reps: dict, pilot: int | None, level: float,
                  timed: bool) -> list[dict]:
    """Summary rows of contrasts ``(A, B)`` between two arms: Δ = A − B paired by the seeds both finished, with the
    evidence of a baseline comparison (:func:`_paired_columns`: the seeds, the val set from both arms' replicates,
    Stein's pilot), so that :func:`add_inference` decides them in each metric's one Holm family together with the
    arms compared with the baseline. ``arm`` is 'A − B', ``contrast`` True; no means (those are the arms'); the
    latency of arms timed once per sweep has no paired Δ between two arms (NaN)."""
    nan, rows = float("nan"), []
    for a, b in contrasts:
        a_ok, b_ok = ok[ok["arm"] == a], ok[ok["arm"] == b]
        seeds = sorted(set(a_ok["seed"]) & set(b_ok["seed"]))
        row = {"sweep": ok["sweep"].iloc[0] if "sweep" in ok and len(ok) else "", "arm": f"{a} − {b}", "block": "",
               "placement": "", "baseline": False, "contrast": True, "contrast_a": a, "contrast_b": b,
               "n_runs": min(len(a_ok), len(b_ok)), "n_ok": min(len(a_ok), len(b_ok)), "n_failed": 0,
               "seeds_ok": " ".join(str(s) for s in seeds), "seeds_failed": ""}
        for col in METRICS:
            row[f"{col}_mean"] = row[f"{col}_std"] = nan
            if timed and col in TIMED:
                row.update({f"{col}_delta{k}": nan for k in ("", "_lo", "_hi", "_p", "_sd")}, **{f"{col}_delta_n": 0})
                continue
            d = paired_delta(dict(zip(a_ok["seed"], a_ok[col])), dict(zip(b_ok["seed"], b_ok[col])), level)
            row.update({f"{col}_delta": d.mean, f"{col}_delta_lo": d.lo, f"{col}_delta_hi": d.hi,
                        f"{col}_delta_n": d.n, f"{col}_delta_p": d.p, f"{col}_delta_sd": d.sd})
            row.update(_paired_columns(col, a, b, a_ok, b_ok, reps, pilot, level))
        rows.append(row)
    return rows


def _use_timing(row: dict, timing: pd.DataFrame, level: float, base_ms: float = float("nan")) -> None:
    """Put an arm's once-per-sweep timing in its summary row (NaN when the arm has none): the median over the
    session's rounds, Δ = the mean of the per-round paired differences to the baseline with its interval over those
    rounds, and ``latency_ms_delta_pct``, Δ in % of the baseline's median ``base_ms``."""
    nan = float("nan")
    t = timing.iloc[-1].to_dict() if len(timing) else {}
    for col in TIMED:
        row[f"{col}_mean"] = num(t.get(col, nan))
        row[f"{col}_std"] = num(t.get("latency_std_ms", nan)) if col == "latency_ms" else nan
        row.update({f"{col}_delta{k}": nan for k in ("", "_lo", "_hi", "_p", "_sd")}, **{f"{col}_delta_n": 0})
    n = int(num(t.get("delta_n")) or 0) if _finite(t.get("delta_n")) else 0
    if n >= 2 and not row["baseline"]:
        mean, sd = num(t.get("delta_ms")), num(t.get("delta_sd_ms"))
        half = half_width(sd, n, level)
        # p from the recorded mean, SD and n: speed.csv files written before t_sf hold p-values rounded to 0
        row.update(latency_ms_delta=mean, latency_ms_delta_lo=mean - half, latency_ms_delta_hi=mean + half,
                   latency_ms_delta_n=n, latency_ms_delta_p=paired_p(mean, sd, n), latency_ms_delta_sd=sd)
    row["latency_ms_delta_pct"] = (100.0 * row["latency_ms_delta"] / base_ms
                                   if _finite(base_ms) and base_ms > 0 else float("nan"))
    for key in ("session", "device_name", "dtype", "device", "threads", "cpu_share", "starved", "rounds", "host",
                "order_seed"):
        row[f"speed_{key}" if not key.startswith("speed") else key] = t.get(key, "")


# per metric, the columns add_inference appends after ``{metric}_delta_sd``
INFERENCE_COLUMNS = ("delta_p_holm", "delta_adj_lo", "delta_adj_hi", "delta_adj_level", "delta_sig", "delta_half",
                     "seeds_needed")
# per fraction metric, with a margin: the adjusted interval inside ±margin / its lower end above −margin (the
# equivalence and non-inferiority the verdict reads off it) and, for reference, the unadjusted one-sided p-values
EQUIVALENCE_COLUMNS = ("tost_p", "noninf_p", "equiv", "noninf")
VERDICTS = ("better", "worse", "equivalent", "not worse", "undecided", "no detectable difference", "undetermined",
            "failed", "baseline")


def _units(metric: str) -> str:
    return "fraction" if metric in FRACTION_METRICS else metric


def check_margin(margin) -> float | None:
    """An equivalence margin: None (off) or a finite number > 0 in the units of the mAP metrics (ValueError)."""
    if margin is None:
        return None
    if isinstance(margin, bool) or not _finite(margin) or float(margin) <= 0:
        raise ValueError(f"margin must be a number > 0 in mAP units (e.g. 0.01), or null; got {margin!r}")
    return float(margin)


def check_metric_target(metric: str, target: float) -> tuple[str, float]:
    """``(metric, target)`` validated: a known metric and a finite target > 0 (ValueError otherwise)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}' (choose from {', '.join(METRICS)})")
    if isinstance(target, bool) or not _finite(target) or float(target) <= 0:
        raise ValueError(f"target must be a number > 0 (the wanted half-width of the 95% interval), got {target!r}")
    return metric, float(target)


def add_inference(summary: pd.DataFrame, level: float = 0.95, metric: str = DEFAULT_METRIC,
                  target: float = DEFAULT_TARGET, margin: float | None = None) -> pd.DataFrame:
    """Family-wise inference, precision planning, verdicts and the Pareto set, from the per-arm Δ columns alone,
    by the one rule of :mod:`.decide`.

    Needs per metric ``{m}_delta``, ``{m}_delta_n`` and either the parts :func:`summarize` derives (``{m}_seed_sd``/
    ``_seed_df``: the seeds, or Stein's pilot; ``{m}_val_se``/``_val_df``: the val set) or ``{m}_delta_sd`` (the
    paired-t SD over the seeds with ``n − 1``: latency over timing rounds, older summaries; one without
    ``_delta_sd``: recovered from its ``level`` interval ``_delta_lo``/``_delta_hi``). Sets ``{m}_delta_p`` from that
    evidence (:func:`~.decide.p_value`) and adds, per metric:

    - ``{m}_delta_p_holm``: Holm-adjusted p over the arms compared with the baseline that have a p-value (per
      metric; NaN for the baseline and arms with < 2 paired seeds);
    - ``{m}_delta_adj_lo``/``_hi``/``_level``: the adjusted interval at the level of :func:`holm_levels`, the one
      interval every verdict on this metric reads off;
    - ``{m}_delta_sig``: the adjusted interval excludes 0 (exactly when Holm rejects at ``1 - level``);
    - ``{m}_delta_half``: the half-width of the unadjusted ``level`` interval (seeds and, where known, the val set),
      i.e. the smallest Δ the current runs resolve (NaN with < 2 paired seeds);
    - ``{m}_seeds_needed``: :func:`seeds_needed` for ±``target`` from the SD over seeds (the seed part: the val
      set's part does not shrink with seeds), for the metrics in the primary metric's units, else empty.

    With a ``margin`` (mAP units), per fraction metric (all higher-is-better) also :data:`EQUIVALENCE_COLUMNS`:
    ``equiv`` (the adjusted interval lies inside ±margin), ``noninf`` (its lower end lies above −margin), and the
    unadjusted one-sided p-values ``tost_p`` (TOST) and ``noninf_p`` for reference.

    and per arm ``verdict`` on the primary metric (one of :data:`VERDICTS`, read off the adjusted interval by
    :func:`~.decide.verdict_of`: ``better``/``worse`` when it excludes 0, by the metric's direction; otherwise, with a
    margin, ``equivalent``, ``not worse`` or ``undecided``, and without one ``no detectable difference``;
    ``undetermined`` with < 2 paired seeds or no baseline; ``failed`` with no finished run), ``pareto``
    (:func:`pareto_arms`), ``primary_metric``, ``target`` and ``margin``.
    """
    metric, target = check_metric_target(metric, target)
    margin = check_margin(margin)
    if summary.empty:
        return summary
    s = summary.copy()
    alpha = 1.0 - level
    is_base = [is_true(v) for v in s["baseline"]]
    added: dict[str, list[str]] = {}
    extra: dict[str, list] = {}
    recomputed: dict[str, list] = {}
    for col in METRICS:
        if f"{col}_delta" not in s.columns:
            continue
        sd = [float(v) if _finite(v) else float("nan") for v in pd.to_numeric(s[f"{col}_delta_sd"], errors="coerce")]
        evidence = [None if b else _evidence(r, col) for (_, r), b in zip(s.iterrows(), is_base)]
        fraction = margin is not None and col in FRACTION_METRICS
        decisions = decide(evidence, alpha, margin if fraction else None, METRICS[col][1])
        nan = float("nan")
        planned = _units(col) == _units(metric)
        new = {
            "delta_p_holm": [d.p_holm if d else nan for d in decisions],
            "delta_adj_lo": [d.lo if d else nan for d in decisions],
            "delta_adj_hi": [d.hi if d else nan for d in decisions],
            "delta_adj_level": [d.level if d else nan for d in decisions],
            "delta_sig": [bool(d and d.sig) for d in decisions],
            "delta_half": [interval_half(ev, level) if ev else nan for ev in evidence],
            "seeds_needed": pd.array([seeds_needed(x, target, level) if planned and not b else None
                                      for x, b in zip(sd, is_base)], dtype="Int64"),
        }
        if fraction:
            ps = [margin_pvalues(ev, margin, METRICS[col][1]) if ev else (nan, nan) for ev in evidence]
            new.update(tost_p=[x[0] for x in ps], noninf_p=[x[1] for x in ps],
                       equiv=[bool(d and d.equiv) for d in decisions], noninf=[bool(d and d.noninf) for d in decisions])
        recomputed[f"{col}_delta_p"] = [d.p if d else nan for d in decisions]  # from the evidence the rule uses
        extra.update({f"{col}_{k}": v for k, v in new.items()})
        added[f"{col}_delta_sd"] = [f"{col}_{k}" for k in new]
    if recomputed:
        s[list(recomputed)] = pd.DataFrame(recomputed, index=s.index)
    s = pd.concat([s, pd.DataFrame(extra, index=s.index)], axis=1)  # at once: no fragmented frame
    s["margin"] = margin
    s["verdict"] = [_verdict(r, metric, margin) for _, r in s.iterrows()]
    front = set(pareto_arms(s))
    s["pareto"] = [a in front for a in s["arm"]]
    s["primary_metric"], s["target"] = metric, target
    order: list[str] = []
    for c in s.columns:
        if c in order or any(c in v for v in added.values()):
            continue
        order.append(c)
        order += added.get(c, [])
        if c == "seeds_failed":
            order += ["verdict", "pareto"]
    order += [c for c in s.columns if c not in order]
    return s[order].copy()  # one block per dtype: later column inserts stay cheap


def upgrade_summary(summary: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """A ``summary.csv`` of any harness version in today's terms, converted once, when read: ``baseline`` as
    booleans, the SD of the paired differences derived from the interval where a summary predates storing it, and the
    family-wise inference added where it predates Holm."""
    s = summary.copy()
    s["baseline"] = s["baseline"].astype(str).str.lower().isin(["true", "1"])
    for col in METRICS:
        if f"{col}_delta" in s.columns and f"{col}_delta_sd" not in s.columns:
            n = [int(v) if _finite(v) else 0 for v in pd.to_numeric(s[f"{col}_delta_n"], errors="coerce")]
            lo = pd.to_numeric(s.get(f"{col}_delta_lo"), errors="coerce")
            hi = pd.to_numeric(s.get(f"{col}_delta_hi"), errors="coerce")
            s[f"{col}_delta_sd"] = [(h - lo_) / 2.0 / t_ppf(0.5 + level / 2.0, k - 1) * math.sqrt(k)
                                    if k >= 2 and _finite(h) and _finite(lo_) else float("nan")
                                    for lo_, h, k in zip(lo, hi, n)]
    if not any(c.endswith("_delta_p_holm") for c in s.columns):
        s = add_inference(s, level)
    return s


def _evidence(row, col: str) -> Evidence | None:
    """A summary row's :class:`~.decide.Evidence` on ``col``: its seed part ``{col}_seed_sd``/``_seed_df`` and val
    part ``{col}_val_se``/``_val_df`` where the summary has them, else the paired-t SD over the ``n`` seeds with
    ``n − 1`` and no val part (latency from the timing rounds; summaries written before them). None with fewer than
    2 paired seeds."""
    n = int(num(row.get(f"{col}_delta_n"))) if _finite(row.get(f"{col}_delta_n")) else 0
    mean, sd, df = num(row.get(f"{col}_delta")), num(row.get(f"{col}_seed_sd")), num(row.get(f"{col}_seed_df"))
    if n < 2 or not _finite(mean):
        return None
    if not (_finite(sd) and _finite(df)):
        sd, df = num(row.get(f"{col}_delta_sd")), n - 1.0
        if not _finite(sd):
            return None
    val_se, val_df = num(row.get(f"{col}_val_se")), num(row.get(f"{col}_val_df"))
    if not _finite(val_se):
        return Evidence(mean, n, sd, df)
    return Evidence(mean, n, sd, df, val_se, val_df if val_df == val_df else math.inf)


def _verdict(row, metric: str, margin: float | None = None) -> str:
    if is_true(row.get("baseline")):
        return "baseline"
    if not int(num(row.get("n_ok")) or 0):
        return "failed"
    if not _finite(row.get(f"{metric}_delta_p_holm")):
        return "undetermined"
    if is_true(row.get(f"{metric}_delta_sig")):
        return "better" if (float(row[f"{metric}_delta"]) > 0) == METRICS[metric][1] else "worse"
    if margin is None or metric not in FRACTION_METRICS:
        return "no detectable difference"
    if is_true(row.get(f"{metric}_equiv")):
        return "equivalent"
    return "not worse" if is_true(row.get(f"{metric}_noninf")) else "undecided"


def pareto_arms(summary: pd.DataFrame, accuracy: str = "map50_95", cost: str = "latency_ms") -> list[str]:
    """Arms on the Pareto front of mean ``accuracy`` (higher is better) vs mean ``cost`` (lower is better): no other
    arm is at least as good on both and strictly better on one. Arms without a finished run or without both means
    are never on it. Means only: the front says nothing about whether the differences exceed the noise."""
    if summary.empty:
        return []
    pts = []
    for _, r in summary.iterrows():
        a, c = num(r.get(f"{accuracy}_mean")), num(r.get(f"{cost}_mean"))
        if int(num(r.get("n_ok")) or 0) > 0 and math.isfinite(a) and math.isfinite(c):
            pts.append((str(r["arm"]), a, c))
    return [arm for arm, a, c in pts
            if not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for _, a2, c2 in pts)]


def mixed_settings(results: pd.DataFrame) -> dict[str, list[str]]:
    """Settings that differ between the latest runs (a sweep re-run with other settings in the same folder).
    Speed settings are compared over finished runs only; a failed run has none."""
    runs = latest_runs(results)
    ok = runs[runs["status"].astype(str) == "ok"] if "status" in runs.columns else runs
    out = {}
    for col in SETTING_COLUMNS:
        frame = ok if col.startswith(("speed_", "throughput_")) else runs
        if col in frame.columns:
            values = [v for v in dict.fromkeys(as_strings(frame[col])) if v != ""]
            if len(values) > 1:
                out[col] = values
    return out
