"""The model editor (``yolo_necks.editing``, ``yolo-necks edit`` / ``positions``).

- The map is exact: an identity block inserted at every named position of every stock family (detect, seg, pose,
  obb, P2, P6, yolov5u), and at every layer index of yolov5, gives outputs bitwise equal to the base model with the
  same weights copied through the returned index map (BatchNorm statistics calibrated so features are O(1); a block
  that doubles its input shows the comparison is not vacuous).
- Every shipped block and SPPF builds and runs at every named position of yolov8 and yolo11 at scales n and s.
- Hand-written graphs (relative and absolute ``from``, lists, the head's list, several edits, insert + replace) give
  the rows written out here.
- Errors are one line and say what is wrong; the CLI verbs; the shipped ``yolov8-dyca-neck.yaml`` is the tool's
  output; an edited YAML trains with the stock ``yolo`` CLI, reloads in a fresh process and exports to ONNX.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys

import pytest
import torch
import torch.nn as nn
from conftest import YAML_DIR, run_cmd, run_py
from ultralytics.nn.tasks import DetectionModel, OBBModel, PoseModel, SegmentationModel

import yolo_necks
from yolo_necks import editing
from yolo_necks.cli import main as cli_main
from yolo_necks.errors import NeckConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = [
    "yolov8.yaml", "yolo11.yaml", "yolov5.yaml", "yolov8-p2.yaml", "yolov8-p6.yaml",
    "yolov8-seg.yaml", "yolov8-pose.yaml", "yolov8-obb.yaml", "yolo11-seg.yaml", "yolo11-pose.yaml", "yolo11-obb.yaml",
]
SHIPPED_BLOCKS = {"FocalModulation": [], "DyCAConv": [3, 1, 32, "avg"], "SKConv": [], "PyramidPool": [], "SPPF": []}
IMG = 64


class EditIdentity(nn.Module):
    """Returns its input: inserted anywhere, the model must compute exactly what it computed before."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"EditIdentity keeps the channels, got c1={c1}, c2={c2}")

    def forward(self, x):
        return x


class EditDouble(EditIdentity):
    """Twice its input: the control that shows the identity comparison can fail."""

    def forward(self, x):
        return 2 * x


class EditHalve(nn.Module):
    """Outputs half of c2: a block that changes the channels."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2 // 2, 1)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(autouse=True, scope="module")
def test_blocks():
    yolo_necks.register()
    for cls in (EditIdentity, EditDouble, EditHalve):
        yolo_necks.register_block(cls)
    yield
    for cls in (EditIdentity, EditDouble, EditHalve):
        yolo_necks.unregister_block(cls.__name__)


# ------------------------------------------------------------------------------------------------------ helpers
def build(d: dict, scale: str | None = "n"):
    """The model of a YAML dict, of the class its head asks for, at ``scale``, seeded."""
    d = copy.deepcopy(d)
    if scale:
        d["scale"] = scale
    head = (d["backbone"] + d["head"])[-1][2]
    cls = {"Segment": SegmentationModel, "Pose": PoseModel, "OBB": OBBModel}.get(head, DetectionModel)
    torch.manual_seed(0)
    return cls(d, ch=3, nc=d.get("nc"), verbose=False)


def calibrate(model) -> None:
    """BatchNorm statistics of a random batch (momentum 1): features stay O(1) instead of vanishing with depth."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        model(torch.rand(2, 3, IMG, IMG))
    model.eval()


def flat(y) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return [t for v in y.values() for t in flat(v)]
    if isinstance(y, (list, tuple)):
        return [t for v in y for t in flat(v)]
    return []


def outputs(model, x) -> list[torch.Tensor]:
    with torch.no_grad():
        return flat(model.eval()(x))


