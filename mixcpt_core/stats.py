"""Paired comparisons with confidence intervals: a two-way bootstrap over seeds and questions.

Two pipelines a and b are evaluated on the same questions with the same seeds (a seed fixes the data order of both).
Their per-question outcomes form two ``[S, Q]`` arrays of 0/1 hits (S seeds, Q questions); the quantity of interest
is the mean difference ``mean_{s,q} (a[s,q] - b[s,q])``. Its uncertainty has two sources: which questions were asked
(a finite test set) and which seeds were drawn (training randomness). :func:`paired_bootstrap` resamples both at
once, independently, keeping the pairing (the same resampled seeds and questions for a and b), and reads the 95%
interval off the percentiles.

**Resolution.** The half-width of that interval is the smallest difference the evaluation can resolve: a true
difference smaller than it gives an interval that contains 0. It shrinks with more questions only down to the seed
term; with 3 seeds, seed-to-seed spread usually dominates.
"""

from __future__ import annotations

import numpy as np


def paired_bootstrap(a_hits, b_hits, n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> dict:
    """Two-way paired bootstrap of ``mean(a - b)``.

    ``a_hits``, ``b_hits``: ``[S, Q]`` arrays (seed x question, 0/1 or any score), row s of both from seed s and
    column q from question q. Each replicate draws S seeds and Q questions with replacement, independently, and
    averages ``a - b`` over the drawn grid (a seed or question drawn k times counts k times).

    Returns ``{"diff", "lo", "hi", "half_width", "n_seeds", "n_questions", "a_mean", "b_mean"}``: the observed mean
    difference, the percentile interval at ``level`` and its half-width (the resolution)."""
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


__all__ = ["paired_bootstrap"]
