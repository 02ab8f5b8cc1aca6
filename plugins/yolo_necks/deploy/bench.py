"""``yolo-necks bench --formats onnx,openvino``: every module of a bench case exported alone and timed in those
runtimes beside PyTorch, in the same interleaved rounds.

A block alone is not a YOLO model (no head, stride or class names), so ultralytics' ``Exporter`` cannot take it;
each module is exported with the same conversion functions that exporter calls for a whole model
(``ultralytics.utils.export.engine.torch2onnx`` at ``best_onnx_opset``, ``dynamo=False``, then onnxslim as
``simplify=True`` does; ``ultralytics.utils.export.openvino.torch2openvino``), at the case's static input shape,
fused and in eval mode as PyTorch runs it. The block therefore meets the same tracer, opset and converter as inside
an exported model. Whole models (the ``yolov8n stock``/``accelerated`` rows) go through
:func:`yolo_necks.deploy.export`, i.e. ultralytics' exporter itself.

Each runtime row carries ``vs_torch`` (its median over the PyTorch module's median in the same rounds) and
``max_abs_diff_vs_torch``; FastSPPF/FastSPP rows (and the accelerated model) are compared with SPPF/SPP (the stock
model) exported to the same format: ``exact_vs_ref`` is ``yes`` when the runtime gives bit-identical outputs (the
fast paths trace as separable max pools, the same values). A module that does not export or run in a format gets
a row with the one-line ``status`` and no timing; the bench goes on.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .exporting import check_formats, failing_op, failure_line
from .runtime import load_runner

FORMAT_COLUMNS = ["format", "runtime", "export_s", "vs_torch", "max_abs_diff_vs_torch", "status"]


@dataclass
class Deployed:
    """One module of a case in one runtime: the runner (None when export or loading failed) and how it went."""

    name: str  # the case's module name
    fmt: str
    runner: object | None
    export_s: float
    status: str = ""

    @property
    def key(self) -> str:
        return f"{self.name} [{self.fmt}]"


def runtime_formats(text: str | None) -> list[str]:
    """The runtime formats asked for by ``--formats`` (``torch`` dropped: it is always timed)."""
    if not text:
        return []
    return [f for f in check_formats(text) if f != "torch"]


def export_module(module: torch.nn.Module, x: torch.Tensor, fmt: str, out_dir: Path) -> str:
    """Export one module at ``x``'s shape with ultralytics' conversion functions; the file or folder path."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel("WARNING")
    try:
        if fmt == "onnx":
            import onnx
            import onnxslim
            from ultralytics.utils.export.engine import best_onnx_opset, torch2onnx

            f = out_dir / "module.onnx"
            torch2onnx(module, x, str(f), opset=best_onnx_opset(onnx), input_names=["x"], output_names=["y"])
            onnx.save(onnxslim.slim(onnx.load(str(f))), str(f))
            return str(f)
        if fmt == "openvino":
            import openvino as ov
            from ultralytics.utils.export.openvino import torch2openvino

            f = out_dir / "module_openvino_model" / "module.xml"
            f.parent.mkdir(parents=True, exist_ok=True)
            ov.save_model(torch2openvino(module, x), str(f), compress_to_fp16=False)
            return str(f.parent)
    finally:
        LOGGER.setLevel(level)
    raise ValueError(f"bench: format '{fmt}' is exported through ultralytics' exporter only (whole models)")


def deploy_cases(cases, x: torch.Tensor, formats: list[str], threads: int, root: Path | None = None) -> list[Deployed]:
    """Export and load every shown module of ``cases`` in every format; failures become a status line."""
    out: list[Deployed] = []
    with _folder(root) as base:
        for case in cases:
            if case.shown and case.module is not None:
                out += [_deploy_module(case, x, fmt, base / f"{len(out) + i:03d}", threads)
                        for i, fmt in enumerate(formats)]
    return out


def _deploy_module(case, x: torch.Tensor, fmt: str, where: Path, threads: int) -> Deployed:
    from ..translate import is_environment_error

    where.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            path = export_module(case.module, x, fmt, where)
        seconds = time.perf_counter() - t0
    except Exception as e:
        if is_environment_error(e):
            raise
        op = failing_op(e)
        return Deployed(case.name, fmt, None, time.perf_counter() - t0,
                        f"export failed{f' at {op}' if op else ''}: {failure_line(e)}")
    try:
        runner = load_runner(path, fmt, threads)
        runner(x)  # the first call compiles lazily in some runtimes
    except Exception as e:
        if is_environment_error(e):
            raise
        return Deployed(case.name, fmt, None, seconds, f"run failed: {failure_line(e)}")
    return Deployed(case.name, fmt, runner, seconds)


