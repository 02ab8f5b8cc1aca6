"""Selective kernel convolution (SKNet) as a neck block."""

from __future__ import annotations

import torch
import torch.nn as nn
from ultralytics.nn.modules import Conv

from ._checks import check_int


def largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is not above ``cap`` (``cap >= 1``)."""
    return next(g for g in range(min(n, cap), 0, -1) if n % g == 0)


def _project_first(c1: int, c2: int, M: int, G: int, s: int) -> bool:
    """Whether projecting c1 -> c2 before the SK unit costs fewer multiply-accumulates than projecting after it.

    Per output pixel: before = c1*c2*s^2 (the 1x1 runs at input resolution) + M*9*c2*(c2/g2);
    after = M*9*c1*(c1/g1) + c1*c2; ties project after.
    """
    g1, g2 = largest_divisor(c1, G), largest_divisor(c2, G)
    before = c1 * c2 * s * s + M * 9 * c2 * (c2 // g2)
    after = M * 9 * c1 * (c1 // g1) + c1 * c2
    return before < after


class SKConv(nn.Module):
    """Selective kernel convolution.

    Paper: Xiang Li, Wenhai Wang, Xiaolin Hu, Jian Yang, "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586.

    At width ``c`` (see the projection below)::

        U_m = Conv(c, c, 3, s, g=g, d=m)(x)  for m = 1..M      # split: 3x3 grouped, dilation m, BN + ReLU
        z = ReLU(fc(mean_hw(sum_m U_m)))                          # fuse: Linear(c, d), d = max(c // r, L)
        a = softmax_over_m(fcs(z).view(N, M, c))                  # select: per-branch Linear(d, c), one fused layer
        V = sum_m a_m * U_m

    The squeeze vector ``z`` has no BatchNorm (BatchNorm on a pooled 1x1 map fails in training with batch 1).
    The per-branch ``fc`` layers back to ``c`` are stored as one ``Linear(d, M * c)`` whose output row block ``m``
    is branch ``m``'s layer. ``mean_hw(sum_m U_m)`` is computed as ``sum_m mean_hw(U_m)``, so ``U`` is never built.

    Groups: ``g`` is the largest divisor of ``c`` that is not above ``G`` (``G`` itself when it divides ``c``, as
    for the usual widths; e.g. ``c=24, G=32`` gives ``g=24``, depthwise), so small model scales still build.

    Projection: when ``c1 != c2`` a 1x1 ``Conv(c1, c2)`` (+BN+SiLU) is applied either *before* the SK unit
    (``c = c2``, at input resolution) or *after* it (``c = c1``, at output resolution), whichever needs fewer
    multiply-accumulates per output pixel: before ``= c1*c2*s^2 + M*9*c2*c2/g2``, after
    ``= M*9*c1*c1/g1 + c1*c2`` (ties: after). In practice: a width reduction at stride 1 projects first, a width
    increase or any stride-2 block projects after. The choice is stored in ``project_first``. Output size:
    ``ceil(H / s) x ceil(W / s)``.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        M (int): number of branches (dilations 1..M), >= 1. Default 2.
        G (int): maximum number of groups of the 3x3 convs, >= 1. Default 32.
        r (int): reduction ratio of the squeeze vector, >= 1. Default 16.
        L (int): minimum width of the squeeze vector, >= 1. Default 32.
        s (int): stride of the branch convs, >= 1. Default 1.
    """

    def __init__(self, c1: int, c2: int, M: int = 2, G: int = 32, r: int = 16, L: int = 32, s: int = 1):
        super().__init__()
        name = type(self).__name__
        for arg, value in (("c1", c1), ("c2", c2), ("M", M), ("G", G), ("r", r), ("L", L), ("s", s)):
            check_int(name, arg, value)
        self.c1, self.c2, self.M, self.G, self.r, self.L, self.s = c1, c2, M, G, r, L, s
        self.project_first = c1 != c2 and _project_first(c1, c2, M, G, s)
        c = c2 if self.project_first else c1
        self.width = c
        self.groups = largest_divisor(c, G)
        self.d = max(c // r, L)
        self.proj = Conv(c1, c2, 1) if c1 != c2 else None
        self.branches = nn.ModuleList(
            Conv(c, c, 3, s, g=self.groups, d=dilation, act=nn.ReLU()) for dilation in range(1, M + 1)
        )
        self.fc = nn.Linear(c, self.d)
        self.relu = nn.ReLU()
        self.fcs = nn.Linear(self.d, M * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project_first:
            x = self.proj(x)
        feats = [branch(x) for branch in self.branches]
        pooled = feats[0].mean((2, 3))  # mean_hw(sum_m U_m) as sum_m mean_hw(U_m): U is never materialised
        for u in feats[1:]:
            pooled = pooled + u.mean((2, 3))
        a = self.fcs(self.relu(self.fc(pooled))).unflatten(1, (self.M, self.width)).softmax(1)  # (N, M, c)
        a = a[..., None, None]
        out = feats[0] * a[:, 0]
        for m in range(1, self.M):
            out = out.addcmul_(feats[m], a[:, m])
        if self.proj is not None and not self.project_first:
            out = self.proj(out)
        return out
