"""The stopping rule of adaptive seeds: how precisely the runs so far pin down each arm's Δ on the primary metric.

A sweep that adds seeds must stop on precision (interval half-width <= target), never on significance: stopping as
soon as p < 0.05 inflates false positives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..records.columns import METRICS
from .stats import DEFAULT_METRIC, DEFAULT_TARGET, check_metric_target, paired_delta, split_runs
from .tdist import half_width, seeds_needed


@dataclass(frozen=True)
class ArmPrecision:
    """Where one arm's Δ on the primary metric stands against a precision target.

    ``status``: ``reached`` (half-width <= target), ``open`` (wider: more seeds), ``too_few`` (< 2 paired seeds:
    no SD yet, the half-width is ``inf``), ``failed`` (the arm has runs but none finished: more seeds will not help,
    ``--retry-failed`` may), ``no_baseline`` (no baseline arm, or none of its runs finished: nothing to pair with).
    """

    arm: str
    status: str
    n: int  # paired seeds: finished in both the arm and the baseline with a finite metric
    delta: float  # mean paired difference arm - baseline (NaN with no pair)
    sd: float  # SD of the paired differences (NaN with < 2 pairs; 0 when they are identical)
    half_width: float  # half-width of the current (unadjusted) interval; inf with < 2 pairs
    seeds_needed: int | None  # paired seeds for ±target at the observed SD (None with < 2 pairs)

    @property
    def counts(self) -> bool:
        """Whether this arm takes part in the stopping rule (every arm but ``failed`` and ``no_baseline``)."""
        return self.status in ("reached", "open", "too_few")


@dataclass(frozen=True)
class PrecisionCheck:
    """Result of :func:`precision_check`: per arm (baseline excluded) its :class:`ArmPrecision`, and ``done``."""

    metric: str
    target: float
    level: float
    baseline: str | None
    arms: dict[str, ArmPrecision] = field(default_factory=dict)

    @property
    def comparable(self) -> int:
        """Arms that take part in the stopping rule. 0: more seeds alone will not give an answer (no finished
        baseline, or every arm failed); a runner should stop and report rather than add seeds."""
        return sum(a.counts for a in self.arms.values())

    @property
    def done(self) -> bool:
        """True when at least one arm is comparable and every comparable arm has half-width <= target."""
        return self.comparable > 0 and all(a.status == "reached" for a in self.arms.values() if a.counts)

    @property
    def seeds_needed(self) -> int | None:
        """The most paired seeds any comparable arm needs for ±target at its observed SD (below the current count
        once reached); None while an arm has < 2 pairs or when none is comparable. A plug-in guide, not a promise."""
        needs = [a.seeds_needed for a in self.arms.values() if a.counts]
        if not needs or any(k is None for k in needs):
            return None
        return max(needs)

    @property
    def reason(self) -> str:
        """One line for a log: why the sweep is done or not."""
        label = METRICS[self.metric][0]
        if self.baseline is None or (self.arms and all(a.status == "no_baseline" for a in self.arms.values())):
            return "no finished baseline run: nothing to pair with"
        if not self.comparable:
            return "no arm to compare: every arm other than the baseline failed" if self.arms else "no arm to compare"
        if self.done:
            return f"precision reached: every arm's {self.level:.0%} half-width on Δ {label} <= {self.target:g}"
        wide = [a for a in self.arms.values() if a.status in ("open", "too_few")]
        parts = [f"{a.arm} ±{a.half_width:.3g} (~{a.seeds_needed} seeds)" if a.status == "open"
                 else f"{a.arm} has {a.n} paired seed{'s' * (a.n != 1)}" for a in wide]
        return f"Δ {label} wider than ±{self.target:g}: " + ", ".join(parts)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(a) for a in self.arms.values()])


def precision_check(results: pd.DataFrame, metric: str = DEFAULT_METRIC, target: float = DEFAULT_TARGET,
                    level: float = 0.95) -> PrecisionCheck:
    """How precisely the latest runs of a sweep pin down each arm's Δ vs the baseline on ``metric``: the stopping
    rule of a sweep that adds seeds until every interval is ±``target``.

    Per arm (baseline excluded): the seeds paired with the baseline (both finished, finite metric), the SD of the
    paired differences, the half-width ``t(0.5 + level/2, n-1) · sd / sqrt(n)`` of the *unadjusted* ``level``
    interval and :func:`seeds_needed`. Edge cases: < 2 paired seeds -> ``too_few``, half-width ``inf`` (never
    meets a target); zero variance (identical differences on >= 2 seeds) -> half-width 0, ``reached``; an arm with
    no finished run -> ``failed``, left out of ``done``; no finished baseline -> every arm ``no_baseline`` and
    ``done`` False. Precision, never significance, decides: stopping once p < 0.05 would inflate false positives.
    """
    metric, target = check_metric_target(metric, target)
    runs, ok, base_arm = split_runs(results)
    base_ok = ok[ok["arm"] == base_arm]
    base_vals = dict(zip(base_ok["seed"], base_ok[metric])) if len(base_ok) else {}
    arms = {}
    nan = float("nan")
    for arm in dict.fromkeys(runs["arm"]) if len(runs) else ():
        if arm == base_arm:
            continue
        arm_ok = ok[ok["arm"] == arm]
        if not len(arm_ok):
            arms[arm] = ArmPrecision(arm, "failed", 0, nan, nan, math.inf, None)
            continue
        if not base_vals:
            arms[arm] = ArmPrecision(arm, "no_baseline", 0, nan, nan, math.inf, None)
            continue
        d = paired_delta(dict(zip(arm_ok["seed"], arm_ok[metric])), base_vals, level)
        if d.n < 2:
            arms[arm] = ArmPrecision(arm, "too_few", d.n, d.mean, nan, math.inf, None)
            continue
        half = half_width(d.sd, d.n, level)
        status = "reached" if half <= target else "open"
        arms[arm] = ArmPrecision(arm, status, d.n, d.mean, d.sd, half, seeds_needed(d.sd, target, level))
    return PrecisionCheck(metric, target, level, base_arm, arms)
