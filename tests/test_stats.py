"""Statistics of the ablation harness: Holm adjustment, adjusted intervals, precision planning, verdicts, Pareto,
and how summary.md / summary.csv / compare show them. Pure pandas (no training); scipy and statsmodels only as
references (test dependencies, skipped when missing)."""

from __future__ import annotations

import math
import random
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

from yolo_necks.ablation.analyse.compare import compare
from yolo_necks.ablation.analyse.report import write_report
from yolo_necks.ablation.analyse.sections import planning_line
from yolo_necks.ablation.analyse.decide import holm, holm_levels
from yolo_necks.ablation.analyse.stats import paired_delta, pareto_arms, summarize
from yolo_necks.ablation.analyse.stopping import precision_check
from yolo_necks.ablation.analyse.tdist import half_width, one_sided_p, seeds_needed, t_cdf, t_ppf, t_sf
from yolo_necks.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
CPU_SWEEP = REPO / "ablations" / "results" / "2026-11-23-cpu-2core"


def rows_for(arms: dict[str, list[float | None]], baseline: str = "base", metric: str = "map50_95") -> pd.DataFrame:
    """results.csv rows: per arm one value per seed (None: that run failed); latency 5 ms + a little per arm."""
    rows = []
    for k, (arm, values) in enumerate(arms.items()):
        for seed, v in enumerate(values):
            rows.append({"sweep": "t", "arm": arm, "block": arm.upper(), "baseline": arm == baseline, "seed": seed,
                         "status": "failed" if v is None else "ok", metric: v,
                         "latency_ms": None if v is None else 5.0 + 0.1 * k + 0.01 * seed})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------- Holm
def test_holm_against_hand_computed_values():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1; NaN (no p-value) stays NaN and does not count in m (here m = 2)
    adj = holm([0.6, float("nan"), 0.02])
    assert adj[0] == pytest.approx(0.6) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.04)
    assert holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == [] and holm([0.03]) == pytest.approx([0.03])  # one comparison: nothing to adjust
    assert holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])  # ties


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = random.Random(0)
    for m in (1, 2, 3, 5, 8, 13):
        for _ in range(4):  # statsmodels takes ~0.1 s a call here
            ps = [rng.choice([rng.random(), rng.random() ** 4, 0.01 * rng.random()]) for _ in range(m)]
            reject, expected, _, _ = multipletests(ps, alpha=0.05, method="holm")
            assert holm(ps) == pytest.approx(list(expected), abs=1e-12)
            assert [a <= 0.05 for a in holm(ps)] == list(reject)
            for level, rejected in zip(holm_levels(ps, 0.05), reject):
                # rejected at step j: 1 - 0.05/(m-j+1), between 95% and Bonferroni's 1 - 0.05/m; else Bonferroni
                assert 0.95 - 1e-12 <= level <= 1 - 0.05 / m + 1e-12
                assert rejected or level == pytest.approx(1 - 0.05 / m)


def test_holm_levels_by_step():
    # m = 4: 0.005 rejected at step 1 (level 1 - 0.05/4), 0.01 at step 2 (1 - 0.05/3); 0.03 and 0.04 not rejected
    # (Holm stops at step 3: 2 x 0.03 > 0.05) -> Bonferroni level 1 - 0.05/4
    levels = holm_levels([0.01, 0.04, 0.03, 0.005], 0.05)
    assert levels == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 4, 1 - 0.05 / 4, 1 - 0.05 / 4])
    assert math.isnan(holm_levels([float("nan"), 0.2])[0])


