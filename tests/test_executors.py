"""Tests of the sweep executors: local worker processes, Ray (one instance and a simulated two-node cluster), the
progress bar and the worker slots. Offline, on the CPU.

The bookkeeping tests run the stand-in :func:`ablation_helpers.fake_execute` inside real worker processes and Ray
tasks (steered through environment variables, which the workers inherit); the equality tests train for real on
a tiny built-in ``digits`` set (16 images of 64 px, 1 epoch) in fresh processes.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from ablation_helpers import (  # noqa: E402
    CRASH_ARMS_ENV,
    CRASH_ONCE_ENV,
    FAIL_ARMS_ENV,
    HOLD_ENV,
    PID_DIR_ENV,
    FailsInWorker,
    crash_execute,
    fake_execute,
    fake_metrics,
    leaky_execute,
    perturb_process_state,
    process_probe,
    tiny_spec,
)

from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.execute.executors import SequentialExecutor  # noqa: E402
from yolo_necks.ablation.execute.factory import make_executor  # noqa: E402
from yolo_necks.ablation.execute.local import (  # noqa: E402
    START_ENV,
    LocalExecutor,
    Slot,
    fork_hazards,
    plan_slots,
    start_method,
)
from yolo_necks.ablation.execute.run import RunTask, run_task  # noqa: E402
from yolo_necks.ablation.prepare.plan import DataRef  # noqa: E402
from yolo_necks.ablation.spec.load import Execution, load_spec  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

THREE_ARMS = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]},
    {"name": "spp3", "block": "SPP", "args": [[3, 5, 7]]},
]


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def parallel_spec(spec_file):
    """The shared tiny spec, run by 2 local worker processes, 1 thread each."""
    return lambda **changes: spec_file(**{"parallel": 2, "threads_per_run": 1, **changes})


def assert_each_run_once(sweep: Path, n: int) -> list[dict]:
    rows = read_rows(sweep / "results.csv")
    hashes = [r["config_hash"] for r in rows]
    assert len(rows) == n and len(set(hashes)) == n, [(r["arm"], r["seed"], r["status"]) for r in rows]
    return rows


# ------------------------------------------------------------------------------------------------------- slots
def test_worker_slots_follow_cores_devices_and_packing():
    two_cores = plan_slots(Execution(devices=("cpu",)), cores=2, memory=math.inf)
    assert [(s.device, s.threads, s.cuda_visible) for s in two_cores] == [("cpu", 1, None)] * 2
    # memory caps 'auto' (about 2.5 GiB a run); explicit threads shrink the runs at once
    assert len(plan_slots(Execution(devices=("cpu",)), cores=64, memory=6 * 2**30)) == 2
    assert [s.threads for s in plan_slots(Execution(devices=("cpu",), threads_per_run=4), cores=16,
                                          memory=math.inf)] == [4] * 4
    assert [s.threads for s in plan_slots(Execution(devices=("cpu",), parallel=3), cores=12)] == [4] * 3
    gpus = plan_slots(Execution(devices=("0", "1"), runs_per_device=2), cores=16)
    assert [(s.group, s.device, s.cuda_visible, s.threads) for s in gpus] == [
        ("0", "0", "0", 4), ("0", "0", "0", 4), ("1", "0", "1", 4), ("1", "0", "1", 4)]
    ddp = plan_slots(Execution(devices=("0,1", "2,3")), cores=8)
    assert [(s.device, s.cuda_visible) for s in ddp] == [("0,1", "0,1"), ("0,1", "2,3")]
    assert len(plan_slots(Execution(devices=("0", "1"), runs_per_device=4, parallel=3), cores=8)) == 3


def test_workers_are_forked_only_where_nothing_forbids_it(monkeypatch):
    import threading
    import types

    monkeypatch.delenv(START_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "mlflow.store.tracking.sqlalchemy_store", raising=False)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.delitem(sys.modules, "polars", raising=False)  # loaded by an earlier test's training, maybe
    real_count = threading.active_count
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # a sweep process without other threads
    cpu = Slot("cpu", "cpu", None, 1)
    assert fork_hazards(cpu) == [] and start_method(cpu) == "fork"
    gpu, threads = fork_hazards(Slot("0", "0", "0", 1)), fork_hazards(Slot("cpu", "cpu", None, 4))
    assert gpu == ["GPU slot '0': its CUDA_VISIBLE_DEVICES must be set before CUDA starts"]
    assert threads == ["4 threads per run: OpenMP's thread pool does not survive a fork"]
    assert start_method(Slot("cpu", "cpu", None, 4)) == "spawn"
    monkeypatch.setattr(threading, "active_count", real_count)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        others = threading.active_count() - 1
        assert fork_hazards(cpu) == [f"{others} other Python thread(s) run in this process"]
        assert start_method(cpu) == "spawn"
    finally:
        stop.set()
        other.join()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "mlflow.store.tracking.sqlalchemy_store", types.ModuleType("store"))
    monkeypatch.setitem(sys.modules, "polars", types.ModuleType("polars"))
    assert fork_hazards(cpu) == ["polars is loaded in this process: its thread pool does not survive a fork",
                                 "this process is connected to Ray",
                                 "this process may hold MLflow database connections"]
    # the environment variable decides, whatever the hazards
    monkeypatch.setenv(START_ENV, "fork")
    assert start_method(cpu) == "fork"
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "mlflow.store.tracking.sqlalchemy_store")
    monkeypatch.delitem(sys.modules, "polars")
    monkeypatch.setenv(START_ENV, " Spawn ")
    assert start_method(cpu) == "spawn"
    monkeypatch.setattr("multiprocessing.get_all_start_methods", lambda: ["spawn"])  # as on Windows
    assert "workers are forked on Linux only" in fork_hazards(cpu)
    monkeypatch.setenv(START_ENV, "fork")
    with pytest.raises(NeckConfigError, match=r"^YOLO_NECKS_WORKER_START=fork: this platform cannot fork processes"):
        start_method(cpu)
    monkeypatch.undo()
    monkeypatch.setenv(START_ENV, "forkserver")
    with pytest.raises(NeckConfigError, match=r"^YOLO_NECKS_WORKER_START='forkserver': expected auto, fork or spawn$"):
        start_method(cpu)


def test_the_spec_picks_the_executor(rect_data, tmp_path):
    spec = load_spec(tiny_spec(rect_data, tmp_path, parallel="auto"))
    assert spec.execution.devices == ("cpu",) and spec.execution.parallel == "auto"
    executor = make_executor(spec.execution)
    if (os.cpu_count() or 1) > 1:
        assert isinstance(executor, LocalExecutor) and executor.slots == len(plan_slots(spec.execution)) > 1
        assert {s.threads for s in executor.slot_list} == {max(1, os.cpu_count() // executor.slots)}
    assert isinstance(make_executor(load_spec(tiny_spec(rect_data, tmp_path)).execution), SequentialExecutor)
    pool = load_spec(tiny_spec(rect_data, tmp_path, device=None, devices=[0, 1, 2, 3]))
    assert pool.device == "0" and pool.execution.devices == ("0", "1", "2", "3")  # hashes as device 0


# -------------------------------------------------------------------------------------------------- progress
def test_progress_eta_comes_from_finished_runs_durations():
    import io

    from yolo_necks.ablation.execute.progress import SweepProgress

    bar = SweepProgress(total=10, title="ablate t", slots=2, file=io.StringIO(), disable=False)
    assert math.isnan(bar.eta_seconds())
    bar.started(), bar.started()
    bar.finished(True, 80.0)
    bar.started()
    bar.finished(True, 72.0)
    bar.finished(False, 1.0)  # a failed run's duration does not count while ok runs exist
    assert (bar.done, bar.failed, bar.running, bar.left) == (2, 1, 0, 7)
    assert bar.mean_duration == pytest.approx(76.0)
    assert bar.eta_seconds() == pytest.approx(7 * 76.0 / 2)
    assert bar._format_rate(0.0) == "76s/run"
    # the bar's own ETA ((total - n) / rate) is ours
    assert (bar.total - bar.n) / bar.last_rate == pytest.approx(bar.eta_seconds())
    assert "2 done, 0 running, 1 failed, 7 left" in bar.desc
    bar.close()


# --------------------------------------------------------------------------------------- local worker processes
def test_parallel_workers_record_every_run_once_and_a_failing_arm_does_not_stop_the_others(parallel_spec,
                                                                                           monkeypatch):
    monkeypatch.setenv(FAIL_ARMS_ENV, "spp")
    path = parallel_spec(seeds=[0, 1], arms=THREE_ARMS)
    df = runner.run_sweep(path, execute=fake_execute)
    sweep = Path(path).parent / "runs" / "tiny"
    rows = assert_each_run_once(sweep, 6)
    status = {(r["arm"], r["seed"]): r["status"] for r in rows}
    assert status == {(a, s): ("failed" if a == "spp" else "ok") for a in ("sppf", "spp", "spp3") for s in "01"}
    assert all("CUDA out of memory (simulated)" in r["error"] for r in rows if r["status"] == "failed")
    pids = {r["weights"] for r in rows if r["status"] == "ok"}
    assert 1 <= len(pids) <= 2 and f"pid {os.getpid()}" not in pids  # the 2 slots' workers, not this process
    assert {r["executor"] for r in rows} == {"local"} and {r["threads"] for r in rows} == {"1"}
    assert all(Path(r["run_dir"], "train.log").is_file() for r in rows)  # worker output went to the run's log
    assert df.attrs["ran"] == 6 and (sweep / "summary.md").is_file()


def test_arms_are_timed_once_after_every_parallel_run_has_finished(parallel_spec):
    """Runs do not time themselves; the sweep times every arm after the last worker returned its row, when nothing
    else of the sweep runs (the session's time is after every run's end)."""
    runner.run_sweep(parallel_spec(), execute=fake_execute)
    sweep = Path(parallel_spec()).parent / "runs" / "tiny"
    rows, timed = read_rows(sweep / "results.csv"), read_rows(sweep / "speed.csv")
    assert [r["arm"] for r in timed] == ["sppf", "spp"] and len({r["session"] for r in timed}) == 1
    assert all(timed[0]["timed_at"] >= r["finished_at"] for r in rows)


def test_sigkill_of_the_parallel_sweep_then_resume_loses_and_duplicates_nothing(parallel_spec, tmp_path,
                                                                                 monkeypatch):
    import psutil

    release = tmp_path / "release"
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    monkeypatch.setenv(HOLD_ENV, f"spp3:{release}")  # spp3 runs stay in their workers until released
    monkeypatch.setenv(PID_DIR_ENV, str(pid_dir))
    path = parallel_spec(seeds=[0, 1], arms=THREE_ARMS)
    sweep = Path(path).parent / "runs" / "tiny"
    helper = TESTS / "ablation_helpers.py"
    # 4 runs finish, then both workers hold an spp3 run: the sweep process is killed with them in flight
    proc = subprocess.run([sys.executable, str(helper), "kill-after-rows", "4", path], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    rows = assert_each_run_once(sweep, 4)
    assert {r["arm"] for r in rows} == {"sppf", "spp"} and {r["status"] for r in rows} == {"ok"}
    orphans = [psutil.Process(int(p.read_text())) for p in pid_dir.glob("spp3-*.pid") if psutil.pid_exists(
        int(p.read_text()))]
    gone, alive = psutil.wait_procs(orphans, timeout=30)  # the workers die with the sweep process
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not [p for p in os.listdir(sweep) if p.endswith(".tmp")]
    release.write_text("go")
    df = runner.run_sweep(path, execute=fake_execute)
    rows = assert_each_run_once(sweep, 6)
    assert df.attrs["ran"] == 2 and {r["status"] for r in rows} == {"ok"}


def test_ctrl_c_in_parallel_mode_stops_the_workers_and_keeps_finished_rows(parallel_spec, tmp_path, monkeypatch):
    import psutil

    release = tmp_path / "release"
    monkeypatch.setenv(HOLD_ENV, f"spp:{release}")
    path = parallel_spec(seeds=[0, 1])
    sweep = Path(path).parent / "runs" / "tiny"

    def ctrl_c(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(path, execute=fake_execute, callbacks={"on_run_end": ctrl_c})
    rows = assert_each_run_once(sweep, 1)
    assert rows[0]["arm"] == "sppf" and rows[0]["status"] == "ok"
    assert not [c for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE
                and "spawn" in " ".join(c.cmdline())]
    assert (sweep / "summary.md").is_file()  # the report covers what finished
    release.write_text("go")
    df = runner.run_sweep(path, execute=fake_execute)
    assert df.attrs["ran"] == 3
    assert_each_run_once(sweep, 4)


# ------------------------------------------------------------------------------- workers that start once
ONE_SLOT = [Slot("cpu", "cpu", None, 1)]


def _tasks(spec, prep, plans=None) -> list[RunTask]:
    return [RunTask(p, spec, prep.data_ref or DataRef(prep.data), {"arm": p.arm.name, "seed": p.seed})
            for p in (prep.plans if plans is None else plans)]


def _run_all(executor, tasks) -> list:
    try:
        return [e for e in executor.run(tasks) if e.kind != "tick"]
    finally:
        executor.close()


def test_parallel_auto_trains_a_single_run_in_the_sweep_process_and_more_in_workers(rect_data, tmp_path):
    from yolo_necks.ablation.execute.factory import choose_slots, early_slots

    def n(execution, pending, cores=2, memory=math.inf):
        return len(choose_slots(execution, pending, cores, memory))

    cpu = Execution(devices=("cpu",))
    assert [n(cpu, k) for k in (0, 1, 2, 9)] == [0, 0, 2, 2]  # 0 = one at a time in the sweep process
    assert n(cpu, 3, cores=8) == 3 and n(cpu, 9, cores=1) == 0 and n(cpu, 9, cores=64, memory=3 * 2**30) == 0
    assert n(cpu, None) == 2 and n(Execution(devices=("cpu",), parallel=1), 9) == 0
    explicit = Execution(devices=("cpu",), parallel=3)  # asked for workers: one, even for a single run
    assert [s.threads for s in choose_slots(explicit, 1, cores=12)] == [4] and n(explicit, None, cores=12) == 3
    gpus = Execution(devices=("0", "1"))
    assert n(gpus, 1, cores=8) == 0 and n(gpus, 5, cores=8) == 2
    assert n(Execution(executor="ray", devices=("cpu",)), 9) == 0
    # before preparation only the runs certain to be pending count: 3 arms x 2 seeds minus the rows recorded
    spec = load_spec(tiny_spec(rect_data, tmp_path, parallel="auto", arms=THREE_ARMS, seeds=[0, 1]))
    assert [len(early_slots(spec, rows, cores=2, memory=math.inf)) for rows in (0, 4, 5, 6, 9)] == [2, 2, 0, 0, 0]
    ray = load_spec(tiny_spec(rect_data, tmp_path, executor="ray", arms=THREE_ARMS, seeds=[0, 1]))
    assert early_slots(ray, 0, cores=2, memory=math.inf) == []


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="parallel=auto runs one at a time on one core")
def test_auto_sweeps_use_the_sweep_process_for_one_run_and_the_workers_started_early_for_more(spec_file,
                                                                                              monkeypatch):
    from yolo_necks.ablation.execute import factory

    early = []

    def spy(spec, recorded, execute=None):
        executor = factory.start_early(spec, recorded, execute)
        early.append(executor.worker_pids() if executor else None)
        return executor

    monkeypatch.setattr(runner, "start_early", spy)
    sweep = Path(spec_file()).parent / "runs" / "tiny"

    def rows(**changes):
        runner.run_sweep(spec_file(parallel="auto", **changes), execute=fake_execute)
        return {(r["arm"], r["seed"]): r for r in read_rows(sweep / "results.csv")}

    one = rows(arms=THREE_ARMS[:1])[("sppf", "0")]  # one run: no worker
    assert early == [None] and one["executor"] == "sequential" and one["weights"] == f"pid {os.getpid()}"
    monkeypatch.setenv(FAIL_ARMS_ENV, "spp3")
    both = rows(arms=THREE_ARMS)  # 3 planned, 1 recorded: 2 certain, started before preparation, and used
    assert len(early[1]) == 2
    assert {both[(a, "0")]["weights"] for a in ("spp",)} <= {f"pid {p}" for p in early[1]}
    assert {both[(a, "0")]["executor"] for a in ("spp", "spp3")} == {"local"}
    monkeypatch.delenv(FAIL_ARMS_ENV)
    runner.run_sweep(spec_file(parallel="auto", arms=THREE_ARMS), execute=fake_execute, retry_failed=True)
    assert early[2] is None  # 3 rows recorded: nothing certain before planning; 1 failed run to retry: this process
    assert read_rows(sweep / "results.csv")[-1]["executor"] == "sequential"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_that_dies_costs_only_its_run_and_the_slot_gets_a_fresh_worker(rect_data, tmp_path, monkeypatch,
                                                                                method):
    monkeypatch.setenv(START_ENV, method)
    monkeypatch.setenv(CRASH_ARMS_ENV, "spp")  # every spp run SIGKILLs the worker training it
    spec = load_spec(tiny_spec(rect_data, tmp_path / "runs", seeds=[0, 1]))
    prep = prepare(spec)
    events = _run_all(LocalExecutor(ONE_SLOT, crash_execute), _tasks(spec, prep))
    assert [e.kind for e in events] == ["start", "end"] * 4
    rows = [e.row for e in events if e.kind == "end"]
    how = {"fork": "forked from the sweep process", "spawn": "spawned"}[method]
    for e in events[1::2]:  # the worker's own output reaches the run's log, whatever this process did with its streams
        head = (e.task.plan.run_dir / "train.log").read_text().splitlines()[0]
        assert head.startswith("yolo-necks worker process ") and head.endswith(f"in this process ({how})"), head
    assert [(r["arm"], r["seed"], r["status"]) for r in rows] == [
        ("sppf", 0, "ok"), ("spp", 0, "failed"), ("sppf", 1, "ok"), ("spp", 1, "failed")]
    assert rows[0]["weights"] != rows[2]["weights"]  # the slot's fresh worker trained the next run
    for r in rows[1::2]:
        assert r["error"].startswith("worker process died (killed by signal 9 (SIGKILL: out of memory?)) before "
                                     "returning a row; see ") and "\n" not in r["error"]


def _cannot_start():
    raise RuntimeError("cannot start (simulated)")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_that_cannot_start_fails_the_runs_one_by_one_instead_of_restarting_forever(
        rect_data, tmp_path, monkeypatch, method):
    from yolo_necks.ablation.execute import worker

    monkeypatch.setenv(START_ENV, method)
    spec = load_spec(tiny_spec(rect_data, tmp_path / "runs"))
    prep = prepare(spec)
    if method == "fork":  # a forked worker inherits this process's modules: its start-up fails
        monkeypatch.setattr(worker, "_own_standard_streams", _cannot_start)
        execute = fake_execute
    else:  # a spawned worker receives its execute pickled: this one cannot be unpickled there
        execute = FailsInWorker()
    events = _run_all(LocalExecutor(ONE_SLOT, execute), _tasks(spec, prep))
    assert [e.kind for e in events] == ["start", "end"] * 2
    for e in events[1::2]:
        assert e.row["status"] == "failed"
        assert e.row["error"] == "worker process died while starting (exit code 1); its error went to the sweep's output"


def test_the_process_state_a_run_changes_is_put_back(tmp_path):
    import torch

    from yolo_necks.ablation.execute.isolation import ProcessState

    before = process_probe()
    clean = ProcessState.capture()
    child = perturb_process_state(tmp_path, with_mlflow=True)
    try:
        during = process_probe()
        clean.restore()
        after = process_probe()
    finally:
        child.kill()
        child.wait()
        torch.set_num_threads(before["threads"])
    # the perturbation reached everything (the timing guard is the worker's to set, before each run)
    assert {k for k in before if during[k] != before[k]} == set(before) - {"fds"}
    assert {k: after[k] for k in before if k != "children"} == {k: v for k, v in before.items() if k != "children"}


def test_a_runs_thread_budget_holds_through_ultralytics_own_thread_setting(rect_data, tmp_path, monkeypatch):
    """ultralytics' select_device sets torch to its NUM_THREADS (min(8, CPUs - 1)) at every trainer and validator
    start: a run with a budget trains and validates at that budget all the same, and the process gets its setting
    back after the run."""
    import torch
    from ultralytics.utils import torch_utils

    from yolo_necks.threads import threads_held

    monkeypatch.setattr(torch_utils, "NUM_THREADS", 3)  # what a machine with 4 CPUs gives
    before = torch.get_num_threads()
    seen = []

    def execute(plan, spec, data):
        torch_utils.select_device("cpu", verbose=False)  # what a trainer, validator or predictor does first
        seen.append(torch.get_num_threads())
        return fake_metrics(plan, spec)

    spec = load_spec(tiny_spec(rect_data, tmp_path / "runs"))
    prep = prepare(spec)
    (task, *_) = _tasks(spec, prep)
    row = run_task(dataclasses.replace(task, threads=1), execute)
    assert row["status"] == "ok" and row["threads"] == 1 and seen == [1], row.get("error")
    assert torch.get_num_threads() == before and torch_utils.NUM_THREADS == 3  # put back after the run
    run_task(task, execute)  # no budget: ultralytics' setting stands
    assert seen == [1, 3]
    torch.set_num_threads(before)
    with threads_held(None):
        assert torch.get_num_threads() == before


FORK_HAZARDS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from ultralytics.utils import torch_utils
from ablation_helpers import tiny_spec
from yolo_necks.ablation.execute.local import LocalExecutor, Slot
from yolo_necks.ablation.execute.run import RunTask
from yolo_necks.ablation.prepare.plan import DataRef
from yolo_necks.ablation.prepare.prepare import prepare
from yolo_necks.ablation.spec.load import load_spec

torch_utils.NUM_THREADS = 2  # what ultralytics sets on a machine with 3 CPUs (select_device)
torch.set_num_threads(2)
torch.rand(512, 512) @ torch.rand(512, 512)  # OpenMP's thread pool ran in this process before the fork
out = []
for step in ("threads", "polars"):
    if step == "polars":  # what a training in this process leaves: polars' thread pool started
        import polars
        polars.DataFrame({"a": list(range(1000))}).lazy().select(polars.col("a").sum()).collect()
    spec = load_spec(tiny_spec(sys.argv[2], sys.argv[3] + "/" + step, seeds=[0]))
    prep = prepare(spec)
    plan = prep.plans[0]
    task = RunTask(plan, spec, prep.data_ref or DataRef(prep.data), {"arm": plan.arm.name, "seed": plan.seed})
    executor = LocalExecutor([Slot("cpu", "cpu", None, 1)])
    try:
        (row,) = [e.row for e in executor.run([task]) if e.kind == "end"]
    finally:
        executor.close()
    head = (plan.run_dir / "train.log").read_text(errors="replace").splitlines()[0]
    out.append({"status": row["status"], "error": row.get("error"), "threads": row.get("threads"), "head": head})
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_forked_worker_trains_where_ultralytics_would_set_more_threads_and_polars_ran_before(rect_data, tmp_path):
    """Two ways a worker forked from a process that ran torch with 2 threads deadlocked at its first parallel
    operation: ultralytics setting more threads than the run's budget in it (on a machine with 3 CPUs or more), and
    polars' thread pool started in the sweep process before the fork (ultralytics reads its CSVs with polars). In a
    fresh process: the run's budget holds in the forked worker, and once polars has run the worker is spawned."""
    import json

    proc = subprocess.run([sys.executable, "-c", FORK_HAZARDS, str(TESTS), rect_data, str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "YOLO_OFFLINE": "1", START_ENV: "auto"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    threads, polars = json.loads(proc.stdout.strip().splitlines()[-1])
    assert threads["status"] == polars["status"] == "ok", (threads["error"], polars["error"])
    assert threads["threads"] == polars["threads"] == 1
    assert threads["head"].endswith("(forked from the sweep process)"), threads["head"]
    assert polars["head"].endswith("(spawned)"), polars["head"]


@pytest.mark.slow
def test_a_run_after_others_in_the_same_worker_equals_the_run_in_a_fresh_worker(tiny_data, tmp_path):
    """sppf trained first in a fresh worker, then a run that leaves the process perturbed, focal and spp trained,
    then sppf again, all in one worker process: same state at its start, same weights, same metrics; and the same
    as sppf trained one at a time in this process."""
    import torch

    spec = load_spec({
        "name": "fresh", "project": str(tmp_path / "runs"), "model": "yolov8.yaml", "scale": "n",
        "arms": [{"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
                 {"name": "focal", "block": "FocalModulation", "args": [3, 2, 2]},
                 {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]}],
        "data": str(tiny_data), "epochs": 1, "imgsz": 64, "batch": 4, "seeds": [0], "device": "cpu", "workers": 0,
        "parallel": 1, "speed": {"warmup": 1, "repeats": 100, "throughput_batch": 2, "throughput_repeats": 2},
    })
    prep = prepare(spec)
    plan = {p.arm.name: p for p in prep.plans}

    def renamed(p, suffix):
        return dataclasses.replace(p, run_dir=p.run_dir.with_name(p.run_dir.name + suffix))

    order = [plan["sppf"], renamed(plan["spp"], "-leak"), plan["focal"], plan["spp"], renamed(plan["sppf"], "-again")]
    rows = [e.row for e in _run_all(LocalExecutor(ONE_SLOT, leaky_execute), _tasks(spec, prep, order))
            if e.kind == "end"]
    assert [r["status"] for r in rows] == ["ok"] * 5, [r.get("error") for r in rows]
    assert len({r["pid"] for r in rows}) == 1  # one worker process trained all five
    probes = [r["probe"] for r in rows]
    first, last = rows[0], rows[-1]
    state = [{k: v for k, v in p.items() if k != "fds"} for p in probes]
    # the perturbing run changed everything the probe sees (MLflow aside: not imported in test workers)
    assert {k for k in state[0] if state[1][k] != state[0][k]} == set(state[0]) - {"mlflow_run"}
    assert state[-1] == state[0]  # the fifth run found its process as the first did
    # no descriptor piles up from run to run (a process's first training opens a few it keeps)
    assert probes[-1]["fds"] == probes[2]["fds"]
    for col in ("map50", "map50_95", "precision", "recall", "params", "gflops", "epochs_run"):
        assert last[col] == first[col], col
    ref = torch.load(first["weights"], map_location="cpu", weights_only=False)["model"].float().state_dict()
    mine = torch.load(last["weights"], map_location="cpu", weights_only=False)["model"].float().state_dict()
    assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref)
    assert first["weights"] != last["weights"]
    # and the same run trained one at a time in this process, as the sequential executor trains it
    (here,) = _tasks(spec, prep, [renamed(plan["sppf"], "-here")])
    seq = run_task(dataclasses.replace(here, threads=1))
    assert seq["status"] == "ok", seq.get("error")
    for col in ("map50", "map50_95", "precision", "recall", "params", "gflops", "epochs_run"):
        assert seq[col] == first[col], col
    mine = torch.load(seq["weights"], map_location="cpu", weights_only=False)["model"].float().state_dict()
    assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref)


