"""Adaptive seeds: rounds of one more seed for every arm until every interval on the primary metric is within the
target, or ``max`` seeds. The runs are a stand-in whose paired differences have chosen noise levels, so the round
where the rule must stop is computed here independently (Student-t half-width of the first n differences)."""

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

from yolo_necks.ablation import run as run_module  # noqa: E402
from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.spec import load_spec  # noqa: E402
from yolo_necks.ablation.tdist import t_ppf  # noqa: E402
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


def half_width(d: list[float]) -> float:
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return t_ppf(0.975, n - 1) * sd / math.sqrt(n)


def expected_seeds(target: float, lo: int, hi: int) -> int:
    """The first seed count n >= lo at which 'noisy' (the only arm with variance) has half-width <= target."""
    for n in range(lo, hi + 1):
        if half_width(NOISE[:n]) <= target:
            return n
    return hi


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


def assert_whole_rounds(by_arm: dict[str, list[int]], n: int) -> None:
    """Every arm has exactly seeds 0..n-1, each once: no seed was added to only some arms, nothing twice."""
    assert set(by_arm) == {"sppf", "noisy", "steady"}
    for arm, seeds in by_arm.items():
        assert sorted(seeds) == list(range(n)), (arm, sorted(seeds))


def test_seed_policies_in_the_spec(spec_file):
    s = load_spec(spec_file(seeds={"min": 3, "max": 8, "target": 0.02}))
    assert (s.seeds, s.adaptive.min, s.adaptive.max, s.adaptive.target) == ([0, 1, 2], 3, 8, 0.02)
    s = load_spec(spec_file(seeds="auto", target=0.005))
    assert (s.seeds, s.adaptive.max, s.adaptive.target) == ([0, 1, 2], 20, 0.005)  # the spec's target
    assert load_spec(spec_file(seeds=[0, 1])).adaptive is None
    for bad, key in (({"min": 1}, "seeds.min"), ({"min": 4, "max": 3}, "seeds.max"), ({"tgt": 1}, "seeds.tgt"),
                     ({"target": -1}, "seeds.target")):  # fmt: skip
        with pytest.raises(NeckConfigError, match=f"key '{key}'"):
            load_spec(spec_file(seeds=bad))


@pytest.mark.parametrize("target", [0.02, 0.012])
def test_adaptive_seeds_stop_at_the_round_where_precision_is_reached(spec_file, target):
    path = spec_file(seeds={"min": 3, "max": 12, "target": target})
    fake = NoisyTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        df = runner.run_sweep(path)
    n = expected_seeds(target, 3, 12)
    assert 3 < n < 12  # the chosen noise makes the rule add seeds, and stop before max
    assert half_width(NOISE[: n - 1]) > target >= half_width(NOISE[:n])
    assert_whole_rounds(seeds_by_arm(path), n)
    assert df.attrs["ran"] == 3 * n and len(df) == 3 * n
    assert fake.calls[:3] == [("sppf", 0), ("noisy", 0), ("steady", 0)]  # seed-major, round by round


def test_adaptive_seeds_stop_at_max_and_raising_max_continues(spec_file):
    path = spec_file(seeds={"min": 3, "max": 5, "target": 1e-6})
    fake = NoisyTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        runner.run_sweep(path)
        assert_whole_rounds(seeds_by_arm(path), 5)
        fake.calls.clear()
        runner.run_sweep(path, seeds={"min": 3, "max": 7, "target": 1e-6})
    assert sorted(fake.calls) == sorted((a, s) for a in ("sppf", "noisy", "steady") for s in (5, 6))
    assert_whole_rounds(seeds_by_arm(path), 7)


def test_zero_variance_is_precise_at_min_seeds(spec_file):
    path = spec_file(arms=[ARMS[0], ARMS[2]], seeds={"min": 3, "max": 10, "target": 1e-9})
    with mock.patch.object(run_module, "execute_run", NoisyTraining()):
        runner.run_sweep(path)
    assert {a: sorted(s) for a, s in seeds_by_arm(path).items()} == {"sppf": [0, 1, 2], "steady": [0, 1, 2]}


def test_adaptive_seeds_resume_after_a_kill_mid_round_and_complete_that_round(spec_file):
    path = spec_file(seeds={"min": 3, "max": 12, "target": 0.012})
    started = []

    def ctrl_c_mid_round(plan):
        started.append(plan)
        if len(started) == 11:  # seeds 0..2 (9 runs), then round 3: sppf recorded, noisy starts -> killed
            raise KeyboardInterrupt

    with mock.patch.object(run_module, "execute_run", NoisyTraining()):
        with pytest.raises(KeyboardInterrupt):
            runner.run_sweep(path, callbacks={"on_run_start": ctrl_c_mid_round})
        partial = seeds_by_arm(path)
        assert sorted(partial["sppf"]) == [0, 1, 2, 3] and sorted(partial["noisy"]) == [0, 1, 2]  # a partial round
        fake = NoisyTraining()
        with mock.patch.object(run_module, "execute_run", fake):
            runner.run_sweep(path)
    assert fake.calls[:2] == [("noisy", 3), ("steady", 3)]  # the interrupted round is completed first
    assert_whole_rounds(seeds_by_arm(path), expected_seeds(0.012, 3, 12))


def test_a_failed_baseline_stops_adding_seeds(spec_file):
    path = spec_file(seeds={"min": 3, "max": 10, "target": 1e-6})

    class BaselineFails(NoisyTraining):
        def __call__(self, plan, spec, data):
            if plan.arm.name == "sppf":
                raise RuntimeError("simulated failure")
            return super().__call__(plan, spec, data)

    with mock.patch.object(run_module, "execute_run", BaselineFails()):
        runner.run_sweep(path)
    assert_whole_rounds(seeds_by_arm(path), 3)  # nothing to pair with: more seeds would not help
