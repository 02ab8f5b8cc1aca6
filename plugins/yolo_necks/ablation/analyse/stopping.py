"""How many seeds each arm gets: Stein's two-stage rule of adaptive seeds (:func:`stein_seeds`, :func:`pilot_plan`),
and where each arm's interval stands now (:func:`precision_check`, a description, never a stopping rule).

Stopping when the *current* interval is narrow enough looks harmless (it never looks at Δ or p), but the runs at
which the sample SD happens to be small are the ones that stop, so the SD at the stop is biased low and the interval
too narrow: simulated with true Δ = 0 and at most 20 seeds, the two-sided 95% test rejected in 7.7-11.9% of sweeps
(``docs/statistics.md``, ``ablations/results/*-calibration``). Stein's two-stage procedure removes that: a pilot of
``n0`` seeds per arm (the spec's ``seeds.min``, at least 3) fixes the arm's total ``n`` once, from the pilot's SD
``s0`` alone; the final interval is ``mean over all n ± t(n0 − 1) · s0 / √n``. Since ``n`` depends on ``s0`` only and
normal data's sample SD is independent of its means, ``(mean − Δ)·√n / s0`` is exactly Student's t with ``n0 − 1``
degrees of freedom, whatever ``n`` turned out to be (:func:`~.decide.paired_evidence` with ``pilot``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..records.columns import METRICS
from .stats import DEFAULT_METRIC, DEFAULT_TARGET, check_metric_target, paired_delta, split_runs
from .tdist import finite, half_width, seeds_needed, t_ppf


def stein_seeds(sd: float, pilot: int, target: float, level: float = 0.95, cap: int | None = None) -> int | None:
    """Stein's total: the paired seeds an arm gets, fixed once from the SD ``sd`` of its ``pilot`` paired
    differences: ``max(pilot, ceil((t(0.5 + level/2, pilot − 1) · sd / target)²))``, at most ``cap``. The seed
    part of its ``level`` interval is then ±``target`` or narrower (at ``cap``: as narrow as ``cap`` seeds make it).
    None with fewer than 2 pilot pairs or no SD (nothing to plan from); SD 0: the pilot suffices."""
    if pilot < 2 or not finite(sd):
        return None
    n = pilot if sd == 0.0 else max(pilot, math.ceil((t_ppf(0.5 + level / 2.0, pilot - 1) * abs(sd) / target) ** 2))
    return min(n, cap) if cap is not None else n


@dataclass(frozen=True)
class PilotArm:
    """One arm after the pilot. ``status``: ``planned`` (``total`` paired seeds, from ``pilot`` pilot pairs with SD
    ``sd``; ``capped``: Stein asked for more than ``max``), ``too_few`` (fewer than 2 pilot pairs: no SD to plan
    from), ``failed`` (no finished run), ``no_baseline`` (no finished baseline run to pair with)."""

    arm: str
    status: str
    pilot: int
    sd: float
    total: int | None
    wanted: int | None = None  # Stein's total before the cap

    @property
    def capped(self) -> bool:
        return self.wanted is not None and self.total is not None and self.wanted > self.total


@dataclass(frozen=True)
class PilotPlan:
    """Result of :func:`pilot_plan`: per arm (baseline excluded) its :class:`PilotArm`."""

    metric: str
    target: float
    pilot: int
    arms: dict[str, PilotArm] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """One line for a log: each arm's pilot SD and total."""
        label = METRICS[self.metric][0]
        parts = []
        for a in self.arms.values():
            if a.status != "planned":
                parts.append(f"{a.arm} {a.status.replace('_', ' ')}")
            else:
                cap = f" (capped; the SD asked for {a.wanted})" if a.capped else ""
                parts.append(f"{a.arm} SD {a.sd:.3g} -> {a.total} seeds{cap}")
        return (f"Stein's two-stage seeds on Δ {label} for ±{self.target:g}, from a pilot of {self.pilot}: "
                + (", ".join(parts) or "no arm to compare"))


def pilot_plan(results: pd.DataFrame, metric: str, target: float, pilot: int, cap: int,
               level: float = 0.95) -> PilotPlan:
    """Each arm's Stein total from the pilot rows alone (seeds below ``pilot``): the same answer however many seeds
    the sweep has run since, so a resumed sweep replays the decision it made."""
    metric, target = check_metric_target(metric, target)
    runs, ok, base_arm = split_runs(results)
    seeds = pd.to_numeric(ok["seed"], errors="coerce") if len(ok) else pd.Series(dtype=float)
    first = ok[seeds < pilot] if len(ok) else ok
    base_vals = dict(zip(first[first["arm"] == base_arm]["seed"], first[first["arm"] == base_arm][metric]))
    arms = {}
    nan = float("nan")
    for arm in dict.fromkeys(runs["arm"]) if len(runs) else ():
        if arm == base_arm:
            continue
        arm_first = first[first["arm"] == arm]
        if not len(ok[ok["arm"] == arm]):
            arms[arm] = PilotArm(arm, "failed", 0, nan, None)
        elif not base_vals:
            arms[arm] = PilotArm(arm, "no_baseline", 0, nan, None)
        else:
            d = paired_delta(dict(zip(arm_first["seed"], arm_first[metric])), base_vals, level)
            wanted = stein_seeds(d.sd, d.n, target, level)
            arms[arm] = (PilotArm(arm, "too_few", d.n, d.sd, None) if wanted is None else
                         PilotArm(arm, "planned", d.n, d.sd, min(wanted, cap), wanted))
    return PilotPlan(metric, target, pilot, arms)


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
        """Whether this arm takes part in ``done`` (every arm but ``failed`` and ``no_baseline``)."""
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
        """Arms that take part in ``done``. 0: more seeds alone will not give an answer (no finished
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
    """How precisely the latest runs of a sweep pin down each arm's Δ vs the baseline on ``metric``, against a
    target half-width ±``target`` (seed part only: the SD over seeds, no val set). A description of where a sweep
    stands, never a rule to stop on: adding seeds until it reports ``done`` biases the SD at the stop downwards and
    inflates false positives (module docstring); adaptive seeds use :func:`pilot_plan`.

    Per arm (baseline excluded): the seeds paired with the baseline (both finished, finite metric), the SD of the
    paired differences, the half-width ``t(0.5 + level/2, n-1) · sd / sqrt(n)`` of the *unadjusted* ``level``
    interval and :func:`seeds_needed`. Edge cases: < 2 paired seeds -> ``too_few``, half-width ``inf`` (never
    meets a target); zero variance (identical differences on >= 2 seeds) -> half-width 0, ``reached``; an arm with
    no finished run -> ``failed``, left out of ``done``; no finished baseline -> every arm ``no_baseline`` and
    ``done`` False.
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