# ------------------------------------------------------------------------------------------------------ Ray
def _ray_spec(rect_data, project, **changes) -> dict:
    return tiny_spec(rect_data, project, executor="ray", threads_per_run=1, **changes)


@pytest.fixture(scope="module")
def two_node_cluster():
    """A Ray cluster of two nodes with one CPU each, simulated on this machine; its workers import the test
    helpers (PYTHONPATH)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), saved) if p)
    store = 80 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                             "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=store)
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_ray_runs_land_on_both_nodes_and_rows_record_the_node(two_node_cluster, rect_data, tmp_path):
    spec = _ray_spec(rect_data, tmp_path / "runs", seeds=[0, 1, 2], ray_address=two_node_cluster.address)
    df = runner.run_sweep(spec, execute=fake_execute)
    rows = assert_each_run_once(tmp_path / "runs" / "tiny", 6)
    assert {r["status"] for r in rows} == {"ok"} and {r["executor"] for r in rows} == {"ray"}
    node_ids = {r["node_id"] for r in rows}
    assert len(node_ids) == 2 and all(len(n) == 12 for n in node_ids)  # both nodes trained
    assert all(r["node"] for r in rows) and all(Path(r["run_dir"], "train.log").is_file() for r in rows)
    assert df.attrs["ran"] == 6


def test_ray_times_every_arm_once_on_the_node_a_key_names(two_node_cluster, rect_data, tmp_path):
    import ray

    ray.init(address=two_node_cluster.address)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    ray.shutdown()
    other = nodes[-1][:8]  # the start of the second node's id
    spec = _ray_spec(rect_data, tmp_path / "runs", seeds=[0], ray_address=two_node_cluster.address, timing_node=other)
    runner.run_sweep(spec, execute=fake_execute)
    timed = read_rows(tmp_path / "runs" / "tiny" / "speed.csv")
    assert [r["arm"] for r in timed] == ["sppf", "spp"] and {r["node"] for r in timed} == {nodes[-1][:12]}
    assert len({r["session"] for r in timed}) == 1 and all(float(r["latency_ms"]) > 0 for r in timed)
    bad = _ray_spec(rect_data, tmp_path / "bad", seeds=[0], ray_address=two_node_cluster.address, timing_node="zzz")
    with pytest.raises(NeckConfigError, match=r"key .timing_node.: no live Ray node matches .zzz.; nodes: "):
        runner.run_sweep(bad, execute=fake_execute)
    assert not (tmp_path / "bad" / "tiny" / "results.csv").exists()  # refused before anything trained
    with pytest.raises(NeckConfigError, match="key 'timing_node': names a Ray node, so it needs executor=ray"):
        load_spec(tiny_spec(rect_data, tmp_path, timing_node="x"))


@pytest.mark.parametrize("retries, status", [(1, "ok"), (0, "failed")])
def test_ray_a_worker_killed_mid_run_is_retried_or_recorded_never_lost(two_node_cluster, rect_data, tmp_path,
                                                                       retries, status):
    import ray

    crash = tmp_path / "crash"
    crash.mkdir()
    spec = _ray_spec(rect_data, tmp_path / "runs", ray_address=two_node_cluster.address, max_retries=retries)
    # the first attempt of every run SIGKILLs its Ray worker process (the env reaches the tasks of this driver)
    ray.init(address=two_node_cluster.address, runtime_env={"env_vars": {CRASH_ONCE_ENV: str(crash)}},
             log_to_driver=False)
    try:
        runner.run_sweep(spec, execute=fake_execute)
    finally:
        ray.shutdown()
    rows = assert_each_run_once(tmp_path / "runs" / "tiny", 2)
    assert len(list(crash.glob("*.attempted"))) == 2  # every run's first attempt died
    assert {r["status"] for r in rows} == {status}
    if status == "failed":
        assert all("Ray task failed after 0 retries" in r["error"] and "\n" not in r["error"] for r in rows)


def test_ray_a_data_yaml_unreadable_on_a_node_fails_that_run_with_one_line(two_node_cluster, rect_data, tmp_path):
    from yolo_necks.ablation.execute.ray_cluster import RayExecutor
    from yolo_necks.ablation.execute.run import RunTask
    from yolo_necks.ablation.prepare.plan import DataRef

    spec = load_spec(_ray_spec(rect_data, tmp_path / "runs", ray_address=two_node_cluster.address))
    prep = prepare(spec)
    missing = str(tmp_path / "only-on-the-driver" / "data.yaml")
    tasks = [RunTask(p, spec, DataRef(missing), {"arm": p.arm.name, "seed": p.seed}) for p in prep.plans]
    executor = RayExecutor(spec.execution, fake_execute)
    try:
        rows = [e.row for e in executor.run(tasks) if e.kind == "end"]
    finally:
        executor.close()
    assert len(rows) == 2 and {r["status"] for r in rows} == {"failed"}
    for r in rows:
        assert r["error"].startswith(f"node {r['node']}: data YAML '{missing}' is not readable here")
        assert "\n" not in r["error"]
    assert dataclasses.is_dataclass(tasks[0])


def test_ray_ctrl_c_cancels_what_is_pending_and_keeps_finished_rows(two_node_cluster, rect_data, tmp_path):
    spec = _ray_spec(rect_data, tmp_path / "runs", seeds=[0, 1, 2], ray_address=two_node_cluster.address)

    def ctrl_c(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(spec, execute=fake_execute, callbacks={"on_run_end": ctrl_c})
    assert_each_run_once(tmp_path / "runs" / "tiny", 1)  # the finished row, nothing of the cancelled tasks
    df = runner.run_sweep(spec, execute=fake_execute)
    assert df.attrs["ran"] == 5
    assert_each_run_once(tmp_path / "runs" / "tiny", 6)


def test_a_ray_driver_does_not_check_gpus_against_its_own_machine(rect_data, tmp_path):
    """Runs train on the cluster's nodes: a driver without a GPU may send them to GPU nodes (device=0)."""
    import torch

    from yolo_necks.errors import NeckConfigError

    prep = prepare(_ray_spec(rect_data, tmp_path, device="0"))
    assert prep.spec.device == "0" and prep.spec.execution.devices == ("0",)
    if not torch.cuda.is_available():  # the local executor does check
        with pytest.raises(NeckConfigError, match="asks for a CUDA GPU but this machine has none"):
            prepare(tiny_spec(rect_data, tmp_path, device="0"))


