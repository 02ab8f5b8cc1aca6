"""Equivalence and non-inferiority: paired TOST against statsmodels and hand values, one Holm-adjusted interval per
arm that every verdict is read off (so an arm's verdicts never disagree), sentences that show that one interval, and
the margin through the spec, the report and its command line."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_stats import CPU_SWEEP, rows_for

from yolo_necks.ablation.analyse.report import write_report
from yolo_necks.ablation.spec.load import load_spec
from yolo_necks.ablation.analyse.decide import holm
from yolo_necks.ablation.analyse.stats import summarize
from yolo_necks.ablation.analyse.tdist import one_sided_p, paired_tost
from yolo_necks.cli import main as cli_main
from yolo_necks.errors import NeckConfigError


def moments(d: list[float]) -> tuple[float, float, int]:
    n = len(d)
    mean = sum(d) / n
    return mean, math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)), n


def test_tost_against_hand_values():
    # d = [0.002, 0.004, 0.000, 0.006]: mean 0.003, sd 0.0025820, se 0.0012910; margin 0.01
    mean, sd, n = moments([0.002, 0.004, 0.000, 0.006])
    se = sd / 2
    assert mean == pytest.approx(0.003) and se == pytest.approx(0.0012909944)
    p, lower, upper = paired_tost(mean, sd, n, 0.01)
    # t_lower = (0.003 + 0.01) / se = 10.0698, t_upper = (0.003 - 0.01) / se = -5.4222, 3 degrees of freedom:
    # upper-tail and lower-tail t probabilities: scipy.stats.t.sf(10.0698, 3) = 0.0010427, t.cdf(-5.4222, 3) = 0.0061537
    assert lower == pytest.approx(0.0010427, rel=1e-3) and upper == pytest.approx(0.0061537, rel=1e-3)
    assert p == max(lower, upper)
    # identical differences decide without noise; a mean on the margin is not inside it
    assert paired_tost(0.004, 0.0, 3, 0.01) == (0.0, 0.0, 0.0)
    assert paired_tost(0.01, 0.0, 3, 0.01)[0] == 1.0 and paired_tost(-0.02, 0.0, 3, 0.01)[1] == 1.0
    assert all(math.isnan(v) for v in paired_tost(0.0, 0.01, 1, 0.01))  # one pair: no test
    assert one_sided_p(0.0, 0.01, 5, 0.0, above=True) == pytest.approx(0.5)


def test_tost_matches_statsmodels_ttost_paired():
    ttost_paired = pytest.importorskip("statsmodels.stats.weightstats").ttost_paired
    rng = random.Random(3)
    for _ in range(40):
        n = rng.randint(2, 12)
        base = [rng.gauss(0.3, 0.03) for _ in range(n)]
        shift, noise = rng.uniform(-0.02, 0.02), rng.choice([0.001, 0.005, 0.02])
        arm = [b + shift + rng.gauss(0, noise) for b in base]
        margin = rng.choice([0.005, 0.01, 0.02])
        p, lower, upper = paired_tost(*moments([a - b for a, b in zip(arm, base)]), margin)
        expected = ttost_paired(pd.Series(arm).to_numpy(), pd.Series(base).to_numpy(), -margin, margin)
        assert p == pytest.approx(float(expected[0]), abs=1e-9)
        assert lower == pytest.approx(float(expected[1][1]), abs=1e-9)
        assert upper == pytest.approx(float(expected[2][1]), abs=1e-9)


def expected_verdict(lo: float, hi: float, margin: float) -> str:
    """The one rule, by hand: the adjusted interval excludes 0 -> better/worse; inside ±margin -> equivalent; lower
    end above −margin -> not worse; else undecided."""
    if lo > 0 or hi < 0:
        return "better" if lo > 0 else "worse"
    if -margin < lo and hi < margin:
        return "equivalent"
    return "not worse" if lo > -margin else "undecided"


def test_one_interval_decides_every_verdict_of_an_arm():
    """Random sweeps with a margin: every verdict is read off the one Holm-adjusted interval, the equiv/noninf columns
    say the same (so a better arm is always not worse), that interval is the paired t-interval at the Holm level
    (scipy), and the reference one-sided p-values are statsmodels' ttost_paired."""
    t = pytest.importorskip("scipy.stats").t
    ttost_paired = pytest.importorskip("statsmodels.stats.weightstats").ttost_paired
    rng = random.Random(5)
    seen = set()
    for trial in range(40):
        n_seeds, margin = rng.randint(2, 8), rng.choice([0.005, 0.01, 0.02])
        base = [rng.gauss(0.3, 0.03) for _ in range(n_seeds)]
        arms = {"base": base}
        for k in range(rng.randint(1, 5)):
            shift, noise = rng.choice([0.0, 0.003, -0.004, 0.03, -0.03, -0.015]), rng.choice([0.001, 0.004, 0.02])
            arms[f"a{k}"] = [b + shift + rng.gauss(0, noise) for b in base]
        s = summarize(rows_for(arms), margin=margin)
        for _, r in s[~s["baseline"]].iterrows():
            lo, hi, n = r["map50_95_delta_adj_lo"], r["map50_95_delta_adj_hi"], int(r["map50_95_delta_n"])
            level, sd = r["map50_95_delta_adj_level"], r["map50_95_delta_sd"]
            assert hi - r["map50_95_delta"] == pytest.approx(t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
            verdict = expected_verdict(lo, hi, margin)
            assert r["verdict"] == verdict, (trial, r["arm"])
            assert bool(r["map50_95_equiv"]) == (-margin < lo and hi < margin)
            assert bool(r["map50_95_noninf"]) == (lo > -margin)
            assert bool(r["map50_95_delta_sig"]) == (lo > 0 or hi < 0) == (r["map50_95_delta_p_holm"] <= 0.05)
            if verdict == "better":
                assert r["map50_95_noninf"]  # never "better" next to "not worse? no"
            expected = ttost_paired(pd.Series(arms[r["arm"]]).to_numpy(), pd.Series(base).to_numpy(), -margin, margin)
            assert r["map50_95_tost_p"] == pytest.approx(float(expected[0]), abs=1e-9)
            assert r["map50_95_noninf_p"] == pytest.approx(float(expected[1][1]), abs=1e-9)
            seen.add(verdict)
    assert {"better", "worse", "equivalent", "not worse", "undecided"} <= seen


def test_verdict_sentences_show_the_one_interval_they_rest_on():
    """Each verdict sentence holds exactly one interval (or its lower end), named by the decision it carries, and says
    what it covers."""
    margin = 0.02
    base = [0.30, 0.33, 0.31, 0.29, 0.32]
    arms = {"base": base,
            "same": [b + 0.001 * (-1) ** i for i, b in enumerate(base)],  # equivalent
            "lower": [b + 0.004 + 0.008 * (-1) ** i for i, b in enumerate(base)],  # not worse
            "up": [b + 0.06 + 0.002 * (-1) ** i for i, b in enumerate(base)],  # better
            "wild": [b + 0.05 * (-1) ** i for i, b in enumerate(base)]}  # undecided
    out = summarize(rows_for(arms), margin=margin).set_index("arm")
    assert dict(out["verdict"].drop(index="base")) == {"same": "equivalent", "lower": "not worse", "up": "better",
                                                        "wild": "undecided"}
    from yolo_necks.ablation.analyse.sections import verdict_section

    lines = verdict_section(out.reset_index(), "map50_95", 0.01, 0.95)
    for arm, name in (("same", "TOST's 1 − 2α′ interval"), ("lower", "one-sided"), ("up", "Holm-adjusted"),
                      ("wild", "Holm-adjusted")):
        line = next(x for x in lines if x.startswith(f"- **{arm}**")).split("; latency")[0]
        assert line.count("[") == (0 if arm == "lower" else 1) and name in line and "seeds only" in line, line
        if arm == "lower":
            lo = out.loc["lower", "map50_95_delta_adj_lo"]
            assert f"lower bound −{abs(lo):.3f}" in line


def test_without_a_margin_nothing_changes():
    s = summarize(rows_for({"base": [0.3, 0.31, 0.29], "a": [0.302, 0.309, 0.292]}))
    assert "map50_95_tost_p" not in s.columns and set(s["verdict"]) <= {"baseline", "no detectable difference"}
    assert s["margin"].isna().all()


def test_report_margin_from_the_command_line_and_the_spec(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(CPU_SWEEP, sweep)
    (sweep / "summary.md").unlink()
    assert cli_main(["report", str(sweep), "--margin", "0.05"]) == 0
    md = (sweep / "summary.md").read_text()
    assert "## Equivalence and non-inferiority (margin ±0.050)" in md and "One interval per arm and metric" in md
    summary = pd.read_csv(sweep / "summary.csv")
    assert set(summary["margin"]) == {0.05} and {"map50_95_tost_p", "map50_95_equiv"} <= set(summary.columns)
    assert "map50_95_tost_p_holm" not in summary.columns  # one family: no separate Holm for TOST
    verdicts = set(summary[~summary["baseline"]]["verdict"])
    assert verdicts <= {"better", "worse", "equivalent", "not worse", "undecided"}
    # the same margin from the sweep's spec.yaml; the command line wins over it
    spec = yaml.safe_load((sweep / "spec.yaml").read_text())
    (sweep / "spec.yaml").write_text(yaml.safe_dump({**spec, "margin": 0.03}))
    assert write_report(sweep)["margin"] == 0.03
    assert write_report(sweep, margin=0.02)["margin"] == 0.02
    assert cli_main(["report", str(sweep), "--margin", "zero"]) == 2
    assert "report: --margin must be a number, got 'zero'" in capsys.readouterr().err
    (sweep / "spec.yaml").write_text(yaml.safe_dump({**spec, "margin": -1}))
    with pytest.raises(NeckConfigError, match=r"spec.yaml: key 'margin': margin must be a number > 0"):
        write_report(sweep)


def test_spec_margin_key(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"margin": 0.01, "device": "cpu"}))
    assert load_spec(path).margin == 0.01 and load_spec(tmp_path / "s.yaml", {"margin": None}).margin is None
    with pytest.raises(NeckConfigError, match=r"s.yaml: key 'margin': must be a number > 0.0, got 'x'"):
        load_spec(path, {"margin": "x"})


def test_holm_of_equivalence_p_values_by_hand():
    """Three arms with TOST p 0.004, 0.02, 0.03 (m = 3): Holm 0.012, 0.04, 0.04 -> all equivalent at 5%."""
    assert holm([0.004, 0.02, 0.03]) == pytest.approx([0.012, 0.04, 0.04])
    assert Path(CPU_SWEEP / "results.csv").is_file()
