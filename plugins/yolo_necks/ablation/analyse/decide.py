"""One decision rule for every verdict, in plain numbers: what a seed-averaged paired Δ's interval covers, the
family's adjusted intervals, and the verdict each interval gives.

Pure (no pandas, no files): the summary (:func:`.stats.add_inference`) and the calibration benchmark
(``ablations/calibration.py``, which measures the rule's error rates on simulated sweeps with known truth) call the
very same functions.

**What an interval covers.** A comparison's Δ is the mean over ``n`` seeds of the paired differences
``d_s = arm_s − baseline_s``. Its uncertainty has two parts (:class:`Evidence`):

- the seeds: the standard error ``sd/√n``, ``sd`` the SD of the paired differences with ``n − 1`` degrees of freedom
  (with adaptive seeds, Stein's two-stage procedure: the pilot's SD and the pilot's pairs − 1, :mod:`.stopping`);
- the val set: ``SE_val = √v``, ``v`` the variance of the seed-averaged Δ over the runs' paired bootstrap replicates
  (the same image resamples in every run, :mod:`.valshare`): how much Δ would move with another draw of val images.
  Every run is validated on the same images, so this part is shared by all seeds and more seeds never shrink it.
  Its degrees of freedom are the val images − 1 (unknown: treated as large).

The interval at level ``L`` adds the two parts in quadrature, each at its own Student-t quantile:
``Δ ± √((t(q, df_seed)·sd/√n)² + (t(q, df_val)·SE_val)²)``, ``q = 1 − (1 − L)/2`` (Banerjee's interval for a sum of
independently estimated variances: it holds at least its level, where a Welch-Satterthwaite t undercovers when the
seed SD comes from 3-5 seeds: the SD's chance lows raise its degrees of freedom, measured 7.1% instead of 5% at 3
seeds). ``v`` also holds the per-run part of the val noise, which ``sd`` already holds: counted twice, which errs on
the safe side. The p-value of Δ = 0 is the level at which that interval touches 0 (:func:`p_value`), so an interval
excludes 0 exactly when its p-value is below one minus its level. Without replicates (older sweeps, metrics that
have none) the val part is unknown and the interval covers the seeds only; :attr:`Evidence.covers` says which.

**The rule** (:func:`decide`). Per comparison the two-sided p-value of Δ = 0; Holm over the family; one interval per
comparison at the level Holm tested it (:func:`holm_levels`: ``1 − α/(m − j + 1)`` for the comparison rejected at
step ``j``, the Bonferroni ``1 − α/m`` for the others), and every verdict read off that one interval
(:func:`verdict_of`): **better**/**worse** when it excludes 0; else, with a margin, **equivalent** when it lies
inside ±margin, **not worse** when its worse end clears −margin (for a higher-is-better metric its lower end, a
one-sided bound at ``1 − (1 − level)/2``), else **undecided**; without a margin **no detectable difference**. So the
verdicts of one comparison never disagree, the sentence shows the one interval its verdict rests on, and the
calibration measures the family-wise error of all verdicts together (``docs/statistics.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from .tdist import finite, t_pdf, t_ppf, t_sf

NAN, INF = float("nan"), float("inf")


# -------------------------------------------------------------------------------------- multiple comparisons
def _holm(pvalues: Sequence[float]) -> tuple[list[float], list[int], int]:
    """(adjusted p-values, Holm step of each p (1-based; ties share the step of the first of them; 0 for no p), m)."""
    ps = [float(p) if finite(p) else NAN for p in pvalues]
    order = sorted((i for i, p in enumerate(ps) if math.isfinite(p)), key=lambda i: ps[i])
    m = len(order)
    adjusted, steps = [NAN] * len(ps), [0] * len(ps)
    running, prev_p, prev_step = 0.0, None, 0
    for j, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - j + 1) * ps[i]))
        adjusted[i] = running
        prev_step = prev_step if ps[i] == prev_p else j
        steps[i], prev_p = prev_step, ps[i]
    return adjusted, steps, m


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    With the ``m`` finite p-values sorted ascending, ``p_adj(j) = max_{k<=j} min(1, (m-k+1) · p(k))``; NaN entries
    (arms without a p-value: fewer than 2 paired seeds, failed, the baseline itself) stay NaN and do not count in
    ``m``. Rejecting every hypothesis with ``p_adj <= alpha`` keeps the family-wise error rate at ``alpha``.
    """
    return _holm(pvalues)[0]


