"""The paired interval, its minimum detectable difference and how a difference reads (mixcpt_core/stats.py), against
hand computations and published t quantiles; the interval's coverage and the MDD's power by simulation with the
lab's variances (mixcpt_core/coverage.py), beside the earlier percentile bootstrap's coverage."""

import math

import numpy as np
import pandas as pd
import pytest

from mixcpt_core.coverage import (COVERAGE_BEGIN, COVERAGE_CSV, COVERAGE_END, coverage_block, design_mdd,
                                  lab_scenarios, simulate, simulate_hits)
from mixcpt_core.stats import (interval_text, minimum_detectable_difference, paired_interval, read_difference,
                               t_cdf, t_quantile, variance_terms)

from .conftest import ROOT

# Student's t quantiles from the printed tables (6 decimals): {df: (t_0.975, t_0.80)}
T_TABLE = {1: (12.706205, 1.376382), 2: (4.302653, 1.060660), 3: (3.182446, 0.978472), 4: (2.776445, 0.940965),
           5: (2.570582, 0.919544), 9: (2.262157, 0.883404), 10: (2.228139, 0.879058), 30: (2.042272, 0.853767)}


def test_t_quantiles_match_the_tables_and_the_closed_forms():
    for df, (t975, t80) in T_TABLE.items():
        assert t_quantile(0.975, df) == pytest.approx(t975, abs=1e-6), df
        assert t_quantile(0.80, df) == pytest.approx(t80, abs=1e-6), df
        assert t_quantile(0.025, df) == pytest.approx(-t975, abs=1e-6)
    for p in (0.55, 0.8, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
        assert t_cdf(t_quantile(p, 3.5), 3.5) == pytest.approx(p, abs=1e-12)
    assert t_quantile(0.975, 10_000) == pytest.approx(1.959964, abs=3e-4)  # the normal quantile, nearly
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_three_seed_means_give_the_textbook_t_interval():
    """The chat start's per-seed differences on domain QA: mean 0.116, sd 0.062482, se 0.036074; t_{0.975,2} = 4.302653
    gives [-0.039, +0.271] (the percentile bootstrap of the same grid gave [+0.042, +0.183])."""
    seed_means = np.array([[0.044], [0.148], [0.156]])  # [S, 1]: one value per seed
    r = paired_interval(seed_means, np.zeros((3, 1)))
    sd = math.sqrt(((0.044 - 0.116) ** 2 + (0.148 - 0.116) ** 2 + (0.156 - 0.116) ** 2) / 2)
    se = sd / math.sqrt(3)
    assert sd == pytest.approx(0.062482, abs=1e-6) and se == pytest.approx(0.036074, abs=1e-6)
    assert r["diff"] == pytest.approx(0.116) and r["se_seeds"] == pytest.approx(se)
    assert (r["lo"], r["hi"]) == pytest.approx((0.116 - 4.302653 * se, 0.116 + 4.302653 * se), abs=1e-6)
    assert (round(r["lo"], 3), round(r["hi"], 3)) == (-0.039, 0.271)
    assert r["mdd"] == pytest.approx((4.302653 + 1.060660) * se, abs=1e-6)  # 0.193
    assert math.isnan(r["se_questions"]) and r["n_questions"] == 1
    assert (r["verdict"], r["resolved"], r["thin"], r["flag"]) == ("no resolvable difference", False, False, "")


def test_the_question_term_adds_what_the_seed_means_share():
    """d[s, q] = c_s + w_q: every seed answers the same questions, w = ±0.1 alternating, no residual. The seed means are
    c (the three numbers above); the question means spread by w, which the seed means cannot see: var(w) = 0.04 / 3,
    question term var(w) / Q = 0.0033333, se_questions = 0.057735, with t_{0.975,3} = 3.182446."""
    c = np.array([0.044, 0.148, 0.156])[:, None]
    w = np.array([0.1, -0.1, 0.1, -0.1])[None, :]
    a, b = c + w, np.zeros((3, 4))
    t = variance_terms(a - b)
    assert t["residual"] == pytest.approx(0.0, abs=1e-15)
    assert t["questions"] == pytest.approx(0.04 / 3 / 4) and t["seeds"] == pytest.approx(0.036074 ** 2, rel=1e-4)
    r = paired_interval(a, b)
    se_s, se_q = 0.036074, math.sqrt(0.04 / 3 / 4)
    half = math.sqrt((4.302653 * se_s) ** 2 + (3.182446 * se_q) ** 2)  # 0.2405
    assert r["se_questions"] == pytest.approx(se_q) and r["se_seeds"] == pytest.approx(se_s, abs=1e-6)
    assert (r["lo"], r["hi"]) == pytest.approx((0.116 - half, 0.116 + half), abs=1e-5)
    assert r["mdd"] == pytest.approx(math.sqrt(((4.302653 + 1.060660) * se_s) ** 2
                                               + ((3.182446 + 0.978472) * se_q) ** 2), abs=1e-5)
    assert minimum_detectable_difference(se_s, se_q, 3, 4) == pytest.approx(r["mdd"], abs=1e-5)
    # the same outcomes in every seed: no seed term, the question term alone (a t over the question means)
    same = paired_interval(np.tile(w, (3, 1)), np.zeros((3, 4)))
    assert same["se_seeds"] == 0.0 and same["hi"] == pytest.approx(3.182446 * se_q, abs=1e-6)


def test_one_seed_falls_back_to_the_questions_and_is_thin():
    """d = 1,0,1,0,-1,1,0,1,0,0: mean 0.3, sum of squared deviations 4.1, sd sqrt(4.1 / 9), se sd / sqrt(10) = 0.213437,
    t_{0.975,9} = 2.262157 -> [-0.183, +0.783], MDD (2.262157 + 0.883404) se = 0.671."""
    a = np.array([[1, 1, 1, 0, 0, 1, 0, 1, 1, 0]])
    b = np.array([[0, 1, 0, 0, 1, 0, 0, 0, 1, 0]])
    r = paired_interval(a, b)
    se = math.sqrt(4.1 / 9) / math.sqrt(10)
    assert r["se_questions"] == pytest.approx(se) and se == pytest.approx(0.213437, abs=1e-6)
    assert (r["lo"], r["hi"]) == pytest.approx((0.3 - 2.262157 * se, 0.3 + 2.262157 * se), abs=1e-6)
    assert r["mdd"] == pytest.approx((2.262157 + 0.883404) * se, abs=1e-6)
    assert math.isnan(r["se_seeds"]) and r["thin"] and r["flag"] == "(1 seed: thin evidence)"
    # one seed, one value: no interval at all
    r = paired_interval([[0.9]], [[0.8]])
    assert math.isnan(r["lo"]) and math.isnan(r["mdd"]) and r["verdict"] == "no resolvable difference"
    assert interval_text(r) == "+0.100 (no interval: a single value) (1 seed: thin evidence)"
    with pytest.raises(ValueError, match="seeds, questions"):
        paired_interval(np.zeros((2, 3)), np.zeros((3, 2)))


def test_one_function_reads_every_difference():
    assert read_difference(0.01, 0.2, 3) == {"verdict": "higher", "resolved": True, "thin": False, "flag": ""}
    assert read_difference(-0.2, -0.01, 5)["verdict"] == "lower"
    assert read_difference(-0.01, 0.2, 5)["verdict"] == "no resolvable difference"
    assert read_difference(0.01, 0.2, 2) == {"verdict": "higher", "resolved": True, "thin": True,
                                             "flag": "(2 seeds: thin evidence)"}
    c = {"diff": 0.1, "lo": 0.02, "hi": 0.18, "n_seeds": 1, "a": "mixcpt"}
    assert interval_text(c) == "+0.100 [+0.020, +0.180] (1 seed: thin evidence)"
    # the renderers word it from there: report's and scaling's verdicts, and no bold for thin evidence
    from mixcpt_core.report import verdict as report_verdict
    from mixcpt_core.scaling import format_ablation_table, verdict as scale_verdict

    assert report_verdict(c) == "mixcpt higher (the interval excludes 0) (1 seed: thin evidence)"
    assert report_verdict({**c, "n_seeds": 3}) == "mixcpt higher (the interval excludes 0)"
    assert report_verdict({**c, "lo": -0.02, "n_seeds": 3}) == "no resolvable difference"
    assert scale_verdict({**c, "lo": -0.3, "hi": -0.1, "n_seeds": 5}) == "Mix-CPT loses"
    assert scale_verdict(c) == "Mix-CPT wins (1 seed: thin evidence)"
    row = {"question": "q", "b": "no_lssd", "profile": "smollm2", "label": "x", "metric": "general_qa_acc",
           "a_mean": 0.5, "b_mean": 0.4, "diff": 0.1, "lo": 0.02, "hi": 0.18, "mdd": 0.1}
    thin = format_ablation_table([{**row, "n_seeds": 1}]).splitlines()[-1]
    assert thin == "| LSSD (no_lssd) | smollm2 | 1 (thin evidence) |  | +0.100 [+0.020, +0.180] |"  # never bold
    assert format_ablation_table([{**row, "n_seeds": 3}]).splitlines()[-1].endswith("| **+0.100 [+0.020, +0.180]** |")


@pytest.fixture(scope="module")
def scenarios():
    """Seed and question spread of the committed chat-start hits (mixcpt vs traditional, 3 seeds x 384 questions)."""
    return {s["scenario"]: s for s in lab_scenarios(ROOT)}


def test_the_scenarios_are_measured_from_the_committed_hits(scenarios):
    dom, gen = scenarios["chat start, domain QA"], scenarios["chat start, general QA"]
    assert dom["n_questions"] == gen["n_questions"] == 384 and dom["true_diff"] == pytest.approx(0.116)
    assert 0.04 < dom["seed_sd"] < 0.08 and 0.2 < dom["question_sd"] < 0.35  # seeds disagree on domain QA
    assert gen["seed_sd"] < 0.02 and 0.25 < gen["question_sd"] < 0.4  # the questions do on general QA


def test_the_simulated_lab_has_the_difference_it_was_given(scenarios):
    sc = scenarios["chat start, domain QA"]
    rng = np.random.default_rng(3)
    diffs = [np.subtract(*simulate_hits(rng, 5, 384, 0.2, 0.06, 0.3), dtype=float).mean() for _ in range(400)]
    assert np.mean(diffs) == pytest.approx(0.2, abs=3 * np.std(diffs) / math.sqrt(len(diffs)))
    with pytest.raises(ValueError, match="leave"):
        simulate(sc, 3, 1, diff=0.6)


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_the_interval_covers_the_truth_at_3_and_5_seeds(scenarios, n_seeds):
    """2000 simulated experiments per scenario: the 95% interval covers the true difference in at least 93% of them
    (the binomial noise of 2000 experiments is ±0.5 percentage points). The percentile bootstrap, on the first 300 of
    the same experiments at 3 seeds where the seeds disagree, covers it clearly less often (its coverage over 2000
    experiments is in figures/interval_coverage.csv)."""
    for name, sc in scenarios.items():
        boot = 300 if n_seeds == 3 and name == "chat start, domain QA" else 0
        sim = simulate(sc, n_seeds, 2000, seed=11 * n_seeds, bootstrap_experiments=boot)
        new = sim["t_interval"]["covered"].mean()
        line = f"{name}, {n_seeds} seeds: t interval covers {new:.3f}"
        if boot:
            old = sim["bootstrap"]["covered"].mean()
            same = sim["t_interval"]["covered"][:boot].mean()
            line += f"; percentile bootstrap {old:.3f} (t interval on the same {boot}: {same:.3f})"
            assert old < same - 0.03
        print(line + f"; t over the seed means alone {sim['seed_t']['covered'].mean():.3f}")
        assert new >= 0.93, line


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_a_true_difference_equal_to_the_mdd_is_detected_80_percent_of_the_time(scenarios, n_seeds):
    """The design's MDD (the one the interval reports when each variance estimate hits its expectation, here the mean
    over 2000 experiments); then 2000 experiments with that true difference: the interval excludes 0 in about 80%.
    A true difference equal to the interval's mean half-width is detected only about half of the time."""
    for name, sc in scenarios.items():
        null = simulate(sc, n_seeds, 2000, seed=7 + n_seeds)
        mdd = design_mdd(null["terms"], n_seeds, sc["n_questions"])
        detected = simulate(sc, n_seeds, 2000, diff=mdd, seed=8 + n_seeds)["t_interval"]["excludes_0"].mean()
        half = null["t_interval"]["half_width"].mean()
        at_half = simulate(sc, n_seeds, 2000, diff=half, seed=9 + n_seeds)["t_interval"]["excludes_0"].mean()
        print(f"{name}, {n_seeds} seeds: MDD {mdd:.3f} detected {detected:.3f}; half-width {half:.3f} detected "
              f"{at_half:.3f}")
        assert 0.72 <= detected <= 0.88, (name, mdd, detected)
        assert 0.35 <= at_half <= 0.65, (name, half, at_half)


def test_the_docs_show_the_committed_coverage_table():
    """docs/evaluation.md's coverage block is the rendering of figures/interval_coverage.csv (written by
    `python -m mixcpt_core.coverage`), whose interval covers >= 93% on every line and whose MDD is detected ~80%."""
    rows = pd.read_csv(ROOT / COVERAGE_CSV).to_dict("records")
    text = (ROOT / "docs/evaluation.md").read_text(encoding="utf-8")
    assert text.split(COVERAGE_BEGIN, 1)[1].split(COVERAGE_END, 1)[0].strip() == coverage_block(rows).strip()
    t = [r for r in rows if r["method"] == "t_interval"]
    assert {r["n_seeds"] for r in t} == {3, 5} and all(r["coverage"] >= 0.93 for r in t)
    assert all(0.72 <= r["detected_at_mdd"] <= 0.88 for r in t) and all(r["experiments"] >= 2000 for r in rows)


def test_projected_mdd_by_hand_and_the_declared_headline_seeds():
    """How many seeds a headline needs: the seed term's spread from the seeds that ran, divided by sqrt of the new
    number, the question term kept. By hand from the committed 5-seed domain comparison (se_seeds 0.018370,
    se_questions 0.011626, 384 questions): spread 0.018370 * sqrt(5) = 0.041076; at 12 seeds the seed term is
    (t_{.975,11} + t_{.80,11}) * 0.041076 / sqrt(12) and the question term (t_{.975,383} + t_{.80,383}) * 0.011626.
    configs/reproduce-tiny.yaml declares the fewest seeds that bring the MDD to 0.05, and `--full` runs them."""
    from mixcpt_core.config import load_config
    from mixcpt_core.pipelines import ReproduceConfig
    from mixcpt_core.stats import projected_mdd, seeds_for_mdd

    se_s, se_q = 0.018370, 0.011626
    seed_term = (2.200985 + 0.875530) * se_s * math.sqrt(5) / math.sqrt(12)  # t_{.975,11}, t_{.80,11}
    question_term = (t_quantile(0.975, 383) + t_quantile(0.80, 383)) * se_q
    assert seed_term == pytest.approx(0.036484, abs=1e-5) and question_term == pytest.approx(0.032655, abs=1e-5)
    assert projected_mdd(se_s, se_q, 5, 384, 12) == pytest.approx(math.hypot(seed_term, question_term), abs=1e-6)
    assert projected_mdd(se_s, se_q, 5, 384, 12) == pytest.approx(0.04896, abs=1e-4)
    assert projected_mdd(se_s, se_q, 5, 384, 11) == pytest.approx(0.05047, abs=1e-4)
    assert projected_mdd(se_s, se_q, 5, 384, 5) == pytest.approx(minimum_detectable_difference(se_s, se_q, 5, 384))
    assert seeds_for_mdd(se_s, se_q, 5, 384, 0.05) == 12
    with pytest.raises(ValueError, match="no number of seeds"):
        seeds_for_mdd(se_s, se_q, 5, 384, 0.03)  # below the question term: more seeds cannot reach it
    # the committed comparison and the declared seeds
    comparisons = pd.read_csv(ROOT / "figures/comparisons_full.csv")
    c = comparisons[(comparisons["a"] == "mixcpt") & (comparisons["b"] == "traditional")
                    & (comparisons["metric"] == "domain_qa_acc") & (comparisons["start"] == "base")].iloc[0]
    needed = seeds_for_mdd(c["se_seeds"], c["se_questions"], int(c["n_seeds"]), int(c["n_questions"]), 0.05)
    cfg = load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml")
    assert needed == 12 and cfg.headline_seeds == list(range(needed))


def test_full_runs_the_main_arms_with_the_headline_seeds(monkeypatch, tmp_path):
    """`mixcpt reproduce --full` runs the main arms with the declared headline seeds beyond `seeds` (the stages are
    stubbed: nothing trains)."""
    import dataclasses

    from mixcpt_core import reproduce as rep_mod
    from mixcpt_core.config import load_config
    from mixcpt_core.pipelines import ReproduceConfig

    grids = []

    def run_grid(cfg, root, world, starts, pairs, arms, tag, seeds=None, general_items=None):
        grids.append((tag, sorted(set(pairs)), list(cfg.seeds if seeds is None else seeds)))
        return {"rows": [], "curves": [], "probes": [], "hits": {}, "examples": {}, "chance": {}}

    monkeypatch.setattr(rep_mod, "run_grid", run_grid)
    monkeypatch.setattr(rep_mod, "write_grid_outputs", lambda grid, figures, suffix, seeds, label: (None, [suffix]))
    cfg = load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml")
    cfg = dataclasses.replace(cfg, full={}, run_dir=str(tmp_path / "run"), gpu_seeds=[])
    rep_mod.reproduce(cfg, ROOT, tmp_path / "fig", full=True)
    main = [("base", "base"), ("base", "mixcpt"), ("base", "traditional")]
    assert grids == [("validated", main, [0, 1, 2]), ("validated, more seeds", main, list(range(3, 12)))]
    grids.clear()
    rep_mod.reproduce(dataclasses.replace(cfg, headline_seeds=[]), ROOT, tmp_path / "fig", full=True)
    assert grids[1] == ("validated, more seeds", main, [3, 4])  # without them: main_extra_seeds
