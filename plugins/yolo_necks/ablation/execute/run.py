"""One run of a sweep: train, validate, count, time; importable by a worker process or a Ray task.

Everything a run needs travels in a :class:`RunTask` (the plan, the spec, a reference to the dataset, the row's
columns known before training, the device and thread budget of this run), so a worker on any node can rebuild the
run from it alone: a built-in dataset is rebuilt deterministically from its parameters into that node's cache, a
data YAML must be readable there, and a pretrained checkpoint must exist there (or be downloadable by name) with the
same content hash. :func:`run_task` never raises for a failed run: it returns the row with ``status`` ``failed`` and
a one-line ``error`` (the traceback goes to ``error.txt`` in the run folder); only Ctrl-C propagates. With MLflow
tracking on, :func:`run_task` starts the run's MLflow child run in the process that trains it and ends it with the
row (:mod:`.tracking`, imported only then).

This module imports neither torch nor ultralytics at import time: a worker sets its thread and device budget
(:func:`set_budget`) before either starts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ...errors import NeckError, one_line
from ...threads import threads_held
from ..prepare.plan import DataRef, RunPlan, file_sha
from ..records.perclass import ROW_KEY as PER_CLASS_KEY
from ..spec.load import Spec

if TYPE_CHECKING:  # pragma: no cover
    from ..records.tracking import TrackingRef

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class NodeError(NeckError):
    """Something a run needs is missing on the node that got it (data YAML, images, checkpoint)."""


@dataclass
class RunTask:
    """Everything one run needs, picklable."""

    plan: RunPlan
    spec: Spec
    data: DataRef
    row: dict  # the row's columns known before training (arm, seed, settings, versions, config hash, ...)
    device: str | None = None  # the device this run trains on (a pool entry); None: the spec's device
    threads: int | None = None  # CPU threads of this run; None: leave torch's setting alone
    pretrained_sha: str = ""  # full content hash the checkpoint must have on the node
    tracking: TrackingRef | None = None  # MLflow: the child run of this run starts where it trains; None: off

    @property
    def label(self) -> str:
        return self.plan.label


# ----------------------------------------------------------------------------------------------- budgets, logs
def set_budget(threads: int | None, cuda_visible: str | None = None) -> None:
    """Thread and GPU budget of a worker process: environment variables read when torch starts, then torch's own
    setting if it is already imported. Call it before importing torch where possible."""
    if threads:
        for var in THREAD_VARS:
            os.environ[var] = str(threads)
    if cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible
    if threads:
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 (ultralytics' logger, progress bars, C libraries) to
    ``path`` until the block ends; the terminal gets nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "ab", buffering=0) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


# --------------------------------------------------------------------------------------------------- environment
def environment(spec: Spec) -> dict[str, str]:
    """Versions and machine of the sweep, recorded in every row (a worker overwrites what differs on its node)."""
    import torch
    import ultralytics

    import yolo_necks

    from .speed import device_name, torch_build, torch_device

    try:
        dev_name = device_name(torch_device(spec.device), threads=False)  # training sets its own threads
    except Exception:  # pragma: no cover - an unusual device string; training will report it
        dev_name = spec.device
    return {
        "torch": torch.__version__,
        "torch_build": torch_build(),
        "ultralytics": ultralytics.__version__,
        "yolo_necks": yolo_necks.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "device_name": dev_name,
    }


def git_commit() -> str:
    """Commit of the yolo-necks source checkout (``+dirty`` with uncommitted changes), '' outside a checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def node_name() -> str:
    return socket.gethostname()


# ------------------------------------------------------------------------------------------------ node checks
def node_data(ref: DataRef) -> str:
    """The data YAML of the sweep's dataset on this node: a built-in is built (or found) in this node's cache; a data
    YAML must be readable here, with the image folders it names."""
    if ref.builtin:
        from yolo_necks.datasets import resolve_data

        return str(resolve_data(ref.builtin, **ref.params))
    path = Path(ref.path)
    if not path.is_absolute():  # a bare name (coco8.yaml): ultralytics resolves it on this node
        return ref.path
    where = f"node {node_name()}"
    try:
        import yaml

        info = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise NodeError(f"{where}: data YAML '{path}' is not readable here ({type(e).__name__}); every node needs it "
                        "at the same path (a shared filesystem), or use a built-in dataset") from None
    except Exception as e:
        raise NodeError(f"{where}: data YAML '{path}' cannot be parsed here ({one_line(e)})") from None
    if isinstance(info, dict):
        base = Path(str(info.get("path") or path.parent)).expanduser()
        if not base.is_absolute():
            base = path.parent / base
        for split in ("train", "val"):
            entries = info.get(split)
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, str) and "://" not in entry:
                    p = Path(entry).expanduser()
                    p = p if p.is_absolute() else base / p
                    if not p.exists():
                        raise NodeError(f"{where}: '{split}' images '{p}' of data YAML '{path}' are not readable here")
    return str(path)


