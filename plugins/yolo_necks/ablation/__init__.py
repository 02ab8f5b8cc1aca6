"""The ablation harness: sweeps of neck arms over seeds, with honest statistics.

Python API::

    from yolo_necks.ablation import run_sweep, write_report, compare
    df = run_sweep("ablations/default.yaml", epochs=50, seeds=[0, 1, 2])   # one row per (arm, seed)
    write_report("ablations/runs/default")                                  # summary.csv / summary.md / pareto.png
    print(compare(["runs/a", "runs/b"]))                                     # Markdown, side by side

One stage per module: :mod:`.spec` (spec file, defaults, overrides, validation), :mod:`.variants` (arm model
YAMLs), :mod:`.plan` (runs and their configuration hashes), :mod:`.store` (``results.csv``: atomic appends, locks,
checked reads), :mod:`.run` (one run: train, validate, count, time; importable by a worker or a Ray task),
:mod:`.executors` and :mod:`.ray_executor` (sequential, local worker processes, Ray), :mod:`.progress` (the sweep
bar), :mod:`.runner` (checks before training, the sweep loop, adaptive seeds), :mod:`.speed` (latency and
throughput), :mod:`.stats` (mean ± std, paired intervals, Holm, precision planning), :mod:`.report` (summaries,
Pareto plot and training curves, comparison), :mod:`.tracking` (MLflow, only when a sweep asks for it), :mod:`.cli`
(``yolo-necks ablate | report | compare``).
"""

from __future__ import annotations

from yolo_necks._lazy import lazy_attributes

_LAZY = {
    "run_sweep": "yolo_necks.ablation.runner",
    "prepare": "yolo_necks.ablation.runner",
    "ResultsStore": "yolo_necks.ablation.store",
    "make_executor": "yolo_necks.ablation.factory",
    "precision_check": "yolo_necks.ablation.stopping",
    "holm": "yolo_necks.ablation.stats",
    "seeds_needed": "yolo_necks.ablation.tdist",
    "load_spec": "yolo_necks.ablation.spec",
    "Spec": "yolo_necks.ablation.spec",
    "DEFAULT_SPEC": "yolo_necks.ablation.spec",
    "build_arms": "yolo_necks.ablation.variants",
    "time_arms": "yolo_necks.ablation.arm_speed",
    "paired_delta": "yolo_necks.ablation.stats",
    "summarize": "yolo_necks.ablation.stats",
    "t_ppf": "yolo_necks.ablation.tdist",
    "write_report": "yolo_necks.ablation.report",
    "compare": "yolo_necks.ablation.compare",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
