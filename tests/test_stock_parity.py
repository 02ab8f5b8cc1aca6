"""Stock behaviour untouched, failures included: every model YAML ultralytics ships builds, or raises, exactly as it
does without the plugin; failures of the machine (network, disk, memory, CUDA) keep their own type and message, also
inside our blocks; what the YAML caused becomes one line with the original exception chained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import ROOT, YAML_DIR
from ultralytics.nn.tasks import DetectionModel

import yolo_necks
from yolo_necks.errors import NeckConfigError

# Builds every YAML of ultralytics' cfg/models the way a user does (YOLO(), RTDETR() for RT-DETR files) and prints,
# per file, what it built (model class, module types and parameter counts) or what it raised (type and message).
PARITY_CODE = r"""
import json, sys
from pathlib import Path
import torch
import ultralytics
from ultralytics import RTDETR, YOLO
out = {}
for f in sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml")):
    torch.manual_seed(0)
    try:
        m = (RTDETR if "rtdetr" in f.name else YOLO)(str(f)).model
        sig = [[type(x).__module__ + "." + type(x).__qualname__, sum(p.numel() for p in x.parameters(recurse=False))]
               for x in m.modules()]
        out[f.name] = ["built", type(m).__name__, sig]
    except Exception as e:
        text = str(e).strip()
        out[f.name] = ["raised", type(e).__module__ + "." + type(e).__qualname__, text.splitlines()[0] if text else ""]
print(json.dumps({"out": out, "plugin": "yolo_necks" in sys.modules}))
"""


def offline_env(tmp_path: Path, autoload: str) -> dict:
    """A process that cannot download: proxies point at a closed local port (a real URLError at once, on any
    machine), and torch's weight cache is empty."""
    closed = "http://127.0.0.1:9"
    return {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "YOLO_NECKS_AUTOLOAD": autoload,
            "https_proxy": closed, "http_proxy": closed, "HTTPS_PROXY": closed, "HTTP_PROXY": closed,
            "no_proxy": "", "NO_PROXY": "", "TORCH_HOME": str(tmp_path / f"torch-{autoload}")}


@pytest.mark.slow
def test_every_stock_yaml_builds_or_raises_alike_with_and_without_plugin(tmp_path):
    """Both processes run at once; each builds every YAML ultralytics ships (66 in 8.4)."""
    procs = {
        flag: subprocess.Popen([sys.executable, "-c", PARITY_CODE], cwd=tmp_path, env=offline_env(tmp_path, flag),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for flag in ("0", "1")
    }
    results = {}
    for flag, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=1200)
        assert proc.returncode == 0, stderr[-3000:]
        results[flag] = json.loads(stdout.strip().splitlines()[-1])
    assert results["0"]["plugin"] is False and results["1"]["plugin"] is True
    off, on = results["0"]["out"], results["1"]["out"]
    assert len(off) >= 60 and set(off) == set(on)
    assert {name: off[name] for name in off if off[name] != on[name]} == {}
    assert sum(v[0] == "built" for v in on.values()) >= 60
    # the TorchVision backbone downloads its weights: offline that is the network's URLError, not our error type
    assert on["yolo11-cls-resnet18.yaml"][:2] == ["raised", "urllib.error.URLError"]


# ---------------------------------------------------------------------------------- failures inside our blocks
class _Downloads(nn.Module):
    """A block that fetches something when it is built, and fails the way the machine makes it fail."""

    failure: BaseException = OSError("placeholder")

    def __init__(self, c1: int, c2: int):
        super().__init__()
        raise type(self).failure


class _ForwardFails(nn.Module):
    """A block that builds, then fails in its first forward pass (the stride computation) with ``failure``."""

    failure: BaseException = RuntimeError("placeholder")

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        raise type(self).failure


@pytest.fixture
def test_blocks():
    yolo_necks.register_block(_Downloads, name="TestDownloads")
    yolo_necks.register_block(_ForwardFails, name="TestForwardFails")
    yolo_necks.register()
    yield
    yolo_necks.unregister_block("TestDownloads")
    yolo_necks.unregister_block("TestForwardFails")


