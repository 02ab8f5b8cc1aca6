"""Placement sweeps: arms that insert a block at named positions next to arms that replace the SPPF, their rows,
summaries and comparisons, their spec errors, and pretrained starts renumbered to the inserted layers."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import FakeTraining, make_tiny_dataset, tiny_spec, write_spec  # noqa: E402
from conftest import ROOT  # noqa: E402

from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.analyse.compare import compare  # noqa: E402
from yolo_necks.ablation.spec.load import load_spec  # noqa: E402
from yolo_necks.editing import edit_with_map  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

MIXED = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "dyca-sppf", "block": "DyCAConv", "args": [3, 1, 32, "avg"]},
    {"name": "dyca-head", "block": "DyCAConv", "args": [3, 1, 32, "avg"], "insert": ["p3", "p4", "p5"]},
]


def test_insert_arms_are_the_edited_model_and_record_their_placement(rect_data, tmp_path):
    prep = prepare(tiny_spec(rect_data, tmp_path, arms=MIXED))
    by = {m.arm.name: m for m in prep.models}
    expected = edit_with_map("yolov8.yaml", insert="DyCAConv@p3,p4,p5", args=[3, 1, 32, "avg"])
    head = by["dyca-head"]
    assert head.model_dict["backbone"] == expected.model["backbone"] and head.model_dict["head"] == expected.model["head"]
    assert head.model_dict["nc"] == 2 and head.model_dict["scale"] == "n"
    assert head.layers == (16, 20, 24) and head.placement == "insert p3,p4,p5"
    assert head.index_map == expected.index_map and head.index_map[22] == 25  # the Detect head
    assert by["dyca-sppf"].layers == (9,) and by["dyca-sppf"].placement == "replace sppf"
    assert by["sppf"].placement == "base" and by["sppf"].index_map is None
    assert "inserted after p3,p4,p5 (layers 16, 20, 24 of this model" in head.text


def test_a_sweep_mixing_replace_and_insert_arms_reports_placement(rect_data, tmp_path):
    spec = write_spec(tmp_path / "mixed.yaml", tiny_spec(rect_data, tmp_path / "runs", arms=MIXED, seeds=[0, 1]))
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        df = runner.run_sweep(spec)
    rows = df.set_index(["arm", "seed"])
    assert rows.loc[("dyca-head", 0), "placement"] == "insert p3,p4,p5"
    assert str(rows.loc[("dyca-head", 1), "edited_layers"]) == "16 20 24"
    assert rows.loc[("dyca-sppf", 0), "placement"] == "replace sppf" and str(rows.loc[("sppf", 0), "edited_layers"]) == "9"
    sweep = Path(df.attrs["sweep_dir"])
    summary = pd.read_csv(sweep / "summary.csv")
    assert dict(zip(summary["arm"], summary["placement"])) == {
        "sppf": "base", "dyca-sppf": "replace sppf", "dyca-head": "insert p3,p4,p5"}
    md = (sweep / "summary.md").read_text()
    assert "| Arm | Block | Placement | Runs ok |" in md and "| dyca-head | DyCAConv | insert p3,p4,p5 | 2/2 |" in md
    assert "- **dyca-head** (DyCAConv, insert p3,p4,p5):" in md
    table = compare([sweep])
    assert "| Arm | Placement |" in table and "| dyca-head | insert p3,p4,p5 |" in table
    # the effective spec keeps the positions, and the saved arm YAML is the edited model
    saved = yaml.safe_load((sweep / "spec.yaml").read_text())
    assert next(a for a in saved["arms"] if a["name"] == "dyca-head")["insert"] == ["p3", "p4", "p5"]
    arm_yaml = yaml.safe_load((sweep / "models" / "yolov8n-dyca-head.yaml").read_text())
    assert [r[2] for r in arm_yaml["head"]].count("DyCAConv") == 3 and arm_yaml["head"][-1][0] == [16, 20, 24]


@pytest.mark.parametrize("arm, message", [
    ({"name": "x", "yaml": "model_yamls/yolov8-sppf.yaml", "insert": ["p3"]}, "'insert' only applies to block arms"),
    ({"name": "x", "block": "DyCAConv", "insert": []}, "'insert' must be a list of positions like [p3, p4, p5]"),
    ({"name": "x", "block": "DyCAConv", "insert": ["p3", "p3"]}, "'insert' names a position twice"),
    ({"name": "x", "block": "DyCAConv", "insert": ["p 3"]}, "'insert' position 'p 3' is not a position name"),
    ({"name": "x", "block": "DyCAConv", "insert": [True]}, "'insert' position True is not a position name"),
])
def test_bad_insert_keys_are_one_line_errors(rect_data, tmp_path, arm, message):
    spec = tiny_spec(rect_data, tmp_path, arms=[MIXED[0], arm])
    with pytest.raises(NeckConfigError) as e:
        load_spec(spec)
    assert message in str(e.value) and "arm 'x'" in str(e.value) and "\n" not in str(e.value)


def test_insert_strings_and_positions_the_model_lacks(rect_data, tmp_path):
    arms = [MIXED[0], {"name": "x", "block": "DyCAConv", "insert": "p3,p5"}]
    assert load_spec(tiny_spec(rect_data, tmp_path, arms=arms)).arms[1].insert == ("p3", "p5")
    arms = [MIXED[0], {"name": "x", "block": "DyCAConv", "insert": ["p7"]}]
    with pytest.raises(NeckConfigError) as e:
        prepare(tiny_spec(rect_data, tmp_path, arms=arms))
    msg = str(e.value)
    assert msg.startswith("<spec dict>: arm 'x': insert DyCAConv@p7: ") and "p3" in msg and "\n" not in msg


def test_freeze_covering_an_inserted_block_is_refused(rect_data, tmp_path):
    arms = [MIXED[0], MIXED[2]]
    spec = tiny_spec(rect_data, tmp_path, arms=arms, train_args={"freeze": 17})
    with pytest.raises(NeckConfigError, match=r"freezes layer 16, the block arm 'dyca-head' inserts"):
        prepare(spec)
    prepare(tiny_spec(rect_data, tmp_path, arms=arms, train_args={"freeze": 16}))  # before every block


# ------------------------------------------------------------------------------------------ pretrained starts
@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    """A stock yolov8n checkpoint (random weights, 2 classes) in ultralytics' format."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    path = tmp_path_factory.mktemp("ckpt") / "base.pt"
    torch.save({"model": model, "train_args": {}}, path)
    return path


