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
