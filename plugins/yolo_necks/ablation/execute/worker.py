"""The worker process of the local executor: started once per slot, it trains the slot's runs one after another.

Start-up, in this order: Ctrl-C ignored (the sweep process handles it and stops the workers), SIGTERM and SIGHUP
back to their defaults (a forked worker inherits the sweep process's handlers), a process group of its own
(stopping the group stops its dataloader workers too), death with the sweep process (``PR_SET_PDEATHSIG``), the
slot's thread budget and GPUs (before torch starts in a spawned worker; a forked one shares the sweep process's
torch and sets its thread count), then the imports every run needs (:func:`preload`: torch, ultralytics, its trainer
and validator, the integrations the ultralytics settings switch on, the block registry; in a forked worker most are
there already). Then it captures the process state every
run starts from (:class:`~yolo_necks.ablation.execute.isolation.ProcessState`), says ``ready`` and serves runs until told to
stop.

Messages (one pipe per worker)::

    sweep process -> worker:  ("run", task)  |  ("stop",)
    worker -> sweep process:  ("ready",)  |  ("row", row)

Each run: the captured state put back, file descriptors 1 and 2 sent to the run's ``train.log``
(restored after; each log starts with the worker's pid and how many runs it has trained, the first one also with
the output of the worker's start-up), the run, its row sent, then child processes the run left behind ended and the
CUDA cache emptied.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

from .isolation import ProcessState, reap_children
from .run import node_name, now, one_line, output_to, run_task, set_budget

INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")  # ultralytics settings keys


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


def preload() -> None:
    """Import what every run needs, once per worker. Best effort: whatever fails here, the run reports."""
    import importlib

    import torch

    for name in ("ultralytics", "ultralytics.models.yolo.detect", "ultralytics.utils.callbacks.base",
                 "ultralytics.utils.callbacks.events", "ultralytics.utils.callbacks.platform",
                 "yolo_necks.ablation.execute.speed", "yolo_necks.flops"):
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    with contextlib.suppress(Exception):  # what ultralytics' trainer adds to its callbacks, per its settings
        from ultralytics.utils import SETTINGS

        for key in INTEGRATIONS:
            if SETTINGS.get(key) is True:
                importlib.import_module(f"ultralytics.utils.callbacks.{'wb' if key == 'wandb' else key}")
        if "mlflow" in sys.modules:  # the SQL store behind MLflow's default tracking URI, loaded on first use
            importlib.import_module("mlflow.store.tracking.sqlalchemy_store")
    with contextlib.suppress(Exception):  # torch imports its compiler stack the first time this is set
        torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled(),
                                           warn_only=torch.is_deterministic_algorithms_warn_only_enabled())
    with contextlib.suppress(Exception):
        import yolo_necks

        yolo_necks.register()


def _own_standard_streams() -> None:
    """``sys.stdout`` and ``sys.stderr`` on file descriptors 1 and 2, where each run's output is sent, and so the
    logging handlers that wrote to the streams they replace: a forked worker inherits whatever the sweep process had
    put in their place (a test runner's capture, say). A spawned worker has them already."""
    import io
    import logging

    for fd, name in ((1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        with contextlib.suppress(AttributeError, OSError, ValueError, io.UnsupportedOperation):
            if old.fileno() == fd:
                continue
        new = open(fd, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)  # noqa: SIM115
        setattr(sys, name, new)
        loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for handler in (h for lg in loggers for h in getattr(lg, "handlers", ())):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


def _start(slot, parent_pid: int) -> str:
    """Everything before the first run; returns what it printed (it goes to the first run's log)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # stopping a worker ends it, forked or not
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # its own process group: pausing it pauses its dataloader workers too
    _die_with_parent(parent_pid)
    _own_standard_streams()
    set_budget(slot.threads, slot.cuda_visible)
    fd, path = tempfile.mkstemp(prefix="yolo-necks-worker-", suffix=".log")
    os.close(fd)
    try:
        try:
            with output_to(Path(path)):
                preload()
                if slot.threads:
                    import torch

                    torch.set_num_threads(slot.threads)
        finally:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
    except BaseException:
        sys.stderr.write(text + traceback.format_exc())  # a worker that cannot start: say why where the sweep prints
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return text


def worker_main(slot, conn, execute: Callable | None, parent_pid: int, method: str = "spawn") -> None:
    """Entry point of a local worker process (see the module docstring); ``method``: how it was started (fork or
    spawn), said in each run's log."""
    startup = _start(slot, parent_pid)
    how = {"fork": "forked from the sweep process", "spawn": "spawned"}.get(method, method)
    clean = ProcessState.capture()
    conn.send(("ready",))
    runs = 0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the sweep process is gone
            break
        if msg[0] != "run":
            break
        task = msg[1]
        clean.restore()
        try:
            runs += 1
            with output_to(task.plan.run_dir / "train.log"):
                print(f"yolo-necks worker process {os.getpid()}: run {runs} in this process ({how})", flush=True)
                if startup:
                    print(f"output of its start-up:\n{startup}", flush=True)
                    startup = ""
                row = run_task(task, execute)
        except BaseException as e:  # run_task records failures itself; this is a last resort
            row = {**task.row, "status": "failed", "error": one_line(e), "node": node_name(), "finished_at": now()}
        conn.send(("row", _compact(row)))
        reap_children()
        _empty_cuda_cache()  # a failed run was collected by run_task; a full collection here would cost ~0.3 s a run
    conn.close()


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _compact(row: dict, limit: int = 2000) -> dict:
    """Long text cells shortened, so that a row travels to the parent in one small message."""
    return {k: (v[: limit - 3] + "..." if isinstance(v, str) and len(v) > limit else v) for k, v in row.items()}
