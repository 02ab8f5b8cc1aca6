"""The ablation harness: sweeps of neck arms over seeds, with honest statistics.

Python API::

    from yolo_necks.ablation import run_sweep
    from yolo_necks.ablation import write_report
    from yolo_necks.ablation import compare
    df = run_sweep("ablations/default.yaml", epochs=50, seeds=[0, 1, 2])   # one row per (arm, seed)
    write_report("ablations/runs/default")                                  # summary.csv / summary.md / pareto.png
    print(compare(["runs/a", "runs/b"]))                                     # Markdown, side by side

The harness is four stages, each a package that imports only the stages before it, over one table of result
columns:

* :mod:`.records` -- the result columns (:mod:`.records.columns`), ``results.csv`` (:mod:`.records.store`),
  ``speed.csv`` (:mod:`.records.timings`), a run's val-set bootstrap replicates, MLflow tracking;
* :mod:`.spec` -- keys and defaults, command-line overrides, validation, the validated :class:`~.spec.types.Spec`;
* :mod:`.prepare` -- the dataset, every arm's model (replace or insert), the pretrained transfer, the planned runs;
* :mod:`.execute` -- executors (this process, local workers, Ray), one run, process isolation, timing the arms;
* :mod:`.analyse` -- statistics, summary sections, report, plots, ``compare``.

On top: :mod:`.runner` (the sweep loop), :mod:`.adaptive` (adaptive seeds) and :mod:`.cli`
(``yolo-necks ablate | report | compare``). ARCHITECTURE.md draws the picture.
"""

from __future__ import annotations

from yolo_necks._lazy import lazy_attributes

_LAZY = {
    "run_sweep": "yolo_necks.ablation.runner",
    "ResultsStore": "yolo_necks.ablation.records.store",
    "make_executor": "yolo_necks.ablation.execute.factory",
    "precision_check": "yolo_necks.ablation.analyse.stopping",
    "pilot_plan": "yolo_necks.ablation.analyse.stopping",
    "stein_seeds": "yolo_necks.ablation.analyse.stopping",
    "decide": "yolo_necks.ablation.analyse.decide",
    "paired_evidence": "yolo_necks.ablation.analyse.decide",
    "holm": "yolo_necks.ablation.analyse.stats",
    "seeds_needed": "yolo_necks.ablation.analyse.tdist",
    "load_spec": "yolo_necks.ablation.spec.load",
    "Spec": "yolo_necks.ablation.spec.load",
    "DEFAULT_SPEC": "yolo_necks.ablation.spec.load",
    "build_arms": "yolo_necks.ablation.prepare.variants",
    "time_arms": "yolo_necks.ablation.execute.arm_speed",
    "paired_delta": "yolo_necks.ablation.analyse.stats",
    "summarize": "yolo_necks.ablation.analyse.stats",
    "t_ppf": "yolo_necks.ablation.analyse.tdist",
    "write_report": "yolo_necks.ablation.analyse.report",
    "compare": "yolo_necks.ablation.analyse.compare",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
