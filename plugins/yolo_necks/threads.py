"""torch's CPU thread count held through code that runs ultralytics' ``select_device``.

ultralytics' ``select_device`` sets torch's thread count to its module constant ``NUM_THREADS``
(``min(8, os.cpu_count() - 1)``) at every trainer, validator, predictor and exporter start, before any callback runs,
so a count set beforehand does not hold through a training, a validation or an export on a machine with more than
two CPUs (and ``os.cpu_count()`` counts the host's CPUs in a container). :func:`threads_held` holds a count for a
block: a sweep's run at its budget (in a worker forked after the sweep process ran OpenMP regions, more threads
deadlock at the first parallel operation), and an export at the caller's count (a timing session or the bench goes
on at the threads it chose). It imports nothing at import time: a worker sets its thread budget before torch starts.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def threads_held(threads: int | None) -> Iterator[None]:
    """Hold torch at ``threads`` CPU threads for the block, then put back what was set before; ``None``: change
    nothing. The constant ``select_device`` reads (``ultralytics.utils.torch_utils.NUM_THREADS``, the only handle
    ultralytics reads) is set to ``threads`` for the block and put back after it."""
    if not threads:
        yield
        return
    import torch

    try:
        from ultralytics.utils import torch_utils
    except ImportError:  # pragma: no cover - ultralytics is a dependency
        torch_utils = None
    saved = torch.get_num_threads(), getattr(torch_utils, "NUM_THREADS", None)
    torch.set_num_threads(threads)
    if saved[1] is not None:
        torch_utils.NUM_THREADS = threads
    try:
        yield
    finally:
        if saved[1] is not None:
            torch_utils.NUM_THREADS = saved[1]
        torch.set_num_threads(saved[0])