def holm_levels(pvalues: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Confidence level of each comparison's *adjusted interval*, consistent with Holm's decisions at ``alpha``.

    An arm rejected at Holm step ``j`` gets the level ``1 - alpha/(m-j+1)``, the level at which Holm tested it: its
    p <= alpha/(m-j+1), so that interval excludes 0. A non-rejected arm gets the Bonferroni level ``1 - alpha/m``:
    Holm did not reject it, so ``m · p > alpha`` and that interval contains 0. The interval shown therefore never
    contradicts the verdict. Non-rejected intervals hold simultaneously with probability >= 1 - alpha (Bonferroni);
    a rejected arm's interval is narrower, at the level of its own step: it decides the sign (family-wise error <=
    alpha), and its width is that step's (the calibration measures how often all intervals hold together). NaN p
    gives NaN.
    """
    adjusted, steps, m = _holm(pvalues)
    out = []
    for adj, step in zip(adjusted, steps):
        if not math.isfinite(adj):
            out.append(NAN)
        elif adj <= alpha:
            out.append(1.0 - alpha / (m - step + 1))
        else:
            out.append(1.0 - alpha / m)
    return out


# ---------------------------------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class Evidence:
    """One comparison's Δ as the rule needs it: the mean over ``n`` paired seeds, the SD over seeds its seed part
    uses with that SD's degrees of freedom, and the val set's standard error of the mean with its degrees of freedom
    (NaN: not known, the interval covers the seeds only)."""

    mean: float
    n: int
    seed_sd: float
    seed_df: float
    val_se: float = NAN
    val_df: float = INF

    @property
    def seed_se(self) -> float:
        return self.seed_sd / math.sqrt(self.n)

    @property
    def val(self) -> bool:
        """Whether the val set's part is known (and in the interval)."""
        return finite(self.val_se)

    @property
    def covers(self) -> str:
        return "seeds and val images" if self.val else "seeds only"


def _sd(d: Sequence[float]) -> tuple[float, float]:
    """(mean, SD) of differences; an SD below 1e-12 of their magnitude (rounding) is 0."""
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return mean, (0.0 if sd <= 1e-12 * max(abs(x) for x in d) else sd)


def paired_evidence(d: Sequence[float], pilot: Sequence[float] | None = None, val_var: float = NAN,
                    val_df: float = INF) -> Evidence | None:
    """The :class:`Evidence` of the mean of the paired differences ``d`` (every paired seed).

    ``pilot``: the differences of the pilot seeds under Stein's two-stage adaptive seeds; their SD and pairs − 1
    degrees of freedom make the seed part (``n`` was fixed from that SD, so ``mean(d) − Δ`` over ``sd0/√n`` is
    exactly Student's t with the pilot's degrees of freedom); None: the SD of ``d`` with ``n − 1``. ``val_var``: the
    val-set variance of the seed-averaged Δ (NaN: not known, the seeds only), ``val_df`` its degrees of freedom.
    None with fewer than 2 differences (or 2 pilot differences): no interval."""
    d = [float(x) for x in d]
    n = len(d)
    if n < 2 or (pilot is not None and len(pilot) < 2):
        return None
    mean, sd = _sd(d)
    seed_df = n - 1.0
    if pilot is not None:
        sd, seed_df = _sd([float(x) for x in pilot])[1], len(pilot) - 1.0
    val_se = math.sqrt(val_var) if finite(val_var) and val_var >= 0 else NAN
    return Evidence(mean, n, sd, seed_df, val_se, val_df if math.isfinite(val_se) else INF)


def _quantile(q: float, df: float) -> float:
    return NormalDist().inv_cdf(q) if math.isinf(df) else t_ppf(q, df)


def _sf(x: float, df: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0)) if math.isinf(df) else t_sf(x, df)


def _pdf(x: float, df: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) if math.isinf(df) else t_pdf(x, df)


def half_width(ev: Evidence, level: float) -> float:
    """Half-width of the two-sided ``level`` interval: each part at its own t quantile, added in quadrature."""
    q = 0.5 + level / 2.0
    seed = _quantile(q, ev.seed_df) * ev.seed_se if ev.seed_se > 0 else 0.0
    val = _quantile(q, ev.val_df) * ev.val_se if ev.val and ev.val_se > 0 else 0.0
    return math.hypot(seed, val)


def interval(ev: Evidence, level: float) -> tuple[float, float]:
    """The two-sided ``level`` interval of Δ."""
    half = half_width(ev, level)
    return ev.mean - half, ev.mean + half


def _tail(x: float, ev: Evidence) -> float:
    """The one-sided tail ``s`` at which the interval's half-width (two-sided level ``1 − 2s``) equals ``x >= 0``:
    the p-value of a one-sided test at distance ``x``. One part: its t tail. Both: Newton's method on the two
    quantiles (equal tails, half-widths adding up in quadrature to ``x``), from the total standard error."""
    a = ev.seed_se if ev.seed_se > 0 else 0.0
    b = ev.val_se if ev.val and ev.val_se > 0 else 0.0
    if a == 0.0 and b == 0.0:
        return 0.0 if x > 0 else 0.5
    if b == 0.0:
        return _sf(x / a, ev.seed_df)
    if a == 0.0:
        return _sf(x / b, ev.val_df)
    k1, k2 = ev.seed_df, ev.val_df
    u = v = x / math.hypot(a, b)  # the seed part's and the val part's quantiles
    for _ in range(100):
        s1, s2 = _sf(u, k1), _sf(v, k2)
        if s1 <= 0.0 or s2 <= 0.0:
            return 0.0
        g1, g2 = (a * u) ** 2 + (b * v) ** 2 - x * x, math.log(s1) - math.log(s2)
        h1, h2 = _pdf(u, k1) / s1, _pdf(v, k2) / s2  # d(-log sf)/dt: the hazards
        det = 2.0 * a * a * u * h2 + 2.0 * b * b * v * h1
        du, dv = (-g1 * h2 + 2.0 * b * b * v * g2) / det, (-2.0 * a * a * u * g2 - h1 * g1) / det
        while u + du <= 0.0 or v + dv <= 0.0:
            du, dv = du / 2.0, dv / 2.0
        u, v = u + du, v + dv
        if abs(du) <= 1e-13 * u and abs(dv) <= 1e-13 * v:
            break
    return _sf(u, k1)