def transfer(base, edited, index_map: dict[int, int], new_layers: list[int]) -> None:
    """Copy ``base``'s weights into ``edited`` through the index map; only the new layers may be left out."""
    state = {}
    for key, value in base.state_dict().items():
        parts = key.split(".", 2)
        if parts[0] == "model" and parts[1].isdigit():
            key = f"model.{index_map[int(parts[1])]}.{parts[2]}"
        state[key] = value
    missing, unexpected = edited.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(int(k.split(".")[1]) in new_layers for k in missing), missing


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


_BASES: dict[str, tuple] = {}


def base_model(name: str):
    """(model dict, calibrated scale-n model, its outputs on the fixed input, input) of a stock family, cached."""
    if name not in _BASES:
        d, _ = editing.load_model(name)
        model = build(d)
        calibrate(model)
        torch.manual_seed(2)
        x = torch.rand(1, 3, IMG, IMG)
        _BASES[name] = (d, model, outputs(model, x), x)
    return _BASES[name]


def assert_identity(name: str, position: str, block: str = "EditIdentity") -> bool:
    """Insert ``block`` at ``position`` of ``name``; True if its outputs equal the base model's bit for bit."""
    _, base, expected, x = base_model(name)
    result = editing.edit_with_map(name, insert=f"{block}@{position}")
    (j,) = result.inserted
    edited = build(result.model)
    assert type(edited.model[j]).__name__ == block
    assert edited.model[j].f == -1 and j - 1 in result.index_map.values()  # it reads the layer it follows
    transfer(base, edited, result.index_map, result.inserted)
    assert n_params(edited) == n_params(base)  # the identity blocks have no parameters
    got = outputs(edited, x)
    assert [t.shape for t in got] == [t.shape for t in expected]
    return all(torch.equal(a, b) for a, b in zip(got, expected))


# ------------------------------------------------------------------------------------------ identity = no change
@pytest.mark.parametrize("name", FAMILIES)
def test_identity_at_every_named_position_changes_nothing(name):
    names = [p.name for p in editing.positions(name) if not p.name.isdigit()]
    assert {"p3", "p4", "p5", "backbone_p3", "backbone_p4", "backbone_p5", "sppf"} <= set(names)
    for position in names:
        assert assert_identity(name, position), f"{name}: identity at {position} changed the outputs"


def test_identity_at_every_layer_index_of_yolov5_changes_nothing():
    d, *_ = base_model("yolov5.yaml")
    indices = [p.index for p in editing.positions("yolov5.yaml") if p.name.isdigit()]
    assert indices == list(range(len(d["backbone"]) + len(d["head"]) - 1))  # every layer but the head
    for i in indices:
        assert assert_identity("yolov5.yaml", str(i)), f"yolov5.yaml: identity after layer {i} changed the outputs"


def test_identity_at_every_layer_index_of_yolov8_or_a_one_line_refusal_after_concat():
    """yolov8's Concat outputs cannot be matched by any scaled c2 (max_channels caps the scaled sum): refused."""
    refused = []
    for p in editing.positions("yolov8.yaml"):
        if not p.name.isdigit():
            continue
        try:
            assert assert_identity("yolov8.yaml", p.name), f"identity after layer {p.index} changed the outputs"
        except NeckConfigError as e:
            assert "\n" not in str(e) and "would change the channels after layer" in str(e)
            refused.append((p.index, p.module))
    assert refused == [(11, "Concat"), (14, "Concat"), (17, "Concat"), (20, "Concat")]


def test_a_block_that_changes_values_is_seen_by_the_comparison():
    assert not assert_identity("yolov8.yaml", "p4", "EditDouble")
    assert not assert_identity("yolov8.yaml", "backbone_p3", "EditDouble")


