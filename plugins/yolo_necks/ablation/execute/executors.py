"""Executors: take planned runs, run them, yield events (a run started, a run ended with its row).

One small interface (:class:`Executor`), three engines, chosen by :func:`yolo_necks.ablation.execute.factory.make_executor`:

* :class:`SequentialExecutor` (``parallel=1``): one run at a time in this process, as the harness always did;
* :class:`~yolo_necks.ablation.execute.local.LocalExecutor` (default): runs in worker processes on this machine, one
  per slot, each with its own thread budget and GPU set before torch starts, training its runs one after another;
* :class:`~yolo_necks.ablation.execute.ray_cluster.RayExecutor` (``executor=ray``): each run a Ray task.

The caller (:func:`~yolo_necks.ablation.runner.run_sweep`) stays the only writer of ``results.csv``: executors
never touch it. Results do not depend on the executor: a run's configuration, seed and thread count fully determine
it, and on a CPU with the same thread count per run its metrics are bit-identical alone or beside others (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

from ...errors import NeckConfigError
from .run import RunTask, run_task, set_budget

TICK_S = 0.5  # how often an executor yields control (progress redraws) while runs are going


@dataclass
class Event:
    """``start``: a run was handed to a worker; ``end``: it finished, ``row`` is its complete row; ``tick``: nothing
    happened for a while (redraw the progress bar)."""

    kind: str
    task: RunTask | None = None
    row: dict | None = None


class Executor:
    """Runs tasks and yields :class:`Event` s; ``cancel()`` stops whatever is still running (Ctrl-C)."""

    name = "executor"
    slots = 1  # runs at once

    def run(self, tasks: list[RunTask]) -> Iterator[Event]:  # pragma: no cover - interface
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop every run still going; their rows are not returned."""

    def close(self) -> None:
        """Release resources (a Ray instance started here)."""

    def describe(self) -> str:
        return self.name

    def check_timing_node(self, node: str) -> None:
        """Fail now, with one line, when the arms are to be timed on ``node`` and this executor cannot reach it
        (only a cluster executor has nodes to name)."""
        raise NeckConfigError(f"key 'timing_node': '{node}' names a node, and executor={self.name} has none "
                              "(timing_node needs executor=ray)")

    def time_arms(self, models: list, spec, threads: int, node: str | None = None,
                  weights: dict[str, str] | None = None):
        """Time every arm once, interleaved (:func:`~yolo_necks.ablation.execute.arm_speed.time_arms`): here, or on
        ``node`` for an executor with nodes; ``weights``: each arm's trained weights, exported to the formats of
        ``speed.formats`` beyond torch. Returns (``speed.csv`` rows, per-round times)."""
        if node:
            self.check_timing_node(node)
        from .arm_speed import time_arms

        return time_arms(models, spec, threads, weights=weights)


# ---------------------------------------------------------------------------------------------------- sequential
class SequentialExecutor(Executor):
    """One run at a time, in this process (``parallel=1``, or ``auto`` with fewer than two runs to do). Each run
    starts from the process state the first one found (:mod:`.isolation`), as in a worker; the state is put back
    when the runs are done."""

    name = "sequential"

    def __init__(self, execute: Callable | None = None, threads: int | None = None):
        self.execute, self.threads = execute, threads

    def run(self, tasks: list[RunTask]) -> Iterator[Event]:
        from .isolation import ProcessState

        clean = ProcessState.capture()
        try:
            for task in tasks:
                clean.restore()
                if self.threads:
                    task = replace(task, threads=self.threads)
                    set_budget(self.threads)
                yield Event("start", task)
                yield Event("end", task, run_task(task, self.execute))
        finally:
            clean.restore()

    def describe(self) -> str:
        return "one run at a time in this process" + (f", {self.threads} thread(s)" if self.threads else "")
