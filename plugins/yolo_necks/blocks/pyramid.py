"""Spatial pyramid pooling made neck-shaped: pooled context at several grids, fused back at full resolution."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from ultralytics.nn.modules import Conv

from ._checks import check_choice, check_int, check_levels
from .pooling import POOLS, is_exporting, is_nested, pyramid_pool


class PyramidPool(nn.Module):
    """Pyramid pooling neck block.

    After SPP-net: Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun, "Spatial Pyramid Pooling in Deep Convolutional
    Networks for Visual Recognition", ECCV 2014, arXiv:1406.4729; made neck-shaped like the pooled-context pyramids
    of scene parsing and of scale-decoupled distillation: pooled grids are brought back to full resolution and fused
    with the input instead of being flattened::

        r = cv1(x)                                             # Conv(c1, c_, 1) + BN + SiLU, c_ = c1 // 2
        p_l = SiLU(conv_l(pool_l(r)))  for l in levels         # adaptive avg/max pool to l x l; 1x1 conv with bias
        out = cv2(cat([r, up(p_l) for l in levels]))           # up: nearest to H x W; Conv(c_*(1+n), c2, 1)+BN+SiLU

    The per-level convs have a bias and no BatchNorm: BatchNorm on a 1x1 pooled map fails in training with batch 1.
    Upsampling is *nearest* (``F.interpolate(size=(H, W))``, ONNX ``Resize`` from opset 11): it keeps every grid
    cell's value exact and costs nothing to compute. The output has the input's spatial size.

    How it is computed (same function, fewer operations): pooling is hierarchical when exact (``H`` and ``W``
    divisible by the finest level and every level dividing the finest one; max pooling is then bit-exact, average
    pooling equal up to float rounding, within ``rtol=1e-5, atol=1e-6`` in fp32), otherwise every level is pooled
    directly from ``r``. Since ``cv2``'s conv is linear and commutes with nearest upsampling, its input-channel block
    for level ``l`` is applied to the small ``l x l`` map and only the ``c2``-channel result is upsampled and added,
    so the concatenation is never built; BatchNorm (or, after ``model.fuse()``, the folded bias) and the activation
    of ``cv2`` follow the sum. When pooling is hierarchical, all level contributions are summed on the finest grid
    and added to the full map with one broadcast.

    Exports (TorchScript and ONNX, both traced) work with dynamic input sizes: while tracing, the hierarchical
    shortcut is skipped and pooling uses bin masks computed from the traced size (see :mod:`.pooling`), so an
    exported model gives the same values as this module at sizes other than the export size.

    Args:
        c1 (int): input channels, >= 2.
        c2 (int): output channels.
        levels (tuple[int, ...]): distinct pooled grid sizes, e.g. (1, 2, 4) (a list is accepted too).
            Default (1, 2, 4).
        pool (str): ``"avg"`` or ``"max"``. Default ``"avg"``.
    """

    def __init__(self, c1: int, c2: int, levels: tuple[int, ...] = (1, 2, 4), pool: str = "avg"):
        super().__init__()
        name = type(self).__name__
        check_int(name, "c1", c1, minimum=2)
        check_int(name, "c2", c2)
        levels = check_levels(name, "levels", levels)
        check_choice(name, "pool", pool, POOLS)
        self.c1, self.c2, self.levels, self.pool = c1, c2, levels, pool
        c_ = c1 // 2
        self.c_ = c_
        self.cv1 = Conv(c1, c_, 1)
        self.level_convs = nn.ModuleList(nn.Conv2d(c_, c_, 1) for _ in levels)
        self.level_act = nn.SiLU()
        self.cv2 = Conv(c_ * (len(levels) + 1), c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.cv1(x)
        n, _, h, w = r.shape
        c_, fuse = self.c_, self.cv2
        weight = fuse.conv.weight  # (c2, c_ * (1 + len(levels)), 1, 1): block k + 1 belongs to levels[k]
        z = F.conv2d(r, weight[:, :c_], fuse.conv.bias)  # bias only after model.fuse() folded the BatchNorm
        # size-dependent shortcut: a trace (TorchScript, ONNX) would freeze it, so exports take the general path
        nested = not is_exporting() and is_nested(h, w, self.levels)
        parts = []
        for k, (p, conv) in enumerate(zip(pyramid_pool(r, self.levels, self.pool, nested), self.level_convs)):
            p = self.level_act(conv(p))
            parts.append(F.conv2d(p, weight[:, c_ * (k + 1) : c_ * (k + 2)]))  # (n, c2, l, l)
        if nested:  # sum on the finest grid, then add to every cell's block of z with one broadcast
            finest = max(self.levels)
            acc = None
            for level, part in zip(self.levels, parts):
                if level not in (1, finest):
                    part = F.interpolate(part, size=(finest, finest), mode="nearest")
                acc = part if acc is None else acc + part
            c2 = acc.shape[1]
            z = z.reshape(n, c2, finest, h // finest, finest, w // finest)  # a view unless channels-last
            z = z.add_(acc.reshape(n, c2, finest, 1, finest, 1)).reshape(n, c2, h, w)
        else:
            for level, part in zip(self.levels, parts):
                z = z + (part if level == 1 else F.interpolate(part, size=(h, w), mode="nearest"))
        bn = getattr(fuse, "bn", None)  # ultralytics' fuse() deletes it
        if bn is not None:
            z = bn(z)
        return fuse.act(z)
