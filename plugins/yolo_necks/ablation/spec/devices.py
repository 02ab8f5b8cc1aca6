"""Device strings of a sweep (``cpu``, ``0``, ``0,1``, ``cuda:1``, ``mps``): their format, the device pool, and
whether the devices exist on this machine."""

from __future__ import annotations

import re
from typing import Any

from ...errors import NeckConfigError


def resolve_device(device: Any) -> str:
    """Normalise the device key: None/'' -> '0' when CUDA is available else 'cpu'; ints -> strings."""
    if device is None or (isinstance(device, str) and not device.strip()):
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    if isinstance(device, (list, tuple)):
        return ",".join(str(d) for d in device)
    text = str(device).strip()
    return "cpu" if text.lower() == "cpu" else text


DEVICE_FORMS = "cpu, mps, a CUDA index like 0, cuda:1, or indices like 0,1 (DDP)"
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda|cuda:\d+|\d+(,\d+)*)$")


def check_device_string(source: str, key: str, device: str) -> str:
    """The format of a device string (whether the device exists is checked by :func:`check_devices_exist`)."""
    text = str(device).strip().lower().replace(" ", "")
    if not _DEVICE_RE.match(text):
        raise NeckConfigError(f"{source}: key '{key}': '{device}' is not a device; use {DEVICE_FORMS}")
    return text


def device_indices(device: str) -> list[int]:
    """CUDA indices named by a device string: '0,1' -> [0, 1], 'cuda:1' -> [1], 'cuda' -> [0], cpu/mps -> []."""
    text = str(device).strip().lower()
    if text in ("cpu", "mps", ""):
        return []
    if text == "cuda":
        return [0]
    if text.startswith("cuda:"):
        return [int(text[5:])]
    return [int(t) for t in text.split(",") if t.strip()]


def check_devices_exist(source: str, key: str, device: str) -> None:
    """Refuse before training a device this machine does not have (a GPU index without CUDA, an index too high)."""
    import torch

    idx = device_indices(device)
    if str(device).strip().lower() == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise NeckConfigError(f"{source}: key '{key}': 'mps' is not available on this machine; use device=cpu")
        return
    if not idx:
        return
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise NeckConfigError(f"{source}: key '{key}': '{device}' asks for a CUDA GPU but this machine has none "
                              "(torch.cuda.is_available() is False); use device=cpu")
    bad = [i for i in idx if i >= n]
    if bad:
        raise NeckConfigError(f"{source}: key '{key}': '{device}' names GPU {bad[0]} but this machine has {n} "
                              f"(valid: {', '.join(map(str, range(n)))})")


def device_pool(source: str, device: Any, devices: Any) -> tuple[str, tuple[str, ...]]:
    """(nominal device, device pool). The nominal device is the one in every run's configuration hash (the first of
    the pool: runs spread over GPUs 0-3 hash alike); each pool entry trains one run at a time (or runs_per_device)."""
    if devices is None:
        dev = resolve_device(device)
        if dev != "cpu":
            dev = check_device_string(source, "device", dev)
        return dev, (dev,)
    items = [devices] if isinstance(devices, (str, int)) and not isinstance(devices, bool) else devices
    if not isinstance(items, (list, tuple)) or not items or any(isinstance(d, bool) for d in items):
        raise NeckConfigError(f"{source}: key 'devices': must be cpu, a GPU index or a list like [0, 1], "
                              f"got {devices!r}")
    pool = tuple(check_device_string(source, "devices", str(d)) for d in items)
    if len(set(pool)) != len(pool):
        raise NeckConfigError(f"{source}: key 'devices': {devices!r} names a device twice (use runs_per_device)")
    kinds = {"cpu" if d == "cpu" else "gpu" for d in pool}
    if len(kinds) > 1:
        raise NeckConfigError(f"{source}: key 'devices': {devices!r} mixes cpu and GPUs; results would mix them too")
    used = [i for d in pool for i in device_indices(d)]
    if len(set(used)) != len(used):
        raise NeckConfigError(f"{source}: key 'devices': {devices!r} puts one GPU in two groups")
    nominal = pool[0]
    if device is not None and not (isinstance(device, str) and not device.strip()):
        given = resolve_device(device)
        if (given == "cpu") != (nominal == "cpu"):
            raise NeckConfigError(f"{source}: key 'devices': {devices!r} does not match device '{given}'")
    return nominal, pool
