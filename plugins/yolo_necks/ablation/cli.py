"""``yolo-necks ablate | report | compare``: the command-line face of the ablation harness."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import NeckConfigError
from .spec.keys import DEFAULT_SPEC, KEYS, SPEED_KEYS

ABLATE_USAGE = "usage: yolo-necks ablate [SPEC.yaml] [key=value ...] [--retry-failed] [--dry-run] [--help]"


def ablate_help() -> str:
    lines = [
        ABLATE_USAGE,
        "",
        "Run a neck ablation sweep: every arm (the base model with its SPPF replaced by a block) is trained with every",
        "seed on the same data and schedule, validated with ultralytics' validator, counted and timed. One row per run",
        "goes to PROJECT/NAME/results.csv; summary.csv, summary.md, pareto.png and curves.png are regenerated at the",
        "end.",
        "Re-running the same command skips finished runs (matched by a hash of each run's configuration).",
        "",
        "SPEC.yaml defaults to ablations/default.yaml. On a CPU-only machine that spec's 'cpu:' section applies a",
        "reduced sweep (labelled 'reduced: cpu' everywhere); pass cpu=None to run the full sweep on the CPU anyway.",
        "",
        "options:",
        "  --retry-failed  run again the runs recorded as failed",
        "  --dry-run       validate the spec, build every arm once and list the runs; train nothing",
        "  -h, --help      show this help",
        "",
        "key=value overrides (values are Python literals, else strings, never code). Dotted keys merge into the spec",
        "(speed.repeats=300, data_params.n_train=400, cpu.epochs=5); a mapping given whole replaces",
        "(data_params={'tile': 320}, train_args={'lr0': 0.01}); data=OTHER drops the spec dataset's data_params.",
        "Other ultralytics training keys (lr0=0.005, freeze=5) go to train_args. Spec keys:",
    ]
    cpu = DEFAULT_SPEC["cpu"]
    for key, (default, help_) in KEYS.items():
        if key in ("arms", "cpu"):
            values = "see ablations/default.yaml"
        elif key not in DEFAULT_SPEC:
            values = f"default: {_show(default)}"
        else:
            values = f"default.yaml: {_show(DEFAULT_SPEC[key])}"
            if key in cpu:
                values += f", reduced cpu: {_show(cpu[key])}"
            if key not in ("speed", "name") and key in DEFAULT_SPEC and default != DEFAULT_SPEC[key]:
                values += f"; when a spec omits it: {_show(default)}"
        lines.append(f"  {key:<12} {help_} [{values}]")
    lines += ["", "  speed.* keys (speed.repeats=300):"]
    for key, help_ in SPEED_KEYS.items():
        lines.append(f"    {key:<18} {help_} [when omitted: {_show(KEYS['speed'][0][key])}]")
    lines += [
        "",
        "  arm keys: name (folder-safe id), block (module replacing the SPPF), args (block arguments after c2; c2 is",
        "  the SPPF's), insert (positions the block goes after instead, e.g. [p3, p4, p5]: see yolo-necks positions",
        "  MODEL; every reader of a position reads the block), baseline (true on exactly one arm), yaml (a model YAML",
        "  used as is instead of block/args), scale (per-arm scale letter).",
        "",
        "examples:",
        "  yolo-necks ablate                                   # the default sweep (reduced on a CPU)",
        "  yolo-necks ablate epochs=50 seeds=5 device=0        # 5 seeds: 0..4",
        "  yolo-necks ablate my_spec.yaml arms=sppf,focal data=coco8.yaml project=runs/necks",
        "  yolo-necks ablate ablations/placement.yaml          # where should the block go: SPPF site vs p3-p5",
        "  yolo-necks ablate speed.formats=[torch,onnx,openvino]   # also exported, checked and timed in ONNX Runtime "
        "and OpenVINO",
        "  yolo-necks report ablations/runs/default-cpu        # regenerate the summaries",
        "  yolo-necks ablate mlflow=sqlite:///mlflow.db         # track the sweep in MLflow (mlflow ui "
        "--backend-store-uri sqlite:///mlflow.db)",
    ]
    return "\n".join(lines)


def _show(value) -> str:
    """A value as in a spec file (YAML flow style)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).removesuffix("\n...\n").strip()


