"""Statistics over seeds: per-arm mean ± std, paired differences against the baseline arm, family-wise control
over the arms compared with the baseline, and precision planning.

Runs are paired by seed: for each seed where both the arm and the baseline finished, ``d = arm - baseline``. The
reported Δ is the mean of those differences, with a two-sided 95% confidence interval
``mean(d) ± t(0.975, n-1) · sd(d) / sqrt(n)`` and the paired t-test p-value. With fewer than two pairs there is no
interval ("n/a"). Student-t quantiles and tails come from :mod:`.tdist` (no scipy needed). Failed runs never enter a mean; they are counted and listed separately.

Several arms are compared with one baseline, so the chance that at least one of ``m`` null differences looks
"significant" is far above 5%. Per metric, the p-values of the ``m`` arms that have one are Holm-adjusted
(:func:`holm`), and each Δ gets an *adjusted interval* consistent with Holm's decisions (:func:`holm_levels`): an
arm is declared different (its adjusted interval excludes 0) exactly when its Holm-adjusted p <= alpha = 1 - level.

Precision planning (:func:`~yolo_necks.ablation.analyse.tdist.seeds_needed`, per arm in the summary) answers "how many
seeds until the 95% interval of Δ is ±target?" from the observed SD of the paired differences; the stopping rule of
adaptive seeds is in :mod:`.stopping`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..records.columns import FRACTION_METRICS, METRICS, SETTING_COLUMNS, as_strings, is_true, num
from .tdist import finite as _finite
from .tdist import half_width, paired_tost, seeds_needed, t_cdf, t_ppf

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
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = 2.0 * (1.0 - t_cdf(abs(mean) / se, n - 1))
    return PairedDelta(mean, mean - half, mean + half, n, sd, p)


def latency_deltas(rows: list[dict], rounds: dict[str, list[float]]) -> list[dict]:
    """A timing session's ``speed.csv`` rows with each arm's Δ latency to the baseline (``delta_ms`` and its
    interval, SD, n, p) from the per-round paired differences: the arms ran next to each other in every round."""
    base = next((r["arm"] for r in rows if r.get("baseline")), None)
    out = []
    for r in rows:
        r = dict(r)
        if base is not None and r["arm"] != base:
            d = paired_delta(dict(enumerate(rounds[r["arm"]])), dict(enumerate(rounds[base])))
            r.update({"delta_ms": d.mean, "delta_lo_ms": d.lo, "delta_hi_ms": d.hi, "delta_sd_ms": d.sd,
                      "delta_n": d.n, "delta_p": d.p})
        out.append(r)
    return out


# -------------------------------------------------------------------------------------- multiple comparisons
def _holm(pvalues: Sequence[float]) -> tuple[list[float], list[int], int]:
    """(adjusted p-values, Holm step of each p (1-based; ties share the step of the first of them; 0 for no p), m)."""
    ps = [float(p) if _finite(p) else float("nan") for p in pvalues]
    order = sorted((i for i, p in enumerate(ps) if math.isfinite(p)), key=lambda i: ps[i])
    m = len(order)
    adjusted, steps = [float("nan")] * len(ps), [0] * len(ps)
    running, prev_p, prev_step = 0.0, None, 0
    for j, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - j + 1) * ps[i]))
        adjusted[i] = running
        prev_step = prev_step if ps[i] == prev_p else j
        steps[i], prev_p = prev_step, ps[i]
    return adjusted, steps, m


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    With the ``m`` finite p-values sorted ascending, ``p_adj(j) = max_{k<=j} min(1, (m-k+1) · p(k))``; NaN entries
    (arms without a p-value: fewer than 2 paired seeds, failed, the baseline itself) stay NaN and do not count in
    ``m``. Rejecting every hypothesis with ``p_adj <= alpha`` keeps the family-wise error rate at ``alpha``.
    """
    return _holm(pvalues)[0]


