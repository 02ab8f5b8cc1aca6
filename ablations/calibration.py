"""Calibration benchmark: the error rates of the harness's decisions, measured on simulated sweeps with known truth.

    python ablations/calibration.py --replicates 20000 --seed 1 --out ablations/results/<date>-calibration

Only the training is simulated. Every sweep has a baseline and 1 or 6 arms with known true Δ, up to 20 seeds, and
runs validated on the same 48 val images: a run's mAP is ``μ_arm + seed effect + the mean over the images of
(the arm's image effect, shared by all its runs: the val-set effect + the run's own image noise)``. From those runs
the decisions go through the project's own code, the functions ``yolo-necks report`` and adaptive seeds use:

- the bootstrap replicates resample the images with the harness's own indices
  (:func:`yolo_necks.ablation.execute.valnoise.resample_indices`, 200 resamples), and the val-set variance of the
  seed-averaged Δ comes from :func:`yolo_necks.ablation.analyse.valshare.seed_mean_val_variance`;
- each arm's :class:`~yolo_necks.ablation.analyse.decide.Evidence` from
  :func:`~yolo_necks.ablation.analyse.decide.paired_evidence` (seed part, val part, Welch-Satterthwaite; Stein's
  pilot), adaptive seeds' totals from :func:`~yolo_necks.ablation.analyse.stopping.stein_seeds`;
- the verdicts from :func:`~yolo_necks.ablation.analyse.decide.decide` (Holm, one adjusted interval per arm, one
  rule: better / worse / equivalent / not worse / undecided).

Per procedure and scenario, ``calibration.csv`` holds the family-wise rate of wrong verdicts (any arm declared
better or worse when its Δ is 0 or of the other sign, equivalent when |Δ| >= margin, not worse when Δ <= −margin;
empty where every arm has a true effect and no margin: those rows measure power only), its Monte-Carlo SE, the
coverage of the arms' unadjusted 95% intervals (does the standard error hold what it claims?), the coverage of the
adjusted intervals together (every arm's at once), the power (arms with a true effect declared better; with a margin
and Δ = 0, arms declared equivalent) and the mean seeds per arm. Procedures whose name holds ``(reference`` are not
what the harness does: the seed-only interval (no val term) and the earlier rule of adaptive seeds (stop once the
current interval is narrow enough), kept to show how they fail.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_necks.ablation.analyse.decide import decide, interval, paired_evidence
from yolo_necks.ablation.analyse.stopping import stein_seeds
from yolo_necks.ablation.analyse.tdist import t_ppf
from yolo_necks.ablation.analyse.valshare import seed_mean_val_variance
from yolo_necks.ablation.execute.valnoise import RESAMPLES, resample_indices

ALPHA = 0.05
MAX_SEEDS = 20
IMAGES = 48  # the reduced default's val split
COLUMNS = ["procedure", "scenario", "alpha", "replicates", "error_rate", "error_rate_se", "coverage", "power",
           "mean_seeds", "coverage_adjusted"]


@dataclass(frozen=True)
class Noise:
    """The noise of one paired Δ: ``sigma`` the SD of a paired difference over seeds (training and the runs' own val
    noise together, what the SD over seeds sees), ``tau`` the SD of the val-set effect on Δ shared by all seeds,
    ``omega`` the SD of the per-run val noise of a paired difference (part of ``sigma``)."""

    name: str
    sigma: float
    tau: float
    omega: float


# from the committed placement sweep (ablations/results/2026-12-02-placement-cpu-2core): paired SD of Δ mAP50-95
# over seeds 0.010-0.067 (median ~0.03), per-pair bootstrap SD over the val images 0.011-0.015 (= sqrt(tau² + omega²)),
# and the 48- vs 192-image re-validation (val_size.csv), which splits it into a shared part of ~0.003-0.008 and a
# per-run part of ~0.009
REALISTIC = Noise("realistic noise", 0.03, 0.006, 0.009)
VAL_HEAVY = Noise("val-heavy noise", 0.010, 0.006, 0.009)  # like dyca-head: small SD over seeds, same val set
SEEDS_ONLY = Noise("seed noise only", 0.03, 0.0, 0.0)  # no val-set noise: the setting of the earlier simulation


@dataclass(frozen=True)
class Scenario:
    name: str
    noise: Noise
    deltas: tuple[float, ...]  # true Δ of each arm
    margin: float | None = None

    @property
    def label(self) -> str:
        return f"{self.noise.name}: {self.name}"

    @property
    def measures_error(self) -> bool:
        """False where every arm has a true effect and no margin is set: no verdict can be a false positive."""
        return self.margin is not None or any(d == 0.0 for d in self.deltas)


@dataclass(frozen=True)
class Procedure:
    name: str
    kind: str  # fixed | stein | sdstop (reference) | seedonly (reference)
    seeds: int  # fixed: the seeds; stein / sdstop: the pilot (min)
    target: float = math.nan  # stein / sdstop: in units of the noise's sigma

    @property
    def reference(self) -> bool:
        return self.kind in ("sdstop", "seedonly")


PROCEDURES = [
    Procedure("fixed 3 seeds", "fixed", 3),
    Procedure("fixed 5 seeds", "fixed", 5),
    *[Procedure(f"adaptive Stein pilot {n0}, target {r:g}·sd", "stein", n0, r) for n0 in (3, 5) for r in (0.5, 1, 2)],
]
REFERENCES = [
    Procedure("fixed 5 seeds, seed-only interval (reference: no val term)", "seedonly", 5),
    Procedure("adaptive stop when narrow, min 3, target 1·sd (reference: the earlier rule)", "sdstop", 3, 1.0),
    Procedure("adaptive stop when narrow, min 3, target 0.5·sd (reference: the earlier rule)", "sdstop", 3, 0.5),
    Procedure("adaptive stop when narrow, min 2, target 1·sd (reference: the earlier rule)", "sdstop", 2, 1.0),
]


def scenarios() -> list[tuple[Scenario, bool]]:
    """(scenario, whether the reference procedures run on it too)."""
    out = []
    for noise, delta, margin, wide in ((REALISTIC, 0.045, 0.03, 0.06), (VAL_HEAVY, 0.02, 0.02, 0.04)):
        out += [
            (Scenario("null, 1 arm", noise, (0.0,)), True),
            (Scenario("null, 6 arms", noise, (0.0,) * 6), True),
            (Scenario(f"alternative, 1 arm at +{delta:g}", noise, (delta,)), False),
            (Scenario(f"alternative, 6 arms: 3 at +{delta:g}, 3 at 0", noise, (delta,) * 3 + (0.0,) * 3), False),
            (Scenario(f"margin ±{margin:g}, 1 arm at −margin", noise, (-margin,), margin), False),
            (Scenario(f"margin ±{margin:g}, 6 arms at −margin", noise, (-margin,) * 6, margin), True),
            (Scenario(f"margin ±{margin:g}, 6 arms at +margin", noise, (margin,) * 6, margin), False),
            (Scenario(f"margin ±{margin:g}, 6 arms at 0", noise, (0.0,) * 6, margin), False),
            (Scenario(f"margin ±{wide:g}, 6 arms at 0", noise, (0.0,) * 6, wide), False),
        ]
    out += [(Scenario("null, 1 arm", SEEDS_ONLY, (0.0,)), True),
            (Scenario("null, 6 arms", SEEDS_ONLY, (0.0,) * 6), True)]
    return out


# ------------------------------------------------------------------------------------------------- simulation
def simulate(sc: Scenario, reps: int, rng: np.random.Generator, counts: np.ndarray):
    """``reps`` simulated sweeps of ``MAX_SEEDS`` seeds: the paired differences ``d`` (reps, arms, seeds) and the
    val-set variance ``v[n]`` (reps, arms) of the mean over the first ``n`` seeds, from bootstrap replicates."""
    noise, m = sc.noise, len(sc.deltas)
    train = math.sqrt(max(noise.sigma**2 - noise.omega**2, 0.0) / 2.0)  # per run: a paired difference has twice it
    u_sd, w_sd = noise.tau / math.sqrt(2.0) * math.sqrt(IMAGES), noise.omega / math.sqrt(2.0) * math.sqrt(IMAGES)
    e = rng.normal(0.0, train, size=(reps, m + 1, MAX_SEEDS))
    u = rng.normal(0.0, u_sd, size=(reps, m + 1, 1, IMAGES)) if noise.tau else np.zeros((reps, m + 1, 1, IMAGES))
    w = rng.normal(0.0, w_sd, size=(reps, m + 1, MAX_SEEDS, IMAGES)) if noise.omega else 0.0
    per_image = u + w  # (reps, arms+1, seeds, images): the run's score on each val image, less its mean
    runs = e + per_image.mean(axis=-1) if noise.tau or noise.omega else e
    d = runs[:, 1:, :] - runs[:, :1, :] + np.asarray(sc.deltas)[None, :, None]
    v = {}
    if noise.tau or noise.omega:
        diff = (per_image[:, 1:] - per_image[:, :1]) if noise.omega else np.broadcast_to(
            per_image[:, 1:] - per_image[:, :1], (reps, m, MAX_SEEDS, IMAGES))
        reps_b = diff @ (counts.T / IMAGES)  # (reps, arms, seeds, resamples): the replicates of each seed's Δ
        for n in range(2, MAX_SEEDS + 1):
            v[n] = seed_mean_val_variance(reps_b[:, :, :n, :])
    else:
        zeros = np.zeros((reps, m))
        v = {n: zeros for n in range(2, MAX_SEEDS + 1)}
    return d, v


def _sdstop_n(d: np.ndarray, lo: int, target: float) -> np.ndarray:
    """The earlier rule: the first n >= ``lo`` whose current 95% half-width (sample SD over n seeds) is within
    ``target``, else ``MAX_SEEDS`` (reps, arms)."""
    n_all = np.arange(1, MAX_SEEDS + 1)
    csum, csq = np.cumsum(d, axis=-1), np.cumsum(d * d, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (csq - csum**2 / n_all) / (n_all - 1)
    half = np.sqrt(np.maximum(var, 0.0)) * np.array([t_ppf(0.975, n - 1) if n > 1 else np.inf for n in n_all]) \
        / np.sqrt(n_all)
    ok = (half <= target) & (n_all >= lo)
    ok[..., -1] = True
    return np.argmax(ok, axis=-1) + 1


def _wrong(verdict: str, delta: float, margin: float | None) -> bool:
    """Whether a verdict on an arm with true ``delta`` is wrong (a higher-is-better metric)."""
    if verdict == "better":
        return delta <= 0.0
    if verdict == "worse":
        return delta >= 0.0
    if verdict == "equivalent":
        return abs(delta) >= margin
    if verdict == "not worse":
        return delta <= -margin
    return False


def run_row(proc: Procedure, sc: Scenario, d: np.ndarray, v: dict) -> dict:
    """Push the simulated sweeps through the harness's decision code; tally errors, coverage, power, seeds."""
    reps, m = d.shape[0], d.shape[1]
    sigma = sc.noise.sigma
    target = proc.target * sigma
    if proc.kind == "sdstop":
        stop = _sdstop_n(d, proc.seeds, target)
    deltas = sc.deltas
    errors = covered = covered_all = powered = n_power = seeds = 0
    d_list = d.tolist()
    v_list = {n: a.tolist() for n, a in v.items()}
    for r in range(reps):
        evidence = []
        for k in range(m):
            dk = d_list[r][k]
            if proc.kind in ("fixed", "seedonly"):
                n = proc.seeds
                pilot = None
            elif proc.kind == "stein":
                pilot = dk[: proc.seeds]
                n = stein_seeds(float(np.std(pilot, ddof=1)), proc.seeds, target, 0.95, MAX_SEEDS)
            else:
                n, pilot = int(stop[r, k]), None
            seeds += n
            if proc.kind in ("fixed", "stein"):
                evidence.append(paired_evidence(dk[:n], pilot, v_list[n][r][k], IMAGES - 1.0))
            else:  # the reference procedures: the seeds only, as summaries did before the val term
                evidence.append(paired_evidence(dk[:n]))
        decisions = decide(evidence, ALPHA, sc.margin)
        wrong, all_in = False, True
        for ev, dec, delta in zip(evidence, decisions, deltas):
            wrong = wrong or _wrong(dec.verdict, delta, sc.margin)
            lo, hi = interval(ev, 0.95)
            covered += lo <= delta <= hi
            all_in = all_in and dec.lo <= delta <= dec.hi
            if sc.margin is None and delta != 0.0:
                n_power += 1
                powered += dec.verdict == ("better" if delta > 0 else "worse")
            elif sc.margin is not None and delta == 0.0:
                n_power += 1
                powered += dec.verdict == "equivalent"
        errors += wrong
        covered_all += all_in
    rate = errors / reps
    return {
        "procedure": proc.name,
        "scenario": sc.label,
        "alpha": ALPHA,
        "replicates": reps,
        "error_rate": f"{rate:.5f}" if sc.measures_error else "",
        "error_rate_se": f"{math.sqrt(rate * (1 - rate) / reps):.5f}" if sc.measures_error else "",
        "coverage": f"{covered / (reps * m):.5f}",
        "power": f"{powered / n_power:.5f}" if n_power else "",
        "mean_seeds": f"{seeds / (reps * m):.3f}",
        "coverage_adjusted": f"{covered_all / reps:.5f}",
    }