def test_adjusted_intervals_never_contradict_the_mark():
    """Random sweeps: an arm is marked (Holm rejects) exactly when its adjusted interval excludes 0, and the interval
    is the paired-t interval at the Holm level (checked against scipy)."""
    t = pytest.importorskip("scipy.stats").t
    rng = random.Random(1)
    checked = {True: 0, False: 0}
    for trial in range(60):
        n_arms, n_seeds = rng.randint(1, 6), rng.randint(2, 6)
        effect = [rng.choice([0.0, 0.02, -0.03, 0.08]) for _ in range(n_arms)]
        arms = {"base": [0.4 + rng.gauss(0, 0.01) for _ in range(n_seeds)]}
        for k, e in enumerate(effect):
            arms[f"a{k}"] = [b + e + rng.gauss(0, 0.01) for b in arms["base"]]
        s = summarize(rows_for(arms)).set_index("arm").drop(index="base")
        for arm, r in s.iterrows():
            lo, hi, sig = r["map50_95_delta_adj_lo"], r["map50_95_delta_adj_hi"], bool(r["map50_95_delta_sig"])
            assert sig == (lo > 0 or hi < 0), (trial, arm)
            assert sig == (r["map50_95_delta_p_holm"] <= 0.05)
            n, sd, level = r["map50_95_delta_n"], r["map50_95_delta_sd"], r["map50_95_delta_adj_level"]
            assert hi - r["map50_95_delta"] == pytest.approx(t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
            if not sig:
                assert level == pytest.approx(1 - 0.05 / n_arms)
            checked[sig] += 1
    assert checked[True] > 10 and checked[False] > 10


# ------------------------------------------------------------------------------------------------- t and planning
def test_t_quantiles_and_paired_p_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 19, 50, 400):
        for q in (0.975, 0.99, 0.995, 1 - 0.05 / 12, 0.6):
            assert t_ppf(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-8)
    arm, base = [0.41, 0.47, 0.44, 0.52], [0.40, 0.43, 0.45, 0.47]
    d = paired_delta(dict(enumerate(arm)), dict(enumerate(base)))
    assert d.p == pytest.approx(stats.ttest_rel(arm, base).pvalue, rel=1e-8)


def test_t_tails_keep_their_relative_precision_far_out():
    """p-values come from the t tail itself: 1 - cdf rounds to 0 below ~1e-16, the tail goes on to 1e-60 and below."""
    stats = pytest.importorskip("scipy.stats")
    checked = 0
    for df in (1, 2, 4, 9, 30, 99, 400):
        for t in (0.0, 0.3, 1.0, 2.5, 6.0, 12.0, 30.0, 80.0, 300.0, 1e4, 1e8):
            ref = float(stats.t.sf(t, df))
            if ref < 1e-300:
                continue
            assert t_sf(t, df) == pytest.approx(ref, rel=1e-9), (t, df)
            assert t_sf(-t, df) == pytest.approx(float(stats.t.cdf(t, df)), rel=1e-12)
            checked += ref < 1e-60
    assert checked >= 5  # the far tail was reached, not only the body
    assert 1.0 - t_cdf(20.0, 99) == 0.0 and t_sf(20.0, 99) == pytest.approx(float(stats.t.sf(20.0, 99)), rel=1e-9)
    # the paired p-value of 100 timing rounds with a mean difference of 4.5 SDs
    d = paired_delta(dict(enumerate([0.45 * i % 1 + 4.5 for i in range(100)])), dict(enumerate([0.0] * 100)))
    assert 0.0 < d.p < 1e-60 and d.p == pytest.approx(2 * float(stats.t.sf(d.mean / d.sd * 10, 99)), rel=1e-9)
    assert one_sided_p(3.0, 0.1, 100, 0.0, above=True) == pytest.approx(float(stats.t.sf(300.0, 99)), rel=1e-9)
    assert one_sided_p(-3.0, 0.1, 100, 0.0, above=False) == pytest.approx(float(stats.t.sf(300.0, 99)), rel=1e-9)


