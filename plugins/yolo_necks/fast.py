"""Fast exact equivalents of ultralytics blocks, and :func:`accelerate` to swap them into a model in place.

Every module here computes the same numbers as the module it replaces (``torch.equal`` on the outputs, and on the
gradients in training): the speed comes from doing the same max/copy operations in a cheaper order, never from
approximating. :func:`accelerate` swaps them into a model: ``SPPF`` -> :class:`FastSPPF`, ``SPP`` -> :class:`FastSPP`,
nearest power-of-two ``nn.Upsample`` -> :class:`FastUpsample`.

Looked at and left alone (measured on yolov8n, 640 px, CPU): a matmul DFL decode is 3-7x faster in isolation but
saves < 0.5 % of the model and is not bit-exact (its sums round differently from the 1x1 convolution); in-place SiLU
saves nothing measurable; C2f/Concat spend their time in copies no exact rewrite avoids; Conv and BatchNorm are
already folded by ``fuse()``.

Max pooling
    A ``k x k`` stride-1 max pool with ``k // 2`` padding (padding acts as ``-inf``) is separable: a ``1 x k`` pool then
    a ``k x 1`` pool give the same values, because max is order-independent. Stride-1 "same" pools also cascade: a pool
    of size ``a`` then one of size ``b`` equals one pool of size ``a + b - 1`` (so SPPF == SPP(5, 9, 13)).
    On CPU, PyTorch's contiguous (NCHW) max-pool kernel is slow (~1 ms for a 5x5 pool of 128x20x20 on two cores),
    while a sliding maximum built from ``torch.maximum`` of shifted slices of a ``-inf``-padded tensor costs
    ``O(log k)`` vectorised passes per axis and is 10-20x faster. For channels_last tensors PyTorch's pool kernel
    is vectorised over channels; the separable ``F.max_pool2d`` pair is then the fastest on small maps (below
    ``_CL_SHIFT_MIN_AREA`` pixels), the shifted maxima on larger ones. On CUDA, and while tracing
    (ONNX/TorchScript export), the separable ``F.max_pool2d`` pair is used: two small kernels, two ``MaxPool`` nodes.
    Whenever autograd is recording, the stock pooling is used so that gradients (which pick one argmax among ties)
    are identical to ultralytics' too.

    The only bit-level freedom left is the sign of zero: ``max(-0.0, +0.0)`` may return either zero, and ``-0.0 ==
    +0.0``, so ``torch.equal`` and every downstream value are unaffected.

Upsampling
    Nearest upsampling by 2 (the neck's ``nn.Upsample``) is a pure copy; for small contiguous maps a broadcast copy
    beats PyTorch's CPU kernel, see :class:`FastUpsample`.

Why this matters: on a 2-core CPU, yolov8n's SPPF (256 channels at 20x20 for a 640 px image) spends most of its time
in the three 5x5 max pools; with FastSPPF and FastUpsample yolov8n runs ~6 % faster end to end, bit for bit the
same (``yolo-necks bench`` measures it). Note that the CPU convolution backend, and with it the last bits of every
output, depends on the torch thread count; "bit-identical" means at the same thread count.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "FAST_MODULES",
    "FastSPP",
    "FastSPPF",
    "FastUpsample",
    "accelerate",
    "cascade_max_pool",
    "max_pool_same",
    "sliding_max",
]

_NEG_INF = float("-inf")
# channels_last maps at least this large (H * W) pool faster with shifted maxima than with PyTorch's pool kernel
_CL_SHIFT_MIN_AREA = 1600
# contiguous maps up to this size (H * W) upsample faster as a broadcast copy than with PyTorch's nearest kernel
_UPSAMPLE_COPY_MAX_AREA = 1024


def _tracing() -> bool:
    """True while torch.jit.trace / torch.onnx.export / torch.compile record the graph."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    try:
        if torch.onnx.is_in_onnx_export():
            return True
    except Exception:  # pragma: no cover - very old torch
        pass
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def sliding_max(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sliding-window maximum of width ``k`` along ``dim``, without padding (output length ``L - k + 1``).

    Built by doubling: windows of width 1, 2, 4, ... are combined with ``torch.maximum`` of two shifted slices, and
    the last step overlaps two power-of-two windows to cover exactly ``k``. That is ``ceil(log2 k)`` elementwise
    passes instead of ``k - 1``.
    """
    if k < 1:
        raise ValueError(f"sliding_max: window must be >= 1, got {k}")
    if k == 1:
        return x
    length = x.shape[dim]
    if length < k:
        raise ValueError(f"sliding_max: window {k} is longer than the axis ({length})")
    width, cur = 1, x
    while 2 * width <= k:
        n = cur.shape[dim] - width
        cur = torch.maximum(cur.narrow(dim, 0, n), cur.narrow(dim, width, n))
        width *= 2
    if width == k:
        return cur
    n = length - k + 1
    return torch.maximum(cur.narrow(dim, 0, n), cur.narrow(dim, k - width, n))


def _shifted_max_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k stride-1 same-padded max pool as two 1-D sliding maxima over -inf padded copies."""
    p = k // 2
    x = sliding_max(F.pad(x, (p, p, 0, 0), value=_NEG_INF), k, x.dim() - 1)
    return sliding_max(F.pad(x, (0, 0, p, p), value=_NEG_INF), k, x.dim() - 2)


def _separable_max_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k stride-1 same-padded max pool as a 1 x k pool followed by a k x 1 pool."""
    p = k // 2
    return F.max_pool2d(F.max_pool2d(x, (1, k), 1, (0, p)), (k, 1), 1, (p, 0))


def max_pool_same(x: torch.Tensor, k: int) -> torch.Tensor:
    """Exact, faster ``F.max_pool2d(x, k, stride=1, padding=k // 2)`` for a 4-D (or 3-D) tensor.

    Odd ``k`` only goes the fast way (an even ``k`` with ``k // 2`` padding changes the map size; it is passed to
    ``F.max_pool2d`` unchanged). The formulation is picked per call from device, memory layout and map size, by
    measurement (see the module docstring); all of them give the same values.
    """
    k = int(k)
    if k == 1:
        return x
    if k % 2 == 0 or x.dim() not in (3, 4) or (torch.is_grad_enabled() and x.requires_grad):
        return F.max_pool2d(x, k, 1, k // 2)
    if x.device.type != "cpu" or _tracing() or not x.dtype.is_floating_point:
        return _like_stock(x, _separable_max_pool(x, k))
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        if x.shape[-1] * x.shape[-2] < _CL_SHIFT_MIN_AREA:
            return _like_stock(x, _separable_max_pool(x, k))
    return _like_stock(x, _shifted_max_pool(x, k))


def _like_stock(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` (same values) with the strides ``F.max_pool2d(x, ...)`` gives its output, those of ``x``. Values alone
    are not enough: a layout that is both contiguous and channels-last (one channel, or a 1-pixel map) can come
    back in the other layout, and a later ``torch.cat`` and 1x1 conv then sum in another order (last-bit changes)."""
    if y.stride() == x.stride() or _tracing():
        return y
    return torch.empty_like(x).copy_(y)


def cascade_max_pool(x: torch.Tensor, kernels) -> list[torch.Tensor]:
    """``[F.max_pool2d(x, k, 1, k // 2) for k in kernels]``, exactly, computed as a cascade of small pools.

    Odd kernels are sorted and each one is obtained from the previous result with a pool of size
    ``k_next - k_prev + 1`` (stride-1 same pools compose: sizes ``a`` then ``b`` give ``a + b - 1``). Results come
    back in the order of ``kernels``. Even kernels are pooled directly. Under autograd the direct stock pools are
    used, so gradients match too.
    """
    kernels = [int(k) for k in kernels]
    if torch.is_grad_enabled() and x.requires_grad:
        return [F.max_pool2d(x, k, 1, k // 2) for k in kernels]
    out: dict[int, torch.Tensor] = {}
    prev_k, prev = 1, x
    for k in sorted({k for k in kernels if k % 2 == 1}):
        prev = max_pool_same(prev, k - prev_k + 1)
        prev_k = k
        out[k] = prev
    return [out[k] if k in out else F.max_pool2d(x, k, 1, k // 2) for k in kernels]


def _copy_parser_attrs(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Copy the routing attributes ultralytics' parse_model attaches (i, f, type, np) and training mode."""
    for name in ("i", "f", "type", "np"):
        if hasattr(src, name):
            setattr(dst, name, getattr(src, name))
    dst.train(src.training)
    return dst


class FastSPPF(nn.Module):
    """Drop-in, bit-identical equivalent of ultralytics' ``SPPF(c1, c2, k=5, n=3, shortcut=False)``.

    Builds its own ``cv1``/``cv2`` like SPPF when constructed directly; :meth:`from_module` instead reuses an existing
    SPPF's submodules, so weights, activations (including the ``cv1.act`` the parser may set for legacy YAML rows)
    and Conv/BN fusion carry over unchanged.
    """

    def __init__(self, c1: int, c2: int, k: int = 5, n: int = 3, shortcut: bool = False):
        super().__init__()
        from ultralytics.nn.modules.conv import Conv

        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=False)
        self.cv2 = Conv(c_ * (n + 1), c2, 1, 1)
        self.k = int(k)
        self.n = int(n)
        self.add = bool(shortcut and c1 == c2)

    @classmethod
    def from_module(cls, m: nn.Module) -> FastSPPF:
        """Wrap an ultralytics ``SPPF``: share its submodules (weights included) and its parser attributes."""
        pool = m.m
        k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.cv1, self.cv2 = m.cv1, m.cv2
        self.k = int(k)
        self.n = int(getattr(m, "n", 3))
        self.add = bool(getattr(m, "add", False))
        if not _is_same_pool(pool, self.k):  # unusual stride/padding/dilation: keep the module as is
            self.m = pool
        return _copy_parser_attrs(m, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        pool = self._modules.get("m")
        if pool is not None:  # a pool that is not a stride-1 "same" pool: as ultralytics does
            feats = [y]
            feats.extend(pool(feats[-1]) for _ in range(self.n))
        elif torch.is_grad_enabled() and y.requires_grad:  # ultralytics' cascade, so gradients match bit for bit
            feats = [y]
            feats.extend(F.max_pool2d(feats[-1], self.k, 1, self.k // 2) for _ in range(self.n))
        else:  # pools of sizes k, 2k-1, 3k-2, ... of y, each from the previous one
            feats = [y, *cascade_max_pool(y, [self.k * i - (i - 1) for i in range(1, self.n + 1)])]
        out = self.cv2(torch.cat(feats, 1))
        return out + x if self.add else out


class FastSPP(nn.Module):
    """Drop-in, bit-identical equivalent of ultralytics' ``SPP(c1, c2, k=(5, 9, 13))``, pooling as a cascade."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        from ultralytics.nn.modules.conv import Conv

        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.k = tuple(int(v) for v in k)

    @classmethod
    def from_module(cls, m: nn.Module) -> FastSPP:
        """Wrap an ultralytics ``SPP``: share its submodules (weights included) and its parser attributes."""
        ks = []
        for pool in m.m:
            k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
            ks.append(int(k))
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.cv1, self.cv2 = m.cv1, m.cv2
        self.k = tuple(ks)
        if not all(_is_same_pool(p, k) for p, k in zip(m.m, ks)):
            self.m = m.m
        return _copy_parser_attrs(m, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        pools = self._modules.get("m")
        feats = [p(x) for p in pools] if pools is not None else cascade_max_pool(x, self.k)
        return self.cv2(torch.cat([x, *feats], 1))


def _is_same_pool(pool: nn.Module, k: int) -> bool:
    """True if ``pool`` is a plain stride-1, k//2-padded, undilated square MaxPool2d of odd size k."""

    def _pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    return (
        type(pool) is nn.MaxPool2d
        and k % 2 == 1
        and _pair(pool.kernel_size) == (k, k)
        and _pair(pool.stride) == (1, 1)
        and _pair(pool.padding) == (k // 2, k // 2)
        and _pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    )


class FastUpsample(nn.Upsample):
    """``nn.Upsample(scale_factor=2**j, mode="nearest")`` with a faster path for small maps; bit-identical.

    Nearest upsampling by an integer factor ``s`` only repeats every pixel in an ``s x s`` block, which one broadcast
    copy (``expand`` + ``reshape``) does exactly. On CPU, PyTorch's nearest kernel takes a detour for contiguous
    maps of at most ``_UPSAMPLE_COPY_MAX_AREA`` pixels (through a channels_last copy of input and output) and is
    3-4x slower there than the broadcast copy (measured for 16x16 to 32x32 maps, 64-512 channels; e.g. 0.95 vs
    0.32 ms for yolov8n's 256x20x20 upsample on one thread); on larger maps the stock kernel is faster and is kept.
    Only power-of-two factors are swapped (their index arithmetic ``floor(i / s)`` is exact in floating point).
    channels_last inputs, autograd, tracing and everything else go to ``nn.Upsample.forward`` unchanged.
    """

    @staticmethod
    def factor(m: nn.Upsample) -> int | None:
        """The integer power-of-two factor of a nearest, size-free ``nn.Upsample``, or None if it is not one."""
        if m.mode != "nearest" or m.size is not None or m.scale_factor is None:
            return None
        sf = m.scale_factor if isinstance(m.scale_factor, (tuple, list)) else (m.scale_factor, m.scale_factor)
        if len(sf) != 2 or sf[0] != sf[1] or float(sf[0]) != int(sf[0]):
            return None
        s = int(sf[0])
        return s if s >= 1 and s & (s - 1) == 0 else None

    @classmethod
    def accepts(cls, m: nn.Module) -> bool:
        return isinstance(m, nn.Upsample) and cls.factor(m) is not None

    @classmethod
    def from_module(cls, m: nn.Upsample) -> FastUpsample:
        """Wrap an ``nn.Upsample`` (same settings, parser attributes copied)."""
        self = cls(
            size=m.size,
            scale_factor=m.scale_factor,
            mode=m.mode,
            align_corners=m.align_corners,
            recompute_scale_factor=m.recompute_scale_factor,
        )
        return _copy_parser_attrs(m, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.factor(self)
        if (
            s is not None
            and x.dim() == 4
            and x.shape[-1] * x.shape[-2] <= _UPSAMPLE_COPY_MAX_AREA
            and x.is_contiguous()
            and not x.is_contiguous(memory_format=torch.channels_last)  # ambiguous layouts: leave to the stock op
            and x.device.type == "cpu"
            and not (torch.is_grad_enabled() and x.requires_grad)
            and not _tracing()
        ):
            b, c, h, w = x.shape
            return x[:, :, :, None, :, None].expand(b, c, h, s, w, s).reshape(b, c, h * s, w * s)
        return super().forward(x)


FAST_MODULES: tuple[type[nn.Module], ...] = (FastSPPF, FastSPP, FastUpsample)


def _swaps() -> dict[type, type]:
    """Swapped class -> fast class (exact types only: subclasses may override ``forward``)."""
    from ultralytics.nn.modules.block import SPP, SPPF

    return {SPPF: FastSPPF, SPP: FastSPP, nn.Upsample: FastUpsample}


def accelerate(model, verbose: bool = True):
    """Swap ultralytics blocks for their fast equivalents in place; return ``model``.

    Args:
        model: an ``ultralytics.YOLO`` object or any ``nn.Module`` (e.g. ``YOLO(...).model``, or a model trained
            with stock ultralytics). Weights are shared with the swapped-out modules, so nothing is copied.
        verbose: log what was swapped through ultralytics' LOGGER.

    Idempotent: already-fast modules are left alone. Only exact instances of the ultralytics classes are swapped
    (subclasses may override ``forward``). Works before or after ``fuse()``; the fast modules keep the original
    ``Conv`` submodules, so ``fuse()``, saving, loading and export behave as before.
    """
    from ultralytics.utils import LOGGER

    root = getattr(model, "model", None) if not isinstance(model, nn.Module) else model
    if not isinstance(root, nn.Module):
        raise TypeError(f"accelerate: expected an ultralytics YOLO object or an nn.Module, got {type(model).__name__}")
    table = _swaps()
    counts: dict[str, int] = {}
    cls = table.get(type(root))
    if cls is not None and getattr(cls, "accepts", lambda m: True)(root):  # a bare block: no parent to swap it in
        return cls.from_module(root)
    for parent in list(root.modules()):
        for name, child in list(parent._modules.items()):
            cls = table.get(type(child)) if child is not None else None
            if cls is None or not getattr(cls, "accepts", lambda m: True)(child):
                continue
            parent._modules[name] = cls.from_module(child)
            key = f"{type(child).__name__}->{cls.__name__}"
            counts[key] = counts.get(key, 0) + 1
    if verbose:
        if counts:
            LOGGER.info("yolo-necks accelerate: swapped " + ", ".join(f"{n}x {k}" for k, n in counts.items()))
        else:
            LOGGER.info("yolo-necks accelerate: nothing to swap (already accelerated, or no SPP/SPPF/Upsample layers)")
    return model
