"""The keys of a sweep spec: each one's default and help text, and the built-in default spec.

:data:`KEYS` is the single source of truth for validation (:mod:`.spec_checks`), the defaults and ``ablate --help``;
:data:`DEFAULT_SPEC` is the content of ``ablations/default.yaml`` (a test keeps the two identical).
"""

from __future__ import annotations

import copy
import re
from typing import Any

BUILTIN_SOURCE = "<built-in default spec>"
ARM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
ARM_KEYS = ("name", "block", "args", "insert", "baseline", "yaml", "scale")
SPEED_KEYS = {
    "warmup": "untimed forward passes before timing (per measurement)",
    "repeats": "timed batch-1 forward passes for latency (>= 100)",
    "throughput_batch": "batch size of the throughput measurement",
    "throughput_repeats": "timed forward passes at throughput_batch",
    "dtype": "auto (fp16 on CUDA, fp32 on CPU), fp16 or fp32",
    "device": "device to time on (default: the training device)",
    "formats": "deployment formats timed next to each other after training: [torch] (default), onnx, openvino "
               "(pip install \"yolo-necks[deploy]\"), engine (TensorRT, an NVIDIA GPU); each arm exported from its "
               "trained weights, checked against PyTorch and timed in the same rounds; torch is always timed",
}
# keys the harness sets itself for every run; train_args may not change them
CONTROLLED_TRAIN_KEYS = (
    "model", "data", "epochs", "imgsz", "batch", "seed", "deterministic", "device", "workers",
    "project", "name", "exist_ok", "resume", "mode", "task", "pretrained",
)

DEFAULT_ARMS = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]},
    {"name": "focal", "block": "FocalModulation", "args": [3, 2, 2]},
    {"name": "dyca", "block": "DyCAConv", "args": [3, 1, 32, "avg"]},
    {"name": "sk", "block": "SKConv", "args": [2, 32, 16, 32]},
    {"name": "pyramid", "block": "PyramidPool", "args": [[1, 2, 4], "avg"]},
]

