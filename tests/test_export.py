"""Exports with dynamic input sizes: every block and every model YAML, traced at one size, computes at other sizes
what the PyTorch module computes there.

Traces freeze Python-level branches and ints, so size-dependent shortcuts (PyramidPool's hierarchical pooling) and
size-dependent ops (adaptive pooling, which ONNX turns into a fixed-kernel pooling) are what break. Checked here:

- the export-only pooling (bin masks) against ``F.adaptive_*_pool2d``: max bit-exact, avg ``atol=1e-6, rtol=1e-5``;
- PyramidPool's export path run eagerly against the plain reference (``yolo_necks.reference``): fp32
  ``atol=1e-5, rtol=1e-5``, fp64 ``atol=1e-12, rtol=0``, at nested and non-nested sizes;
- blocks traced (``torch.jit.trace``), exported to ONNX with dynamic H, W (``dynamo=False``, opset 17, as ultralytics
  does) and exported with ``torch.export`` at one size, then run at other sizes (smaller than every pyramid grid,
  non-square, nested and not): against the reference, fp32 ``atol=1e-5, rtol=1e-5``;
- every model YAML (nano scale, nc=4) through ultralytics' ``export(format="onnx", dynamic=True)`` at 128 px (where
  PyramidPool's eager path is the hierarchical one) and run in ONNX Runtime at 128x128, 96x160 and 256x128, and
  through ``export(format="torchscript")`` loaded with ``torch.jit.load``: with ``dynamic=True`` at the same three
  sizes, with ``dynamic=False`` (ultralytics' Detect head then bakes its anchor grid) at the export size only.
  Against the fused PyTorch model on the raw Detect output, fp32, both formats: boxes (pixels, up to ~900 in
  magnitude here) ``atol=0.1, rtol=1e-3``, class scores (in [0, 1]) ``atol=1e-3, rtol=1e-3``. BatchNorm statistics
  are calibrated on noise so that features stay O(1) through the random-init model (ONNX Runtime's and PyTorch's
  fp32 rounding then differs by up to ~0.04 px); scaling the neck's output by 1.1 must move the boxes beyond the
  tolerance (by tens of pixels), so the comparison sees the neck.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import YAML_DIR

import yolo_necks
from yolo_necks.blocks import DyCAConv, FocalModulation, PyramidPool, SKConv, pooling, pyramid, spp_vector
from yolo_necks.reference import reference_forward, reference_spp_vector

FP32 = {"atol": 1e-5, "rtol": 1e-5}
FP64 = {"atol": 1e-12, "rtol": 0.0}
AVG_POOL = {"atol": 1e-6, "rtol": 1e-5}
BOXES = {"atol": 0.1, "rtol": 1e-3}
SCORES = {"atol": 1e-3, "rtol": 1e-3}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_bn(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so BatchNorm is not the identity."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
    return module


# ------------------------------------------------------------------------------------------- export-only pooling
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (5, 5), (7, 13), (10, 10), (12, 9), (20, 20)])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 6])
def test_pool_by_masks_matches_adaptive_pooling(hw, size):
    x = torch.randn(2, 3, *hw) * 3.0
    assert torch.equal(pooling.pool_by_masks(x, size, "max"), F.adaptive_max_pool2d(x, size))
    torch.testing.assert_close(pooling.pool_by_masks(x, size, "avg"), F.adaptive_avg_pool2d(x, size), **AVG_POOL)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 20])
@pytest.mark.parametrize("size", [1, 2, 4, 6])
def test_bin_masks_are_adaptive_bins(n, size):
    """Row i covers [floor(i n / l), ceil((i + 1) n / l)): every bin non-empty, every position covered."""
    mask = pooling.bin_masks(n, size)
    assert mask.shape == (size, n) and mask.dtype == torch.bool
    for i in range(size):
        start, end = (i * n) // size, -((-(i + 1) * n) // size)
        assert mask[i].nonzero().flatten().tolist() == list(range(start, end))
    assert mask.any(0).all()


PYRAMIDS = [((1, 2, 4), "avg"), ((1, 2, 4), "max"), ((1, 3, 6), "avg"), ((2, 1), "max")]
EXPORT_SIZES = [(1, 1), (2, 3), (7, 13), (8, 8), (12, 12), (12, 18), (16, 8)]  # nested and not, for every pyramid


@pytest.mark.parametrize("levels,pool", PYRAMIDS)
def test_pyramid_pool_export_path_matches_reference(levels, pool, monkeypatch):
    """The path a trace records, run eagerly (export flag forced on), equals the plain reference at every size, and
    leaves only global (1x1) pooling to the native adaptive kernels."""
    block = randomize_bn(PyramidPool(16, 24, levels, pool)).eval()
    monkeypatch.setattr(pooling, "is_exporting", lambda: True)
    monkeypatch.setattr(pyramid, "is_exporting", lambda: True)
    calls = []
    for fn in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        real = getattr(F, fn)
        monkeypatch.setattr(pooling.F, fn, lambda x, size, real=real: calls.append(size) or real(x, size))
    with torch.no_grad():
        for dtype, tol in ((torch.float32, FP32), (torch.float64, FP64)):
            block = block.to(dtype)
            for h, w in EXPORT_SIZES:
                x = torch.randn(2, 16, h, w, dtype=dtype)
                calls.clear()
                y = block(x)
                assert calls == [1] * (1 in levels)
                torch.testing.assert_close(y, reference_forward(block, x), **tol)


# ------------------------------------------------------------------------------------- blocks traced at one size
BLOCKS = [
    (PyramidPool, ((1, 2, 4), "avg")),
    (PyramidPool, ((1, 3, 6), "max")),
    (PyramidPool, ([2, 1], "avg")),
    (FocalModulation, (3, 2, 2, True, True)),
    (DyCAConv, (3, 1, 4, "avg")),
    (DyCAConv, (3, 2, 4, "avg+max")),
    (SKConv, ()),
    (SKConv, (3, 4, 4, 8, 2)),
]
TRACE_AT = (12, 12)  # nested for every pyramid above: the eager path there is the hierarchical one
RUN_AT = [(12, 12), (7, 13), (1, 1), (2, 3), (16, 8), (19, 21)]


def _block_id(cfg) -> str:
    cls, args = cfg
    return f"{cls.__name__}{list(args)}"


def _block(cfg) -> torch.nn.Module:
    cls, args = cfg
    return randomize_bn(cls(16, 24, *args)).eval()


@pytest.mark.parametrize("cfg", BLOCKS, ids=_block_id)
def test_traced_block_runs_at_other_sizes(cfg):
    block = _block(cfg)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notice
        traced = torch.jit.trace(block, torch.randn(1, 16, *TRACE_AT))
        for h, w in RUN_AT:
            x = torch.randn(2, 16, h, w)
            torch.testing.assert_close(traced(x), reference_forward(block, x), **FP32)


@pytest.mark.parametrize("cfg", BLOCKS, ids=_block_id)
def test_dynamic_onnx_block_runs_at_other_sizes(cfg):
    ort = pytest.importorskip("onnxruntime")
    block = _block(cfg)
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            block,
            (torch.randn(1, 16, *TRACE_AT),),
            buf,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": axes, "y": axes},
        )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for h, w in RUN_AT:
        x = torch.randn(2, 16, h, w)
        with torch.no_grad():
            expected = reference_forward(block, x)
        got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        torch.testing.assert_close(got, expected, **FP32)


def test_torch_export_pyramid_pool_with_dynamic_sizes():
    """torch.export (ExecuTorch, the dynamo ONNX exporter) with symbolic H, W: no size guard, same values."""
    block = _block(BLOCKS[0])
    dims = {"x": {2: torch.export.Dim("h", min=2, max=256), 3: torch.export.Dim("w", min=2, max=256)}}
    program = torch.export.export(block, (torch.randn(1, 16, *TRACE_AT),), dynamic_shapes=dims)
    with torch.no_grad():
        for h, w in [(12, 12), (7, 13), (2, 3), (16, 8)]:
            x = torch.randn(1, 16, h, w)  # the batch size is static in this program
            torch.testing.assert_close(program.module()(x), reference_forward(block, x), **FP32)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_traced_spp_vector_runs_at_other_sizes(pool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda x: spp_vector(x, (1, 2, 4), pool), torch.randn(1, 5, 8, 8))
    for h, w in [(8, 8), (7, 13), (1, 1), (12, 4)]:
        x = torch.randn(2, 5, h, w)
        torch.testing.assert_close(traced(x), reference_spp_vector(x, (1, 2, 4), pool), **AVG_POOL)


# -------------------------------------------------------------------------------- every model YAML, ultralytics
YAMLS = sorted(p.name for p in YAML_DIR.glob("*.yaml"))
EXPORT_IMGSZ = 128  # neck map 4x4: PyramidPool([1, 2, 4]) pools hierarchically there in eager mode
SIZES = [(128, 128), (96, 160), (256, 128)]  # export size, non-square (neck 3x5), non-square nested (neck 8x4)


def calibrate_bn(net: torch.nn.Module, imgsz: int = EXPORT_IMGSZ) -> None:
    """Set every BatchNorm's running statistics to those of a random batch (one train-mode pass, momentum 1).

    At initialisation the signal vanishes with depth (feature std ~1e-8 at layer 9 of yolo11n on uniform noise), so
    the outputs would not depend on the neck and every comparison would pass. Calibrated, features stay O(1).
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, imgsz, imgsz))
    net.eval()
    for m in bns:
        m.momentum = 0.03


