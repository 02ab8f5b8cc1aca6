"""What one run may leave behind in its process, and a clean start for the next run in the same process.

A local worker process trains its slot's runs one after another, and the sequential executor trains every run in the
sweep process, so a run must find its process as the one before found it. ultralytics seeds Python, NumPy and torch
and switches torch's deterministic mode on at the start of every training, and training's results depend only on
that, the run's configuration and the thread count; still, a run (ultralytics, an integration, a user's ``execute``)
can change process-wide state that the next run would inherit:

* random number generators (Python, NumPy, torch CPU and CUDA) and torch's global switches: deterministic mode,
  cuDNN and TF32 flags, float32 matmul precision, default dtype, grad mode, anomaly detection, the thread count;
* the environment (ultralytics sets ``CUBLAS_WORKSPACE_CONFIG`` and ``PYTHONHASHSEED``), the working directory,
  ``sys.stdout`` / ``sys.stderr``, signal handlers, warning filters;
* ultralytics' logger (level, handlers), its default configuration and default callbacks (module-level objects a
  run may mutate), and an MLflow run its MLflow callback left active (the next training would log into it).

:class:`ProcessState` captures all of that once (a worker: after its imports, before its first run) and puts it back
before every run, so a run in a worker that trained others before it starts from the state a fresh worker gives
(tested: same weights, same metrics). :func:`reap_children` ends processes a finished run left behind (dataloader
workers it did not shut down). Not reset: caches that hold no results (imported modules, compiled kernels, the
ultralytics settings file, which every process shares anyway) and open file handles (a run of this harness leaves
none; closing descriptors a library still holds would be worse than the leak).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import signal
import sys
import warnings
from typing import Any

_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class ProcessState:
    """Process-wide state a run may change, captured now; :meth:`restore` puts it back (see the module docstring)."""

    def __init__(self) -> None:
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.streams = (sys.stdout, sys.stderr)
        self.random = random.getstate()
        self.warnings = list(warnings.filters)
        self.signals = {}
        for sig in _SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                self.signals[sig] = signal.getsignal(sig)
        np = sys.modules.get("numpy")
        self.numpy = np.random.get_state() if np is not None else None
        self.torch = _torch_state()
        self.ultralytics = _ultralytics_state()
        self.mlflow_run = _mlflow_run_id()

    @classmethod
    def capture(cls) -> ProcessState:
        return cls()

    def restore(self) -> None:
        """Put the captured state back. Step by step: one that fails leaves the others done."""
        for step in (self._restore_environ, self._restore_streams, self._restore_rngs, self._restore_warnings,
                     self._restore_signals, self._restore_torch, self._restore_ultralytics, self._end_mlflow_run):
            with contextlib.suppress(Exception):
                step()

    # ----------------------------------------------------------------------------------------------------- steps
    def _restore_environ(self) -> None:
        for key in [k for k in os.environ if k not in self.environ]:
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        os.chdir(self.cwd)

    def _restore_streams(self) -> None:
        sys.stdout, sys.stderr = self.streams

    def _restore_rngs(self) -> None:
        random.setstate(self.random)
        np = sys.modules.get("numpy")
        if np is not None and self.numpy is not None:
            np.random.set_state(self.numpy)
        torch = sys.modules.get("torch")
        if torch is not None and self.torch is not None:
            torch.set_rng_state(self.torch["rng"])
            if self.torch["cuda_rng"] is not None and torch.cuda.is_initialized():
                torch.cuda.set_rng_state_all(self.torch["cuda_rng"])

    def _restore_warnings(self) -> None:
        warnings.filters[:] = self.warnings
        mutated = getattr(warnings, "_filters_mutated", None)  # drops the "already warned" caches of the filters
        if mutated is not None:
            mutated()

    def _restore_signals(self) -> None:
        for sig, handler in self.signals.items():
            with contextlib.suppress(ValueError, OSError, TypeError):  # ValueError: not the main thread
                if handler is not None and signal.getsignal(sig) is not handler:
                    signal.signal(sig, handler)

    def _restore_torch(self) -> None:
        state, torch = self.torch, sys.modules.get("torch")
        if torch is None or state is None:
            return
        torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["warn_only"])
        deterministic = getattr(torch.utils, "deterministic", None)
        if deterministic is not None and state["fill_memory"] is not None:
            deterministic.fill_uninitialized_memory = state["fill_memory"]
        for (owner, name), value in state["flags"].items():
            setattr(owner, name, value)
        torch.set_float32_matmul_precision(state["matmul_precision"])
        torch.set_default_dtype(state["dtype"])
        torch.set_grad_enabled(state["grad"])
        torch.set_anomaly_enabled(*state["anomaly"])
        if torch.get_num_threads() != state["threads"]:
            torch.set_num_threads(state["threads"])

    def _restore_ultralytics(self) -> None:
        state = self.ultralytics
        if state is None or "ultralytics.utils" not in sys.modules:
            return
        from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, LOGGER
        from ultralytics.utils.callbacks import base

        LOGGER.setLevel(state["level"])
        LOGGER.handlers[:] = state["handlers"]
        LOGGER.propagate, LOGGER.disabled = state["propagate"], state["disabled"]
        logging.disable(state["disable"])
        vars(DEFAULT_CFG).clear()
        vars(DEFAULT_CFG).update(copy.deepcopy(state["cfg"]))
        DEFAULT_CFG_DICT.clear()
        DEFAULT_CFG_DICT.update(copy.deepcopy(state["cfg_dict"]))
        for event in [e for e in base.default_callbacks if e not in state["callbacks"]]:
            del base.default_callbacks[event]
        for event, fns in state["callbacks"].items():
            base.default_callbacks[event] = list(fns)

    def _end_mlflow_run(self) -> None:
        """End MLflow runs a run left active (ultralytics' callback would log the next training into them)."""
        mlflow = sys.modules.get("mlflow")
        if mlflow is None:
            return
        for _ in range(8):  # nested runs: end them from the innermost
            active = mlflow.active_run()
            if active is None or active.info.run_id == self.mlflow_run:
                return
            mlflow.end_run(status="KILLED")


def _torch_state() -> dict[str, Any] | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    backends = torch.backends
    flags = {(backends.cudnn, "enabled"): backends.cudnn.enabled, (backends.cudnn, "benchmark"): backends.cudnn.benchmark,
             (backends.cudnn, "deterministic"): backends.cudnn.deterministic,
             (backends.cudnn, "allow_tf32"): backends.cudnn.allow_tf32,
             (backends.cuda.matmul, "allow_tf32"): backends.cuda.matmul.allow_tf32,
             (backends.mkldnn, "enabled"): backends.mkldnn.enabled}
    deterministic = getattr(torch.utils, "deterministic", None)
    return {
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "fill_memory": getattr(deterministic, "fill_uninitialized_memory", None),
        "flags": flags,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "dtype": torch.get_default_dtype(),
        "grad": torch.is_grad_enabled(),
        "anomaly": (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        "threads": torch.get_num_threads(),
    }


def _ultralytics_state() -> dict[str, Any] | None:
    if "ultralytics.utils" not in sys.modules:
        return None
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, LOGGER
    from ultralytics.utils.callbacks import base

    return {
        "level": LOGGER.level,
        "handlers": list(LOGGER.handlers),
        "propagate": LOGGER.propagate,
        "disabled": LOGGER.disabled,
        "disable": logging.root.manager.disable,
        "cfg": copy.deepcopy(vars(DEFAULT_CFG)),
        "cfg_dict": copy.deepcopy(DEFAULT_CFG_DICT),
        "callbacks": {event: list(fns) for event, fns in base.default_callbacks.items()},
    }


def _mlflow_run_id() -> str | None:
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    with contextlib.suppress(Exception):
        active = mlflow.active_run()
        return active.info.run_id if active is not None else None
    return None


def reap_children(timeout: float = 5.0) -> int:
    """End the child processes this process still has (a finished run's dataloader workers it did not shut down):
    SIGTERM, then SIGKILL after ``timeout``. Returns how many there were."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is an ultralytics dependency
        return 0
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return len(children)