@contextlib.contextmanager
def _folder(root: Path | None):
    """``root``, or a temporary folder removed afterwards (runtimes hold what they loaded in memory)."""
    if root is not None:
        yield Path(root)
        return
    with tempfile.TemporaryDirectory(prefix="yolo-necks-bench-", ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


def _diff(a: np.ndarray, b) -> tuple[float, bool]:
    b = b.detach().float().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    if a.shape != b.shape:
        return math.nan, False
    return (float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0), bool(np.array_equal(a, b))


def format_rows(cases, deployed: list[Deployed], timings: dict, outputs: dict, x: torch.Tensor, meta: dict,
                base_rows: list[dict]) -> list[dict]:
    """Rows for the runtime timings of one case: ``timings`` and ``outputs`` (torch's, per module name) of the same
    rounds, ``x`` the input, ``base_rows`` the case's torch rows (for the shared columns)."""
    by_module = {r["module"]: r for r in base_rows}
    refs = {c.name: c.ref for c in cases}
    runtime_out = {d.key: (np.asarray(d.runner(x)[0]) if d.runner is not None else None) for d in deployed}
    rows = []
    for d in deployed:
        base = by_module.get(d.name, {})
        row = {**meta, **{k: base.get(k) for k in ("module", "kind", "params", "gflops")}, "module": d.name}
        row.update(format=d.fmt, runtime=getattr(d.runner, "version", ""), export_s=d.export_s, status=d.status,
                   ref="", ref_median_ms=math.nan, vs_ref=math.nan, vs_sppf=math.nan, max_abs_diff_vs_ref=math.nan,
                   exact_vs_ref="", vs_torch=math.nan, max_abs_diff_vs_torch=math.nan)
        t = timings.get(d.key)
        if t is not None:
            row.update(median_ms=t.median_ms, p90_ms=t.p90_ms, min_ms=t.min_ms, std_ms=t.std_ms, repeats=t.repeats)
            torch_t = timings.get(d.name)
            if torch_t is not None:
                row["vs_torch"] = t.median_ms / torch_t.median_ms
            row["max_abs_diff_vs_torch"] = _diff(runtime_out[d.key], outputs[d.name])[0]
            sppf = timings.get(f"SPPF [{d.fmt}]")
            if sppf is not None:
                row["vs_sppf"] = t.median_ms / sppf.median_ms
            ref = refs.get(d.name)
            ref_key = f"{ref} [{d.fmt}]" if ref else None
            if ref_key in timings and runtime_out.get(ref_key) is not None:
                diff, same = _diff(runtime_out[d.key], runtime_out[ref_key])
                row.update(ref=ref, ref_median_ms=timings[ref_key].median_ms,
                           vs_ref=t.median_ms / timings[ref_key].median_ms, max_abs_diff_vs_ref=diff,
                           exact_vs_ref="yes" if same else "no")
        else:
            row.update(median_ms=math.nan, p90_ms=math.nan, min_ms=math.nan, std_ms=math.nan, repeats=0)
        rows.append(row)
    return rows


def deploy_models(models: dict, imgsz: int, formats: list[str], threads: int, root: Path | None = None
                  ) -> list[Deployed]:
    """Whole models (``{name: fused model}``) through ultralytics' exporter (:func:`yolo_necks.deploy.export`),
    static at ``imgsz``, loaded in each runtime; failures become a status line."""
    from ..translate import is_environment_error
    from .exporting import export

    out: list[Deployed] = []
    with _folder(root) as base:
        for i, (name, model) in enumerate(models.items()):
            for fmt in formats:
                res = export(model, fmt, imgsz, out_dir=base / f"model{i}")
                if not res.ok:
                    out.append(Deployed(name, fmt, None, res.export_s, "export failed: " + res.line()))
                    continue
                try:
                    runner = load_runner(res.path, fmt, threads)
                    runner(np.zeros((1, 3, imgsz, imgsz), np.float32))  # a failure to run: here, not while timing
                except Exception as e:
                    if is_environment_error(e):
                        raise
                    out.append(Deployed(name, fmt, None, res.export_s, f"run failed: {failure_line(e)}"))
                    continue
                out.append(Deployed(name, fmt, runner, res.export_s))
    return out


DEPLOY_MD = {"shape": "CxHxW", "module": "module", "format": "format", "export_s": "export s",
             "median_ms": "median ms", "p90_ms": "p90 ms", "vs_torch": "vs torch",
             "max_abs_diff_vs_torch": "max abs diff vs torch", "vs_ref": "vs ref", "exact_vs_ref": "exact vs ref",
             "status": "status"}


def formats_markdown(df) -> str:
    """The torch rows with a median column per runtime (``onnx ms``), then one row per module and runtime
    (export seconds, latency, ratio and difference to PyTorch, Fast* vs the module it replaces, failures)."""
    from ..bench_tables import MD_COLUMNS, to_markdown

    key = ["device", "dtype", "layout", "batch", "shape", "module"]
    torch_rows = df[df["format"] == "torch"].copy()
    others = df[df["format"] != "torch"]
    columns = dict(MD_COLUMNS)
    for fmt in dict.fromkeys(others["format"]):
        medians = {tuple(r[k] for k in key): r["median_ms"] for r in others[others["format"] == fmt].to_dict("records")}
        col = f"{fmt}_median_ms"
        torch_rows[col] = [medians.get(tuple(r[k] for k in key), math.nan) for r in torch_rows.to_dict("records")]
        columns[col] = f"{fmt} ms"
    runtimes = ", ".join(dict.fromkeys(str(v) for v in others["runtime"] if isinstance(v, str) and v))
    text = to_markdown(torch_rows, columns)
    if len(others):
        text += ("\n\nIn the runtimes (" + runtimes + "; exported alone, static shape, fp32, timed in the same "
                 "rounds as PyTorch):\n\n" + to_markdown(others, DEPLOY_MD))
    return text