@pytest.fixture(scope="module")
def nano_models(tmp_path_factory):
    """Each YAML copied as its nano-scale name with nc=4 (a small head), built once per module, BatchNorm calibrated."""
    from ultralytics import YOLO

    yolo_necks.register()
    root = tmp_path_factory.mktemp("yamls")
    models = {}

    def get(name: str):
        if name not in models:
            text = (YAML_DIR / name).read_text()
            assert "\nnc: 80" in text
            path = root / name.replace("yolov8-", "yolov8n-").replace("yolo11-", "yolo11n-")
            path.write_text(text.replace("\nnc: 80", "\nnc: 4", 1))
            torch.manual_seed(0)
            models[name] = YOLO(str(path))
            calibrate_bn(models[name].model)
        return models[name]

    return get


def _pytorch_outputs(model, inputs) -> list[torch.Tensor]:
    """What the exporter traces: a fused fp32 eval copy; raw Detect output (N, 4 + nc, anchors)."""
    net = copy.deepcopy(model.model).float().fuse().eval()
    with torch.no_grad():
        return [net(x)[0] for x in inputs]


def _assert_neck_matters(model, inputs, expected) -> None:
    """Guards against a vacuous comparison: changing the neck's output moves the model output beyond tolerance."""
    net = copy.deepcopy(model.model).float().fuse().eval()
    neck = net.model[9]
    handle = neck.register_forward_hook(lambda module, args, out: out * 1.1)
    with torch.no_grad():
        perturbed = net(inputs[0])[0]
    handle.remove()
    assert not torch.allclose(perturbed[:, :4], expected[0][:, :4], **BOXES)


