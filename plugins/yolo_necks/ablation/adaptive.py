"""Adaptive seeds, per arm: every arm gets new seeds until its own interval on the primary metric is within the target.

Each arm is paired with the baseline by seed, so an arm that is already precise needs nothing more: it stops, and the
seeds go to the arms that are still wide. The baseline runs every seed that any still-running arm gets. The rule
looks at precision only (:func:`~yolo_necks.ablation.analyse.stopping.precision_check`: the half-width of each arm's own
paired interval), never at the sign or size of Δ or its p-value. An arm stops as

- ``precise``: its half-width is within ``target``;
- ``max``: it has ``max`` seeds;
- ``failed`` / ``no_baseline``: more seeds would not help (none of its runs finished, or none of the baseline's).

Active arms share one seed sequence (they all had every seed so far), so each batch adds the next seeds, at most as
many as the widest arm still needs at its observed SD, at most as many as the executor runs at once (over the arms
it runs), at least one; an arm takes only the seeds it needs of a batch. A resumed sweep replays the same decisions
from the recorded rows (the runs a decision plans are the same ones, by hash) and completes a batch an interrupted
one left partial; raising ``max`` continues from the seeds done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .prepare.plan import RunPlan
from .analyse.stopping import precision_check

STOPPED = ("precise", "max", "failed", "no_baseline")


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
    """Add seeds arm by arm until each arm stops (see the module docstring).

    Args:
        prep: the prepared sweep (its spec's ``adaptive`` policy, metric and the first seeds).
        slots: runs the executor holds at once (a batch adds at most that many runs' worth of seeds).
        run_new: runs the planned runs that are not recorded yet; returns how many it recorded.
        latest: ``latest(plans)`` -> the latest recorded row of each planned run (a DataFrame).
        log: one line per decision.
    """
    spec = prep.spec
    policy, base = spec.adaptive, spec.baseline
    seeds = {a.name: list(spec.seeds) for a in spec.arms}
    result = AdaptiveResult([], seeds=seeds)
    while True:
        result.plans = _plans(prep, seeds)
        check = precision_check(latest(result.plans), spec.metric, policy.target)
        for name, arm in check.arms.items():
            if name in result.stopped:
                continue
            if arm.status == "reached":
                result.stopped[name] = "precise"
            elif arm.status in ("failed", "no_baseline"):
                result.stopped[name] = arm.status
            elif len(seeds[name]) >= policy.max:
                result.stopped[name] = "max"
        active = [a.name for a in spec.arms if not a.baseline and a.name not in result.stopped]
        if base is None or not active:
            done = ", ".join(f"{a} {len(seeds[a])} seeds ({why})" for a, why in result.stopped.items())
            saved = result.whole_rounds - result.runs
            log(f"adaptive seeds: every arm stopped: {done or 'no arm to compare'}; {check.reason}; {result.runs} "
                f"runs, whole rounds would have run {result.whole_rounds} (saved {saved})")
            return result
        wanted = {a: check.arms[a].seeds_needed if a in check.arms else None for a in active}
        need = {a: max(1, (wanted[a] or len(seeds[a]) + 1) - len(seeds[a])) for a in active}
        last = max(seeds[a][-1] for a in active)
        k = max(1, min(max(need.values()), max(1, slots // (len(active) + 1)), policy.max - len(seeds[active[0]])))
        batch = list(range(last + 1, last + 1 + k))
        for a in active:
            seeds[a] += batch[: min(need[a], policy.max - len(seeds[a]))]
        seeds[base.name] = sorted(set(seeds[base.name]) | set(batch))
        log(f"adaptive seeds: {check.reason}; adding seed{'s' * (k > 1)} {', '.join(map(str, batch))} for "
            f"{', '.join(active)} (and the baseline {base.name})")
        new = [p for p in _plans(prep, seeds) if p.seed in batch]
        result.ran += run_new(new)
