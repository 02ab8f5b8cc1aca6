"""No raw traceback is reachable from a model YAML: every malformed YAML gives one `NeckConfigError` line naming the
file, the layer and the module. Hypothesis mutates the shipped YAMLs (and stock yolov8n/yolo11n) at random; each
mutant must build or raise a one-line `NeckError`. Then one regression case per raw exception the fuzzing found."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch.nn as nn
import yaml
from conftest import YAML_DIR, run_py
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from ultralytics.nn.modules import Conv
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import yolo_necks
from yolo_necks.errors import NeckConfigError, NeckError

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:Initializing zero-element tensors"),  # mutants with 0-sized layers
]

WHERE = "model_yamls/yolov8n-x.yaml"  # what every message must start with (the dicts carry it as their yaml_file)
STOCK = ("yolov8n.yaml", "yolo11n.yaml")
BASES: dict[str, dict] = {}


@pytest.fixture(autouse=True, scope="module")
def _registered():
    yolo_necks.register()
    for path in sorted(YAML_DIR.glob("*.yaml")):
        BASES[path.name] = yaml_model_load(YAML_DIR / path.name.replace("-", "n-", 1))  # nano: quick to build
    for name in STOCK:
        BASES[name] = yaml_model_load(name)


def fresh(name: str) -> dict:
    d = copy.deepcopy(BASES[name])
    d["yaml_file"] = WHERE
    return d


def build(d: dict, nc: int | None = None) -> DetectionModel | NeckError:
    """Build the model, or return the one-line error (any other exception propagates and fails the test)."""
    try:
        return DetectionModel(d, nc=nc, verbose=False)
    except NeckError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        assert msg.startswith(WHERE), msg
        return e
    finally:
        assert isinstance(Conv.default_act, nn.SiLU), "a failed parse leaked the YAML's activation"


# ------------------------------------------------------------------------------------------------------ fuzzing
# Values stay small where a module would allocate by them (kernel sizes, upsampling factors): a wrong but huge value
# would test the machine's memory, not the error paths. Big channel counts go to args[0] of non-torch modules only.
FROMS = st.one_of(
    st.integers(-4, 12),
    st.lists(st.integers(-6, 12), min_size=1, max_size=3),
    st.integers(-30, 30),
    st.sampled_from(["a", 1.5, True, None, [], [[-1]], [-1, "x"]]),
)
REPEATS = st.one_of(st.integers(-2, 4), st.sampled_from([0.5, 2.0, "3", None, True, [1]]))
MODULES = st.sampled_from(
    ["Conv", "C2f", "SPPF", "SPP", "Concat", "Detect", "nn.Identity", "nn.BatchNorm2d", "FocalModulation", "DyCAConv",
     "SKConv", "PyramidPool", "FocalModulaton", "Frobnicator", "nn.Foo", "nn.functional", "torchvision.ops.Foo",
     "LOGGER", "parse_model", 5, None, ["Conv"]]
)
SMALL = st.one_of(
    st.integers(-4, 9),
    st.sampled_from([0.5, 2.5, True, False, None, "nc", "nearest", "bilinear", "x y", "", "[1, 2]", "None", "abc",
                     [], [3], [1, 2, 3], [0, 2], [[1]], {"a": 1}]),
)
CHANNELS = st.one_of(SMALL, st.sampled_from([8, 64, 256, 1024, 2048, -64, 255.5]))
TOP_LEVEL = {
    "nc": [1, 2, 80, 0, -1, "abc", None, 2.5, True],
    "scales": [None, {}, [1, 2], "n", {"s": [0.33, 0.5, 1024]}],
    "depth_multiple": [0.33, 0, -1, "x"],
    "width_multiple": [0.25, 0, -0.25, "x"],
    "activation": ["nn.ReLU()", "nn.LeakyReLU(0.1)", "nn.Foo()", "(((", 3],
    "reg_max": [16, 1, 0, -1, "x"],
    "backbone": [None, [], {}, "Conv", [[-1, 1, "Conv", [64, 3, 2]]]],
    "head": [None, [], {}, "Detect"],
}
SCALE_VALUES = [  # per position of [depth, width, max_channels]
    st.sampled_from([0.33, 1.0, 0, -1, "a", None]),
    st.sampled_from([0.25, 0.5, 0, -0.25, "a", None]),
    st.sampled_from([1024, 64, 7, 0, -1, "a", None]),
]


@st.composite
def mutations(draw, d: dict) -> list[str]:
    """Apply 1-2 random mutations to ``d`` in place; return their descriptions (for the failure report)."""
    done = []
    for _ in range(draw(st.integers(1, 2))):
        rows = (d.get("backbone") if isinstance(d.get("backbone"), list) else []) + (
            d.get("head") if isinstance(d.get("head"), list) else []
        )
        rows = [r for r in rows if isinstance(r, list) and len(r) == 4]
        kind = draw(st.sampled_from(["from", "repeats", "module", "arg", "arg", "args", "rows", "top", "scale"]))
        if kind in {"from", "repeats", "module", "arg", "args"} and rows:
            row = draw(st.sampled_from(rows))
            if kind == "from":
                row[0] = draw(FROMS)
            elif kind == "repeats":
                row[1] = draw(REPEATS)
            elif kind == "module":
                row[2] = draw(MODULES)
            elif kind == "arg" and isinstance(row[3], list) and row[3]:
                j = draw(st.integers(0, len(row[3]) - 1))
                torch_module = isinstance(row[2], str) and row[2].startswith("nn.")
                row[3][j] = draw(SMALL if j or torch_module else CHANNELS)
            elif kind == "args" and isinstance(row[3], list):
                action = draw(st.sampled_from(["append", "drop", "clear", "replace"]))
                if action == "append":
                    row[3].append(draw(SMALL))
                elif action == "drop" and row[3]:
                    row[3].pop()
                elif action == "clear":
                    row[3].clear()
                else:
                    row[3] = draw(st.sampled_from(["x", 3, None, {"c2": 64}]))
            done.append(f"{kind}: {row!r}")
        elif kind == "rows":
            section = draw(st.sampled_from(["backbone", "head"]))
            part = d.get(section)
            if isinstance(part, list) and part:
                k = draw(st.integers(0, len(part) - 1))
                action = draw(st.sampled_from(["drop", "duplicate", "swap", "garble"]))
                if action == "drop":
                    part.pop(k)
                elif action == "duplicate":
                    part.insert(k, copy.deepcopy(part[k]))
                elif action == "swap":
                    j = draw(st.integers(0, len(part) - 1))
                    part[k], part[j] = part[j], part[k]
                else:
                    part[k] = draw(st.sampled_from([[-1, 1, "Conv"], "Conv", None, [-1, 1, "Conv", [64], 5], {}]))
                done.append(f"{section} row {k}: {action}")
        elif kind == "top":
            key = draw(st.sampled_from(sorted(TOP_LEVEL)))
            if draw(st.booleans()) and key in d:
                del d[key]
                done.append(f"del {key}")
            else:
                d[key] = copy.deepcopy(draw(st.sampled_from(TOP_LEVEL[key])))
                done.append(f"{key} = {d[key]!r}")
        elif kind == "scale" and isinstance(d.get("scales"), dict) and isinstance(d["scales"].get("n"), list):
            value = list(d["scales"]["n"])
            action = draw(st.sampled_from(["set", "set", "drop", "append"]))
            if action == "set" and value:
                k = draw(st.integers(0, min(len(value), 3) - 1))
                value[k] = draw(SCALE_VALUES[k])
            elif action == "drop":
                value.pop()
            else:
                value.append(1)
            d["scales"]["n"] = value
            done.append(f"scales.n = {value!r}")
    return done


@st.composite
def mutants(draw) -> tuple[dict, list[str], int | None]:
    d = fresh(draw(st.sampled_from(sorted(BASES))))
    return d, draw(mutations(d)), draw(st.sampled_from([None, 2]))


@settings(max_examples=250, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(case=mutants())
def test_mutated_yamls_build_or_give_one_line_error(case):
    d, done, nc = case
    note(f"mutations: {done}; nc={nc}")
    result = build(d, nc)
    if isinstance(result, DetectionModel):
        assert "forward" not in vars(result)  # the one-shot stride-forward guard never outlives __init__


# -------------------------------------------------------------------------------------------- regression cases
def row(i: int, new) -> callable:
    def mutate(d):
        nb = len(d["backbone"])
        (d["backbone"] if i < nb else d["head"])[i if i < nb else i - nb] = new

    return mutate


def put(key: str, value) -> callable:
    return lambda d: d.__setitem__(key, value)


def drop(key: str) -> callable:
    return lambda d: d.pop(key)


def scale_n(value) -> callable:
    return lambda d: d["scales"].__setitem__("n", value)


EXPECTED_FROM_9 = "'from' index 99 is out of range; layer 9 can read 0..8, or -1..-9 counting back"
# case: (mutation of yolov8-focal.yaml at nano scale, nc override, raw exception before, expected message part)
REGRESSIONS = {
    "from-99-block": (
        row(9, [99, 1, "FocalModulation", [1024]]), 2, "IndexError", f"layer 9 (FocalModulation): {EXPECTED_FROM_9}"
    ),
    "from-minus-20-builtin": (
        row(3, [-20, 1, "Conv", [256, 3, 2]]), None, "IndexError", "layer 3 (Conv): 'from' index -20 is out of range"
    ),
    "from-forward-reference": (
        row(11, [[-1, 15], 1, "Concat", [1]]), None, "IndexError", "layer 11 (Concat): 'from' index 15 is out of range"
    ),
    "from-0-at-layer-0": (
        row(0, [0, 1, "Conv", [64, 3, 2]]), None, "ZeroDivisionError",
        "layer 0 (Conv): 'from' index 0 is out of range; layer 0 can read -1 (the input image)",
    ),
    "from-not-int": (
        row(3, ["a", 1, "Conv", [256, 3, 2]]), None, "TypeError",
        "layer 3 (Conv): 'from' must be a layer index or a list of them, got 'a'",
    ),
    "from-list-to-one-input": (
        row(3, [[-1, 1], 1, "Conv", [256, 3, 2]]), None, "TypeError",
        "layer 3 (Conv): takes one input, but 'from' is [-1, 1]; expected args for Conv(c1, c2, k=1",
    ),
    "from-int-to-concat": (
        row(11, [-1, 1, "Concat", [1]]), None, "TypeError", "layer 11 (Concat): takes several inputs, but 'from' is -1"
    ),
    "from-int-to-detect": (
        row(22, [21, 1, "Detect", ["nc"]]), None, "TypeError",
        "layer 22 (Detect): takes several inputs, but 'from' is 21",
    ),
    "from-empty-list": (
        row(11, [[], 1, "Concat", [1]]), None, "ValueError", "layer 11 (Concat): 'from' is an empty list"
    ),
    "concat-size-mismatch": (
        row(11, [[-1, 8], 1, "Concat", [1]]), None, "RuntimeError",
        "layer 11 (Concat): forward pass failed on input [1x256x16x16, 1x256x8x8] from 'from' [-1, 8] "
        "(RuntimeError: Sizes of tensors must match",
    ),
    "block-stride-breaks-concat": (
        row(9, [-1, 1, "DyCAConv", [1024, 3, 2]]), None, "RuntimeError",
        "layer 11 (Concat): forward pass failed on input [1x256x8x8, 1x128x16x16]",
    ),
    "dropped-row": (
        lambda d: d["backbone"].pop(5), None, "IndexError", "layer 21 (Detect): 'from' index 21 is out of range"
    ),
    "torch-nn-wrong-args": (
        row(10, [-1, 1, "nn.Conv2d", [None, 2, "nearest"]]), None, "TypeError",
        "layer 10 (nn.Conv2d): does not build from these args (TypeError: ",
    ),
    "torchvision-unknown": (
        row(10, [-1, 1, "torchvision.ops.Foo", []]), None, "AttributeError",
        "layer 10 (torchvision.ops.Foo): torchvision.ops has no module 'Foo'",
    ),
    "not-a-layer": (
        row(10, [-1, 1, "LOGGER", []]), None, "TypeError",
        "layer 10 (LOGGER): 'LOGGER' in ultralytics.nn.tasks is not a layer",
    ),
    "builtin-no-args": (
        row(3, [-1, 1, "Conv", []]), None, "IndexError",
        "layer 3 (Conv): output channels (args[0]) must be a positive number, args are empty",
    ),
    "builtin-negative-channels": (
        row(3, [-1, 1, "Conv", [-256, 3, 2]]), None, "RuntimeError",
        "layer 3 (Conv): output channels (args[0]) must be a positive number, got -256",
    ),
    "builtin-zero-channels": (
        row(3, [-1, 1, "Conv", [0, 3, 2]]), None, "RuntimeError",
        "layer 3 (Conv): output channels (args[0]) must be a positive number, got 0",
    ),
    "builtin-nested-channels": (row(3, [-1, 1, "Conv", [[256], 3, 2]]), None, "TypeError", "got [256]"),
    "builtin-string-channels": (
        row(3, [-1, 1, "Conv", ["abc", 3, 2]]), None, "TypeError",
        "layer 3 (Conv): does not build from these args (TypeError: '<' not supported",
    ),
    "builtin-too-many-args": (
        row(3, [-1, 1, "Conv", [256, 3, 2, 1, 1, 1, 1, 1, 1]]), None, "TypeError",
        "layer 3 (Conv): does not build from these args (TypeError: Conv.__init__() takes from 3 to 9",
    ),
    "arg-not-a-literal": (
        row(3, [-1, 1, "Conv", [256, "x y", 2]]), None, "SyntaxError",
        "layer 3 (Conv): argument 1 'x y' is neither a literal",
    ),
    "block-arg-not-a-literal": (
        row(9, [-1, 1, "FocalModulation", ["3 x"]]), None, "SyntaxError",
        "layer 9 (FocalModulation): argument 0 '3 x' is neither a literal",
    ),
    "builtin-zero-kernel": (
        row(9, [-1, 1, "SPPF", [1024, 0]]), None, "RuntimeError",
        "layer 9 (SPPF): forward pass failed on input 1x256x8x8",
    ),
    "concat-bad-dim": (
        row(11, [[-1, 6], 1, "Concat", [5]]), None, "IndexError", "layer 11 (Concat): forward pass failed"
    ),
    "upsample-bad-mode": (
        row(10, [-1, 1, "nn.Upsample", [None, 2, "bogus"]]), None, "NotImplementedError",
        "layer 10 (nn.Upsample): forward pass failed",
    ),
    "upsample-no-args": (
        row(10, [-1, 1, "nn.Upsample", []]), None, "ValueError", "layer 10 (nn.Upsample): forward pass failed"
    ),
    "detect-no-args": (
        row(22, [[15, 18, 21], 1, "Detect", []]), None, "TypeError", "layer 22 (Detect): does not build from these args"
    ),
    "detect-negative-classes": (
        row(22, [[15, 18, 21], 1, "Detect", [-1]]), None, "RuntimeError",
        "layer 22 (Detect): does not build from these args (RuntimeError: Trying to create tensor with "
        "negative dimension",
    ),
    "no-head": (
        drop("head"), None, "KeyError", "'head' must be a list of [from, number, module, args] rows; it is missing"
    ),
    "head-none": (
        put("head", None), None, "TypeError", "'head' must be a list of [from, number, module, args] rows; got None"
    ),
    "no-backbone": (
        drop("backbone"), None, "KeyError",
        "'backbone' must be a list of [from, number, module, args] rows; it is missing",
    ),
    "empty-backbone": (put("backbone", []), None, "IndexError", "'backbone' is empty"),
    "no-nc-with-override": (
        drop("nc"), 2, "KeyError", "the YAML sets no 'nc' (number of classes); expected e.g. 'nc: 80'"
    ),
    "no-nc": (drop("nc"), None, "TypeError", "the YAML sets no 'nc' (number of classes)"),
    "nc-string": (put("nc", "abc"), None, "TypeError", "'nc' (number of classes) must be an int >= 1, got 'abc'"),
    "nc-zero": (put("nc", 0), None, "RuntimeError", "'nc' (number of classes) must be an int >= 1, got 0"),
    "scale-missing": (
        lambda d: d["scales"].pop("n"), None, "KeyError",
        "scale 'n' (the letter after the version in the file name) is not in 'scales'; expected one of s, m, l, x",
    ),
    "scale-short": (
        scale_n([0.33, 0.25]), None, "ValueError",
        "scales['n'] must be [depth, width, max_channels] of positive numbers, got [0.33, 0.25]",
    ),
    "scale-negative-width": (
        scale_n([0.33, -0.25, 1024]), None, "RuntimeError", "scales['n'] must be [depth, width, max_channels]"
    ),
    "scale-string-width": (
        scale_n([0.33, "a", 1024]), None, "TypeError", "scales['n'] must be [depth, width, max_channels]"
    ),
    "scales-not-a-mapping": (
        put("scales", [1, 2]), None, "TypeError", "'scales' must map scale letters to [depth, width, max_channels]"
    ),
    "width-multiple-negative": (
        lambda d: (d.pop("scales"), d.update(width_multiple=-1)), None, "RuntimeError",
        "'width_multiple' must be a positive number, got -1",
    ),
    "activation-unknown": (
        put("activation", "nn.Foo()"), None, "AttributeError",
        "'activation' 'nn.Foo()' does not build (AttributeError: module 'torch.nn' has no attribute 'Foo')",
    ),
    "activation-syntax": (
        put("activation", "((("), None, "SyntaxError", "'activation' '(((' does not build (SyntaxError"
    ),
    "activation-not-a-string": (
        put("activation", 3), None, "TypeError",
        "'activation' must be a torch.nn module call such as 'nn.ReLU()', got 3",
    ),
    "reg-max-zero": (put("reg_max", 0), None, "RuntimeError", "'reg_max' must be an int >= 1, got 0"),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_formerly_raw_exception_is_one_clear_line(case):
    mutate, nc, _raw_before, expected = REGRESSIONS[case]
    d = fresh("yolov8-focal.yaml")
    mutate(d)
    with pytest.raises(NeckConfigError) as info:
        DetectionModel(d, nc=nc, verbose=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{WHERE}: ")
    assert expected in msg


def test_initialize_wrapped_once():
    import ultralytics.nn.tasks as tasks

    yolo_necks.register()
    wrapper = tasks._initialize_yolo_model
    assert getattr(wrapper, "_yolo_necks_wrapper", False)
    assert not getattr(wrapper.__wrapped__, "_yolo_necks_wrapper", False)


def test_failed_parse_restores_activation():
    d = fresh("yolov8-focal.yaml")
    d["activation"] = "nn.ReLU()"
    row(3, [-1, 1, "Conv", [256, 3, 2, 1, 1, 1, 1, 1, 1]])(d)  # fails inside the stock parser, after the activation
    with pytest.raises(NeckConfigError, match="layer 3"):
        DetectionModel(d, verbose=False)
    assert isinstance(Conv.default_act, nn.SiLU)


@pytest.mark.parametrize("name", ["yolov8-focal.yaml", "yolov8n.yaml"])
@pytest.mark.parametrize("bad", [99, -20])
def test_from_out_of_range_in_a_file_via_yolo_and_detection_model(tmp_path, name, bad):
    """The issue's reproduction: one of ours and a stock YAML, through `YOLO(path)` and `DetectionModel(path)`."""
    from ultralytics import YOLO

    d = fresh(name) if name in STOCK else yaml.safe_load((YAML_DIR / name).read_text())
    for key in ("yaml_file", "scale"):
        d.pop(key, None)
    d["backbone"][9][0] = bad
    path = tmp_path / (name if name in STOCK else "yolov8n-x.yaml")
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    expected = f"{path}: layer 9 ({d['backbone'][9][2]}): 'from' index {bad} is out of range; layer 9 can read 0..8"
    for make in (lambda: DetectionModel(str(path), nc=2, verbose=False), lambda: YOLO(str(path))):
        with pytest.raises(NeckConfigError) as info:
            make()
        assert str(info.value).startswith(expected)


