"""Adaptive seeds, per arm, by Stein's two-stage rule: a pilot of ``min`` seeds fixes each arm's total once, from the
SD of its pilot's paired differences (``max(min, ceil((t(0.975, min − 1) · sd / target)²))``, at most ``max``); the
baseline runs every seed an arm needs. The runs are a stand-in whose paired differences have chosen noise levels per
arm, so where each arm must stop is computed here independently (scipy's t quantile on its first ``min``
differences)."""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from pathlib import Path
from unittest import mock

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import fake_metrics  # noqa: E402

from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.spec.load import load_spec  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

# paired differences (arm - baseline) of mAP50-95 by seed: 'noisy' alternates around +0.01, 'steady' is constant
NOISE = [0.03, -0.01, 0.025, -0.005, 0.02, 0.0, 0.015, 0.005, 0.012, 0.008, 0.011, 0.009, 0.01, 0.01]
ARMS = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "noisy", "block": "SPP", "args": [[5, 9, 13]]},
    {"name": "steady", "block": "SPP", "args": [[3, 5, 7]]},
]


class NoisyTraining:
    """mAP50-95 = 0.4 for the baseline, 0.4 + NOISE[seed] for 'noisy', 0.42 for 'steady'; logs (arm, seed)."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def __call__(self, plan, spec, data):
        self.calls.append((plan.arm.name, plan.seed))
        row = fake_metrics(plan, spec)
        row["map50_95"] = {"sppf": 0.4, "noisy": 0.4 + NOISE[plan.seed], "steady": 0.42}[plan.arm.name]
        return row


def stein(d: list[float], target: float, lo: int, hi: int) -> tuple[int, int]:
    """Independently: (the total Stein's rule gives an arm whose paired differences by seed are ``d``, the total
    before the cap) from its first ``lo`` differences."""
    t = pytest.importorskip("scipy.stats").t
    pilot = d[:lo]
    mean = sum(pilot) / lo
    sd = math.sqrt(sum((x - mean) ** 2 for x in pilot) / (lo - 1))
    wanted = lo if sd < 1e-12 else max(lo, math.ceil((t.ppf(0.975, lo - 1) * sd / target) ** 2))
    return min(wanted, hi), wanted


def expected_seeds(target: float, lo: int, hi: int) -> int:
    """Where 'noisy' (the only arm with variance) stops."""
    return stein(NOISE, target, lo, hi)[0]


@pytest.fixture
def spec_file(spec_file):
    """The shared tiny spec with this file's three arms."""
    return lambda **changes: spec_file(**{"arms": ARMS, **changes})


