"""AP by object size, per-class AP and contrasts between arms in the ablation harness (issue 24): the spec keys
``size_buckets`` and ``contrasts``, ``per_class.csv``, the named val-bootstrap replicates, the statistics and the
summaries built on them. Training is replaced by the stand-in of ablation_helpers (the real path is checked by
test_ablation's end-to-end sweep; the COCO numbers themselves by test_cocoeval)."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_helpers import FakeTraining, fake_classes  # noqa: E402

from yolo_necks.ablation import runner  # noqa: E402
from yolo_necks.ablation.analyse.classes import MAX_LISTED, class_section  # noqa: E402
from yolo_necks.ablation.analyse.compare import compare  # noqa: E402
from yolo_necks.ablation.analyse.stats import summarize  # noqa: E402
from yolo_necks.ablation.analyse.valshare import seed_mean_val_variance  # noqa: E402
from yolo_necks.ablation.execute import run as run_module  # noqa: E402
from yolo_necks.ablation.prepare.prepare import prepare  # noqa: E402
from yolo_necks.ablation.records import perclass, replicates  # noqa: E402
from yolo_necks.ablation.records.columns import FRACTION_METRICS, METRICS  # noqa: E402
from yolo_necks.ablation.records.tracking import row_metrics  # noqa: E402
from yolo_necks.ablation.spec.load import load_spec  # noqa: E402
from yolo_necks.cli import main as cli_main  # noqa: E402
from yolo_necks.errors import NeckConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
THREE_ARMS = [{"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
              {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]},
              {"name": "spp3", "block": "SPP", "args": [[3, 5, 7]]}]


@pytest.fixture
def untimed():
    """Sweeps of the stand-in without timing the arms (speed.csv is not what these tests are about)."""
    with mock.patch.object(runner, "_time_arms", lambda prep, executor: None):
        yield


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rows_of(values: dict[str, dict[int, float]], metric: str = "map50_95") -> pd.DataFrame:
    """results rows: ``{arm: {seed: value}}``, the first arm the baseline."""
    base = next(iter(values))
    return pd.DataFrame([{"sweep": "s", "arm": arm, "block": arm, "baseline": arm == base, "seed": seed, "status": "ok",
                          metric: v} for arm, by_seed in values.items() for seed, v in by_seed.items()])


# ------------------------------------------------------------------------------------------------------- the keys
def test_the_new_columns_are_summarised_fraction_metrics_in_order():
    summarised = list(METRICS)
    assert summarised[-4:] == ["coco_map50_95", "map_small", "map_medium", "map_large"]
    assert {"coco_map50_95", "map_small", "map_medium", "map_large"} <= set(FRACTION_METRICS)
    row = {"map_small": 0.3, "map_large": None, "n_small": 12, "map_small_se": 0.01, "size_buckets": "[230.5, 695.5]",
           "_per_class": [{"class": 0, "ap50_95": 0.4}], "coco_map50_95": "0.25"}
    assert row_metrics(row) == {"map_small": 0.3, "n_small": 12.0, "map_small_se": 0.01, "coco_map50_95": 0.25}


@pytest.mark.parametrize("value, words", [
    ([100], "two areas [a, b]"),
    ([900, 100], "0 < a < b"),
    ([0, 100], "0 < a < b"),
    ("small", "two areas [a, b]"),
    ([True, 100], "two areas [a, b]"),
    ([100, float("inf")], "two areas [a, b]"),
])  # fmt: skip
def test_size_buckets_must_be_two_increasing_areas(spec_file, value, words):
    path = spec_file(size_buckets=value)
    with pytest.raises(NeckConfigError) as err:
        load_spec(path)
    msg = str(err.value)
    assert words in msg and path in msg and "key 'size_buckets'" in msg and "\n" not in msg


def test_size_buckets_enter_the_hash_only_when_not_cocos(spec_file):
    def plans(**changes):
        return [p for p in prepare(load_spec(spec_file(**changes))).plans]

    default = plans()
    assert all("size_buckets" not in p.config and "contrasts" not in p.config for p in default)
    assert [p.config_hash for p in plans(size_buckets=[1024, 9216])] == [p.config_hash for p in default]
    assert [p.config_hash for p in plans(contrasts=[["spp", "spp3"]], arms=THREE_ARMS)][:2] == \
        [p.config_hash for p in plans(arms=THREE_ARMS)][:2]  # contrasts are no run's configuration
    other = plans(size_buckets=[230.5, 695.5])
    assert not {p.config_hash for p in other} & {p.config_hash for p in default}
    assert other[0].config["size_buckets"] == [230.5, 695.5]


def test_an_archived_sweep_plans_the_hashes_it_recorded(tmp_path, monkeypatch):
    """The effective spec of a sweep recorded before size_buckets existed still plans its recorded runs (no rerun)."""
    folder = REPO / "ablations" / "results" / "2026-12-02-placement-cpu-2core"
    monkeypatch.setenv("YOLO_NECKS_DATA_DIR", str(tmp_path / "data"))
    recorded = {(r["arm"], int(r["seed"])): r["config_hash"] for r in read_rows(folder / "results.csv")}
    spec = load_spec(folder / "spec.yaml", {"project": str(tmp_path), "seeds": [1], "arms": "sppf,dyca-head"})
    plans = prepare(spec).plans
    assert [(p.arm.name, p.config_hash) for p in plans] == [(a, recorded[(a, 1)]) for a in ("sppf", "dyca-head")]


def test_shipped_specs_split_the_digits_in_thirds_and_contrast_placements():
    cpu = load_spec(REPO / "ablations" / "placement.yaml", {"device": "cpu"})
    full = load_spec(REPO / "ablations" / "placement.yaml", {"device": "0"})
    assert cpu.size_buckets == (230.5, 695.5) and full.size_buckets == (240.5, 2050.5)
    assert cpu.contrasts == (("dyca-head", "dyca-sppf"), ("sk-head", "sk-sppf"), ("focal-head", "focal-sppf"))
    assert load_spec(None, {"device": "cpu"}).size_buckets == (230.5, 695.5)


@pytest.mark.parametrize("value, words", [
    ([["spp", "sppx"]], "unknown arm 'sppx' in ['spp', 'sppx']; did you mean 'spp'"),
    ([["spp", "spp"]], "compares an arm with itself"),
    ([["spp", "sppf"]], "is the baseline comparison of spp"),
    ([["spp", "spp3"], ["spp3", "spp"]], "listed twice"),
    ([["spp"]], "is not a pair of arms"),
    ("spp:spp3", "must be a list of arm pairs"),
])  # fmt: skip
def test_a_bad_contrast_is_one_line_before_training(spec_file, capsys, value, words):
    path = spec_file(arms=THREE_ARMS, contrasts=value)
    fake = FakeTraining()
    with mock.patch.object(run_module, "execute_run", fake):
        with pytest.raises(NeckConfigError) as err:
            runner.run_sweep(path)
        assert cli_main(["ablate", path]) == 2
    msg = str(err.value)
    assert words in msg and path in msg and "key 'contrasts'" in msg and "\n" not in msg
    assert words in capsys.readouterr().err and fake.calls == []
    assert not (Path(path).parent / "runs" / "tiny" / "results.csv").exists()


# ------------------------------------------------------------------------------------------------ replicates
def test_replicates_are_a_named_mapping_and_older_files_stay_readable(tmp_path):
    reps = np.random.default_rng(0).random((20, 2))
    small = np.random.default_rng(1).random(20)
    small[3] = np.nan
    replicates.save({"replicates": reps, "names_hash": "h", "images": 8}, tmp_path, {"map_small": small})
    named, digest = replicates.load_metrics(tmp_path)
    assert digest == "h" and list(named) == ["map50", "map50_95", "map_small"]
    assert np.array_equal(named["map50_95"], reps[:, 1]) and np.array_equal(named["map_small"], small, equal_nan=True)
    assert np.array_equal(replicates.load(tmp_path)[0], reps)  # the mAP pair as before
    old = tmp_path / "old"
    old.mkdir()
    np.savez(old / replicates.FILE, replicates=reps, names_hash="h")  # what older harness versions wrote
    named, _ = replicates.load_metrics(old)
    assert list(named) == ["map50", "map50_95"] and np.array_equal(named["map50"], reps[:, 0])


# ------------------------------------------------------------------------------------------------- contrasts
def test_contrasts_equal_the_paired_computation_by_hand():
    rng = np.random.default_rng(7)
    base = {s: 0.40 + 0.01 * rng.standard_normal() for s in range(5)}
    a = {s: base[s] + 0.02 + 0.004 * rng.standard_normal() for s in range(5)}
    b = {s: base[s] + 0.005 + 0.006 * rng.standard_normal() for s in range(4)}  # seed 4 not finished in b
    s = summarize(rows_of({"base": base, "a": a, "b": b}), contrasts=(("a", "b"),)).set_index("arm")
    c = s.loc["a − b"]
    assert bool(c["contrast"]) and (c["contrast_a"], c["contrast_b"]) == ("a", "b")
    assert not s.loc[["base", "a", "b"], "contrast"].any() and math.isnan(c["map50_95_mean"])
    seeds = [0, 1, 2, 3]  # the seeds both arms share
    d = np.array([a[k] - b[k] for k in seeds])
    test = sps.ttest_rel([a[k] for k in seeds], [b[k] for k in seeds])
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert c["map50_95_delta_n"] == 4 and c["map50_95_delta"] == pytest.approx(d.mean(), abs=1e-12)
    assert c["map50_95_delta_p"] == pytest.approx(test.pvalue, rel=1e-6)
    assert (c["map50_95_delta_lo"], c["map50_95_delta_hi"]) == pytest.approx((d.mean() - half, d.mean() + half))
    # one Holm family per metric: the arms compared with the baseline and the contrast
    ps = [sps.ttest_rel([x[k] for k in sorted(x)], [base[k] for k in sorted(x)]).pvalue for x in (a, b)]
    ps.append(test.pvalue)
    from statsmodels.stats.multitest import multipletests

    holm = multipletests(ps, method="holm")[1]
    got = [s.loc[k, "map50_95_delta_p_holm"] for k in ("a", "b", "a − b")]
    assert got == pytest.approx(list(holm), rel=1e-6)
    order = np.argsort(ps)
    for step, i in enumerate(order, start=1):  # the adjusted interval at the level Holm tested each comparison at
        row = s.loc[["a", "b", "a − b"][i]]
        level = 1 - 0.05 / (3 - step + 1) if holm[i] <= 0.05 else 1 - 0.05 / 3
        assert row["map50_95_delta_adj_level"] == pytest.approx(level)
        sd = row["map50_95_delta_sd"]
        n = int(row["map50_95_delta_n"])
        adj = sps.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        assert row["map50_95_delta_adj_lo"] == pytest.approx(row["map50_95_delta"] - adj)
    alone = summarize(rows_of({"base": base, "a": a, "b": b})).set_index("arm")
    assert alone.loc["a", "map50_95_delta_p_holm"] <= s.loc["a", "map50_95_delta_p_holm"]  # a bigger family
    assert alone.loc["a", "map50_95_mean"] == s.loc["a", "map50_95_mean"]
    expected = "better" if holm[2] <= 0.05 and d.mean() > 0 else "no detectable difference"
    assert c["verdict"] == expected


def test_a_contrast_gets_the_val_term_from_both_arms_replicates(tmp_path):
    """Any summarised metric with stored replicates (here AP small) gets the val-set term of its seed-averaged Δ,
    for a contrast from the replicates of its two arms."""
    rng = np.random.default_rng(3)
    rows, reps = [], {}
    for arm, shift in (("base", 0.0), ("a", 0.03), ("b", 0.01)):
        for seed in range(3):
            folder = tmp_path / f"{arm}-{seed}"
            folder.mkdir()
            small = 0.3 + shift + 0.01 * rng.standard_normal(50)
            reps[(arm, seed)] = small
            replicates.save({"replicates": rng.random((50, 2)), "names_hash": "same", "images": 40}, folder,
                            {"map_small": small})
            rows.append({"sweep": "s", "arm": arm, "block": arm, "baseline": arm == "base", "seed": seed,
                         "status": "ok", "run_dir": str(folder), "map50_95": 0.4 + shift + 0.01 * seed,
                         "map_small": 0.3 + shift + 0.002 * seed * (arm == "a")})
    s = summarize(pd.DataFrame(rows), contrasts=(("a", "b"),)).set_index("arm")
    v = seed_mean_val_variance(np.stack([reps[("a", k)] - reps[("b", k)] for k in range(3)]))
    assert s.loc["a − b", "map_small_val_se"] == pytest.approx(math.sqrt(v))
    d = [0.3 + 0.03 + 0.002 * k - (0.3 + 0.01) for k in range(3)]
    seeds_only = sps.t.ppf(0.975, 2) * np.std(d, ddof=1) / math.sqrt(3)
    c = s.loc["a − b"]
    assert c["map_small_delta"] == pytest.approx(np.mean(d)) and c["map_small_delta_n"] == 3
    assert (c["map_small_delta_hi"] - c["map_small_delta_lo"]) / 2 > seeds_only  # the val set's part is in it


def test_contrasts_from_the_spec_and_the_report_option(untimed, spec_file, capsys):
    path = spec_file(arms=THREE_ARMS, seeds=[0, 1, 2], contrasts=[["spp3", "spp"]])
    sweep = Path(path).parent / "runs" / "tiny"
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        runner.run_sweep(path)
    md = (sweep / "summary.md").read_text()
    section = md[md.index("## Contrasts"):]
    assert "| spp3 − spp | 3 | **spp3** better" in section and "m = 3" in section
    assert "the 2 arms compared and the 1 contrast between arms below" in md
    s = pd.read_csv(sweep / "summary.csv")
    assert list(s["arm"]) == ["sppf", "spp", "spp3", "spp3 − spp"] and list(s["contrast"]) == [False] * 3 + [True]
    assert cli_main(["report", str(sweep), "--contrast", "spp:sppf", "--contrast=spp:spp3"]) == 2  # the baseline's
    assert "baseline comparison" in capsys.readouterr().err
    assert cli_main(["report", str(sweep), "--contrast", "spp:spq"]) == 2
    err = capsys.readouterr().err
    assert "report: --contrast: unknown arm 'spq'" in err and "did you mean 'spp'" in err and err.count("\n") == 1
    assert cli_main(["report", str(sweep), "--contrast", "spp"]) == 2
    assert cli_main(["report", str(sweep), "--contrast", "spp:spp3"]) == 0  # the spec's, reversed: not twice
    s = pd.read_csv(sweep / "summary.csv")
    assert list(s["arm"]) == ["sppf", "spp", "spp3", "spp3 − spp"]
    text = compare([sweep], ["map50_95", "map_small", "coco_map50_95"])
    assert "tiny: AP small" in text and "tiny: COCO AP" in text
    assert "spp3 − spp" not in text and "unpaired" in text
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------- sizes, classes
def test_sizes_and_classes_in_the_summaries_and_per_class_csv(untimed, spec_file):
    path = spec_file(arms=THREE_ARMS, seeds=[0, 1])
    sweep = Path(path).parent / "runs" / "tiny"
    with mock.patch.object(run_module, "execute_run", FakeTraining(fail_arms=("spp3",))):
        runner.run_sweep(path)
    results = read_rows(sweep / "results.csv")
    lines = read_rows(sweep / "per_class.csv")
    assert list(lines[0]) == perclass.COLUMNS
    for r in results:  # a finished run: exactly the classes present; a failed one: none
        mine = [x for x in lines if x["config_hash"] == r["config_hash"]]
        expected = [] if r["status"] == "failed" else [str(c["class"]) for c in fake_classes(run_plan(r))]
        assert [x["class"] for x in mine] == expected and all(x["arm"] == r["arm"] for x in mine)
        if r["status"] == "ok":
            assert r["map_large"] == "" and r["n_large"] == "0" and float(r["map_small"]) > 0
    assert "_per_class" not in read_rows(sweep / "results.csv")[0]
    with mock.patch.object(run_module, "execute_run", FakeTraining()):
        runner.run_sweep(path)  # nothing to do: no per-class rows again
        assert len(read_rows(sweep / "per_class.csv")) == len(lines)
        runner.run_sweep(path, retry_failed=True)  # the retried runs add theirs
    assert len(read_rows(sweep / "per_class.csv")) == len(lines) + 2 * 2

    s = pd.read_csv(sweep / "summary.csv").set_index("arm")
    assert s.loc["spp", "map_small_delta"] == pytest.approx(0.02 * ((sum(map(ord, "spp")) % 7)
                                                                    - (sum(map(ord, "sppf")) % 7)))
    assert math.isnan(s.loc["spp", "map_large_delta"]) and s.loc["spp", "map_large_delta_n"] == 0
    k = {a: sum(map(ord, a)) % 7 for a in ("sppf", "spp", "spp3")}
    assert s.loc["spp", "class_c0_delta"] == pytest.approx(0.01 * (k["spp"] - k["sppf"]))
    assert s.loc["spp", "class_c1_delta"] == pytest.approx(0.0, abs=1e-12)
    per = pd.read_csv(sweep / "summary_per_class.csv")
    assert set(per["name"]) == {"c0", "c1"} and len(per) == 2 * 3
    md = (sweep / "summary.md").read_text()
    verdict = md[md.index("## Verdict"):md.index("## Runs")]
    word = "better" if k["spp"] > k["sppf"] else "worse"
    assert f"{word} on small objects (Δ AP small" in verdict and "medium objects" not in verdict
    sizes = md[md.index("## AP by object size"):]
    assert "COCO's, the default" in sizes and "30 small (60%) / 20 medium (40%) / 0 large (0%)" in sizes
    assert "AP large is n/a" in sizes and "| AP large |" not in sizes and "COCO AP − ultralytics mAP50-95" in sizes
    assert "thirds" not in sizes and "- Precision of Δ AP small" in sizes
    classes = md[md.index("## AP per class"):]
    assert classes.count("\n| c") == 2 and "Δ spp" in classes


def test_the_size_section_names_the_specs_buckets_and_their_thirds():
    from yolo_necks.ablation.analyse.sizes import size_section

    cols = ("coco_map50_95", "map_small", "map_medium", "map_large")
    summary = pd.DataFrame([{"arm": "a", "baseline": True, "n_ok": 1, **{f"{m}_mean": 0.3 for m in cols},
                             **{f"{m}_std": float("nan") for m in cols}}])
    runs = pd.DataFrame([{"arm": "a", "status": "ok", "size_buckets": "[230.5, 695.5]", "n_small": 130,
                          "n_medium": 130, "n_large": 131, "coco_map50_95": 0.3, "map50_95": 0.31}])
    text = "\n".join(size_section(summary, runs))
    assert "(the spec's `size_buckets`): small ≤ 230.5 px² (≈15.2²) ≤ medium ≤ 695.5 px² (≈26.4²) ≤ large" in text
    assert "130 small (33%) / 130 medium (33%) / 131 large (34%) boxes, roughly in thirds" in text
    assert "| AP large |" in text and "COCO AP − ultralytics mAP50-95 of the same run: mean −0.010." in text


def run_plan(row: dict):
    """The stand-in's view of a recorded run (its arm name and seed)."""
    arm = type("Arm", (), {"name": row["arm"]})()
    return type("Plan", (), {"arm": arm, "seed": int(row["seed"])})()


