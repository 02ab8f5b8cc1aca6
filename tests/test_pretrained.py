"""Sweeps that start from a pretrained checkpoint: transfer measured per arm, the checkpoint's content in every
run's hash, failures before training. The checkpoint is made here: 1 epoch of stock yolov8n on generated digits
(10 classes); the sweeps run on a 2-class set, so the class-count-dependent head convs cannot transfer."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import make_tiny_dataset, tiny_spec, write_spec  # noqa: E402
from conftest import run_cmd  # noqa: E402

from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.prepare.plan import file_sha  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

ARMS = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "focal", "block": "FocalModulation", "args": [3, 2, 2]},
]
HEAD_CLASS_TENSORS = 6  # yolov8 Detect: the last conv of cv3 (weight, bias) at each of 3 scales depends on nc


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt")
    proc = run_cmd(["yolo", "train", "model=yolov8n.yaml", f"data={tiny_data}", "epochs=1", "imgsz=64", "batch=4",
                    "workers=0", "device=cpu", f"project={out}", "name=ck", "plots=False", "val=False"],
                   cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "ck" / "weights" / "last.pt"


@pytest.fixture(scope="module")
def two_class_data(tmp_path_factory) -> str:
    return make_tiny_dataset(tmp_path_factory.mktemp("two-class"), nc=2)


def spec(data: str, project: Path, **changes) -> dict:
    return tiny_spec(data, project, **{"arms": ARMS, **changes})


def test_transfer_is_measured_per_arm_with_ultralytics_own_loading(checkpoint, two_class_data, tmp_path):
    prep = prepare(spec(two_class_data, tmp_path, pretrained=str(checkpoint)))
    sppf, focal = prep.transfer["sppf"], prep.transfer["focal"]
    # the SPPF arm is the checkpoint's architecture: everything but the class-count-dependent head convs
    assert sppf.scratch == ["22 Detect (partial)"] and sppf.total - sppf.loaded == HEAD_CLASS_TENSORS
    # a block arm: also the swapped layer, all of it
    from ultralytics.nn.tasks import DetectionModel

    m = next(m for m in prep.models if m.arm.name == "focal")
    net = DetectionModel({**m.model_dict, "yaml_file": m.file_name}, nc=2, verbose=False)
    block_tensors = sum(1 for k in net.state_dict() if k.startswith("model.9."))
    assert focal.scratch == ["9 FocalModulation", "22 Detect (partial)"]
    assert focal.total - focal.loaded == block_tensors + HEAD_CLASS_TENSORS
    assert prep.pretrained_sha == file_sha(checkpoint, None) and len(prep.pretrained_sha) == 64
    assert all(p.config["pretrained_sha"] == prep.pretrained_sha[:16] for p in prep.plans)


@pytest.mark.slow
def test_every_arm_trains_from_the_checkpoint_and_rows_record_it(checkpoint, two_class_data, tmp_path):
    changes = {"pretrained": str(checkpoint), "parallel": 2, "threads_per_run": 1, "train_args": {"freeze": 3}}
    path = write_spec(tmp_path / "spec.yaml", spec(two_class_data, tmp_path / "runs", **changes))
    proc = subprocess.run([sys.executable, "-m", "yolo_necks.cli", "ablate", path], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "runs" / "tiny"
    with open(sweep / "results.csv", newline="") as f:
        rows = {r["arm"]: r for r in csv.DictReader(f)}
    assert {r["status"] for r in rows.values()} == {"ok"}
    for r in rows.values():
        assert r["pretrained"] == str(checkpoint) and r["pretrained_sha"] == file_sha(checkpoint)
        assert r["freeze"] == "3"
        # ultralytics' own count while it built the run's model from the checkpoint agrees with ours
        log = Path(r["run_dir"], "train.log").read_text()
        assert f"Transferred {r['transferred']} items from pretrained weights" in log
    assert rows["sppf"]["scratch_layers"] == "22 Detect (partial)"
    assert rows["focal"]["scratch_layers"] == "9 FocalModulation; 22 Detect (partial)"
    md = (sweep / "summary.md").read_text()
    assert f"start: every arm from `{checkpoint}`" in md and "focal " in md and "from scratch: 9 FocalModulation" in md
    assert "# Pretrained:" in (sweep / "spec.yaml").read_text()


def test_the_checkpoint_content_is_part_of_every_run_hash(checkpoint, two_class_data, tmp_path):
    import torch

    copy = tmp_path / "a" / "start.pt"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)
    before = [p.config_hash for p in prepare(spec(two_class_data, tmp_path, pretrained=str(copy))).plans]
    moved = tmp_path / "b.pt"
    shutil.copy(copy, moved)  # the same content elsewhere: the same runs
    same = prepare(spec(two_class_data, tmp_path, pretrained=str(moved)))
    assert [p.config_hash for p in same.plans] == before
    ckpt = torch.load(copy, map_location="cpu", weights_only=False)
    with torch.no_grad():
        next(ckpt["model"].parameters()).add_(0.01)
    torch.save(ckpt, copy)  # the file is replaced: resuming must not skip runs trained from the old one
    after = [p.config_hash for p in prepare(spec(two_class_data, tmp_path, pretrained=str(copy))).plans]
    assert not set(after) & set(before)
    scratch = [p.config_hash for p in prepare(spec(two_class_data, tmp_path)).plans]
    assert not set(scratch) & (set(before) | set(after))


def test_a_checkpoint_that_is_missing_or_of_another_architecture_fails_before_training(two_class_data, tmp_path):
    import torch
    from ultralytics.nn.tasks import DetectionModel

    with pytest.raises(NeckConfigError, match=r"key 'pretrained': checkpoint '.*missing\.pt' not found") as e:
        runner.run_sweep(spec(two_class_data, tmp_path, pretrained=str(tmp_path / "missing.pt")))
    assert "\n" not in str(e.value)
    other = tmp_path / "yolo11n-random.pt"
    torch.save({"model": DetectionModel("yolo11n.yaml", nc=10, verbose=False)}, other)
    with pytest.raises(NeckConfigError, match=r"fills only \d+/355 tensors \(\d+%\) of arm 'sppf'.*at least 50%"):
        runner.run_sweep(spec(two_class_data, tmp_path, pretrained=str(other)))
    with pytest.raises(NeckConfigError, match="key 'train_args.pretrained': not allowed here .*top level"):
        runner.run_sweep(spec(two_class_data, tmp_path, train_args={"pretrained": str(other)}))
    assert not (tmp_path / "tiny").exists()  # nothing was written


def test_freezing_the_swapped_layer_is_refused(two_class_data, tmp_path):
    for freeze in (10, [9]):
        with pytest.raises(NeckConfigError, match=r"key 'train_args.freeze': .* freezes layer 9, the block arm 'focal'"):
            prepare(spec(two_class_data, tmp_path, train_args={"freeze": freeze}))
    assert prepare(spec(two_class_data, tmp_path, train_args={"freeze": 9})).spec.train_args == {"freeze": 9}


def test_the_spec_resolves_the_checkpoint_next_to_it(checkpoint, two_class_data, tmp_path):
    shutil.copy(checkpoint, tmp_path / "start.pt")
    path = write_spec(tmp_path / "spec.yaml", spec(two_class_data, tmp_path / "runs", pretrained="start.pt"))
    prep = prepare(path)
    assert prep.spec.pretrained == str((tmp_path / "start.pt").resolve())
    assert yaml.safe_load(Path(path).read_text())["pretrained"] == "start.pt"
