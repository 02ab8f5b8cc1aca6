"""Helpers of tests/test_ablation.py: a tiny offline YOLO dataset, tiny sweep specs, a stand-in for training.

Also runnable as a script for the hard-kill tests::

    python tests/ablation_helpers.py kill-at-run N SPEC       # one run at a time, patched training
    python tests/ablation_helpers.py kill-after-rows N SPEC   # the spec's executor, fake_execute in the workers

The first runs the sweep with training replaced by :class:`FakeTraining` and SIGKILLs its own process when run
number ``N`` (1-based) of this invocation starts, i.e. after ``N - 1`` runs have been recorded; the second SIGKILLs
the sweep process once ``N`` rows are recorded, whatever its workers are doing.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

COLOURS = [(230, 40, 40), (40, 230, 40), (40, 40, 230)]


def make_tiny_dataset(root: str | Path, n_train: int = 8, n_val: int = 4, imgsz: int = 64, nc: int = 2,
                      seed: int = 0) -> str:
    """Coloured rectangles on dark backgrounds in the YOLO layout; returns the data YAML path."""
    root = Path(root)
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            im = Image.new("RGB", (imgsz, imgsz), tuple(rng.randrange(40) for _ in range(3)))
            draw = ImageDraw.Draw(im)
            lines = []
            for _ in range(rng.randint(1, 3)):
                c = rng.randrange(nc)
                w, h = rng.randint(imgsz // 5, imgsz // 2), rng.randint(imgsz // 5, imgsz // 2)
                x0, y0 = rng.randint(0, imgsz - w), rng.randint(0, imgsz - h)
                draw.rectangle([x0, y0, x0 + w - 1, y0 + h - 1], fill=COLOURS[c % len(COLOURS)])
                lines.append(f"{c} {(x0 + w / 2) / imgsz:.6f} {(y0 + h / 2) / imgsz:.6f} {w / imgsz:.6f} {h / imgsz:.6f}")
            im.save(root / "images" / split / f"{i:03d}.png")
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val",
            "names": {k: f"c{k}" for k in range(nc)}}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return str(root / "data.yaml")


def tiny_spec(dataset: str, project: str | Path, **changes) -> dict:
    """A 2-arm, 1-seed, 1-epoch sweep at imgsz 64 on the CPU, one run at a time in the test process (so that
    ``run.execute_run`` can be patched; ``changes`` replace keys)."""
    spec = {
        "name": "tiny",
        "project": str(project),
        "model": "yolov8.yaml",
        "scale": "n",
        "arms": [
            {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
            {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]},
        ],
        "data": dataset,
        "epochs": 1,
        "imgsz": 64,
        "batch": 4,
        "seeds": [0],
        "device": "cpu",
        "workers": 0,
        "parallel": 1,
        "speed": {"warmup": 1, "repeats": 100, "throughput_batch": 2, "throughput_repeats": 2},
    }
    spec.update(changes)
    return spec


def write_spec(path: str | Path, spec: dict) -> str:
    Path(path).write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def fake_metrics(plan, spec, offset: float = 0.0) -> dict:
    """Deterministic metric columns of a run, per (arm, seed)."""
    k = sum(map(ord, plan.arm.name)) % 7
    return {
        "map50": 0.6 + 0.01 * k + 0.002 * plan.seed + offset,
        "map50_95": 0.4 + 0.01 * k + 0.003 * plan.seed + offset,
        "precision": 0.7,
        "recall": 0.5,
        "params": 1000 + k,
        "gflops": 1.0 + k / 10,
        "train_s": 1.0,
        "val_s": 0.1,
        "epochs_run": spec.epochs,
        "weights": "",
        **fake_sizes(plan, offset),
        "_per_class": fake_classes(plan, offset),
    }


def fake_sizes(plan, offset: float = 0.0) -> dict:
    """Deterministic COCO columns of a run: AP small differs between arms by a constant over seeds, AP medium by
    arm and seed alike, and the val split has no large object (an empty bucket: no value, count 0)."""
    k = sum(map(ord, plan.arm.name)) % 7
    return {
        "coco_map50_95": 0.39 + 0.01 * k + 0.003 * plan.seed + offset,
        "coco_map50": 0.59 + 0.01 * k + offset,
        "map_small": 0.2 + 0.02 * k + 0.004 * plan.seed + offset,
        "map_medium": 0.5 + 0.001 * ((k * 3 + plan.seed) % 5) + offset,
        "map_large": None,
        "ar100": 0.5,
        "n_small": 30, "n_medium": 20, "n_large": 0,
        **{f"{m}_se": 0.01 for m in ("coco_map50_95", "coco_map50", "map_small", "map_medium", "ar100")},
        "map_large_se": float("nan"),
    }


def fake_classes(plan, offset: float = 0.0) -> list[dict]:
    """Deterministic per-class rows of a run (classes c0 and c1 present in val, as in the rectangles dataset): class
    c0 gains with the arm's constant, c1 does not."""
    k = sum(map(ord, plan.arm.name)) % 7
    return [{"class": 0, "name": "c0", "n_instances": 5, "ap50": 0.6 + 0.01 * k, "ap50_95": 0.4 + 0.01 * k + offset},
            {"class": 1, "name": "c1", "n_instances": 3, "ap50": 0.5, "ap50_95": 0.3 + 0.001 * plan.seed + offset}]


