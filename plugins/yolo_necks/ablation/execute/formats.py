"""The arms in the deployment formats of ``speed.formats``: each arm exported from its trained weights, loaded in its
runtime, checked against PyTorch, ready to be timed in the same session as the torch models (:mod:`.arm_speed`).

Per arm and format (a *cell*), before the timed rounds:

1. export with ultralytics' own exporter (:func:`yolo_necks.deploy.export`: fused, fp32, static batch 1 at
   ``imgsz``; models with an NMS-free head exported with it) from the arm's trained weights (the runner passes the
   finished run of the lowest seed), into ``<sweep>/exports/<arm>/``;
2. load it in its runtime with the torch thread count (:func:`yolo_necks.deploy.load_runner`) and run it once;
3. parity: its outputs against PyTorch's with the same weights file (ultralytics saves checkpoints in fp16: both
   sides run those values in fp32) on two random images (:func:`yolo_necks.deploy.parity`, ``PARITY_TOL``);
4. ONNX only: exported again with dynamic batch and shape, and checked the same way at batch 2 and another image
   size (``dynamic_ok``, ``dynamic_error``); the timing is of the static export.

A cell that fails (the export, loading, the first run, the comparison) gets its one-line ``error`` (for an export,
:meth:`yolo_necks.deploy.ExportResult.line`: format, block, layer, operator, reason) and is not timed; the arm's other
cells and the other arms go on. Failures of the machine (memory, disk, CUDA) keep their type. A cell whose parity is
beyond the tolerance is still timed, with ``parity_ok`` False.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

EXPORTS = "exports"  # the sweep folder's subfolder of exported models, one folder per arm


@dataclass
class Cell:
    """One arm in one format: the runner to time (None when the cell failed) and what ``speed.csv`` records."""

    arm: str
    fmt: str
    runner: object | None = field(default=None, repr=False)
    runtime: str = ""
    export_s: float = math.nan
    parity_max_abs: float = math.nan
    parity_max_rel: float = math.nan
    parity_ok: bool | None = None
    dynamic_ok: bool | None = None
    dynamic_error: str = ""
    error: str = ""
    weights: str = ""

    def columns(self) -> dict:
        """The cell's ``speed.csv`` columns (:data:`~..records.timings.FIELDS`)."""
        def cell(v):
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v

        return {"format": self.fmt, "runtime": self.runtime, "export_s": cell(self.export_s),
                "parity_max_abs": cell(self.parity_max_abs), "parity_max_rel": cell(self.parity_max_rel),
                "parity_ok": cell(self.parity_ok), "dynamic_ok": cell(self.dynamic_ok),
                "dynamic_error": self.dynamic_error, "error": self.error, "weights": self.weights}


def exports_root(spec) -> Path:
    """``<sweep>/exports``, or a temporary folder where the sweep folder cannot be written (a timing node)."""
    root = Path(spec.sweep_dir) / EXPORTS
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError:
        return Path(tempfile.mkdtemp(prefix="yolo-necks-exports-"))


def _failure(fmt: str, what: str, e: BaseException) -> str:
    """``onnx: run: Einsum: RuntimeException: ...``: one line for a failure after the export."""
    from ...deploy import failing_op, failure_line

    op = failing_op(e)
    return ": ".join(p for p in (fmt, what, op, failure_line(e)) if p)


def deploy_arm(arm: str, weights: str | None, formats: list[str], imgsz: int, threads: int, root: Path) -> list[Cell]:
    """The cells of one arm in ``formats`` (torch excluded), exported from ``weights`` into ``root/arm``."""
    from ... import deploy
    from ...translate import is_environment_error

    cells = [Cell(arm, fmt, weights=str(weights or "")) for fmt in formats]
    if not weights or not Path(weights).is_file():
        why = ("no trained weights to export (no finished run of the arm has a weights file"
               + (f"; '{weights}' is not one)" if weights else ")"))
        for c in cells:
            c.error = f"{c.fmt}: {why}"
        return cells
    try:
        from ultralytics import YOLO

        reference = YOLO(str(weights))  # what the exports are compared with: the same file's values, in fp32
        strides = getattr(reference.model, "stride", None)
        stride = int(max(strides.tolist())) if strides is not None and len(strides) else 32
    except Exception as e:
        if is_environment_error(e):
            raise
        for c in cells:
            c.error = _failure(c.fmt, "loading the weights", e)
        return cells
    inputs = deploy.sample_inputs(imgsz, n=2)
    for c in cells:
        res = deploy.export(str(weights), c.fmt, imgsz, out_dir=root / arm)
        c.export_s = res.export_s
        if not res.ok:
            c.error = res.line()
            continue
        try:
            runner = deploy.load_runner(res.path, c.fmt, threads)
            c.runtime = runner.version
            runner(inputs[0])  # a failure to run: here, not while timing
        except Exception as e:
            if is_environment_error(e):
                raise
            c.error = _failure(c.fmt, "run", e)
            continue
        try:
            p = deploy.parity(reference, runner, inputs)
        except Exception as e:
            if is_environment_error(e):
                raise
            c.error = _failure(c.fmt, "parity", e)
            continue
        c.runner, c.parity_max_abs, c.parity_max_rel, c.parity_ok = runner, p.max_abs, p.max_rel, p.ok
        if c.fmt == "onnx":
            c.dynamic_ok, c.dynamic_error = _dynamic(weights, reference, imgsz, stride, threads, root / arm)
    return cells


def _dynamic(weights: str, reference, imgsz: int, stride: int, threads: int, where: Path) -> tuple[bool, str]:
    """The dynamic-shape ONNX export checked at batch 2 and ``(imgsz + stride) x imgsz``: (ok, one line if not)."""
    from ... import deploy
    from ...translate import is_environment_error

    res = deploy.export(str(weights), "onnx", imgsz, dynamic=True, out_dir=where)
    if not res.ok:
        return False, res.line()
    size = (imgsz + stride, imgsz)
    try:
        runner = deploy.load_runner(res.path, "onnx", threads)
        p = deploy.parity(reference, runner, deploy.sample_inputs(size, batch=2, n=1, seed=1))
    except Exception as e:
        if is_environment_error(e):
            raise
        return False, _failure("onnx dynamic", "run", e)
    if p.ok:
        return True, ""
    return False, (f"onnx dynamic: parity max rel {p.max_rel:.2g} > {deploy.PARITY_TOL:g} at batch 2, "
                   f"{size[0]}x{size[1]}")


def deploy_arms(names: list[str], weights: dict[str, str], formats: list[str], imgsz: int, threads: int,
                root: Path) -> dict[tuple[str, str], Cell]:
    """Every arm's cells, arm by arm: ``{(arm, format): Cell}`` (see the module docstring)."""
    cells: dict[tuple[str, str], Cell] = {}
    for name in names:
        t0 = time.perf_counter()
        for c in deploy_arm(name, weights.get(name), formats, imgsz, threads, root):
            cells[(c.arm, c.fmt)] = c
        _log(f"exported {name} to {', '.join(formats)} in {time.perf_counter() - t0:.0f} s" + "".join(
            f"; {c.error}" for c in cells.values() if c.arm == name and c.error))
    return cells


def _log(text: str) -> None:
    from ultralytics.utils import LOGGER

    LOGGER.info(f"speed.formats: {text}")
