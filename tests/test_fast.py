"""Tests of yolo_necks.fast (exact fast pooling, FastSPP/FastSPPF, accelerate) and of ``yolo-necks bench``.

Equality is bit-for-bit (``torch.equal``) wherever the module docstring promises it: the pooling helpers against
``F.max_pool2d``, FastSPPF/FastSPP against ultralytics' SPPF/SPP (eval and train mode, gradients too), accelerated
models against stock ones, before and after ``fuse()``, and after a save/load round trip in a fresh process.
Stated tolerances elsewhere:

- ``fuse()`` vs unfused (Conv+BN folding changes rounding): ``atol=1e-3, rtol=1e-4`` on yolov8n outputs
  (box coordinates in pixels up to ~640, class scores in [0, 1]).
- ONNX Runtime vs PyTorch, fp32: ``atol=1e-3, rtol=1e-4`` on the same outputs (ONNX runs the fused graph).

No test asserts on wall-clock times.
"""

from __future__ import annotations

import inspect
import json
import textwrap

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import run_py
from hypothesis import given, settings
from hypothesis import strategies as st
from ultralytics.nn.modules.block import SPP, SPPF
from ultralytics.nn.modules.conv import Conv

from yolo_necks import fast
from yolo_necks.fast import (
    FAST_MODULES,
    FastSPP,
    FastSPPF,
    FastUpsample,
    accelerate,
    cascade_max_pool,
    max_pool_same,
    sliding_max,
)

PROPERTY = settings(max_examples=25, deadline=None)
FUSED = {"atol": 1e-3, "rtol": 1e-4}
ONNX = {"atol": 1e-3, "rtol": 1e-4}


# ----------------------------------------------------------------------------------------------------------- helpers
_DEFAULT_THREADS = torch.get_num_threads()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: intra-op threads only add sync cost


@pytest.fixture
def all_threads(one_thread):
    """Run one test with torch's default thread count (multi-threaded CPU convs take another oneDNN path)."""
    torch.set_num_threads(_DEFAULT_THREADS)
    yield _DEFAULT_THREADS
    torch.set_num_threads(1)


def randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so fusion and train/eval differences are exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return module


def layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def first(y):
    return y[0] if isinstance(y, (list, tuple)) else y


@pytest.fixture(scope="module")
def v8n():
    """yolov8n built from its YAML (no download), random BN statistics, eval mode, plus a fixed input."""
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    randomize_bn(model.model)
    model.model.eval()
    x = torch.rand(1, 3, 96, 128)
    return model, x


