"""Running a sweep: check everything, plan, skip what is done, hand the rest to an executor, record, report.

Order of work in :func:`run_sweep`:

1. the spec is read; when at least two runs are certain to be pending, the local executor's worker processes start
   now and import torch and ultralytics while the sweep prepares (:mod:`.factory`);
   :func:`~yolo_necks.ablation.prepare.prepare.prepare`: devices, dataset, every arm built and run forward, batch,
   pretrained checkpoint and its transfer; a bad spec fails here, with one line, before anything trains;
2. plan the runs seed by seed (:mod:`.plan`), each with its configuration hash;
3. skip runs whose hash ``results.csv`` records as done (and failed ones unless ``retry_failed``) (:mod:`.store`);
4. hand the remaining runs to the executor (:mod:`.executors`: this process, local worker processes, or Ray tasks);
   every row that comes back is appended to ``results.csv`` at once, by this process only (the per-class AP it
   carries to ``per_class.csv`` just before, :mod:`.records.perclass`). A failed run is recorded
   and the sweep goes on; Ctrl-C stops the workers and keeps every finished row. With adaptive seeds, the first
   seeds are a pilot that fixes each arm's total (Stein's two-stage rule for ±``target`` on the primary metric,
   :mod:`.adaptive`);
5. time every arm once, interleaved, with nothing else of the sweep running (:mod:`.arm_speed`, ``speed.csv``); with
   ``speed.formats`` beyond torch, each arm exported from its trained weights first and timed in those runtimes too
   (:mod:`.formats`);
6. regenerate ``summary.csv``, ``summary.md``, ``pareto.png`` and ``curves.png`` from ``results.csv``
   (:mod:`.report`).

With the spec key ``mlflow`` set, :mod:`.tracking` opens the sweep's experiment and parent run before step 4 (one
warning and no tracking when MLflow cannot be used), each run's child run starts where the run trains, every row is
checked into MLflow as it arrives, and the parent gets the sweep's files at the end.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable

from ..cocoeval import DEFAULT_BUCKETS
from ..errors import NeckConfigError
from .execute.executors import Executor
from .execute.factory import check_available, make_executor, start_early
from .execute.run import RunTask, environment
from .prepare.plan import DataRef, RunPlan
from .prepare.prepare import Prepared, prepare, write_inputs
from .prepare.variants import plain
from .records import perclass
from .records.columns import RESULTS_COLUMNS
from .records.store import RESULTS, ResultsStore, sweep_lock
from .spec.load import Spec, load_spec


# -------------------------------------------------------------------------------------------------------- sweep
def _callbacks(callbacks: dict | None, event: str) -> list[Callable]:
    fns = (callbacks or {}).get(event) or []
    return list(fns) if isinstance(fns, (list, tuple)) else [fns]


def run_sweep(
    spec_or_path: str | Path | dict | None = None,
    *,
    retry_failed: bool = False,
    dry_run: bool = False,
    callbacks: dict[str, Callable | list[Callable]] | None = None,
    execute: Callable | None = None,
    **overrides: Any,
):
    """Run (or resume) the sweep described by a spec; return its runs as a DataFrame (one row per arm and seed).

    Args:
        spec_or_path: spec file, mapping, or None for ``ablations/default.yaml``.
        retry_failed: run again the runs recorded as failed (done runs are always skipped).
        dry_run: validate and plan only: nothing trains and the sweep folder is not written (a built-in dataset may
            be built into its cache, as validation needs it).
        callbacks: ``{"on_run_start": fn(plan), "on_run_end": fn(row)}`` (a callable or a list each), called in this
            process when a run is handed to the executor and once its row is safely in ``results.csv``.
        execute: replaces the training/validation/timing of a run: ``fn(plan, spec, data) -> metric columns``
            (custom run logic, tests). Worker processes and Ray tasks need a picklable module-level function.
        **overrides: spec keys (``epochs=3``, ``seeds=[0]``, ``arms="sppf,focal"``, ``speed.repeats=200`` via
            ``**{"speed.repeats": 200}``); ultralytics training keys go to ``train_args``.

    Returns:
        pandas.DataFrame of the planned runs' latest rows (``df.attrs``: ``sweep_dir``, ``summary_md`` and ``ran``,
        the number of runs executed by this call).
    """
    if isinstance(spec_or_path, Spec) and overrides:
        raise TypeError("run_sweep: overrides cannot be combined with an already-loaded Spec")
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)
    store = ResultsStore(spec.sweep_dir / RESULTS)
    # worker processes start importing now when runs are certain to be pending (factory.py); they are stopped if
    # the sweep does not use them
    warm = None if dry_run else start_early(spec, len(store.read(warn=False)), execute)
    try:
        check_available(spec.execution)
        prep = prepare(spec)
        if dry_run:
            _plan_status(prep, prep.plans, store, retry_failed, listing=True)
            return _frame(store, prep.plans, spec, None, 0)
        spec.sweep_dir.mkdir(parents=True, exist_ok=True)
        with sweep_lock(spec.sweep_dir):
            pending = len(_pending(prep.plans, store, retry_failed))
            if spec.adaptive is not None:  # seed rounds may follow: each trains every arm
                pending = max(pending, len(spec.arms))
            executor = make_executor(spec.execution, execute, pending, warm)
            if spec.execution.timing_node:  # a node that is not there fails now, not after training
                try:
                    executor.check_timing_node(spec.execution.timing_node)
                except NeckConfigError as err:
                    executor.close()
                    raise NeckConfigError(f"{spec.source}: {err}") from None
            try:
                return _run(prep, store, executor, retry_failed, callbacks)
            finally:
                executor.close()
    finally:
        if warm is not None:
            warm.close()  # nothing left to stop when the sweep used it


def _title(spec: Spec) -> str:
    return f"ablate {spec.name}" + (f" (reduced: {spec.reduced})" if spec.reduced else "")


def _plan_status(prep: Prepared, plans: list[RunPlan], store: ResultsStore, retry_failed: bool,
                 listing: bool = False) -> list[RunPlan]:
    """The runs still to do (logged), given what ``results.csv`` records."""
    from ultralytics.utils import LOGGER

    spec = prep.spec
    done, failed = _recorded(store)
    pending = _pending(plans, store, retry_failed, (done, failed))
    n_done = sum(p.config_hash in done for p in plans)
    n_failed = sum(p.config_hash in failed for p in plans)
    again = "to retry" if retry_failed else "skipped; --retry-failed reruns them"
    failed_note = f"{n_failed} failed earlier ({again}), "
    seeds = sorted({p.seed for p in plans})
    policy = spec.adaptive
    what = (f"{len(spec.arms)} arms x {len(seeds)} seeds = {len(plans)} runs" if policy is None else
            f"{len(spec.arms)} arms x seeds {seeds[0]}..{seeds[-1]} (adaptive: a pilot of {policy.min} seeds fixes "
            f"each arm's total for ±{policy.target:g} on {spec.metric}, at most {policy.max})")
    LOGGER.info(f"{_title(spec)}: {what}; {n_done} done, {failed_note if n_failed else ''}{len(pending)} to run "
                f"-> {spec.sweep_dir}")
    if spec.baseline is None:
        LOGGER.warning(f"{_title(spec)}: the baseline arm is not selected; summaries will have no deltas")
    if listing:
        for p in plans:
            state = "done" if p.config_hash in done else "failed" if p.config_hash in failed else "to run"
            LOGGER.info(f"  {p.label:<24} {p.model.file_name:<28} {p.config_hash[:8]}  {state}")
        if prep.transfer:
            for name, t in prep.transfer.items():
                LOGGER.info(f"  pretrained -> {name}: {t.text} tensors; from scratch: {', '.join(t.scratch) or '-'}")
    return pending


def _recorded(store: ResultsStore, warn: bool = True) -> tuple[set, set]:
    """The configuration hashes ``results.csv`` records as done, and as failed (and not done since)."""
    recorded = store.read(warn=warn)
    done = {r.get("config_hash") for r in recorded if r.get("status") == "ok"}
    failed = {r.get("config_hash") for r in recorded if r.get("status") not in ("ok", None)} - done
    return done, failed


def _pending(plans: list[RunPlan], store: ResultsStore, retry_failed: bool,
             recorded: tuple[set, set] | None = None) -> list[RunPlan]:
    """The planned runs still to do: not done, and not failed unless ``retry_failed``."""
    done, failed = recorded or _recorded(store, warn=False)
    return [p for p in plans if p.config_hash not in done and (retry_failed or p.config_hash not in failed)]


def _base_row(plan: RunPlan, prep: Prepared, env: dict[str, str], executor: Executor) -> dict[str, Any]:
    """The columns of a run's row known before it trains."""
    spec = prep.spec
    transfer = prep.transfer.get(plan.arm.name)
    return {
        "sweep": spec.name,
        "arm": plan.arm.name,
        "block": plan.arm.label,
        "placement": plan.model.placement,
        "edited_layers": " ".join(map(str, plan.model.layers)),
        "baseline": plan.arm.baseline,
        "seed": plan.seed,
        "epochs": spec.epochs,
        "imgsz": spec.imgsz,
        "batch": spec.batch,
        "workers": spec.workers,
        "model": Path(spec.model).name if not plan.arm.yaml else Path(plan.arm.yaml).name,
        "scale": plan.model.scale or "",
        "data": prep.data,
        "data_params": spec.data_params,
        "train_args": spec.train_args,
        "reduced": spec.reduced or "",
        "pretrained": prep.pretrained,
        "pretrained_sha": prep.pretrained_sha[:16],
        "transferred": transfer.text if transfer else "",
        "scratch_layers": "; ".join(transfer.scratch) if transfer else "",
        "freeze": plain(spec.train_args.get("freeze", "")),
        "size_buckets": list(spec.size_buckets or DEFAULT_BUCKETS),
        "device": spec.device,
        "executor": executor.name,
        **env,
        "config_hash": plan.config_hash,
        "run_dir": str(plan.run_dir),
        "model_yaml": str(plan.yaml_path),
    }