FAIL_ARMS_ENV = "YOLO_NECKS_TEST_FAIL_ARMS"  # comma-separated arms that fail
HOLD_ENV = "YOLO_NECKS_TEST_HOLD"  # "arm,arm:FILE": those arms wait until FILE exists
PID_DIR_ENV = "YOLO_NECKS_TEST_PID_DIR"  # every call writes ARM-sSEED.pid there
CRASH_ONCE_ENV = "YOLO_NECKS_TEST_CRASH_ONCE"  # a folder: the first attempt of every run SIGKILLs its own process
BARRIER_ENV = "YOLO_NECKS_TEST_BARRIER"  # "N:FOLDER": every call waits until N calls have reached it
WAIT_S = 120.0  # upper bound of any wait in the stand-ins (a stuck test fails instead of hanging)


def wait_for(path: Path, what: str) -> None:
    """Block until ``path`` exists (a file another process creates), failing after :data:`WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {WAIT_S:.0f} s for {what} ({path})")
        time.sleep(0.02)


def fake_execute(plan, spec, data):
    """A picklable stand-in for ``run.execute_run`` (worker processes and Ray tasks import it from this module),
    steered by environment variables (see above). It reports the process it ran in as its 'weights'."""
    name = f"{plan.arm.name}-s{plan.seed}"
    if os.environ.get(PID_DIR_ENV):
        (Path(os.environ[PID_DIR_ENV]) / f"{name}.pid").write_text(str(os.getpid()))
    if os.environ.get(CRASH_ONCE_ENV):
        marker = Path(os.environ[CRASH_ONCE_ENV]) / f"{name}.attempted"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-run
    barrier = os.environ.get(BARRIER_ENV, "")
    if barrier:  # runs that must overlap (each in its own worker): none goes on before all have started
        count, _, folder = barrier.partition(":")
        (Path(folder) / f"{name}.{os.getpid()}").write_text("")
        deadline = time.monotonic() + WAIT_S
        while len(list(Path(folder).iterdir())) < int(count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {WAIT_S:.0f} s for {count} runs to start together ({folder})")
            time.sleep(0.02)
    hold = os.environ.get(HOLD_ENV, "")
    if hold:
        arms, _, release = hold.partition(":")
        if plan.arm.name in arms.split(","):
            wait_for(Path(release), f"the release of arm {plan.arm.name}")
    if plan.arm.name in os.environ.get(FAIL_ARMS_ENV, "").split(","):
        raise RuntimeError(f"CUDA out of memory (simulated) in arm {plan.arm.name}")
    row = fake_metrics(plan, spec)
    row["weights"] = f"pid {os.getpid()}"
    return row


def mlflow_probe_execute(plan, spec, data):
    """:func:`fake_execute` that also reports, in its 'weights' column, the process it ran in and the MLflow run that
    was active there (the child run the harness starts where a run trains)."""
    import mlflow

    row = fake_execute(plan, spec, data)
    active = mlflow.active_run()
    row["weights"] = f"pid {os.getpid()} run {active.info.run_id if active else None}"
    return row


CRASH_ARMS_ENV = "YOLO_NECKS_TEST_CRASH_ARMS"  # comma-separated arms whose runs SIGKILL their own process
LEAK_ENV = "YOLO_NECKS_TEST_LEAKED"  # set by perturb_process_state


def crash_execute(plan, spec, data):
    """:func:`fake_execute`, except that the runs of the arms in ``CRASH_ARMS_ENV`` kill their own process."""
    if plan.arm.name in os.environ.get(CRASH_ARMS_ENV, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    return fake_execute(plan, spec, data)


class FailsInWorker:
    """An ``execute`` that cannot be unpickled in another process: a worker given it dies while starting."""

    def __init__(self):
        self.parent = os.getpid()

    def __setstate__(self, state):
        if os.getpid() != state["parent"]:
            raise RuntimeError("cannot start (simulated)")
        self.__dict__.update(state)

    def __call__(self, plan, spec, data):
        return fake_execute(plan, spec, data)


def process_probe() -> dict:
    """What a run finds of its process's state: everything :func:`perturb_process_state` changes, as comparable
    values (the state a run starts from must not depend on the runs before it)."""
    import hashlib
    import logging
    import pickle
    import warnings

    import numpy as np
    import psutil
    import torch
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, LOGGER
    from ultralytics.utils.callbacks import base


    def digest(x) -> str:
        return hashlib.sha256(pickle.dumps(x)).hexdigest()[:16]

    mlflow = sys.modules.get("mlflow")
    return {
        "threads": torch.get_num_threads(),
        "deterministic": [torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled()],
        "cudnn": [torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.enabled],
        "matmul_precision": torch.get_float32_matmul_precision(),
        "dtype": str(torch.get_default_dtype()),
        "grad": torch.is_grad_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "rng": [digest(random.getstate()), digest(np.random.get_state()), digest(torch.get_rng_state().tolist())],
        "env": {k: os.environ.get(k) for k in (LEAK_ENV, "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS")},
        "cwd": os.getcwd(),
        "stdout": type(sys.stdout).__name__,
        "sigterm": repr(signal.getsignal(signal.SIGTERM)),
        "logger": [LOGGER.level, len(LOGGER.handlers), LOGGER.disabled, logging.root.manager.disable],
        "warnings": digest(repr(warnings.filters)),
        "cfg": [digest(sorted(vars(DEFAULT_CFG).items(), key=str)), digest(sorted(DEFAULT_CFG_DICT.items(), key=str))],
        "callbacks": {k: len(v) for k, v in base.default_callbacks.items()},
        "children": len(psutil.Process().children(recursive=True)),
        "fds": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None,
        "mlflow_run": bool(mlflow is not None and mlflow.active_run() is not None),
    }


def perturb_process_state(scratch: Path, with_mlflow: bool = False):
    """Change process-wide state as a careless run could (see :mod:`yolo_necks.ablation.execute.isolation`); returns the
    child process it leaves running."""
    import io
    import logging
    import subprocess
    import warnings

    import numpy as np
    import torch
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, LOGGER
    from ultralytics.utils.callbacks import base


    torch.set_num_threads(torch.get_num_threads() + 1)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = True
    torch.set_float32_matmul_precision("medium")
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.set_anomaly_enabled(True)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    os.environ[LEAK_ENV] = "leaked"
    os.environ["PYTHONHASHSEED"] = "99"
    os.chdir(scratch)
    sys.stdout = io.StringIO()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    LOGGER.setLevel(logging.ERROR)
    LOGGER.addHandler(logging.NullHandler())
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    DEFAULT_CFG.fliplr = DEFAULT_CFG_DICT["fliplr"] = 0.0  # a training argument the runs do not set
    base.default_callbacks["on_train_start"].append(print)
    if with_mlflow:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        import mlflow

        mlflow.set_tracking_uri(f"file:{scratch / 'mlruns'}")
        mlflow.start_run()
    return subprocess.Popen(["sleep", "300"])  # a child process left running


def leaky_execute(plan, spec, data):
    """Real training (``run.execute_run``) that also reports the state its process was in when it started
    (``probe``) and its process id; a run whose folder ends in ``-leak`` trains nothing and leaves the process
    perturbed instead (:func:`perturb_process_state`), reporting the perturbed state."""
    from yolo_necks.ablation.execute import run

    if plan.run_dir.name.endswith("-leak"):
        scratch = plan.run_dir / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        perturb_process_state(scratch)
        return {**fake_metrics(plan, spec), "probe": process_probe(), "pid": os.getpid()}
    probe = process_probe()
    return {**run.execute_run(plan, spec, data), "probe": probe, "pid": os.getpid()}


class FakeTraining:
    """Stand-in for ``run.execute_run``: deterministic metrics per (arm, seed), failures on demand, a call log."""

    def __init__(self, fail_arms: tuple[str, ...] = (), offset: float = 0.0):
        self.fail_arms = set(fail_arms)
        self.offset = offset
        self.calls: list[tuple[str, int]] = []

    def __call__(self, plan, spec, data):
        self.calls.append((plan.arm.name, plan.seed))
        if plan.arm.name in self.fail_arms:
            raise RuntimeError(f"CUDA out of memory (simulated) in arm {plan.arm.name}")
        return fake_metrics(plan, spec, self.offset)


def _kill_on_call(n: int):
    """A callback that SIGKILLs this process on its ``n``-th call."""
    calls = []

    def callback(_):
        calls.append(_)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)

    return callback


def _kill_after_rows(n: int, spec: str) -> int:
    """A sweep with :func:`fake_execute` in its workers that SIGKILLs its own process once ``n`` rows are recorded."""
    from yolo_necks.ablation import runner

    runner.run_sweep(spec, execute=fake_execute, callbacks={"on_run_end": _kill_on_call(n)})
    return 0


def _kill_at_run(n: int, spec: str) -> int:
    """A sweep with patched training that SIGKILLs its own process when its ``n``-th run starts."""
    from unittest import mock

    from yolo_necks.ablation.execute import run
    from yolo_necks.ablation import runner

    with mock.patch.object(run, "execute_run", FakeTraining()):
        runner.run_sweep(spec, callbacks={"on_run_start": _kill_on_call(n)})
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "kill-at-run":
        sys.exit(_kill_at_run(int(sys.argv[2]), sys.argv[3]))
    if len(sys.argv) == 4 and sys.argv[1] == "kill-after-rows":
        sys.exit(_kill_after_rows(int(sys.argv[2]), sys.argv[3]))
    sys.exit(f"usage: {sys.argv[0]} kill-at-run|kill-after-rows N SPEC")
