"""Pyramid pooling helpers shared by :class:`~yolo_necks.blocks.PyramidPool` and :func:`spp_vector`.

Bins follow adaptive pooling: along an axis of length ``n`` pooled to ``l`` bins, bin ``i`` covers
``[floor(i * n / l), ceil((i + 1) * n / l))``. Bins always lie inside the map and are never empty, also when the map
is smaller than the grid (``n < l``: bins then repeat rows/columns).

Exporting (``torch.jit.trace``, which ultralytics' TorchScript and ONNX exports use, or ``torch.export``): a trace
records one path and turns Python ints into constants, so everything that depends on the map size must be written
with tensor ops on the traced size. While exporting, :func:`adaptive_pool2d` therefore pools with bin masks built
from the traced size (:func:`pool_by_masks`) and :func:`pyramid_pool` never takes the hierarchical shortcut (it is
exact only at some sizes). Eager mode keeps the native kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_levels

POOLS = ("avg", "max")


def is_nested(h: int, w: int, levels) -> bool:
    """Whether pooling the coarser levels from the finest level's grid is exact for an ``h x w`` map.

    True when ``h`` and ``w`` are divisible by the finest level and every level divides the finest one: then every
    bin of every level is a union of whole, equal-sized finest bins.
    """
    finest = max(levels)
    return h % finest == 0 and w % finest == 0 and all(finest % level == 0 for level in levels)


def is_exporting() -> bool:
    """Whether the forward pass is being recorded for an export rather than run.

    ``torch.jit.trace`` covers TorchScript and the TorchScript-based ``torch.onnx.export(dynamo=False)`` that
    ultralytics uses; ``torch.export`` covers the dynamo-based ONNX exporter and ExecuTorch. Both flags cost about
    0.1 us together (``torch.onnx.is_in_onnx_export()`` would add about 1 us to every eager call).
    """
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def bin_masks(n, size: int, device: torch.device | None = None) -> torch.Tensor:
    """(size, n) boolean matrix: row ``i`` marks the positions of adaptive-pooling bin ``i`` on an axis of length n.

    ``n`` may be a plain int or, while exporting, the 0-dim tensor (trace) or symbolic int (``torch.export``) that
    ``x.shape[k]`` then is: the masks are built with tensor ops (``Range``, integer ``Div``, comparisons in ONNX),
    so an export computes them from the input's actual size instead of freezing the bins of the example input.
    """
    i = torch.arange(size, device=device).unsqueeze(1)  # (size, 1)
    j = torch.arange(n, device=device).unsqueeze(0)  # (1, n)
    start = torch.div(i * n, size, rounding_mode="floor")
    end = torch.div((i + 1) * n + (size - 1), size, rounding_mode="floor")  # ceil((i + 1) * n / size)
    return (j >= start) & (j < end)


def pool_by_masks(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Adaptive pooling to ``size x size`` with bin masks: exportable with dynamic H and W (ONNX, TorchScript).

    Separable: every bin is first reduced along W, then along H. ``"avg"``: two matrix products with the
    row-normalised masks (equal to adaptive average pooling up to float rounding). ``"max"``: every bin's maximum over its masked window, first
    along W, then along H (bit-exact). The masked max materialises ``size`` copies of the map's rows, about
    ``size * N * C * H * W`` values: small for neck-sized maps, and only used while exporting.
    """
    h, w = x.shape[2], x.shape[3]  # 0-dim tensors while tracing: the bins follow the input's size
    mask_h, mask_w = bin_masks(h, size, x.device), bin_masks(w, size, x.device)
    if mode == "max":
        low = torch.finfo(x.dtype).min
        y = torch.where(mask_w, x.unsqueeze(3), low).amax(4)  # (N, C, H, 1, W) vs (size, W) -> (N, C, H, size)
        y = y.transpose(2, 3).unsqueeze(3)  # (N, C, size_w, 1, H)
        return torch.where(mask_h, y, low).amax(4).transpose(2, 3)  # (N, C, size_h, size_w)
    weight_h = mask_h.to(x.dtype)
    weight_w = mask_w.to(x.dtype)
    weight_h = weight_h / weight_h.sum(1, keepdim=True)
    weight_w = weight_w / weight_w.sum(1, keepdim=True)
    return torch.matmul(torch.matmul(weight_h, x), weight_w.transpose(0, 1))


