"""Tests of the neck blocks: shapes and gradients (property tests), equality with the plain reference formulations
(eval mode, before and after ultralytics' BatchNorm fusion), pyramid pooling paths, argument validation, ONNX export.

Tolerances (outputs are O(1)):
- block vs reference, fp32: ``atol=1e-5, rtol=1e-5``; fp64: ``atol=1e-12, rtol=0`` (the formulations differ only in
  the order of floating-point operations, so fp64 pins them down to rounding).
- hierarchical vs direct pooling: max bit-exact; avg ``atol=1e-6, rtol=1e-5`` in fp32.
- ONNX Runtime vs PyTorch, fp32: ``atol=1e-5, rtol=1e-4``.
"""

from __future__ import annotations

import inspect
import io
import typing
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ultralytics.nn.modules import Conv
from ultralytics.nn.tasks import BaseModel

from yolo_necks.blocks import BUILTIN_BLOCKS, DyCAConv, FocalModulation, PyramidPool, SKConv, pooling, spp_vector
from yolo_necks.reference import reference_forward, reference_spp_vector

FP32 = {"atol": 1e-5, "rtol": 1e-5}
FP64 = {"atol": 1e-12, "rtol": 0.0}
AVG_POOL = {"atol": 1e-6, "rtol": 1e-5}
ONNX = {"atol": 1e-5, "rtol": 1e-4}

TINY_SIZES = [(1, 1), (1, 5), (3, 2), (7, 13)]
SIZES = [*TINY_SIZES, (2, 2), (4, 4), (5, 5), (8, 6), (6, 9), (12, 12)]
PROPERTY = settings(max_examples=30, deadline=None)