def test_latency_deltas_far_beyond_noise_get_one_holm_level_per_step():
    """Timing rounds resolve Δ latency far beyond 1e-16: the arms no longer tie at Holm step 1 (every one at the
    Bonferroni level); each gets the level of its own step, also when speed.csv recorded the p-values as 0."""
    rows = pd.DataFrame([{"sweep": "t", "arm": a, "block": a, "baseline": a == "base", "seed": s, "status": "ok",
                          "map50_95": 0.3 + 0.01 * s} for a in ("base", "a", "b", "c", "d") for s in range(3)])
    timed = pd.DataFrame([{"arm": a, "session": "s", "latency_ms": 10.0 + k, "latency_std_ms": 0.5, "rounds": 100,
                           "baseline": a == "base", "delta_ms": None if a == "base" else 0.2 + 0.5 * k,
                           "delta_sd_ms": None if a == "base" else 0.5, "delta_n": None if a == "base" else 100,
                           "delta_p": None if a == "base" else 0.0}
                          for k, a in enumerate(("base", "a", "b", "c", "d"))])
    s = summarize(rows, timings=timed).set_index("arm")
    p = s.loc[["a", "b", "c", "d"], "latency_ms_delta_p"]
    assert (p > 0).all() and p.is_monotonic_decreasing and p["d"] < 1e-60
    levels = s.loc[["d", "c", "b", "a"], "latency_ms_delta_adj_level"].tolist()  # smallest p first: steps 1..4
    assert levels == pytest.approx([1 - 0.05 / 4, 1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05])
    assert s.loc["b", "latency_ms_delta_pct"] == pytest.approx(100 * 1.2 / 10.0)  # % of the baseline's median


def test_seeds_needed_against_a_direct_t_quantile_search():
    t = pytest.importorskip("scipy.stats").t

    def direct(sd: float, target: float, level: float = 0.95) -> int:
        n = 2
        while t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n) > target:
            n += 1
        return n

    for sd in (0.001, 0.005, 0.0123, 0.02, 0.034, 0.1):
        for target in (0.002, 0.005, 0.01, 0.03):
            assert seeds_needed(sd, target) == direct(sd, target), (sd, target)
    assert seeds_needed(0.02, 0.01, level=0.99) == direct(0.02, 0.01, 0.99)
    # the worked example of the reduced CPU sweep: focal's paired SD 0.0123 -> ±0.031 with 3 seeds, ±0.010 needs 9
    assert half_width(0.012305, 3) == pytest.approx(t.ppf(0.975, 2) * 0.012305 / math.sqrt(3))
    assert seeds_needed(0.012305, 0.01) == 9
    # edge cases: no SD yet, zero variance, bad target
    assert seeds_needed(float("nan"), 0.01) is None
    assert seeds_needed(0.0, 0.01) == 2
    assert math.isnan(half_width(0.02, 1)) and half_width(0.0, 3) == 0.0
    with pytest.raises(ValueError):
        seeds_needed(0.02, 0.0)


