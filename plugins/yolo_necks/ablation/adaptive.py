"""Adaptive seeds, per arm, by Stein's two-stage rule: a pilot of ``seeds.min`` seeds fixes each arm's total once.

Every arm first runs the pilot (the spec's first ``min`` seeds, at least 3). From the SD of its pilot's paired
differences on the primary metric, :func:`~yolo_necks.ablation.analyse.stopping.pilot_plan` fixes the arm's total:
the seeds whose interval's seed part is ±``target`` at the pilot's SD with the pilot's degrees of freedom, at most
``max``. That total is never re-decided: later seeds do not move it, so the SD at the end is not selected for being
small, and the final interval (the pilot's SD over √n, Student's t with the pilot's degrees of freedom:
:func:`~yolo_necks.ablation.analyse.decide.paired_evidence`) holds its level exactly, where stopping when the current
interval looks narrow enough did not (``docs/statistics.md``). An arm stops as

- ``planned``: it has its Stein total;
- ``max``: its Stein total was capped at ``max``;
- ``failed`` / ``no_baseline`` / ``too_few``: no plan (none of its runs finished, none of the baseline's, or fewer
  than 2 pilot pairs to take an SD from).

An arm that needs fewer seeds stops early while a noisy one goes on; the baseline runs every seed any arm gets (Δ is
paired by seed). Arms still running share one seed sequence, so each batch adds the next seeds, at most as many as
the arm that needs most still needs, at most as many as the executor runs at once (over the arms it runs), at least
one; an arm takes only the seeds it needs of a batch. A resumed sweep replays the same plan from the recorded pilot
rows (the runs a decision plans are the same ones, by hash) and completes a batch an interrupted one left partial;
raising ``max`` continues from the seeds done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .prepare.plan import RunPlan
from .analyse.stopping import pilot_plan

STOPPED = ("planned", "max", "failed", "no_baseline", "too_few")


@dataclass
class AdaptiveResult:
    """What the rounds did: every planned run, the runs recorded this time, each arm's seeds and why it stopped."""

    plans: list[RunPlan]
    ran: int = 0
    seeds: dict[str, list[int]] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return sum(len(s) for s in self.seeds.values())

    @property
    def whole_rounds(self) -> int:
        """The runs the same seeds would have cost with every arm getting every seed (whole rounds)."""
        return max((len(s) for s in self.seeds.values()), default=0) * len(self.seeds)


def _plans(prep, seeds: dict[str, list[int]]) -> list[RunPlan]:
    """The planned runs of ``{arm: seeds}``, seed-major like a fixed sweep's."""
    every = sorted({s for values in seeds.values() for s in values})
    return [p for p in prep.plan(every) if p.seed in seeds.get(p.arm.name, ())]


def adaptive_rounds(prep, slots: int, run_new: Callable[[list[RunPlan]], int], latest: Callable,
                    log: Callable[[str], None]) -> AdaptiveResult:
    """After the pilot (the spec's first seeds, already run), add seeds arm by arm up to each arm's Stein total
    (see the module docstring).

    Args:
        prep: the prepared sweep (its spec's ``adaptive`` policy, metric and the pilot seeds).
        slots: runs the executor holds at once (a batch adds at most that many runs' worth of seeds).
        run_new: runs the planned runs that are not recorded yet; returns how many it recorded.
        latest: ``latest(plans)`` -> the latest recorded row of each planned run (a DataFrame).
        log: one line per decision.
    """
    spec = prep.spec
    policy, base = spec.adaptive, spec.baseline
    seeds = {a.name: list(spec.seeds) for a in spec.arms}
    result = AdaptiveResult(_plans(prep, seeds), seeds=seeds)
    plan = pilot_plan(latest(result.plans), spec.metric, policy.target, len(spec.seeds), policy.max)
    totals = {}
    for name, arm in plan.arms.items():
        if arm.status == "planned":
            totals[name] = arm.total
        else:
            result.stopped[name] = arm.status
    log(f"adaptive seeds: {plan.reason}")
    while True:
        active = [a.name for a in spec.arms if not a.baseline and len(seeds[a.name]) < totals.get(a.name, 0)]
        if base is None or not active:
            for name, total in totals.items():
                result.stopped.setdefault(name, "max" if plan.arms[name].capped else "planned")
            done = ", ".join(f"{a} {len(seeds[a])} seeds ({why})" for a, why in result.stopped.items())
            saved = result.whole_rounds - result.runs
            log(f"adaptive seeds: every arm stopped: {done or 'no arm to compare'}; {result.runs} runs, whole rounds "
                f"would have run {result.whole_rounds} (saved {saved})")
            return result
        need = {a: totals[a] - len(seeds[a]) for a in active}
        last = max(seeds[a][-1] for a in active)
        k = max(1, min(max(need.values()), max(1, slots // (len(active) + 1))))
        batch = list(range(last + 1, last + 1 + k))
        for a in active:
            seeds[a] += batch[: need[a]]
        seeds[base.name] = sorted(set(seeds[base.name]) | set(batch))
        log(f"adaptive seeds: adding seed{'s' * (k > 1)} {', '.join(map(str, batch))} for "
            + ", ".join(f"{a} ({len(seeds[a])} of {totals[a]})" for a in active) + f" (and the baseline {base.name})")
        result.plans = _plans(prep, seeds)
        result.ran += run_new([p for p in result.plans if p.seed in batch])