def _open_tracking(prep: Prepared):
    """The sweep's MLflow tracker (:mod:`.tracking`, imported only when the spec asks for it), or None."""
    spec = prep.spec
    if spec.tracking is None:
        return None
    from .records.tracking import open_sweep

    return open_sweep(spec.sweep_dir, spec.tracking.uri, spec.tracking.experiment, spec.effective, spec.name,
                      _title(spec))


def _run(prep: Prepared, store: ResultsStore, executor: Executor, retry_failed: bool, callbacks: dict | None):
    from ultralytics.utils import LOGGER

    from .analyse.report import write_report

    spec, title = prep.spec, _title(prep.spec)
    write_inputs(prep)
    env = environment(spec)
    tracker = _open_tracking(prep)
    LOGGER.info(f"{title}: executor {executor.describe()}")
    ran = 0
    plans = prep.plans
    try:
        pending = _plan_status(prep, plans, store, retry_failed)
        ran += _execute(prep, pending, store, executor, env, callbacks, tracker)
        if spec.adaptive is not None:
            from .adaptive import adaptive_rounds

            rounds = adaptive_rounds(
                prep, executor.slots,
                lambda new: _execute(prep, _plan_status(prep, new, store, retry_failed), store, executor, env,
                                     callbacks, tracker),
                lambda planned: _latest(store, planned), lambda line: LOGGER.info(f"{title}: {line}"),
            )
            plans, ran = rounds.plans, ran + rounds.ran
    except KeyboardInterrupt:
        LOGGER.warning(f"{title}: interrupted; {ran} run(s) recorded this time. Run the same command to continue.")
        if store.path.is_file():
            with contextlib.suppress(Exception):
                write_report(spec.sweep_dir)
        if tracker is not None:
            tracker.close("KILLED")
        raise
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise
    if store.read(warn=False):
        _time_arms(prep, executor)
    summary = write_report(spec.sweep_dir)["markdown"] if store.read(warn=False) else None
    if tracker is not None:
        tracker.close("FINISHED")
    LOGGER.info(f"{title}: results in {store.path}")
    return _frame(store, plans, spec, summary, ran)


