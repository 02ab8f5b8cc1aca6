"""Pyramid pooling helpers shared by :class:`~yolo_necks.blocks.PyramidPool` and :func:`spp_vector`.

Bins follow adaptive pooling: along an axis of length ``n`` pooled to ``l`` bins, bin ``i`` covers
``[floor(i * n / l), ceil((i + 1) * n / l))``. Bins always lie inside the map and are never empty, also when the map
is smaller than the grid (``n < l``: bins then repeat rows/columns).
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


def _bins(n: int, size: int) -> list[tuple[int, int]]:
    return [((i * n) // size, -((-(i + 1) * n) // size)) for i in range(size)]


def pool_by_slices(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Adaptive pooling to ``size x size`` written with slices and reductions (exportable to ONNX for any size).

    Separable: every bin is first reduced along W, then along H. For ``"avg"`` that is exact in real arithmetic
    (each row mean is over the same number of columns), for ``"max"`` it is bit-exact.
    """
    reduce = torch.amax if mode == "max" else torch.mean
    h, w = int(x.shape[2]), int(x.shape[3])  # plain ints also while tracing: the bins are fixed for this size
    x = torch.cat([reduce(x.narrow(3, a, b - a), dim=3, keepdim=True) for a, b in _bins(w, size)], dim=3)
    return torch.cat([reduce(x.narrow(2, a, b - a), dim=2, keepdim=True) for a, b in _bins(h, size)], dim=2)


def adaptive_pool2d(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``F.adaptive_{avg,max}_pool2d(x, size)``, also when exported to ONNX.

    ONNX has no adaptive pooling: the exporter only handles a grid that divides the map (or a 1x1 grid). Other sizes
    are written with slices during export (:func:`pool_by_slices`, the same bins); eager mode always uses the native
    kernel.
    """
    h, w = x.shape[-2:]
    if size != 1 and (h % size or w % size) and torch.onnx.is_in_onnx_export():
        return pool_by_slices(x, size, mode)
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
            every coarser grid from the finest one), otherwise every level directly from ``x``. ``False`` forces the
            direct path; ``True`` forces the hierarchical one and raises ``ValueError`` where it is not exact.
            Hierarchical max pooling is bit-exact; hierarchical average pooling equals direct average pooling up to
            float rounding (the mean of equal-sized block means).
    """
    h, w = x.shape[-2:]
    nested = is_nested(h, w, levels)
    if hierarchical is None:
        hierarchical = nested
    elif hierarchical and not nested:
        raise ValueError(f"pyramid_pool: hierarchical pooling of a {h}x{w} map to levels {tuple(levels)} is not exact")
    if not hierarchical:
        return [adaptive_pool2d(x, level, mode) for level in levels]
    finest = max(levels)
    base = adaptive_pool2d(x, finest, mode)
    return [base if level == finest else adaptive_pool2d(base, level, mode) for level in levels]


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
