"""Speed measured where it can be compared (each arm timed once per sweep, interleaved, its CPU share checked) and the
val set's part of the noise (bootstrap over val images from the validator's own per-image statistics)."""

from __future__ import annotations

import csv
import math
import shutil
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import FakeTraining, make_tiny_dataset, tiny_spec, write_spec  # noqa: E402
from test_stats import CPU_SWEEP  # noqa: E402

from yolo_necks.ablation.records import timings  # noqa: E402
from yolo_necks.ablation.execute import valnoise  # noqa: E402
from yolo_necks.ablation.records import replicates  # noqa: E402
from yolo_necks.ablation.analyse import valshare  # noqa: E402
from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.analyse.compare import compare  # noqa: E402
from yolo_necks.ablation.analyse.report import write_report  # noqa: E402
from yolo_necks.ablation.analyse.stats import paired_delta, summarize  # noqa: E402
from yolo_necks.timing import time_interleaved  # noqa: E402

ARMS = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]},
]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------- timing
def test_interleaved_rounds_are_returned_and_summarised():
    calls = []
    fns = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    rounds: dict[str, list[float]] = {}
    out = time_interleaved(fns, torch.zeros(1), warmup=2, repeats=5, budget=0, rounds_out=rounds)
    assert calls[-10:] == ["a", "b"] * 5  # round-robin: a and b ran next to each other in every round
    assert {k: len(v) for k, v in rounds.items()} == {"a": 5, "b": 5}
    assert out["a"].median_ms == pytest.approx(float(np.median(rounds["a"])))
    assert out["b"].repeats == 5


def test_interleaved_rounds_can_run_in_an_order_shuffled_by_a_seed():
    def run(seed):
        calls, orders, rounds = [], [], {}
        fns = {k: (lambda x, k=k: calls.append(k)) for k in "abcd"}
        time_interleaved(fns, torch.zeros(1), warmup=0, repeats=40, budget=0, rounds_out=rounds, order_seed=seed,
                         orders_out=orders)
        return calls[-160:], orders, rounds

    calls, orders, rounds = run(7)
    assert len(orders) == 40 and all(sorted(o) == list("abcd") for o in orders)
    assert calls == [k for o in orders for k in o]  # the recorded orders are the orders that ran
    assert len({tuple(o) for o in orders}) > 5 and {o[0] for o in orders} == set("abcd")  # no arm always first
    assert {k: len(v) for k, v in rounds.items()} == dict.fromkeys("abcd", 40)
    assert run(7)[1] == orders and run(8)[1] != orders  # the seed decides the orders
    assert run(None)[1] == [list("abcd")] * 40  # no seed: the given order every round