def ablate_main(argv: list[str]) -> int:
    """``yolo-necks ablate [SPEC.yaml] [key=value ...] [--retry-failed] [--dry-run]``."""
    from .spec.overrides import parse_overrides

    spec, items, retry, dry = None, [], False, False
    for arg in argv:
        if arg in ("-h", "--help"):
            print(ablate_help())
            return 0
        if arg == "--retry-failed":
            retry = True
        elif arg == "--dry-run":
            dry = True
        elif arg.startswith("-"):
            raise NeckConfigError(f"ablate: unknown option '{arg}' ({ABLATE_USAGE})")
        elif "=" in arg:
            items.append(arg)
        elif spec is None:
            spec = arg
        else:
            raise NeckConfigError(f"ablate: more than one spec file given ('{spec}', '{arg}')")
    overrides = parse_overrides(items)
    from .runner import run_sweep

    df = run_sweep(spec, retry_failed=retry, dry_run=dry, **overrides)
    if dry:
        return 0
    summary = df.attrs.get("summary_md")
    if summary:
        print("\n" + summary)
    failed = int((df["status"].astype(str) != "ok").sum()) if len(df) else 0
    print(f"sweep folder: {df.attrs.get('sweep_dir')}  ({df.attrs.get('ran')} run(s) this time, {failed} failed)")
    return 0


def report_main(argv: list[str]) -> int:
    """``yolo-necks report DIR|results.csv [...] [--target 0.005] [--metric map50]``."""
    usage = ("usage: yolo-necks report SWEEP_DIR|results.csv [...] [--target T] [--metric M] [--margin E] "
             "[--contrast A:B ...] [--mlflow URI [--mlflow-experiment NAME]]")
    if not argv or argv[0] in ("-h", "--help"):
        from .records.columns import METRICS

        print(
            f"{usage}\n\n"
            "Regenerate summary.csv, summary.md, pareto.png and curves.png of each sweep from its results.csv (and\n"
            "the runs' ultralytics results.csv for the training curves), and print the\n"
            "summary. It opens with a verdict per arm (better / worse / no detectable difference on the primary\n"
            "metric; the Pareto trade-off against latency). Per arm: mean ± std over seeds of every metric, Δ vs\n"
            "the baseline arm paired by seed with its paired-t p-value, the Holm-adjusted p over the arms compared\n"
            "with the baseline and an interval consistent with it (n/a with fewer than 2 paired seeds); then how many\n"
            "seeds a 95% interval of ±target on Δ needs; failed runs listed.\n\n"
            "  --target T  wanted half-width of the 95% interval of Δ on the primary metric (default: the sweep's\n"
            "              spec.yaml 'target', else 0.01)\n"
            "  --metric M  primary metric of the verdict and the planning (default: the spec's 'metric', else\n"
            f"              map50_95), from: {', '.join(METRICS)}\n"
            "  --margin E  equivalence margin in mAP units (default: the spec's 'margin', else none): per arm and mAP\n"
            "              metric, paired TOST p-values (Holm-adjusted), and verdicts 'equivalent within ±E' or\n"
            "              'not worse than −E' where they show it, 'undecided' where nothing is shown\n"
            "  --contrast A:B  also compare arm A with arm B (Δ = A − B paired by the seeds both finished;\n"
            "              repeatable), beside the spec's 'contrasts', in each metric's Holm family with the baseline\n"
            "              comparisons\n"
            "  --mlflow URI  also back-fill MLflow at URI (sqlite:///mlflow.db, http://host:5000; true: MLflow's\n"
            "              default store): a child run for each row not there yet, the sweep's files on its parent\n"
            "              run\n"
            "  --mlflow-experiment NAME  the experiment (default: the spec's 'mlflow_experiment', else the sweep name)"
        )
        return 0 if argv else 2
    from .analyse.report import write_report

    targets, options, contrasts = [], {}, []
    it = iter(argv)
    for arg in it:
        key, sep, value = arg.partition("=")
        if key in ("--target", "--metric", "--margin", "--mlflow", "--mlflow-experiment", "--contrast"):
            if not sep:
                value = next(it, None)
            if value is None or value.startswith("--") or not value.strip():
                raise NeckConfigError(f"report: {key} needs a value ({usage})")
            if key == "--contrast":
                from .analyse.contrasts import parse_option

                contrasts.append(parse_option(value))
                continue
            options[key[2:]] = value
        elif arg.startswith("-"):
            raise NeckConfigError(f"report: unknown option '{arg}' ({usage})")
        else:
            targets.append(arg)
    for key in ("target", "margin"):
        if key in options:
            try:
                options[key] = float(options[key])
            except ValueError:
                raise NeckConfigError(f"report: --{key} must be a number, got '{options[key]}'") from None
    if not targets:
        raise NeckConfigError(f"report: give a sweep folder or a results.csv ({usage})")
    mlflow, experiment = options.pop("mlflow", None), options.pop("mlflow-experiment", None)
    if experiment is not None and mlflow is None:
        raise NeckConfigError(f"report: --mlflow-experiment needs --mlflow ({usage})")
    for target in targets:
        out = write_report(target, **options, contrasts=contrasts)
        print(out["markdown"])
        print("written: " + ", ".join(str(p) for p in out["paths"]))
        if mlflow is not None:
            from .records.tracking import sync_folder

            print(sync_folder(target, None if mlflow.strip().lower() == "true" else mlflow.strip(), experiment))
    return 0


