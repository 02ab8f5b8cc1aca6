"""Running a sweep: check everything, plan, skip what is done, hand the rest to an executor, record, report.

Order of work in :func:`run_sweep`:

1. :func:`prepare`: load and validate the spec; check the devices exist; resolve the dataset (a built-in is built
   into its cache); build every arm's model once on the CPU and run it forward at ``imgsz`` (an image size that is
   not a multiple of the models' largest stride is rounded up, with a warning, as ultralytics does); check the batch
   against the training set; resolve and hash the pretrained checkpoint and measure what it transfers into each arm.
   A bad spec fails here, with one line, before anything trains;
2. plan the runs seed by seed (:mod:`.plan`), each with its configuration hash;
3. skip runs whose hash ``results.csv`` records as done (and failed ones unless ``retry_failed``) (:mod:`.store`);
4. hand the remaining runs to the executor (:mod:`.executors`: this process, local worker processes, or Ray tasks);
   every row that comes back is appended to ``results.csv`` at once, by this process only. A failed run is recorded
   and the sweep goes on; Ctrl-C stops the workers and keeps every finished row. With adaptive seeds, rounds of one
   more seed for every arm follow until the primary metric's intervals are within ``target``;
5. regenerate ``summary.csv``, ``summary.md`` and ``pareto.png`` from ``results.csv`` (:mod:`.report`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import NeckConfigError
from .executors import Executor, make_executor
from .plan import RunPlan, file_sha, plan_runs
from .run import DataRef, RunTask, environment, one_line
from .spec import Spec, check_devices_exist, load_spec
from .store import COLUMNS, RESULTS, ResultsStore, atomic_write, sweep_lock  # noqa: F401  (re-exported)
from .variants import ArmModel, build_arms, plain

MIN_TRANSFER = 0.5  # a pretrained checkpoint must fill at least this share of an arm's tensors


# ----------------------------------------------------------------------------------------------------- dataset
def resolve_dataset(spec: Spec) -> tuple[str, dict]:
    """(data YAML path, ultralytics data dict) of the sweep's dataset; a missing dataset is a NeckConfigError."""
    from yolo_necks.datasets import resolve_data

    try:
        data = resolve_data(spec.data, **spec.data_params)
    except NeckConfigError as e:
        key = "data_params" if spec.data_params and "param" in str(e) else "data"
        raise NeckConfigError(f"{spec.source}: key '{key}': {e}") from None
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


def data_ref(spec: Spec, data: str) -> DataRef:
    from yolo_necks.datasets import BUILTIN

    if spec.data in BUILTIN:
        return DataRef(data, spec.data, dict(spec.data_params))
    return DataRef(data)


IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}


