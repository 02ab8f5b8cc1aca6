"""The local executor: runs in worker processes on this machine, several at once.

Each slot (see :func:`plan_slots`) has one worker process (:mod:`.worker`) that trains the slot's runs one after
another, each from the same process state (:mod:`.isolation`), each run's output in its own ``train.log``. How a
worker starts (:func:`start_method`): *forked* from the sweep process where that is safe (a CPU slot of one thread,
nothing in this process a child must not share: see :func:`fork_hazards`), so it starts with the imports the sweep
process has made already (torch, ultralytics) at no cost; otherwise *spawned*, with the slot's thread budget
(``OMP_NUM_THREADS`` and friends) and GPUs (``CUDA_VISIBLE_DEVICES``) set before torch starts, importing torch and
ultralytics once (seconds of a core). ``YOLO_NECKS_WORKER_START=spawn`` (or ``fork``) overrides the choice.

A worker that dies (killed, out of memory) costs only the run it was training: that run is recorded as failed and the
slot gets a fresh worker. Workers die with the sweep process, even when it is killed with SIGKILL. Runs do not time
themselves: the sweep times every arm once after training, with nothing else of the sweep running
(:mod:`.arm_speed`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from ...errors import NeckConfigError
from .executors import TICK_S, Event, Executor
from .run import RunTask, node_name, now
from ..spec.types import Execution
from .worker import worker_main

EST_RUN_MEMORY = 2.5 * 2**30  # resident memory of one small training run (bytes), for parallel=auto on a CPU
START_ENV = "YOLO_NECKS_WORKER_START"  # auto (default), fork or spawn: how worker processes start


@dataclass(frozen=True)
class Slot:
    """Where one run at a time trains: a pool entry (``group``: 'cpu', '2' or '0,1'), the device string the run
    sees inside its worker (GPUs renumbered by ``CUDA_VISIBLE_DEVICES``), and its CPU threads."""

    group: str
    device: str
    cuda_visible: str | None
    threads: int


def _available_memory() -> float:
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is an ultralytics dependency
        return math.inf


def plan_slots(execution: Execution, cores: int | None = None, memory: float | None = None) -> list[Slot]:
    """The worker slots of a local sweep.

    CPU: ``parallel=auto`` runs ``cores // threads_per_run`` at once (threads_per_run auto = 1), capped by memory
    (about 2.5 GiB per run); an explicit ``parallel`` with ``threads_per_run=auto`` splits the cores evenly.
    GPU: each pool entry takes ``runs_per_device`` runs at once (``parallel`` caps the total); threads auto = cores
    divided by the runs at once.
    """
    cores = cores or os.cpu_count() or 1
    memory = _available_memory() if memory is None else memory
    pool = execution.devices or ("cpu",)
    threads = execution.threads_per_run if isinstance(execution.threads_per_run, int) else None
    if pool == ("cpu",):
        n = execution.parallel
        if n == "auto":
            n = max(1, cores // (threads or 1))
            if math.isfinite(memory):
                n = max(1, min(n, int(memory // EST_RUN_MEMORY)))
        threads = threads or max(1, cores // n)
        return [Slot("cpu", "cpu", None, threads) for _ in range(n)]
    entries = [d for d in pool for _ in range(execution.runs_per_device)]
    if execution.parallel != "auto":
        entries = entries[: execution.parallel]
    threads = threads or max(1, cores // len(entries))
    slots = []
    for d in entries:
        if d in ("mps", "cuda"):
            slots.append(Slot(d, d, None, threads))
            continue
        visible = d[5:] if d.startswith("cuda:") else d
        inner = ",".join(str(i) for i in range(len(visible.split(","))))
        slots.append(Slot(d, inner, visible, threads))
    return slots


def fork_hazards(slot: Slot) -> list[str]:
    """Why a worker for ``slot`` must not be forked from this process now; empty when it may be.

    A forked child shares what the sweep process has imported, and also what it must not share: CUDA (it cannot be
    used in a forked child, and ``CUDA_VISIBLE_DEVICES`` must be set before it starts), GNU OpenMP's thread pool (a
    child forked after its parent ran parallel regions hangs in its own; a one-thread worker never enters one, and
    :func:`~yolo_necks.threads.threads_held` keeps ultralytics from raising the count), polars' thread pool (ultralytics reads its
    CSVs with polars: a forked child whose parent started the pool hangs at its first query), locks other threads
    hold at the fork (they stay held in the child), Ray's connections and MLflow's database connections (SQLite's must
    never cross a fork)."""
    import multiprocessing as mp

    why = []
    if not sys.platform.startswith("linux") or "fork" not in mp.get_all_start_methods():
        why.append("workers are forked on Linux only")
    if slot.group != "cpu" or slot.cuda_visible is not None:
        why.append(f"GPU slot {slot.group!r}: its CUDA_VISIBLE_DEVICES must be set before CUDA starts")
    if slot.threads != 1:
        why.append(f"{slot.threads} threads per run: OpenMP's thread pool does not survive a fork")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        why.append("CUDA is initialized in this process")
    if threading.active_count() > 1:
        why.append(f"{threading.active_count() - 1} other Python thread(s) run in this process")
    if sys.modules.get("polars") is not None:
        why.append("polars is loaded in this process: its thread pool does not survive a fork")
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        why.append("this process is connected to Ray")
    if "mlflow.store.tracking.sqlalchemy_store" in sys.modules:
        why.append("this process may hold MLflow database connections")
    return why


def start_method(slot: Slot) -> str:
    """'fork' or 'spawn': how the worker for ``slot`` starts (``YOLO_NECKS_WORKER_START``: auto, fork or spawn;
    auto forks when :func:`fork_hazards` finds nothing)."""
    wanted = os.environ.get(START_ENV, "").strip().lower() or "auto"
    if wanted not in ("auto", "fork", "spawn"):
        raise NeckConfigError(f"{START_ENV}={wanted!r}: expected auto, fork or spawn")
    if wanted == "fork":
        import multiprocessing as mp

        if "fork" not in mp.get_all_start_methods():
            raise NeckConfigError(f"{START_ENV}=fork: this platform cannot fork processes; use auto or spawn")
    if wanted != "auto":
        return wanted
    return "spawn" if fork_hazards(slot) else "fork"


@dataclass
class _Worker:
    """A slot's worker process as the sweep process sees it: starting (not ``ready``), idle, or running ``task``."""

    proc: Any
    conn: Any
    index: int  # its slot
    slot: Slot
    method: str = "spawn"  # how it started: fork or spawn
    ready: bool = False  # it said "ready" (its imports are done) at some point
    task: RunTask | None = None
    started: float = field(default_factory=time.perf_counter)  # when its current run began (or the process)

    @property
    def pid(self) -> int:
        return self.proc.pid