def node_checkpoint(task: RunTask) -> str | None:
    """The pretrained checkpoint on this node, checked against the content hash the driver recorded."""
    spec = task.spec
    if not spec.pretrained:
        return None
    path = Path(spec.pretrained)
    if not path.is_file():
        name = task.row.get("pretrained") or path.name
        from ultralytics.utils.downloads import attempt_download_asset

        try:  # a weights name (yolov8n.pt) can be fetched by ultralytics where the node is online
            path = Path(attempt_download_asset(str(name)))
        except Exception:
            path = Path(str(name))
        if not path.is_file():
            raise NodeError(f"node {node_name()}: pretrained checkpoint '{spec.pretrained}' is not here")
    if task.pretrained_sha and file_sha(path, None) != task.pretrained_sha:
        raise NodeError(f"node {node_name()}: pretrained checkpoint '{path}' differs from the one the sweep hashed "
                        f"(sha256 {task.pretrained_sha[:16]})")
    return str(path)


# --------------------------------------------------------------------------------------------------- one run
def train_kwargs(plan: RunPlan, spec: Spec, data: str) -> dict:
    """Arguments of ``YOLO.train`` for a run: harness defaults < spec train_args < the controlled keys."""
    return {
        "plots": False,
        **spec.train_args,
        "pretrained": spec.pretrained or False,
        "data": data,
        "epochs": spec.epochs,
        "imgsz": spec.imgsz,
        "batch": spec.batch,
        "seed": plan.seed,
        "deterministic": True,
        "device": spec.device,
        "workers": spec.workers,
        "project": str(plan.run_dir.parent),
        "name": plan.run_dir.name,
        "exist_ok": True,
    }


