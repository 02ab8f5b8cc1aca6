"""The executor a spec asks for: sequential, local worker processes, or Ray."""

from __future__ import annotations

from typing import Callable

from .executors import Executor, SequentialExecutor
from .local_executor import LocalExecutor, plan_slots
from .spec_types import Execution


def make_executor(execution: Execution, execute: Callable | None = None) -> Executor:
    """The executor a spec asks for."""
    if execution.executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(execution, execute)
    threads = execution.threads_per_run if isinstance(execution.threads_per_run, int) else None
    if execution.parallel == 1:
        return SequentialExecutor(execute, threads)
    slots = plan_slots(execution)
    if len(slots) == 1 and execution.parallel == "auto" and slots[0].group == "cpu" and threads is None:
        return SequentialExecutor(execute, None)  # a one-core machine: nothing to gain from a worker process
    return LocalExecutor(slots, execute)