def first_model_error(tmp_path, change) -> tuple[str, str, Path]:
    """Build ``yolov8-focal.yaml`` changed by ``change(d)`` as the first model of a fresh process (through the
    start-up hook, before any ``register()``); return the exception type, its message and the YAML path."""
    d = yaml.safe_load((YAML_DIR / "yolov8-focal.yaml").read_text())
    change(d)
    path = tmp_path / "yolov8n-x.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    code = (
        "import json\n"
        "from ultralytics.nn.tasks import DetectionModel\n"
        f"try:\n    DetectionModel({str(path)!r}, verbose=False)\n"
        "except Exception as e:\n    print(json.dumps([type(e).__name__, str(e)]))\n"
    )
    r = run_py(code)
    assert r.returncode == 0, r.stderr[-2000:]
    kind, msg = json.loads(r.stdout.strip().splitlines()[-1])
    return kind, msg, path


def test_forward_error_in_a_fresh_process_without_register(tmp_path):
    """The first model of a process is parsed before `register()` wrapped anything (the start-up hook registers then):
    its stride-forward failure must still be one line."""
    kind, msg, path = first_model_error(tmp_path, lambda d: d["head"][1].__setitem__(0, [-1, 8]))
    assert kind == "NeckConfigError"
    assert msg.startswith(f"{path}: layer 11 (Concat): forward pass failed on input [1x256x16x16, 1x256x8x8]")


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.pop("backbone"), "'backbone' must be a list of [from, number, module, args] rows; it is missing"),
    (lambda d: d.__setitem__("backbone", []), "'backbone'"),
])
def test_keys_read_before_parsing_in_a_fresh_process_without_register(tmp_path, change, expected):
    """ultralytics reads 'backbone' and 'nc' before it parses; the start-up hook wraps that step too, so even the
    first model of a process (before register() ran) gets the one-line error."""
    kind, msg, path = first_model_error(tmp_path, change)
    assert kind == "NeckConfigError" and msg.startswith(str(path)) and expected in msg and "\n" not in msg