def test_a_sweep_times_every_arm_once_after_training_and_not_again_on_resume(rect_data, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tiny_spec(rect_data, tmp_path / "runs", arms=ARMS, seeds=[0, 1]))
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        df = runner.run_sweep(spec)
        sweep = Path(df.attrs["sweep_dir"])
        rows = read_csv(sweep / "speed.csv")
        assert [r["arm"] for r in rows] == ["sppf", "spp"] and len({r["session"] for r in rows}) == 1
        base, spp = rows
        assert int(base["rounds"]) == 100 and base["delta_ms"] == "" and base["baseline"] == "True"
        assert base["order_seed"] == spp["order_seed"] != ""  # one shuffling seed per session, recorded
        per_round = read_csv(sweep / "speed_rounds.csv")  # every round of every arm, with its position
        assert len(per_round) == 200 and {r["session"] for r in per_round} == {base["session"]}
        assert all(sorted(r["position"] for r in per_round[i:i + 2]) == ["1", "2"] for i in range(0, 200, 2))
        assert {r["position"] for r in per_round if r["arm"] == "spp"} == {"1", "2"}  # not always second
        ms = {arm: [float(r["ms"]) for r in per_round if r["arm"] == arm] for arm in ("sppf", "spp")}
        assert float(base["latency_ms"]) == pytest.approx(float(np.median(ms["sppf"])))  # the median of the rounds
        diffs = [a - b for a, b in zip(ms["spp"], ms["sppf"])]
        assert float(spp["delta_ms"]) == pytest.approx(float(np.mean(diffs)))  # Δ: the mean of per-round differences
        assert float(spp["latency_ms"]) > 0 and int(spp["delta_n"]) == 100 and spp["device"] == "cpu"
        assert 0 < float(spp["cpu_share"]) and spp["starved"] in ("True", "False") and spp["threads"]
        assert float(spp["delta_lo_ms"]) <= float(spp["delta_ms"]) <= float(spp["delta_hi_ms"])
        runner.run_sweep(spec)  # resumed, nothing changed: no new timing session
        assert len(read_csv(sweep / "speed.csv")) == 2 and len(read_csv(sweep / "speed_rounds.csv")) == 200
        runner.run_sweep(spec, arms=ARMS + [{"name": "spp3", "block": "SPP", "args": [[3, 5, 7]]}])
    rows = read_csv(sweep / "speed.csv")
    sessions = list(dict.fromkeys(r["session"] for r in rows))
    assert len(rows) == 5 and [r["arm"] for r in rows[2:]] == ["sppf", "spp", "spp3"]  # all arms, together, again
    assert len(sessions) in (1, 2)  # a second session (same second: same label) timed every arm interleaved
    summary = pd.read_csv(sweep / "summary.csv")
    latest = {r["arm"]: r for r in rows[2:]}
    for _, r in summary.iterrows():  # the summary's latency is each arm's latest timing, not a mean over runs
        assert r["latency_ms_mean"] == pytest.approx(float(latest[r["arm"]]["latency_ms"]))
    spp = summary[summary["arm"] == "spp"].iloc[0]
    assert spp["latency_ms_delta"] == pytest.approx(float(latest["spp"]["delta_ms"])) and spp["latency_ms_delta_n"] == 100
    md = (sweep / "summary.md").read_text()
    assert "- speed: every arm timed once, after training, in one session" in md
    assert f"interleaved in an order shuffled every round (seed {rows[-1]['order_seed']})" in md
    assert "latency = batch-1 median over the rounds of that one timing session" in md
    assert "its interval over the timing rounds of that one session: timing noise only" in md
    assert "| Latency, median (ms) | Δ Latency (ms) [adj. CI] p (Holm) |" in md and "paired by timing round" in md


def test_the_timing_key_follows_model_image_size_speed_settings_and_device(rect_data, tmp_path):
    prep = prepare(tiny_spec(rect_data, tmp_path, arms=ARMS))
    key = timings.timing_key(prep.models[0], prep.spec)
    speed = tiny_spec(rect_data, tmp_path)["speed"]
    for change, differs in (({"imgsz": 96}, True), ({"speed": {**speed, "repeats": 150}}, True),
                            ({"speed": {**speed, "device": "cpu"}}, False)):  # cpu named explicitly: the same device
        other = prepare(tiny_spec(rect_data, tmp_path, arms=ARMS, **change))
        assert (timings.timing_key(other.models[0], other.spec) != key) == differs
    assert timings.timing_key(prep.models[1], prep.spec) != key


def speed_rows(shares: dict[str, float], device: str = "AMD EPYC") -> list[dict]:
    rows = []
    for k, (arm, share) in enumerate(shares.items()):
        rows.append({"session": "s1", "arm": arm, "latency_ms": 7.0 + k, "latency_std_ms": 0.2, "rounds": 100,
                     "throughput_ips": 100.0, "baseline": k == 0, "delta_ms": None if k == 0 else float(k),
                     "delta_sd_ms": None if k == 0 else 0.5, "delta_n": None if k == 0 else 100,
                     "delta_p": None if k == 0 else 1e-6, "dtype": "fp32", "device": "cpu", "device_name": device,
                     "threads": 1, "cpu_share": share, "starved": share < 0.9, "host": "h"})
    return rows