# ------------------------------------------------------------------------------------------------ summaries
def test_summary_edge_cases_one_seed_failed_arm_zero_variance():
    arms = {
        "base": [0.40, 0.45, 0.42],
        "noisy": [0.43, 0.44, 0.47],  # d = 0.03, -0.01, 0.05
        "shift": [0.45, 0.50, 0.47],  # d = 0.05 on every seed: zero variance
        "same": [0.40, 0.45, 0.42],  # d = 0 on every seed
        "dead": [None, None, None],  # every run failed
        "one": [0.50, None, None],  # one finished seed
    }
    s = summarize(rows_for(arms)).set_index("arm")
    # the family: noisy, shift, same (m = 3); dead and one have no p-value and do not count
    p = s["map50_95_delta_p"]
    assert math.isnan(p["dead"]) and math.isnan(p["one"]) and p["shift"] == 0.0 and p["same"] == 1.0
    assert list(s.loc[["noisy", "shift", "same"], "map50_95_delta_p_holm"]) == pytest.approx(
        holm([p["noisy"], 0.0, 1.0]))
    assert s.loc["noisy", "map50_95_delta_p_holm"] == pytest.approx(min(1.0, 2 * p["noisy"]))  # step 2 of m = 3
    # zero variance: a zero-width interval; Δ = 0.05 -> better, Δ = 0 -> no detectable difference
    assert s.loc["shift", "map50_95_delta_adj_lo"] == pytest.approx(0.05) == s.loc["shift", "map50_95_delta_adj_hi"]
    assert s.loc["shift", "verdict"] == "better" and bool(s.loc["shift", "map50_95_delta_sig"])
    assert s.loc["same", "verdict"] == "no detectable difference" and s.loc["same", "map50_95_delta_half"] == 0.0
    assert s.loc["shift", "map50_95_seeds_needed"] == 2
    assert s.loc["noisy", "verdict"] == "no detectable difference"
    assert s.loc["noisy", "map50_95_delta_adj_level"] == pytest.approx(1 - 0.05 / 3)
    # failed arm, one seed, the baseline
    assert s.loc["dead", "verdict"] == "failed" and s.loc["one", "verdict"] == "undetermined"
    assert s.loc["base", "verdict"] == "baseline" and not bool(s.loc["base", "map50_95_delta_sig"])
    for arm in ("dead", "one", "base"):
        assert pd.isna(s.loc[arm, "map50_95_seeds_needed"]) and math.isnan(s.loc[arm, "map50_95_delta_half"])
    assert s.loc["one", "map50_95_delta_n"] == 1 and math.isnan(s.loc["one", "map50_95_delta_adj_lo"])
    # planning in the primary metric's units only: the mAP family, not latency
    assert pd.isna(s.loc["noisy", "latency_ms_seeds_needed"])
    # planning lines
    r = s.reset_index()
    line = {a: planning_line(r[r["arm"] == a].iloc[0], "map50_95", 0.01, "base") for a in arms if a != "base"}
    assert line["noisy"].startswith("noisy vs base, mAP50-95: ±0.076 now (3 seeds, SD 0.031); ±0.010 needs ")
    assert line["noisy"].endswith(f" needs {seeds_needed(s.loc['noisy', 'map50_95_delta_sd'], 0.01)} seeds")
    assert line["shift"].endswith("identical differences on every seed); target ±0.010 reached")
    assert line["one"] == "one vs base, mAP50-95: needs ≥2 paired seeds (has 1)"
    assert line["dead"] == "dead vs base, mAP50-95: no finished run (3 failed)"


def test_summary_with_a_single_seed_everywhere_and_without_a_baseline():
    s = summarize(rows_for({"base": [0.4], "x": [0.5]})).set_index("arm")
    assert s.loc["x", "verdict"] == "undetermined" and math.isnan(s.loc["x", "map50_95_delta_p_holm"])
    s = summarize(rows_for({"a": [0.4, 0.5], "b": [0.5, 0.6]}, baseline="none")).set_index("arm")
    assert set(s["verdict"]) == {"undetermined"} and s["map50_95_delta_p_holm"].isna().all()


def test_pareto_front_by_mean_accuracy_and_latency():
    s = pd.DataFrame({
        "arm": ["a", "b", "c", "d", "e", "f"],
        "n_ok": [3, 3, 3, 3, 0, 3],
        "map50_95_mean": [0.30, 0.25, 0.28, 0.30, 0.9, float("nan")],
        "latency_ms_mean": [5.0, 4.0, 6.0, 5.0, 1.0, 1.0],
    })
    # c is dominated by a; a and d tie (both kept); e failed and f has no mAP: never on the front
    assert pareto_arms(s) == ["a", "b", "d"]
    assert pareto_arms(s.iloc[0:0]) == []