# key -> (default, help). The single source of truth for validation, the built-in default and `ablate --help`.
KEYS: dict[str, tuple[Any, str]] = {
    "name": (None, "sweep name; outputs go to PROJECT/NAME/ (default: the spec file's stem)"),
    "project": ("ablations/runs", "parent folder of sweep folders (relative to the working directory)"),
    "model": ("yolov8.yaml", "base model YAML with one SPPF layer (stock name like yolo11.yaml, or a path)"),
    "scale": ("n", "model scale letter n/s/m/l/x (the base YAML's scales)"),
    "replace": ("SPPF", "module of the base model replaced by each arm's block (must occur once)"),
    "arms": (DEFAULT_ARMS, "list of arms {name, block, args, baseline} or {name, yaml: PATH}; exactly one "
             "baseline. Override: arms=sppf,focal runs only those arms"),
    "data": ("digits", "built-in dataset name (digits, neon-trees) or an ultralytics data YAML path"),
    "data_params": ({}, "parameters of a built-in dataset (e.g. n_train, n_val, imgsz); see yolo-necks data"),
    "epochs": (30, "training epochs of every run"),
    "imgsz": (640, "train/val/speed image size"),
    "batch": (32, "training and validation batch size"),
    "seeds": ([0, 1, 2], "training seeds (list); an int N means seeds 0..N-1; runs are paired by seed. Adaptive: "
              "{min: 5, max: 20} or auto (the same): a pilot of min (>= 3) seeds fixes each arm's total once, from the pilot's "
              "SD on 'metric' (Stein's two-stage rule: the seed part of its 95% interval ±'target'), at most max"),
    "device": (None, "training device: cpu, 0, 0,1 ... (default: CUDA device 0 if available, else cpu)"),
    "workers": (8, "dataloader workers"),
    "train_args": ({}, "extra ultralytics training arguments passed through untouched (lr0, mosaic, amp, ...)"),
    "speed": ({"warmup": 20, "repeats": 200, "throughput_batch": 32, "throughput_repeats": 20, "dtype": "auto",
               "device": None, "formats": ["torch"]}, "speed measurement settings (the speed.* keys below)"),
    "reduced": (None, "label of a reduced sweep (set by the cpu: section); shown in every output"),
    "pretrained": (None, "checkpoint every arm starts from: null (from scratch), a .pt path, or an ultralytics weights "
                   "name like yolov8n.pt (downloaded by ultralytics when online); its content hash is part of every "
                   "run's configuration. freeze=N (ultralytics' key) passes through to train_args"),
    "metric": ("map50_95", "primary metric: adaptive seeds plan on its pilot SD, the verdict speaks of it"),
    "target": (0.01, "half-width of the seed part of the 95% interval of a delta that the sweep aims for on the "
               "primary metric (precision planning; adaptive seeds plan each arm's total for it)"),
    "margin": (None, "equivalence margin in mAP units (e.g. 0.01): verdicts then say equivalent within ±margin or not "
               "worse than −margin where the Holm-adjusted interval of the delta shows it; null: off"),
    "size_buckets": (None, "object-size buckets of AP small/medium/large: two areas [a, b] in px² of the original "
                     "image (small <= a <= medium <= b <= large); null: COCO's [32², 96²]. Part of every run's "
                     "configuration when set"),
    "contrasts": ([], "extra comparisons between two arms, [[A, B], ...]: Δ = A − B paired by the seeds both have, "
                  "in the same Holm family as the baseline comparisons. Not part of any run's configuration"),
    "executor": ("local", "local (worker processes on this machine) or ray (a Ray cluster: pip install "
                 "'yolo-necks[ray]')"),
    "parallel": ("auto", "local executor: runs at once; auto = what the machine holds (CPU: cores / threads_per_run, "
                 "GPU: devices x runs_per_device); 1 = one run at a time in this process, as before"),
    "devices": (None, "device pool the runs are spread over: [0, 1, 2, 3], cpu, or groups like ['0,1', '2,3'] "
                "(one DDP run per group); default: the device key"),
    "runs_per_device": (1, "runs packed on one GPU at once (local executor)"),
    "threads_per_run": ("auto", "CPU threads of each run (set before torch starts): auto = cores / runs at once "
                        "(at least 1), or N"),
    "ray_address": ("local", "executor=ray: local (start a Ray instance here), auto (join the cluster this machine "
                    "belongs to) or ray://HOST:10001"),
    "cpus_per_run": (None, "executor=ray: CPUs each run asks for (default: threads_per_run, else 1)"),
    "gpus_per_run": (None, "executor=ray: GPUs each run asks for, fractional packs runs (0.25 = 4 per GPU); default "
                     "1 on a GPU device, 0 on cpu"),
    "max_retries": (1, "executor=ray: retries of a run whose worker process or node died, then it is recorded as "
                    "failed"),
    "timing_node": (None, "executor=ray: the node that times every arm once after training (hostname, IP or the start "
                    "of its Ray node id); default: the machine running the sweep"),
    "mlflow": (None, "MLflow tracking (pip install 'yolo-necks[mlflow]'): null (off), true (MLflow's default store, or "
               "MLFLOW_TRACKING_URI when set) or a tracking URI (sqlite:///mlflow.db, http://host:5000); an "
               "experiment per sweep, a parent run for the sweep, a child run per run. Not part of any run's "
               "configuration"),
    "mlflow_experiment": (None, "MLflow experiment of the sweep (default: the sweep name)"),
    "cpu": (None, "overrides applied when the sweep runs on a CPU (the reduced default); cpu=None disables them"),
}

# The content of ablations/default.yaml (a test keeps the two identical); used when that file is not installed.
DEFAULT_SPEC: dict[str, Any] = {
    "name": "default",
    "project": "ablations/runs",
    "model": "yolov8.yaml",
    "scale": "n",
    "replace": "SPPF",
    "arms": copy.deepcopy(DEFAULT_ARMS),
    "data": "digits",
    "data_params": {"n_train": 800, "n_val": 200, "imgsz": 320},
    "epochs": 30,
    "imgsz": 320,
    "batch": 32,
    "seeds": [0, 1, 2],
    "device": None,
    "workers": 8,
    "train_args": {"plots": False, "fliplr": 0.0},
    "speed": {"warmup": 20, "repeats": 200, "throughput_batch": 32, "throughput_repeats": 20, "dtype": "auto",
              "device": None},
    "reduced": None,
    "pretrained": None,
    "metric": "map50_95",
    "target": 0.01,
    "size_buckets": [240.5, 2050.5],
    "executor": "local",
    "parallel": "auto",
    "devices": None,
    "runs_per_device": 1,
    "threads_per_run": "auto",
    "cpu": {
        "name": "default-cpu",
        "reduced": "cpu",
        "data_params": {"n_train": 192, "n_val": 48, "imgsz": 128, "min_size": 10, "max_frac": 0.45, "min_objects": 4,
                        "max_objects": 12, "clutter": 0.25},
        "epochs": 18,
        "imgsz": 128,
        "batch": 8,
        "workers": 0,
        "train_args": {"nbs": 8, "warmup_epochs": 1, "val": False, "optimizer": "AdamW", "lr0": 0.002, "lrf": 0.05,
                       "mosaic": 0.0, "scale": 0.2, "hsv_s": 0.3, "hsv_v": 0.2},
        "speed": {"warmup": 10, "repeats": 100, "throughput_batch": 8, "throughput_repeats": 10},
        "size_buckets": [230.5, 695.5],
    },
}

