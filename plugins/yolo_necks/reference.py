"""Plain reference formulations of the blocks' forward passes.

Each function computes a block's output the obvious way, straight from its paper: functional ops on the block's own
parameters, a Python loop over branches or pyramid levels, every pyramid level pooled directly from its input with
``F.adaptive_*_pool2d``, the concatenation built explicitly, BatchNorm applied where the block has one. None of the
blocks' shortcuts (hierarchical pooling, linear-map reordering, in-place accumulation, derived reductions) are used,
so the two can be compared on the same weights, and the blocks' speed measured against this baseline.

A ``Conv`` whose BatchNorm was folded by ``model.fuse()`` (no ``bn`` attribute, conv with bias) is handled too.
In training mode BatchNorm layers are applied as modules (batch statistics, running stats updated) exactly as the
blocks do; the comparisons are meant for eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from ultralytics.nn.modules import Conv

from .blocks import DyCAConv, FocalModulation, PyramidPool, SKConv

__all__ = [
    "reference_dyca_conv",
    "reference_focal_modulation",
    "reference_forward",
    "reference_pyramid_pool",
    "reference_sk_conv",
    "reference_spp_vector",
]


def _conv_bn_act(m: Conv, x: Tensor) -> Tensor:
    """An ultralytics ``Conv`` written out: conv2d, BatchNorm (unless folded), activation."""
    conv = m.conv
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    bn = getattr(m, "bn", None)
    if bn is not None:
        if bn.training:
            y = bn(y)
        else:
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return m.act(y)


def reference_focal_modulation(block: FocalModulation, x: Tensor) -> Tensor:
    """FocalNet focal modulation (Yang et al., NeurIPS 2022), as in the paper's pseudo-code."""
    c, levels = block.c1, block.focal_level
    y = F.conv2d(x, block.proj_in.weight, block.proj_in.bias)
    q, ctx, gates = y[:, :c], y[:, c : 2 * c], y[:, 2 * c :]
    ctx_all = 0
    for k in range(levels):
        dw = block.focal_layers[k][0]
        ctx = F.gelu(F.conv2d(ctx, dw.weight, None, padding=dw.padding, groups=c))
        ctx_all = ctx_all + ctx * gates[:, k : k + 1]
    ctx_global = F.gelu(ctx.mean(2, keepdim=True).mean(3, keepdim=True))
    ctx_all = ctx_all + ctx_global * gates[:, levels:]
    if block.normalize_modulator:
        ctx_all = ctx_all / (levels + 1)
    modulator = F.conv2d(ctx_all, block.h.weight, block.h.bias)
    out = q * modulator
    if block.use_postln:
        ln = block.ln
        out = F.layer_norm(out.permute(0, 2, 3, 1), (c,), ln.weight, ln.bias, ln.eps).permute(0, 3, 1, 2)
    return F.conv2d(out, block.proj.weight, block.proj.bias)


def reference_dyca_conv(block: DyCAConv, x: Tensor) -> Tensor:
    """Coordinate attention (Hou et al., CVPR 2021) with softmax-mixed H/W maps, then the output conv."""
    n, _, h, w = x.shape
    x_h = F.adaptive_avg_pool2d(x, (h, 1))
    x_w = F.adaptive_avg_pool2d(x, (1, w))
    if block.pool == "avg+max":
        x_h = x_h + F.adaptive_max_pool2d(x, (h, 1))
        x_w = x_w + F.adaptive_max_pool2d(x, (1, w))
    y = torch.cat([x_h, x_w.permute(0, 1, 3, 2)], dim=2)
    y = _conv_bn_act(block.cv1, y)
    y_h, y_w = y[:, :, :h], y[:, :, h:].permute(0, 1, 3, 2)
    a_h = torch.sigmoid(F.conv2d(y_h, block.conv_h.weight, block.conv_h.bias))
    a_w = torch.sigmoid(F.conv2d(y_w, block.conv_w.weight, block.conv_w.bias))
    g = F.adaptive_avg_pool2d(x, 1).flatten(1)
    weights = torch.softmax(F.linear(g, block.mix.weight, block.mix.bias), dim=1)
    mix = weights[:, 0].view(n, 1, 1, 1) * a_h + weights[:, 1].view(n, 1, 1, 1) * a_w
    return _conv_bn_act(block.cv2, x * mix)


def reference_sk_conv(block: SKConv, x: Tensor) -> Tensor:
    """Selective kernel convolution (Li et al., CVPR 2019): split, fuse, select."""
    if block.proj is not None and block.project_first:
        x = _conv_bn_act(block.proj, x)
    feats = torch.stack([_conv_bn_act(branch, x) for branch in block.branches], dim=1)  # (N, M, c, H, W)
    u = feats.sum(dim=1)
    s = F.adaptive_avg_pool2d(u, 1).flatten(1)
    z = F.relu(F.linear(s, block.fc.weight, block.fc.bias))
    c = block.width
    logits = [
        F.linear(z, block.fcs.weight[m * c : (m + 1) * c], block.fcs.bias[m * c : (m + 1) * c])
        for m in range(block.M)
    ]
    a = torch.softmax(torch.stack(logits, dim=1), dim=1)  # (N, M, c)
    v = (feats * a[..., None, None]).sum(dim=1)
    if block.proj is not None and not block.project_first:
        v = _conv_bn_act(block.proj, v)
    return v


def _pool(x: Tensor, level: int, pool: str) -> Tensor:
    return F.adaptive_max_pool2d(x, level) if pool == "max" else F.adaptive_avg_pool2d(x, level)


def reference_pyramid_pool(block: PyramidPool, x: Tensor) -> Tensor:
    """Pyramid pooling: pool every level from the reduced map, 1x1 conv, upsample, concatenate, fuse."""
    r = _conv_bn_act(block.cv1, x)
    h, w = r.shape[2:]
    outs = [r]
    for level, conv in zip(block.levels, block.level_convs):
        p = F.silu(F.conv2d(_pool(r, level, block.pool), conv.weight, conv.bias))
        outs.append(F.interpolate(p, size=(h, w), mode="nearest"))
    return _conv_bn_act(block.cv2, torch.cat(outs, dim=1))


def reference_spp_vector(x: Tensor, levels=(1, 2, 4), pool: str = "max") -> Tensor:
    """SPP-net's pyramid vector: every level pooled directly from ``x``, flattened, concatenated."""
    return torch.cat([_pool(x, level, pool).flatten(1) for level in levels], dim=1)


_DISPATCH = (
    (FocalModulation, reference_focal_modulation),
    (DyCAConv, reference_dyca_conv),
    (SKConv, reference_sk_conv),
    (PyramidPool, reference_pyramid_pool),
)


def reference_forward(block, x: Tensor) -> Tensor:
    """The reference output of ``block`` (one of the built-in blocks) for input ``x``, on the block's weights."""
    for cls, fn in _DISPATCH:
        if isinstance(block, cls):
            return fn(block, x)
    raise TypeError(f"reference_forward: no reference formulation for {type(block).__name__}")
