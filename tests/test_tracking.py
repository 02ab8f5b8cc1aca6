"""Sweeps in MLflow and training curves (yolo_necks.ablation.records.tracking, plots.plot_curves).

A real MLflow store (SQLite in tmp_path, no mocks of mlflow): the sweep's experiment, its parent run with the
sweep's files, one child run per row of results.csv with equal metrics, started in the process that trains the run
(this process, or a local worker), FAILED runs with their error, resume and ``report --mlflow`` back-fill without
duplicates, one warning line when MLflow cannot be used. One real sweep (2 arms x 2 seeds x 2 epochs, validated
every epoch, in 2 worker processes) with ultralytics' own MLflow callback switched on: its per-epoch metrics land in
the child runs and it opens no run of its own; the same sweep's files feed the training-curve tests.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
import yaml

mlflow = pytest.importorskip("mlflow")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import (  # noqa: E402
    BARRIER_ENV,
    CRASH_ONCE_ENV,
    FAIL_ARMS_ENV,
    FakeTraining,
    mlflow_probe_execute,
    tiny_spec,
    write_spec,
)
from conftest import ROOT, run_py  # noqa: E402
from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.analyse.plots import MAP_CURVE, plot_curves  # noqa: E402
from yolo_necks.ablation.analyse.report import load_results, write_report  # noqa: E402
from yolo_necks.ablation.spec.load import load_spec  # noqa: E402
from yolo_necks.cli import main as cli_main  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

TAGS = ("arm", "block", "seed", "config_hash", "pretrained_sha", "device", "node", "torch", "ultralytics",
        "yolo_necks", "status")
from yolo_necks.ablation.records.columns import NOT_METRICS as NOT_NUMBERS  # noqa: E402  (never metrics)
SWEEP_ARTIFACTS = {"summary.md", "summary.csv", "pareto.png", "curves.png", "models/yolov8n-sppf.yaml",
                   "models/yolov8n-spp.yaml"}


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def tracked(uri: str, experiment: str = "tiny") -> tuple[list, list]:
    """(parent runs, child runs) of an experiment; every run of it is one or the other."""
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("role") == "run"]
    assert len(parents) + len(children) == len(runs)  # nothing else in the experiment
    return parents, children


def artifacts(uri: str, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for a in client(uri).list_artifacts(run_id, path):
        out |= artifacts(uri, run_id, a.path) if a.is_dir else {a.path}
    return out


def numeric_cells(row: dict) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        try:
            x = float(v)
        except ValueError:
            continue
        if k not in NOT_NUMBERS and math.isfinite(x):
            out[k] = x
    return out


def assert_one_child_per_row(uri: str, sweep: Path, parent_id: str, exact_metrics: bool = True,
                             experiment: str = "tiny") -> dict:
    """Each row of results.csv has exactly one child run, with the row's tags and numeric columns; returns the
    children by (config_hash, finished_at)."""
    rows = read_rows(sweep / "results.csv")
    _, children = tracked(uri, experiment)
    by_row = {(c.data.tags["config_hash"], c.data.tags["finished_at"]): c for c in children}
    assert len(children) == len(by_row) == len(rows)
    for row in rows:
        c = by_row[(row["config_hash"], row["finished_at"])]
        assert c.data.tags["mlflow.parentRunId"] == parent_id
        assert c.info.status == ("FINISHED" if row["status"] == "ok" else "FAILED")
        assert {k: c.data.tags.get(k, "") for k in TAGS} == {k: row[k] for k in TAGS}
        assert {k: c.data.params[k] for k in ("arm", "block", "seed")} == {k: row[k] for k in ("arm", "block", "seed")}
        expected = numeric_cells(row)
        got = c.data.metrics if exact_metrics else {k: c.data.metrics[k] for k in expected}
        assert got == expected
    return by_row


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Work in tmp_path: MLflow's local artifact store (./mlruns) and relative store URIs land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------------------------- spec
@pytest.mark.parametrize("value, uri", [(True, None), ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
                                        ("http://host:5000", "http://host:5000"), (None, "off"), (False, "off")])
def test_mlflow_key_takes_true_null_or_a_uri_and_is_no_part_of_the_run_hashes(spec_file, value, uri):
    spec = load_spec(spec_file(mlflow=value))
    assert (spec.tracking.uri if spec.tracking else "off") == uri
    if spec.tracking:
        assert spec.tracking.experiment == "tiny"
        assert load_spec(spec_file(mlflow=value, mlflow_experiment="necks")).tracking.experiment == "necks"
    hashes = [p.config_hash for p in prepare(spec_file(mlflow=value)).plans]
    assert hashes == [p.config_hash for p in prepare(spec_file()).plans]


@pytest.mark.parametrize("changes, key", [({"mlflow": 3}, "mlflow"), ({"mlflow": "on"}, "mlflow"),
                                          ({"mlflow": "a b"}, "mlflow"), ({"mlflow": ["x"]}, "mlflow"),
                                          ({"mlflow": True, "mlflow_experiment": ""}, "mlflow_experiment"),
                                          ({"mlflow_experiment": {"a": 1}}, "mlflow_experiment")])
def test_a_bad_mlflow_key_is_one_line_naming_file_and_key(spec_file, changes, key):
    path = spec_file(**changes)
    with pytest.raises(NeckConfigError) as err:
        load_spec(path)
    assert path in str(err.value) and f"key '{key}'" in str(err.value) and "\n" not in str(err.value)


def test_run_imports_neither_torch_nor_mlflow_and_an_untracked_sweep_never_imports_tracking(spec_file):
    code = textwrap.dedent(f"""
        import sys
        import yolo_necks.ablation.execute.run
        print("loaded", sorted(m for m in ("torch", "ultralytics", "mlflow", "yolo_necks.ablation.records.tracking")
                               if m in sys.modules))
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from ablation_helpers import fake_execute
        from yolo_necks.ablation import runner
        runner.run_sweep({spec_file()!r}, execute=fake_execute)
        print("loaded", sorted(m for m in ("mlflow", "yolo_necks.ablation.records.tracking") if m in sys.modules))
    """)
    proc = run_py(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line for line in proc.stdout.splitlines() if line.startswith("loaded")] == ["loaded []", "loaded []"]


# ------------------------------------------------------------------------------------------ sweeps into MLflow
def test_sequential_sweep_logs_a_parent_and_one_child_per_row_resume_adds_nothing(spec_file, here, monkeypatch):
    uri = f"sqlite:///{here / 'store' / 'mlflow.db'}"
    (here / "store").mkdir()
    path = spec_file(seeds=[0, 1], mlflow=uri)
    sweep = Path(path).parent / "runs" / "tiny"
    monkeypatch.setenv(FAIL_ARMS_ENV, "spp")
    runner.run_sweep(path, execute=mlflow_probe_execute)
    parents, _ = tracked(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.params["epochs"] == "1" and parent.data.params["seeds"] == "[0, 1]"
    assert parent.data.params["speed.repeats"] == "100" and '"name": "spp"' in parent.data.params["arms"]
    assert SWEEP_ARTIFACTS <= artifacts(uri, parent.info.run_id)
    by_row = assert_one_child_per_row(uri, sweep, parent.info.run_id)
    for row in read_rows(sweep / "results.csv"):
        run = by_row[(row["config_hash"], row["finished_at"])]
        if row["status"] == "ok":  # the child run was the active run where the run trained: this process
            assert row["weights"] == f"pid {os.getpid()} run {run.info.run_id}"
        else:
            assert "CUDA out of memory (simulated)" in run.data.tags["error"] == row["error"]
            text = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="error.txt",
                                                            dst_path=str(here), tracking_uri=uri)).read_text()
            assert "Traceback" in text and "CUDA out of memory" in text

    monkeypatch.delenv(FAIL_ARMS_ENV)
    assert runner.run_sweep(path, execute=mlflow_probe_execute).attrs["ran"] == 0  # resume: nothing to run
    assert [p.info.run_id for p in tracked(uri)[0]] == [parent.info.run_id]
    assert len(tracked(uri)[1]) == 4  # and nothing logged twice
    runner.run_sweep(path, execute=mlflow_probe_execute, retry_failed=True)
    rows = read_rows(sweep / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "failed", "ok", "ok"]
    assert_one_child_per_row(uri, sweep, parent.info.run_id)  # the failed attempts stay, FAILED
    assert tracked(uri)[0][0].info.status == "FINISHED"


def test_two_workers_start_each_child_run_where_the_run_trains_and_a_dying_one_leaves_a_failed_run(
        spec_file, here, monkeypatch):
    crash = here / "crash"
    crash.mkdir()
    monkeypatch.setenv(CRASH_ONCE_ENV, str(crash))  # every run's first attempt SIGKILLs its worker mid-run
    path = spec_file(parallel=2, threads_per_run=1, mlflow="sqlite:///mlflow.db")
    sweep = Path(path).parent / "runs" / "tiny"
    runner.run_sweep(path, execute=mlflow_probe_execute)
    uri = f"sqlite:///{here / 'mlflow.db'}"  # the relative URI, as every worker resolved it: the same store
    rows = read_rows(sweep / "results.csv")
    assert [r["status"] for r in rows] == ["failed", "failed"] and "worker process died" in rows[0]["error"]
    parents, _ = tracked(uri)
    by_row = assert_one_child_per_row(uri, sweep, parents[0].info.run_id)  # the run the worker started, ended here
    assert all(r.data.tags["error"].startswith("worker process died") for r in by_row.values())
    assert all(r.data.tags["started_at"] for r in by_row.values())  # started by the worker before it died

    barrier = here / "barrier"
    barrier.mkdir()
    monkeypatch.setenv(BARRIER_ENV, f"2:{barrier}")  # the two runs overlap: one worker cannot take both
    runner.run_sweep(path, execute=mlflow_probe_execute, retry_failed=True)
    rows = read_rows(sweep / "results.csv")
    assert [r["status"] for r in rows] == ["failed", "failed", "ok", "ok"]
    by_row = assert_one_child_per_row(uri, sweep, parents[0].info.run_id)
    pids = set()
    for row in rows[2:]:
        pid, run_id = row["weights"].removeprefix("pid ").split(" run ")
        assert run_id == by_row[(row["config_hash"], row["finished_at"])].info.run_id  # active in that worker
        pids.add(pid)
    assert len(pids) == 2 and str(os.getpid()) not in pids  # each in its own worker process


def test_report_mlflow_backfills_a_sweep_folder_once_and_a_tracked_resume_finds_its_parent(spec_file, here,
                                                                                            capsys):
    uri = f"sqlite:///{here / 'mlflow.db'}"
    path = spec_file(seeds=[0, 1])
    sweep = Path(path).parent / "runs" / "tiny"
    with mock.patch.object(run_module, "execute_run", FakeTraining(fail_arms=("spp",))):
        runner.run_sweep(path)
    assert cli_main(["report", str(sweep), "--mlflow", uri, "--mlflow-experiment", "necks"]) == 0
    assert "MLflow: 4 run(s) logged, 0 already there" in capsys.readouterr().out
    parents, children = tracked(uri, "necks")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 4
    assert SWEEP_ARTIFACTS <= artifacts(uri, parents[0].info.run_id)
    by_status = {c.data.tags["arm"]: c.info.status for c in children}
    assert by_status == {"sppf": "FINISHED", "spp": "FAILED"}
    assert cli_main(["report", str(sweep), "--mlflow", uri, "--mlflow-experiment", "necks"]) == 0
    assert "MLflow: 0 run(s) logged, 4 already there" in capsys.readouterr().out
    assert len(tracked(uri, "necks")[1]) == 4

    # the same sweep resumed with tracking on: the same parent (found by its tag), only the new seed's runs added
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        runner.run_sweep(path, seeds=[0, 1, 2], mlflow=uri, mlflow_experiment="necks")
    parents2, children2 = tracked(uri, "necks")
    assert [p.info.run_id for p in parents2] == [parents[0].info.run_id] and len(children2) == 6
    assert parents2[0].data.tags["spec_changed"] == "seeds"  # params keep the first spec; the change is named
    assert_one_child_per_row(uri, sweep, parents[0].info.run_id, experiment="necks")


@pytest.mark.parametrize("problem", ["unreachable", "not installed"])
def test_mlflow_unusable_is_one_warning_line_and_the_sweep_runs(spec_file, here, monkeypatch, logged, problem):
    if problem == "not installed":
        monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    uri = "http://127.0.0.1:9" if problem == "unreachable" else "sqlite:///mlflow.db"  # port 9: nothing listens
    path = spec_file(seeds=[0, 1], mlflow=uri)
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        df = runner.run_sweep(path)
    assert list(df["status"]) == ["ok"] * 4 and len(fake.calls) == 4
    lines = [line for line in logged if "MLflow" in line]
    assert len(lines) == 1 and "\n" not in lines[0] and "runs without MLflow tracking" in lines[0]
    assert ("not reachable" if problem == "unreachable" else "pip install 'yolo-necks[mlflow]'") in lines[0]
    assert not (here / "mlflow.db").exists()
    sweep = Path(path).parent / "runs" / "tiny"
    assert cli_main(["report", str(sweep), "--mlflow", uri]) == 2  # asked for explicitly: an error, one line


# ------------------------------------------------------------------------------- a real sweep, ultralytics' callback
@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory, rect_data) -> tuple[str, Path]:
    """2 arms x 2 seeds x 2 epochs, validated every epoch, in 2 worker processes, tracked in MLflow with
    ultralytics' MLflow setting on. In a separate process (real training changes process-wide torch settings),
    which is no pytest process: ultralytics' callback stays silent under pytest. Its settings live in a folder of
    the test (YOLO_CONFIG_DIR), so the user's settings file is never touched."""
    root = tmp_path_factory.mktemp("real")
    arms = [{"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
            {"name": "spp", "block": "SPP", "args": [[1, 3]]}]  # (wider pools equal SPPF on 2x2 P5 maps)
    spec = write_spec(root / "spec.yaml", tiny_spec(rect_data, root / "runs", arms=arms, seeds=[0, 1], epochs=2,
                                                    parallel=2, threads_per_run=1, mlflow="sqlite:///mlflow.db"))
    code = textwrap.dedent(f"""
        from ultralytics.utils import SETTINGS
        SETTINGS.update(mlflow=True)  # in YOLO_CONFIG_DIR: the worker processes read it too
        from yolo_necks.ablation import runner
        runner.run_sweep({spec!r})
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(YOLO_CONFIG_DIR=str(root / "config"), YOLO_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return f"sqlite:///{root / 'mlflow.db'}", root / "runs" / "tiny"


@pytest.mark.slow
def test_mlflow_callback_logs_every_epoch_into_the_child_run_and_opens_none(real_sweep):
    uri, sweep = real_sweep
    c = client(uri)
    assert {e.name for e in c.search_experiments()} <= {"tiny", "Default"}  # no experiment named by the project
    default = c.get_experiment_by_name("Default")
    assert default is None or not c.search_runs([default.experiment_id])
    parents, _ = tracked(uri)  # only the parent and one child per row: no stray run
    by_row = assert_one_child_per_row(uri, sweep, parents[0].info.run_id, exact_metrics=False)
    for row in read_rows(sweep / "results.csv"):
        run = by_row[(row["config_hash"], row["finished_at"])]
        per_epoch = pd.read_csv(Path(row["run_dir"]) / "results.csv")
        for metric, column, steps in (("train/box_loss", "train/box_loss", [0, 1]),
                                      ("metrics/mAP50-95B", MAP_CURVE, [0, 1, 2])):  # + the final check of best.pt
            history = sorted(c.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
            assert [m.step for m in history] == steps  # every epoch, from ultralytics' callback
            assert [m.value for m in history[:2]] == pytest.approx(list(per_epoch[column]), rel=1e-5)
        assert run.data.params["epochs"] == "2" and run.data.params["val"] == "True"  # the trainer's arguments
        assert "weights/best.pt" in artifacts(uri, run.info.run_id)  # the callback's artifacts, same run


# ----------------------------------------------------------------------------------------------- training curves
@pytest.mark.slow
def test_curves_of_a_real_sweep(real_sweep, tmp_path):
    _, sweep = real_sweep
    assert (sweep / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Training curves: [curves.png](curves.png)" in (sweep / "summary.md").read_text()
    drawn = plot_curves(load_results(sweep), tmp_path / "again.png", "tiny")
    assert drawn["panels"] == {k: ["sppf", "spp"] for k in ("train/box_loss", "train/cls_loss", "train/dfl_loss",
                                                             MAP_CURVE)}  # baseline first, mAP: validated each epoch
    assert drawn["left_out"] == [] and drawn["notes"] == []


@pytest.mark.slow
def test_curves_leave_out_failed_and_missing_runs_and_draw_no_map_from_a_final_validation(real_sweep, tmp_path):
    _, original = real_sweep
    sweep = tmp_path / "moved"  # a copied sweep folder: run folders are found under its runs/
    shutil.copytree(original, sweep)
    results = load_results(sweep)
    results["run_dir"] = [f"/moved-away/{Path(d).name}" for d in results["run_dir"]]
    run_dirs = {(r["arm"], r["seed"]): sweep / "runs" / Path(r["run_dir"]).name for _, r in results.iterrows()}
    (run_dirs[("spp", 1)] / "results.csv").unlink()
    results.loc[(results["arm"] == "sppf") & (results["seed"] == 1), "status"] = "failed"
    drawn = plot_curves(results, tmp_path / "c.png", "edge", sweep)
    assert sorted(drawn["left_out"]) == ["spp seed 1 (no results.csv)", "sppf seed 1 (failed)"]  # rows: as finished
    assert all(v == ["sppf", "spp"] for v in drawn["panels"].values())  # one seed each: a line without a band

    spp_first = results[results["seed"] == 0].sort_values("arm")  # spp's row before the baseline's
    one_seed = plot_curves(spp_first, tmp_path / "one.png", "one seed", sweep)
    assert one_seed["left_out"] == [] and one_seed["panels"][MAP_CURVE] == ["sppf", "spp"]  # the baseline first

    for run_dir in run_dirs.values():  # as if trained with val=False: validated only at the final epoch
        args = yaml.safe_load((run_dir / "args.yaml").read_text())
        (run_dir / "args.yaml").write_text(yaml.safe_dump({**args, "val": False}))
    no_val = plot_curves(results, tmp_path / "noval.png", "val=False", sweep)
    assert no_val["panels"][MAP_CURVE] == [] and no_val["panels"]["train/box_loss"] == ["sppf", "spp"]

    for name in ("curves.png", "summary.md"):
        (sweep / name).unlink()
    write_report(sweep)  # yolo-necks report draws them too
    assert (sweep / "curves.png").stat().st_size > 0 and "curves.png" in (sweep / "summary.md").read_text()


def test_a_sweep_without_mlflow_keeps_ultralytics_own_mlflow_callback_out_of_its_runs():
    """ultralytics switches its MLflow callback on by default once mlflow is installed; a sweep whose spec does not
    ask for tracking must not open runs in a store next to the working directory."""
    from types import SimpleNamespace

    from ultralytics.utils.callbacks import base
    from ultralytics.utils.callbacks import mlflow as ultralytics_mlflow

    from yolo_necks.ablation.execute.run import without_mlflow

    callbacks = base.get_default_callbacks()
    for event, fn in ultralytics_mlflow.callbacks.items():
        callbacks[event].append(fn)
    kept = {event: [f for f in fns if f.__module__ != ultralytics_mlflow.__name__] for event, fns in callbacks.items()}
    assert any(len(kept[e]) < len(callbacks[e]) for e in callbacks)  # the callback was there
    trainer = SimpleNamespace(callbacks=callbacks)
    without_mlflow(trainer)
    assert trainer.callbacks == kept
