"""Planning a sweep: every (arm, seed) run with its configuration hash and run folder.

A run's configuration hash covers everything that shapes its result: the arm's model, the dataset (a built-in by its
cache key, which hashes its parameters and sources, so the same sweep hashes alike on every machine wherever its
cache lives; any other data YAML by its path and content hash), the schedule, the seed, the nominal device, the training and speed
arguments, and the content hash of the checkpoint it starts from. It does not cover how the run is executed
(executor, parallel runs, which GPU of a pool, threads): results do not depend on that, and a sweep resumed with
another executor skips what is done. Keys are only added to the hashed configuration when they are set, so adding
a setting never changes the hashes of sweeps that do not use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..spec.load import Spec
from .variants import ArmModel

HASH_VERSION = 2  # bump when the meaning of a run's configuration changes (2: built-in datasets by cache key)


@dataclass(frozen=True)
class DataRef:
    """The sweep's dataset as a worker on any node can find it: a built-in's name and parameters (rebuilt into the
    node's cache), else the data YAML path (or bare name) the driver resolved."""

    path: str
    builtin: str | None = None
    params: dict = field(default_factory=dict)


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


def file_sha(path: str | Path, length: int | None = 16) -> str:
    """SHA-256 of a file's content (``length`` hex digits; all with None), '' if it is not a file."""
    p = Path(path)
    if not p.is_file():
        return ""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length] if length else h.hexdigest()


def data_identity(spec: Spec, data: str) -> dict:
    """How the hash names the dataset: a built-in by the name of its cache folder (``digits-15d8192a75``: a hash of
    its parameters, sources and format version, the same on every machine), anything else by path and content."""
    from yolo_necks.datasets import BUILTIN

    if spec.data in BUILTIN:
        return {"data": f"builtin:{Path(data).parent.name}"}
    return {"data": data, "data_sha": file_sha(data)}


def common_config(spec: Spec, data: str, pretrained_sha: str = "") -> dict:
    """The part of every run's configuration that all arms and seeds of the sweep share."""
    config = {
        "harness": HASH_VERSION,
        **data_identity(spec, data),
        "data_params": spec.data_params,
        "epochs": spec.epochs,
        "imgsz": spec.imgsz,
        "batch": spec.batch,
        "deterministic": True,
        "device": spec.device,
        "workers": spec.workers,
        "train_args": spec.train_args,
        # speed.formats is not a run's configuration (it decides how the sweep times the arms after training)
        "speed": {k: v for k, v in asdict(spec.speed).items() if k != "formats"},
    }
    if spec.pretrained:  # only when set: sweeps from scratch keep their hashes
        config["pretrained_sha"] = pretrained_sha
    if spec.size_buckets is not None:  # what a run records (AP by object size); only when set, as above
        config["size_buckets"] = list(spec.size_buckets)
    return config


def plan_runs(spec: Spec, models: list[ArmModel], data: str, seeds: list[int] | None = None,
              pretrained_sha: str = "") -> list[RunPlan]:
    """Every (arm, seed) run, seed-major (every arm with the first seed, then the next, ...), so that an interrupted
    sweep still holds complete comparisons."""
    common = common_config(spec, data, pretrained_sha)
    plans = []
    runs_dir = spec.sweep_dir.resolve() / "runs"
    for seed in spec.seeds if seeds is None else seeds:
        for m in models:
            config = {**common, "arm": m.arm.name, "model": m.model_dict, "seed": seed}
            h = config_hash(config)
            plans.append(RunPlan(m, seed, config, h, runs_dir / f"{m.arm.name}-s{seed}-{h[:8]}"))
    return plans
