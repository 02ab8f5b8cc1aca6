"""FLOP counting that sees every convolution and matrix product, also those called functionally.

ultralytics reports GFLOPs with thop, which only counts work done inside hooked ``nn.Module`` types; blocks that
call ``F.conv2d`` on a submodule's weights (PyramidPool does, to fuse on the small pooled grids) are undercounted
there. ``torch.utils.flop_counter.FlopCounterMode`` counts at the operator level instead (2 FLOPs per multiply-add,
as ultralytics' ``thop MACs x 2``), so blocks are compared on equal terms. Element-wise ops are not counted by
either.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode


def gflops(module: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """GFLOPs of one forward pass of ``module`` (in eval mode, on a copy) on a zero tensor of ``shape``."""
    m = copy.deepcopy(module).eval()
    p = next(m.parameters(), None)
    x = torch.zeros(shape, device=p.device if p is not None else "cpu", dtype=p.dtype if p is not None else None)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        m(x)
    return counter.get_total_flops() / 1e9


def model_gflops(model: torch.nn.Module, imgsz: int = 640, channels: int = 3) -> float:
    """GFLOPs of a detection model at ``imgsz`` x ``imgsz`` (batch 1)."""
    return gflops(model, (1, channels, imgsz, imgsz))
