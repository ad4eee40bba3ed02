"""How often the paired intervals cover the truth: a simulation with the lab's own variances.

``python -m mixcpt_core.coverage`` simulates many experiments of two pipelines answering the same questions with the
same seeds, with a known true difference, and counts how often each 95% interval contains it: the project's
interval (:func:`mixcpt_core.stats.paired_interval`), the earlier percentile bootstrap
(:func:`mixcpt_core.stats.paired_bootstrap`) and a t interval over the seed means alone (which leaves out which
questions were asked). It writes ``figures/interval_coverage.csv`` and renders its table into docs/evaluation.md
(between :data:`COVERAGE_BEGIN` and :data:`COVERAGE_END`); ``--render-only`` renders the committed CSV again.

**The simulated lab** (:func:`simulate_hits`), per experiment: Q questions with base rates uniform in [0.45, 0.55];
per question an effect v (which pipeline the question favours in every seed: -0.4, 0 or +0.4, standard deviation
``question_sd``), per seed an effect u (normal with standard deviation ``seed_sd``, cut at 3 SD); pipeline a answers
with probability ``base + (diff + u + v) / 2``, b with ``base - (diff + u + v) / 2``, so that the expected difference
is exactly ``diff``. Within a cell a and b share their random draw half of the time (the same question is easy or
hard for both, as in the lab's hits). The two scenarios take ``seed_sd``, ``question_sd``, Q and ``diff`` from the
committed chat-start hits (``figures/hits_full.json``, Mix-CPT vs traditional): on domain QA the seeds disagree
most, on general QA the questions do.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .stats import minimum_detectable_difference, paired_bootstrap, paired_interval, variance_terms

SPREAD = 0.4  # the size of a question's effect v (-SPREAD, 0 or +SPREAD)
COVERAGE_CSV = "figures/interval_coverage.csv"
COVERAGE_COLUMNS = ("scenario", "n_seeds", "n_questions", "seed_sd", "question_sd", "true_diff", "method",
                    "experiments", "resamples", "coverage", "mean_half_width", "design_mdd", "detected_at_mdd")
METHODS = {"t_interval": "t interval with the question term (this project)",
           "bootstrap": "percentile bootstrap over seeds and questions (earlier)",
           "seed_t": "t interval over the seed means alone"}
COVERAGE_BEGIN = ("<!-- coverage:begin (rendered by `python -m mixcpt_core.coverage` from "
                  "figures/interval_coverage.csv; do not edit by hand) -->")
COVERAGE_END = "<!-- coverage:end -->"


def lab_scenarios(root: str | Path = ".") -> list[dict]:
    """The simulation's two scenarios, measured on the committed chat-start hits (Mix-CPT vs traditional, 3 seeds x
    384 questions): ``{"scenario", "seed_sd", "question_sd", "n_questions", "true_diff"}`` with ``seed_sd^2 =
    (MS_seeds - MS_residual) / Q`` and ``question_sd^2 = (MS_questions - MS_residual) / S`` (0 when negative) from
    :func:`mixcpt_core.stats.variance_terms` of the ``[S, Q]`` differences."""
    from .reproduce import read_hits

    hits = read_hits(Path(root) / "figures" / "hits_full.json")
    seeds = sorted(s for (start, arm, s) in hits if start == "chat" and arm == "mixcpt")
    out = []
    for key, name in (("domain_said", "chat start, domain QA"), ("general_said", "chat start, general QA")):
        a = np.array([hits[("chat", "mixcpt", s)][key] for s in seeds])  # [S, Q]
        b = np.array([hits[("chat", "traditional", s)][key] for s in seeds])
        n_seeds, n_questions = a.shape
        t = variance_terms(a - b)
        out.append({"scenario": name, "n_questions": n_questions, "true_diff": round(float((a - b).mean()), 3),
                    "seed_sd": round(math.sqrt(max(t["seeds"] - t["residual"], 0.0) * n_seeds), 3),
                    "question_sd": round(math.sqrt(max(t["questions"] - t["residual"], 0.0) * n_questions), 3)})
    return out


def simulate_hits(rng, n_seeds: int, n_questions: int, diff: float, seed_sd: float, question_sd: float,
                  coupling: float = 0.5):
    """One simulated experiment (see the module's text): two ``[S, Q]`` int8 arrays of 0/1 hits whose expected mean
    difference is exactly ``diff``."""
    if question_sd > SPREAD or abs(diff) + 3 * seed_sd + SPREAD > 0.9:
        raise ValueError(f"the probabilities would leave [0, 1]: diff={diff}, seed_sd={seed_sd}, "
                         f"question_sd={question_sd} (need question_sd <= {SPREAD}, |diff| + 3 seed_sd <= 0.5)")
    share = (question_sd / SPREAD) ** 2  # P(v != 0): the standard deviation of v is question_sd
    base = rng.uniform(0.45, 0.55, (1, n_questions))
    v = SPREAD * rng.choice([-1.0, 0.0, 1.0], p=[share / 2, 1 - share, share / 2], size=(1, n_questions))
    u = np.clip(rng.normal(0.0, seed_sd, (n_seeds, 1)), -3 * seed_sd, 3 * seed_sd)
    half = (diff + u + v) / 2  # [S, Q]
    draw_a = rng.random((n_seeds, n_questions))
    draw_b = np.where(rng.random((n_seeds, n_questions)) < coupling, draw_a, rng.random((n_seeds, n_questions)))
    return (draw_a < base + half).astype(np.int8), (draw_b < base - half).astype(np.int8)


def simulate(scenario: dict, n_seeds: int, experiments: int, diff: float | None = None, seed: int = 0,
             bootstrap_experiments: int = 0, n_boot: int = 1000) -> dict:
    """``experiments`` simulated experiments of ``scenario`` with ``n_seeds`` seeds and true difference ``diff``
    (default the scenario's). Returns per method of :data:`METHODS` ``{"covered": [N] bool, "half_width": [N],
    "excludes_0": [N] bool}`` (the bootstrap on the first ``bootstrap_experiments`` only, ``n_boot`` resamples each),
    plus ``"terms"``: the mean over experiments of :func:`mixcpt_core.stats.variance_terms` (for the design MDD)."""
    diff = scenario["true_diff"] if diff is None else diff
    rng = np.random.default_rng(seed)
    rows = {m: [] for m in METHODS}
    terms = []
    for i in range(experiments):
        a, b = simulate_hits(rng, n_seeds, scenario["n_questions"], diff, scenario["seed_sd"], scenario["question_sd"])
        terms.append(variance_terms(a - b))
        cis = {"t_interval": paired_interval(a, b),
               "seed_t": paired_interval(a.mean(1, keepdims=True), b.mean(1, keepdims=True))}
        if i < bootstrap_experiments:
            cis["bootstrap"] = paired_bootstrap(a, b, n_boot=n_boot, seed=i)
        for m, ci in cis.items():
            rows[m].append((ci["lo"] <= diff <= ci["hi"], (ci["hi"] - ci["lo"]) / 2, ci["lo"] > 0 or ci["hi"] < 0))
    out = {m: {k: np.array(col) for k, col in zip(("covered", "half_width", "excludes_0"), zip(*r))}
           for m, r in rows.items() if r}
    out["terms"] = {k: float(np.mean([t[k] for t in terms])) for k in terms[0]}
    return out


def design_mdd(terms: dict, n_seeds: int, n_questions: int) -> float:
    """The minimum detectable difference of a design whose mean variance terms are ``terms``
    (:func:`mixcpt_core.stats.variance_terms`): the MDD the interval reports when every estimate hits its
    expectation."""
    se_questions = math.sqrt(max(terms["questions"] - terms["residual"], 0.0))
    return minimum_detectable_difference(math.sqrt(terms["seeds"]), se_questions, n_seeds, n_questions)


def coverage_rows(root: str | Path = ".", seeds=(3, 5), experiments: int = 2000, bootstrap_experiments: int = 2000,
                  n_boot: int = 1000) -> list[dict]:
    """Rows of :data:`COVERAGE_COLUMNS`: per scenario of :func:`lab_scenarios`, number of seeds and method, the
    fraction of experiments whose 95% interval covers the true difference and the mean half-width; for the t interval
    also the design's MDD and the fraction of ``experiments`` more, at a true difference equal to that MDD, whose
    interval excludes 0 (80% by the MDD's definition). Fixed RNG seeds: the same rows on every run."""
    rows = []
    for k, sc in enumerate(lab_scenarios(root)):
        for n_seeds in seeds:
            sim = simulate(sc, n_seeds, experiments, seed=100 * k + n_seeds,
                           bootstrap_experiments=bootstrap_experiments, n_boot=n_boot)
            mdd = design_mdd(sim["terms"], n_seeds, sc["n_questions"])
            power = simulate(sc, n_seeds, experiments, diff=mdd, seed=100 * k + n_seeds + 50)["t_interval"]
            for method in METHODS:
                r = sim[method]
                rows.append({**sc, "n_seeds": n_seeds, "method": method, "experiments": len(r["covered"]),
                             "resamples": n_boot if method == "bootstrap" else None,
                             "coverage": float(r["covered"].mean()), "mean_half_width": float(r["half_width"].mean()),
                             "design_mdd": mdd if method == "t_interval" else None,
                             "detected_at_mdd": float(power["excludes_0"].mean()) if method == "t_interval" else None})
    return rows


def coverage_table(rows) -> str:
    """Markdown: one line per scenario and seed count, the coverage of each method (mean half-width in brackets),
    and the t interval's design MDD with how often a true difference of that size was detected."""
    lines = ["| scenario | seeds | questions | seed SD | question SD | " + " | ".join(METHODS.values())
             + " | MDD of the design | detected at the MDD |", "|---|---|---|---|---|" + "---|" * (len(METHODS) + 2)]
    by = {}
    for r in rows:
        by.setdefault((r["scenario"], int(r["n_seeds"])), {})[r["method"]] = r
    for (scenario, n_seeds), ms in by.items():
        first, t = next(iter(ms.values())), ms["t_interval"]
        cells = [f"{ms[m]['coverage']:.3f} (±{ms[m]['mean_half_width']:.3f})" for m in METHODS]
        lines.append(f"| {scenario} | {n_seeds} | {int(first['n_questions'])} | {first['seed_sd']:.3f} | "
                     f"{first['question_sd']:.3f} | " + " | ".join(cells)
                     + f" | {t['design_mdd']:.3f} | {t['detected_at_mdd']:.3f} |")
    return "\n".join(lines)


def coverage_block(rows) -> str:
    """The docs block: the table and how it was made."""
    t = [r for r in rows if r["method"] == "t_interval"]
    boot = [r for r in rows if r["method"] == "bootstrap"]
    return (f"{coverage_table(rows)}\n\nCoverage = the fraction of {int(t[0]['experiments'])} simulated experiments "
            f"per line whose 95% interval contains the true difference (mean half-width in brackets; the bootstrap "
            f"on {int(boot[0]['experiments'])} experiments of {int(boot[0]['resamples'])} resamples each); "
            f"detected at the MDD = the fraction "
            f"of {int(t[0]['experiments'])} more, with a true difference equal to the MDD, whose interval excludes 0. "
            f"`figures/interval_coverage.csv`, written by `python -m mixcpt_core.coverage`.")


def render_docs(root: str | Path = ".") -> bool:
    """Render docs/evaluation.md's coverage block from the committed ``figures/interval_coverage.csv``; True when
    the file changed."""
    import pandas as pd

    from .atomic import write_text_atomic

    root = Path(root)
    rows = pd.read_csv(root / COVERAGE_CSV).to_dict("records")
    page = root / "docs" / "evaluation.md"
    text = page.read_text(encoding="utf-8")
    if text.count(COVERAGE_BEGIN) != 1 or text.count(COVERAGE_END) != 1:
        raise ValueError(f"{page}: expected one '{COVERAGE_BEGIN}' line followed by one '{COVERAGE_END}' line")
    head, rest = text.split(COVERAGE_BEGIN, 1)
    new = f"{head}{COVERAGE_BEGIN}\n{coverage_block(rows)}\n{COVERAGE_END}{rest.split(COVERAGE_END, 1)[1]}"
    if new != text:
        write_text_atomic(page, new)
    return new != text


def write_coverage(root: str | Path = ".", **kwargs) -> list[dict]:
    """Run :func:`coverage_rows` (``kwargs`` passed on), write ``figures/interval_coverage.csv`` and render the
    docs block. Returns the rows."""
    from .reproduce import write_csv

    rows = coverage_rows(root, **kwargs)
    write_csv(rows, COVERAGE_COLUMNS, Path(root) / COVERAGE_CSV)
    render_docs(root)
    return rows


if __name__ == "__main__":  # run from the repository's root
    import sys

    t0 = time.time()
    if "--render-only" in sys.argv[1:]:
        render_docs(".")
    else:
        print(coverage_table(write_coverage(".")))
    print(f"{COVERAGE_CSV} -> docs/evaluation.md ({time.time() - t0:.0f} s)")
