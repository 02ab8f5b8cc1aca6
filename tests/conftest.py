"""Shared fixtures. Everything runs offline on CPU: ultralytics is told it is offline and writes under tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
YAML_DIR = ROOT / "model_yamls"

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: skip online checks and downloads at once
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests' helper modules (ablation_helpers)

# The full tier: more variants of a claim that a test of the default suite already makes end to end, left out
# unless ``--full`` is given (or YOLO_NECKS_FULL_TESTS=1), so that the default suite stays within CI's budget.
# (file, node-id pattern): why it can wait for the full tier (the default test making the same claim).
FULL_TIER = [
    ("test_executors.py", r"test_metrics_and_weights_do_not_depend_on_the_executor",
     "four CLI sweeps compared bit for bit (also spawned and Ray); one run in a worker, again after others there, "
     "and one at a time in this process: test_a_run_after_others_in_the_same_worker_equals_the_run_in_a_fresh_worker"),
    ("test_executors.py", r"test_ray_(times_every_arm|a_worker_killed|a_data_yaml|ctrl_c)",
     "Ray cluster faults; placement on two nodes: test_ray_runs_land_on_both_nodes_and_rows_record_the_node"),
    ("test_executors.py", r"test_sigkill_of_the_parallel|test_ctrl_c_in_parallel",
     "the same with workers; one at a time: test_ablation.py's SIGKILL and Ctrl-C tests"),
    ("test_executors.py", r"test_auto_sweeps_use_the_sweep_process",
     "the choice itself: test_parallel_auto_trains_a_single_run_in_the_sweep_process_and_more_in_workers"),
    ("test_executors.py", r"\[spawn\]", "the same with forked workers: the [fork] cases"),
    ("test_gpu_script.py", r"test_dry_run_end_to_end_then_resume", "the GPU script's dry run (about a minute)"),
    ("test_tracking.py", r"test_two_workers_start_each_child_run",
     "one at a time: test_sequential_sweep_logs_a_parent_and_one_child_per_row_resume_adds_nothing"),
    ("test_editing.py", r"test_identity_at_every_named_position_changes_nothing\[(yolov5|yolov8-p[26]|\w+-(seg|pose|obb))",
     "the task heads and P2/P6 variants; the detection families yolov8 and yolo11 stay"),
    ("test_editing.py", r"test_identity_at_every_layer_index_of_yolov5", "yolov8's every layer index stays"),
    ("test_model_yamls.py", r"test_builds_and_runs_at_every_scale\[.*-[lx]\]", "scales n, s and m stay"),
    ("test_deploy.py", r"test_export_matches_pytorch\[(yolov8-(focal|dyca|sk)|yolo11-focal)\.yaml-",
     "each block through ultralytics' exporter in ONNX (static and dynamic) and OpenVINO: yolo26n with all four at "
     "p3-p5, and yolov8-pyramid at the SPPF site; each shipped YAML in ONNX: test_model_yamls.py"),
    ("test_export.py", r"test_(dynamic_onnx|torchscript)_export_matches_pytorch\[(?!yolov8-pyramid|yolov8-dyca-neck)",
     "ultralytics' exporter per YAML; every block in dynamic ONNX: test_deploy.py, and yolov8-pyramid here"),
    ("test_pretrained.py", r"test_transfer_is_measured_per_arm",
     "training from a checkpoint: test_every_arm_trains_from_the_checkpoint_and_rows_record_it"),
    ("test_adaptive.py", r"\[0\.004-8\]|\[0\.03\]", "the other parameter of the same test stays"),
]


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="also run the full tier (tests/conftest.py FULL_TIER; YOLO_NECKS_FULL_TESTS=1 does too)")


def pytest_collection_modifyitems(config, items):
    import re

    if config.getoption("--full") or os.environ.get("YOLO_NECKS_FULL_TESTS", "") not in ("", "0"):
        return
    rules = [(f, re.compile(pattern)) for f, pattern, _ in FULL_TIER]
    keep, left = [], []
    for item in items:
        name = item.path.name
        (left if any(f == name and rx.search(item.nodeid) for f, rx in rules) else keep).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one torch thread (restored after): for files of many tiny tensors."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def logged():
    """Messages of ultralytics' LOGGER (which writes to the stdout it found at import, beyond capsys)."""
    import logging

    from ultralytics.utils import LOGGER

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    LOGGER.addHandler(handler)
    yield lines
    LOGGER.removeHandler(handler)


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def tiny_data(tmp_session) -> Path:
    """A tiny built-in `digits` dataset (16 train / 8 val images of 64 px), built once per test session."""
    from yolo_necks.datasets import resolve_data

    return Path(resolve_data("digits", root=tmp_session / "datasets", n_train=16, n_val=8, imgsz=64, seed=0))


@pytest.fixture(scope="session")
def rect_data(tmp_session) -> str:
    """A tiny YOLO dataset of coloured rectangles (8 train / 4 val images of 64 px, 2 classes), built once; its YAML."""
    from ablation_helpers import make_tiny_dataset

    return make_tiny_dataset(tmp_session / "rect-data")


@pytest.fixture
def spec_file(tmp_path, rect_data):
    """``make(**changes)`` writes a tiny sweep spec (``ablation_helpers.tiny_spec`` on ``rect_data``, sweep folder
    ``tmp_path/runs/tiny``) to ``tmp_path/spec.yaml`` and returns its path."""
    from ablation_helpers import tiny_spec, write_spec

    def make(**changes) -> str:
        return write_spec(tmp_path / "spec.yaml", tiny_spec(rect_data, tmp_path / "runs", **changes))

    return make


def run_py(code: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter (as a new user, a DDP worker or a reloading process would)."""
    full_env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_cmd(args: list[str], cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
    full_env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(args, cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