def count_images(info: dict, split: str = "train") -> int | None:
    """Images of a split of an ultralytics data dict (folders, list files), None if it cannot be counted here."""
    entries = info.get(split)
    total = 0
    for entry in entries if isinstance(entries, list) else [entries]:
        if not entry:
            return None
        p = Path(str(entry))
        if p.is_dir():
            total += sum(1 for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            total += sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
        else:
            return None
    return total


# ------------------------------------------------------------------------------------------------- pretrained
@dataclass
class Transfer:
    """What a checkpoint fills in one arm's model: tensors loaded of tensors in the model, and the layers whose
    tensors (all, or some: 'partial') start from scratch."""

    loaded: int
    total: int
    scratch: list[str]

    @property
    def text(self) -> str:
        return f"{self.loaded}/{self.total}"

    @property
    def fraction(self) -> float:
        return self.loaded / self.total if self.total else 0.0


def resolve_checkpoint(spec: Spec) -> tuple[str, str]:
    """(local path, full sha256) of the spec's pretrained checkpoint; a weights name is fetched by ultralytics."""
    given = str(spec.pretrained)
    path = Path(given).expanduser()
    bare = not path.is_file() and not path.is_absolute() and path.parent == Path(".")
    if bare:  # a weights name: ultralytics fetches its own release assets (yolov8n.pt, ...) where online
        from ultralytics.utils.downloads import attempt_download_asset

        try:
            path = Path(attempt_download_asset(given))
        except Exception as e:
            raise NeckConfigError(f"{spec.source}: key 'pretrained': '{given}' is not a file here and could not be "
                                  f"downloaded ({one_line(e)})") from None  # fmt: skip
    if not path.is_file():
        how = " nor weights ultralytics could download (offline, or not one of its weights names)" if bare else ""
        raise NeckConfigError(f"{spec.source}: key 'pretrained': checkpoint '{given}' not found (not a file here"
                              f"{how})")  # fmt: skip
    return str(path.resolve()), file_sha(path, None)


def measure_transfer(checkpoint: str, models: list[ArmModel], spec: Spec) -> dict[str, Transfer]:
    """Load the checkpoint into every arm's model with ultralytics' own transfer (``DetectionModel.load``: tensors
    matched by name and shape, the class branch rebuilt at the source width) and count the tensors that now hold the
    checkpoint's values. An arm filled less than :data:`MIN_TRANSFER` is refused."""
    import torch
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    try:
        weights, _ = load_checkpoint(checkpoint)
    except Exception as e:
        raise NeckConfigError(f"{spec.source}: key 'pretrained': cannot load '{checkpoint}' ({one_line(e)})") from None
    src = {k: v.float() for k, v in weights.float().state_dict().items()}
    out = {}
    for m in models:
        d = copy.deepcopy(m.model_dict)
        d["yaml_file"] = m.file_name
        net = DetectionModel(d, ch=3, nc=d.get("nc"), verbose=False)
        net.load(weights, verbose=False)
        sd = net.state_dict()
        loaded, partial, total = 0, {}, len(sd)
        for k, v in sd.items():
            layer = k.split(".")[1] if k.startswith("model.") else k
            hit = k in src and src[k].shape == v.shape and torch.equal(src[k], v.float())
            loaded += hit
            partial.setdefault(layer, []).append(hit)
        scratch = []
        for layer, hits in partial.items():
            if not all(hits):
                name = type(net.model[int(layer)]).__name__ if layer.isdigit() else layer
                scratch.append(f"{layer} {name}" + ("" if not any(hits) else " (partial)"))
        t = Transfer(loaded, total, scratch)
        if t.fraction < MIN_TRANSFER:
            raise NeckConfigError(
                f"{spec.source}: key 'pretrained': '{Path(checkpoint).name}' fills only {t.text} tensors "
                f"({100 * t.fraction:.0f}%) of arm '{m.arm.name}'; its base architecture does not match the sweep's "
                f"model '{Path(spec.model).name}' scale {m.scale} (at least {MIN_TRANSFER:.0%} must transfer)"
            )
        out[m.arm.name] = t
        del net
    return out


# ---------------------------------------------------------------------------------------------------- prepare
@dataclass
class Prepared:
    """A validated sweep, ready to run: spec, dataset, arm models and the planned runs."""

    spec: Spec
    data: str
    nc: int
    models: list[ArmModel]
    plans: list[RunPlan]
    data_ref: DataRef | None = None
    pretrained: str = ""  # the checkpoint as the user named it
    pretrained_sha: str = ""
    transfer: dict[str, Transfer] = field(default_factory=dict)

    def plan(self, seeds: list[int]) -> list[RunPlan]:
        return plan_runs(self.spec, self.models, self.data, seeds, self.pretrained_sha[:16])


def _check_devices(spec: Spec) -> None:
    """The devices exist on this machine. With Ray the runs train on the cluster's nodes, not here: only the
    format was checked (a driver without a GPU may send runs to GPU nodes with device=0)."""
    if spec.execution.executor == "ray":
        return
    for d in dict.fromkeys((spec.device, *spec.execution.devices)):
        check_devices_exist(spec.source, "devices" if spec.execution.devices != (spec.device,) else "device", d)
    if spec.speed.device:
        check_devices_exist(spec.source, "speed.device", spec.speed.device)


def _check_imgsz(spec: Spec, stride: int) -> None:
    """Round an image size that is not a multiple of the models' largest stride up, like ultralytics' check_imgsz,
    so training, validation and timing all use the size the runs record."""
    if spec.imgsz % stride:
        from ultralytics.utils import LOGGER

        new = math.ceil(spec.imgsz / stride) * stride
        LOGGER.warning(f"{spec.source}: key 'imgsz': {spec.imgsz} is not a multiple of the models' largest stride "
                       f"{stride}; using {new} (as ultralytics would)")  # fmt: skip
        spec.imgsz = new
        spec.effective["imgsz"] = new


def _check_batch(spec: Spec, info: dict) -> None:
    n = count_images(info, "train")
    if n is not None and spec.batch > n:
        raise NeckConfigError(f"{spec.source}: key 'batch': {spec.batch} is larger than the training set ({n} "
                              f"images in {info.get('train')}); use batch <= {n}")  # fmt: skip


def _check_freeze(spec: Spec, models: list[ArmModel]) -> None:
    """ultralytics' ``freeze=N`` freezes layers 0..N-1 (a list: those indices). Freezing an arm's swapped layer
    would keep the block at its random initialisation while the baseline's SPPF keeps trained weights: refused."""
    freeze = spec.train_args.get("freeze")
    if freeze is None or isinstance(freeze, bool):
        return
    if isinstance(freeze, int):
        frozen = set(range(freeze))
    elif isinstance(freeze, (list, tuple)):
        frozen = {i for i in freeze if isinstance(i, int) and not isinstance(i, bool)}
    else:
        return
    for m in models:
        if m.layer is not None and m.layer in frozen and not m.arm.baseline:
            raise NeckConfigError(f"{spec.source}: key 'train_args.freeze': {freeze} freezes layer {m.layer}, the "
                                  f"block arm '{m.arm.name}' swaps in; it would never train (use freeze <= "
                                  f"{m.layer})")  # fmt: skip


def prepare(spec_or_path: str | Path | dict | Spec | None = None, **overrides: Any) -> Prepared:
    """Everything that can fail before training: spec, devices, dataset, arm models (each built once on the CPU and
    run forward at ``imgsz``), batch vs dataset size, the pretrained checkpoint and its transfer."""
    if isinstance(spec_or_path, Spec) and overrides:
        raise TypeError("prepare: overrides cannot be combined with an already-loaded Spec")
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)
    if spec.execution.executor == "ray":
        from .ray_executor import require_ray

        require_ray()
    _check_devices(spec)
    data, info = resolve_dataset(spec)
    _check_batch(spec, info)
    nc = int(info.get("nc") or len(info.get("names") or []))
    models = build_arms(spec, nc)
    _check_freeze(spec, models)
    _check_imgsz(spec, max(m.stride for m in models))
    prep = Prepared(spec, data, nc, models, [], data_ref(spec, data))
    if spec.pretrained:
        prep.pretrained = spec.pretrained
        path, prep.pretrained_sha = resolve_checkpoint(spec)
        prep.transfer = measure_transfer(path, models, spec)
        spec.pretrained = path
    prep.plans = prep.plan(spec.seeds)
    return prep


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
        f"# Dataset: {prep.data}\n"
        + (f"# Pretrained: {spec.pretrained} (sha256 {prep.pretrained_sha[:16]})\n" if spec.pretrained else "")
        + "# Usable as a spec: yolo-necks ablate THIS_FILE reproduces (and resumes) the sweep.\n"
    )
    atomic_write(sweep / "spec.yaml", text + yaml.safe_dump(effective, sort_keys=False))
    for m in prep.models:
        atomic_write(sweep / "models" / m.file_name, m.text)