def holm_levels(pvalues: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Confidence level of each comparison's *adjusted interval*, consistent with Holm's decisions at ``alpha``.

    An arm rejected at Holm step ``j`` gets the level ``1 - alpha/(m-j+1)``, the level at which Holm tested it: its
    p <= alpha/(m-j+1), so that interval excludes 0. A non-rejected arm gets the Bonferroni level ``1 - alpha/m``:
    Holm did not reject it, so ``m · p > alpha`` and that interval contains 0. The interval shown therefore never
    contradicts the verdict. Non-rejected intervals hold simultaneously with probability >= 1 - alpha (Bonferroni);
    a rejected arm's interval is narrower, at the level of its own step (exact simultaneous intervals that match a
    step-down test exist but say nothing beyond the sign of a rejected Δ). NaN p gives NaN.
    """
    adjusted, steps, m = _holm(pvalues)
    out = []
    for adj, step in zip(adjusted, steps):
        if not math.isfinite(adj):
            out.append(float("nan"))
        elif adj <= alpha:
            out.append(1.0 - alpha / (m - step + 1))
        else:
            out.append(1.0 - alpha / m)
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
              timings: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per arm: runs ok/failed, mean and std of every metric over ok seeds, paired Δ vs the baseline, and
    the family-wise inference and precision planning of :func:`add_inference` (``metric`` is the primary metric of
    the verdicts, ``target`` the wanted half-width of its ``level`` interval, ``margin`` the equivalence margin).

    ``timings``: each arm's latest row of the sweep's ``speed.csv`` (:mod:`.arm_speed`). With them, latency and
    throughput are the arm's once-per-sweep timing (the median and SD over rounds; Δ latency from the per-round paired
    differences to the baseline) instead of means over runs; sweeps recorded before per-arm timing have none."""
    runs, ok, base_arm = split_runs(results)
    if runs.empty:
        return pd.DataFrame()
    base_ok = ok[ok["arm"] == base_arm]
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
        for col in SETTING_COLUMNS:
            if col in arm_runs.columns:
                values = list(dict.fromkeys(as_strings(arm_runs[col])))
                row[col] = values[0] if len(values) == 1 else " | ".join(values)
        if timings is not None and len(timings):
            _use_timing(row, timings[timings["arm"] == arm], level)
        rows.append(row)
    return add_inference(pd.DataFrame(rows), level, metric, target, margin)


TIMED = ("latency_ms", "latency_p90_ms", "throughput_ips")  # the metrics an arm's timing session provides


def _use_timing(row: dict, timing: pd.DataFrame, level: float) -> None:
    """Put an arm's once-per-sweep timing in its summary row (NaN when the arm has none)."""
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
        row.update(latency_ms_delta=mean, latency_ms_delta_lo=mean - half, latency_ms_delta_hi=mean + half,
                   latency_ms_delta_n=n, latency_ms_delta_p=num(t.get("delta_p")), latency_ms_delta_sd=sd)
    for key in ("session", "device_name", "dtype", "device", "threads", "cpu_share", "starved", "rounds", "host"):
        row[f"speed_{key}" if not key.startswith("speed") else key] = t.get(key, "")


# per metric, the columns add_inference appends after ``{metric}_delta_sd``
INFERENCE_COLUMNS = ("delta_p_holm", "delta_adj_lo", "delta_adj_hi", "delta_adj_level", "delta_sig", "delta_half",
                     "seeds_needed")