def test_starved_timings_and_timings_from_several_devices_are_flagged(tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(CPU_SWEEP, sweep)
    arms = ["sppf", "spp", "focal", "dyca", "sk", "pyramid"]
    timings.record_timings(sweep, speed_rows({a: 0.99 for a in arms}))
    md = write_report(sweep)["markdown"]
    assert "- speed: every arm timed once" in md and "Warning**: timings that got less than 90%" not in md
    summary = pd.read_csv(sweep / "summary.csv")
    focal = summary[summary["arm"] == "focal"].iloc[0]
    assert focal["latency_ms_mean"] == 9.0 and focal["latency_ms_delta"] == 2.0  # the timing, not the runs' mean
    half = focal["latency_ms_delta_hi"] - focal["latency_ms_delta"]
    assert half == pytest.approx(0.5 / 10 * 1.98421695, rel=1e-6)  # t(0.975, 99) * sd / sqrt(100)
    rows = speed_rows({a: (0.45 if a == "sk" else 0.99) for a in arms})
    rows[-1]["device_name"] = "Intel Xeon"
    timings.record_timings(sweep, [{**r, "session": "s2"} for r in rows])
    md = write_report(sweep)["markdown"]
    assert "Warning**: timings that got less than 90% of their thread budget (the machine was busy): sk (45%)" in md
    assert "Warning**: the arms' timings come from 2 device models (AMD EPYC, Intel Xeon)" in md


def test_a_speed_csv_from_before_shuffled_orders_is_read_and_extended(tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(CPU_SWEEP, sweep)
    arms = ["sppf", "spp", "focal", "dyca", "sk", "pyramid"]
    old_fields = [f for f in timings.FIELDS if f != "order_seed"]  # speed.csv as sessions in a fixed order wrote it
    with open(sweep / "speed.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, old_fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(speed_rows({a: 0.99 for a in arms}))
    md = write_report(sweep)["markdown"]
    assert "interleaved round-robin (the same order every round) over 100 rounds" in md
    assert "speed_rounds.csv" not in md
    rows = [{**r, "session": "s2", "order_seed": 12345, "round_positions": [1 + (k + i) % 6 for i in range(3)]}
            for k, r in enumerate(speed_rows({a: 0.99 for a in arms}))]
    timings.record_timings(sweep, rows, {a: [1.0, 2.0, 3.0] for a in arms})
    written = read_csv(sweep / "speed.csv")
    assert list(written[0]) == timings.FIELDS and len(written) == 12
    assert [r["order_seed"] for r in written] == [""] * 6 + ["12345"] * 6 and written[0]["latency_ms"] == "7.0"
    per_round = read_csv(sweep / "speed_rounds.csv")
    assert list(per_round[0]) == ["session", "round", "position", "arm", "ms", "format"] and len(per_round) == 18
    assert [r["position"] for r in per_round[:6]] == ["1", "2", "3", "4", "5", "6"]  # in the order they ran
    md = write_report(sweep)["markdown"]
    assert "in an order shuffled every round (seed 12345)" in md and "every round in speed_rounds.csv" in md


def test_compare_names_the_timing_device_and_warns_when_they_differ(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, device in ((a, "AMD EPYC"), (b, "Intel Xeon")):
        shutil.copytree(CPU_SWEEP, folder)
        timings.record_timings(folder, speed_rows({x: 0.99 for x in ["sppf", "spp", "focal", "dyca", "sk", "pyramid"]},
                                                    device))
    text = compare([a / "results.csv", b / "results.csv"])
    assert "latency timed on AMD EPYC" in text and "latency timed on Intel Xeon" in text
    assert "Warning**: the latency columns come from different devices (AMD EPYC, Intel Xeon)" in text
    assert "different devices" not in compare([a / "results.csv", a / "results.csv"])


# ------------------------------------------------------------------------------------------------- val noise
class OracleValidator:
    """ultralytics' DetectionValidator, except that the predictions are the ground truth on even images (confidence
    0.9 down to 0.5) and boxes shifted to IoU 0.74 on odd ones: mAP50 and mAP50-95 between 0 and 1, apart."""

    @staticmethod
    def make(data: str):
        from ultralytics.models.yolo.detect import DetectionValidator

        class Oracle(DetectionValidator):
            def update_metrics(self, preds, batch):
                fake = []
                for si, pred in enumerate(preds):
                    pb = self._prepare_batch(si, batch)
                    boxes = pb["bboxes"].clone()
                    if (self.seen + si) % 2:
                        boxes[:, [0, 2]] += 0.15 * (boxes[:, 2:3] - boxes[:, 0:1])  # IoU 0.74
                    n = len(boxes)
                    conf = torch.linspace(0.9, 0.5, n) if n else torch.zeros(0)
                    fake.append({"bboxes": boxes, "conf": conf, "cls": pb["cls"].float(),
                                 "extra": torch.zeros(n, 0)})
                super().update_metrics(fake, batch)

        return Oracle(args={"data": data, "imgsz": 64, "batch": 4, "workers": 0, "device": "cpu", "plots": False,
                            "verbose": False, "mode": "val"})


@pytest.fixture(scope="module")
def oracle_capture(tmp_path_factory):
    from ultralytics.nn.tasks import DetectionModel

    data = make_tiny_dataset(tmp_path_factory.mktemp("oracle"), n_train=4, n_val=12, nc=2, seed=3)
    validator = OracleValidator.make(data)
    capture = valnoise.ValCapture()
    validator.add_callback("on_val_batch_end", capture)
    torch.manual_seed(0)
    validator(model=DetectionModel("yolov8n.yaml", nc=2, verbose=False).eval())
    return validator, capture


def test_the_captured_images_reproduce_the_validators_map_exactly(oracle_capture):
    validator, capture = oracle_capture
    box = validator.metrics.box
    assert 0.0 < box.map < box.map50 < 1.0 and len(capture.images) == 12
    assert valnoise.maps(capture.images, capture.class_names) == (float(box.map50), float(box.map))
    assert capture.names == sorted(capture.names) and capture.names[0] == "000.png"


def test_bootstrap_standard_errors_are_deterministic_and_match_a_direct_resampling(oracle_capture):
    _, capture = oracle_capture
    first, again = valnoise.bootstrap(capture), valnoise.bootstrap(capture)
    assert first["map50_se"] > 0 and first["map50_95_se"] > 0 and first["replicates"].shape == (200, 2)
    assert np.array_equal(first["replicates"], again["replicates"])
    # the same thing by hand: resample images, concatenate their statistics, ultralytics' ap_per_class
    from ultralytics.utils.metrics import ap_per_class

    values = []
    for idx in valnoise.resample_indices(len(capture.images))[:20]:
        cat = {k: np.concatenate([capture.images[i][k] for i in idx]) for k in ("tp", "conf", "pred_cls", "target_cls")}
        ap = ap_per_class(cat["tp"], cat["conf"], cat["pred_cls"], cat["target_cls"])[5]
        values.append([ap[:, 0].mean(), ap.mean()])
    assert np.allclose(first["replicates"][:20], np.array(values), atol=1e-12)


def test_val_variance_of_the_seed_averaged_delta_from_the_runs_replicates(oracle_capture, tmp_path):
    """v = var over resamples of the mean over paired seeds of (arm_b − base_b), by hand from the stored replicates;
    runs on other images or seeds without a partner are left out; df = val images − 1."""
    _, capture = oracle_capture
    result = valnoise.bootstrap(capture)
    reps = result["replicates"]
    rows, expected = [], []
    for seed, (scale, shift) in enumerate([(0.5, 0.1), (1.5, -0.05)]):
        for arm, r in (("base", reps), ("a", reps * scale + shift)):
            folder = tmp_path / f"{arm}{seed}"
            folder.mkdir()
            replicates.save({**result, "replicates": r}, folder)
            rows.append({"arm": arm, "seed": seed, "run_dir": str(folder)})
        expected.append(reps[:, 1] * scale + shift - reps[:, 1])
    other = tmp_path / "other"
    other.mkdir()
    replicates.save({**result, "names_hash": "other images"}, other)
    rows += [{"arm": "a", "seed": 2, "run_dir": str(other)},  # other images
             {"arm": "base", "seed": 2, "run_dir": str(tmp_path / "b0")},  # no replicates there
             {"arm": "a", "seed": 3, "run_dir": str(tmp_path / "a0")}]  # seed 3: no baseline run
    loaded = valshare.run_replicates(pd.DataFrame(rows))
    v, df, k = valshare.val_variance(loaded, "a", "base", [0, 1, 2, 3], "map50_95")
    assert k == 2 and df == result["images"] - 1
    assert v == pytest.approx(float(np.var(np.mean(expected, axis=0), ddof=1)), rel=1e-12)
    assert valshare.val_variance(loaded, "a", "base", [2, 3], "map50_95")[2] == 0
    assert replicates.images(tmp_path / "a0") == result["images"] and replicates.images(tmp_path / "none") is None


def test_results_record_bootstrap_errors_and_the_summary_the_val_set_part(tmp_path):
    """Stand-in runs: without replicates on disk the interval covers the seeds only; with them (same image resamples
    in every run) the val set's SE of the seed-averaged Δ joins it, each part at its own t quantile (scipy)."""
    t = pytest.importorskip("scipy.stats").t
    rows = []
    for seed in range(4):
        for arm, off in (("base", 0.0), ("a", 0.01 * (seed % 2))):
            rows.append({"sweep": "t", "arm": arm, "block": arm, "baseline": arm == "base", "seed": seed,
                         "status": "ok", "map50_95": 0.3 + off, "map50": 0.5, "map50_95_se": 0.004,
                         "map50_se": 0.006, "run_dir": str(tmp_path / f"{arm}{seed}")})
    results = pd.DataFrame(rows)
    results.to_csv(tmp_path / "results.csv", index=False)
    out = write_report(tmp_path)
    r = out["summary"].set_index("arm").loc["a"]
    sd = float(np.std([0.0, 0.01, 0.0, 0.01], ddof=1))
    assert math.isnan(r["map50_95_val_se"]) and r["map50_95_delta_sd"] == pytest.approx(sd)
    assert r["map50_95_delta_hi"] - r["map50_95_delta"] == pytest.approx(t.ppf(0.975, 3) * sd / 2)
    assert "it covers the seeds only" in out["markdown"] and "cover the seeds only" in out["markdown"]
    # replicates on disk: 200 resamples, the arm's noisier than the baseline's on the same images
    rng = np.random.default_rng(0)
    common = rng.normal(0.0, 0.004, size=(200, 2))
    diffs = []
    for seed in range(4):
        own = rng.normal(0.0, 0.003, size=(200, 2))
        for arm, extra in (("base", 0.0), ("a", own)):
            folder = tmp_path / f"{arm}{seed}"
            folder.mkdir(exist_ok=True)
            replicates.save({"replicates": 0.3 + common * (1.5 if arm == "a" else 1.0) + extra, "names_hash": "h",
                             "images": 48}, folder)
        diffs.append(common[:, 1] * 0.5 + own[:, 1])
    v = float(np.var(np.mean(diffs, axis=0), ddof=1))
    out = write_report(tmp_path)
    r = out["summary"].set_index("arm").loc["a"]
    assert r["map50_95_val_se"] == pytest.approx(math.sqrt(v)) and r["map50_95_val_df"] == 47
    half = math.hypot(t.ppf(0.975, 3) * sd / 2, t.ppf(0.975, 47) * math.sqrt(v))
    assert r["map50_95_delta_hi"] - r["map50_95_delta"] == pytest.approx(half)
    level = r["map50_95_delta_adj_level"]  # one arm: the adjusted interval is the 95% one
    assert level == pytest.approx(0.95) and r["map50_95_delta_adj_hi"] == pytest.approx(r["map50_95_delta_hi"])
    # the p-value is where that interval touches 0
    p = r["map50_95_delta_p"]
    q = 1 - p / 2
    assert math.hypot(t.ppf(q, 3) * sd / 2, t.ppf(q, 47) * math.sqrt(v)) == pytest.approx(r["map50_95_delta"])
    md = out["markdown"]
    assert "for mAP50-95, mAP50 it covers the seeds and the val set's images" in md
    assert "(seeds and val images; Holm p" in md and f"val set: SE {math.sqrt(v):.3f} of the seed-averaged Δ" in md
    assert summarize(results)["map50_95_delta_sd"].iloc[1] == pytest.approx(sd)
    assert paired_delta({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.0}).n == 2