# ---------------------------------------------------------------------------------------------- the positions
@pytest.mark.parametrize(
    "name, expected",
    [
        ("yolov8.yaml", {"p3": 15, "p4": 18, "p5": 21, "backbone_p3": 4, "backbone_p4": 6, "backbone_p5": 9, "sppf": 9}),
        ("yolo11.yaml", {"p3": 16, "p4": 19, "p5": 22, "backbone_p3": 4, "backbone_p4": 6, "backbone_p5": 10, "sppf": 9}),
        ("yolov5.yaml", {"p3": 17, "p4": 20, "p5": 23, "backbone_p3": 4, "backbone_p4": 6, "backbone_p5": 9, "sppf": 9}),
        ("yolov8-p2.yaml", {"p2": 18, "p3": 21, "p4": 24, "p5": 27, "backbone_p2": 2, "backbone_p3": 4,
                            "backbone_p4": 6, "backbone_p5": 9, "sppf": 9}),
        ("yolov8-p6.yaml", {"p3": 20, "p4": 23, "p5": 26, "p6": 29, "backbone_p3": 4, "backbone_p4": 6,
                            "backbone_p5": 8, "backbone_p6": 11, "sppf": 11}),
    ],
)
def test_named_positions_come_from_the_model(name, expected):
    got = editing.positions(name)
    assert {p.name: p.index for p in got if not p.name.isdigit()} == expected
    for p in got:
        if p.name.startswith("p"):
            assert p.stride == 2 ** int(p.name[1:])


def test_positions_report_channels_at_the_scale():
    n = {p.name: p for p in editing.positions("yolov8.yaml")}
    s = {p.name: p for p in editing.positions("yolov8.yaml", scale="s")}
    x = {p.name: p for p in editing.positions("yolov8x.yaml")}  # the scale letter of the name is the default
    assert [n[k].channels for k in ("p3", "p4", "p5")] == [64, 128, 256]
    assert [s[k].channels for k in ("p3", "p4", "p5")] == [128, 256, 512]
    assert [x[k].channels for k in ("p3", "p4", "p5")] == [320, 640, 640]  # max_channels 512 x width 1.25
    assert (n["sppf"].module, n["sppf"].stride, n["10"].module, n["10"].stride) == ("SPPF", 32, "nn.Upsample", 16)


# ------------------------------------------------------------------------------------ every block, every place
@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("name", ["yolov8.yaml", "yolo11.yaml"])
@pytest.mark.parametrize("block", list(SHIPPED_BLOCKS))
def test_every_shipped_block_at_every_named_position_builds_and_runs(block, name, scale):
    named = {p.name: p.index for p in editing.positions(name) if not p.name.isdigit()}
    groups: list[list[str]] = []  # positions that are the same layer go to separate edits
    for position, index in named.items():
        group = next((g for g in groups if all(named[q] != index for q in g)), None)
        group.append(position) if group is not None else groups.append([position])
    base = build(base_model(name)[0], scale)
    x = torch.rand(1, 3, IMG, IMG)
    expected = outputs(base, x)
    for group in groups:
        result = editing.edit_with_map(name, insert=f"{block}@{','.join(group)}", args=SHIPPED_BLOCKS[block])
        edited = build(result.model, scale)
        assert [type(edited.model[j]).__name__ for j in result.inserted] == [block] * len(group)
        added = sum(n_params(edited.model[j]) for j in result.inserted)
        assert added > 0 and n_params(edited) == n_params(base) + added
        got = outputs(edited, x)
        assert [t.shape for t in got] == [t.shape for t in expected]
        assert all(torch.isfinite(t).all() for t in got)


# ----------------------------------------------------------------------------------------- hand-written graphs
def graph() -> dict:
    """P3/P4 detector; the head reads backbone layer 4 by -1 and by -5, layer 2 by absolute index."""
    return {
        "nc": 2,
        "scales": {"n": [1.0, 1.0, 1024]},
        "extra_key": "kept",
        "yaml_file": "graph.yaml",
        "backbone": [
            [-1, 1, "Conv", [8, 3, 2]],  # 0 /2
            [-1, 1, "Conv", [16, 3, 2]],  # 1 /4
            [-1, 1, "Conv", [16, 3, 2]],  # 2 /8
            [-1, 1, "Conv", [32, 3, 2]],  # 3 /16
            [-1, 2, "Conv", [32, 1, 1]],  # 4 /16
        ],
        "head": [
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],  # 5 /8, reads 4
            [[-1, 2], 1, "Concat", [1]],  # 6
            [-1, 1, "Conv", [16, 1, 1]],  # 7 P3
            [-1, 1, "Conv", [32, 3, 2]],  # 8
            [[-1, -5], 1, "Concat", [1]],  # 9 reads 8 and 4
            [-1, 1, "Conv", [32, 1, 1]],  # 10 P4
            [[7, 10], 1, "Detect", ["nc"]],  # 11
        ],
    }