def run(replicates: int, seed: int, out: Path | None = None, log=print) -> list[dict]:
    """Every row of the table; writes ``out/calibration.csv`` when ``out`` is given."""
    counts = np.zeros((RESAMPLES, IMAGES))
    for b, idx in enumerate(resample_indices(IMAGES, RESAMPLES)):  # the harness's own resamples
        np.add.at(counts[b], idx, 1.0)
    rows = []
    t0 = time.perf_counter()
    for i, (sc, with_refs) in enumerate(scenarios()):
        rng = np.random.default_rng([seed, i])
        chunk = max(1, min(replicates, 200_000 // (len(sc.deltas) * MAX_SEEDS * 10)))
        parts = []
        for start in range(0, replicates, chunk):
            parts.append(simulate(sc, min(chunk, replicates - start), rng, counts))
        d = np.concatenate([p[0] for p in parts])
        v = {n: np.concatenate([p[1][n] for p in parts]) for n in parts[0][1]}
        for proc in PROCEDURES + (REFERENCES if with_refs else []):
            rows.append(run_row(proc, sc, d, v))
            log(f"[{time.perf_counter() - t0:7.0f} s] {sc.label} | {proc.name}: error {rows[-1]['error_rate'] or '-'}"
                f", coverage {rows[-1]['coverage']}, power {rows[-1]['power'] or '-'}, seeds {rows[-1]['mean_seeds']}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "calibration.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        log(f"{len(rows)} rows in {time.perf_counter() - t0:.0f} s (process CPU {time.process_time():.0f} s) on "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()} -> "
            f"{out / 'calibration.csv'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=20000, help="simulated sweeps per row (default 20000)")
    ap.add_argument("--seed", type=int, default=1, help="RNG seed (default 1)")
    ap.add_argument("--out", type=Path, required=True, help="folder for calibration.csv")
    args = ap.parse_args(argv)
    if args.replicates < 1:
        ap.error("--replicates must be >= 1")
    run(args.replicates, args.seed, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