# -------------------------------------------------------------------------------------------------------- sweep
def _callbacks(callbacks: dict | None, event: str) -> list[Callable]:
    fns = (callbacks or {}).get(event) or []
    return list(fns) if isinstance(fns, (list, tuple)) else [fns]


def run_sweep(
    spec_or_path: str | Path | dict | None = None,
    *,
    retry_failed: bool = False,
    dry_run: bool = False,
    callbacks: dict[str, Callable | list[Callable]] | None = None,
    execute: Callable | None = None,
    **overrides: Any,
):
    """Run (or resume) the sweep described by a spec; return its runs as a DataFrame (one row per arm and seed).

    Args:
        spec_or_path: spec file, mapping, or None for ``ablations/default.yaml``.
        retry_failed: run again the runs recorded as failed (done runs are always skipped).
        dry_run: validate and plan only: nothing trains and the sweep folder is not written (a built-in dataset may
            be built into its cache, as validation needs it).
        callbacks: ``{"on_run_start": fn(plan), "on_run_end": fn(row)}`` (a callable or a list each), called in this
            process when a run is handed to the executor and once its row is safely in ``results.csv``.
        execute: replaces the training/validation/timing of a run: ``fn(plan, spec, data) -> metric columns``
            (custom run logic, tests). Worker processes and Ray tasks need a picklable module-level function.
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
        _plan_status(prep, prep.plans, store, retry_failed, listing=True)
        return _frame(store, prep.plans, spec, None, 0)
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(spec.sweep_dir):
        executor = make_executor(spec.execution, execute)
        try:
            return _run(prep, store, executor, retry_failed, callbacks)
        finally:
            executor.close()


def _title(spec: Spec) -> str:
    return f"ablate {spec.name}" + (f" (reduced: {spec.reduced})" if spec.reduced else "")


def _plan_status(prep: Prepared, plans: list[RunPlan], store: ResultsStore, retry_failed: bool,
                 listing: bool = False) -> list[RunPlan]:  # fmt: skip
    """The runs still to do (logged), given what ``results.csv`` records."""
    from ultralytics.utils import LOGGER

    spec = prep.spec
    recorded = store.read()
    done = {r.get("config_hash") for r in recorded if r.get("status") == "ok"}
    failed = {r.get("config_hash") for r in recorded if r.get("status") not in ("ok", None)} - done
    pending = [p for p in plans if p.config_hash not in done and (retry_failed or p.config_hash not in failed)]
    n_done = sum(p.config_hash in done for p in plans)
    n_failed = sum(p.config_hash in failed for p in plans)
    again = "to retry" if retry_failed else "skipped; --retry-failed reruns them"
    failed_note = f"{n_failed} failed earlier ({again}), "
    seeds = sorted({p.seed for p in plans})
    policy = spec.adaptive
    what = (f"{len(spec.arms)} arms x {len(seeds)} seeds = {len(plans)} runs" if policy is None else
            f"{len(spec.arms)} arms x seeds {seeds[0]}..{seeds[-1]} (adaptive: up to {policy.max} seeds until "
            f"every interval is within ±{policy.target:g} on {spec.metric})")  # fmt: skip
    LOGGER.info(f"{_title(spec)}: {what}; {n_done} done, {failed_note if n_failed else ''}{len(pending)} to run "
                f"-> {spec.sweep_dir}")  # fmt: skip
    if spec.baseline is None:
        LOGGER.warning(f"{_title(spec)}: the baseline arm is not selected; summaries will have no deltas")
    if listing:
        for p in plans:
            state = "done" if p.config_hash in done else "failed" if p.config_hash in failed else "to run"
            LOGGER.info(f"  {p.label:<24} {p.model.file_name:<28} {p.config_hash[:8]}  {state}")
        if prep.transfer:
            for name, t in prep.transfer.items():
                LOGGER.info(f"  pretrained -> {name}: {t.text} tensors; from scratch: {', '.join(t.scratch) or '-'}")
    return pending


def _base_row(plan: RunPlan, prep: Prepared, env: dict[str, str], executor: Executor) -> dict[str, Any]:
    """The columns of a run's row known before it trains."""
    spec = prep.spec
    transfer = prep.transfer.get(plan.arm.name)
    return {
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
        "pretrained": prep.pretrained,
        "pretrained_sha": prep.pretrained_sha[:16],
        "transferred": transfer.text if transfer else "",
        "scratch_layers": "; ".join(transfer.scratch) if transfer else "",
        "freeze": plain(spec.train_args.get("freeze", "")),
        "device": spec.device,
        "executor": executor.name,
        **env,
        "config_hash": plan.config_hash,
        "run_dir": str(plan.run_dir),
        "model_yaml": str(plan.yaml_path),
    }