def assert_detect_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Raw Detect output (N, 4 + nc, anchors): boxes and class scores, each at its own tolerance."""
    assert got.shape == expected.shape
    torch.testing.assert_close(got[:, :4], expected[:, :4], **BOXES)
    torch.testing.assert_close(got[:, 4:], expected[:, 4:], **SCORES)


@pytest.mark.parametrize("name", YAMLS)
def test_dynamic_onnx_export_matches_pytorch(name, nano_models, tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)  # ultralytics writes a YAML-built model's export into the working directory
    model = nano_models(name)
    path = model.export(format="onnx", dynamic=True, imgsz=EXPORT_IMGSZ, device="cpu", verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [torch.rand(2, 3, h, w) for h, w in SIZES]
    expected = _pytorch_outputs(model, inputs)
    _assert_neck_matters(model, inputs, expected)
    for x, ref in zip(inputs, expected):
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert got.shape == ref.shape == (2, 4 + 4, sum((x.shape[2] // s) * (x.shape[3] // s) for s in (8, 16, 32)))
        assert_detect_close(got, ref)


@pytest.mark.parametrize("name", YAMLS)
def test_torchscript_export_matches_pytorch(name, nano_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = nano_models(name)
    inputs = [torch.rand(1, 3, h, w) for h, w in SIZES]
    expected = _pytorch_outputs(model, inputs)
    static = torch.jit.load(model.export(format="torchscript", imgsz=EXPORT_IMGSZ, device="cpu", verbose=False))
    dynamic = torch.jit.load(
        model.export(format="torchscript", dynamic=True, imgsz=EXPORT_IMGSZ, device="cpu", verbose=False)
    )
    with torch.no_grad():
        assert_detect_close(static(inputs[0]), expected[0])  # the anchor grid is baked: export size only
        for x, ref in zip(inputs, expected):
            assert_detect_close(dynamic(x), ref)

