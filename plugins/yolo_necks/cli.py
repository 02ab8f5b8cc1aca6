"""``yolo-necks`` command line: the verb table and dispatch (each verb lives with what it drives), and ``blocks``."""

from __future__ import annotations

import importlib
import sys

# verb -> ("module:function", one-line help). Each function takes argv (list[str]) and returns an exit code.
VERBS = {
    "ablate": ("yolo_necks.ablation.cli:ablate_main", "run a neck ablation sweep (default: ablations/default.yaml)"),
    "report": ("yolo_necks.ablation.cli:report_main", "regenerate summaries and figures from results.csv (+ MLflow)"),
    "compare": ("yolo_necks.ablation.cli:compare_main", "side-by-side Markdown table of several sweeps"),
    "bench": ("yolo_necks.bench:bench_main", "time every block and ultralytics' SPP/SPPF"),
    "data": ("yolo_necks.datasets.cli:data_main", "build a built-in dataset: yolo-necks data build NAME [key=value ...]"),
    "blocks": ("yolo_necks.cli:blocks_main", "list the registered blocks"),
    "edit": ("yolo_necks.editing_cli:edit_main", "insert/replace blocks at named positions of a model YAML"),
    "positions": ("yolo_necks.editing_cli:positions_main", "list a model's named positions (p3, backbone_p5, sppf, ...)"),
}


def usage() -> str:
    lines = ["usage: yolo-necks VERB [ARGS...]", "", "verbs:"]
    lines += [f"  {verb:<9} {help_}" for verb, (_, help_) in VERBS.items()]
    lines += ["", "Run 'yolo-necks VERB --help' for the arguments of a verb."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"yolo-necks: unknown verb '{verb}'.\n{usage()}", file=sys.stderr)
        return 2
    target, _ = VERBS[verb]
    module, func = target.split(":")
    from yolo_necks.errors import NeckError

    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except NeckError as e:
        print(f"yolo-necks {verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"yolo-necks {verb}: interrupted", file=sys.stderr)
        return 130


def blocks_main(argv: list[str]) -> int:
    """``yolo-necks blocks``: list the registered blocks and their YAML arguments."""
    if argv and argv[0] in {"-h", "--help"}:
        print(
            "usage: yolo-necks blocks [--markdown [--readme docs/blocks.md]]\n\n"
            "List every block usable by name in model YAMLs, with its YAML arguments.\n"
            "--markdown   print the table of model_yamls/ necks with params and GFLOPs at yolov8n scale\n"
            "--readme F   write that table between the blocks-table markers of F (docs/blocks.md)\n"
            "--yamls DIR  the model YAML folder (default: ./model_yamls)"
        )
        return 0
    if "--markdown" in argv:
        from pathlib import Path

        from .tables import markdown, update_readme

        yaml_dir = Path(argv[argv.index("--yamls") + 1]) if "--yamls" in argv else Path("model_yamls")
        if not yaml_dir.is_dir():
            yaml_dir = Path(__file__).resolve().parents[2] / "model_yamls"  # the source checkout
        if "--readme" in argv:
            if argv.index("--readme") + 1 >= len(argv):
                from .errors import NeckConfigError

                raise NeckConfigError("--readme needs a file (e.g. docs/blocks.md)")
            readme = Path(argv[argv.index("--readme") + 1])
            print(f"{readme}: {'updated' if update_readme(readme, yaml_dir) else 'already up to date'}")
        else:
            print(markdown(yaml_dir))
        return 0
    from .catalog import BLOCKS, yaml_args
    from .registry import register

    register()
    for name, spec in sorted(BLOCKS.items()):
        print(f"{name:<18} [{yaml_args(spec)}]  ({spec.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