def p_value(ev: Evidence) -> float:
    """Two-sided p-value of Δ = 0: one minus the level at which the interval touches 0 (no cancellation in the
    tails); without any noise, 0 (1 when the mean is 0)."""
    if ev.seed_se == 0.0 and not (ev.val and ev.val_se > 0):
        return 1.0 if ev.mean == 0.0 else 0.0
    return min(1.0, 2.0 * _tail(abs(ev.mean), ev))


def one_sided(ev: Evidence, bound: float, above: bool) -> float:
    """p-value of ``H0: Δ <= bound`` (``above``) or ``H0: Δ >= bound``, from the same interval: the one-sided bound
    at ``1 − p`` touches ``bound``; without any noise, 0 when the mean lies strictly on the alternative's side, else
    1."""
    x = (ev.mean - bound) if above else (bound - ev.mean)
    if ev.seed_se == 0.0 and not (ev.val and ev.val_se > 0):
        return 0.0 if x > 0 else 1.0
    return _tail(x, ev) if x >= 0 else 1.0 - _tail(-x, ev)


# ----------------------------------------------------------------------------------------------------- the rule
def verdict_of(lo: float, hi: float, margin: float | None = None, higher_is_better: bool = True) -> str:
    """The verdict one interval gives: ``better``/``worse`` when it excludes 0 (by the metric's direction); else,
    with a ``margin``, ``equivalent`` when it lies strictly inside ±margin, ``not worse`` when its worse end clears
    −margin (the lower end for a higher-is-better metric), else ``undecided``; without one ``no detectable
    difference``."""
    if lo > 0.0 or hi < 0.0:
        return "better" if (lo > 0.0) == higher_is_better else "worse"
    if margin is None:
        return "no detectable difference"
    if -margin < lo and hi < margin:
        return "equivalent"
    if (lo > -margin) if higher_is_better else (hi < margin):
        return "not worse"
    return "undecided"


@dataclass(frozen=True)
class Decision:
    """One comparison's place in its family: p and Holm p, the adjusted interval at ``level`` and the verdict read off
    it; ``equiv``/``noninf``: the interval lies inside ±margin / its worse end clears −margin (None without a
    margin)."""

    p: float
    p_holm: float
    level: float
    lo: float
    hi: float
    verdict: str
    equiv: bool | None = None
    noninf: bool | None = None

    @property
    def sig(self) -> bool:
        """The adjusted interval excludes 0 (exactly when Holm rejects)."""
        return self.lo > 0.0 or self.hi < 0.0


def decide(evidence: Sequence[Evidence | None], alpha: float = 0.05, margin: float | None = None,
           higher_is_better: bool = True) -> list[Decision | None]:
    """The family's decisions: per comparison (None: no interval, left out of the family) its p-value, Holm over
    the ``m`` that have one, the adjusted interval at :func:`holm_levels`' level and its :func:`verdict_of`."""
    ps = [p_value(ev) if ev is not None else NAN for ev in evidence]
    adjusted, levels = holm(ps), holm_levels(ps, alpha)
    out: list[Decision | None] = []
    for ev, p, p_adj, level in zip(evidence, ps, adjusted, levels):
        if ev is None:
            out.append(None)
            continue
        lo, hi = interval(ev, level)
        verdict = verdict_of(lo, hi, margin, higher_is_better)
        if margin is None:
            out.append(Decision(p, p_adj, level, lo, hi, verdict))
        else:
            noninf = lo > -margin if higher_is_better else hi < margin
            out.append(Decision(p, p_adj, level, lo, hi, verdict, -margin < lo and hi < margin, noninf))
    return out


def margin_pvalues(ev: Evidence, margin: float, higher_is_better: bool = True) -> tuple[float, float]:
    """``(tost_p, noninf_p)``: the unadjusted one-sided p-values of equivalence within ±margin (the larger of the
    two one-sided tests, TOST) and of non-inferiority (not worse than −margin), from the same interval. For
    reference only: the verdicts rest on the adjusted interval (:func:`decide`)."""
    lower = one_sided(ev, -margin, above=True)
    upper = one_sided(ev, margin, above=False)
    return max(lower, upper), (lower if higher_is_better else upper)
