"""Coordinate attention with softmax-mixed H/W attention maps, followed by a conv, as a neck block."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from ultralytics.nn.modules import Conv

from ._checks import check_choice, check_int

POOLS = ("avg", "avg+max")


class DyCAConv(nn.Module):
    """Dynamic coordinate attention followed by a ``Conv``.

    Coordinate attention is from Qibin Hou, Daquan Zhou, Jiashi Feng, "Coordinate Attention for Efficient Mobile
    Network Design", CVPR 2021, arXiv:2103.02907. Here its two direction-aware maps are mixed by two input-dependent
    softmax weights instead of being multiplied together::

        x_h = mean_w(x)  [+ max_w(x)]       # (N, c1, H, 1)        "+ max" only with pool="avg+max"
        x_w = mean_h(x)  [+ max_h(x)]       # (N, c1, 1, W)
        y = cv1(cat([x_h, x_w^T], dim=H))   # shared Conv(c1, mip, 1) + BN + h-swish, mip = max(8, c1 // reduction)
        y_h, y_w = split(y)
        a_h = sigmoid(conv_h(y_h))          # 1x1 conv with bias, mip -> c1: (N, c1, H, 1)
        a_w = sigmoid(conv_w(y_w^T))        # 1x1 conv with bias, mip -> c1: (N, c1, 1, W)
        w0, w1 = softmax(mix(mean_hw(x)))   # Linear(c1, 2) on the global average of x (always the average)
        out = cv2(x * (w0 * a_h + w1 * a_w))   # Conv(c1, c2, k, s) + BN + SiLU

    The global average is taken from the W-pooled map (``mean_h(mean_w(x))``) rather than by a second reduction
    over the full input. Output size: ``ceil(H / s) x ceil(W / s)``.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        k (int): kernel size of the output ``Conv``; odd, >= 1 ("same" padding). Default 3.
        s (int): stride of the output ``Conv``, >= 1. Default 1.
        reduction (int): channel reduction of the shared attention conv (``mip = max(8, c1 // reduction)``),
            >= 1. Default 32.
        pool (str): ``"avg"`` (directional average pooling, as in the paper) or ``"avg+max"`` (directional average
            plus directional max pooling, summed). Default ``"avg"``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, reduction: int = 32, pool: str = "avg"):
        super().__init__()
        name = type(self).__name__
        check_int(name, "c1", c1)
        check_int(name, "c2", c2)
        check_int(name, "k", k, odd=True)
        check_int(name, "s", s)
        check_int(name, "reduction", reduction)
        check_choice(name, "pool", pool, POOLS)
        self.c1, self.c2, self.k, self.s, self.reduction, self.pool = c1, c2, k, s, reduction, pool
        self.use_max = pool == "avg+max"
        mip = max(8, c1 // reduction)
        self.mip = mip
        self.cv1 = Conv(c1, mip, 1, act=nn.Hardswish())
        self.conv_h = nn.Conv2d(mip, c1, 1)
        self.conv_w = nn.Conv2d(mip, c1, 1)
        self.mix = nn.Linear(c1, 2)
        self.cv2 = Conv(c1, c2, k, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        # Directional pools. Same values either way; which kernel is fast depends on the memory layout: in
        # channels_last, reductions over H or W are 10-40x slower than adaptive pooling, in NCHW the reverse.
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if channels_last:
            x_h, x_w = F.adaptive_avg_pool2d(x, (h, 1)), F.adaptive_avg_pool2d(x, (1, w))
        else:
            x_h, x_w = x.mean(3, keepdim=True), x.mean(2, keepdim=True)  # (n, c, h, 1), (n, c, 1, w)
        weights = self.mix(x_h.mean((2, 3))).softmax(1)  # global average derived from x_h: (n, 2)
        if self.use_max:
            if channels_last:
                x_h = x_h + F.adaptive_max_pool2d(x, (h, 1))
                x_w = x_w + F.adaptive_max_pool2d(x, (1, w))
            else:
                x_h = x_h + x.amax(3, keepdim=True)
                x_w = x_w + x.amax(2, keepdim=True)
        y = self.cv1(torch.cat((x_h, x_w.transpose(2, 3)), dim=2))  # (n, mip, h + w, 1)
        y_h, y_w = torch.split(y, (h, w), dim=2)
        # fold the two mixing weights into the small maps, so only the sum and the product touch full size
        a_h = self.conv_h(y_h).sigmoid() * weights[:, 0:1, None, None]  # (n, c, h, 1)
        a_w = self.conv_w(y_w.transpose(2, 3)).sigmoid() * weights[:, 1:2, None, None]  # (n, c, 1, w)
        return self.cv2(x * (a_h + a_w))
