"""The executor a spec asks for (sequential, local worker processes, or Ray) and how many runs it trains at once.

``parallel=auto`` (the default) trains ``min(what the machine holds, runs to do)`` runs at once, where what the
machine holds is :func:`~yolo_necks.ablation.execute.local.plan_slots` (CPU: cores / threads per run, capped by
memory; GPU: devices x ``runs_per_device``):

* fewer than two: one run at a time in the sweep process (a single run to do, a one-core machine). That process
  has imported torch and ultralytics already; a worker would only add its start-up;
* two or more: that many worker processes, one per slot, each training its runs one after another.

The workers start as soon as the spec is read when at least two runs are certain to be pending (runs planned minus
rows already in ``results.csv``): a forked worker (a CPU slot of one thread, see
:func:`~yolo_necks.ablation.execute.local.start_method`) then shares the imports the sweep process has made and runs
nothing of the sweep's preparation, and a spawned one's start-up (importing torch and ultralytics: seconds of a core)
overlaps that preparation (dataset, every arm built and checked); otherwise they start once the runs are planned.
An explicit ``parallel=N`` (N >= 2) always uses worker processes, never more than there are runs to do;
``parallel=1`` never does.
"""

from __future__ import annotations

from typing import Callable

from .executors import Executor, SequentialExecutor
from .local import LocalExecutor, Slot, plan_slots
from ..spec.types import Execution, Spec


def choose_slots(execution: Execution, pending: int | None, cores: int | None = None,
                 memory: float | None = None) -> list[Slot]:
    """The worker slots for ``pending`` runs (None: as many as the machine holds); [] means one run at a time in the
    sweep process (see the module docstring)."""
    if execution.executor == "ray" or execution.parallel == 1:
        return []
    slots = plan_slots(execution, cores, memory)
    n = len(slots) if pending is None else min(len(slots), pending)
    if execution.parallel == "auto" and n < 2:
        return []
    return slots[: max(1, n)]


def early_slots(spec: Spec, recorded: int, cores: int | None = None, memory: float | None = None) -> list[Slot]:
    """The worker slots worth starting before the sweep is prepared: those for the runs certain to be pending
    (planned minus ``recorded`` rows of ``results.csv``), none unless there are at least two."""
    certain = len(spec.arms) * len(spec.seeds) - recorded
    if spec.execution.executor == "ray" or certain < 2:
        return []
    return choose_slots(spec.execution, certain, cores, memory)


def start_early(spec: Spec, recorded: int, execute: Callable | None = None) -> LocalExecutor | None:
    """A local executor whose workers start now (:func:`early_slots`), or None."""
    slots = early_slots(spec, recorded)
    if not slots:
        return None
    executor = LocalExecutor(plan_slots(spec.execution), execute)
    executor.start(len(slots))
    return executor


def check_available(execution: Execution) -> None:
    """The executor a spec names can be used here (Ray installed for ``executor=ray``): one line otherwise, before
    anything is prepared."""
    if execution.executor == "ray":
        from .ray_cluster import require_ray

        require_ray()


def make_executor(execution: Execution, execute: Callable | None = None, pending: int | None = None,
                  warm: LocalExecutor | None = None) -> Executor:
    """The executor a spec asks for, for ``pending`` runs (None: unknown); ``warm``: one :func:`start_early` made,
    used when worker processes are chosen (the caller closes it otherwise)."""
    if execution.executor == "ray":
        from .ray_cluster import RayExecutor

        return RayExecutor(execution, execute)
    slots = choose_slots(execution, pending)
    if not slots:
        threads = execution.threads_per_run if isinstance(execution.threads_per_run, int) else None
        return SequentialExecutor(execute, threads)
    if warm is not None:
        warm.use(len(slots))
        return warm
    return LocalExecutor(slots, execute)