# --------------------------------------------------------------------------------------- stopping rule (runner)
def test_precision_check_statuses_and_done():
    arms = {"base": [0.40, 0.45, 0.42, 0.44], "tight": [0.41, 0.46, 0.43, 0.45], "wide": [0.50, 0.40, 0.47, 0.41],
            "one": [0.5, None, None, None], "dead": [None] * 4}
    check = precision_check(rows_for(arms), target=0.01)
    st = {a: p.status for a, p in check.arms.items()}
    assert st == {"tight": "reached", "wide": "open", "one": "too_few", "dead": "failed"}
    assert check.arms["tight"].half_width == 0.0 and check.arms["tight"].seeds_needed == 2  # zero variance
    assert check.arms["one"].half_width == math.inf and check.arms["one"].seeds_needed is None
    assert check.comparable == 3 and not check.done and check.seeds_needed is None
    assert "wide ±" in check.reason and "one has 1 paired seed" in check.reason
    wide = check.arms["wide"]
    assert wide.half_width == pytest.approx(half_width(wide.sd, 4)) and wide.n == 4
    assert set(check.to_frame()["arm"]) == {"tight", "wide", "one", "dead"}
    # without the unfinished arms: done once every comparable arm is within the target; failed arms do not block
    check = precision_check(rows_for({k: arms[k] for k in ("base", "tight", "dead")}), target=0.01)
    assert check.done and check.seeds_needed == 2 and check.reason.startswith("precision reached")
    check = precision_check(rows_for({k: arms[k] for k in ("base", "wide")}), target=0.5)
    assert check.done
    # a baseline with no finished run: nothing to pair with, never done
    check = precision_check(rows_for({"base": [None, None], "x": [0.4, 0.5]}))
    assert check.arms["x"].status == "no_baseline" and check.comparable == 0 and not check.done
    assert "baseline" in check.reason
    with pytest.raises(ValueError):
        precision_check(rows_for(arms), metric="nope")


# -------------------------------------------------------------------------------------------------------- reports
def test_reference_cpu_sweep_nothing_survives_holm(tmp_path):
    """The committed reduced CPU sweep: focal's Δ mAP50 (p 0.038) is the only unadjusted hit; Holm over the five
    arms compared with the baseline removes it, and 3 seeds resolve only ±0.03–0.08 of mAP50-95."""
    sweep = tmp_path / "cpu"
    sweep.mkdir()
    shutil.copy(CPU_SWEEP / "results.csv", sweep / "results.csv")
    out = write_report(sweep)
    s = out["summary"].set_index("arm")
    assert s.loc["focal", "map50_delta_lo"] > 0  # the unadjusted 95% interval excludes 0 ...
    assert s.loc["focal", "map50_delta_p"] == pytest.approx(0.038, abs=1e-3)
    assert s.loc["focal", "map50_delta_p_holm"] == pytest.approx(5 * s.loc["focal", "map50_delta_p"])  # step 1
    assert not s["map50_delta_sig"].any() and not s["map50_95_delta_sig"].any()  # ... the adjusted ones do not
    assert set(s.drop(index="sppf")["verdict"]) == {"no detectable difference"}
    assert s["map50_95_delta_sd"].dropna().between(0.012, 0.034).all()
    assert s.loc["focal", "map50_95_seeds_needed"] == 9
    assert sorted(a for a in s.index if s.loc[a, "pareto"]) == ["focal", "sk"]
    md = out["markdown"]
    assert md.index("## Verdict") < md.index("| Arm |") < md.index("## Precision")
    assert "- focal vs sppf, mAP50-95: ±0.031 now (3 seeds, SD 0.012); ±0.010 needs 9 seeds" in md
    assert "| focal | FocalModulation | 3/3 |" in md and md.split("| focal |")[1].split("\n")[0].endswith("| yes |")


def test_report_target_and_metric_from_spec_and_cli(tmp_path, capsys):
    sweep = tmp_path / "s"
    sweep.mkdir()
    rows_for({"base": [0.40, 0.45, 0.42], "x": [0.43, 0.44, 0.47]}).to_csv(sweep / "results.csv", index=False)
    assert write_report(sweep)["target"] == 0.01  # no spec: defaults
    (sweep / "spec.yaml").write_text(yaml.safe_dump({"name": "s", "seeds": {"min": 3, "max": 20, "target": 0.02}}))
    out = write_report(sweep)
    assert (out["metric"], out["target"]) == ("map50_95", 0.02) and "±0.020 needs" in out["markdown"]
    (sweep / "spec.yaml").write_text(yaml.safe_dump({"seeds": [0, 1, 2], "target": 0.005, "metric": "map50_95"}))
    assert write_report(sweep)["target"] == 0.005
    summary = pd.read_csv(sweep / "summary.csv")
    assert set(summary["target"]) == {0.005} and set(summary["primary_metric"]) == {"map50_95"}
    assert cli_main(["report", str(sweep), "--target", "0.03", "--metric=latency_ms"]) == 0
    out = capsys.readouterr().out
    assert "Δ Latency (ms) vs the baseline **base**" in out and "x vs base, Latency (ms): " in out
    assert cli_main(["report", str(sweep), "--target", "zero"]) == 2
    (sweep / "spec.yaml").write_text(yaml.safe_dump({"target": -1}))
    assert cli_main(["report", str(sweep)]) == 2
    assert "spec.yaml: key 'target'" in capsys.readouterr().err


