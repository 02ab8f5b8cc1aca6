"""The local executor: runs in worker processes on this machine, several at once.

Each run gets a fresh *spawned* worker process with its own thread budget (``OMP_NUM_THREADS`` and friends) and GPU
(``CUDA_VISIBLE_DEVICES``) set before torch starts; a worker's output goes to its run's ``train.log``.

Timing while other runs train would measure contention, not the model. So a local worker, before it times its
model, asks the parent to pause the other runs on the same device (``SIGSTOP`` of their process groups; ``SIGCONT``
after), one timing at a time per device; the row records how many other runs were still running
(``speed_concurrent``, 0 when the pause worked).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from ..errors import NeckConfigError
from .executors import TICK_S, Event, Executor
from .run import RunTask, node_name, now, one_line, output_to, run_task, set_budget, set_speed_guard
from .spec_types import Execution

EST_RUN_MEMORY = 2.5 * 2**30  # resident memory of one small training run (bytes), for parallel=auto on a CPU


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


@dataclass
class _Worker:
    proc: Any
    conn: Any
    task: RunTask
    slot: Slot
    row: dict | None = None
    paused: bool = False
    started: float = field(default_factory=time.perf_counter)


class LocalExecutor(Executor):
    """Each run in a fresh spawned worker process; several at once (see :func:`plan_slots`)."""

    name = "local"

    def __init__(self, slots: list[Slot], execute: Callable | None = None):
        if not slots:
            raise NeckConfigError("local executor: no worker slots")
        self.slot_list, self.execute = list(slots), execute
        self.slots = len(slots)
        self._workers: dict[int, _Worker] = {}  # by pid
        self._timing: dict[str, int] = {}  # device group -> pid of the worker being timed
        self._waiting: dict[str, deque[int]] = {}

    def describe(self) -> str:
        s = self.slot_list[0]
        where = "cpu" if s.group == "cpu" else "GPU " + ", ".join(dict.fromkeys(x.group for x in self.slot_list))
        return f"{self.slots} worker process(es) at once on {where}, {s.threads} thread(s) each"

    def run(self, tasks: list[RunTask]) -> Iterator[Event]:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")
        queue, free = deque(tasks), list(self.slot_list)
        try:
            while queue or self._workers:
                while queue and free:
                    slot, task = free.pop(0), queue.popleft()
                    task = replace(task, device=slot.device, threads=slot.threads,
                                   row={**task.row, "run_device": slot.group, "threads": slot.threads})  # fmt: skip
                    parent_conn, child_conn = ctx.Pipe()
                    proc = ctx.Process(target=worker_main, args=(task, slot, child_conn, self.execute, os.getpid()),
                                       name=f"yolo-necks {task.label}")  # fmt: skip
                    proc.start()
                    child_conn.close()
                    self._workers[proc.pid] = _Worker(proc, parent_conn, task, slot)
                    yield Event("start", task)
                conns = {w.conn: w for w in self._workers.values()}
                sentinels = {w.proc.sentinel: w for w in self._workers.values()}
                ready = wait(list(conns) + list(sentinels), timeout=TICK_S)
                if not ready:
                    yield Event("tick")
                    continue
                for obj in ready:
                    if obj in conns:
                        self._drain(conns[obj])
                for obj in ready:
                    w = sentinels.get(obj)
                    if w is None:
                        continue
                    del self._workers[w.proc.pid]
                    self._drain(w)  # its last messages (the row) may have come with its exit
                    w.proc.join()
                    self._release(w.proc.pid)
                    free.append(w.slot)
                    yield Event("end", w.task, w.row or _died_row(w))
        finally:
            self.cancel()

    # messages from workers -----------------------------------------------------------------------------------
    def _drain(self, w: _Worker) -> None:
        with contextlib.suppress(EOFError, OSError):
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "row":
                    w.row = msg[1]
                elif msg[0] == "quiet":
                    self._waiting.setdefault(w.slot.group, deque()).append(w.proc.pid)
                    self._grant(w.slot.group)
                elif msg[0] == "loud":
                    self._release(w.proc.pid)

    def _grant(self, group: str) -> None:
        """Let the next waiting worker of a device time its model, pausing the other runs on that device."""
        if group in self._timing:
            return
        waiting = self._waiting.get(group) or deque()
        while waiting:
            pid = waiting.popleft()
            w = self._workers.get(pid)
            if w is None:
                continue
            self._timing[group] = pid
            others = [o for p, o in self._workers.items() if p != pid and o.slot.group == group]
            still = 0
            for o in others:
                if not o.paused:
                    o.paused = _signal_worker(o.proc.pid, signal.SIGSTOP)  # SIGCONT follows whenever it was sent
                    still += not (o.paused and _stopped(o.proc.pid))
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(("go", still))
            return

    def _release(self, pid: int) -> None:
        """A worker finished timing (or died): resume the runs paused for it, grant the next one."""
        for group, holder in list(self._timing.items()):
            if holder != pid:
                continue
            del self._timing[group]
            for o in self._workers.values():
                if o.paused and o.slot.group == group:
                    _signal_worker(o.proc.pid, signal.SIGCONT)
                    o.paused = False
            self._grant(group)

    def cancel(self) -> None:
        for pid in list(self._workers):
            _signal_worker(pid, signal.SIGCONT)
            _signal_worker(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid, w in list(self._workers.items()):
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                _signal_worker(pid, signal.SIGKILL)
                w.proc.join(timeout=5)
            with contextlib.suppress(OSError):
                w.conn.close()
        self._workers.clear()
        self._timing.clear()
        self._waiting.clear()


def _signal_worker(pid: int, sig: int) -> bool:
    """Signal a worker's process group (itself and its dataloader processes), or the worker alone while it has not
    made its own group yet (it is still starting). True if delivered."""
    delivered = False
    for send in (getattr(os, "killpg", None), os.kill):
        if send is None:
            continue
        try:
            send(pid, sig)
            delivered = True
        except OSError:
            continue
        if sig != signal.SIGCONT:  # SIGCONT goes to both: the worker may have made its group while stopped
            break
    return delivered


def _stopped(pid: int, timeout: float = 2.0) -> bool:
    """Wait until a signalled worker has actually stopped (the kernel stops it when it next runs), so that timing
    never starts beside a process that is still finishing its time slice. True once stopped (or gone)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        deadline = time.monotonic() + timeout
        while proc.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True
    except Exception:  # gone, or no psutil: nothing more to wait for
        return True