def test_a_renumbered_checkpoint_puts_every_base_layer_on_the_same_layer_of_the_arm(base_checkpoint, tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    from yolo_necks.ablation.prepare.pretrained import remap_checkpoint

    result = edit_with_map("yolov8.yaml", insert="DyCAConv@p3,backbone_p4", args=[3, 1, 32, "avg"])
    out = remap_checkpoint(str(base_checkpoint), result.index_map, tmp_path / "renumbered.pt")
    arm = DetectionModel({**copy.deepcopy(result.model), "nc": 2, "yaml_file": "yolov8n-x.yaml"}, verbose=False)
    before = {k: v.clone() for k, v in arm.state_dict().items()}
    arm.load(torch.load(out, weights_only=False), verbose=False)
    base = torch.load(base_checkpoint, weights_only=False)["model"].state_dict()
    after = arm.state_dict()
    moved = 0
    for key, value in base.items():
        i, rest = key.split(".", 2)[1], key.split(".", 2)[2]
        assert torch.equal(after[f"model.{result.index_map[int(i)]}.{rest}"], value), key
        moved += 1
    assert moved == len(base)
    for j in result.inserted:  # the inserted blocks keep their own initialisation
        keys = [k for k in after if k.startswith(f"model.{j}.")]
        assert keys and all(torch.equal(after[k], before[k]) for k in keys)


def test_pretrained_transfer_of_an_insert_arm_is_the_whole_base_model(base_checkpoint, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", nc=2)
    prep = prepare(tiny_spec(data, tmp_path, arms=MIXED, pretrained=str(base_checkpoint)))
    base, head = prep.transfer["sppf"], prep.transfer["dyca-head"]
    assert base.loaded == base.total  # same architecture, same classes: everything
    block_tensors = head.total - base.total
    assert block_tensors > 0 and head.loaded == base.loaded  # every base tensor, on its own layer
    assert head.scratch == ["16 DyCAConv", "20 DyCAConv", "24 DyCAConv"]


def test_placement_spec_ships_and_builds(tmp_path):
    spec = load_spec(ROOT / "ablations" / "placement.yaml", {"device": "cpu"})
    assert spec.reduced == "cpu" and len(spec.arms) == 7
    heads = [a for a in spec.arms if a.insert]
    assert [a.block for a in heads] == ["DyCAConv", "SKConv", "FocalModulation"]
    assert all(a.insert == ("p3", "p4", "p5") for a in heads)
    assert {a.block for a in spec.arms if not a.insert and not a.baseline} == {"DyCAConv", "SKConv", "FocalModulation"}
