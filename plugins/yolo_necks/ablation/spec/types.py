"""A validated sweep spec and its parts: what :func:`yolo_necks.ablation.spec.load.load_spec` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Arm:
    """One arm of a sweep: a block replacing the base model's ``replace`` layer (SPPF), a block inserted after named
    positions (``insert``: ``("p3", "p4", "p5")``), or an explicit model YAML."""

    name: str
    block: str | None = None
    args: tuple = ()
    baseline: bool = False
    yaml: str | None = None
    scale: str | None = None
    insert: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The block column of the results: the block name, or the YAML file name for YAML arms."""
        return self.block or Path(self.yaml or "").name


@dataclass(frozen=True)
class SpeedSettings:
    warmup: int
    repeats: int
    throughput_batch: int
    throughput_repeats: int
    dtype: str
    device: str | None
    formats: tuple[str, ...] = ("torch",)  # deployment formats timed together; torch always first


@dataclass(frozen=True)
class SeedPolicy:
    """Adaptive seeds: a pilot of ``min`` seeds per arm fixes each arm's total (Stein's two-stage rule for a seed
    part of ±``target``), at most ``max``."""

    min: int
    max: int
    target: float


@dataclass(frozen=True)
class Execution:
    """How the runs are executed (never part of a run's configuration hash: results do not depend on it)."""

    executor: str = "local"
    parallel: int | str = "auto"
    devices: tuple[str, ...] = ()
    runs_per_device: int = 1
    threads_per_run: int | str = "auto"
    ray_address: str = "local"
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None
    max_retries: int = 1
    timing_node: str | None = None


@dataclass(frozen=True)
class Tracking:
    """MLflow tracking of a sweep (never part of a run's configuration hash): the tracking URI as given (None:
    MLflow's default store, or ``MLFLOW_TRACKING_URI``) and the experiment's name."""

    uri: str | None
    experiment: str


@dataclass
class Spec:
    """A validated sweep spec (see :data:`KEYS` for the meaning of each field)."""

    source: str
    name: str
    project: str
    model: str
    scale: str | None
    replace: str
    arms: list[Arm]
    data: str
    data_params: dict
    epochs: int
    imgsz: int
    batch: int
    seeds: list[int]
    device: str
    workers: int
    train_args: dict
    speed: SpeedSettings
    reduced: str | None
    effective: dict = field(default_factory=dict)  # the merged spec, written to the sweep folder
    pretrained: str | None = None
    metric: str = "map50_95"
    target: float = 0.01
    margin: float | None = None
    size_buckets: tuple[float, float] | None = None  # AP by object size: [a, b] px²; None: COCO's [32², 96²]
    contrasts: tuple[tuple[str, str], ...] = ()  # extra comparisons A − B between arms (never hashed)
    adaptive: SeedPolicy | None = None
    execution: Execution = field(default_factory=Execution)
    tracking: Tracking | None = None  # MLflow; None: off

    @property
    def sweep_dir(self) -> Path:
        return Path(self.project) / self.name

    @property
    def baseline(self) -> Arm | None:
        return next((a for a in self.arms if a.baseline), None)

    @property
    def is_cpu(self) -> bool:
        return self.device == "cpu"