# ----------------------------------------------------------------------------------------------------------- helpers
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: intra-op threads only add sync cost


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_bn(module: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters (so BN is not the identity)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
    return module


def has_bn(module: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def out_size(n: int, s: int) -> int:
    return -(-n // s)


def check_shapes_and_gradients(block: nn.Module, n: int, c1: int, c2: int, h: int, w: int, s: int = 1) -> None:
    """Eval: output shape and finite values. Train: the same, plus finite gradients for every parameter and x."""
    expected = (n, c2, out_size(h, s), out_size(w, s))
    x = torch.randn(n, c1, h, w)
    modules_before = [name for name, _ in block.named_modules()]
    with torch.no_grad():
        y = block.eval()(x)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()
    assert [name for name, _ in block.named_modules()] == modules_before  # forward creates no modules
    if has_bn(block) and n * expected[2] * expected[3] == 1:
        return  # any BatchNorm (every ultralytics Conv) needs > 1 value per channel to train; eval-only case
    block.train()
    x.requires_grad_(True)
    y = block(x)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in block.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


class _Wrapper(BaseModel):
    """The smallest ultralytics model holding one block, so ``BaseModel.fuse`` runs exactly as on a real model."""

    def __init__(self, block: nn.Module):
        nn.Module.__init__(self)
        self.model = nn.Sequential(block)


def fused(block: nn.Module) -> nn.Module:
    """Fold BatchNorm into the convs of every ``Conv`` in ``block`` the way ``model.fuse()`` does; returns the block."""
    model = _Wrapper(block)
    model.fuse(verbose=False)
    assert model.is_fused()
    return model.model[0]


# block configurations: (class, args after c1/c2); c1, c2 given separately
CONFIGS = [
    (FocalModulation, ()),
    (FocalModulation, (3, 3, 2, True, True)),
    (FocalModulation, (5, 1, 0)),
    (DyCAConv, ()),
    (DyCAConv, (3, 2, 4, "avg+max")),
    (DyCAConv, (1, 1, 32, "avg")),
    (SKConv, ()),
    (SKConv, (3, 4, 4, 8, 2)),
    (SKConv, (1, 32, 16, 32, 1)),
    (PyramidPool, ()),
    (PyramidPool, ((1, 2, 4), "max")),
    (PyramidPool, ((1, 3, 6), "avg")),
    (PyramidPool, ([2, 1], "max")),
]
WIDTHS = [(16, 16), (16, 24), (24, 8)]
EQ_SIZES = [(1, 1), (3, 2), (7, 13), (8, 8), (12, 12), (10, 10)]


def _id(cfg):
    cls, args = cfg
    return f"{cls.__name__}{list(args)}"


# ------------------------------------------------------------------------------------------------- property tests
@PROPERTY
@given(
    n=st.sampled_from([1, 2]),
    c1=st.sampled_from([3, 8, 16, 24]),
    c2=st.sampled_from([5, 8, 16, 24]),
    hw=st.sampled_from(SIZES),
    focal_window=st.sampled_from([1, 3, 5]),
    focal_level=st.integers(1, 3),
    focal_factor=st.sampled_from([0, 2, 4]),
    normalize=st.booleans(),
    postln=st.booleans(),
)
@example(n=1, c1=8, c2=16, hw=(1, 1), focal_window=3, focal_level=2, focal_factor=2, normalize=False, postln=True)
@example(n=1, c1=16, c2=8, hw=(1, 5), focal_window=3, focal_level=2, focal_factor=2, normalize=True, postln=False)
@example(n=1, c1=24, c2=24, hw=(3, 2), focal_window=3, focal_level=1, focal_factor=2, normalize=False, postln=False)
@example(n=1, c1=8, c2=24, hw=(7, 13), focal_window=3, focal_level=3, focal_factor=2, normalize=True, postln=True)
def test_focal_modulation_properties(n, c1, c2, hw, focal_window, focal_level, focal_factor, normalize, postln):
    torch.manual_seed(0)  # weights and input depend only on the drawn example
    block = FocalModulation(c1, c2, focal_window, focal_level, focal_factor, normalize, postln)
    check_shapes_and_gradients(block, n, c1, c2, *hw)


@PROPERTY
@given(
    n=st.sampled_from([1, 2]),
    c1=st.sampled_from([5, 8, 16, 24]),
    c2=st.sampled_from([3, 8, 16, 24]),
    hw=st.sampled_from(SIZES),
    k=st.sampled_from([1, 3, 5]),
    s=st.sampled_from([1, 2]),
    reduction=st.sampled_from([1, 4, 32]),
    pool=st.sampled_from(["avg", "avg+max"]),
)
@example(n=1, c1=8, c2=16, hw=(1, 1), k=3, s=1, reduction=32, pool="avg")
@example(n=1, c1=16, c2=8, hw=(1, 5), k=3, s=2, reduction=32, pool="avg+max")
@example(n=1, c1=24, c2=24, hw=(3, 2), k=3, s=2, reduction=4, pool="avg")
@example(n=1, c1=8, c2=24, hw=(7, 13), k=5, s=2, reduction=1, pool="avg+max")
def test_dyca_conv_properties(n, c1, c2, hw, k, s, reduction, pool):
    torch.manual_seed(0)  # weights and input depend only on the drawn example
    block = DyCAConv(c1, c2, k, s, reduction, pool)
    check_shapes_and_gradients(block, n, c1, c2, *hw, s=s)


@PROPERTY
@given(
    n=st.sampled_from([1, 2]),
    c1=st.sampled_from([6, 8, 12, 16, 24]),
    c2=st.sampled_from([6, 8, 16, 24]),
    hw=st.sampled_from(SIZES),
    M=st.integers(1, 3),
    G=st.sampled_from([1, 4, 32]),
    r=st.sampled_from([1, 16]),
    L=st.sampled_from([4, 32]),
    s=st.sampled_from([1, 2]),
)
@example(n=1, c1=8, c2=16, hw=(1, 1), M=2, G=32, r=16, L=32, s=1)
@example(n=1, c1=24, c2=8, hw=(1, 5), M=2, G=32, r=16, L=32, s=1)
@example(n=1, c1=24, c2=24, hw=(3, 2), M=3, G=32, r=16, L=4, s=2)
@example(n=1, c1=12, c2=24, hw=(7, 13), M=2, G=8, r=1, L=4, s=2)
def test_sk_conv_properties(n, c1, c2, hw, M, G, r, L, s):
    torch.manual_seed(0)  # weights and input depend only on the drawn example
    block = SKConv(c1, c2, M, G, r, L, s)
    check_shapes_and_gradients(block, n, c1, c2, *hw, s=s)


@PROPERTY
@given(
    n=st.sampled_from([1, 2]),
    c1=st.sampled_from([2, 8, 9, 16, 24]),
    c2=st.sampled_from([3, 8, 16, 24]),
    hw=st.sampled_from(SIZES),
    levels=st.sampled_from([(1, 2, 4), (1, 3, 6), (1,), (2,), (4, 1, 2), [1, 2], (1, 2, 3)]),
    pool=st.sampled_from(["avg", "max"]),
)
@example(n=1, c1=8, c2=16, hw=(1, 1), levels=(1, 2, 4), pool="avg")
@example(n=1, c1=16, c2=8, hw=(1, 5), levels=(1, 2, 4), pool="max")
@example(n=1, c1=24, c2=24, hw=(3, 2), levels=(1, 3, 6), pool="avg")
@example(n=1, c1=9, c2=24, hw=(7, 13), levels=(1, 2, 4), pool="max")
@example(n=1, c1=8, c2=8, hw=(8, 8), levels=(1, 2, 4), pool="avg")  # nested: hierarchical path, batch 1
def test_pyramid_pool_properties(n, c1, c2, hw, levels, pool):
    torch.manual_seed(0)  # weights and input depend only on the drawn example
    block = PyramidPool(c1, c2, levels, pool)
    check_shapes_and_gradients(block, n, c1, c2, *hw)


@pytest.mark.parametrize("cls", [DyCAConv, SKConv, PyramidPool])
def test_batch_one_training_on_pooled_maps(cls):
    """Pooled 1x1 maps see no BatchNorm: batch-1 training works wherever the full-resolution map has > 1 pixel."""
    block = cls(16, 16).train()
    x = torch.randn(1, 16, 2, 3, requires_grad=True)
    block(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------------------ reference equality
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
@pytest.mark.parametrize("c1,c2", WIDTHS)
def test_block_matches_reference_eval(cfg, c1, c2):
    cls, args = cfg
    block = randomize_bn(cls(c1, c2, *args)).eval()
    with torch.no_grad():
        for h, w in EQ_SIZES:
            x = torch.randn(2, c1, h, w)
            torch.testing.assert_close(block(x), reference_forward(block, x), **FP32)
        block64 = block.double()
        for h, w in EQ_SIZES:
            x = torch.randn(2, c1, h, w, dtype=torch.float64)
            torch.testing.assert_close(block64(x), reference_forward(block64, x), **FP64)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_block_matches_reference_channels_last(cfg):
    """Channels-last weights and inputs (``model.to(memory_format=torch.channels_last)``) give the same outputs."""
    cls, args = cfg
    block = randomize_bn(cls(16, 24, *args)).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        for h, w in [(8, 8), (7, 13)]:
            x = torch.randn(2, 16, h, w).contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(block(x), reference_forward(block, x), **FP32)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_block_matches_reference_after_fusion(cfg):
    cls, args = cfg
    c1, c2 = 16, 24
    block = randomize_bn(cls(c1, c2, *args)).eval()
    xs = [torch.randn(2, c1, h, w) for h, w in EQ_SIZES]
    with torch.no_grad():
        before = [reference_forward(block, x) for x in xs]
        block = fused(block)
        assert not has_bn(block)
        for m in block.modules():
            if isinstance(m, Conv):
                assert not hasattr(m, "bn") and m.forward == m.forward_fuse and m.conv.bias is not None
        for x, ref in zip(xs, before):
            torch.testing.assert_close(block(x), ref, **FP32)
            torch.testing.assert_close(reference_forward(block, x), ref, **FP32)


def test_reference_distinguishes_blocks():
    """Guards against a vacuous comparison: a perturbed weight changes the block, and the reference follows it."""
    block = randomize_bn(SKConv(16, 16)).eval()
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        y0 = block(x)
        block.fcs.weight[:16] += 0.5  # only branch 0's selection layer
        y1, r1 = block(x), reference_forward(block, x)
    assert not torch.allclose(y0, y1, **FP32)
    torch.testing.assert_close(y1, r1, **FP32)


def test_reference_forward_rejects_other_modules():
    with pytest.raises(TypeError, match="reference_forward"):
        reference_forward(nn.Conv2d(3, 3, 1), torch.randn(1, 3, 4, 4))


# ------------------------------------------------------------------------------------------------------ pooling
NESTED = [((8, 8), (1, 2, 4)), ((12, 4), (1, 2, 4)), ((12, 18), (1, 3, 6)), ((6, 6), (3, 1)), ((5, 7), (1,))]
NOT_NESTED = [((10, 10), (1, 2, 4)), ((7, 13), (1, 2, 4)), ((12, 12), (1, 3, 4)), ((2, 3), (1, 2, 4)), ((1, 1), (2,))]


@pytest.mark.parametrize("hw,levels", NESTED + NOT_NESTED)
def test_is_nested(hw, levels):
    assert pooling.is_nested(*hw, levels) == ((hw, levels) in NESTED)


@pytest.mark.parametrize("hw,levels", NESTED)
def test_hierarchical_pooling_matches_direct(hw, levels):
    x = torch.randn(2, 5, *hw) * 3.0
    hier_max = pooling.pyramid_pool(x, levels, "max", hierarchical=True)
    direct_max = pooling.pyramid_pool(x, levels, "max", hierarchical=False)
    for a, b, level in zip(hier_max, direct_max, levels):
        assert a.shape == (2, 5, level, level)
        assert torch.equal(a, b)  # bit-exact
    hier_avg = pooling.pyramid_pool(x, levels, "avg", hierarchical=True)
    direct_avg = pooling.pyramid_pool(x, levels, "avg", hierarchical=False)
    for a, b in zip(hier_avg, direct_avg):
        torch.testing.assert_close(a, b, **AVG_POOL)


@pytest.mark.parametrize("hw,levels", NOT_NESTED)
def test_non_nested_pooling_is_direct(hw, levels):
    x = torch.randn(2, 5, *hw)
    for mode, fn in (("max", F.adaptive_max_pool2d), ("avg", F.adaptive_avg_pool2d)):
        for p, level in zip(pooling.pyramid_pool(x, levels, mode), levels):
            assert torch.equal(p, fn(x, level))
    with pytest.raises(ValueError, match="not exact"):
        pooling.pyramid_pool(x, levels, "max", hierarchical=True)


def test_pyramid_pool_block_pools_hierarchically_only_when_exact(monkeypatch):
    """Count the pooling calls on the full-resolution map: one when nested, one per level otherwise."""
    calls = []
    real = F.adaptive_avg_pool2d

    def spy(x, size):
        calls.append(tuple(x.shape[2:]))
        return real(x, size)

    monkeypatch.setattr(pooling.F, "adaptive_avg_pool2d", spy)
    block = PyramidPool(8, 8, (1, 2, 4), "avg").eval()
    with torch.no_grad():
        block(torch.randn(1, 8, 8, 8))
        assert calls == [(8, 8), (4, 4), (4, 4)]
        calls.clear()
        block(torch.randn(1, 8, 10, 10))
        assert calls == [(10, 10)] * 3




@pytest.mark.parametrize("hw", [(1, 1), (1, 5), (3, 2), (7, 13), (16, 16), (13, 40)])
@pytest.mark.parametrize("levels", [(1, 2, 4), (1, 3, 6), [4, 2, 1], (5,)])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_spp_vector(hw, levels, pool):
    x = torch.randn(3, 7, *hw)
    v = spp_vector(x, levels, pool)
    assert v.shape == (3, 7 * sum(level * level for level in levels))
    ref = reference_spp_vector(x, levels, pool)
    if pool == "max":
        assert torch.equal(v, ref)
    else:
        torch.testing.assert_close(v, ref, **AVG_POOL)
    # layout: level by level in the given order, each level's (C, l, l) map flattened channel-major
    first, last = levels[0], levels[-1]
    pool_fn = F.adaptive_max_pool2d if pool == "max" else F.adaptive_avg_pool2d
    torch.testing.assert_close(v[:, : 7 * first * first], pool_fn(x, first).flatten(1), **AVG_POOL)
    torch.testing.assert_close(v[:, -7 * last * last :], pool_fn(x, last).flatten(1), **AVG_POOL)


def test_spp_vector_default_is_max_1_2_4():
    x = torch.randn(1, 2, 9, 11)
    v = spp_vector(x)
    assert v.shape == (1, 2 * 21)
    assert torch.equal(v[:, :2], x.amax((2, 3)))


@pytest.mark.parametrize(
    "kwargs,exc,needle",
    [
        ({"levels": ()}, ValueError, "levels"),
        ({"levels": (0, 1)}, ValueError, "levels"),
        ({"levels": 3}, TypeError, "levels"),
        ({"pool": "sum"}, ValueError, "pool"),
    ],
)
def test_spp_vector_validation(kwargs, exc, needle):
    with pytest.raises(exc, match=f"^spp_vector: {needle}"):
        spp_vector(torch.randn(1, 2, 4, 4), **kwargs)


# ----------------------------------------------------------------------------------------------------- interface
def test_builtin_blocks():
    assert BUILTIN_BLOCKS == (FocalModulation, DyCAConv, SKConv, PyramidPool)


ALLOWED_HINTS = (int, float, bool, str, tuple[int, ...])
ARXIV = {FocalModulation: "2203.11926", DyCAConv: "2103.02907", SKConv: "1903.06586", PyramidPool: "1406.4729"}


@pytest.mark.parametrize("cls", BUILTIN_BLOCKS)
def test_signature_hints_and_docstring(cls):
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params[:2]] == ["c1", "c2"]
    hints = typing.get_type_hints(cls.__init__)
    doc = inspect.getdoc(cls)
    assert f"arXiv:{ARXIV[cls]}" in doc
    for p in params:
        assert hints[p.name] in ALLOWED_HINTS, f"{cls.__name__}.{p.name}: {hints[p.name]}"
        assert f"{p.name} (" in doc, f"{cls.__name__} docstring does not describe {p.name}"
        if p.name not in ("c1", "c2"):
            assert p.default is not inspect.Parameter.empty


@pytest.mark.parametrize("cls", BUILTIN_BLOCKS)
def test_parser_attributes_do_not_clash(cls):
    """ultralytics' parser sets i, f, type and np on every layer: the block must not use those names."""
    block = randomize_bn(cls(16, 16)).eval()
    for name in ("i", "f", "type", "np"):
        assert name not in vars(block) and name not in block._modules
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        y = block(x)
        block.i, block.f, block.type, block.np = 3, -1, "yolo_necks.Block", 123
        torch.testing.assert_close(block(x), y, atol=0, rtol=0)


def _one_line(exc: BaseException, block: str, arg: str) -> None:
    msg = str(exc)
    assert "\n" not in msg
    assert msg.startswith(f"{block}: {arg} "), msg


@pytest.mark.parametrize(
    "cls,kwargs,exc",
    [
        (FocalModulation, {"c1": 0}, ValueError),
        (FocalModulation, {"c2": 2.0}, TypeError),
        (FocalModulation, {"focal_level": 0}, ValueError),
        (FocalModulation, {"focal_level": 2.0}, TypeError),
        (FocalModulation, {"focal_window": 4}, ValueError),
        (FocalModulation, {"focal_factor": 1}, ValueError),
        (FocalModulation, {"focal_factor": -2}, ValueError),
        (FocalModulation, {"normalize_modulator": 1}, TypeError),
        (FocalModulation, {"use_postln": "yes"}, TypeError),
        (DyCAConv, {"k": 2}, ValueError),
        (DyCAConv, {"k": True}, TypeError),
        (DyCAConv, {"s": 0}, ValueError),
        (DyCAConv, {"reduction": 0}, ValueError),
        (DyCAConv, {"pool": "max"}, ValueError),
        (DyCAConv, {"pool": "avg+max+min"}, ValueError),
        (DyCAConv, {"pool": 1}, TypeError),
        (SKConv, {"M": 0}, ValueError),
        (SKConv, {"M": 2.5}, TypeError),
        (SKConv, {"G": 0}, ValueError),
        (SKConv, {"r": 0}, ValueError),
        (SKConv, {"L": 0}, ValueError),
        (SKConv, {"s": 0}, ValueError),
        (PyramidPool, {"c1": 1}, ValueError),
        (PyramidPool, {"levels": ()}, ValueError),
        (PyramidPool, {"levels": (0, 1)}, ValueError),
        (PyramidPool, {"levels": (1, 2, 2)}, ValueError),
        (PyramidPool, {"levels": (1, 2.0)}, TypeError),
        (PyramidPool, {"levels": 4}, TypeError),
        (PyramidPool, {"pool": "avg+max"}, ValueError),
        (PyramidPool, {"pool": None}, TypeError),
    ],
    ids=lambda v: str(v) if not isinstance(v, type) else v.__name__,
)
def test_argument_validation(cls, kwargs, exc):
    args = {"c1": 16, "c2": 16, **kwargs}
    with pytest.raises(exc) as info:
        cls(**args)
    assert type(info.value) is exc
    _one_line(info.value, cls.__name__, next(iter(kwargs)))


def test_validation_message_format():
    with pytest.raises(ValueError) as info:
        FocalModulation(16, 16, focal_level=0)
    assert str(info.value) == "FocalModulation: focal_level must be an int >= 1, got 0"


def test_sk_groups_and_projection_placement():
    assert SKConv(64, 64).groups == 32
    assert SKConv(24, 24).groups == 24  # largest divisor of 24 not above 32
    assert SKConv(48, 48).groups == 24
    assert SKConv(20, 20, G=8).groups == 5
    reduce, expand, strided = SKConv(64, 32), SKConv(32, 64), SKConv(64, 32, s=2)
    assert reduce.project_first and reduce.width == 32
    assert not expand.project_first and expand.width == 32
    assert not strided.project_first and strided.width == 64
    assert SKConv(32, 32).proj is None
    assert SKConv(16, 16, r=2, L=4).d == 8 and SKConv(16, 16).d == 32


# ----------------------------------------------------------------------------------------------------------- ONNX
ONNX_CASES = [
    (FocalModulation, (16, 24, 3, 2, 2, True, True), (8, 8), True),
    (DyCAConv, (16, 24, 3, 2, 32, "avg+max"), (7, 13), True),
    (SKConv, (16, 24), (8, 8), True),
    (SKConv, (32, 16, 2, 32, 16, 32, 2), (9, 9), True),
    (PyramidPool, (16, 24, (1, 2, 4), "avg"), (8, 8), True),  # hierarchical path
    (PyramidPool, (16, 24, (1, 2, 4), "avg"), (8, 8), False),  # unfused: the block applies cv2's BatchNorm itself
    (PyramidPool, (16, 24, (1, 2, 4), "max"), (10, 10), True),  # direct path, the grid does not divide the map
    (PyramidPool, (16, 24, (1, 3, 6), "avg"), (7, 13), False),
]


@pytest.mark.parametrize(
    "cls,args,hw,fuse",
    ONNX_CASES,
    ids=[f"{c.__name__}{list(a[2:])}-{h[0]}x{h[1]}-{'fused' if f else 'unfused'}" for c, a, h, f in ONNX_CASES],
)
def test_onnx_export_matches_pytorch(cls, args, hw, fuse):
    """Export as ultralytics does (opset 17, TorchScript exporter, dynamic batch) and compare in ONNX Runtime."""
    ort = pytest.importorskip("onnxruntime")
    block = randomize_bn(cls(*args)).eval()
    if fuse:
        block = fused(block)
    x = torch.randn(2, block.c1, *hw)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            block,
            (x,),
            buf,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for batch in (2, 1, 3):
        xb = torch.randn(batch, block.c1, *hw)
        with torch.no_grad():
            expected = block(xb)
        got = torch.from_numpy(session.run(None, {"x": xb.numpy()})[0])
        torch.testing.assert_close(got, expected, **ONNX)