def _died_row(w: _Worker) -> dict:
    """The row of a run whose worker process ended without returning one (killed, out of memory, crashed)."""
    code = w.proc.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    if code == -signal.SIGKILL:
        how += " (SIGKILL: out of memory?)"
    return {
        **w.task.row,
        "status": "failed",
        "error": f"worker process died ({how}) before returning a row; see {w.task.plan.run_dir / 'train.log'}",
        "node": node_name(),
        "wall_s": time.perf_counter() - w.started,
        "finished_at": now(),
    }


# ------------------------------------------------------------------------------------------------ worker process
def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the sweep process dies (even by SIGKILL): it must not train on as an orphan, and its
    run will be trained again on resume."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    if not sys.platform.startswith("linux"):  # pragma: no cover - elsewhere: a watchdog thread
        import threading

        def watch():
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


def _pipe_guard(conn):
    @contextlib.contextmanager
    def guard():
        conn.send(("quiet",))
        msg = conn.recv()
        try:
            yield {"speed_concurrent": int(msg[1]) if len(msg) > 1 else 0}
        finally:
            conn.send(("loud",))

    return guard


def worker_main(task: RunTask, slot: Slot, conn, execute: Callable | None, parent_pid: int) -> None:
    """Entry point of a local worker process: budget first (torch is not imported yet), then one run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # its own process group: pausing it pauses its dataloader workers too
    _die_with_parent(parent_pid)
    set_budget(slot.threads, slot.cuda_visible)
    set_speed_guard(_pipe_guard(conn))
    log = task.plan.run_dir / "train.log"
    try:
        with output_to(log):
            if slot.threads:
                import torch

                torch.set_num_threads(slot.threads)
            row = run_task(task, execute)
    except BaseException as e:  # run_task records failures itself; this is a last resort
        row = {**task.row, "status": "failed", "error": one_line(e), "node": node_name(), "finished_at": now()}
    conn.send(("row", _compact(row)))
    conn.close()


def _compact(row: dict, limit: int = 2000) -> dict:
    """Long text cells shortened, so that a row travels to the parent in one small message."""
    return {k: (v[: limit - 3] + "..." if isinstance(v, str) and len(v) > limit else v) for k, v in row.items()}