class LocalExecutor(Executor):
    """One worker process per slot, each training its runs one after another; several slots at once (see
    :func:`plan_slots`). A worker that dies costs only its current run: the slot gets a fresh worker."""

    name = "local"

    def __init__(self, slots: list[Slot], execute: Callable | None = None):
        if not slots:
            raise NeckConfigError("local executor: no worker slots")
        self.slot_list, self.execute = list(slots), execute
        self.slots = len(slots)
        self._workers: dict[int, _Worker] = {}  # by slot index

    def describe(self) -> str:
        s = self.slot_list[0]
        used = self.slot_list[: self.slots]
        where = "cpu" if s.group == "cpu" else "GPU " + ", ".join(dict.fromkeys(x.group for x in used))
        # how the workers did start (tracking opened since may make a later start spawn instead of fork)
        methods = sorted({w.method for w in self._workers.values()}) or [start_method(s)]
        how = " and ".join({"fork": "forked from this process", "spawn": "spawned"}[m] for m in methods)
        return (f"{self.slots} worker process(es) at once on {where}, {s.threads} thread(s) each, {how}; each worker "
                "trains its runs one after another")

    # workers -------------------------------------------------------------------------------------------------
    def start(self, count: int | None = None) -> None:
        """Start the workers of the first ``count`` slots now: they import torch and ultralytics while the sweep
        process is still preparing (building the dataset, checking the arms)."""
        for index in range(min(self.slots if count is None else count, self.slots)):
            if index not in self._workers:
                self._spawn(index)

    def use(self, count: int) -> None:
        """Train ``count`` runs at once from now on (one per slot, at most the slots planned); the workers of the
        slots beyond are stopped."""
        self.slots = max(1, min(count, len(self.slot_list)))
        extra = [self._workers.pop(i) for i in list(self._workers) if i >= self.slots]
        self._stop(extra)

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers.values()]

    def _spawn(self, index: int) -> _Worker:
        import multiprocessing as mp

        slot = self.slot_list[index]
        method = start_method(slot)
        ctx = mp.get_context(method)
        parent_conn, child_conn = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(slot, child_conn, self.execute, os.getpid(), method),
                           name=f"yolo-necks worker {index}")
        proc.start()
        child_conn.close()
        w = self._workers[index] = _Worker(proc, parent_conn, index, slot, method)
        return w

    def _assign(self, task: RunTask, slot: Slot) -> RunTask:
        return replace(task, device=slot.device, threads=slot.threads,
                       row={**task.row, "run_device": slot.group, "threads": slot.threads})

    # running -------------------------------------------------------------------------------------------------
    def run(self, tasks: list[RunTask]) -> Iterator[Event]:
        from multiprocessing.connection import wait

        queue = deque(tasks)
        try:
            while queue or any(w.task is not None for w in self._workers.values()):
                yield from self._dispatch(queue)
                conns = {w.conn: w for w in self._workers.values()}
                sentinels = {w.proc.sentinel: w for w in self._workers.values()}
                ready = wait(list(conns) + list(sentinels), timeout=TICK_S)
                if not ready:
                    yield Event("tick")
                    continue
                for obj in ready:
                    if obj in conns:
                        yield from self._drain(conns[obj])
                for obj in ready:
                    if obj in sentinels:
                        yield from self._died(sentinels[obj], queue)
        except BaseException:  # Ctrl-C, or the caller stopped listening: no worker trains on
            self.cancel()
            raise

    def _dispatch(self, queue: deque) -> Iterator[Event]:
        """Start a worker for each slot that has none while runs wait for one; hand runs to idle ready workers."""
        idle = sum(w.task is None for w in self._workers.values())
        for index in range(self.slots):
            if len(queue) <= idle:
                break
            if index not in self._workers:
                self._spawn(index)
                idle += 1
        for w in sorted(self._workers.values(), key=lambda w: w.index):
            if not queue:
                return
            if not w.ready or w.task is not None:
                continue
            task = self._assign(queue[0], w.slot)
            try:
                w.conn.send(("run", task))
            except OSError:  # it died just now: its sentinel reports it, the run goes to another worker
                continue
            queue.popleft()
            w.task, w.started = task, time.perf_counter()
            yield Event("start", task)

    def _drain(self, w: _Worker) -> Iterator[Event]:
        """The messages a worker sent: ready, or a run's row."""
        while True:
            try:
                if not w.conn.poll():
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "ready":
                w.ready = True
            elif msg[0] == "row" and w.task is not None:
                task, w.task = w.task, None
                yield Event("end", task, msg[1])

    def _died(self, w: _Worker, queue: deque) -> Iterator[Event]:
        """A worker process ended: its run (if it had one) is recorded failed; the slot gets a fresh worker when a
        run needs one. A worker that died while starting is charged the next run, so that one that can never start
        fails the runs one by one instead of being restarted forever."""
        yield from self._drain(w)  # its last messages (the row) may have come with its exit
        self._workers.pop(w.index, None)
        w.proc.join()
        with contextlib.suppress(OSError):
            w.conn.close()
        if w.task is None and not w.ready and queue:
            w.task, w.started = self._assign(queue.popleft(), w.slot), time.perf_counter()
            yield Event("start", w.task)
        if w.task is not None:
            yield Event("end", w.task, _died_row(w))

    # stopping ------------------------------------------------------------------------------------------------
    def _stop(self, workers: list[_Worker], grace: float = 10.0) -> None:
        """End workers: an idle one is asked to exit, the others get SIGTERM; SIGKILL after ``grace``."""
        for w in workers:
            asked = False
            if w.ready and w.task is None:
                with contextlib.suppress(OSError):
                    w.conn.send(("stop",))
                    asked = True
            if not asked:
                _signal_worker(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for w in workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                _signal_worker(w.pid, signal.SIGKILL)
                w.proc.join(timeout=5)
            with contextlib.suppress(OSError):
                w.conn.close()

    def cancel(self) -> None:
        """Stop every worker now (Ctrl-C, an error): runs in flight are lost, finished rows are the caller's."""
        workers = list(self._workers.values())
        self._workers.clear()
        for w in workers:
            w.ready = False  # no polite request: SIGTERM
        self._stop(workers)

    def close(self) -> None:
        """The sweep is over: idle workers exit, any other is stopped."""
        workers = list(self._workers.values())
        self._workers.clear()
        self._stop(workers)

def _signal_worker(pid: int, sig: int) -> bool:
    """Signal a worker's process group (itself and its dataloader processes), or the worker alone while it has not
    made its own group yet (it is still starting). True if delivered."""
    for send in (getattr(os, "killpg", None), os.kill):
        if send is None:
            continue
        try:
            send(pid, sig)
            return True
        except OSError:
            continue
    return False


def _died_row(w: _Worker) -> dict:
    """The row of a run whose worker process ended without returning one (killed, out of memory, crashed)."""
    code = w.proc.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    if code == -signal.SIGKILL:
        how += " (SIGKILL: out of memory?)"
    error = (f"worker process died ({how}) before returning a row; see {w.task.plan.run_dir / 'train.log'}"
             if w.ready else f"worker process died while starting ({how}); its error went to the sweep's output")
    return {
        **w.task.row,
        "status": "failed",
        "error": error,
        "node": node_name(),
        "wall_s": time.perf_counter() - w.started,
        "finished_at": now(),
    }
