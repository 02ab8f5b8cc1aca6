"""Running a sweep: plan every (arm, seed) run, skip the ones already recorded, train, evaluate, time, record.

Order of work in :func:`run_sweep`:

1. load and validate the spec, resolve the dataset, build every arm's model once on the CPU: a bad spec fails here,
   before anything trains;
2. plan the runs seed by seed (every arm with seed 0, then seed 1, ...) so an interrupted sweep still has complete
   comparisons; each run gets a configuration hash over everything that shapes its result (arm YAML, data, schedule,
   seed, device, training and speed arguments);
3. skip runs whose hash ``results.csv`` already records as done (and failed ones unless ``retry_failed``);
4. for each remaining run: train with ultralytics (``seed=``, ``deterministic=True``), validate the best weights with
   ultralytics' validator, count parameters/GFLOPs with ultralytics, time the fused model (:mod:`.speed`), and append
   one row to ``results.csv`` atomically. A run that raises is recorded as failed and the sweep goes on; Ctrl-C stops
   the sweep and keeps every finished row;
5. regenerate ``summary.csv``, ``summary.md`` and ``pareto.png`` from ``results.csv`` (:mod:`.report`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import gc
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import NeckConfigError, NeckError
from .spec import Spec, load_spec
from .variants import ArmModel, build_arms, plain

HASH_VERSION = 1  # bump when the meaning of a run's configuration changes
RESULTS = "results.csv"
COLUMNS = [
    "sweep", "arm", "block", "baseline", "seed", "status", "error",
    "params", "gflops", "map50", "map50_95", "precision", "recall",
    "epochs", "epochs_run", "train_s", "val_s",
    "latency_ms", "latency_p90_ms", "latency_std_ms", "throughput_ips",
    "speed_device", "speed_device_name", "speed_dtype", "speed_repeats", "speed_warmup",
    "throughput_batch", "throughput_repeats", "speed_threads",
    "imgsz", "batch", "workers", "model", "scale", "data", "data_params", "train_args", "reduced",
    "device", "device_name", "torch", "ultralytics", "yolo_necks", "python", "git_commit",
    "config_hash", "run_dir", "weights", "model_yaml", "started_at", "finished_at",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------ results.csv
class ResultsStore:
    """Append-only ``results.csv``: every append rewrites the file through a temporary file and ``os.replace``, so a
    crash or kill at any moment leaves either the old or the new file, never a torn one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    @contextlib.contextmanager
    def _lock(self):
        """Exclusive lock on the folder (POSIX ``flock``), so two processes never interleave their appends."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: a single writer is assumed
            yield
            return
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            old = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
            header = next(csv.reader(io.StringIO(old)), None) if old else None
            buf = io.StringIO()
            if header == COLUMNS:  # the usual case: keep the old bytes, add one line
                buf.write(old if old.endswith("\n") else old + "\n")
                csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n").writerow(_cells(row))
            else:  # a new file, or one written with other columns: keep every old row under the union of columns
                columns = list(header or []) + [c for c in COLUMNS if c not in (header or [])]
                writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
                writer.writeheader()
                for r in csv.DictReader(io.StringIO(old)) if old else []:
                    writer.writerow(r)
                writer.writerow(_cells(row))
            atomic_write(self.path, buf.getvalue())


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _cells(row: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k in COLUMNS:
        v = row.get(k, "")
        if v is None:
            v = ""
        elif isinstance(v, float):
            v = repr(v)
        elif isinstance(v, (dict, list, tuple)):
            v = json.dumps(v, sort_keys=True)
        out[k] = str(v)
    return out


# ----------------------------------------------------------------------------------------------------- planning
@dataclass
class RunPlan:
    """One training run: an arm, a seed, its effective configuration and where it lives."""

    model: ArmModel
    seed: int
    config: dict
    config_hash: str
    run_dir: Path

    @property
    def arm(self):
        return self.model.arm

    @property
    def yaml_path(self) -> Path:
        return self.run_dir / self.model.file_name

    @property
    def label(self) -> str:
        return f"{self.arm.name} seed {self.seed}"


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha(path: str) -> str:
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else ""


def plan_runs(spec: Spec, models: list[ArmModel], data: str) -> list[RunPlan]:
    """Every (arm, seed) run, seed-major, with its configuration hash and run folder."""
    common = {
        "harness": HASH_VERSION,
        "data": data,
        "data_sha": _file_sha(data),
        "data_params": spec.data_params,
        "epochs": spec.epochs,
        "imgsz": spec.imgsz,
        "batch": spec.batch,
        "deterministic": True,
        "device": spec.device,
        "workers": spec.workers,
        "train_args": spec.train_args,
        "speed": asdict(spec.speed),
    }
    plans = []
    runs_dir = spec.sweep_dir.resolve() / "runs"
    for seed in spec.seeds:
        for m in models:
            config = {**common, "arm": m.arm.name, "model": m.model_dict, "seed": seed}
            h = config_hash(config)
            plans.append(RunPlan(m, seed, config, h, runs_dir / f"{m.arm.name}-s{seed}-{h[:8]}"))
    return plans


# ----------------------------------------------------------------------------------------------------- dataset
def resolve_dataset(spec: Spec) -> tuple[str, dict]:
    """(data YAML path, ultralytics data dict) of the sweep's dataset; a missing dataset is a NeckConfigError."""
    try:
        from yolo_necks.datasets import resolve_data
    except ImportError:
        resolve_data = None
    if resolve_data is not None:
        try:
            data = resolve_data(spec.data, **spec.data_params)
        except NeckConfigError as e:
            key = "data_params" if spec.data_params and "param" in str(e) else "data"
            raise NeckConfigError(f"{spec.source}: key '{key}': {e}") from None
    else:
        if spec.data in ("digits", "neon-trees"):
            raise NeckConfigError(f"{spec.source}: key 'data': built-in dataset '{spec.data}' needs yolo_necks.datasets")
        if spec.data_params:
            raise NeckConfigError(f"{spec.source}: key 'data_params': only built-in datasets take parameters")
        data = spec.data
    from ultralytics.data.utils import check_det_dataset

    try:
        info = check_det_dataset(data, autodownload=False)
    except Exception as e:
        msg = " ".join(str(e).split())
        raise NeckConfigError(f"{spec.source}: key 'data': dataset '{spec.data}' is not usable ({msg})") from None
    path = Path(str(data))
    if path.is_file():
        data = str(path.resolve())
    return str(data), info