BACKBONE = [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]]
UP, CAT1, P3, DOWN, P4 = (["nn.Upsample", [None, 2, "nearest"]], ["Concat", [1]], ["Conv", [16, 1, 1]],
                          ["Conv", [32, 3, 2]], ["Conv", [32, 1, 1]])


def rows(*rows_) -> list:
    return [list(r) for r in rows_]


REWIRING = {
    "after the last backbone row, read by -1 and by a relative -5": (
        {"insert": "EditIdentity@backbone_p4"},
        BACKBONE + [[-1, 1, "Conv", [32, 3, 2]], [-1, 2, "Conv", [32, 1, 1]], [-1, 1, "EditIdentity", [32]]],
        rows([-1, 1, *UP], [[-1, 2], 1, *CAT1], [-1, 1, *P3], [-1, 1, *DOWN], [[-1, 5], 1, *CAT1], [-1, 1, *P4],
             [[8, 11], 1, "Detect", ["nc"]]),
        {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 7, 7: 8, 8: 9, 9: 10, 10: 11, 11: 12}, [5],
    ),
    "after a layer read by -1 and by an absolute index in a list": (
        {"insert": "EditIdentity@2"},
        BACKBONE + [[-1, 1, "EditIdentity", [16]], [-1, 1, "Conv", [32, 3, 2]], [-1, 2, "Conv", [32, 1, 1]]],
        rows([-1, 1, *UP], [[-1, 3], 1, *CAT1], [-1, 1, *P3], [-1, 1, *DOWN], [[-1, 5], 1, *CAT1], [-1, 1, *P4],
             [[8, 11], 1, "Detect", ["nc"]]),
        {0: 0, 1: 1, 2: 2, 3: 4, 4: 5, 5: 6, 6: 7, 7: 8, 8: 9, 9: 10, 10: 11, 11: 12}, [3],
    ),
    "two head inputs at once (the head's list)": (
        {"insert": "EditIdentity@p3,p4"},
        BACKBONE + [[-1, 1, "Conv", [32, 3, 2]], [-1, 2, "Conv", [32, 1, 1]]],
        rows([-1, 1, *UP], [[-1, 2], 1, *CAT1], [-1, 1, *P3], [-1, 1, "EditIdentity", [16]], [-1, 1, *DOWN],
             [[-1, 4], 1, *CAT1], [-1, 1, *P4], [-1, 1, "EditIdentity", [32]], [[8, 12], 1, "Detect", ["nc"]]),
        {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 9, 9: 10, 10: 11, 11: 13}, [8, 12],
    ),
    "several strings, insert and replace in one call (replace keeps from and repeats)": (
        {"insert": ["EditIdentity@backbone_p3", "EditIdentity@6"], "replace": "EditIdentity@4"},
        BACKBONE + [[-1, 1, "EditIdentity", [16]], [-1, 1, "Conv", [32, 3, 2]], [-1, 2, "EditIdentity", [32]]],
        rows([-1, 1, *UP], [[-1, 3], 1, *CAT1], [-1, 1, "EditIdentity", [48]], [-1, 1, *P3], [-1, 1, *DOWN],
             [[-1, 5], 1, *CAT1], [-1, 1, *P4], [[9, 12], 1, "Detect", ["nc"]]),
        {0: 0, 1: 1, 2: 2, 3: 4, 4: 5, 5: 6, 6: 7, 7: 9, 8: 10, 9: 11, 10: 12, 11: 13}, [3, 8],
    ),
}


