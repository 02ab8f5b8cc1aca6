"""Everything that can fail before training, checked before anything trains (:func:`prepare`).

Load and validate the spec; check the devices exist; resolve the dataset (a built-in is built into its cache); build
every arm's model once on the CPU and run it forward at ``imgsz`` (an image size that is not a multiple of the
models' largest stride is rounded up, with a warning, as ultralytics does); check the batch against the training
set; resolve and hash the pretrained checkpoint and measure what it transfers into each arm. A bad spec fails here,
with one line. :func:`write_inputs` then writes the effective spec and every arm's YAML into the sweep folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import NeckConfigError
from ..spec.devices import check_devices_exist
from .plan import DataRef, RunPlan, plan_runs
from .pretrained import Transfer, measure_transfer, resolve_checkpoint
from ..spec.load import Spec, load_spec
from ..records.store import atomic_write
from .variants import ArmModel, build_arms, plain

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
                       f"{stride}; using {new} (as ultralytics would)")
        spec.imgsz = new
        spec.effective["imgsz"] = new


def _check_batch(spec: Spec, info: dict) -> None:
    n = count_images(info, "train")
    if n is not None and spec.batch > n:
        raise NeckConfigError(f"{spec.source}: key 'batch': {spec.batch} is larger than the training set ({n} "
                              f"images in {info.get('train')}); use batch <= {n}")


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
        hit = sorted(set(m.layers) & frozen)
        if hit and not m.arm.baseline:
            raise NeckConfigError(f"{spec.source}: key 'train_args.freeze': {freeze} freezes layer {hit[0]}, the "
                                  f"block arm '{m.arm.name}' {'inserts' if m.arm.insert else 'swaps in'}; it "
                                  f"would never train (use freeze <= {min(m.layers)})")


def prepare(spec_or_path: str | Path | dict | Spec | None = None, **overrides: Any) -> Prepared:
    """Everything that can fail before training: spec, devices, dataset, arm models (each built once on the CPU and
    run forward at ``imgsz``), batch vs dataset size, the pretrained checkpoint and its transfer."""
    if isinstance(spec_or_path, Spec) and overrides:
        raise TypeError("prepare: overrides cannot be combined with an already-loaded Spec")
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)
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


def write_inputs(prep: Prepared) -> None:
    """The effective spec and every arm's YAML, in the sweep folder (the YAMLs also in each run folder)."""
    spec = prep.spec
    sweep = spec.sweep_dir
    (sweep / "models").mkdir(parents=True, exist_ok=True)
    effective = dict(spec.effective)
    arms = []
    for a in spec.arms:
        arm = {"name": a.name, **({"yaml": a.yaml} if a.yaml else {"block": a.block, "args": plain(a.args)})}
        arm.update({k: v for k, v in (("insert", list(a.insert)), ("baseline", a.baseline), ("scale", a.scale)) if v})
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