def test_compare_shows_holm_also_for_an_older_summary_csv(tmp_path):
    sweep = tmp_path / "s"
    sweep.mkdir()
    arms = {"base": [0.40, 0.45, 0.42], "shift": [0.45, 0.50, 0.47], "x": [0.43, 0.44, 0.47]}
    rows_for(arms).to_csv(sweep / "results.csv", index=False)
    text = compare([sweep])
    shift = next(line for line in text.splitlines() if line.startswith("| shift |"))
    assert "**+0.050** [+0.050, +0.050] p<0.001 (Holm <0.001)" in shift and "Holm-adjusted p" in text
    # a summary.csv written before Holm (no *_delta_sd, *_p_holm ...): compare derives the same cells
    write_report(sweep)
    full = pd.read_csv(sweep / "summary.csv")
    old = full[[c for c in full.columns if not c.endswith(("_delta_sd", "_p_holm", "_adj_lo", "_adj_hi",
                                                         "_adj_level", "_sig", "_half", "_seeds_needed"))]]
    old = old.drop(columns=["verdict", "pareto", "primary_metric", "target"])
    old.to_csv(tmp_path / "old.csv", index=False)
    assert compare([tmp_path / "old.csv"]).split("| Arm |")[1] == text.split("| Arm |")[1]


def test_summary_puts_the_baseline_first_whatever_order_runs_finished_in():
    rows = [{"sweep": "s", "arm": a, "block": a, "baseline": a == "base", "seed": s, "status": "ok", "map50_95": v}
            for s in (0, 1) for a, v in (("x", 0.3), ("base", 0.2), ("y", 0.1))]
    assert list(summarize(pd.DataFrame(rows))["arm"]) == ["base", "x", "y"]


# ------------------------------------------------------------------------ the one rule (decide.py), Stein's seeds
def test_two_part_interval_and_its_p_value_against_scipy():
    """Seeds and val set, each part at its own t quantile, added in quadrature; the p-value is the level at which that
    interval touches 0, the one-sided p-values where its one-sided bound touches the bound (scipy)."""
    t = pytest.importorskip("scipy.stats").t
    from yolo_necks.ablation.analyse.decide import Evidence, interval, one_sided, p_value

    rng = random.Random(11)
    for _ in range(40):
        n, sd, df = rng.randint(2, 20), rng.uniform(0.002, 0.05), rng.choice([1, 2, 4, 9, 19])
        val_se, val_df = rng.uniform(0.0005, 0.02), rng.choice([47, 191])
        ev = Evidence(rng.uniform(-0.05, 0.05), n, sd, df, val_se, val_df)

        def half(q, ev=ev):
            return math.hypot(t.ppf(q, ev.seed_df) * ev.seed_se, t.ppf(q, ev.val_df) * ev.val_se)

        lo, hi = interval(ev, 0.99)
        assert hi - ev.mean == pytest.approx(half(0.995), rel=1e-9) and lo == pytest.approx(2 * ev.mean - hi)
        p = p_value(ev)
        assert 0 < p <= 1 and half(1 - p / 2) == pytest.approx(abs(ev.mean), rel=1e-7)
        bound = ev.mean - rng.uniform(0.0, 0.05)
        p1 = one_sided(ev, bound, above=True)
        assert ev.mean - half(1 - p1) == pytest.approx(bound, abs=1e-9)
        assert one_sided(ev, bound, above=False) == pytest.approx(1 - p1, abs=1e-12)
    # one part only: the paired t-test itself; no noise at all: decided without it
    ev = Evidence(0.01, 4, 0.02, 3)
    assert p_value(ev) == pytest.approx(2 * t.sf(0.01 / 0.01, 3), rel=1e-10)
    assert p_value(Evidence(0.01, 4, 0.0, 3)) == 0.0 and p_value(Evidence(0.0, 4, 0.0, 3)) == 1.0
    assert p_value(Evidence(0.01, 4, 0.0, 3, 0.005, 47)) == pytest.approx(2 * t.sf(2.0, 47), rel=1e-10)