@pytest.mark.parametrize("case", list(REWIRING))
def test_rewiring_of_hand_written_graphs(case):
    kwargs, backbone, head, index_map, inserted = REWIRING[case]
    result = editing.edit_with_map(graph(), **kwargs)
    assert result.model["backbone"] == backbone
    assert result.model["head"] == head
    assert result.index_map == index_map
    assert result.inserted == inserted
    assert list(result.model) == ["nc", "scales", "extra_key", "backbone", "head"]  # yaml_file dropped, rest kept
    if "replace" not in kwargs:  # inserted identities: the same outputs with the same weights
        base = build(graph())
        edited = build(result.model)
        transfer(base, edited, result.index_map, result.inserted)
        x = torch.rand(1, 3, IMG, IMG)
        assert all(torch.equal(a, b) for a, b in zip(outputs(edited, x), outputs(base, x)))


def test_edit_keeps_every_key_and_drops_the_loaders():
    d, _ = editing.load_model("yolov8-pose.yaml")
    d.update(ch=3, channels=3)
    out = editing.edit(d, insert="EditIdentity@p4")
    assert out["kpt_shape"] == d["kpt_shape"] and out["scales"] == d["scales"] and out["nc"] == d["nc"]
    assert not {"yaml_file", "ch", "channels", "scale"} & set(out)  # 'scale' was empty: yolov8-pose.yaml has none
    assert editing.edit("yolov8s.yaml", insert="EditIdentity@p4")["scale"] == "s"


def test_replace_sppf_matches_the_ablation_arms():
    """Replace keeps from, repeats and the unscaled channels, as the sweeps' arm YAMLs do."""
    out = editing.edit("yolo11.yaml", replace="FocalModulation@sppf", args=[3, 2, 2])
    assert out["backbone"][9] == [-1, 1, "FocalModulation", [1024, 3, 2, 2]]
    stock, _ = editing.load_model("yolo11.yaml")
    assert out["head"] == stock["head"] and out["backbone"][:9] == stock["backbone"][:9]


def test_args_per_block_and_nested_lists():
    out = editing.edit(
        "yolov8.yaml", insert=["PyramidPool@p3", "DyCAConv@p5"], args={"PyramidPool": [[1, 2], "max"]}
    )
    assert out["head"][6] == [-1, 1, "PyramidPool", [256, [1, 2], "max"]]
    assert out["head"][-2] == [-1, 1, "DyCAConv", [1024]]


def test_shipped_dyca_neck_yaml_is_the_tools_output():
    text = editing.edit_yaml("yolov8.yaml", insert="DyCAConv@p3,p4,p5", args=[3, 1, 32, "avg"])
    assert (YAML_DIR / "yolov8-dyca-neck.yaml").read_text() == text
    assert text.startswith("# yolo-necks edit of yolov8.yaml: insert=DyCAConv@p3,p4,p5 args=[3, 1, 32, avg]\n")
    model = DetectionModel(str(YAML_DIR / "yolov8n-dyca-neck.yaml"), verbose=False)
    assert [type(model.model[j]).__name__ for j in (16, 20, 24)] == ["DyCAConv"] * 3
    assert model.model[25].f == [16, 20, 24]


def test_lazy_api():
    assert yolo_necks.edit is editing.edit and yolo_necks.positions is editing.positions
    assert yolo_necks.edit_with_map is editing.edit_with_map