# ----------------------------------------------------------------------------------------------- pooling helpers
@PROPERTY
@given(
    k=st.sampled_from([1, 3, 5, 7, 9, 13]),
    n=st.integers(1, 3),
    c=st.integers(1, 9),
    h=st.integers(1, 17),
    w=st.integers(1, 17),
    channels_last=st.booleans(),
    three_d=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_max_pool_same_matches_max_pool2d(k, n, c, h, w, channels_last, three_d, dtype):
    x = torch.randn(n, c, h, w, dtype=dtype)
    x[0, 0, 0, 0] = float("-inf")  # -inf values must behave like the implicit padding
    if three_d:
        x = x[0]
    x = layout(x, channels_last)
    ref = F.max_pool2d(x, k, 1, k // 2)
    out = max_pool_same(x, k)
    assert out.shape == ref.shape and torch.equal(out, ref)
    # every formulation it may pick is exact on its own
    for impl in (fast._shifted_max_pool, fast._separable_max_pool):
        assert torch.equal(impl(x, k), ref), impl.__name__


def test_max_pool_same_non_contiguous_and_even_kernel():
    view = torch.randn(2, 8, 12, 15)[:, 1:7, ::2, 2:]  # sliced: neither contiguous nor channels_last
    transposed = torch.randn(2, 5, 9, 13).transpose(2, 3)
    for t in (view, transposed):
        for k in (3, 5, 11):
            assert torch.equal(max_pool_same(t, k), F.max_pool2d(t, k, 1, k // 2))
    t = torch.randn(1, 3, 8, 8)
    assert torch.equal(max_pool_same(t, 4), F.max_pool2d(t, 4, 1, 2))  # even: passed through unchanged


@PROPERTY
@given(length=st.integers(1, 40), k=st.integers(1, 40), dim=st.sampled_from([0, 1, 2]))
def test_sliding_max_matches_unfold(length, k, dim):
    shape = [3, 4, 5]
    shape[dim] = length
    x = torch.randn(shape)
    if k > length:
        with pytest.raises(ValueError):
            sliding_max(x, k, dim)
        return
    ref = x.unfold(dim, k, 1).amax(-1)
    assert torch.equal(sliding_max(x, k, dim), ref)


@PROPERTY
@given(
    kernels=st.lists(st.sampled_from([1, 3, 5, 7, 9, 11, 13]), min_size=1, max_size=4),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    channels_last=st.booleans(),
)
def test_cascade_max_pool_matches_direct_pools(kernels, h, w, channels_last):
    x = layout(torch.randn(2, 3, h, w), channels_last)
    outs = cascade_max_pool(x, kernels)
    assert len(outs) == len(kernels)
    for k, out in zip(kernels, outs):
        assert torch.equal(out, F.max_pool2d(x, k, 1, k // 2)), k


# ------------------------------------------------------------------------------------------------ FastSPPF/FastSPP
def _sppf(c1, c2, k, n, shortcut, legacy_act, seed=0):
    torch.manual_seed(seed)
    m = SPPF(c1, c2, k, n, shortcut)
    if legacy_act:  # what parse_model does for legacy (<= 3 argument) YAML rows
        m.cv1.act = Conv.default_act
    return randomize_bn(m, seed)


@PROPERTY
@given(
    c1=st.sampled_from([2, 4, 6, 16]),
    c2=st.sampled_from([2, 4, 16]),
    k=st.sampled_from([1, 3, 5, 7]),
    n=st.integers(1, 4),
    shortcut=st.booleans(),
    legacy_act=st.booleans(),
    b=st.integers(1, 3),
    h=st.integers(1, 19),
    w=st.integers(1, 19),
    channels_last=st.booleans(),
    fused=st.booleans(),
)
def test_fast_sppf_bit_identical_eval(c1, c2, k, n, shortcut, legacy_act, b, h, w, channels_last, fused):
    m = _sppf(c1, c2, k, n, shortcut, legacy_act).eval()
    if fused:
        from yolo_necks.bench import fuse_convs

        fuse_convs(m)
    f = FastSPPF.from_module(m)
    assert f.cv1 is m.cv1 and f.cv2 is m.cv2 and f.add == m.add and f.n == n and f.k == k
    x = layout(torch.randn(b, c1, h, w), channels_last)
    with torch.inference_mode():
        assert torch.equal(f(x), m(x))
    with torch.no_grad():
        assert torch.equal(f(x), m(x))


@settings(max_examples=15, deadline=None)
@given(
    c1=st.sampled_from([4, 8]),
    k=st.sampled_from([3, 5]),
    n=st.integers(1, 3),
    shortcut=st.booleans(),
    b=st.integers(2, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    channels_last=st.booleans(),
)
def test_fast_sppf_bit_identical_train_with_gradients(c1, k, n, shortcut, b, h, w, channels_last):
    m = _sppf(c1, c1, k, n, shortcut, legacy_act=True).train()
    f = FastSPPF.from_module(m)
    assert f.training
    x = layout(torch.randn(b, c1, h, w), channels_last)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = m(x1), f(x2)
    assert torch.equal(y1, y2)
    g = torch.randn_like(y1)
    params = [p for p in m.parameters() if p.requires_grad]
    grads1 = torch.autograd.grad(y1, [x1, *params], g)
    grads2 = torch.autograd.grad(y2, [x2, *params], g)
    for a, c in zip(grads1, grads2):
        assert torch.equal(a, c)
    with torch.no_grad():  # train mode without autograd takes the fast pooling path
        assert torch.equal(m(x), f(x))


@PROPERTY
@given(
    kernels=st.lists(st.sampled_from([1, 3, 5, 7, 9, 13]), min_size=1, max_size=4),
    b=st.integers(1, 3),
    h=st.integers(1, 17),
    w=st.integers(1, 17),
    channels_last=st.booleans(),
    train=st.booleans(),
)
def test_fast_spp_bit_identical(kernels, b, h, w, channels_last, train):
    if train and b * h * w < 2:
        b = 2  # BatchNorm needs more than one value per channel in training
    torch.manual_seed(1)
    m = randomize_bn(SPP(6, 10, tuple(kernels)), 1).train(train)
    f = FastSPP.from_module(m)
    assert f.k == tuple(kernels) and f.training == train
    x = layout(torch.randn(b, 6, h, w), channels_last)
    with torch.no_grad():
        assert torch.equal(f(x), m(x))
    if train:
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        y1, y2 = m(x1), f(x2)
        assert torch.equal(y1, y2)
        (g1,) = torch.autograd.grad(y1.sum(), x1)
        (g2,) = torch.autograd.grad(y2.sum(), x2)
        assert torch.equal(g1, g2)


def test_fast_modules_built_directly_match_ultralytics():
    torch.manual_seed(0)
    a = randomize_bn(SPPF(8, 12, 5, 3, False)).eval()
    torch.manual_seed(0)
    b = randomize_bn(FastSPPF(8, 12, 5, 3, False)).eval()
    torch.manual_seed(0)
    c = randomize_bn(SPP(8, 12, (5, 9, 13))).eval()
    torch.manual_seed(0)
    d = randomize_bn(FastSPP(8, 12, (5, 9, 13))).eval()
    x = torch.randn(2, 8, 13, 9)
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and torch.equal(c(x), d(x))


def test_from_module_copies_parser_attributes_and_odd_pools():
    m = SPPF(8, 8)
    m.i, m.f, m.type, m.np = 9, -1, "ultralytics.nn.modules.block.SPPF", 123
    f = FastSPPF.from_module(m)
    assert (f.i, f.f, f.type, f.np) == (9, -1, "ultralytics.nn.modules.block.SPPF", 123)
    # a pool that is not a square stride-1 "same" pool is kept as is (and still gives the stock output)
    m.m = nn.MaxPool2d((3, 5), 1, (1, 2))
    g = FastSPPF.from_module(m.eval()).eval()
    assert g._modules.get("m") is m.m
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        assert torch.equal(g(x), m(x))


def test_traced_fast_sppf_matches():
    """While tracing (ONNX/TorchScript export) the separable max_pool2d pair is recorded; still exact."""
    m = _sppf(8, 8, 5, 3, False, True).eval()
    f = FastSPPF.from_module(m)
    x = torch.randn(1, 8, 12, 10)
    with torch.no_grad():
        traced = torch.jit.trace(f, x)
        assert torch.equal(traced(x), m(x))
    assert "max_pool2d" in str(traced.graph)


def test_fast_modules_lists_every_module_class():
    defined = {
        obj
        for _, obj in inspect.getmembers(fast, inspect.isclass)
        if issubclass(obj, nn.Module) and obj.__module__ == fast.__name__
    }
    assert defined == set(FAST_MODULES)


@PROPERTY
@given(
    s=st.sampled_from([1, 2, 4]),
    b=st.integers(1, 2),
    c=st.integers(1, 6),
    h=st.integers(1, 36),
    w=st.integers(1, 36),
    channels_last=st.booleans(),
    tuple_factor=st.booleans(),
)
def test_fast_upsample_bit_identical(s, b, c, h, w, channels_last, tuple_factor):
    m = nn.Upsample(scale_factor=(float(s), float(s)) if tuple_factor else s, mode="nearest")
    m.i, m.f, m.type, m.np = 10, -1, "torch.nn.modules.upsampling.Upsample", 0
    assert FastUpsample.accepts(m)
    f = FastUpsample.from_module(m)
    assert (f.i, f.f, f.type) == (m.i, m.f, m.type)
    x = layout(torch.randn(b, c, h, w), channels_last)
    ref, out = m(x), f(x)
    assert torch.equal(out, ref)
    assert out.stride() == ref.stride()  # same memory layout, so downstream convs take the same path


def test_fast_upsample_declines_other_modes():
    assert not FastUpsample.accepts(nn.Upsample(scale_factor=3, mode="nearest"))
    assert not FastUpsample.accepts(nn.Upsample(scale_factor=2, mode="bilinear"))
    assert not FastUpsample.accepts(nn.Upsample(size=(8, 8), mode="nearest"))
    seq = nn.Sequential(nn.Upsample(scale_factor=3), nn.Upsample(scale_factor=2, mode="bilinear"))
    accelerate(seq, verbose=False)
    assert [type(m) for m in seq] == [nn.Upsample, nn.Upsample]
    x = torch.randn(1, 2, 5, 5, requires_grad=True)  # autograd: the stock op (same gradients)
    f = FastUpsample(scale_factor=2)
    (g1,) = torch.autograd.grad(f(x).square().sum(), x)
    (g2,) = torch.autograd.grad(nn.Upsample(scale_factor=2)(x).square().sum(), x)
    assert torch.equal(g1, g2)


# ------------------------------------------------------------------------------------------------------ accelerate
def test_accelerate_yolo_object_identical_and_idempotent(v8n, caplog):
    model, x = v8n
    with torch.inference_mode():
        ref = first(model.model(x))
    assert accelerate(model) is model
    layers = [type(m).__name__ for m in model.model.model]
    assert "FastSPPF" in layers and "SPPF" not in layers
    assert layers.count("FastUpsample") == 2 and "Upsample" not in layers
    sppf = next(m for m in model.model.model if isinstance(m, FastSPPF))
    assert sppf.i == 9 and sppf.f == -1 and isinstance(sppf.cv1.act, nn.SiLU)  # legacy v8 row: activated cv1
    with torch.inference_mode():
        assert torch.equal(first(model.model(x)), ref)
    before = [id(m) for m in model.model.modules()]
    accelerate(model, verbose=False)  # idempotent: nothing swapped, same objects
    assert [id(m) for m in model.model.modules()] == before


@pytest.mark.parametrize("threads", ["one", "default"])
def test_accelerate_bare_module_and_fuse(threads, request):
    if threads == "default":
        request.getfixturevalue("all_threads")
    from ultralytics import YOLO

    torch.manual_seed(0)
    stock = randomize_bn(YOLO("yolov8n.yaml").model).eval()
    import copy

    fast_model = copy.deepcopy(stock)
    assert accelerate(fast_model, verbose=False) is fast_model
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        unfused = first(fast_model(x))
        assert torch.equal(unfused, first(stock(x)))
    stock.fuse(verbose=False)
    fast_model.fuse(verbose=False)
    assert fast_model.is_fused()
    with torch.inference_mode():
        fused = first(fast_model(x))
        assert torch.equal(fused, first(stock(x)))  # fused accelerated == fused stock, bit for bit
    torch.testing.assert_close(fused, unfused, **FUSED)
    # accelerating after fuse() works too
    again = accelerate(copy.deepcopy(stock), verbose=False)
    with torch.inference_mode():
        assert torch.equal(first(again(x)), fused)


def test_accelerate_yolo26_shortcut_sppf_and_spp_in_sequential():
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = randomize_bn(YOLO("yolo26n.yaml").model).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        ref = first(model(x))
    accelerate(model, verbose=False)
    sppf = next(m for m in model.modules() if isinstance(m, FastSPPF))
    assert sppf.add and sppf.n == 3
    with torch.inference_mode():
        assert torch.equal(first(model(x)), ref)
    # SPP nested in a container (as parse_model builds repeated layers), and a bare block
    seq = nn.Sequential(Conv(4, 8), nn.Sequential(SPP(8, 8), SPP(8, 8))).eval()
    randomize_bn(seq)
    y = torch.randn(1, 4, 11, 7)
    with torch.no_grad():
        r = seq(y)
        accelerate(seq, verbose=False)
        assert isinstance(seq[1][0], FastSPP) and isinstance(seq[1][1], FastSPP)
        assert torch.equal(seq(y), r)
        bare = SPPF(8, 8).eval()
        fb = accelerate(bare, verbose=False)
        assert isinstance(fb, FastSPPF) and torch.equal(fb(r), bare(r))
    with pytest.raises(TypeError):
        accelerate("yolov8n.pt")


# -------------------------------------------------------------------------------------------- save, load, export
RELOAD_CODE = """
import json, sys, torch
from ultralytics import YOLO
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])  # the CPU conv backend (hence rounding) depends on the thread count
x = torch.load(args["x"])
out = {}
yolo = YOLO(args["yolo_file"])                            # ultralytics' loader (safe-loading when the env says so)
m = yolo.model.float().eval()
out["yolo_types"] = sorted({type(l).__name__ for l in m.model})
with torch.inference_mode():
    y = m(x)
torch.save(y[0] if isinstance(y, (list, tuple)) else y, args["yolo_out"])
ckpt = torch.load(args["ckpt_file"], weights_only=False)  # a plain checkpoint dict
m = ckpt["model"].eval()
out["ckpt_types"] = sorted({type(l).__name__ for l in m.model})
with torch.inference_mode():
    y = m(x)
torch.save(y[0] if isinstance(y, (list, tuple)) else y, args["ckpt_out"])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_save_and_reload_in_fresh_process(v8n, tmp_path):
    import copy

    model, x = v8n
    accelerate(model, verbose=False)
    yolo_file, ckpt_file = tmp_path / "accelerated.pt", tmp_path / "ckpt.pt"
    model.save(yolo_file)  # half-precision copy, as ultralytics writes checkpoints
    fused = copy.deepcopy(model.model).fuse(verbose=False)
    torch.save({"model": fused}, ckpt_file)
    torch.save(x, tmp_path / "x.pt")
    expected_yolo = copy.deepcopy(model.model).half().float().eval()
    with torch.inference_mode():
        ref_yolo, ref_ckpt = first(expected_yolo(x)), first(fused(x))
    args = {
        "x": str(tmp_path / "x.pt"),
        "yolo_file": str(yolo_file),
        "ckpt_file": str(ckpt_file),
        "yolo_out": str(tmp_path / "yolo_out.pt"),
        "ckpt_out": str(tmp_path / "ckpt_out.pt"),
        "threads": torch.get_num_threads(),
    }
    code = RELOAD_CODE.replace("args = json.loads(sys.argv[1])", f"args = json.loads({json.dumps(args)!r})")
    r = run_py(textwrap.dedent(code), env={"ULTRALYTICS_SAFE_LOAD": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "FastSPPF" in out["yolo_types"] and "SPPF" not in out["yolo_types"]
    assert "FastSPPF" in out["ckpt_types"]
    assert torch.equal(torch.load(args["yolo_out"]), ref_yolo)
    assert torch.equal(torch.load(args["ckpt_out"]), ref_ckpt)


@pytest.mark.slow
def test_onnx_export_offline(v8n, tmp_path, monkeypatch):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from ultralytics import YOLO

    model, _ = v8n
    accelerate(model, verbose=False)
    monkeypatch.chdir(tmp_path)
    exported = YOLO(model).export(format="onnx", imgsz=128)
    graph = onnx.load(exported).graph
    pools = [list(a.ints) for n in graph.node if n.op_type == "MaxPool" for a in n.attribute if a.name == "kernel_shape"]
    assert pools and all(sorted(k) == [1, 5] for k in pools)  # separable 1x5 / 5x1 pools
    x = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        ref = first(model.model.eval()(x)).numpy()
    sess = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, **ONNX)


# ------------------------------------------------------------------------------------------------------------ bench
BENCH_COLUMNS = {
    "device", "dtype", "layout", "batch", "shape", "module", "kind", "params", "gflops", "median_ms", "p90_ms",
    "min_ms", "std_ms", "repeats", "ref", "ref_median_ms", "vs_ref", "vs_sppf", "max_abs_diff_vs_ref", "exact_vs_ref",
}


@pytest.mark.slow
def test_bench_quick_writes_csv_and_markdown(tmp_path, capsys):
    import pandas as pd

    from yolo_necks.cli import main

    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "bench.csv")
    assert BENCH_COLUMNS <= set(df.columns)
    modules = set(df["module"])
    assert {"SPP", "SPPF", "FastSPP", "FastSPPF", "yolov8n stock", "yolov8n accelerated"} <= modules
    fast_rows = df[df["kind"].isin(["fast", "model"]) & df["ref"].notna()]
    assert len(fast_rows) and (fast_rows["exact_vs_ref"] == "yes").all()  # exact swaps are exact
    assert (df["median_ms"] > 0).all() and (df["p90_ms"] >= df["median_ms"]).all()
    assert (df.loc[df["module"] == "SPPF", "vs_sppf"] == 1.0).all()
    md = (tmp_path / "bench.md").read_text()
    assert "| module |" in md and "FastSPPF" in md and "vs SPPF" in md
    assert "FastSPPF" in capsys.readouterr().out


def test_bench_arguments():
    from yolo_necks.bench import parse_shapes
    from yolo_necks.cli import main
    from yolo_necks.errors import NeckConfigError

    assert parse_shapes("256x20, 512x40x30") == [(256, 20, 20), (512, 40, 30)]
    with pytest.raises(NeckConfigError):
        parse_shapes("256xfoo")
    assert main(["bench", "--help"]) == 0
    assert main(["bench", "--shapes", "0x20", "--out", "unused"]) == 2
    assert main(["bench", "--blocks", "NoSuchBlock", "--out", "unused"]) == 2