def compare_main(argv: list[str]) -> int:
    """``yolo-necks compare A B ... [--out FILE] [--metrics m1,m2]``."""
    usage = "usage: yolo-necks compare SWEEP [SWEEP ...] [--out FILE] [--metrics map50_95,latency_ms]"
    if not argv or argv[0] in ("-h", "--help"):
        from .records.columns import METRICS

        print(
            f"{usage}\n\n"
            "Print a side-by-side Markdown table of several sweeps. Each SWEEP is a sweep folder, a results.csv or a\n"
            "summary.csv. Per sweep and metric: mean ± std over seeds and Δ vs that sweep's baseline, paired by\n"
            "seed, with its p-value, the Holm-adjusted p and interval over that sweep's arms (bold where the\n"
            "interval excludes 0), as in summary.md; then the difference of the first metric between each sweep\n"
            "and the first one.\n\n"
            "  --out FILE      also write the table to FILE\n"
            f"  --metrics LIST  comma-separated, from: {', '.join(METRICS)}"
        )
        return 0 if argv else 2
    paths, out, metrics = [], None, None
    it = iter(argv)
    for arg in it:
        if arg in ("--out", "-o", "--metrics"):
            value = next(it, None)
            if value is None:
                raise NeckConfigError(f"compare: {arg} needs a value ({usage})")
            if arg == "--metrics":
                metrics = [m.strip() for m in value.split(",") if m.strip()]
            else:
                out = value
        elif arg.startswith("--out="):
            out = arg.split("=", 1)[1]
        elif arg.startswith("--metrics="):
            metrics = [m.strip() for m in arg.split("=", 1)[1].split(",") if m.strip()]
        elif arg.startswith("-"):
            raise NeckConfigError(f"compare: unknown option '{arg}' ({usage})")
        else:
            paths.append(arg)
    from .analyse.compare import compare

    text = compare(paths, metrics)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
        print(f"written: {out}", file=sys.stderr)
    return 0