# ---------------------------------------------------------------------------------------------------- errors
ERRORS = [
    ({"insert": "DyCAConv@p9"}, ("yolov8.yaml: insert DyCAConv@p9: unknown position 'p9'; valid for this model: p3, "
                                 "p4, p5, backbone_p3, backbone_p4, backbone_p5, sppf or a layer index 0..21")),
    ({"insert": "DyCAConv@22"}, "layer index 22 is out of range; a block can follow layers 0..21 (layer 22 is the head)"),
    ({"insert": "DyCAConvv@p3"}, "yolov8.yaml: insert DyCAConvv@p3: unknown block 'DyCAConvv'; did you mean 'DyCAConv'"),
    ({"insert": "EditHalve@p3"}, ("EditHalve would change the channels after layer 15 (C2f) at scale n: expected 64, "
                                  "got 32")),
    ({"insert": "Conv@p3", "args": [3, 2]}, ("Conv would change the stride after layer 15 (C2f): expected 80x80 "
                                             "(stride 8), got 40x40 (stride 16)")),
    ({"insert": "DyCAConv@11"}, "would change the channels after layer 11 (Concat) at scale n: expected 384, got 256"),
    ({"insert": "DyCAConv@backbone_p5", "replace": "FocalModulation@sppf"},
     "edits collide: 'insert DyCAConv@backbone_p5' and 'replace FocalModulation@sppf' are both layer 9 (SPPF)"),
    ({"insert": "DyCAConv@p3,15"}, "edits collide: 'insert DyCAConv@p3' and 'insert DyCAConv@15' are both layer 15"),
    ({"insert": "DyCAConv"}, "insert 'DyCAConv' has no '@position'"),
    ({"insert": "DyCAConv@"}, "insert 'DyCAConv@' has an empty position"),
    ({"insert": "DyCAConv@p3,,p4"}, "insert 'DyCAConv@p3,,p4' has an empty position"),
    ({"replace": "@sppf"}, "replace '@sppf' names no block before '@'"),
    ({"insert": 3}, "insert must be 'Block@position[,position...]' or a list of them, got 3"),
    ({}, "nothing to edit"),
    ({"insert": "DyCAConv@p3", "args": [3, 1, 32, 7]}, "argument 'pool' expects str, got 7"),
    ({"insert": "DyCAConv@p3", "args": {"SKConv": []}}, "args given for SKConv, which no edit uses"),
    ({"replace": "DyCAConv@11"}, "replace DyCAConv@11: layer 11 (Concat) reads several layers [-1, 6]"),
]


@pytest.mark.parametrize("kwargs, expected", ERRORS)
def test_errors_are_one_line_and_say_what_is_wrong(kwargs, expected):
    with pytest.raises(NeckConfigError) as info:
        editing.edit("yolov8.yaml", **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("yolov8.yaml: ")
    assert expected in msg


def test_model_errors_name_the_file(tmp_path):
    with pytest.raises(NeckConfigError, match=r"^nope\.yaml: model YAML not found"):
        editing.edit("nope.yaml", insert="DyCAConv@p3")
    with pytest.raises(NeckConfigError, match=r"^yolov8\.yaml: scale 'q' is not in the model's scales \(n, s, m, l, x\)$"):
        editing.positions("yolov8.yaml", scale="q")
    bad = graph()
    bad["head"][4][0] = [-1, 40]
    with pytest.raises(NeckConfigError, match=r"^graph\.yaml: layer 9 \(Concat\): 'from' index 40 is out of range"):
        editing.edit(bad, insert="EditIdentity@p3")


# ------------------------------------------------------------------------------------------------------- CLI
def test_cli_edit_prints_or_writes_the_yaml(capsys, tmp_path):
    shipped = (YAML_DIR / "yolov8-dyca-neck.yaml").read_text()
    assert cli_main(["edit", "yolov8.yaml", "insert=DyCAConv@p3,p4,p5", "args=[3,1,32,avg]"]) == 0
    assert capsys.readouterr().out == shipped
    out = tmp_path / "yolov8-x.yaml"
    assert cli_main(["edit", "yolov8.yaml", "insert=DyCAConv@p3,p4,p5", "args=[3,1,32,avg]", f"out={out}"]) == 0
    assert out.read_text() == shipped
    assert cli_main(["edit", "yolov8.yaml", "insert=PyramidPool@p3", "insert=SKConv@sppf", "args={PyramidPool: [[1,2,4],avg]}"]) == 0
    text = capsys.readouterr().out
    assert "- [-1, 1, PyramidPool, [256, [1, 2, 4], avg]] # 17 <- inserted: PyramidPool@p3" in text
    assert "- [-1, 1, SKConv, [1024]] # 10 <- inserted: SKConv@sppf" in text


def test_cli_positions_prints_a_table(capsys):
    assert cli_main(["positions", "yolo11.yaml", "scale=s"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# yolo11.yaml at scale s: where 'yolo-necks edit' can put a block"
    assert lines[1].split() == ["name", "index", "module", "stride", "channels"]
    assert lines[2].split() == ["p3", "16", "C3k2", "8", "128"]
    assert ["sppf", "9", "SPPF", "32", "512"] in [line.split() for line in lines]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["edit", "yolov8.yaml", "insert=DyCAConv@p7"], ("yolo-necks edit: error: yolov8.yaml: insert DyCAConv@p7: "
                                                          "unknown position 'p7'")),
        (["edit", "yolov8.yaml", "insert=DyCAConv@p3", "args=[3,"], ("yolo-necks edit: error: edit: args=[3, is not a "
                                                                       "YAML list or mapping")),
        (["edit", "yolov8.yaml", "inset=DyCAConv@p3"], "unknown argument 'inset=DyCAConv@p3'"),
        (["positions", "yolov8.yaml", "scale=q"], "yolo-necks positions: error: yolov8.yaml: scale 'q' is not in"),
    ],
)
def test_cli_errors_exit_2_with_one_line(argv, expected, capsys):
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and expected in captured.err


