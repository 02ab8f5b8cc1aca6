"""Registration: blocks by name in model YAMLs, channel/width/depth inference, stock YAMLs untouched, third-party
blocks (decorator and entry point), compatibility checks and clear errors for malformed YAMLs."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
import types

import pytest
import torch
import torch.nn as nn
import yaml
from conftest import ROOT, YAML_DIR, run_cmd, run_py
from ultralytics.nn.modules import Conv
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils.ops import make_divisible

import yolo_necks
from yolo_necks import registry
from yolo_necks.errors import NeckConfigError, UltralyticsCompatError

SIGNATURE_CODE = """
import json, sys
from ultralytics.nn.tasks import DetectionModel
out = {}
for name in sys.argv[1:] or ["yolov8n.yaml", "yolo11n.yaml"]:
    m = DetectionModel(name, verbose=False)
    out[name] = [[type(x).__module__ + "." + type(x).__qualname__, sum(p.numel() for p in x.parameters(recurse=False))]
                 for x in m.modules()]
print(json.dumps({"sig": out, "plugin_loaded": "yolo_necks" in sys.modules}))
"""


def signature(model: nn.Module) -> list:
    return [
        [type(x).__module__ + "." + type(x).__qualname__, sum(p.numel() for p in x.parameters(recurse=False))]
        for x in model.modules()
    ]


@pytest.fixture(autouse=True, scope="module")
def _registered():
    yolo_necks.register()


def channels_at(model: DetectionModel, index: int, imgsz: int = 64) -> tuple[int, int]:
    """(input, output) channels of layer ``index`` observed in a forward pass."""
    seen = {}
    handle = model.model[index].register_forward_hook(lambda m, i, o: seen.update(cin=i[0].shape[1], cout=o.shape[1]))
    model.eval()
    with torch.inference_mode():
        model(torch.zeros(1, 3, imgsz, imgsz))
    handle.remove()
    return seen["cin"], seen["cout"]


# ------------------------------------------------------------------------------------------------ stock untouched
def test_stock_yamls_unaffected_by_plugin():
    with_plugin = {n: signature(DetectionModel(n, verbose=False)) for n in ("yolov8n.yaml", "yolo11n.yaml")}
    r = run_py(SIGNATURE_CODE, env={"YOLO_NECKS_AUTOLOAD": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    without = json.loads(r.stdout.strip().splitlines()[-1])
    assert without["plugin_loaded"] is False
    assert without["sig"] == with_plugin


def test_sppf_yaml_is_stock_yolov8():
    ours = DetectionModel(str(YAML_DIR / "yolov8n-sppf.yaml"), verbose=False)
    stock = DetectionModel("yolov8n.yaml", verbose=False)
    assert signature(ours) == signature(stock)


def test_builtin_names_never_shadowed():
    import ultralytics.nn.modules.block as block
    import ultralytics.nn.tasks as tasks

    assert tasks.SPPF is block.SPPF and tasks.SPP is block.SPP and tasks.Conv is Conv
    with pytest.raises(NeckConfigError, match="never shadowed"):
        yolo_necks.register_block(type("SPPF", (nn.Module,), {"__init__": lambda self, c1, c2: nn.Module.__init__(self)}))


def test_register_is_idempotent_and_lists_blocks():
    first = yolo_necks.register()
    second = yolo_necks.register()
    assert first == second
    assert {"FocalModulation", "DyCAConv", "SKConv", "PyramidPool"} <= set(first)
    import ultralytics.nn.tasks as tasks

    assert getattr(tasks.parse_model, "_yolo_necks_wrapper", False)
    assert not getattr(tasks.parse_model.__wrapped__, "_yolo_necks_wrapper", False)  # wrapped once, not twice
    safe = {c for c in torch.serialization.get_safe_globals() if isinstance(c, type)}
    assert set(first.values()) <= safe


# ------------------------------------------------------------------------------------------- channels and scales
@pytest.mark.parametrize("scale", list("nsmlx"))
def test_channels_follow_width_and_max_channels(scale):
    d = yaml_model_load(YAML_DIR / f"yolov8{scale}-dyca.yaml")
    depth, width, max_ch = d["scales"][scale]
    model = DetectionModel(str(YAML_DIR / f"yolov8{scale}-dyca.yaml"), verbose=False)
    layer = model.model[9]
    assert type(layer).__name__ == "DyCAConv"
    assert (layer.i, layer.f, layer.type) == (9, -1, "yolo_necks.blocks.dyca.DyCAConv")
    assert layer.np == sum(p.numel() for p in layer.parameters())
    cin, cout = channels_at(model, 9)
    assert cin == make_divisible(min(1024, max_ch) * width, 8)  # c1 = output of layer 8 (C2f 1024)
    assert cout == make_divisible(min(1024, max_ch) * width, 8)
    # the next consumer (Concat at 20 -> C2f 21) got the right channels: a forward pass above already proved it


def test_c2_differs_from_c1_and_depth_repeats():
    d = yaml_model_load(YAML_DIR / "yolov8l-focal.yaml")  # depth 1.0, width 1.0, max 512
    d["backbone"][9] = [-1, 3, "FocalModulation", [256, 3, 2]]
    model = DetectionModel(copy.deepcopy(d), verbose=False)
    seq = model.model[9]
    assert isinstance(seq, nn.Sequential) and len(seq) == 3
    assert all(type(b).__name__ == "FocalModulation" for b in seq)
    assert channels_at(model, 9) == (512, 256)
    assert seq.np == sum(p.numel() for p in seq.parameters())
    d["scale"] = "n"  # depth 0.33: round(3 * 0.33) = 1 copy
    model_n = DetectionModel(copy.deepcopy(d), verbose=False)
    assert type(model_n.model[9]).__name__ == "FocalModulation"


def test_activation_key_reaches_our_blocks():
    d = yaml_model_load(YAML_DIR / "yolov8n-dyca.yaml")
    d["activation"] = "nn.ReLU()"
    model = DetectionModel(copy.deepcopy(d), verbose=False)
    convs = [m for m in model.model[9].modules() if isinstance(m, Conv)]
    assert convs and any(isinstance(c.act, nn.ReLU) for c in convs)
    assert isinstance(Conv.default_act, nn.SiLU)  # restored afterwards


# ----------------------------------------------------------------------------------------------- bad model YAMLs
GOOD_ROW = "[-1, 1, SPPF, [1024, 5]]"
MALFORMED = {
    "typo": ("[-1, 1, FocalModulaton, [1024]]", "unknown module 'FocalModulaton'; did you mean 'FocalModulation'"),
    "unknown": ("[-1, 1, Frobnicator, [1024]]", "unknown module 'Frobnicator'"),
    "too-many-args": ("[-1, 1, FocalModulation, [1024, 3, 2, 2, False, False, 7]]", "too many positional arguments"),
    "str-for-int": ("[-1, 1, FocalModulation, [1024, big]]", "argument 'focal_window' expects int, got 'big'"),
    "bool-for-int": ("[-1, 1, FocalModulation, [1024, 3, True]]", "argument 'focal_level' expects int, got True"),
    "float-for-int": ("[-1, 1, DyCAConv, [1024, 3.5]]", "argument 'k' expects int, got 3.5"),
    "several-inputs": ("[[-1, 6], 1, DyCAConv, [1024]]", "takes one input, but 'from' is [-1, 6]"),
    "from-out-of-range": ("[99, 1, DyCAConv, [1024]]", "'from' index 99 is out of range; layer 9 can read 0..8, or"),
    "from-out-of-range-builtin": ("[-20, 1, SPPF, [1024, 5]]", "'from' index -20 is out of range; layer 9 can read"),
    "missing-c2": ("[-1, 1, SKConv, []]", "missing output channels"),
    "negative-c2": ("[-1, 1, SKConv, [-8]]", "output channels (args[0]) must be a positive int"),
    "bad-pool-value": ("[-1, 1, DyCAConv, [1024, 3, 1, 32, median]]", "pool"),
    "bad-levels-type": ("[-1, 1, PyramidPool, [1024, abc]]", "argument 'levels' expects a list of int"),
    "bad-levels-value": ("[-1, 1, PyramidPool, [1024, [0, 2]]]", "levels"),
    "short-row": ("[-1, 1, SKConv]", "expected [from, number, module, args]"),
    "zero-repeats": ("[-1, 0, SKConv, [1024]]", "number of repeats must be an int >= 1"),
    "bad-torch-nn": ("[-1, 1, nn.Frobnicate, []]", "torch.nn has no module 'Frobnicate'"),
    "unknown-kwarg-style": ("[-1, 1, SKConv, [1024, {M: 2}]]", "argument 'M' expects int"),
}


def write_variant(tmp_path, row: str, name: str = "bad") -> str:
    text = (YAML_DIR / "yolov8-sppf.yaml").read_text()
    assert GOOD_ROW in text
    path = tmp_path / f"yolov8n-{name}.yaml"
    path.write_text(text.replace(GOOD_ROW, row))
    return str(path)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_yaml_gives_one_clear_error(tmp_path, case):
    row, expected = MALFORMED[case]
    path = write_variant(tmp_path, row, case)
    with pytest.raises(NeckConfigError) as info:
        DetectionModel(path, verbose=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"yolov8n-{case}.yaml: layer 9" in msg
    assert expected in msg
    module = yaml.safe_load(f"x: {row}")["x"]
    if isinstance(module, list) and len(module) > 2:
        assert str(module[2]) in msg


def test_stock_cli_prints_one_line_error(tmp_path):
    path = write_variant(tmp_path, MALFORMED["typo"][0], "typo")
    r = run_cmd(["yolo", "train", f"model={path}", "data=coco8.yaml", "epochs=1", "device=cpu"], cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("yolo-necks: error: ") and "did you mean 'FocalModulation'" in last


# ------------------------------------------------------------------------------------------ third-party blocks
class TinyGate(nn.Module):
    """A block defined only in the tests: 1x1 Conv then a sigmoid gate."""

    def __init__(self, c1: int, c2: int, gain: float = 1.0):
        super().__init__()
        self.cv = Conv(c1, c2, 1)
        self.gain = gain

    def forward(self, x):
        y = self.cv(x)
        return y * torch.sigmoid(self.gain * y)


def test_register_block_decorator(tmp_path):
    try:
        decorated = yolo_necks.register_block(TinyGate)
        assert decorated is TinyGate
        path = write_variant(tmp_path, "[-1, 1, TinyGate, [512, 2.0]]", "gate")
        model = DetectionModel(path, verbose=False)
        assert isinstance(model.model[9], TinyGate) and model.model[9].gain == 2.0
        assert channels_at(model, 9) == (256, 128)  # n scale: 1024*0.25 in, 512*0.25 out
        assert "TinyGate" in yolo_necks.registered_blocks()
    finally:
        yolo_necks.unregister_block("TinyGate")
    with pytest.raises(NeckConfigError, match="unknown module 'TinyGate'"):
        DetectionModel(path, verbose=False)


def test_register_block_rejects_reserved_attribute_and_bad_signature():
    class Bad(nn.Module):
        f = 3

        def __init__(self, c1, c2):
            super().__init__()

    with pytest.raises(NeckConfigError, match="reserved"):
        yolo_necks.register_block(Bad)

    class NoChannels(nn.Module):
        def __init__(self):
            super().__init__()

    with pytest.raises(NeckConfigError, match=r"must take \(c1, c2"):
        yolo_necks.register_block(NoChannels)


def test_entry_point_registration(tmp_path, monkeypatch):
    (tmp_path / "neck_plugin_demo.py").write_text(
        textwrap.dedent(
            """
            import torch.nn as nn
            from ultralytics.nn.modules import Conv

            class DemoNeck(nn.Module):
                def __init__(self, c1: int, c2: int, k: int = 3):
                    super().__init__()
                    self.cv = Conv(c1, c2, k)

                def forward(self, x):
                    return self.cv(x)
            """
        )
    )
    dist = tmp_path / "neck_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: neck-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[yolo_necks.blocks]\nDemoNeck = neck_plugin_demo:DemoNeck\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        blocks = yolo_necks.register()
        assert "DemoNeck" in blocks and blocks["DemoNeck"].__module__ == "neck_plugin_demo"
        model = DetectionModel(write_variant(tmp_path, "[-1, 1, DemoNeck, [1024, 1]]", "demo"), verbose=False)
        assert type(model.model[9]).__name__ == "DemoNeck"
    finally:
        yolo_necks.unregister_block("DemoNeck")
        sys.modules.pop("neck_plugin_demo", None)


# ----------------------------------------------------------------------------------------------- compatibility
def fake_tasks(parse_model) -> types.ModuleType:
    mod = types.ModuleType("fake_tasks")
    mod.parse_model = parse_model
    mod.Conv = Conv
    mod.make_divisible = make_divisible
    return mod


def test_compat_error_on_changed_signature():
    def parse_model(cfg, channels):
        raise AssertionError("must not be called")

    with pytest.raises(UltralyticsCompatError) as info:
        registry._install(fake_tasks(parse_model))
    msg = str(info.value)
    assert "ultralytics 8." in msg and "signature changed" in msg


def test_compat_error_when_parser_ignores_registered_names():
    def parse_model(d, ch, verbose=True):  # a parser that no longer infers channels for our proxies
        layers = [Conv(ch, 16, 3, 2), Conv(16, 16, 1), Conv(16, 8, 1)]
        for i, m in enumerate(layers):
            m.i, m.f, m.type, m.np = i, -1, "Conv", 0
        return nn.Sequential(*layers), []

    with pytest.raises(UltralyticsCompatError, match="parse_model internals changed"):
        registry._install(fake_tasks(parse_model))


def test_compat_error_when_names_missing():
    mod = types.ModuleType("fake_tasks")
    with pytest.raises(UltralyticsCompatError, match="has no parse_model, Conv, make_divisible"):
        registry._install(mod)


# ------------------------------------------------------------------------------------------------- start-up hook
def test_autoload_imports_neither_torch_nor_ultralytics():
    r = run_py("import sys; print('yolo_necks_autoload' in sys.modules, 'torch' in sys.modules, 'ultralytics' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False", "False"]


BUILD_FOCAL = (
    "from ultralytics.nn.tasks import DetectionModel\n"
    "m = DetectionModel('model_yamls/yolov8n-focal.yaml', verbose=False)\n"
    "print(type(m.model[9]).__name__)\n"
)


def test_autoload_fresh_process_without_user_code():
    r = run_py(BUILD_FOCAL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "FocalModulation"


def test_autoload_switch_off():
    r = run_py(BUILD_FOCAL, env={"YOLO_NECKS_AUTOLOAD": "0"})
    assert r.returncode != 0
    assert "FocalModulation" in r.stderr


def test_autoload_reaches_distributed_workers(tmp_path):
    """Workers started by torch.distributed.run (as ultralytics' multi-GPU DDP does) resolve our blocks."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import os, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "from ultralytics.nn.tasks import DetectionModel\n"
        "m = DetectionModel('model_yamls/yolov8n-focal.yaml', verbose=False)\n"
        # one write per worker: the unbuffered prints of two processes can interleave on the shared pipe
        "os.write(1, f\"{os.environ['RANK']} {type(m.model[9]).__name__}\\n\".encode())\n"
        + "dist.barrier()\ndist.destroy_process_group()\n"
    )
    r = run_cmd(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        cwd=ROOT,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = sorted(line for line in r.stdout.splitlines() if line.endswith("FocalModulation"))
    assert lines == ["0 FocalModulation", "1 FocalModulation"]