# per fraction metric, the columns of the equivalence and non-inferiority tests when a margin is given
EQUIVALENCE_COLUMNS = ("tost_p", "tost_p_holm", "equiv", "equiv_lo", "equiv_hi", "equiv_level", "noninf_p",
                       "noninf_p_holm", "noninf", "noninf_lo", "noninf_level")
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
    """Family-wise inference, precision planning, verdicts and the Pareto set, from the per-arm Δ columns alone.

    Needs per metric ``{m}_delta``, ``{m}_delta_n``, ``{m}_delta_p`` and ``{m}_delta_sd`` (an older summary.csv
    without ``_delta_sd``: recovered from its ``level`` interval ``_delta_lo``/``_delta_hi``). Adds, per metric:

    - ``{m}_delta_p_holm``: Holm-adjusted p over the arms compared with the baseline that have a p-value (per
      metric; NaN for the baseline and arms with < 2 paired seeds);
    - ``{m}_delta_adj_lo``/``_hi``/``_level``: the adjusted interval at the level of :func:`holm_levels`;
    - ``{m}_delta_sig``: Holm rejects at ``1 - level`` (the adjusted interval excludes 0), False without a p-value;
    - ``{m}_delta_half``: the half-width of the unadjusted ``level`` interval, i.e. the smallest Δ the current
      seeds resolve (NaN with < 2 paired seeds);
    - ``{m}_seeds_needed``: :func:`seeds_needed` for ±``target``, for the metrics in the primary metric's units
      (the mAP/precision/recall family when the primary is one of them; else the primary alone), else empty.

    With a ``margin`` (mAP units), per fraction metric (mAP50-95, mAP50, precision, recall; all higher-is-better)
    also the columns of :func:`add_equivalence`.

    and per arm ``verdict`` on the primary metric (one of :data:`VERDICTS`: ``better``/``worse`` when the adjusted
    interval excludes 0, by the metric's direction; otherwise, with a margin, ``equivalent`` (within ±margin),
    ``not worse`` (than −margin) or ``undecided``, and without one ``no detectable difference``; ``undetermined``
    with < 2 paired seeds or no baseline; ``failed`` with no finished run), ``pareto`` (:func:`pareto_arms`),
    ``primary_metric``, ``target`` and ``margin``.
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
    for col in METRICS:
        if f"{col}_delta" not in s.columns:
            continue
        num = {k: pd.to_numeric(s[f"{col}_{k}"], errors="coerce") for k in ("delta", "delta_n", "delta_p")}
        n = [int(v) if _finite(v) else 0 for v in num["delta_n"]]
        sd = [float(v) if _finite(v) else float("nan") for v in pd.to_numeric(s[f"{col}_delta_sd"], errors="coerce")]
        p = [float("nan") if b or k < 2 else float(v) for v, b, k in zip(num["delta_p"], is_base, n)]
        d = list(num["delta"])
        levels, p_holm = holm_levels(p, alpha), holm(p)
        adj_half = [half_width(x, k, lv) if _finite(lv) else float("nan") for x, k, lv in zip(sd, n, levels)]
        planned = _units(col) == _units(metric)
        new = {
            "delta_p_holm": p_holm,
            "delta_adj_lo": [m - h for m, h in zip(d, adj_half)],
            "delta_adj_hi": [m + h for m, h in zip(d, adj_half)],
            "delta_adj_level": levels,
            "delta_sig": [bool(_finite(a) and a <= alpha) for a in p_holm],
            "delta_half": [float("nan") if b else half_width(x, k, level) for x, k, b in zip(sd, n, is_base)],
            "seeds_needed": pd.array([seeds_needed(x, target, level) if planned and not b else None
                                      for x, b in zip(sd, is_base)], dtype="Int64"),
        }
        if margin is not None and col in FRACTION_METRICS:
            new.update(add_equivalence(d, sd, n, is_base, margin, alpha))
        extra.update({f"{col}_{k}": v for k, v in new.items()})
        added[f"{col}_delta_sd"] = [f"{col}_{k}" for k in new]
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
    return s[order]


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


def add_equivalence(d: list, sd: list, n: list, is_base: list, margin: float, alpha: float) -> dict[str, list]:
    """Equivalence within ±``margin`` and non-inferiority (not worse than −``margin``) of each arm's paired Δ, with
    Holm's adjustment over the arms that have a test, like the difference tests.

    Per arm: ``tost_p`` (:func:`~yolo_necks.ablation.analyse.tdist.paired_tost`, the larger of the two one-sided p-values),
    ``noninf_p`` (the one-sided test of ``H0: Δ <= -margin``), their Holm-adjusted values, the decisions at ``alpha``
    (``equiv``, ``noninf``) and the intervals consistent with them: ``equiv_lo``/``equiv_hi`` at the two-sided level
    ``1 - 2 alpha_j`` (``equiv_level``), which lies inside ±margin exactly when Holm declares equivalence, and the
    one-sided lower bound ``noninf_lo`` at ``1 - alpha_j`` (``noninf_level``), above −margin exactly when Holm
    declares non-inferiority; ``alpha_j`` is the level at which Holm tested the arm (:func:`holm_levels`).
    """
    tost = [paired_tost(x, s, k, margin) if not b else (float("nan"),) * 3 for x, s, k, b in zip(d, sd, n, is_base)]
    p_eq, p_ni = [t[0] for t in tost], [t[1] for t in tost]
    out: dict[str, list] = {}
    for name, p in (("tost", p_eq), ("noninf", p_ni)):
        adjusted, one_sided = holm(p), holm_levels(p, alpha)
        two_sided = [2.0 * lv - 1.0 if _finite(lv) else float("nan") for lv in one_sided]
        half = [half_width(s, k, lv) if _finite(lv) else float("nan") for s, k, lv in zip(sd, n, two_sided)]
        decided = [bool(_finite(a) and a <= alpha) for a in adjusted]
        if name == "tost":
            out.update(tost_p=p, tost_p_holm=adjusted, equiv=decided, equiv_lo=[m - h for m, h in zip(d, half)],
                       equiv_hi=[m + h for m, h in zip(d, half)], equiv_level=two_sided)
        else:
            out.update(noninf_p=p, noninf_p_holm=adjusted, noninf=decided,
                       noninf_lo=[m - h for m, h in zip(d, half)], noninf_level=one_sided)
    return {k: out[k] for k in EQUIVALENCE_COLUMNS}


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