def adaptive_pool2d(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``F.adaptive_{avg,max}_pool2d(x, size)``, also when exported with dynamic sizes.

    ONNX has no adaptive pooling: the exporter turns a grid that divides the example map into a fixed-kernel
    pooling (wrong at other sizes) and refuses other grids. While tracing, any grid but 1x1 (global pooling, which
    exports size-independently) is therefore pooled by :func:`pool_by_masks` (the same bins, computed from the
    traced size); eager mode always uses the native kernel.
    """
    return _pool(x, size, mode, is_exporting())


def _pool(x: torch.Tensor, size: int, mode: str, exporting: bool) -> torch.Tensor:
    if size != 1 and exporting:
        return pool_by_masks(x, size, mode)
    if mode == "max":
        return F.adaptive_max_pool2d(x, size)
    return F.adaptive_avg_pool2d(x, size)


def pyramid_pool(x: torch.Tensor, levels, mode: str, hierarchical: bool | None = None) -> list[torch.Tensor]:
    """Pool ``x`` (N, C, H, W) to a ``l x l`` grid for every ``l`` in ``levels``; returns the maps in that order.

    Args:
        x: input map.
        levels: distinct positive grid sizes.
        mode: ``"avg"`` or ``"max"``.
        hierarchical: ``None`` pools hierarchically exactly when :func:`is_nested` holds (the finest grid from ``x``,
            every coarser grid from the finest one), otherwise, and always while exporting, every level directly
            from ``x``. ``False`` forces the direct path; ``True`` forces the hierarchical one and raises
            ``ValueError`` where it is not exact.
            Hierarchical max pooling is bit-exact; hierarchical average pooling equals direct average pooling up to
            float rounding (the mean of equal-sized block means).
    """
    h, w = x.shape[-2:]
    exporting = is_exporting()
    if hierarchical is None:  # a trace would freeze this size-dependent choice: exports always pool directly
        hierarchical = not exporting and is_nested(h, w, levels)
    elif hierarchical and not is_nested(h, w, levels):
        raise ValueError(f"pyramid_pool: hierarchical pooling of a {h}x{w} map to levels {tuple(levels)} is not exact")
    if not hierarchical:
        return [_pool(x, level, mode, exporting) for level in levels]
    finest = max(levels)
    base = _pool(x, finest, mode, exporting)
    return [base if level == finest else _pool(base, level, mode, exporting) for level in levels]


def spp_vector(x: torch.Tensor, levels: tuple[int, ...] = (1, 2, 4), pool: str = "max") -> torch.Tensor:
    """The fixed-length spatial pyramid pooling vector of SPP-net, for any input size.

    Paper: Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun, "Spatial Pyramid Pooling in Deep Convolutional
    Networks for Visual Recognition", ECCV 2014, arXiv:1406.4729.

    Bins are adaptive-pooling bins (see the module docstring), which always cover the map, also when it is smaller
    than a level's grid; SPP-net's own ``ceil``/``floor`` window-and-stride rule is not used because for small maps
    it yields windows outside the input. Pooling is hierarchical where that is exact (see :func:`pyramid_pool`).

    Args:
        x: feature map (N, C, H, W), any H, W >= 1.
        levels: distinct grid sizes ``l`` (each contributes ``l * l`` bins per channel). Default (1, 2, 4).
        pool: ``"max"`` (as in SPP-net) or ``"avg"``. Default ``"max"``.

    Returns:
        (N, C * sum(l * l)) tensor: level by level in the given order, each level's (N, C, l, l) map flattened
        channel-major (channel, row, column).
    """
    levels = check_levels("spp_vector", "levels", levels)
    check_choice("spp_vector", "pool", pool, POOLS)
    if x.dim() != 4:
        raise ValueError(f"spp_vector: x must be a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    return torch.cat([p.flatten(1) for p in pyramid_pool(x, levels, pool)], dim=1)