STOCK_WEIGHTS_CODE = """
import hashlib, json, sys, torch
from ultralytics.nn.tasks import DetectionModel, SegmentationModel, PoseModel, SemanticSegmentationModel
out = {}
models = [(DetectionModel, "yolov8n.yaml"), (SegmentationModel, "yolo11n-seg.yaml"), (PoseModel, "yolov8n-pose.yaml"),
          (SemanticSegmentationModel, "yolo26n-sem.yaml")]
for cls, name in models:
    torch.manual_seed(0)
    m = cls(name, verbose=False)
    h = hashlib.sha256()
    for k, v in m.state_dict().items():
        h.update(k.encode()); h.update(v.detach().float().numpy().tobytes())
    out[name] = [h.hexdigest(), sorted(vars(m)), m.stride.tolist()]
print(json.dumps({"out": out, "plugin": "yolo_necks" in sys.modules}))
"""


def test_stock_models_bit_for_bit_with_and_without_plugin():
    """Weights (same seed), strides and instance attributes of stock models match a process with the plugin off."""
    runs = {flag: run_py(STOCK_WEIGHTS_CODE, env={"YOLO_NECKS_AUTOLOAD": flag}) for flag in ("0", "1")}
    results = {}
    for flag, r in runs.items():
        assert r.returncode == 0, r.stderr[-2000:]
        results[flag] = json.loads(r.stdout.strip().splitlines()[-1])
    assert results["0"]["plugin"] is False and results["1"]["plugin"] is True
    assert results["0"]["out"] == results["1"]["out"]


def test_every_ultralytics_yaml_passes_the_validation():
    """The checks must never reject a YAML ultralytics ships (classify, RT-DETR, world, P2/P6, ... included)."""
    from pathlib import Path

    import ultralytics

    from yolo_necks.validate import validate_model_dict

    files = sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml"))
    assert len(files) > 30
    for path in files:
        validate_model_dict(yaml_model_load(path))