def _run(prep: Prepared, store: ResultsStore, executor: Executor, retry_failed: bool, callbacks: dict | None):
    from ultralytics.utils import LOGGER

    from .report import write_report

    spec, title = prep.spec, _title(prep.spec)
    _write_inputs(prep)
    env = environment(spec)
    LOGGER.info(f"{title}: executor {executor.describe()}")
    ran = 0
    plans = prep.plans
    try:
        pending = _plan_status(prep, plans, store, retry_failed)
        ran += _execute(prep, pending, store, executor, env, callbacks)
        if spec.adaptive is not None:
            plans, extra = _adaptive_rounds(prep, store, executor, env, retry_failed, callbacks)
            ran += extra
    except KeyboardInterrupt:
        LOGGER.warning(f"{title}: interrupted; {ran} run(s) recorded this time. Run the same command to continue.")
        if store.path.is_file():
            with contextlib.suppress(Exception):
                write_report(spec.sweep_dir)
        raise
    summary = write_report(spec.sweep_dir)["markdown"] if store.read(warn=False) else None
    LOGGER.info(f"{title}: results in {store.path}")
    return _frame(store, plans, spec, summary, ran)


def _execute(prep: Prepared, plans: list[RunPlan], store: ResultsStore, executor: Executor, env: dict,
             callbacks: dict | None) -> int:  # fmt: skip
    """Run ``plans`` through the executor, appending every row as it arrives; return how many were recorded."""
    from ultralytics.utils import LOGGER

    from .progress import SweepProgress

    if not plans:
        return 0
    spec, title = prep.spec, _title(prep.spec)
    tasks = [RunTask(p, spec, prep.data_ref or DataRef(prep.data), _base_row(p, prep, env, executor),
                     pretrained_sha=prep.pretrained_sha) for p in plans]  # fmt: skip
    bar = SweepProgress(len(tasks), title, executor.slots)
    ran, started = 0, {}
    events = executor.run(tasks)
    try:
        for event in events:
            if event.kind == "tick":
                bar.refresh_now()
                continue
            key = event.task.plan.config_hash
            if event.kind == "start":
                started[key] = time.perf_counter()
                bar.started()
                for fn in _callbacks(callbacks, "on_run_start"):
                    fn(event.task.plan)
                continue
            row = event.row
            store.append(row)
            ran += 1
            ok = row.get("status") == "ok"
            seconds = time.perf_counter() - started.pop(key, time.perf_counter())  # worker start-up included
            bar.finished(ok, seconds)
            where = f" on {row['node']}" if executor.name == "ray" and row.get("node") else ""
            status = f"done in {seconds:.0f} s" if ok else f"FAILED ({row.get('error', '')})"
            bar.clear()
            LOGGER.info(f"{title}: {event.task.label} {status}{where}  [{bar.done} done, {bar.running} running, "
                        f"{bar.failed} failed, {bar.left} left]")  # fmt: skip
            for fn in _callbacks(callbacks, "on_run_end"):
                fn(row)
    except BaseException:
        executor.cancel()
        raise
    finally:
        events.close()
        bar.close()
    return ran