# --------------------------------------------------------------------------------------------------- environment
def environment(spec: Spec) -> dict[str, str]:
    """Versions and machine of the sweep, recorded in every row."""
    import torch
    import ultralytics

    import yolo_necks

    from .speed import device_name, torch_device

    try:
        dev_name = device_name(torch_device(spec.device), threads=False)  # training sets its own threads
    except Exception:  # pragma: no cover - an unusual device string; training will report it
        dev_name = spec.device
    return {
        "torch": torch.__version__,
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
                              text=True, timeout=10)  # fmt: skip
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)  # fmt: skip
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def one_line(e: BaseException, limit: int = 400) -> str:
    text = f"{type(e).__name__}: {' '.join(str(e).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------- one run
def train_kwargs(plan: RunPlan, spec: Spec, data: str) -> dict:
    """Arguments of ``YOLO.train`` for a run: harness defaults < spec train_args < the controlled keys."""
    return {
        "plots": False,
        "pretrained": False,
        **spec.train_args,
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
    """Train, validate, count and time one run; return its metric columns. Raises on any failure."""
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_num_params

    from ..flops import model_gflops
    from .speed import measure_speed

    t0 = time.perf_counter()
    model = YOLO(str(plan.yaml_path), task="detect")
    model.train(**train_kwargs(plan, spec, data))
    train_s = time.perf_counter() - t0
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    if not best.is_file():
        raise RuntimeError(f"training wrote no weights in {trainer.save_dir}")
    epochs_run = int(getattr(trainer, "epoch", spec.epochs - 1)) + 1
    del model, trainer
    gc.collect()

    t0 = time.perf_counter()
    first_device = spec.device.split(",")[0].strip()  # validation and timing use one device even after DDP training
    metrics = YOLO(str(best), task="detect").val(
        data=data, split="val", imgsz=spec.imgsz, batch=spec.batch, device=first_device, workers=spec.workers,
        plots=False, verbose=False, project=str(plan.run_dir), name="val", exist_ok=True,
    )  # fmt: skip
    val_s = time.perf_counter() - t0
    box = metrics.box
    acc = {"map50": float(box.map50), "map50_95": float(box.map), "precision": float(box.mp), "recall": float(box.mr)}
    if any(v != v for v in acc.values()):
        raise RuntimeError(f"validation returned NaN metrics {acc}")

    net = YOLO(str(best), task="detect").model  # unfused, as trained
    # operator-level FLOPs: thop (ultralytics' counter) misses convs a block calls functionally
    stats = {"params": int(get_num_params(net)), "gflops": model_gflops(net, spec.imgsz)}
    speed = measure_speed(net, spec.imgsz, spec.speed, spec.device)
    del net
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {**acc, **stats, **speed, "train_s": train_s, "val_s": val_s, "epochs_run": epochs_run, "weights": str(best)}


# ---------------------------------------------------------------------------------------------------- sweep
@dataclass
class Prepared:
    """A validated sweep, ready to run: spec, dataset, arm models and the planned runs."""

    spec: Spec
    data: str
    nc: int
    models: list[ArmModel]
    plans: list[RunPlan]


def prepare(spec_or_path: str | Path | dict | Spec | None = None, **overrides: Any) -> Prepared:
    """Everything that can fail before training: spec, dataset, arm models (each built once on the CPU)."""
    if isinstance(spec_or_path, Spec) and overrides:
        raise TypeError("prepare: overrides cannot be combined with an already-loaded Spec")
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)
    data, info = resolve_dataset(spec)
    nc = int(info.get("nc") or len(info.get("names") or []))
    models = build_arms(spec, nc)
    return Prepared(spec, data, nc, models, plan_runs(spec, models, data))