def test_executor_ray_without_ray_installed_says_how_to_install(rect_data, tmp_path, monkeypatch):
    from yolo_necks.errors import NeckConfigError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(NeckConfigError, match=r"pip install 'yolo-necks\[ray\]'"):
        runner.run_sweep(_ray_spec(rect_data, tmp_path / "runs"), execute=fake_execute)
    assert not (tmp_path / "runs" / "tiny" / "results.csv").exists()


# ------------------------------------------------------------------------------- same results, any executor
@pytest.fixture(scope="module")
def three_executors(tmp_path_factory):
    """The same tiny digits sweep (2 arms, 2 seeds, 1 epoch) run one at a time, by 2 local workers (each trains
    runs one after another; forked from the sweep process, as the CLI does here, and spawned), and as Ray tasks, each
    through the CLI in a fresh process, 1 thread per run."""
    root = tmp_path_factory.mktemp("executors")
    spec = {
        "name": "same", "project": str(root / "runs"), "model": "yolov8.yaml", "scale": "n",
        "arms": [{"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
                 {"name": "focal", "block": "FocalModulation", "args": [3, 2, 2]}],
        "data": "digits", "data_params": {"n_train": 16, "n_val": 8, "imgsz": 64}, "epochs": 1, "imgsz": 64,
        "batch": 4, "seeds": [0, 1], "device": "cpu", "workers": 0, "threads_per_run": 1,
        "speed": {"warmup": 1, "repeats": 100, "throughput_batch": 2, "throughput_repeats": 2},
    }
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_NECKS_DATA_DIR": str(root / "data"), "PYTHONUNBUFFERED": "1"}
    variants = {"sequential": ["parallel=1"], "local": ["parallel=2"], "spawned": ["parallel=2"]}
    try:
        import ray  # noqa: F401

        variants["ray"] = ["executor=ray", "ray_address=local"]
    except ImportError:
        pass
    out = {}
    for name, extra in variants.items():
        start = {START_ENV: "spawn"} if name == "spawned" else {}
        proc = subprocess.run([sys.executable, "-m", "yolo_necks.cli", "ablate", str(path), f"name={name}", *extra],
                              capture_output=True, text=True, timeout=900, env={**env, **start})
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        out[name] = {r["config_hash"]: r for r in read_rows(root / "runs" / name / "results.csv")}
    return out


@pytest.mark.slow
def test_metrics_and_weights_do_not_depend_on_the_executor(three_executors):
    import torch

    seq = three_executors["sequential"]
    assert len(seq) == 4 and {r["status"] for r in seq.values()} == {"ok"}
    for name, how in (("local", "(forked from the sweep process)"), ("spawned", "(spawned)")):
        # the local workers started once: at most 2 processes trained the 4 runs, one after another
        heads = [Path(r["run_dir"], "train.log").read_text(errors="replace").splitlines()[0]
                 for r in three_executors[name].values()]
        assert all(h.startswith("yolo-necks worker process ") and h.endswith(how) for h in heads), heads
        runs = {}
        for h in heads:
            runs.setdefault(h.split()[3], []).append(int(h.split()[5]))
        assert 1 <= len(runs) <= 2 and sorted(n for ns in runs.values() for n in ns if n > 1), runs
        assert all(sorted(ns) == list(range(1, len(ns) + 1)) for ns in runs.values()), runs
    for name, rows in three_executors.items():
        assert set(rows) == set(seq), name  # same runs, same configuration hashes
        for h, r in rows.items():
            assert r["executor"] == {"spawned": "local"}.get(name, name) and r["threads"] == "1"
            for col in ("map50", "map50_95", "precision", "recall", "params", "gflops", "epochs_run"):
                assert r[col] == seq[h][col], (name, r["arm"], col)  # bit-identical (same text in the CSV)
            mine = torch.load(r["weights"], map_location="cpu", weights_only=False)["model"].float().state_dict()
            ref = torch.load(seq[h]["weights"], map_location="cpu", weights_only=False)["model"].float().state_dict()
            assert mine.keys() == ref.keys()
            assert all(torch.equal(mine[k], ref[k]) for k in ref), (name, r["arm"])  # the trained weights too
    if "ray" in three_executors:
        assert all(r["node"] and r["node_id"] for r in three_executors["ray"].values())