def test_stein_seeds_against_a_direct_computation():
    t = pytest.importorskip("scipy.stats").t
    from yolo_necks.ablation.analyse.stopping import stein_seeds

    for sd in (0.001, 0.0123, 0.03, 0.07):
        for pilot in (3, 4, 5, 8):
            for target in (0.005, 0.01, 0.03):
                direct = max(pilot, math.ceil((t.ppf(0.975, pilot - 1) * sd / target) ** 2))
                assert stein_seeds(sd, pilot, target) == direct, (sd, pilot, target)
                assert stein_seeds(sd, pilot, target, cap=20) == min(direct, 20)
    assert stein_seeds(0.0, 3, 0.01) == 3 and stein_seeds(float("nan"), 3, 0.01) is None
    assert stein_seeds(0.02, 1, 0.01) is None


def test_stein_plan_replays_from_the_pilot_rows_and_the_summary_uses_the_pilot_sd():
    """The plan reads the pilot seeds only (more seeds later do not move it); a summary told the pilot takes the seed
    part from the pilot's SD with the pilot's degrees of freedom over all n seeds (scipy)."""
    t = pytest.importorskip("scipy.stats").t
    from yolo_necks.ablation.analyse.stopping import pilot_plan

    base = [0.40, 0.42, 0.41, 0.43, 0.40, 0.44, 0.42, 0.41]
    noisy = [b + d for b, d in zip(base, [0.03, -0.01, 0.025, 0.0, 0.01, 0.02, 0.005, 0.015])]
    arms = {"base": base[:3], "noisy": noisy[:3], "one": [0.5, None, None], "dead": [None] * 3}
    plan = pilot_plan(rows_for(arms), "map50_95", 0.01, 3, 20)
    d0 = [a - b for a, b in zip(noisy[:3], base[:3])]
    sd0 = statistics.stdev(d0)
    want = max(3, math.ceil((t.ppf(0.975, 2) * sd0 / 0.01) ** 2))
    assert (plan.arms["noisy"].status, plan.arms["noisy"].total, plan.arms["noisy"].wanted) == ("planned", 20, want)
    assert plan.arms["noisy"].capped and plan.arms["noisy"].sd == pytest.approx(sd0)
    assert plan.arms["one"].status == "too_few" and plan.arms["dead"].status == "failed"
    later = pilot_plan(rows_for({"base": base, "noisy": noisy}), "map50_95", 0.01, 3, 20)
    assert later.arms["noisy"].sd == pytest.approx(sd0)  # the same decision after 8 seeds
    s = summarize(rows_for({"base": base, "noisy": noisy}), pilot=3).set_index("arm").loc["noisy"]
    d = [a - b for a, b in zip(noisy, base)]
    assert s["map50_95_seed_sd"] == pytest.approx(sd0) and s["map50_95_seed_df"] == 2
    assert s["map50_95_delta_hi"] - s["map50_95_delta"] == pytest.approx(t.ppf(0.975, 2) * sd0 / math.sqrt(8))
    assert s["map50_95_delta"] == pytest.approx(statistics.mean(d)) and s["map50_95_delta_n"] == 8
    fixed = summarize(rows_for({"base": base, "noisy": noisy})).set_index("arm").loc["noisy"]
    assert fixed["map50_95_seed_df"] == 7 and fixed["map50_95_seed_sd"] == pytest.approx(statistics.stdev(d))
