"""The calibration benchmark (ablations/calibration.py) in small, with a fixed RNG: simulated sweeps with known truth
through the harness's own decision code. Every procedure the harness uses keeps its family-wise error rate within
α + 3 SE and its 95% intervals cover at least 95% − 3 SE; the seed-only interval (a reference row) does not when the
val set is noisy. The committed full run is held to the same bar."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_calibration():
    spec = importlib.util.spec_from_file_location("calibration", REPO / "ablations" / "calibration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def check_rows(rows: list[dict]) -> int:
    """Assert the bar on every row of the harness's procedures; returns how many rows it checked."""
    checked = 0
    for r in rows:
        assert r["procedure"].startswith(("fixed", "adaptive")), r["procedure"]
        if "(reference" in r["procedure"]:
            continue
        reps, alpha = int(r["replicates"]), float(r["alpha"])
        if r["error_rate"] != "":
            rate, se = float(r["error_rate"]), float(r["error_rate_se"])
            assert se == pytest.approx(math.sqrt(rate * (1 - rate) / reps), abs=1e-5)
            assert rate <= alpha + 3 * se, r
        cov = float(r["coverage"])
        assert cov >= 1 - alpha - 3 * math.sqrt(cov * (1 - cov) / reps), r
        checked += 1
    return checked


def test_small_calibration_holds_every_error_rate_at_its_level(tmp_path):
    cal = load_calibration()
    rows = cal.run(150, seed=7, out=tmp_path, log=lambda line: None)
    with open(tmp_path / "calibration.csv", newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == cal.COLUMNS and len(written) == len(rows)
    assert check_rows(written) >= 140
    kinds = {r["procedure"] for r in written}
    assert {"fixed 3 seeds", "fixed 5 seeds"} <= kinds and sum(k.startswith("adaptive Stein") for k in kinds) == 6
    scenarios = {r["scenario"] for r in written}
    assert any("margin" in s for s in scenarios) and any("null, 1 arm" in s for s in scenarios)
    # power-only rows (every arm has an effect, no margin) have no error rate; the others all have one
    for r in written:
        assert (r["error_rate"] == "") == ("alternative, 1 arm" in r["scenario"]), r
    # the evidence for the val term: without it, a noisy val set breaks the level
    seed_only = next(r for r in written if r["scenario"] == "val-heavy noise: null, 6 arms"
                     and r["procedure"].startswith("fixed 5 seeds, seed-only"))
    assert float(seed_only["error_rate"]) > 0.1 and float(seed_only["coverage"]) < 0.9


def test_committed_calibration_meets_the_bar():
    found = sorted((REPO / "ablations" / "results").glob("*-calibration/calibration.csv"))
    assert found, "no committed calibration run under ablations/results/*-calibration/"
    with open(found[-1], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert min(int(r["replicates"]) for r in rows) >= 20000
    assert check_rows(rows) >= 140
