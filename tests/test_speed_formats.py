"""``speed.formats``: after training, every arm exported (ultralytics' exporter) from its trained weights, checked
against PyTorch and timed in ONNX Runtime and OpenVINO in the same session and rounds as torch; one speed.csv row per
arm and format; a block that cannot export loses its cells only; Δ latency per format with torch's statistics.

One tiny sweep per module (3 arms x 1 seed at 64 px, training replaced by saving each arm's untrained YOLO checkpoint
as its weights): SPPF (baseline) and DyCAConv export everywhere, a test-registered block with ``torch.cummax`` (no
ONNX symbolic, no OpenVINO conversion rule) exports nowhere.
"""

from __future__ import annotations

import csv
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import fake_metrics, tiny_spec, write_spec  # noqa: E402
from export_helpers import CumMaxNeck  # noqa: E402  (a block that cannot export)
from test_stats import CPU_SWEEP  # noqa: E402

import yolo_necks  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.analyse.report import write_report  # noqa: E402
from yolo_necks.ablation.analyse.stats import latency_deltas  # noqa: E402
from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation.records import timings  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("onnxslim")

ARMS = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "dyca", "block": "DyCAConv", "args": [3, 1, 32, "avg"]},
    {"name": "cummax", "block": "CumMaxNeck", "args": []},
]
FORMATS = ["torch", "onnx", "openvino"]


def save_untrained(plan, spec, data) -> dict:
    """Stands in for training: the arm's YOLO built from its YAML (seeded), saved as ultralytics saves a checkpoint
    (fp16), reported as the run's weights."""
    from ultralytics import YOLO

    torch.manual_seed(plan.seed)
    weights = plan.run_dir / "weights" / "best.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    YOLO(str(plan.yaml_path), task="detect").save(str(weights))
    return {**fake_metrics(plan, spec), "weights": str(weights)}


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def registered():
    yolo_necks.register_block(CumMaxNeck)
    yield
    yolo_necks.unregister_block("CumMaxNeck")