def _adaptive_rounds(prep: Prepared, store: ResultsStore, executor: Executor, env: dict, retry_failed: bool,
                     callbacks: dict | None) -> tuple[list[RunPlan], int]:  # fmt: skip
    """Rounds of new seeds, every arm with each new seed, until every arm's interval on the primary metric is within
    the target (:func:`yolo_necks.ablation.stats.precision_check`) or ``max`` seeds are done.

    The rule looks at precision only, never at significance. A round is never split: all arms get the same seeds
    (a resumed sweep completes a round an interrupted one left partial, because the runs it plans for a seed are
    the same ones, by hash). Each batch adds as many seeds as the current SD says are still needed, at most as many
    rounds as the executor runs at once, at least one; raising ``max`` later continues from the seeds done.
    """
    from ultralytics.utils import LOGGER

    from .stats import precision_check

    spec, title = prep.spec, _title(prep.spec)
    policy = spec.adaptive
    seeds, ran = list(spec.seeds), 0
    while True:
        plans = prep.plan(seeds)
        check = precision_check(_latest(store, plans), spec.metric, policy.target)
        if check.done or not check.comparable or len(seeds) >= policy.max:
            why = check.reason if check.done or not check.comparable else \
                f"stopped at max {policy.max} seeds; {check.reason}"  # fmt: skip
            LOGGER.info(f"{title}: adaptive seeds: {len(seeds)} seeds; {why}")
            return plans, ran
        need = (check.seeds_needed or len(seeds) + 1) - len(seeds)
        k = max(1, min(need, max(1, executor.slots // max(1, len(spec.arms))), policy.max - len(seeds)))
        new = list(range(max(seeds) + 1, max(seeds) + 1 + k))
        LOGGER.info(f"{title}: adaptive seeds: {check.reason}; adding seed{'s' * (k > 1)} "
                    f"{', '.join(map(str, new))} for every arm")  # fmt: skip
        seeds += new
        ran += _execute(prep, _plan_status(prep, prep.plan(new), store, retry_failed), store, executor, env, callbacks)


def _latest(store: ResultsStore, plans: list[RunPlan]):
    """The latest recorded row of every planned run, in plan order (runs not recorded yet are absent)."""
    import pandas as pd

    df = store.frame(warn=False)
    if not len(df) or "config_hash" not in df.columns:
        return pd.DataFrame(columns=COLUMNS)
    hashes = set(df["config_hash"])
    df = df.drop_duplicates(subset=["config_hash"], keep="last").set_index("config_hash", drop=False)
    return df.reindex([p.config_hash for p in plans if p.config_hash in hashes]).reset_index(drop=True)


def _frame(store: ResultsStore, plans: list[RunPlan], spec: Spec, summary: str | None, ran: int):
    """What run_sweep returns: :func:`_latest` with the sweep folder, the summary and the runs of this call."""
    df = _latest(store, plans)
    df.attrs.update(sweep_dir=str(spec.sweep_dir), summary_md=summary, ran=ran)
    return df


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: yolo-necks ablate")