def test_console_script_and_help():
    r = run_cmd([sys.executable, "-m", "yolo_necks.cli", "edit", "yolov8.yaml", "insert=DyCAConv@p9"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "unknown position 'p9'" in r.stderr, r.stderr
    for verb in ("edit", "positions"):
        assert cli_main([verb, "--help"]) == 0
    r = run_cmd([sys.executable, "-m", "yolo_necks.cli", "--help"])
    assert "edit" in r.stdout and "positions" in r.stdout


# ------------------------------------------------------------------------------------- train, reload, export
RELOAD_EXPORT = """
import json, numpy as np, onnxruntime as ort, torch
from ultralytics import YOLO
best, inserted = {best!r}, {inserted!r}
model = YOLO(best)
net = model.model
names = [type(net.model[j]).__name__ for j in inserted]
path = model.export(format="onnx", imgsz=64, device="cpu", verbose=False)
x = torch.rand(1, 3, 64, 64)
with torch.inference_mode():
    ref = YOLO(best).model.float().fuse().eval()(x)[0].numpy()
out = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {{"images": x.numpy()}})[0]
print(json.dumps({{"names": names, "head_from": net.model[-1].f, "diff": float(np.abs(out - ref).max())}}))
"""


@pytest.mark.slow
def test_edited_yaml_trains_with_the_stock_cli_reloads_and_exports(tiny_data, tmp_path):
    result = editing.edit_with_map("yolov8.yaml", insert="DyCAConv@p3,p4,p5", replace="FocalModulation@sppf")
    path = tmp_path / "yolov8n-edited.yaml"
    path.write_text(editing.edit_yaml("yolov8.yaml", insert="DyCAConv@p3,p4,p5", replace="FocalModulation@sppf"))
    yolo = shutil.which("yolo")
    assert yolo, "the ultralytics `yolo` console script is not on PATH"
    r = run_cmd(
        [
            yolo, "train", f"model={path}", f"data={tiny_data}", "epochs=1", "imgsz=64", "device=cpu", "batch=8",
            "workers=0", "plots=False", f"project={tmp_path}", "name=edited", "exist_ok=True",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    best = tmp_path / "edited" / "weights" / "best.pt"
    assert best.is_file()
    r = run_py(RELOAD_EXPORT.format(best=str(best), inserted=result.inserted), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["names"] == ["DyCAConv"] * 3
    assert got["head_from"] == result.inserted
    assert got["diff"] < 1e-3
    assert result.model["backbone"][9][2] == "FocalModulation"
