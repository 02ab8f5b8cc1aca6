"""The ablation harness: sweeps of neck arms over seeds, with honest statistics.

Python API::

    from yolo_necks.ablation import run_sweep, write_report, compare
    df = run_sweep("ablations/default.yaml", epochs=50, seeds=[0, 1, 2])   # one row per (arm, seed)
    write_report("ablations/runs/default")                                  # summary.csv / summary.md / pareto.png
    print(compare(["runs/a", "runs/b"]))                                     # Markdown, side by side

One stage per module: :mod:`.spec` (spec file, defaults, overrides, validation), :mod:`.variants` (arm model
YAMLs), :mod:`.runner` (planning, resuming, training, ``results.csv``), :mod:`.speed` (latency and throughput),
:mod:`.stats` (mean ± std, paired confidence intervals), :mod:`.report` (summaries, Pareto plot, comparison),
:mod:`.cli` (``yolo-necks ablate | report | compare``).
"""

from __future__ import annotations

from yolo_necks._lazy import lazy_attributes

_LAZY = {
    "run_sweep": "yolo_necks.ablation.runner",
    "prepare": "yolo_necks.ablation.runner",
    "ResultsStore": "yolo_necks.ablation.runner",
    "load_spec": "yolo_necks.ablation.spec",
    "Spec": "yolo_necks.ablation.spec",
    "DEFAULT_SPEC": "yolo_necks.ablation.spec",
    "build_arms": "yolo_necks.ablation.variants",
    "measure_speed": "yolo_necks.ablation.speed",
    "paired_delta": "yolo_necks.ablation.stats",
    "summarize": "yolo_necks.ablation.stats",
    "t_ppf": "yolo_necks.ablation.stats",
    "write_report": "yolo_necks.ablation.report",
    "compare": "yolo_necks.ablation.report",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
