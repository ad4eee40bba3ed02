"""Paired comparisons of two pipelines: an interval that holds at 3-5 seeds, the minimum detectable difference, and
how a difference reads.

Two pipelines a and b are evaluated on the same questions with the same seeds (a seed fixes the data order of both).
Their per-question outcomes form two ``[S, Q]`` arrays of 0/1 hits (S seeds, Q questions); the quantity of interest
is the mean difference ``mean_{s,q} d[s, q]`` with ``d = a - b``. Its uncertainty has two sources, which seeds were
drawn (training randomness) and which questions were asked (a finite test set):

    d[s, q] = delta + u[s] + v[q] + e[s, q]

with delta the true difference, u the seed's effect (shared by all its questions), v the question's (a question one
pipeline gets right more often than the other in every seed) and e the rest. The grid mean's variance is
``var_u / S + var_v / Q + var_e / (S Q)``.

**The interval** (:func:`paired_interval`). Per seed, the mean paired difference over the questions: S numbers. Their
standard error ``se_seeds = sd(seed means) / sqrt(S)`` carries ``var_u / S + var_e / (S Q)`` and is estimated from S
numbers, so it gets Student's t with S - 1 degrees of freedom: with 3 seeds the 97.5% quantile is 4.30, not 1.96.
The seed means share the questions, so they leave out ``var_v / Q``; the two-way analysis of variance of d estimates
it (``se_questions``, from Q - 1 degrees of freedom). The 95% interval is

    diff ± sqrt((t_{0.975, S-1} se_seeds)^2 + (t_{0.975, Q-1} se_questions)^2)

the textbook t interval over the seed means when the question term is 0, a normal interval when the seed term is;
in between it covers at least 95% (for normal seed means: the chi-square(1) distribution function is concave). With
one seed there is no seed term: the interval is over the Q question differences of that seed alone, flagged as thin
evidence.

**Why not the percentile bootstrap** (:func:`paired_bootstrap`, kept for comparison): resampling 3 seeds with
replacement sees only those 3 values; the spread of the resampled means is ``(S - 1) / S`` of the seed term and its
percentiles are those of a normal curve, not of a t with 2 degrees of freedom. Where the seeds disagree it covers
the truth less often than 95%; where they agree it counts the question noise twice (once within each resampled
seed, once across them) and is too wide (the simulation of ``mixcpt_core/coverage.py``, in docs/evaluation.md).

**The minimum detectable difference** (:func:`minimum_detectable_difference`, MDD) at 80% power: each term's
quantile 0.975 + quantile 0.80 instead of quantile 0.975, i.e. ``(t_{0.975, S-1} + t_{0.80, S-1}) SE`` with one
term. It is the smallest true difference whose interval excludes 0 in about 80% of repeated experiments of the same
size. A true difference equal to the interval's half-width is detected only about half of the time.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np

THIN_SEEDS = 3  # fewer seeds than this: thin evidence (no seed term, or one estimated from two numbers)


# -- Student's t, without scipy ----------------------------------------------------------------------------------------
def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=4096)  # the intervals ask for a few (p, df) pairs over and over
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 2) = 4.302653``):
    Newton's method on :func:`t_cdf` from the normal quantile, kept inside a bracket that halves when a step leaves
    it. ``df = inf``: the normal quantile."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    z = NormalDist().inv_cdf(p)
    if math.isinf(df):
        return z
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    lo, hi, t = 0.0, max(2 * z, 1.0), z
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        err = t_cdf(t, df) - p
        if abs(err) < 1e-13:
            break
        lo, hi = (t, hi) if err < 0 else (lo, t)
        step = t - err / math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))  # Newton: err / density
        t = step if lo < step < hi else (lo + hi) / 2
    return t


# -- the interval ------------------------------------------------------------------------------------------------------
def variance_terms(d) -> dict:
    """The terms of the grid mean's variance from the two-way analysis of variance of ``d`` (``[S, Q]``, S >= 2,
    Q >= 2): ``{"seeds", "questions", "residual"}`` = the mean squares of seeds (``Q * var(d.mean(1))``), of questions
    (``S * var(d.mean(0))``) and of the residual, each divided by ``S * Q``. ``seeds`` is the squared standard error
    of the S seed means; ``questions - residual`` estimates ``var_v / Q``, the question term they leave out."""
    d = np.asarray(d, dtype=float)
    n_seeds, n_questions = d.shape
    seed_means, question_means = d.mean(1), d.mean(0)  # [S], [Q]
    resid = d - seed_means[:, None] - question_means[None, :] + d.mean()  # [S, Q]
    cells = n_seeds * n_questions
    return {"seeds": float(n_questions * seed_means.var(ddof=1)) / cells,
            "questions": float(n_seeds * question_means.var(ddof=1)) / cells,
            "residual": float((resid ** 2).sum()) / ((n_seeds - 1) * (n_questions - 1)) / cells}


def _combine(se_seeds: float, se_questions: float, n_seeds: int, n_questions: int, *probs: float) -> float:
    """``sqrt((k_S se_seeds)^2 + (k_Q se_questions)^2)`` with ``k_n`` the sum of ``t_{p, n - 1}`` over ``probs``; a
    term that is NaN (not estimable) or 0 is left out, NaN when both are."""
    terms = [(sum(t_quantile(p, n - 1) for p in probs) * se) ** 2
             for se, n in ((se_seeds, n_seeds), (se_questions, n_questions)) if se > 0]
    if not terms and math.isnan(se_seeds) and math.isnan(se_questions):
        return math.nan
    return math.sqrt(sum(terms))


def minimum_detectable_difference(se_seeds: float, se_questions: float, n_seeds: int, n_questions: int,
                                  level: float = 0.95, power: float = 0.80) -> float:
    """The true difference whose interval (at ``level``) excludes 0 with probability ``power``:
    ``sqrt(((t_{0.975, S-1} + t_{0.80, S-1}) se_seeds)^2 + ((t_{0.975, Q-1} + t_{0.80, Q-1}) se_questions)^2)``;
    with one term only (one value per seed, or one seed) the textbook ``(t_{0.975, n-1} + t_{0.80, n-1}) SE``."""
    return _combine(se_seeds, se_questions, n_seeds, n_questions, (1 + level) / 2, power)


def paired_interval(a_hits, b_hits, level: float = 0.95, power: float = 0.80) -> dict:
    """The interval and minimum detectable difference of ``mean(a - b)`` (see the module's text).

    ``a_hits``, ``b_hits``: ``[S, Q]`` arrays (seed x question, 0/1 or any score), row s of both from seed s and
    column q from question q; ``[S, 1]`` for one value per seed (a metric without per-question outcomes).

    * ``se_seeds``: the standard error of the mean of the S per-seed mean differences (``d.mean(1)``, ``[S]``),
      ``sqrt(var(seed means) / S)``; NaN with one seed.
    * ``se_questions``: the question term the seed means leave out, ``sqrt(max(questions - residual, 0))`` of
      :func:`variance_terms`; with one seed, the standard error of the Q question differences,
      ``sd(d[0]) / sqrt(Q)``; NaN without per-question outcomes (Q = 1).
    * the interval: ``diff ± sqrt((t_{0.975, S-1} se_seeds)^2 + (t_{0.975, Q-1} se_questions)^2)``, the textbook
      t interval over the seed means when the question term is 0; NaN when neither term can be estimated (one
      seed, one value).

    Returns ``{"diff", "lo", "hi", "se_seeds", "se_questions", "mdd", "n_seeds", "n_questions", "a_mean",
    "b_mean"}`` plus the reading of :func:`read_difference` (``"verdict", "resolved", "thin", "flag"``)."""
    a, b = np.asarray(a_hits, dtype=float), np.asarray(b_hits, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"paired_interval needs two [seeds, questions] arrays of one shape, got {a.shape}, {b.shape}")
    d = a - b  # [S, Q]
    n_seeds, n_questions = d.shape
    se_seeds = se_questions = math.nan
    if n_seeds >= 2 and n_questions >= 2:
        terms = variance_terms(d)
        se_seeds, se_questions = math.sqrt(terms["seeds"]), math.sqrt(max(terms["questions"] - terms["residual"], 0.0))
    elif n_seeds >= 2:  # one value per seed
        se_seeds = float(d[:, 0].std(ddof=1)) / math.sqrt(n_seeds)
    elif n_questions >= 2:  # one seed: the questions only
        se_questions = float(d[0].std(ddof=1)) / math.sqrt(n_questions)
    diff = float(d.mean())
    half = _combine(se_seeds, se_questions, n_seeds, n_questions, (1 + level) / 2)
    out = {"diff": diff, "lo": diff - half, "hi": diff + half, "se_seeds": se_seeds, "se_questions": se_questions,
           "mdd": minimum_detectable_difference(se_seeds, se_questions, n_seeds, n_questions, level, power),
           "n_seeds": n_seeds, "n_questions": n_questions, "a_mean": float(a.mean()), "b_mean": float(b.mean())}
    return {**out, **read_difference(out["lo"], out["hi"], n_seeds)}


def read_difference(lo: float, hi: float, n_seeds: int) -> dict:
    """How a difference a - b reads from its interval: the one place that words it (the README, docs and notebooks
    call this). Returns ``{"verdict": "higher" | "lower" | "no resolvable difference", "resolved": the interval
    excludes 0, "thin": fewer than THIN_SEEDS seeds, "flag": "" or "(1 seed: thin evidence)"}``. A thin result is
    shown with its flag and never in bold."""
    return {"verdict": "higher" if lo > 0 else "lower" if hi < 0 else "no resolvable difference",
            "resolved": bool(lo > 0 or hi < 0),  # False for a NaN interval
            "thin": n_seeds < THIN_SEEDS, "flag": thin_flag(n_seeds)}


def thin_flag(n_seeds: int) -> str:
    """``"(1 seed: thin evidence)"`` for fewer than :data:`THIN_SEEDS` seeds, else ``""``."""
    return f"({n_seeds} seed{'' if n_seeds == 1 else 's'}: thin evidence)" if n_seeds < THIN_SEEDS else ""


def interval_text(c, flag: bool = True) -> str:
    """``+0.116 [-0.015, +0.247]``, followed by :func:`read_difference`'s flag when the evidence is thin
    (``... (1 seed: thin evidence)``; ``flag=False``: for a table that flags it in its seeds column). ``c``: a
    mapping with ``diff``, ``lo``, ``hi``, ``n_seeds`` (a row of ``comparisons*.csv``); a NaN interval (a single
    value) reads ``+0.010 (no interval: a single value)``."""
    text = (f"{c['diff']:+.3f} (no interval: a single value)" if math.isnan(c["lo"]) else
            f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]")
    thin = read_difference(c["lo"], c["hi"], int(c["n_seeds"]))["flag"]
    return f"{text} {thin}" if thin and flag else text


def paired_bootstrap(a_hits, b_hits, n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> dict:
    """The earlier method, kept to show its coverage beside :func:`paired_interval`'s: a two-way paired percentile
    bootstrap of ``mean(a - b)``.

    ``a_hits``, ``b_hits``: ``[S, Q]`` arrays as in :func:`paired_interval`. Each replicate draws S seeds and Q
    questions with replacement, independently, and averages ``a - b`` over the drawn grid (a seed or question drawn
    k times counts k times); the interval is read off the replicates' percentiles.

    Returns ``{"diff", "lo", "hi", "half_width", "n_seeds", "n_questions", "a_mean", "b_mean"}``."""
    a, b = np.asarray(a_hits, dtype=float), np.asarray(b_hits, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"paired_bootstrap needs two [seeds, questions] arrays of one shape, got {a.shape}, {b.shape}")
    d = a - b  # [S, Q]
    n_seeds, n_questions = d.shape
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot)  # [B, S]
    question_counts = rng.multinomial(n_questions, np.full(n_questions, 1 / n_questions), size=n_boot)  # [B, Q]
    replicates = np.einsum("bs,sq,bq->b", seed_counts, d, question_counts) / (n_seeds * n_questions)  # [B]
    lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi), "half_width": float((hi - lo) / 2),
            "n_seeds": n_seeds, "n_questions": n_questions, "a_mean": float(a.mean()), "b_mean": float(b.mean())}


def projected_mdd(se_seeds: float, se_questions: float, n_seeds: int, n_questions: int, new_seeds: int,
                  level: float = 0.95, power: float = 0.80) -> float:
    """The minimum detectable difference of the same comparison run with ``new_seeds`` seeds instead of ``n_seeds``
    (a design question: how many seeds to declare). The seed term is the standard error of a mean of seed means, so
    the seeds' spread ``sd = se_seeds * sqrt(n_seeds)`` gives ``sd / sqrt(new_seeds)``; the question term
    (``var_v / Q``, the same questions) stays. Both with their quantiles at the new degrees of freedom
    (:func:`minimum_detectable_difference`)."""
    if n_seeds < 2 or new_seeds < 2:
        raise ValueError(f"projected_mdd needs a seed term measured on >= 2 seeds and >= 2 new seeds, got "
                         f"{n_seeds} and {new_seeds}")
    spread = se_seeds * math.sqrt(n_seeds)
    return minimum_detectable_difference(spread / math.sqrt(new_seeds), se_questions, new_seeds, n_questions,
                                         level, power)


def seeds_for_mdd(se_seeds: float, se_questions: float, n_seeds: int, n_questions: int, target: float,
                  max_seeds: int = 1000) -> int:
    """The fewest seeds whose :func:`projected_mdd` is at most ``target``; :class:`ValueError` if the question term
    alone exceeds it (no number of seeds reaches it) or ``max_seeds`` do not."""
    for s in range(2, max_seeds + 1):
        if projected_mdd(se_seeds, se_questions, n_seeds, n_questions, s) <= target:
            return s
    raise ValueError(f"no number of seeds up to {max_seeds} brings the minimum detectable difference to {target}")


__all__ = ["THIN_SEEDS", "t_cdf", "t_quantile", "variance_terms", "minimum_detectable_difference", "paired_interval",
           "read_difference", "thin_flag", "interval_text", "paired_bootstrap", "projected_mdd", "seeds_for_mdd"]