def _write_inputs(prep: Prepared) -> None:
    """The effective spec and every arm's YAML, in the sweep folder (the YAMLs also in each run folder)."""
    spec = prep.spec
    sweep = spec.sweep_dir
    (sweep / "models").mkdir(parents=True, exist_ok=True)
    effective = dict(spec.effective)
    arms = []
    for a in spec.arms:
        arm = {"name": a.name, **({"yaml": a.yaml} if a.yaml else {"block": a.block, "args": plain(a.args)})}
        arm.update({k: v for k, v in (("baseline", a.baseline), ("scale", a.scale)) if v})
        arms.append(arm)
    effective["arms"] = arms
    text = (
        f"# Effective spec of sweep '{spec.name}': {spec.source} + overrides (+ its cpu: section if reduced).\n"
        f"# Dataset: {prep.data}\n# Usable as a spec: yolo-necks ablate THIS_FILE reproduces (and resumes) the sweep.\n"
    )
    atomic_write(sweep / "spec.yaml", text + yaml.safe_dump(effective, sort_keys=False))
    for m in prep.models:
        atomic_write(sweep / "models" / m.file_name, m.text)


def _callbacks(callbacks: dict | None, event: str) -> list[Callable]:
    fns = (callbacks or {}).get(event) or []
    return list(fns) if isinstance(fns, (list, tuple)) else [fns]


def run_sweep(
    spec_or_path: str | Path | dict | None = None,
    *,
    retry_failed: bool = False,
    dry_run: bool = False,
    callbacks: dict[str, Callable | list[Callable]] | None = None,
    **overrides: Any,
):
    """Run (or resume) the sweep described by a spec; return its runs as a DataFrame (one row per arm and seed).

    Args:
        spec_or_path: spec file, mapping, or None for ``ablations/default.yaml``.
        retry_failed: run again the runs recorded as failed (done runs are always skipped).
        dry_run: validate and plan only: nothing trains and the sweep folder is not written (a built-in dataset may
            be built into its cache, as validation needs it).
        callbacks: ``{"on_run_start": fn(plan), "on_run_end": fn(row)}`` (a callable or a list each), called around
            every run; ``on_run_end`` gets the row once it is safely in ``results.csv``.
        **overrides: spec keys (``epochs=3``, ``seeds=[0]``, ``arms="sppf,focal"``, ``speed.repeats=200`` via
            ``**{"speed.repeats": 200}``); ultralytics training keys go to ``train_args``.

    Returns:
        pandas.DataFrame of the planned runs' latest rows (``df.attrs``: ``sweep_dir``, ``summary_md`` and ``ran``,
        the number of runs executed by this call).
    """
    if isinstance(spec_or_path, Spec) and overrides:
        raise TypeError("run_sweep: overrides cannot be combined with an already-loaded Spec")
    prep = prepare(spec_or_path, **overrides)
    spec = prep.spec
    store = ResultsStore(spec.sweep_dir / RESULTS)
    if dry_run:
        _plan_status(prep, store, retry_failed, listing=True)
        return _frame(store, prep.plans, spec, None, 0)
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(spec.sweep_dir):
        pending = _plan_status(prep, store, retry_failed)
        return _run_pending(prep, pending, store, callbacks)


def _title(spec: Spec) -> str:
    return f"ablate {spec.name}" + (f" (reduced: {spec.reduced})" if spec.reduced else "")


def _plan_status(prep: Prepared, store: ResultsStore, retry_failed: bool, listing: bool = False) -> list[RunPlan]:
    """The runs still to do (logged), given what ``results.csv`` records."""
    from ultralytics.utils import LOGGER

    spec, plans = prep.spec, prep.plans
    recorded = store.read()
    done = {r.get("config_hash") for r in recorded if r.get("status") == "ok"}
    failed = {r.get("config_hash") for r in recorded if r.get("status") not in ("ok", None)} - done
    pending = [p for p in plans if p.config_hash not in done and (retry_failed or p.config_hash not in failed)]
    n_done = sum(p.config_hash in done for p in plans)
    n_failed = sum(p.config_hash in failed for p in plans)
    again = "to retry" if retry_failed else "skipped; --retry-failed reruns them"
    failed_note = f"{n_failed} failed earlier ({again}), "
    LOGGER.info(
        f"{_title(spec)}: {len(spec.arms)} arms x {len(spec.seeds)} seeds = {len(plans)} runs; {n_done} done, "
        f"{failed_note if n_failed else ''}{len(pending)} to run -> {spec.sweep_dir}"
    )
    if spec.baseline is None:
        LOGGER.warning(f"{_title(spec)}: the baseline arm is not selected; summaries will have no deltas")
    if listing:
        for p in plans:
            state = "done" if p.config_hash in done else "failed" if p.config_hash in failed else "to run"
            LOGGER.info(f"  {p.label:<24} {p.model.file_name:<28} {p.config_hash[:8]}  {state}")
    return pending


