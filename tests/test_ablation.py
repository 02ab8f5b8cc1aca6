"""Tests of the ablation harness (yolo_necks.ablation): specs, arms, bookkeeping, faults, statistics, reports.

All offline on the CPU. One test trains for real (2 arms, 1 seed, 1 epoch, 64-px images); the bookkeeping tests
replace ``run.execute_run`` (train + validate + time) with a deterministic stand-in.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import FakeTraining, tiny_spec, write_spec  # noqa: E402

from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.records import replicates  # noqa: E402
from yolo_necks.ablation.records.store import ResultsStore, sweep_lock  # noqa: E402
from yolo_necks.ablation.cli import ablate_help  # noqa: E402
from yolo_necks.ablation.analyse.compare import compare  # noqa: E402
from yolo_necks.ablation.spec.keys import DEFAULT_SPEC, KEYS  # noqa: E402
from yolo_necks.ablation.spec.overrides import parse_overrides  # noqa: E402
from yolo_necks.ablation.spec.load import load_spec  # noqa: E402
from yolo_necks.ablation.analyse.stats import paired_delta, summarize  # noqa: E402
from yolo_necks.ablation.analyse.tdist import t_ppf  # noqa: E402
from yolo_necks.cli import main as cli_main  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REQUIRED_COLUMNS = (
    "sweep arm block seed status error params gflops map50 map50_95 precision recall epochs train_s imgsz batch "
    "device torch ultralytics yolo_necks git_commit config_hash run_dir reduced"
).split()
# timed once per arm into speed.csv: results.csv has no per-run speed column (older files keep theirs)
SPEED_COLUMNS = ("latency_ms latency_p90_ms latency_std_ms throughput_ips speed_device speed_device_name speed_dtype "
                 "speed_repeats speed_warmup throughput_batch throughput_repeats speed_threads speed_concurrent").split()


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------------ stats
def test_t_quantiles_match_the_table():
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042, 10**6: 1.960}
    for df, expected in table.items():
        assert t_ppf(0.975, df) == pytest.approx(expected, abs=1e-3)
    assert t_ppf(0.025, 4) == pytest.approx(-2.776, abs=1e-3)


def test_paired_ci_against_a_hand_computed_example():
    arm = {0: 0.50, 1: 0.55, 2: 0.53}
    base = {0: 0.48, 1: 0.50, 2: 0.52}
    # d = [0.02, 0.05, 0.01]: mean 0.0266667, sd 0.0208167, se 0.0120185, t(0.975, 2) = 4.302653
    d = paired_delta(arm, base)
    assert d.n == 3
    assert d.mean == pytest.approx(0.0266667, abs=1e-6)
    assert d.sd == pytest.approx(0.0208167, abs=1e-6)
    assert d.lo == pytest.approx(0.0266667 - 0.0517114, abs=1e-6)
    assert d.hi == pytest.approx(0.0266667 + 0.0517114, abs=1e-6)
    assert d.p == pytest.approx(0.15673, abs=1e-4)  # paired t-test, t = 2.2188 on 2 df
    # pairing is by seed: only seeds present (and finite) in both count
    d2 = paired_delta({0: 0.5, 1: 0.6, 2: float("nan")}, {1: 0.5, 2: 0.4, 3: 0.1})
    assert (d2.n, d2.mean) == (1, pytest.approx(0.1))
    assert math.isnan(d2.lo) and math.isnan(d2.hi) and not d2.has_ci


def test_summary_pairs_by_seed_and_excludes_failed_runs():
    rows = []
    for seed, (b, a) in enumerate([(0.40, 0.43), (0.50, 0.52), (0.45, 0.49)]):
        rows.append({"sweep": "s", "arm": "base", "block": "SPPF", "baseline": True, "seed": seed, "status": "ok",
                     "map50_95": b})
        rows.append({"sweep": "s", "arm": "new", "block": "X", "baseline": False, "seed": seed, "status": "ok",
                     "map50_95": a})
    rows.append({"sweep": "s", "arm": "bad", "block": "Y", "baseline": False, "seed": 0, "status": "failed",
                 "map50_95": 0.99})
    s = summarize(pd.DataFrame(rows)).set_index("arm")
    assert s.loc["new", "map50_95_delta"] == pytest.approx(0.03)  # mean of 0.03, 0.02, 0.04
    half = t_ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert s.loc["new", "map50_95_delta_lo"] == pytest.approx(0.03 - half)
    assert s.loc["new", "map50_95_std"] == pytest.approx(pd.Series([0.43, 0.52, 0.49]).std())
    assert s.loc["bad", "n_ok"] == 0 and s.loc["bad", "n_failed"] == 1
    assert math.isnan(s.loc["bad", "map50_95_mean"])  # a failed run is never averaged


# ------------------------------------------------------------------------------------------------------- specs
def test_default_yaml_is_the_builtin_default_and_cpu_reduces_it():
    assert yaml.safe_load((REPO / "ablations" / "default.yaml").read_text()) == DEFAULT_SPEC
    cpu = load_spec(None, {"device": "cpu"})
    gpu = load_spec(None, {"device": "0"})
    assert cpu.reduced == "cpu" and gpu.reduced is None
    assert [a.block for a in gpu.arms] == ["SPPF", "SPP", "FocalModulation", "DyCAConv", "SKConv", "PyramidPool"]
    assert [a.name for a in gpu.arms if a.baseline] == ["sppf"]
    assert cpu.seeds == gpu.seeds == [0, 1, 2]
    assert cpu.epochs < gpu.epochs and cpu.imgsz < gpu.imgsz and cpu.name != gpu.name
    assert gpu.speed.repeats >= 100 and cpu.speed.repeats >= 100
    full_on_cpu = load_spec(None, {"device": "cpu", "cpu": None})
    assert full_on_cpu.reduced is None and full_on_cpu.epochs == gpu.epochs
    # command-line values beat the cpu section
    assert load_spec(None, {"device": "cpu", "epochs": 2}).epochs == 2


def test_overrides_are_literals_or_strings_never_code(spec_file):
    o = parse_overrides(["epochs=3", "seeds=[0, 1]", "device=cpu", "lr0=0.005", "speed.repeats=150",
                         "data_params.n_train=50", "name=__import__('os').getcwd()", "arms=sppf", "cpu=None"])
    assert o["epochs"] == 3 and o["seeds"] == [0, 1] and o["device"] == "cpu" and o["cpu"] is None
    assert o["name"] == "__import__('os').getcwd()"  # not evaluated
    spec = load_spec(spec_file(), {k: v for k, v in o.items() if k not in ("name", "data_params.n_train")})
    assert spec.train_args == {"lr0": 0.005}  # ultralytics keys go to train_args
    assert spec.speed.repeats == 150 and spec.seeds == [0, 1] and [a.name for a in spec.arms] == ["sppf"]
    assert load_spec(spec_file(), {"seeds": 4}).seeds == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "changes, overrides, expected",
    [
        ({"epoch": 3}, {}, "unknown key 'epoch'; did you mean 'epochs'"),
        ({}, {"speed.repeats": 20}, "key 'speed.repeats': must be an integer >= 100"),
        ({"arms": [{"name": "a", "block": "SPPF", "baseline": True}, {"name": "b", "block": "FocalModulaton"}]}, {},
         "arm 'b': unknown block 'FocalModulaton'"),
        ({"arms": [{"name": "a", "block": "SPPF", "baseline": True}, {"name": "b", "block": "SPP", "args": ["x"]}]},
         {}, "arm 'b': model does not build"),
        ({"arms": [{"name": "a", "block": "SPPF", "baseline": True}, {"name": "b", "yaml": "missing.yaml"}]}, {},
         "arm 'b': model YAML 'missing.yaml' not found"),
        ({"arms": [{"name": "a", "block": "SPPF", "baseline": True}, {"name": "b", "block": "SPP", "baseline": True}]},
         {}, "exactly one arm needs 'baseline: true'"),
        ({"data": "/nonexistent/data.yaml"}, {}, "key 'data'"),
        ({"train_args": {"epochs": 3}}, {}, "key 'train_args.epochs': not allowed here"),
        ({"train_args": {"lr00": 0.1}}, {}, "key 'train_args.lr00': not an ultralytics training argument"),
        ({"model": "yolov8-cls.yaml"}, {}, "key 'model'"),
        ({"cpu": {"epoch": 1}}, {"device": "0"}, "key 'cpu.epoch'"),  # checked even where it does not apply
    ],
)
def test_bad_specs_fail_before_training(spec_file, capsys, changes, overrides, expected):
    path = spec_file(**changes)
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        with pytest.raises(NeckConfigError) as err:
            runner.run_sweep(path, **overrides)
        msg = str(err.value)
        assert expected in msg and path in msg and "\n" not in msg
        argv = ["ablate", path] + [f"{k}={v}" for k, v in overrides.items()]
        assert cli_main(argv) == 2
    assert expected in capsys.readouterr().err
    assert fake.calls == []
    assert not (Path(path).parent / "runs" / "tiny" / "results.csv").exists()


def test_help_explains_every_key(capsys):
    assert cli_main(["ablate", "--help"]) == 0
    out = capsys.readouterr().out
    assert out == ablate_help() + "\n"
    for key in KEYS:
        assert f"  {key} " in out
    for key in ("--retry-failed", "warmup", "repeats", "throughput_batch", "baseline", "yaml"):
        assert key in out


# ------------------------------------------------------------------------------------------------------- arms
def test_arm_yamls_keep_the_sppf_wiring_and_carry_the_scale(tmp_path, rect_data):
    from ultralytics.nn.tasks import DetectionModel, guess_model_scale, yaml_model_load

    from yolo_necks.ablation.prepare.variants import build_arms

    custom = tmp_path / "my-net.yaml"
    base = yaml_model_load("yolov8n.yaml")
    custom.write_text(yaml.safe_dump({k: v for k, v in base.items() if k not in ("yaml_file", "scale")}))
    spec = load_spec(tiny_spec(rect_data, tmp_path, model="yolo11.yaml", scale="s", arms=[
        {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
        {"name": "spp", "block": "SPP", "args": [[3, 5, 7]]},
        {"name": "mine", "yaml": str(custom), "scale": "n"},
    ]))
    models = {m.arm.name: m for m in build_arms(spec, nc=2)}
    assert models["spp"].file_name == "yolo11s-spp.yaml" and models["sppf"].file_name == "yolo11s-sppf.yaml"
    assert guess_model_scale(models["mine"].file_name) == "n"
    d = models["spp"].model_dict
    assert d["backbone"][9] == [-1, 1, "SPP", [1024, [3, 5, 7]]] and d["nc"] == 2 and d["scale"] == "s"
    assert d["backbone"][10][2] == "C2PSA"  # the rest of yolo11 is untouched
    ref = yaml_model_load("yolo11s.yaml")
    assert models["sppf"].model_dict["backbone"] == ref["backbone"] and models["sppf"].model_dict["head"] == ref["head"]
    path = tmp_path / models["spp"].file_name
    path.write_text(models["spp"].text)
    loaded = yaml_model_load(path)
    assert loaded["scale"] == "s" and loaded["backbone"] == d["backbone"]
    assert type(DetectionModel(str(path), nc=2, verbose=False).model[9]).__name__ == "SPP"


# -------------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_tiny_sweep_end_to_end_through_the_cli(spec_file):
    path = spec_file()
    # a separate process: real training changes process-wide torch settings (threads, deterministic algorithms)
    proc = subprocess.run([sys.executable, "-m", "yolo_necks.cli", "ablate", path], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    sweep = Path(path).parent / "runs" / "tiny"
    rows = read_rows(sweep / "results.csv")
    assert [(r["arm"], r["seed"], r["status"]) for r in rows] == [("sppf", "0", "ok"), ("spp", "0", "ok")]
    assert set(REQUIRED_COLUMNS) <= set(rows[0]) and not set(SPEED_COLUMNS) & set(rows[0])
    per_class = read_rows(sweep / "per_class.csv")
    data = yaml.safe_load(Path(path).read_text())["data"]
    boxes = [ln.split() for f in sorted((Path(data).parent / "labels" / "val").glob("*.txt"))
             for ln in f.read_text().splitlines() if ln.strip()]
    classes = [int(b[0]) for b in boxes]
    for r in rows:
        assert 0.0 <= float(r["map50_95"]) <= float(r["map50"]) <= 1.0
        assert int(r["params"]) > 1_000_000 and float(r["gflops"]) > 0
        assert float(r["map50_se"]) >= 0 and float(r["map50_95_se"]) >= 0 and float(r["train_ips"]) > 0
        assert (Path(r["run_dir"]) / "val_bootstrap.npz").is_file()
        assert r["imgsz"] == "64" and r["epochs"] == "1" and r["device"] == "cpu" and r["reduced"] == ""
        run_dir = Path(r["run_dir"])
        assert (run_dir / "weights" / "best.pt").is_file()
        assert (run_dir / f"yolov8n-{r['arm']}.yaml").is_file()
        args = yaml.safe_load((run_dir / "args.yaml").read_text())
        assert args["seed"] == 0 and args["deterministic"] is True and args["imgsz"] == 64
        # COCO's AP by size on the same predictions: every rectangle (12-32 px a side) is small with COCO's buckets
        assert 0.0 <= float(r["coco_map50_95"]) <= float(r["coco_map50"]) <= 1.0 and 0 <= float(r["ar100"]) <= 1
        assert (int(r["n_small"]), r["n_medium"], r["n_large"]) == (len(boxes), "0", "0")
        assert r["map_medium"] == r["map_large"] == "" and 0.0 <= float(r["map_small"]) <= 1.0
        assert json.loads(r["size_buckets"]) == [1024.0, 9216.0] and float(r["map_small_se"]) >= 0
        named, _ = replicates.load_metrics(run_dir)
        assert {"map50", "map50_95", "coco_map50_95", "map_small", "map_large"} <= set(named)
        assert np.isnan(named["map_large"]).all() and len(named["map_small"]) == len(named["map50"])
        assert not (run_dir / "val" / "predictions.json").exists()  # evaluated, then removed
        mine = [c for c in per_class if c["config_hash"] == r["config_hash"]]
        assert sorted(int(c["class"]) for c in mine) == sorted(set(classes))  # exactly the classes present
        assert [c["arm"] for c in mine] == [r["arm"]] * len(mine) and all(0 <= float(c["ap50_95"]) <= 1 for c in mine)
        assert sum(int(c["n_instances"]) for c in mine) == len(boxes)
    assert rows[0]["config_hash"] != rows[1]["config_hash"]
    assert len(per_class) == 2 * len(set(classes))
    md = (sweep / "summary.md").read_text()
    assert "## AP by object size" in md and "## AP per class" in md and "AP medium and AP large are n/a" in md
    timed = read_rows(sweep / "speed.csv")  # each arm timed once, after training
    assert [r["arm"] for r in timed] == ["sppf", "spp"]
    for r in timed:
        assert 0 < float(r["latency_ms"]) <= float(r["latency_p90_ms"]) and float(r["throughput_ips"]) > 0
        assert r["rounds"] == "100" and r["dtype"] == "fp32" and r["device"] == "cpu"
    assert "SPP, [1024, [5, 9, 13]]" in (sweep / "models" / "yolov8n-spp.yaml").read_text()
    for name in ("summary.csv", "summary.md", "pareto.png", "spec.yaml"):
        assert (sweep / name).stat().st_size > 0
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["arm"]) == ["sppf", "spp"] and list(summary["n_ok"]) == [1, 1]
    assert "| **sppf** (baseline) |" in out and "CI n/a, n=1" in out  # the summary table is printed

    # the same command again: everything is done, nothing trains
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        df = runner.run_sweep(path)
    assert fake.calls == [] and df.attrs["ran"] == 0 and len(read_rows(sweep / "results.csv")) == 2
    assert read_rows(sweep / "per_class.csv") == per_class  # a recorded run adds no per-class rows again
    assert list(df["map50_95"]) == [float(r["map50_95"]) for r in rows]


def test_default_sweep_on_a_cpu_is_reduced_and_labelled(tmp_path, monkeypatch, capsys):
    pytest.importorskip("yolo_necks.datasets")
    monkeypatch.setenv("YOLO_NECKS_DATA_DIR", str(tmp_path / "data"))
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        assert cli_main(["ablate", f"project={tmp_path / 'runs'}", "device=cpu", "parallel=1"]) == 0
    out = capsys.readouterr().out
    assert len(fake.calls) == 18 and {s for _, s in fake.calls} == {0, 1, 2}
    sweep = tmp_path / "runs" / "default-cpu"
    rows = read_rows(sweep / "results.csv")
    assert len(rows) == 18 and {r["reduced"] for r in rows} == {"cpu"} and {r["imgsz"] for r in rows} == {"128"}
    assert "# Neck ablation `default-cpu` (reduced: cpu)" in out and "**Reduced sweep (cpu)**" in out
    assert sorted(p.name for p in (sweep / "models").iterdir()) == sorted(
        f"yolov8n-{a}.yaml" for a in ("sppf", "spp", "focal", "dyca", "sk", "pyramid"))
    assert "FocalModulation, [1024, 3, 2, 2]" in (sweep / "models" / "yolov8n-focal.yaml").read_text()


# ------------------------------------------------------------------------------------------------- bookkeeping
def test_resume_skips_done_runs_and_a_changed_config_reruns(spec_file):
    path = spec_file(seeds=[0, 1])
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        df = runner.run_sweep(path)
        assert fake.calls == [("sppf", 0), ("spp", 0), ("sppf", 1), ("spp", 1)]  # seed-major
        assert list(df["status"]) == ["ok"] * 4 and df.attrs["ran"] == 4
        fake.calls.clear()
        df = runner.run_sweep(path)
        assert fake.calls == [] and df.attrs["ran"] == 0 and len(df) == 4
        runner.run_sweep(path, seeds=[0, 1, 2])  # a new seed: only its runs
        assert fake.calls == [("sppf", 2), ("spp", 2)]
        fake.calls.clear()
        saved = Path(path).parent / "runs" / "tiny" / "spec.yaml"  # the effective spec reproduces the sweep
        runner.run_sweep(saved)
        assert fake.calls == []
        runner.run_sweep(path, seeds=[0, 1, 2], epochs=2)  # another schedule is another configuration
        assert len(fake.calls) == 6
    rows = read_rows(Path(path).parent / "runs" / "tiny" / "results.csv")
    assert len(rows) == 12 and len({r["config_hash"] for r in rows}) == 12


def test_failing_arm_is_recorded_and_the_sweep_goes_on_then_retry_failed(spec_file, capsys):
    path = spec_file(seeds=[0, 1], arms=[
        {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
        {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]},
        {"name": "spp3", "block": "SPP", "args": [[3, 5, 7]]},
    ])
    sweep = Path(path).parent / "runs" / "tiny"
    failing = FakeTraining(fail_arms=("spp",))
    with mock.patch.object(run_module, "execute_run", failing):
        assert cli_main(["ablate", path]) == 0
    assert len(failing.calls) == 6  # went on after each failure
    rows = read_rows(sweep / "results.csv")
    status = {(r["arm"], r["seed"]): r["status"] for r in rows}
    assert status == {(a, s): ("failed" if a == "spp" else "ok") for a in ("sppf", "spp", "spp3") for s in "01"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert all("RuntimeError: CUDA out of memory (simulated)" in r["error"] for r in failed)
    md = (sweep / "summary.md").read_text()
    assert "## Failed runs" in md and "| spp | SPP | replace sppf | 0/2 (2 failed) | failed |" in md
    s = pd.read_csv(sweep / "summary.csv").set_index("arm")
    assert s.loc["spp", "n_ok"] == 0 and math.isnan(s.loc["spp", "map50_95_mean"])

    again = FakeTraining()
    with mock.patch.object(run_module, "execute_run", again):
        assert cli_main(["ablate", path]) == 0  # failed runs are skipped without --retry-failed
        assert again.calls == []
        assert cli_main(["ablate", path, "--retry-failed"]) == 0
    assert sorted(again.calls) == [("spp", 0), ("spp", 1)]
    rows = read_rows(sweep / "results.csv")
    assert len(rows) == 8  # append-only: the failed attempts stay in the file
    s = pd.read_csv(sweep / "summary.csv").set_index("arm")
    assert s.loc["spp", "n_ok"] == 2 and s.loc["spp", "n_failed"] == 0  # the retry supersedes the failure
    capsys.readouterr()


def test_ctrl_c_keeps_finished_runs_and_the_next_run_continues(spec_file, capsys):
    path = spec_file(seeds=[0, 1])
    sweep = Path(path).parent / "runs" / "tiny"
    starts = []

    def ctrl_c_at_third_run(plan):
        starts.append(plan.label)
        if len(starts) == 3:
            raise KeyboardInterrupt

    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        with pytest.raises(KeyboardInterrupt):
            runner.run_sweep(path, callbacks={"on_run_start": ctrl_c_at_third_run})
        assert [(r["arm"], r["seed"]) for r in read_rows(sweep / "results.csv")] == [("sppf", "0"), ("spp", "0")]
        fake.calls.clear()
        assert cli_main(["ablate", path]) == 0
    assert fake.calls == [("sppf", 1), ("spp", 1)]
    assert len(read_rows(sweep / "results.csv")) == 4
    capsys.readouterr()


def test_cli_reports_ctrl_c_with_exit_130(spec_file, capsys):
    path = spec_file()

    def interrupted(plan, spec, data):
        raise KeyboardInterrupt

    with mock.patch.object(run_module, "execute_run", interrupted):
        assert cli_main(["ablate", path]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (Path(path).parent / "runs" / "tiny" / "results.csv").exists()  # an unfinished run is not recorded


def test_sigkill_mid_sweep_loses_no_finished_run(spec_file):
    path = spec_file(seeds=[0, 1])
    sweep = Path(path).parent / "runs" / "tiny"
    helper = Path(__file__).resolve().parent / "ablation_helpers.py"
    proc = subprocess.run([sys.executable, str(helper), "kill-at-run", "3", path], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    rows = read_rows(sweep / "results.csv")
    assert [(r["arm"], r["seed"], r["status"]) for r in rows] == [("sppf", "0", "ok"), ("spp", "0", "ok")]
    assert not [p for p in os.listdir(sweep) if p.endswith(".tmp")]
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        df = runner.run_sweep(path)
    assert fake.calls == [("sppf", 1), ("spp", 1)]
    assert list(df["status"]) == ["ok"] * 4 and len(read_rows(sweep / "results.csv")) == 4


def test_a_second_process_on_the_same_sweep_is_refused(spec_file):
    from yolo_necks.errors import NeckError

    path = spec_file()
    sweep = Path(path).parent / "runs" / "tiny"
    sweep.mkdir(parents=True)
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake), sweep_lock(sweep):
        with pytest.raises(NeckError, match="another 'yolo-necks ablate' process is running this sweep"):
            runner.run_sweep(path)
    assert fake.calls == []
    with mock.patch.object(run_module, "execute_run", fake):  # released: runs normally
        runner.run_sweep(path)
    assert len(fake.calls) == 2


def test_results_store_appends_atomically_and_keeps_foreign_columns(tmp_path):
    store = ResultsStore(tmp_path / "results.csv")
    store.append({"arm": "a", "seed": 0, "status": "ok", "map50": 0.5})
    store.append({"arm": "b", "seed": 0, "status": "failed", "error": 'x, "quoted"\nsecond line'})
    rows = store.read()
    assert [r["arm"] for r in rows] == ["a", "b"] and rows[1]["error"] == 'x, "quoted"\nsecond line'
    # a file written with other columns (e.g. by another version): old rows and columns survive
    old = tmp_path / "old.csv"
    old.write_text("arm,seed,status,legacy\nz,3,ok,keep-me\n")
    store = ResultsStore(old)
    store.append({"arm": "c", "seed": 1, "status": "ok"})
    rows = store.read()
    assert rows[0]["legacy"] == "keep-me" and rows[1]["arm"] == "c" and "map50_95" in rows[1]
    assert sorted(os.listdir(tmp_path)) == ["old.csv", "results.csv"]  # no temporary or lock files left


# ------------------------------------------------------------------------------------------------------ reports
def test_report_regenerates_from_results_csv(spec_file, capsys):
    path = spec_file(seeds=[0, 1, 2])
    sweep = Path(path).parent / "runs" / "tiny"
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        runner.run_sweep(path)
    before = {n: (sweep / n).read_bytes() for n in ("summary.csv", "summary.md")}
    for n in ("summary.csv", "summary.md", "pareto.png"):
        (sweep / n).unlink()
    assert cli_main(["report", str(sweep)]) == 0
    assert {n: (sweep / n).read_bytes() for n in before} == before
    assert (sweep / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "# Neck ablation `tiny`" in out and "| **sppf** (baseline) |" in out
    # spp vs sppf: the stand-in's map50_95 differs by a constant over seeds -> zero-width CI
    s = pd.read_csv(sweep / "summary.csv").set_index("arm")
    d = s.loc["spp", "map50_95_delta"]
    assert s.loc["spp", "map50_95_delta_lo"] == pytest.approx(d) == s.loc["spp", "map50_95_delta_hi"]
    assert s.loc["spp", "map50_95_delta_n"] == 3
    assert cli_main(["report", str(sweep / "nope")]) == 2


def test_compare_puts_sweeps_side_by_side(tmp_path, rect_data, capsys):
    paths = []
    for name, offset in (("a", 0.0), ("b", 0.05)):
        spec = write_spec(tmp_path / f"{name}.yaml", tiny_spec(rect_data, tmp_path / "runs", name=name, seeds=[0, 1]))
        with mock.patch.object(run_module, "execute_run", FakeTraining(offset=offset)):
            runner.run_sweep(spec)
        paths.append(tmp_path / "runs" / name)
    out_file = tmp_path / "cmp" / "compare.md"
    argv = ["compare", str(paths[0] / "results.csv"), str(paths[1]), str(paths[1] / "summary.csv"), "--out",
            str(out_file)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    text = out_file.read_text()
    assert text in out
    assert "| Arm | Placement | a: mAP50-95 | a: Δ vs baseline |" in text and "b (2): mAP50-95" in text
    assert "mAP50-95: b − a" in text
    spp = next(line for line in text.splitlines() if line.startswith("| spp |"))
    assert "+0.050" in spp  # b is 0.05 better than a on every arm
    assert cli_main(["compare", str(tmp_path / "nothing")]) == 2
    assert compare([paths[0]], ["latency_ms"]).count("Latency (ms)") == 1


def test_a_builtin_dataset_hashes_alike_wherever_its_cache_lives(rect_data, tmp_path, monkeypatch):
    """Resume and comparisons by hash work across machines and cache folders: a built-in dataset enters a run's
    hash by its cache key (its parameters and sources), not by the path of its cache."""
    spec = tiny_spec(rect_data, tmp_path, data="digits", data_params={"n_train": 8, "n_val": 4, "imgsz": 64})
    hashes = []
    for root in ("a", "b"):
        monkeypatch.setenv("YOLO_NECKS_DATA_DIR", str(tmp_path / root))
        prep = prepare(spec)
        assert str(tmp_path / root) in prep.data  # built into this cache
        hashes.append([p.config_hash for p in prep.plans])
    assert hashes[0] == hashes[1]
    other = prepare({**spec, "data_params": {"n_train": 8, "n_val": 4, "imgsz": 64, "seed": 1}})
    assert not set(p.config_hash for p in other.plans) & set(hashes[0])  # other content: other runs
