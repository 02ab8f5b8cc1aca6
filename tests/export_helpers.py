"""A registered block that cannot be exported (for the deployment tests)."""

from __future__ import annotations

import torch
import torch.nn as nn


class CumMaxNeck(nn.Module):
    """A test block whose cumulative maximum has no ONNX symbolic and no OpenVINO conversion rule."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        from ultralytics.nn.modules import Conv

        self.cv = Conv(c1, c2, 1)

    def forward(self, x):
        return self.cv(torch.cummax(x, dim=3)[0])