def seeds_by_arm(path: str) -> dict[str, list[int]]:
    with open(Path(path).parent / "runs" / "tiny" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = defaultdict(list)
    for r in rows:
        out[r["arm"]].append(int(r["seed"]))
    return dict(out)


def assert_seeds(by_arm: dict[str, list[int]], counts: dict[str, int]) -> None:
    """Each arm has exactly seeds 0..n-1 (its own n), each once: nothing skipped, nothing twice."""
    assert set(by_arm) == set(counts)
    for arm, seeds in by_arm.items():
        assert sorted(seeds) == list(range(counts[arm])), (arm, sorted(seeds))


def test_seed_policies_in_the_spec(spec_file):
    s = load_spec(spec_file(seeds={"min": 3, "max": 8, "target": 0.02}))
    assert (s.seeds, s.adaptive.min, s.adaptive.max, s.adaptive.target) == ([0, 1, 2], 3, 8, 0.02)
    s = load_spec(spec_file(seeds="auto", target=0.005))
    # auto: a pilot of 5 seeds, at most 20, the spec's target
    assert (s.seeds, s.adaptive.max, s.adaptive.target) == ([0, 1, 2, 3, 4], 20, 0.005)
    assert load_spec(spec_file(seeds=[0, 1])).adaptive is None
    for bad, key in (({"min": 1}, "seeds.min"), ({"min": 4, "max": 3}, "seeds.max"), ({"tgt": 1}, "seeds.tgt"),
                     ({"target": -1}, "seeds.target")):
        with pytest.raises(NeckConfigError, match=f"key '{key}'"):
            load_spec(spec_file(seeds=bad))
    # a pilot of 2 seeds gives its SD 1 degree of freedom: an error, naming the key and the file
    with pytest.raises(NeckConfigError, match=r"\.yaml: key 'seeds.min': adaptive seeds need a pilot of at least 3 "):
        load_spec(spec_file(seeds={"min": 2, "max": 8}))


@pytest.mark.parametrize("target", [0.04, 0.03])
def test_adaptive_seeds_stop_at_the_total_the_pilot_fixed(spec_file, target):
    path = spec_file(seeds={"min": 3, "max": 12, "target": target})
    fake = NoisyTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        df = runner.run_sweep(path)
    n = expected_seeds(target, 3, 12)
    assert 3 < n < 12  # the chosen noise makes the rule add seeds, and stop before max
    # 'steady' (identical differences: SD 0) needs nothing beyond its pilot
    assert_seeds(seeds_by_arm(path), {"sppf": n, "noisy": n, "steady": 3})
    assert df.attrs["ran"] == 2 * n + 3 and len(df) == 2 * n + 3
    assert fake.calls[:3] == [("sppf", 0), ("noisy", 0), ("steady", 0)]  # seed-major, round by round


def test_adaptive_seeds_stop_at_max_and_raising_max_continues(spec_file):
    path = spec_file(seeds={"min": 3, "max": 5, "target": 1e-6})
    fake = NoisyTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        runner.run_sweep(path)
        assert_seeds(seeds_by_arm(path), {"sppf": 5, "noisy": 5, "steady": 3})
        fake.calls.clear()
        runner.run_sweep(path, seeds={"min": 3, "max": 7, "target": 1e-6})
    assert sorted(fake.calls) == sorted((a, s) for a in ("sppf", "noisy") for s in (5, 6))
    assert_seeds(seeds_by_arm(path), {"sppf": 7, "noisy": 7, "steady": 3})


def test_zero_variance_needs_nothing_beyond_the_pilot(spec_file):
    path = spec_file(arms=[ARMS[0], ARMS[2]], seeds={"min": 3, "max": 10, "target": 1e-9})
    with mock.patch.object(run_module, "execute_run", NoisyTraining()):
        runner.run_sweep(path)
    assert {a: sorted(s) for a, s in seeds_by_arm(path).items()} == {"sppf": [0, 1, 2], "steady": [0, 1, 2]}


def test_adaptive_seeds_resume_after_a_kill_mid_round_and_complete_that_round(spec_file):
    path = spec_file(seeds={"min": 3, "max": 12, "target": 0.012})
    started = []

    def ctrl_c_mid_round(plan):
        started.append(plan)
        if len(started) == 11:  # seeds 0..2 (9 runs), then seed 3 (steady needs no more): sppf recorded, noisy killed
            raise KeyboardInterrupt

    with mock.patch.object(run_module, "execute_run", NoisyTraining()):
        with pytest.raises(KeyboardInterrupt):
            runner.run_sweep(path, callbacks={"on_run_start": ctrl_c_mid_round})
        partial = seeds_by_arm(path)
        assert sorted(partial["sppf"]) == [0, 1, 2, 3] and sorted(partial["noisy"]) == [0, 1, 2]  # a partial round
        fake = NoisyTraining()
        with mock.patch.object(run_module, "execute_run", fake):
            runner.run_sweep(path)
    assert fake.calls[:1] == [("noisy", 3)]  # the interrupted batch is completed first
    n = expected_seeds(0.012, 3, 12)
    assert_seeds(seeds_by_arm(path), {"sppf": n, "noisy": n, "steady": 3})


def test_a_failed_baseline_stops_adding_seeds(spec_file):
    path = spec_file(seeds={"min": 3, "max": 10, "target": 1e-6})

    class BaselineFails(NoisyTraining):
        def __call__(self, plan, spec, data):
            if plan.arm.name == "sppf":
                raise RuntimeError("simulated failure")
            return super().__call__(plan, spec, data)

    with mock.patch.object(run_module, "execute_run", BaselineFails()):
        runner.run_sweep(path)
    assert_seeds(seeds_by_arm(path), {"sppf": 3, "noisy": 3, "steady": 3})  # nothing to pair with: no more seeds


# ---------------------------------------------------------------------------------------- per-arm stopping
# paired differences (arm - baseline) by seed of three arms with chosen noise: 'calm' settles fast, 'rough' slowly
PER_ARM = {
    "calm": [0.010, 0.012, 0.009, 0.011, 0.010, 0.010, 0.011, 0.009, 0.010, 0.010, 0.010, 0.010],
    "mid": [0.02, -0.004, 0.015, 0.001, 0.012, 0.004, 0.009, 0.006, 0.008, 0.007, 0.008, 0.007],
    "rough": [0.05, -0.03, 0.04, -0.02, 0.03, -0.01, 0.02, 0.0, 0.015, 0.005, 0.01, 0.01],
}


class PerArmTraining(NoisyTraining):
    def __call__(self, plan, spec, data):
        self.calls.append((plan.arm.name, plan.seed))
        row = fake_metrics(plan, spec)
        row["map50_95"] = 0.4 + (0.0 if plan.arm.name == "sppf" else PER_ARM[plan.arm.name][plan.seed])
        return row


@pytest.mark.parametrize("target, hi", [(0.01, 12), (0.004, 8)])
def test_each_arm_gets_its_own_total_and_the_runs_saved_are_reported(spec_file, logged, target, hi):
    arms = [ARMS[0]] + [{"name": a, "block": "SPP", "args": [[5, 9, 13]]} for a in PER_ARM]
    path = spec_file(arms=arms, seeds={"min": 3, "max": hi, "target": target})
    with mock.patch.object(run_module, "execute_run", PerArmTraining()):
        df = runner.run_sweep(path)
    expected = {a: stein(d, target, 3, hi) for a, d in PER_ARM.items()}
    counts = {a: n for a, (n, _) in expected.items()}
    assert len(set(counts.values())) > 1  # the chosen noise makes the arms stop at different seed counts
    assert_seeds(seeds_by_arm(path), {"sppf": max(counts.values()), **counts})
    runs = max(counts.values()) + sum(counts.values())
    whole = 4 * max(counts.values())
    assert len(df) == runs and whole > runs
    assert any(f"{runs} runs, whole rounds would have run {whole} (saved {whole - runs})" in line for line in logged)
    md = (Path(df.attrs["sweep_dir"]) / "summary.md").read_text()
    for arm, (n, wanted) in expected.items():
        line = next(x for x in md.splitlines() if x.startswith(f"- {arm} vs sppf, mAP50-95: "))
        if wanted > hi:
            assert f"; adaptive seeds: {n} run, stopped: max {hi} seeds (pilot SD " in line
            assert line.endswith(f" over 3 seeds asked for {wanted})")
        else:
            assert f"; adaptive seeds: {n} run, stopped: planned (pilot SD " in line and line.endswith(f" -> {n})")
    assert f"{runs} runs, where giving every arm every seed would have run {whole} (saved {whole - runs})" in md