def model_with(tmp_path: Path, row: str) -> str:
    text = (YAML_DIR / "yolov8-sppf.yaml").read_text()
    path = tmp_path / "yolov8n-test.yaml"
    path.write_text(text.replace("[-1, 1, SPPF, [1024, 5]]", row))
    return str(path)


ENVIRONMENT_FAILURES = [
    urllib.error.URLError("[Errno 111] Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out fetching weights"),
    FileNotFoundError(2, "No such file or directory", "weights/backbone.pth"),
    OSError(28, "No space left on device"),
    MemoryError("cannot allocate 4 GiB"),
    ModuleNotFoundError("No module named 'timm'", name="timm"),
]


@pytest.mark.parametrize("failure", ENVIRONMENT_FAILURES, ids=lambda e: type(e).__name__)
def test_machine_failures_while_building_our_block_pass_through(tmp_path, test_blocks, failure):
    _Downloads.failure = failure
    with pytest.raises(type(failure)) as info:
        DetectionModel(model_with(tmp_path, "[-1, 1, TestDownloads, [1024]]"), verbose=False)
    assert info.type is type(failure) and not isinstance(info.value, NeckConfigError)
    assert str(info.value) == str(failure)


@pytest.mark.parametrize("failure", [
    RuntimeError("CUDA error: device-side assert triggered"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    torch.OutOfMemoryError("CUDA out of memory"),
    MemoryError(),
], ids=["cuda-error", "cuda-oom-message", "torch-oom", "memory"])
def test_machine_failures_in_the_first_forward_pass_pass_through(tmp_path, test_blocks, failure):
    _ForwardFails.failure = failure
    with pytest.raises(type(failure)) as info:
        DetectionModel(model_with(tmp_path, "[-1, 1, TestForwardFails, [1024]]"), verbose=False)
    assert not isinstance(info.value, NeckConfigError) and str(info.value) == str(failure)


def test_yaml_failures_in_the_first_forward_pass_stay_one_line_with_the_cause_chained(tmp_path, test_blocks):
    _ForwardFails.failure = RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x7 and 8x8)")
    path = model_with(tmp_path, "[-1, 1, TestForwardFails, [1024]]")
    with pytest.raises(NeckConfigError) as info:
        DetectionModel(path, verbose=False)
    msg = str(info.value)
    assert msg.startswith(f"{path}: layer 9 (TestForwardFails): forward pass failed") and "\n" not in msg
    assert isinstance(info.value.__cause__, RuntimeError) and "shapes cannot be multiplied" in str(info.value.__cause__)


@pytest.mark.parametrize("row, cause", [
    ("[-1, 1, DyCAConv, [1024, 3, 1, 32, median]]", ValueError),  # the block rejects its argument
    ("[-1, 1, SPPF, [1024, 5, 3, False, 7, 9]]", TypeError),  # a built-in's constructor rejects its args
])
def test_translated_parser_errors_keep_the_original_chained(tmp_path, row, cause):
    yolo_necks.register()
    path = model_with(tmp_path, row)
    with pytest.raises(NeckConfigError) as info:
        DetectionModel(path, verbose=False)
    assert str(info.value).startswith(f"{path}: layer 9 (") and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, cause)


def test_a_one_line_yaml_error_still_prints_one_line_from_the_stock_cli(tmp_path):
    """The chained cause must not bring a traceback back to the terminal (the start-up hook prints our line)."""
    path = model_with(tmp_path, "[-1, 1, DyCAConv, [1024, 3, 1, 32, median]]")
    r = subprocess.run([sys.executable, "-c", "from ultralytics import YOLO; import sys; YOLO(sys.argv[1])", path],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert r.returncode == 1
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"yolo-necks: error: {path}: layer 9 (DyCAConv)"), r.stderr