def _run_pending(prep: Prepared, pending: list[RunPlan], store: ResultsStore, callbacks: dict | None):
    from ultralytics.utils import LOGGER, TQDM

    from .report import write_report

    spec, title = prep.spec, _title(prep.spec)
    _write_inputs(prep)
    env = environment(spec)
    ran = 0
    pbar = TQDM(total=len(pending), desc=title, unit="run")
    try:
        for plan in pending:
            pbar.set_description(f"{title}: {plan.label}")
            for fn in _callbacks(callbacks, "on_run_start"):
                fn(plan)
            row = _run_one(plan, prep, env)
            store.append(row)
            ran += 1
            pbar.update(1)
            status = "done" if row["status"] == "ok" else f"FAILED ({row['error']})"
            LOGGER.info(f"{title}: {plan.label} {status}")
            for fn in _callbacks(callbacks, "on_run_end"):
                fn(row)
    except KeyboardInterrupt:
        pbar.close()
        LOGGER.warning(f"{title}: interrupted; {ran} run(s) recorded this time. Run the same command to continue.")
        if ran:
            with contextlib.suppress(Exception):
                write_report(spec.sweep_dir)
        raise
    pbar.close()
    summary = write_report(spec.sweep_dir)["markdown"] if store.path.is_file() else None
    LOGGER.info(f"{title}: results in {store.path}")
    return _frame(store, prep.plans, spec, summary, ran)


@contextlib.contextmanager
def sweep_lock(folder: Path):
    """Hold ``folder/.ablate.lock`` while a sweep runs: a second ``ablate`` of the same sweep fails at once instead of
    training the same runs twice. The kernel drops the lock if the process dies, even by SIGKILL."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(folder / ".ablate.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NeckError(
                f"{folder}: another 'yolo-necks ablate' process is running this sweep; wait for it to finish "
                "(finished runs are kept) or choose another name="
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_one(plan: RunPlan, prep: Prepared, env: dict[str, str]) -> dict[str, Any]:
    spec = prep.spec
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(plan.yaml_path, plan.model.text)
    row: dict[str, Any] = {
        "sweep": spec.name,
        "arm": plan.arm.name,
        "block": plan.arm.label,
        "baseline": plan.arm.baseline,
        "seed": plan.seed,
        "epochs": spec.epochs,
        "imgsz": spec.imgsz,
        "batch": spec.batch,
        "workers": spec.workers,
        "model": Path(spec.model).name if not plan.arm.yaml else Path(plan.arm.yaml).name,
        "scale": plan.model.scale or "",
        "data": prep.data,
        "data_params": spec.data_params,
        "train_args": spec.train_args,
        "reduced": spec.reduced or "",
        "device": spec.device,
        **env,
        "config_hash": plan.config_hash,
        "run_dir": str(plan.run_dir),
        "model_yaml": str(plan.yaml_path),
        "started_at": _now(),
    }
    try:
        row.update(execute_run(plan, spec, prep.data))
        row["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as e:  # bad arm, NaN, out of memory, ...: record it and go on
        row["status"] = "failed"
        row["error"] = one_line(e)
        with contextlib.suppress(OSError):
            (plan.run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        _free_memory()
    row["finished_at"] = _now()
    return row


def _free_memory() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _frame(store: ResultsStore, plans: list[RunPlan], spec: Spec, summary: str | None, ran: int):
    """The latest recorded row of every planned run, in plan order."""
    import pandas as pd

    hashes = {r.get("config_hash") for r in store.read()}
    if hashes:
        df = pd.read_csv(store.path, keep_default_na=False, na_values=[""])
        df = df.drop_duplicates(subset=["config_hash"], keep="last").set_index("config_hash", drop=False)
        df = df.reindex([p.config_hash for p in plans if p.config_hash in hashes]).reset_index(drop=True)
    else:
        df = pd.DataFrame(columns=COLUMNS)
    df.attrs.update(sweep_dir=str(spec.sweep_dir), summary_md=summary, ran=ran)
    return df


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: yolo-necks ablate")
