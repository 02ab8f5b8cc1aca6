"""Focal modulation (FocalNet) as a neck block."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_bool, check_int


class FocalModulation(nn.Module):
    """Focal modulation in convolutional form, from FocalNet.

    Paper: Jianwei Yang, Chunyuan Li, Xiyang Dai, Lu Yuan, Jianfeng Gao, "Focal Modulation Networks",
    NeurIPS 2022, arXiv:2203.11926.

    With hidden width ``c1`` (all convolutions are plain ``nn.Conv2d``: FocalNet has no BatchNorm)::

        q, ctx, gates = split(proj_in(x), (c1, c1, focal_level + 1))    # 1x1 conv with bias
        for k in range(focal_level):                                   # hierarchical contextualisation
            ctx = GELU(dwconv_k(ctx))                                  # depthwise, kernel focal_factor*k+focal_window
            ctx_all += ctx * gates[:, k]
        ctx_all += GELU(mean_hw(ctx)) * gates[:, focal_level]          # global context
        ctx_all /= focal_level + 1                                     # only if normalize_modulator
        out = q * h(ctx_all)                                           # h: 1x1 conv with bias (the modulator)
        out = LayerNorm_c(out)                                         # per pixel over channels, only if use_postln
        out = proj(out)                                                # 1x1 conv with bias, c1 -> c2

    The spatial size is preserved (every depthwise kernel is odd, padded to "same").

    Args:
        c1 (int): input channels, also the hidden width of query, context and modulator.
        c2 (int): output channels.
        focal_window (int): kernel size of the first depthwise conv; odd, >= 1. Default 3.
        focal_level (int): number of depthwise focal levels, >= 1. Default 2.
        focal_factor (int): kernel growth per level (level ``k`` uses ``focal_factor * k + focal_window``); even,
            >= 0, so every kernel stays odd. Default 2.
        normalize_modulator (bool): divide the aggregated context by ``focal_level + 1``. Default False.
        use_postln (bool): apply a LayerNorm over channels (per pixel) to the modulated output before the output
            projection. Default False.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        focal_window: int = 3,
        focal_level: int = 2,
        focal_factor: int = 2,
        normalize_modulator: bool = False,
        use_postln: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        check_int(name, "c1", c1)
        check_int(name, "c2", c2)
        check_int(name, "focal_window", focal_window, odd=True)
        check_int(name, "focal_level", focal_level)
        check_int(name, "focal_factor", focal_factor, minimum=0, even=True)
        check_bool(name, "normalize_modulator", normalize_modulator)
        check_bool(name, "use_postln", use_postln)
        self.c1, self.c2 = c1, c2
        self.focal_window, self.focal_level, self.focal_factor = focal_window, focal_level, focal_factor
        self.normalize_modulator, self.use_postln = normalize_modulator, use_postln

        self.proj_in = nn.Conv2d(c1, 2 * c1 + focal_level + 1, 1)
        self.focal_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c1, c1, k, padding=k // 2, groups=c1, bias=False), nn.GELU())
            for k in (focal_factor * level + focal_window for level in range(focal_level))
        )
        self.act = nn.GELU()
        self.h = nn.Conv2d(c1, c1, 1)
        self.ln = nn.LayerNorm(c1) if use_postln else None
        self.proj = nn.Conv2d(c1, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, levels = self.c1, self.focal_level
        q, ctx, gates = torch.split(self.proj_in(x), (c, c, levels + 1), dim=1)
        ctx_all = None
        for k, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            gate = gates[:, k : k + 1]
            # the first product allocates the accumulator, the rest accumulate in place (no extra full-size copies)
            ctx_all = ctx * gate if ctx_all is None else ctx_all.addcmul_(ctx, gate)
        ctx_global = self.act(ctx.mean((2, 3), keepdim=True))
        ctx_all = ctx_all.addcmul_(ctx_global, gates[:, levels:])
        weight = self.h.weight
        if self.normalize_modulator:  # h is linear: scale its (small) weight instead of the full-size context
            weight = weight * (1.0 / (levels + 1))
        out = F.conv2d(ctx_all, weight, self.h.bias).mul_(q)  # modulator * q, in the modulator's buffer
        if self.ln is not None:
            out = self.ln(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.proj(out)