def execute_run(plan: RunPlan, spec: Spec, data: str) -> dict[str, Any]:
    """Train, validate (with the bootstrap standard errors of its mAPs over the val images) and count one run; return
    its metric columns, with COCO's AP by object size (``spec.size_buckets``) from the same predictions and its
    per-class AP under ``_per_class`` (rows for ``per_class.csv``, taken out by the sweep process). Raises on any
    failure. Latency is not timed here: the sweep times each arm once, after
    training, with nothing else of the sweep running (:mod:`.arm_speed`)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_num_params

    from ... import cocoeval
    from ...flops import model_gflops
    from ..records import replicates
    from . import valnoise
    from .seeding import check_ddp, seed_data_order

    t0 = time.perf_counter()
    model = YOLO(str(plan.yaml_path), task="detect")
    check_ddp(spec.device)  # where ultralytics seeds the loader with a constant, a DDP run cannot be reseeded
    seed_data_order(model, plan.seed)  # the run seed reaches the image order and the loader workers' seeds
    if spec.tracking is None:
        model.add_callback("on_pretrain_routine_start", without_mlflow)
    model.train(**train_kwargs(plan, spec, data))
    train_s = time.perf_counter() - t0
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    if not best.is_file():
        raise RuntimeError(f"training wrote no weights in {trainer.save_dir}")
    epochs_run = int(getattr(trainer, "epoch", spec.epochs - 1)) + 1
    images = len(getattr(getattr(trainer, "train_loader", None), "dataset", ()) or ())
    del model, trainer
    gc.collect()

    t0 = time.perf_counter()
    first_device = spec.device.split(",")[0].strip()  # validation uses one device even after DDP training
    validating = YOLO(str(best), task="detect")
    capture, coco = valnoise.ValCapture(), cocoeval.CocoCapture()
    validating.add_callback("on_val_batch_end", capture)
    validating.add_callback("on_val_end", coco)  # the predictions in COCO form (save_json) and per-class AP
    metrics = validating.val(
        data=data, split="val", imgsz=spec.imgsz, batch=spec.batch, device=first_device, workers=spec.workers,
        plots=False, verbose=False, project=str(plan.run_dir), name="val", exist_ok=True, save_json=True,
    )
    val_s = time.perf_counter() - t0
    box = metrics.box
    acc = {"map50": float(box.map50), "map50_95": float(box.map), "precision": float(box.mp), "recall": float(box.mr)}
    if any(v != v for v in acc.values()):
        raise RuntimeError(f"validation returned NaN metrics {acc}")
    noise = valnoise.bootstrap(capture)
    sizes, size_reps = coco_metrics(coco, spec.size_buckets)
    replicates.save(noise, plan.run_dir, size_reps)
    with contextlib.suppress(OSError):  # recorded above; validating best.pt again writes it again
        (plan.run_dir / "val" / "predictions.json").unlink()

    del validating
    net = YOLO(str(best), task="detect").model  # unfused, as trained (validation fused its copy)
    # operator-level FLOPs: thop (ultralytics' counter) misses convs a block calls functionally
    stats = {"params": int(get_num_params(net)), "gflops": model_gflops(net, spec.imgsz)}
    del net
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {**acc, "map50_se": noise["map50_se"], "map50_95_se": noise["map50_95_se"], **sizes, **stats,
            "train_s": train_s, "val_s": val_s, "epochs_run": epochs_run, "weights": str(best),
            "train_ips": images * epochs_run / train_s if images and train_s > 0 else float("nan"),
            PER_CLASS_KEY: coco.per_class}


def coco_metrics(coco, buckets) -> tuple[dict, dict]:
    """(the COCO columns of a run: AP, AP by object size, AR@100, box counts per size and the bootstrap SEs; the
    COCO metrics' replicates) from a :class:`~yolo_necks.cocoeval.CocoCapture` of its validation. The replicates use
    the resamples of the mAP bootstrap (:func:`.valnoise.resample_indices`), so they pair with it and across runs."""
    from ... import cocoeval
    from . import valnoise

    if coco.data is None:
        raise RuntimeError("the validation gave no predictions in COCO form (on_val_end did not run)")
    values = cocoeval.evaluate(coco.data, buckets)
    n = coco.data.n_images
    reps = cocoeval.bootstrap_sizes(coco.data, valnoise.resample_indices(n), buckets) if n >= 2 else {}
    se = cocoeval.bootstrap_se(reps) if reps else {f"{m}_se": float("nan") for m in cocoeval.METRICS}
    return {**values, **se}, reps


def without_mlflow(trainer) -> None:
    """Keep ultralytics' own MLflow callback out of a run of a sweep that does not track (spec key ``mlflow`` off).

    Ultralytics switches that callback on by default once mlflow is installed (its ``mlflow`` setting), and it would
    then open a run per training in a store next to the working directory: a sweep logs to MLflow only when asked,
    and then into its own child runs (:mod:`.tracking`)."""
    for fns in trainer.callbacks.values():
        fns[:] = [f for f in fns if getattr(f, "__module__", "") != "ultralytics.utils.callbacks.mlflow"]


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_task(task: RunTask, execute: Callable | None = None) -> dict[str, Any]:
    """Run one planned run and return its complete row (``status`` ok or failed). ``execute`` replaces
    :func:`execute_run` (same signature); by default the module attribute is looked up at call time."""
    plan = task.plan
    spec = task.spec if task.device is None else replace(task.spec, device=task.device)
    if task.tracking is None and spec.tracking is not None:  # the sweep could not track: this run is not tracked
        spec = replace(spec, tracking=None)
    row = {"run_device": spec.device, **task.row, "node": node_name(), "started_at": now()}
    if task.threads:
        row["threads"] = task.threads
    child = None
    if task.tracking is not None:  # here, in the training process, so that ultralytics' callback logs into it
        from ..records.tracking import start_child

        child = start_child(task.tracking, row, plan.label)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    try:
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        plan.yaml_path.write_text(plan.model.text, encoding="utf-8")
        data = node_data(task.data)
        checkpoint = node_checkpoint(task)
        if checkpoint and plan.model.index_map:  # inserted layers shift the names: renumber the weights to this arm
            from ..prepare.pretrained import remap_checkpoint

            checkpoint = remap_checkpoint(checkpoint, plan.model.index_map, plan.run_dir / "pretrained-renumbered.pt")
        if checkpoint:
            spec = replace(spec, pretrained=checkpoint)
        fn = execute if execute is not None else execute_run  # looked up now: patching the module attribute works
        with threads_held(task.threads):  # the run's budget, also through ultralytics' own thread setting
            row.update(fn(plan, spec, data))
        if "threads" not in row and "torch" in sys.modules:  # one run at a time in this process: torch's setting
            row["threads"] = sys.modules["torch"].get_num_threads()
        row["status"] = "ok"
    except KeyboardInterrupt:
        if child is not None:
            child.finish({**row, "status": "failed", "error": "KeyboardInterrupt", "finished_at": now()}, killed=True)
        raise
    except Exception as e:  # bad arm, NaN, out of memory, missing data on this node, ...: record it and go on
        row["status"] = "failed"
        row["error"] = one_line(e)
        with contextlib.suppress(OSError):
            (plan.run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        free_memory()
    row["wall_s"] = time.perf_counter() - t0
    row["cpu_s"] = _cpu_seconds() - c0
    row["finished_at"] = now()
    if child is not None:
        child.finish(row)
    return row


def free_memory() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