def test_many_classes_show_the_three_biggest_gains_and_losses():
    names = [f"k{i}" for i in range(MAX_LISTED + 2)]
    deltas = [0.05, 0.04, -0.03, 0.0, 0.01, -0.06, 0.02, -0.01, 0.03, -0.02, 0.0, 0.015]
    rows = [{"arm": "base", "baseline": True, "class": i, "name": n, "n_instances": 3, "ap50_95_mean": 0.4,
             "delta": float("nan"), "delta_n": 0, "delta_adj_lo": float("nan"), "delta_adj_hi": float("nan"),
             "delta_sig": False} for i, n in enumerate(names)]
    rows += [{"arm": "x", "baseline": False, "class": i, "name": n, "n_instances": 3, "ap50_95_mean": 0.4 + d,
              "delta": d, "delta_n": 3, "delta_adj_lo": d - 0.01, "delta_adj_hi": d + 0.01, "delta_sig": abs(d) > 0.01}
             for i, (n, d) in enumerate(zip(names, deltas))]
    lines = class_section(pd.DataFrame(rows))
    line = next(ln for ln in lines if ln.startswith("- **x**"))
    gains, losses = line.split("; biggest losses ")
    assert [w for w in gains.split() if w.startswith("k")] == ["k0", "k1", "k8"]
    assert [w for w in losses.split() if w.startswith("k")] == ["k5", "k2", "k9"]
    assert "**+0.050** [+0.040, +0.060]" in gains and not any(ln.startswith("| k") for ln in lines)