@pytest.fixture(scope="module")
def sweep(rect_data, registered, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    spec = tiny_spec(rect_data, root / "runs", arms=ARMS, threads_per_run=1)
    spec["speed"]["formats"] = FORMATS
    path = write_spec(root / "spec.yaml", spec)
    with mock.patch.object(run_module, "execute_run", save_untrained):
        df = runner.run_sweep(path)
        folder = Path(df.attrs["sweep_dir"])
        before = (folder / timings.SPEED_CSV).read_text()
        runner.run_sweep(path)  # resumed, nothing changed: trained and timed already
        assert (folder / timings.SPEED_CSV).read_text() == before
    return folder


# --------------------------------------------------------------------------------------------- speed.csv rows
def test_one_row_per_arm_and_format_with_parity_latency_and_runtime(sweep):
    rows = read_csv(sweep / "speed.csv")
    assert [(r["arm"], r["format"]) for r in rows] == [(a["name"], f) for a in ARMS for f in FORMATS]
    assert len({r["session"] for r in rows}) == 1 and len({r["order_seed"] for r in rows}) == 1
    results = {r["arm"]: r for r in read_csv(sweep / "results.csv")}
    for r in rows:
        fmt, arm = r["format"], r["arm"]
        if fmt == "torch":  # as before: built from the YAML, nothing exported
            assert r["runtime"] == f"torch {torch.__version__}" and r["export_s"] == r["error"] == ""
            assert float(r["latency_ms"]) > 0 and float(r["throughput_ips"]) > 0
            continue
        assert r["weights"] == results[arm]["weights"] and Path(r["weights"]).is_file()  # exported from them
        assert float(r["export_s"]) > 0 and r["device"] == "cpu" and r["threads"] == "1"
        if arm == "cummax":  # its cells only: one line naming the format, block, layer and operator
            assert r["latency_ms"] == "" and r["runtime"] == "" and r["parity_ok"] == "" and r["rounds"] == "0"
            assert r["error"].startswith(f"{fmt}: CumMaxNeck (model.9): aten::cummax: ") and "\n" not in r["error"]
            continue
        assert r["error"] == "" and r["runtime"].startswith("onnxruntime " if fmt == "onnx" else "openvino ")
        assert r["parity_ok"] == "True" and 0 <= float(r["parity_max_rel"]) <= 1e-3
        assert math.isfinite(float(r["parity_max_abs"]))
        assert float(r["latency_ms"]) > 0 and r["rounds"] == "100" and r["throughput_ips"] == ""
        assert r["dynamic_ok"] == ("True" if fmt == "onnx" else "") and r["dynamic_error"] == ""
    exports = sweep / "exports"
    assert (exports / "dyca" / "best.onnx").is_file() and (exports / "dyca" / "best-dynamic.onnx").is_file()
    assert (exports / "sppf" / "best_openvino_model").is_dir()


def test_every_arm_and_runtime_ran_in_the_same_shuffled_rounds(sweep):
    per_round = read_csv(sweep / "speed_rounds.csv")
    timed = [("sppf", "torch"), ("sppf", "onnx"), ("sppf", "openvino"), ("dyca", "torch"), ("dyca", "onnx"),
             ("dyca", "openvino"), ("cummax", "torch")]  # cummax's failed cells are not timed
    assert list(per_round[0]) == timings.ROUND_FIELDS and len(per_round) == 100 * len(timed)
    assert {(r["arm"], r["format"]) for r in per_round} == set(timed)
    for i in range(0, len(per_round), len(timed)):
        block = per_round[i:i + len(timed)]
        assert len({r["round"] for r in block}) == 1
        assert [r["position"] for r in block] == [str(k) for k in range(1, len(timed) + 1)]
    first = {r["arm"] + "|" + r["format"] for r in per_round if r["position"] == "1"}
    assert len(first) > 2  # the order is shuffled over runtimes and torch alike
    speed = {(r["arm"], r["format"]): r for r in read_csv(sweep / "speed.csv")}
    for arm, fmt in timed:
        ms = [float(r["ms"]) for r in per_round if (r["arm"], r["format"]) == (arm, fmt)]
        assert float(speed[(arm, fmt)]["latency_ms"]) == pytest.approx(float(np.median(ms)))


def test_delta_per_format_matches_a_hand_computation_from_the_rounds(sweep):
    stats = pytest.importorskip("scipy.stats")
    per_round = pd.read_csv(sweep / "speed_rounds.csv")
    summary = pd.read_csv(sweep / "summary.csv").set_index("arm")
    speed = pd.read_csv(sweep / "speed.csv", keep_default_na=False, na_values=[""]).set_index(["arm", "format"])
    for fmt in ("onnx", "openvino"):
        ms = {a: per_round[(per_round["arm"] == a) & (per_round["format"] == fmt)]["ms"].to_numpy()
              for a in ("sppf", "dyca")}
        d = ms["dyca"] - ms["sppf"]  # paired by round
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        p = stats.ttest_rel(ms["dyca"], ms["sppf"]).pvalue
        row = speed.loc[("dyca", fmt)]
        assert row["delta_ms"] == pytest.approx(d.mean()) and row["delta_n"] == len(d)
        assert row["delta_lo_ms"] == pytest.approx(d.mean() - half)
        assert row["delta_hi_ms"] == pytest.approx(d.mean() + half)
        s = summary.loc["dyca"]
        assert s[f"latency_{fmt}_ms_mean"] == pytest.approx(np.median(ms["dyca"]))
        assert s[f"latency_{fmt}_ms_delta"] == pytest.approx(d.mean())
        assert s[f"latency_{fmt}_ms_delta_p"] == pytest.approx(p, rel=1e-6)
        assert s[f"latency_{fmt}_ms_delta_pct"] == pytest.approx(100 * d.mean() / np.median(ms["sppf"]))
        # one arm with a Δ in this format: Holm leaves p and the 95% level as they are
        assert s[f"latency_{fmt}_ms_delta_p_holm"] == pytest.approx(p, rel=1e-6)
        assert s[f"latency_{fmt}_ms_delta_adj_lo"] == pytest.approx(d.mean() - half)
        assert s[f"{fmt}_parity_ok"] and not isinstance(s[f"{fmt}_error"], str)
        assert math.isnan(summary.loc["cummax", f"latency_{fmt}_ms_mean"])
        assert summary.loc["cummax", f"{fmt}_error"].startswith(f"{fmt}: CumMaxNeck (model.9): aten::cummax")
    torch_rounds = {a: per_round[(per_round["arm"] == a) & (per_round["format"] == "torch")]["ms"].to_numpy()
                    for a in ("sppf", "dyca")}
    torch_delta = (torch_rounds["dyca"] - torch_rounds["sppf"]).mean()
    assert summary.loc["dyca", "latency_ms_delta"] == pytest.approx(torch_delta)  # torch's columns: torch rows only


def test_summary_shows_a_latency_column_per_format_and_the_deployment_section(sweep):
    md = (sweep / "summary.md").read_text()
    assert "| Latency, median (ms) | Δ Latency (ms) [adj. CI] p (Holm) |" in md  # torch's, as before
    assert "| ONNX Runtime, median (ms) | OpenVINO, median (ms) | Pareto |" in md
    cummax = next(line for line in md.splitlines() if line.startswith("| cummax |"))
    assert cummax.split(" | ")[-3:-1] == ["not exported", "not exported"]  # its torch latency stands
    section = md.split("## Deployment", 1)[1]
    assert "timing noise of one session only" in section and "Holm-adjusted over the arms of that format" in section
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Arm | Block | Format | Runtime | Export (s) | Parity max abs | Parity max rel |")
    assert [line.split(" | ")[:3] for line in table[1:]] == [
        ["| sppf (baseline)", "SPPF", "onnx"], ["| dyca", "DyCAConv", "onnx"],
        ["| sppf (baseline)", "SPPF", "openvino"], ["| dyca", "DyCAConv", "openvino"]]
    assert all(" | ok | " in line for line in table[1:]) and "| onnxruntime " in table[1]
    failures = [line for line in section.splitlines() if line.startswith("- **cummax**")]
    assert failures == [f"- **cummax** (CumMaxNeck), {f}: CumMaxNeck (model.9): aten::cummax: " + line.split(
        "aten::cummax: ", 1)[1] for f, line in zip(("onnx", "openvino"), failures)]
    assert "UnsupportedOperatorError" in failures[0] and "aten::cummax" in failures[1]


# ------------------------------------------------------------------------------------------------ the spec key
def test_asking_for_a_missing_runtime_is_one_line_naming_the_extra_before_training(rect_data, tmp_path, monkeypatch,
                                                                                  capsys):
    import importlib.util

    from yolo_necks.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    path = write_spec(tmp_path / "spec.yaml", tiny_spec(rect_data, tmp_path / "runs"))
    trained = []
    with mock.patch.object(run_module, "execute_run", lambda *a: trained.append(a)):
        with pytest.raises(NeckConfigError) as info:
            runner.run_sweep(path, **{"speed.formats": ["torch", "openvino"]})
        assert main(["ablate", path, "speed.formats=[torch,onnx,openvino]"]) == 2
    msg = str(info.value)
    assert "\n" not in msg and "key 'speed.formats'" in msg and 'pip install "yolo-necks[deploy]"' in msg
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'openvino'" in err[0] and "yolo-necks[deploy]" in err[0]
    assert not trained and not (tmp_path / "runs").exists()


def test_formats_from_the_command_line_and_the_timing_key_of_torch_alone(rect_data, tmp_path):
    from yolo_necks.ablation.spec.load import load_spec
    from yolo_necks.ablation.spec.overrides import parse_overrides

    path = write_spec(tmp_path / "spec.yaml", tiny_spec(rect_data, tmp_path / "runs"))
    for text, want in (("[torch,onnx,openvino]", ("torch", "onnx", "openvino")), ("onnx", ("torch", "onnx")),
                       ("['OV', 'torch']", ("torch", "openvino"))):
        assert load_spec(path, parse_overrides([f"speed.formats={text}"])).speed.formats == want
    with pytest.raises(NeckConfigError, match=r"key 'speed.formats': unknown deployment format 'tflite'"):
        load_spec(path, parse_overrides(["speed.formats=[torch,tflite]"]))
    spec = load_spec(path)
    assert spec.speed.formats == ("torch",)
    model = SimpleNamespace(model_dict={"nc": 2})
    # torch alone: the key sessions timed before formats existed (their arms are not timed again)
    import hashlib
    import json

    old = {k: v for k, v in vars(spec.speed).items() if k not in ("device", "formats")}
    text = json.dumps([model.model_dict, spec.imgsz, old, spec.speed.device or spec.device], sort_keys=True,
                      default=str)
    assert timings.timing_key(model, spec, "w.pt") == hashlib.sha256(text.encode()).hexdigest()[:16]
    more = load_spec(path, {"speed.formats": ["torch", "onnx"]})
    from yolo_necks.ablation.prepare.plan import common_config

    assert common_config(more, more.data) == common_config(spec, spec.data)  # no run is trained again for formats
    assert "formats" not in common_config(spec, spec.data)["speed"]  # the hashes of runs from before the key
    assert timings.timing_key(model, more, "a.pt") not in (timings.timing_key(model, more, "b.pt"),
                                                         timings.timing_key(model, spec))


# ------------------------------------------------------------------------------ statistics, Holm, older files
def test_per_format_holm_over_arms_and_older_files_read_as_torch(tmp_path):
    """Four arms against the baseline in two formats: Δ, p, Holm and the adjusted intervals of each format's family
    equal a hand computation from the rounds; a speed.csv / speed_rounds.csv written before formats is read as torch
    rows and extended."""
    stats = pytest.importorskip("scipy.stats")
    sweep = tmp_path / "sweep"
    shutil.copytree(CPU_SWEEP, sweep)
    arms = ["sppf", "spp", "focal", "dyca", "sk"]
    old = ["session", "arm", "latency_ms", "latency_std_ms", "rounds", "baseline", "dtype", "device", "device_name"]
    with open(sweep / "speed.csv", "w", newline="") as f:  # as sessions before formats wrote it
        writer = csv.DictWriter(f, old, lineterminator="\n")
        writer.writeheader()
        writer.writerows({"session": "s0", "arm": a, "latency_ms": 5.0, "latency_std_ms": 0.1, "rounds": 100,
                          "baseline": a == "sppf", "dtype": "fp32", "device": "cpu", "device_name": "x"}
                         for a in arms)
    (sweep / "speed_rounds.csv").write_text("session,round,position,arm,ms\ns0,1,1,sppf,5.0\n")
    assert set(timings.latest_timings(sweep)["format"]) == {"torch"}
    rng = np.random.default_rng(3)
    n = 100
    base = {"torch": 10 + rng.normal(0, 1, n), "onnx": 8 + rng.normal(0, 1, n)}
    shift = {"spp": 0.0, "focal": 0.4, "dyca": 0.25, "sk": 1.0}
    rounds, rows = {}, []
    for k, a in enumerate(arms):
        for fmt in ("torch", "onnx"):
            ms = base[fmt] + (0.0 if a == "sppf" else shift[a] * (1 if fmt == "torch" else 2)) + rng.normal(0, 0.3, n)
            rounds[timings.round_key(a, fmt)] = list(ms)
            rows.append({"session": "s1", "arm": a, "format": fmt, "latency_ms": float(np.median(ms)),
                         "latency_std_ms": float(ms.std()), "rounds": n, "baseline": a == "sppf", "dtype": "fp32",
                         "device": "cpu", "device_name": "x", "threads": 1, "cpu_share": 0.99, "starved": False,
                         "runtime": "onnxruntime 1.0" if fmt == "onnx" else "torch", "parity_ok": True,
                         "parity_max_abs": 1e-5, "parity_max_rel": 1e-7, "export_s": 1.0,
                         "round_positions": [1 + (k * 2 + (fmt == "onnx") + i) % 10 for i in range(n)]})
    timings.record_timings(sweep, latency_deltas(rows, rounds), rounds)
    per_round = read_csv(sweep / "speed_rounds.csv")
    assert list(per_round[0]) == timings.ROUND_FIELDS and per_round[0]["format"] == ""  # the older round, kept
    assert len(per_round) == 1 + 2 * len(arms) * n
    summary = write_report(sweep)["summary"].set_index("arm")
    for fmt, col in (("torch", "latency_ms"), ("onnx", "latency_onnx_ms")):
        others = arms[1:]
        diffs = {a: np.array(rounds[timings.round_key(a, fmt)]) - np.array(rounds[timings.round_key("sppf", fmt)])
                 for a in others}
        p = {a: stats.ttest_rel(rounds[timings.round_key(a, fmt)], rounds[timings.round_key("sppf", fmt)]).pvalue
             for a in others}
        order = sorted(others, key=lambda a: p[a])
        holm, running, rejected = {}, 0.0, True
        for j, a in enumerate(order):  # Holm's step-down by hand, and the level of each adjusted interval
            running = max(running, min(1.0, (len(order) - j) * p[a]))
            holm[a] = running
        for j, a in enumerate(order):
            rejected = rejected and holm[a] <= 0.05
            level = 1 - 0.05 / (len(order) - j) if rejected else 1 - 0.05 / len(order)
            half = stats.t.ppf(0.5 + level / 2, n - 1) * diffs[a].std(ddof=1) / math.sqrt(n)
            s = summary.loc[a]
            assert s[f"{col}_delta"] == pytest.approx(diffs[a].mean())
            assert s[f"{col}_delta_p"] == pytest.approx(p[a], rel=1e-6, abs=1e-300)
            assert s[f"{col}_delta_p_holm"] == pytest.approx(holm[a], rel=1e-6, abs=1e-300)
            assert s[f"{col}_delta_adj_level"] == pytest.approx(level)
            assert s[f"{col}_delta_adj_lo"] == pytest.approx(diffs[a].mean() - half)
            assert s[f"{col}_delta_adj_hi"] == pytest.approx(diffs[a].mean() + half)
            assert bool(s[f"{col}_delta_sig"]) == (holm[a] <= 0.05)
    assert 0 < sum(bool(summary.loc[a, "latency_onnx_ms_delta_sig"]) for a in arms[1:]) < 4  # both kinds occur
    md = (sweep / "summary.md").read_text()
    assert "| ONNX Runtime, median (ms) |" in md and "## Deployment" in md and "Did not export or run" not in md


def test_the_ray_timing_node_gets_the_weights(monkeypatch):
    """``time_on_node`` hands the arms' weights to the Ray task that times them on the node."""
    pytest.importorskip("ray")
    from yolo_necks.ablation.execute import arm_speed, ray_cluster

    calls = []
    monkeypatch.setattr(arm_speed, "time_arms", lambda models, spec, threads, weights=None: (
        calls.append(weights) or ([{"arm": "a"}], {})))

    class FakeRay:
        def nodes(self):
            return [{"Alive": True, "NodeManagerHostname": "h1", "NodeManagerAddress": "10.0.0.1",
                     "NodeID": "abcdef0123" * 5 + "abcdef", "Resources": {"CPU": 4}}]

        def remote(self, **kwargs):
            def wrap(fn):
                task = SimpleNamespace(remote=lambda *a, **k: fn(*a, **k))
                return SimpleNamespace(options=lambda **o: task)
            return wrap

        def get(self, value):
            return value

    rows, _ = ray_cluster.time_on_node(FakeRay(), "h1", [], None, 2, {"a": "/w/a.pt"})
    assert calls == [{"a": "/w/a.pt"}] and rows == [{"arm": "a", "node": "abcdef0123ab"}]
