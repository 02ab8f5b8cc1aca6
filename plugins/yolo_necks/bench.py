"""``yolo-necks bench``: latency, params and FLOPs of every registered block and of ultralytics' SPP/SPPF.

For every device (CPU, and CUDA when present), dtype (fp32; also fp16 on CUDA), memory layout (contiguous,
channels_last), batch size and feature-map shape, each module is timed with :func:`yolo_necks.timing.measure`
(warm-up, CUDA synchronisation). The modules of one case are timed *interleaved*: round after round, every module
runs once, so that load from other processes on the machine (which comes and goes) hits all of them alike, in an
order shuffled every round by a fixed seed (``bench_tables.ORDER_SEED``: no module always runs first or after the same
other one, and a rerun runs the same orders); median, p90, min and standard deviation are computed over the rounds.

Per row: parameters, GFLOPs per image (operator-level count by :mod:`yolo_necks.flops`, torch's FlopCounterMode,
2 FLOPs per multiply-add like ultralytics' ``thop MACs x 2``; element-wise work such as pooling is not counted), the
speed ratio against the block's plain reference formulation (:func:`yolo_necks.reference.reference_forward`; for
FastSPP/FastSPPF, the ultralytics module they replace) and against ultralytics' SPPF at the same shape, and how far
the output is from that reference. A whole-model row compares yolov8n (fused, as ``predict`` runs it) stock against
:func:`yolo_necks.accelerate`. Modules are benchmarked fused (Conv+BatchNorm folded, as after ``model.fuse()``)
unless ``--no-fuse`` is given.

With ``--formats onnx,openvino`` every module is also exported alone and timed in those runtimes (CPU, fp32,
contiguous cases; :mod:`yolo_necks.deploy.bench`), in the same rounds as its PyTorch run, and the whole-model rows
are exported with ultralytics' exporter (:func:`yolo_necks.deploy.export`) and timed there too.

Writes ``bench.csv`` and ``bench.md`` under ``--out`` (default ``runs/bench/``) and prints the Markdown table.
Numbers are measurements on a possibly shared machine: compare rows of one run, and read the spread.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .errors import NeckConfigError, NeckError
from .bench_tables import ORDER_SEED, notes, to_markdown
from .timing import time_interleaved

DEFAULT_SHAPES = ((256, 20, 20), (256, 40, 40), (512, 20, 20), (512, 40, 40))  # yolov8 n/s P5 and P4 necks
QUICK_SHAPES = ((256, 20, 20),)
LAYOUTS = ("contiguous", "channels_last")
COLUMNS = [
    "device",
    "dtype",
    "layout",
    "batch",
    "shape",
    "module",
    "kind",
    "params",
    "gflops",
    "median_ms",
    "p90_ms",
    "min_ms",
    "std_ms",
    "repeats",
    "ref",
    "ref_median_ms",
    "vs_ref",
    "vs_sppf",
    "max_abs_diff_vs_ref",
    "exact_vs_ref",
]


@dataclass
class Case:
    """One module to time in a case: how to call it, and what to compare it with."""

    name: str
    kind: str  # "block", "ultralytics", "fast", "reference", "model"
    fn: object
    module: nn.Module | None = None
    ref: str | None = None  # name of the case it is compared with (vs_ref)
    shown: bool = True  # reference formulations are timed but not given a row of their own
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------ arguments
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="yolo-necks bench",
        description="Time every registered block and ultralytics' SPP/SPPF (and our exact FastSPP/FastSPPF) at the "
        "shapes they meet in yolov8 n/s models, plus yolov8n stock vs accelerate(). Writes bench.csv and bench.md.",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all", help="where to run (default: all = "
                   "CPU, and CUDA when present)")
    p.add_argument("--quick", action="store_true", help="one shape (256x20x20), batch 1, few repeats: for tests/CI")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default 30, quick 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per module first (default 5, quick 2)")
    p.add_argument("--budget", type=float, default=20.0, help="cap on the seconds of timed rounds per case; fewer "
                   "rounds (at least 3) are run when it would take longer (0: no cap; default 20)")
    p.add_argument("--blocks", default=None, help="comma-separated registered block names to time (default: all; "
                   "SPP, SPPF, FastSPP and FastSPPF are always timed)")
    p.add_argument("--shapes", default=None, help="comma-separated CxHxW or CxS (square) feature maps "
                   "(default 256x20,256x40,512x20,512x40)")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (default 1,16; quick 1)")
    p.add_argument("--layouts", default=None, help="comma-separated of contiguous,channels_last (default both)")
    p.add_argument("--no-fp16", action="store_true", help="skip fp16 on CUDA")
    p.add_argument("--no-fuse", action="store_true", help="time modules with Conv and BatchNorm unfused")
    p.add_argument("--no-model", action="store_true", help="skip the whole-model row")
    p.add_argument("--model", default="yolov8n.yaml", help="model YAML of the whole-model row (built from YAML, "
                   "nothing is downloaded; default yolov8n.yaml)")
    p.add_argument("--imgsz", type=int, default=640, help="image size of the whole-model row (default 640)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default); the "
                   "runtimes of --formats get as many")
    p.add_argument("--formats", default="torch", help="comma-separated runtimes to time beside PyTorch: onnx, "
                   "openvino (needs the deploy extra; default: torch only)")
    p.add_argument("--out", default="runs/bench", help="output folder (default runs/bench/)")
    return p


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NeckConfigError(f"bench: --{what} must be comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise NeckConfigError(f"bench: --{what} needs positive integers, got '{text}'")
    return values


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """'256x20,512x40x30' -> [(256, 20, 20), (512, 40, 30)]."""
    shapes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        parts = item.replace("@", "x").split("x")
        try:
            dims = [int(v) for v in parts]
        except ValueError:
            raise NeckConfigError(f"bench: --shapes item '{item}' is not CxHxW or CxS") from None
        if len(dims) == 2:
            dims = [dims[0], dims[1], dims[1]]
        if len(dims) != 3 or min(dims) < 1:
            raise NeckConfigError(f"bench: --shapes item '{item}' is not CxHxW or CxS with positive sizes")
        shapes.append(tuple(dims))
    if not shapes:
        raise NeckConfigError("bench: --shapes is empty")
    return shapes


def _devices(choice: str) -> list[str]:
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise NeckError("bench: --device cuda requested but CUDA is not available")
    if choice == "cpu":
        return ["cpu"]
    if choice == "cuda":
        return ["cuda"]
    return ["cpu", "cuda"] if has_cuda else ["cpu"]


# ------------------------------------------------------------------------------------------------------- building
def fuse_convs(module: nn.Module) -> nn.Module:
    """Fold BatchNorm into the convolutions of ultralytics ``Conv``-type layers, as ``BaseModel.fuse()`` does."""
    from ultralytics.nn.modules.conv import Conv, Conv2, DWConv
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    for m in module.modules():
        if isinstance(m, (Conv, Conv2, DWConv)) and hasattr(m, "bn"):
            if isinstance(m, Conv2):
                m.fuse_convs()
            m.conv = fuse_conv_and_bn(m.conv, m.bn)
            delattr(m, "bn")
            m.forward = m.forward_fuse
    return module


def _randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Give BatchNorm layers non-trivial statistics, so fusion and references are compared on real numbers."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _prepare(module: nn.Module, device: str, dtype: torch.dtype, layout: str, fuse: bool) -> nn.Module:
    module = module.eval()
    if fuse:
        fuse_convs(module)
    module = module.to(device=device, dtype=dtype)
    if layout == "channels_last":
        module = module.to(memory_format=torch.channels_last)
    return module


def _registered(selected: list[str] | None) -> dict[str, type]:
    try:
        from .catalog import registered_blocks

        blocks = dict(registered_blocks())
    except ImportError as e:  # registry not available (yet): time ultralytics' modules only
        from ultralytics.utils import LOGGER

        LOGGER.warning(f"yolo-necks bench: no block registry ({e}); timing ultralytics' SPP/SPPF only")
        blocks = {}
    if selected is not None:
        unknown = [n for n in selected if n not in blocks]
        if unknown:
            raise NeckConfigError(f"bench: --blocks {', '.join(unknown)} not registered (known: {', '.join(blocks)})")
        blocks = {n: blocks[n] for n in selected}
    return blocks


def _reference_fn():
    try:
        from .reference import reference_forward

        return reference_forward
    except ImportError:
        return None


def build_cases(c: int, blocks: dict[str, type], device: str, dtype: torch.dtype, layout: str, fuse: bool,
                skipped: list[str]) -> list[Case]:
    """The modules timed at ``c`` channels: registered blocks (+ their references) and SPP/SPPF/FastSPP/FastSPPF."""
    from ultralytics.nn.modules.block import SPP, SPPF

    from .fast import FastSPP, FastSPPF

    reference_forward = _reference_fn()
    cases: list[Case] = []
    torch.manual_seed(0)
    sppf, spp = SPPF(c, c), SPP(c, c)
    for m in (sppf, spp):
        _randomize_bn(m)
    sppf, spp = (_prepare(m, device, dtype, layout, fuse) for m in (sppf, spp))
    fsppf, fspp = FastSPPF.from_module(sppf), FastSPP.from_module(spp)  # share the (fused) weights
    cases += [
        Case("SPPF", "ultralytics", sppf, sppf),
        Case("SPP", "ultralytics", spp, spp),
        Case("FastSPPF", "fast", fsppf, fsppf, ref="SPPF"),
        Case("FastSPP", "fast", fspp, fspp, ref="SPP"),
    ]
    for name, cls in blocks.items():
        try:
            torch.manual_seed(0)
            block = cls(c, c)
            _randomize_bn(block)
            block = _prepare(block, device, dtype, layout, fuse)
        except Exception as e:  # a third-party block with another signature: report, do not stop the bench
            msg = f"{name}({c}, {c}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if msg not in skipped:
                skipped.append(msg)
            continue
        case = Case(name, "block", block, block)
        if reference_forward is not None:
            ref_name = f"{name} (reference)"
            ref_fn = (lambda b: (lambda x: reference_forward(b, x)))(block)
            try:
                with torch.inference_mode():
                    reference_forward(block, torch.zeros(1, c, 4, 4, device=device, dtype=dtype))
                cases.append(Case(ref_name, "reference", ref_fn, block, shown=False))
                case.ref = ref_name
            except TypeError:  # no reference formulation for this block
                pass
            except Exception as e:
                skipped.append(f"{name} reference: {type(e).__name__}: {e}")
        cases.append(case)
    return cases


def _compare(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, bool]:
    if isinstance(out, (list, tuple)):
        out, ref = out[0], ref[0]
    if out.shape != ref.shape:
        return float("nan"), False
    diff = (out.float() - ref.float()).abs().max().item() if out.numel() else 0.0
    return diff, bool(torch.equal(out, ref))


def _gflops(module: nn.Module, shape: tuple[int, ...]) -> float:
    try:
        from .flops import gflops

        m = copy.deepcopy(module).float().to(device="cpu", memory_format=torch.contiguous_format)
        return gflops(m, shape)
    except Exception:  # counting must never break the timing
        return float("nan")


def bench_cases(cases: list[Case], x: torch.Tensor, warmup: int, repeats: int, budget: float, meta: dict,
                flops_cache: dict, formats: list[str] = ()) -> list[dict]:
    """Time one case group on ``x`` and turn it into table rows (``meta`` gives the shared columns); with
    ``formats``, each shown module also exported and timed in those runtimes, in the same rounds."""
    deployed = []
    if formats:
        from .deploy.bench import deploy_cases

        deployed = deploy_cases(cases, x, list(formats), torch.get_num_threads())
    fns = {c.name: c.fn for c in cases} | {d.key: d.runner for d in deployed if d.runner is not None}
    timings = time_interleaved(fns, x, warmup, repeats, budget, order_seed=ORDER_SEED)
    with torch.inference_mode():
        outputs = {c.name: c.fn(x) for c in cases}
    by_name = {c.name: c for c in cases}
    sppf = timings.get("SPPF")
    rows = []
    for case in cases:
        if not case.shown:
            continue
        t = timings[case.name]
        row = dict(meta)
        module = case.module
        key = (case.name, tuple(x.shape[1:]), meta.get("fused"))
        if key not in flops_cache:
            flops_cache[key] = _gflops(module, (1, *x.shape[1:])) if module is not None else float("nan")
        row.update(
            module=case.name,
            kind=case.kind,
            params=sum(p.numel() for p in module.parameters()) if module is not None else 0,
            gflops=flops_cache[key],
            median_ms=t.median_ms,
            p90_ms=t.p90_ms,
            min_ms=t.min_ms,
            std_ms=t.std_ms,
            repeats=t.repeats,
            ref=case.ref or "",
            ref_median_ms=float("nan"),
            vs_ref=float("nan"),
            vs_sppf=t.median_ms / sppf.median_ms if sppf is not None else float("nan"),
            max_abs_diff_vs_ref=float("nan"),
            exact_vs_ref="",
        )
        if case.ref is not None and case.ref in timings:
            r = timings[case.ref]
            diff, same = _compare(outputs[case.name], outputs[by_name[case.ref].name])
            row.update(ref_median_ms=r.median_ms, vs_ref=t.median_ms / r.median_ms, max_abs_diff_vs_ref=diff,
                       exact_vs_ref="yes" if same else "no")
        rows.append(row)
    if deployed:
        from .deploy.bench import format_rows

        rows += format_rows(cases, deployed, timings, outputs, x, meta, rows)
    return rows


def bench_model(model_yaml: str, imgsz: int, device: str, dtype: torch.dtype, layout: str, warmup: int,
                repeats: int, budget: float, formats: list[str] = ()) -> list[dict]:
    """Rows for ``model_yaml`` (fused, batch 1, ``imgsz``) stock and after :func:`yolo_necks.accelerate`; with
    ``formats``, both exported by ultralytics' exporter and timed in those runtimes in the same rounds."""
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    from .fast import accelerate

    torch.manual_seed(0)
    stock = YOLO(model_yaml).model
    _randomize_bn(stock)
    stock.fuse(verbose=False)
    fast = accelerate(copy.deepcopy(stock), verbose=False)
    stock, fast = (_prepare(m, device, dtype, layout, fuse=False) for m in (stock, fast))
    x = torch.rand(1, 3, imgsz, imgsz, device=device, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    name = Path(model_yaml).stem
    meta = dict(device=device, dtype=str(dtype).replace("torch.", ""), layout=layout, batch=1,
                shape=f"3x{imgsz}x{imgsz}")
    cases = [
        Case(f"{name} stock", "model", stock, stock),
        Case(f"{name} accelerated", "model", fast, fast, ref=f"{name} stock"),
    ]
    deployed = []
    if formats:
        from .deploy.bench import deploy_models

        deployed = deploy_models({c.name: c.module for c in cases}, imgsz, list(formats), torch.get_num_threads())
    fns = {c.name: c.fn for c in cases} | {d.key: d.runner for d in deployed if d.runner is not None}
    timings = time_interleaved(fns, x, warmup, repeats, budget, order_seed=ORDER_SEED)
    with torch.inference_mode():
        a, b = stock(x), fast(x)
    diff, same = _compare(b, a)
    gf = _gflops(stock, (1, 3, imgsz, imgsz))
    rows = []
    for case in cases:
        t = timings[case.name]
        row = dict(meta, module=case.name, kind="model", params=sum(p.numel() for p in case.module.parameters()),
                   gflops=gf, median_ms=t.median_ms, p90_ms=t.p90_ms, min_ms=t.min_ms, std_ms=t.std_ms,
                   repeats=t.repeats, ref=case.ref or "", ref_median_ms=float("nan"), vs_ref=float("nan"),
                   vs_sppf=float("nan"), max_abs_diff_vs_ref=float("nan"), exact_vs_ref="")
        if case.ref:
            r = timings[case.ref]
            row.update(ref_median_ms=r.median_ms, vs_ref=t.median_ms / r.median_ms, max_abs_diff_vs_ref=diff,
                       exact_vs_ref="yes" if same else "no")
        rows.append(row)
    if deployed:
        from .deploy.bench import format_rows

        with torch.inference_mode():
            outputs = {case.name: case.fn(x)[0] for case in cases}
        rows += format_rows(cases, deployed, timings, outputs, x, meta, rows)
    LOGGER.info(
        f"yolo-necks bench: {name} {imgsz}px {device} {meta['dtype']} {layout}: stock {rows[0]['median_ms']:.2f} ms, "
        f"accelerated {rows[1]['median_ms']:.2f} ms (x{rows[1]['vs_ref']:.3f}, outputs identical: {same})"
    )
    return rows


# --------------------------------------------------------------------------------------------------------- main
def run_bench(args) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd
    from ultralytics.utils import LOGGER, TQDM

    quick = args.quick
    repeats = args.repeats if args.repeats is not None else (5 if quick else 30)
    warmup = args.warmup if args.warmup is not None else (2 if quick else 5)
    if repeats < 1 or warmup < 0:
        raise NeckConfigError("bench: --repeats must be >= 1 and --warmup >= 0")
    shapes = parse_shapes(args.shapes) if args.shapes else list(QUICK_SHAPES if quick else DEFAULT_SHAPES)
    batches = _ints(args.batch, "batch") if args.batch else ([1] if quick else [1, 16])
    layouts = [v.strip() for v in (args.layouts or ",".join(LAYOUTS)).split(",") if v.strip()]
    bad = [v for v in layouts if v not in LAYOUTS]
    if bad or not layouts:
        raise NeckConfigError(f"bench: --layouts must be from {', '.join(LAYOUTS)}, got '{args.layouts}'")
    selected = [v.strip() for v in args.blocks.split(",") if v.strip()] if args.blocks else None
    from .deploy.bench import FORMAT_COLUMNS, runtime_formats

    formats = runtime_formats(args.formats)  # a missing runtime: one line now, before anything is timed
    if args.threads:
        torch.set_num_threads(args.threads)
    fuse = not args.no_fuse
    blocks = _registered(selected)
    devices = _devices(args.device)

    plan = []
    for device in devices:
        dtypes = [torch.float32] + ([torch.float16] if device == "cuda" and not args.no_fp16 else [])
        for dtype in dtypes:
            for layout in layouts:
                for c, h, w in shapes:
                    for b in batches:
                        plan.append((device, dtype, layout, c, h, w, b))
    LOGGER.info(f"yolo-necks bench: {len(plan)} cases x {len(blocks) + 2} modules (+ references), "
                f"{', '.join(devices)}, up to {repeats} rounds each")
    rows: list[dict] = []
    skipped: list[str] = []
    flops_cache: dict = {}
    built: dict = {}
    for device, dtype, layout, c, h, w, b in TQDM(plan, desc="bench"):
        key = (device, dtype, layout, c)
        if key not in built:
            built = {key: build_cases(c, blocks, device, dtype, layout, fuse, skipped)}  # keep one set alive
        x = torch.randn(b, c, h, w, device=device, dtype=dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        meta = dict(device=device, dtype=str(dtype).replace("torch.", ""), layout=layout, batch=b,
                    shape=f"{c}x{h}x{w}", fused=fuse)
        deploy_here = formats if (device, dtype, layout) == ("cpu", torch.float32, "contiguous") else []
        rows += bench_cases(built[key], x, warmup, repeats, args.budget, meta, flops_cache, deploy_here)
    if not args.no_model:
        for device in devices:
            dtypes = [torch.float32] + ([torch.float16] if device == "cuda" and not args.no_fp16 else [])
            for dtype in dtypes:
                for layout in layouts if not quick else layouts[:1]:
                    deploy_here = formats if (device, dtype, layout) == ("cpu", torch.float32, "contiguous") else []
                    rows += bench_model(args.model, args.imgsz, device, dtype, layout, warmup,
                                        min(repeats, 10) if quick else repeats, args.budget, deploy_here)
    for s in skipped:
        LOGGER.warning(f"yolo-necks bench: skipped {s}")
    df = pd.DataFrame(rows)
    columns = COLUMNS + (FORMAT_COLUMNS if formats else [])
    if formats:
        torch_rows = df["format"].isna()
        df.loc[torch_rows, "format"] = "torch"
        df.loc[torch_rows, "runtime"] = f"torch {torch.__version__}"
    for col in columns:
        if col not in df.columns:
            df[col] = None
    df = df[columns]
    df.attrs["notes"] = notes(fuse, torch.get_num_threads(), skipped)
    return df


def bench_main(argv: list[str]) -> int:
    """``yolo-necks bench [options]``; see ``yolo-necks bench --help``."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    from ultralytics.utils import LOGGER

    t0 = time.perf_counter()
    df = run_bench(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "bench.csv", index=False)
    if "format" in df.columns:  # --formats: a latency column per runtime, then the runtimes' own table
        from .deploy.bench import formats_markdown

        table = formats_markdown(df)
    else:
        table = to_markdown(df)
    md = "# yolo-necks bench\n\n" + table + "\n\n" + df.attrs.get("notes", "") + "\n"
    (out / "bench.md").write_text(md)
    print(md)
    LOGGER.info(f"yolo-necks bench: {len(df)} rows in {time.perf_counter() - t0:.1f}s -> {out / 'bench.csv'}, "
                f"{out / 'bench.md'}")
    return 0