def _time_arms(prep: Prepared, executor: Executor) -> None:
    """Time every arm once, interleaved, now that nothing else of the sweep runs (:mod:`.arm_speed`); skipped when the
    latest timing session already covers every arm as it is now."""
    from ultralytics.utils import LOGGER

    from .analyse.stats import latency_deltas
    from .execute.arm_speed import MIN_SHARE
    from .records.timings import needs_timing, record_timings

    spec, title = prep.spec, _title(prep.spec)
    formats = [f for f in spec.speed.formats if f != "torch"]
    weights = _trained_weights(prep) if formats else {}
    if not needs_timing(spec.sweep_dir, prep.models, spec, weights):
        LOGGER.info(f"{title}: every arm is already timed (speed.csv)")
        return
    given = spec.execution.threads_per_run
    threads = given if isinstance(given, int) else max(1, (os.cpu_count() or 1) // max(1, executor.slots))
    also = f" in torch and {', '.join(formats)} (exported from each arm's trained weights first)" if formats else ""
    LOGGER.info(f"{title}: timing {len(prep.models)} arms once each{also}, interleaved over {spec.speed.repeats} "
                f"rounds, {threads} thread(s) on the CPU or one GPU, with nothing else of the sweep running")
    rows, rounds = executor.time_arms(prep.models, spec, threads, spec.execution.timing_node, weights=weights)
    rows = latency_deltas(rows, rounds)
    record_timings(spec.sweep_dir, rows, rounds)  # speed.csv, and every round in speed_rounds.csv
    for r in rows:
        if r.get("error"):  # that arm's cell in that format only; the rest of the session stands
            LOGGER.warning(f"{title}: arm {r['arm']}: {r['error']}")
        if r["starved"] and r.get("format", "torch") == "torch":
            LOGGER.warning(f"{title}: the timing of arm {r['arm']} got {100 * r['cpu_share']:.0f}% of its {threads} "
                           f"thread(s) (< {MIN_SHARE:.0%}): the machine was busy; its latency is flagged in the summary")


def _trained_weights(prep: Prepared) -> dict[str, str]:
    """Each arm's trained weights that ``speed.formats`` exports: those of its finished run of the lowest seed (the
    runs as planned now, by configuration hash; an arm without one is left out, and its format cells say so)."""
    store = ResultsStore(prep.spec.sweep_dir / RESULTS)
    done = {r.get("config_hash"): r for r in store.read(warn=False) if r.get("status") == "ok" and r.get("weights")}
    out: dict[str, str] = {}
    for p in sorted(prep.plans, key=lambda p: p.seed):
        row = done.get(p.config_hash)
        if row is not None and p.arm.name not in out:
            out[p.arm.name] = str(row["weights"])
    return out


def _execute(prep: Prepared, plans: list[RunPlan], store: ResultsStore, executor: Executor, env: dict,
             callbacks: dict | None, tracker=None) -> int:
    """Run ``plans`` through the executor, appending every row as it arrives; return how many were recorded."""
    from ultralytics.utils import LOGGER

    from .execute.progress import SweepProgress

    if not plans:
        return 0
    spec, title = prep.spec, _title(prep.spec)
    ref = tracker.ref if tracker is not None else None
    tasks = [RunTask(p, spec, prep.data_ref or DataRef(prep.data), _base_row(p, prep, env, executor),
                     pretrained_sha=prep.pretrained_sha, tracking=ref) for p in plans]
    bar = SweepProgress(len(tasks), title, executor.slots)
    ran, started = 0, {}
    events = executor.run(tasks)
    try:
        for event in events:
            if event.kind == "tick":
                bar.refresh_now()
                continue
            key = event.task.plan.config_hash
            if event.kind == "start":
                started[key] = time.perf_counter()
                bar.started()
                for fn in _callbacks(callbacks, "on_run_start"):
                    fn(event.task.plan)
                continue
            row = event.row
            classes = row.pop(perclass.ROW_KEY, None)  # a run's per-class AP: per_class.csv, before its row
            if row.get("status") == "ok" and classes:
                perclass.append(spec.sweep_dir, row, classes)
            store.append(row)
            if tracker is not None:
                tracker.record(row)
            ran += 1
            ok = row.get("status") == "ok"
            seconds = time.perf_counter() - started.pop(key, time.perf_counter())  # from the hand-over to the row
            bar.finished(ok, seconds)
            where = f" on {row['node']}" if executor.name == "ray" and row.get("node") else ""
            status = f"done in {seconds:.0f} s" if ok else f"FAILED ({row.get('error', '')})"
            bar.clear()
            LOGGER.info(f"{title}: {event.task.label} {status}{where}  [{bar.done} done, {bar.running} running, "
                        f"{bar.failed} failed, {bar.left} left]")
            for fn in _callbacks(callbacks, "on_run_end"):
                fn(row)
    except BaseException:
        executor.cancel()
        raise
    finally:
        events.close()
        bar.close()
    return ran


def _latest(store: ResultsStore, plans: list[RunPlan]):
    """The latest recorded row of every planned run, in plan order (runs not recorded yet are absent)."""
    import pandas as pd

    df = store.frame(warn=False)
    if not len(df) or "config_hash" not in df.columns:
        return pd.DataFrame(columns=RESULTS_COLUMNS)
    hashes = set(df["config_hash"])
    df = df.drop_duplicates(subset=["config_hash"], keep="last").set_index("config_hash", drop=False)
    return df.reindex([p.config_hash for p in plans if p.config_hash in hashes]).reset_index(drop=True)


def _frame(store: ResultsStore, plans: list[RunPlan], spec: Spec, summary: str | None, ran: int):
    """What run_sweep returns: :func:`_latest` with the sweep folder, the summary and the runs of this call."""
    df = _latest(store, plans)
    df.attrs.update(sweep_dir=str(spec.sweep_dir), summary_md=summary, ran=ran)
    return df

