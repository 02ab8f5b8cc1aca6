"""Statistics over seeds: per-arm mean ± std and paired differences against the baseline arm.

Runs are paired by seed: for each seed where both the arm and the baseline finished, ``d = arm - baseline``. The
reported Δ is the mean of those differences, with a two-sided 95% confidence interval
``mean(d) ± t(0.975, n-1) · sd(d) / sqrt(n)`` and the paired t-test p-value. With fewer than two pairs there is no
interval ("n/a"). The Student-t quantile is computed here (regularised incomplete beta + bisection), so scipy is
not needed. Failed runs never enter a mean; they are counted and listed separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# column -> (label, higher is better, format)
METRICS: dict[str, tuple[str, bool, str]] = {
    "map50_95": ("mAP50-95", True, "{:.3f}"),
    "map50": ("mAP50", True, "{:.3f}"),
    "precision": ("Precision", True, "{:.3f}"),
    "recall": ("Recall", True, "{:.3f}"),
    "latency_ms": ("Latency (ms)", False, "{:.2f}"),
    "latency_p90_ms": ("Latency p90 (ms)", False, "{:.2f}"),
    "throughput_ips": ("Throughput (img/s)", True, "{:.1f}"),
    "params": ("Params", False, "{:,.0f}"),
    "gflops": ("GFLOPs", False, "{:.2f}"),
    "train_s": ("Train time (s)", False, "{:.1f}"),
}
# settings that every run of a comparable sweep shares; the summary warns when they differ
SETTING_COLUMNS = ("model", "scale", "data", "data_params", "epochs", "imgsz", "batch", "train_args", "device",
                   "reduced", "speed_dtype", "speed_device", "speed_repeats", "throughput_batch")  # fmt: skip


# ------------------------------------------------------------------------------------------ Student t quantiles
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf: df must be > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t: the t with ``t_cdf(t, df) == p`` (bisection to ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf: p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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
    """Paired difference of ``{seed: value}`` maps over the seeds both have (non-NaN values only)."""
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
    se = sd / math.sqrt(n)
    half = t_ppf(0.5 + level / 2.0, n - 1) * se
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = 2.0 * (1.0 - t_cdf(abs(mean) / se, n - 1))
    return PairedDelta(mean, mean - half, mean + half, n, sd, p)


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------------- summary
def latest_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The latest row of every (sweep, arm, seed): a retried run supersedes its failed attempt."""
    if results.empty:
        return results
    keys = [k for k in ("sweep", "arm", "seed") if k in results.columns]
    return results.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def as_strings(col: pd.Series) -> list[str]:
    """Cells as text; whole floats (ints that pandas read as floats next to empty cells) without '.0'."""
    out = []
    for v in col:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append("" if pd.isna(v) else str(v))
    return out


def _is_true(v) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


def summarize(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per arm: runs ok/failed, mean and std of every metric over ok seeds, paired Δ vs the baseline."""
    runs = latest_runs(results)
    if runs.empty:
        return pd.DataFrame()
    for col in METRICS:
        if col not in runs.columns:
            runs[col] = float("nan")
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    ok = runs[runs["status"].astype(str) == "ok"]
    base_rows = runs[runs["baseline"].map(_is_true)] if "baseline" in runs.columns else runs.iloc[0:0]
    base_arm = base_rows["arm"].iloc[0] if len(base_rows) else None
    base_ok = ok[ok["arm"] == base_arm]
    rows = []
    for arm in dict.fromkeys(runs["arm"]):  # order of first appearance
        arm_runs = runs[runs["arm"] == arm]
        arm_ok = ok[ok["arm"] == arm]
        row = {
            "sweep": arm_runs["sweep"].iloc[0] if "sweep" in arm_runs else "",
            "arm": arm,
            "block": arm_runs["block"].iloc[-1] if "block" in arm_runs else "",
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
                                     level)  # fmt: skip
            row[f"{col}_delta"] = delta.mean
            row[f"{col}_delta_lo"] = delta.lo
            row[f"{col}_delta_hi"] = delta.hi
            row[f"{col}_delta_n"] = delta.n
            row[f"{col}_delta_p"] = delta.p
        for col in SETTING_COLUMNS:
            if col in arm_runs.columns:
                values = list(dict.fromkeys(as_strings(arm_runs[col])))
                row[col] = values[0] if len(values) == 1 else " | ".join(values)
        rows.append(row)
    return pd.DataFrame(rows)


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
