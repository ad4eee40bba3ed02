"""The stage-2 search: the declared space, the rule, and that it never reads a test set."""

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from mixcpt_core.config import ConfigError, load_config
from mixcpt_core.evaluation import EvalSpec
from mixcpt_core.pipelines import ReproduceConfig
from mixcpt_core.reproduce import reproduce
from mixcpt_core.search import (STAGED_COLUMNS, SearchStage, Stage2SearchConfig, choose, expand_space, load_recipe,
                                run_search, search_stage1, setting_label, setting_overrides)
from mixcpt_core.world import TEST_SPLITS, World

from .conftest import ROOT


def test_space_expands_in_declared_order_without_duplicates():
    space = [{"lora": [None], "sft.learning_rate": [1e-4, 1e-3], "sft.max_steps": [100]},
             {"sft.learning_rate": [1e-3], "sft.max_steps": [100], "lora": [None]},  # the same setting again
             {"lora": [{"r": 16}], "sft.max_steps": [50]}]
    settings = expand_space(space)
    assert [setting_label(s) for s in settings] == [
        "lora=full sft.learning_rate=0.0001 sft.max_steps=100", "lora=full sft.learning_rate=0.001 sft.max_steps=100",
        "lora=r16 sft.max_steps=50"]
    assert setting_overrides(settings[0]) == {"lora": None, "sft": {"learning_rate": 1e-4, "max_steps": 100}}


def test_the_rule_by_hand():
    rows = [{"score": 0.50, "format_compliance": 0.90},  # best score but not compliant enough
            {"score": 0.40, "format_compliance": 0.99},
            {"score": 0.45, "format_compliance": 0.95},  # compliant (>= is enough) and best among the compliant
            {"score": 0.45, "format_compliance": 1.00}]  # a tie: the first declared wins
    assert choose(rows, 0.95) == 2
    assert choose(rows, 1.0) == 3
    assert choose([{"score": 0.9, "format_compliance": 0.2}, {"score": 0.1, "format_compliance": 0.5}], 0.95) == 1


@pytest.mark.parametrize("path, n_settings", [("configs/search-stage2-tiny.yaml", 10),
                                              ("configs/search-stage2-small.yaml", 4),
                                              ("configs/smollm2/search-stage2.yaml", 5),
                                              ("configs/search-stage2-tiny-staged.yaml", [9, 3, 4, 2])])
def test_committed_search_config_declares_the_same_space_for_every_arm(path, n_settings):
    """Every profile's search covers exactly the pipelines of its grid that have a stage 2, with the same rule, and
    writes the recipes its reproduction reads; the staged tiny search writes its own (the first search's recipes
    and table stay behind the committed results until the reproduction reruns with the staged ones)."""
    cfg = load_config(Stage2SearchConfig, ROOT / path)
    rep = load_config(ReproduceConfig, ROOT / cfg.reproduce)
    with_stage2 = {(s, a) for s, arms in {**rep.main}.items() for a in arms if a not in ("base", "no_stage2")}
    with_stage2 |= {(s, a) for s, arms in rep.full.items() for a in arms if a not in ("base", "no_stage2")}
    assert with_stage2 == {(s, a) for s, arms in cfg.pairs.items() for a in arms}
    n = [len(expand_space(st.space)) for st in cfg.stages] if cfg.staged else len(expand_space(cfg.space))
    assert n == n_settings and cfg.min_format == 0.95
    if path.endswith("tiny-staged.yaml"):
        first = load_config(Stage2SearchConfig, ROOT / "configs/search-stage2-tiny.yaml")
        assert (cfg.out_dir, cfg.table) == ("configs/stage2-selected-staged", "figures/search_stage2_staged.csv")
        assert rep.stage2_recipes == first.out_dir and cfg.table != first.table
    else:
        assert rep.stage2_recipes == cfg.out_dir


def test_search_starts_from_a_released_model(monkeypatch):
    """The SmolLM2 search runs every setting from SmolLM2's converted checkpoint (not a path named after the model),
    stage 1 once per pipeline and seed: the pipeline functions are stubbed, so no model is trained."""
    from mixcpt_core import pipelines, smollm2
    from mixcpt_core.models import SMOLLM2, resolve_model_name

    if not smollm2.is_available():
        pytest.skip(f"SmolLM2 packages not installed: {smollm2.INSTALL_COMMAND}")
    starts, stage2 = [], []

    def stage1(start_dir, start_key, cpt, mix, seed, run_dir, root):
        starts.append(Path(start_dir))
        return Path(run_dir) / f"s1-{cpt.lssd.lam}", {}

    def stage2_(model_dir, key, align, seed, chat_start, run_dir, root):
        stage2.append((key, "skip" if align.skip else align.sft.learning_rate, align.lora is None))
        return Path(run_dir) / "s2", {"seconds": 1.0, "metrics": {"dpo": {
            "score": 0.5, "general_accuracy": 0.5, "domain_accuracy": 0.5, "format_compliance": 1.0}}}

    monkeypatch.setattr(pipelines, "run_stage1", stage1)
    monkeypatch.setattr(pipelines, "run_stage2", stage2_)
    monkeypatch.setattr(pipelines, "weights_key", lambda d: "start")
    cfg = load_config(Stage2SearchConfig, ROOT / "configs/smollm2/search-stage2.yaml")
    rows = run_search(cfg, ROOT, write=False)
    assert set(starts) == {Path(resolve_model_name(SMOLLM2))} and len(starts) == 3 * 5
    assert len(rows) == len(stage2) == 15 and [r["chosen"] for r in rows] == [1, 0, 0, 0, 0] * 3  # ties: first
    assert stage2[:5] == [("s1-0.0", "skip", True), ("s1-0.0", 1e-5, True), ("s1-0.0", 3e-5, True),
                          ("s1-0.0", 1e-4, False), ("s1-0.0", 3e-4, False)]  # traditional: no LSSD; skip = no stage 2


@pytest.mark.parametrize("data, message", [
    ({"space": [{"sft.max_steps": [1]}], "stages": [{"name": "sft", "space": [{"sft.max_steps": [1]}]}]},
     "declare exactly one of them"),
    ({"stages": []}, "declare exactly one of them"),
    ({"stages": [{"name": "a", "space": [{"sft.max_steps": [1]}]}, {"name": "b", "space": [{"sft.max_steps": [2]}]}]},
     "key 'sft.max_steps' is already searched in stage 'a'"),
    ({"stages": [{"name": "a", "space": [{"sft.max_steps": [1]}]}, {"name": "a", "space": [{"dpo.beta": [0.1]}]}]},
     "two stages are named 'a'"),
    ({"stages": [{"name": "a", "space": [{"sft.max_steps": [1]}], "arms": ["mixcpt", "no_such_arm"]}]},
     "'no_such_arm'"),
    ({"stages": [{"name": "a", "space": [{"sft.max_steps": [1]}], "arms": ["mixcpt"]}]},
     "arm(s) ['traditional'] are searched by no stage"),
    ({"stages": [{"name": "a", "space": [{"sft.max_steps": []}]}]}, "expected a non-empty list of values"),
    ({"stages": [{"space": [{"sft.max_steps": [1]}]}]}, "every stage needs a name"),
    ({"space": [{"sft.max_steps": [1]}], "seeds": [0, 0]}, "a seed is listed twice"),
])
def test_a_bad_search_config_is_refused_at_load_time(tmp_path, data, message):
    import yaml

    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({"reproduce": "configs/reproduce-tiny.yaml",
                                    "pairs": {"base": ["traditional", "mixcpt"]}, **data}))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(Stage2SearchConfig, path)


# A hand-made validation table for a staged search: what each (arm, setting, seed) scores. The arm is read off its
# stage-1 config (the stubbed stage 1 names its model after it).
ARM_OF_STAGE1 = {"0.5-mix-tiny": "mixcpt", "0.0-mix-domain-only": "traditional", "0.0-mix-tiny": "no_lssd"}
SFT_BY_SEED = {1e-3: (0.50, 0.20), 3e-4: (0.40, 0.40)}  # means 0.35 and 0.40: seed 0 alone would pick 1e-3


def _fake_validation(arm: str, align, seed: int) -> tuple[float, float]:
    """(score, format compliance) of one stage 2 on one seed."""
    if align.skip:  # no stage 2: best score, but only no_lssd's stage-1 model is compliant
        return 0.90, 1.0 if arm == "no_lssd" else 0.0
    score, fmt = SFT_BY_SEED[align.sft.learning_rate][seed], 1.0
    if align.selection.n_sft == 740 and align.selection.n_dpo == 400:  # N = all helps
        score += 0.05
    if align.dpo.beta == 0.3:
        score += (0.12, -0.08)[seed]  # +0.02 on average
    if align.selection.score == "random":  # the best score, but not compliant enough
        score, fmt = score + 0.20, 0.90
    return score, fmt


def _stub_stages(monkeypatch, calls: list) -> None:
    """Stage 1 and stage 2 stubbed (nothing trains): stage 2 reports :func:`_fake_validation`."""
    from mixcpt_core import pipelines

    def stage1(start_dir, start_key, cpt, mix, seed, run_dir, root):
        calls.append(("stage1", cpt.eval_every))
        return Path(run_dir) / f"{cpt.lssd.lam}-{Path(cpt.mix).stem}", {}

    def stage2(model_dir, key, align, seed, chat_start, run_dir, root):
        calls.append(("stage2", ARM_OF_STAGE1[key], seed))
        score, fmt = _fake_validation(ARM_OF_STAGE1[key], align, seed)
        return Path(run_dir) / "s2", {"seconds": 1.0, "metrics": {"dpo": {
            "score": score, "general_accuracy": score + 0.1, "domain_accuracy": score - 0.1,
            "format_compliance": fmt}}}

    monkeypatch.setattr(pipelines, "run_stage1", stage1)
    monkeypatch.setattr(pipelines, "run_stage2", stage2)
    monkeypatch.setattr(pipelines, "weights_key", lambda d: "start")


def test_a_staged_search_chooses_stage_by_stage_by_hand(tmp_path, monkeypatch):
    """Four stages over a hand-made validation table, two seeds. By hand, per pipeline (each number a mean over the
    two seeds; format >= 0.95 first):
    traditional: sft 3e-4 (0.40 > 0.35; skip scores 0.90 but has format 0); no n stage (not among its arms);
      dpo beta 0.3 (0.42 > 0.40); no score stage.
    mixcpt: sft 3e-4 (0.40); n all = 740 / 400 (0.45 > 0.40); dpo beta 0.3 (0.47); score ppl (random scores 0.67 but
      has format 0.90).
    no_lssd: sft skip (0.90, compliant): nothing left to choose, its dpo stage is not run."""
    from mixcpt_core.report import final_choices

    calls = []
    _stub_stages(monkeypatch, calls)
    cfg = Stage2SearchConfig(
        reproduce="configs/reproduce-tiny.yaml", pairs={"base": ["traditional", "mixcpt", "no_lssd"]}, seeds=[0, 1],
        stages=[SearchStage("sft", [{"skip": [True]}, {"sft.learning_rate": [1e-3, 3e-4]}]),
                SearchStage("n", [{"selection.n_sft": [64], "selection.n_dpo": [64]},
                                  {"selection.n_sft": [740], "selection.n_dpo": [400]}], arms=["mixcpt"]),
                SearchStage("dpo", [{"dpo.beta": [0.1, 0.3]}]),
                SearchStage("score", [{"selection.score": ["ppl", "random"]}], arms=["mixcpt"])],
        out_dir=str(tmp_path / "recipes"), table=str(tmp_path / "search.csv"))
    rows = run_search(cfg, ROOT)
    got = [(r["arm"], r["stage"], r["label"], round(r["score"], 6), r["chosen"]) for r in rows]
    assert got == [
        ("traditional", "sft", "skip=True", 0.90, 0),
        ("traditional", "sft", "sft.learning_rate=0.001", 0.35, 0),
        ("traditional", "sft", "sft.learning_rate=0.0003", 0.40, 1),
        ("traditional", "dpo", "dpo.beta=0.1", 0.40, 0),
        ("traditional", "dpo", "dpo.beta=0.3", 0.42, 1),
        ("mixcpt", "sft", "skip=True", 0.90, 0),
        ("mixcpt", "sft", "sft.learning_rate=0.001", 0.35, 0),
        ("mixcpt", "sft", "sft.learning_rate=0.0003", 0.40, 1),
        ("mixcpt", "n", "selection.n_sft=64 selection.n_dpo=64", 0.40, 0),
        ("mixcpt", "n", "selection.n_sft=740 selection.n_dpo=400", 0.45, 1),
        ("mixcpt", "dpo", "dpo.beta=0.1", 0.45, 0),
        ("mixcpt", "dpo", "dpo.beta=0.3", 0.47, 1),
        ("mixcpt", "score", "selection.score=ppl", 0.47, 1),
        ("mixcpt", "score", "selection.score=random", 0.67, 0),
        ("no_lssd", "sft", "skip=True", 0.90, 1),
        ("no_lssd", "sft", "sft.learning_rate=0.001", 0.35, 0),
        ("no_lssd", "sft", "sft.learning_rate=0.0003", 0.40, 0)]
    # each row trained the earlier stages' choices + its own setting, on both seeds; the stage-1 runs unmonitored
    assert rows[13]["recipe"] == ("sft.learning_rate=0.0003 selection.n_sft=740 selection.n_dpo=400 dpo.beta=0.3 "
                                  "selection.score=random")
    assert rows[13]["format_compliance"] == pytest.approx(0.90) and rows[13]["seeds"] == "0 1"
    assert len([c for c in calls if c[0] == "stage2"]) == 2 * len(rows)
    assert {c[1] for c in calls if c[0] == "stage1"} == {0}
    assert load_recipe(tmp_path / "recipes", "base", "traditional") == {"sft": {"learning_rate": 3e-4},
                                                                        "dpo": {"beta": 0.3}}
    assert load_recipe(tmp_path / "recipes", "base", "mixcpt") == {
        "sft": {"learning_rate": 3e-4}, "dpo": {"beta": 0.3},
        "selection": {"n_sft": 740, "n_dpo": 400, "score": "ppl"}}
    assert load_recipe(tmp_path / "recipes", "base", "no_lssd") == {"skip": True}
    assert "stage by stage (sft: 3 settings, n: 2 settings, dpo: 2 settings, score: 2 settings" in (
        tmp_path / "recipes/base-mixcpt.yaml").read_text()
    table = pd.read_csv(tmp_path / "search.csv")
    assert list(table.columns) == list(STAGED_COLUMNS) and list(table["stage"]) == [r["stage"] for r in rows]
    final = final_choices(table)
    assert list(final["arm"]) == ["traditional", "mixcpt", "no_lssd"]
    assert list(final["label"]) == ["sft.learning_rate=0.0003 dpo.beta=0.3",
                                    "sft.learning_rate=0.0003 selection.n_sft=740 selection.n_dpo=400 dpo.beta=0.3 "
                                    "selection.score=ppl", "skip=True"]
    assert list(final["score"].round(6)) == [0.42, 0.47, 0.90]


def test_the_declared_staged_search_runs_the_stages_its_header_counts(monkeypatch):
    """configs/search-stage2-tiny-staged.yaml through the search with stubbed stages (every setting scores the same,
    skip has format 0, so every tie goes to the first setting declared): per seed, 7 stage-1 models, all unmonitored,
    and the stage-2 runs its time estimate counts, 107 trained + 8 skips; the other rows of a stage are the earlier
    winner again (the same stage 2: cached). Here one of the 107 is trained once for two pipelines: mixcpt's score
    stage with random selection is, with every other choice at the first setting, random_selection's own stage 2 on
    the stage-1 model the two share. `make reproduce-full` runs it."""
    from mixcpt_core import pipelines
    from mixcpt_core.pipelines import stage1_key, stage2_key

    stage1, stage2 = [], []

    def run_stage1(start_dir, start_key, cpt, mix, seed, run_dir, root):
        assert cpt.eval_every == 0
        key = stage1_key(start_key, cpt, mix, seed, root)
        stage1.append((key, seed))
        return Path(run_dir) / key, {}

    def run_stage2(model_dir, key, align, seed, chat_start, run_dir, root):
        stage2.append((stage2_key(key, align, seed, align.init_chat_tokens and not chat_start, root), seed, align.skip))
        return Path(run_dir) / "s2", {"seconds": 1.0, "metrics": {"dpo": {
            "score": 0.5, "general_accuracy": 0.5, "domain_accuracy": 0.5,
            "format_compliance": 0.0 if align.skip else 1.0}}}

    monkeypatch.setattr(pipelines, "run_stage1", run_stage1)
    monkeypatch.setattr(pipelines, "run_stage2", run_stage2)
    monkeypatch.setattr(pipelines, "build_chat_start", lambda base, world, sft, out: Path(out))
    monkeypatch.setattr(pipelines, "weights_key", lambda d: Path(d).name)
    cfg = load_config(Stage2SearchConfig, ROOT / "configs/search-stage2-tiny-staged.yaml")
    assert [st.name for st in cfg.stages] == ["sft", "n", "dpo", "score"] and cfg.seeds == [0, 1]
    rows = run_search(cfg, ROOT, write=False)
    per_stage = pd.DataFrame(rows).groupby("stage", sort=False).size().to_dict()
    assert per_stage == {"sft": 8 * 9, "n": 6 * 3, "dpo": 8 * 4, "score": 5 * 2}
    for seed in (0, 1):
        assert len({k for k, s in stage1 if s == seed}) == 7
        assert len({k for k, s, _ in stage2 if s == seed}) == 107 + 8 - 1
        assert len({k for k, s, skip in stage2 if s == seed and skip}) == 8
    # N = all is the whole pool: 740 general instructions and 400 preference pairs
    n_all = [r for r in rows if r["stage"] == "n" and "740" in r["label"]]
    assert n_all and all(r["label"] == "selection.n_sft=740 selection.n_dpo=400" for r in n_all)
    assert "mixcpt search configs/search-stage2-tiny-staged.yaml" in (ROOT / "Makefile").read_text()


def test_winners_curse_table_by_hand():
    """The chosen recipe's validation score next to its test score on the same seeds and on every seed, from a
    small hand-made search table and results table."""
    from mixcpt_core.report import winners_curse_gap, winners_curse_table

    search = pd.DataFrame([
        {"start": "base", "arm": "traditional", "setting": 0, "label": "a", "seeds": 0, "score": 0.40,
         "general_accuracy": 0.60, "domain_accuracy": 0.20, "format_compliance": 1.0, "chosen": 0},
        {"start": "base", "arm": "traditional", "setting": 1, "label": "b", "seeds": 0, "score": 0.45,
         "general_accuracy": 0.60, "domain_accuracy": 0.30, "format_compliance": 1.0, "chosen": 1},
        {"start": "base", "arm": "mixcpt", "setting": 0, "label": "a", "seeds": 0, "score": 0.50,
         "general_accuracy": 0.50, "domain_accuracy": 0.50, "format_compliance": 1.0, "chosen": 1}])
    results = pd.DataFrame([  # test chat QA per seed
        {"arm": "traditional", "start": "base", "seed": 0, "general_qa_acc": 0.50, "domain_qa_acc": 0.20},
        {"arm": "traditional", "start": "base", "seed": 1, "general_qa_acc": 0.70, "domain_qa_acc": 0.30},
        {"arm": "mixcpt", "start": "base", "seed": 0, "general_qa_acc": 0.40, "domain_qa_acc": 0.30},
        {"arm": "mixcpt", "start": "base", "seed": 1, "general_qa_acc": 0.60, "domain_qa_acc": 0.10}])
    lines = winners_curse_table(search, results).splitlines()
    # traditional: validation 0.45 on seed 0; test seed 0 (0.50 + 0.20) / 2 = 0.35, gap -0.10; both seeds 0.425
    assert lines[2] == ("| base | traditional | `b` | 0.450 (0.600 / 0.300), 0 | 0.350 (0.500 / 0.200) | -0.100 | "
                        "0.425 (2) |")
    # mixcpt: validation 0.50; test seed 0 0.35, gap -0.15; both seeds (0.35 + 0.35) / 2 = 0.35
    assert lines[3] == "| base | mixcpt | `a` | 0.500 (0.500 / 0.500), 0 | 0.350 (0.400 / 0.300) | -0.150 | 0.350 (2) |"
    assert len(lines) == 4
    # mixcpt - traditional: domain +0.20 on validation, 0.30 - 0.20 = +0.10 on test seed 0, (0.20 - 0.25) = -0.05 over
    # both seeds; general -0.10, -0.10, (0.50 - 0.60) = -0.10
    assert winners_curse_gap(search, results) == (
        "mixcpt − traditional (base start): domain QA +0.200 on validation (seed 0), +0.100 on test with the same "
        "seed, -0.050 on test over 2 seeds; general QA -0.100 on validation (seed 0), -0.100 on test with the same "
        "seed, -0.100 on test over 2 seeds.")
    # a seed the test results lack: no number rather than a wrong one
    assert "| — | — |" in winners_curse_table(search.assign(seeds="0 7"), results)


def _tiny(run_dir, recipes) -> ReproduceConfig:
    cfg = load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml")
    return dataclasses.replace(
        cfg, main={"base": ["base", "traditional", "mixcpt"]}, seeds=[0], main_extra_seeds=[], run_dir=str(run_dir),
        examples=2, evaluation=EvalSpec(limit=16),  # the first 16 questions of each test set
        stage2_recipes=str(recipes),
        cpt_overrides={"max_steps": 3, "eval_every": 3, "save_steps": 2, "probe_texts": 2},
        align_overrides={"sft": {"max_steps": 2}, "dpo": {"max_steps": 2}, "eval_questions": 4})


def test_search_reads_no_test_set_and_reproduce_uses_its_recipes(tmp_path, monkeypatch):
    """A tiny search (2 settings x 2 arms) from an empty run folder, its own stage 1 included, with every test split
    made unreadable while it runs (the reproduction's stage 1 draws its curves on test QA every `eval_every` steps:
    the search's stage 1 does not). Its stage-1 weights are the reproduction's. Then the validated reproduction runs
    each arm with its recipe, and a missing recipe is an error naming the file."""
    import torch
    import yaml
    from safetensors.torch import load_file

    from mixcpt_core.pipelines import load_arm, stage1_key, weights_key

    rep = _tiny(tmp_path / "run", tmp_path / "recipes")
    (tmp_path / "rep.yaml").write_text(yaml.safe_dump(dataclasses.asdict(rep)))
    # dpo.max_steps 2 in every setting: traditional's own 50 DPO steps (its arm's override) would dominate the runtime
    cfg = Stage2SearchConfig(reproduce=str(tmp_path / "rep.yaml"), pairs={"base": ["traditional", "mixcpt"]},
                             space=[{"sft.max_steps": [1, 2], "dpo.max_steps": [2]}], out_dir=str(tmp_path / "recipes"),
                             table=str(tmp_path / "search.csv"))
    assert not (tmp_path / "run").exists()  # nothing cached: the search trains its stage 1 under the guard

    read = []
    original = World.qa_split

    def guarded(self, split):
        if split in TEST_SPLITS:
            raise AssertionError(f"the search read the test split {split!r}")
        read.append(split)
        return original(self, split)

    with monkeypatch.context() as m:
        m.setattr(World, "qa_split", guarded)
        rows = run_search(cfg, ROOT)
    assert {"general_val", "domain_val"} <= set(read)
    assert len(list((tmp_path / "run/stage1").glob("s1-*/mixcpt_cpt.json"))) == 2  # traditional's and mixcpt's
    table = pd.read_csv(tmp_path / "search.csv")
    assert len(table) == 4 and table.groupby("arm")["chosen"].sum().to_dict() == {"mixcpt": 1, "traditional": 1}
    for r in rows:
        assert 0 <= r["score"] <= 1 and r["score"] == pytest.approx((r["general_accuracy"] + r["domain_accuracy"]) / 2)
    recipe = load_recipe(tmp_path / "recipes", "base", "mixcpt")
    assert set(recipe) == {"sft", "dpo"} and recipe["sft"]["max_steps"] in (1, 2) and recipe["dpo"]["max_steps"] == 2

    out = reproduce(rep, ROOT, tmp_path / "fig", protocols=("validated", "fixed"))
    # the reproduction's stage 1 is monitored (its curves), the search's is not: two stages with the same weights
    start_key = weights_key(ROOT / rep.base_model)
    for arm in ("traditional", "mixcpt"):
        resolved = load_arm(arm, rep.arms_dir, ROOT, rep.cpt_overrides)
        monitored, plain = (tmp_path / "run/stage1" / stage1_key(start_key, c, resolved.mix, 0, ROOT)
                            for c in (resolved.cpt, search_stage1(resolved.cpt)))
        assert monitored != plain and resolved.cpt.eval_every == 3
        history = {d: json.loads((d / "mixcpt_cpt.json").read_text())["history"] for d in (monitored, plain)}
        assert any("heldout_qa_acc" in h for h in history[monitored])
        assert not any("heldout_qa_acc" in h for h in history[plain])
        a, b = load_file(monitored / "model.safetensors"), load_file(plain / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), arm
    curves = pd.read_csv(tmp_path / "fig/stage1_curves.csv")
    assert set(curves["arm"]) == {"traditional", "mixcpt"}  # the reproduction's stage 1 drew its curves
    for name in ("results", "results_fixed"):
        results = pd.read_csv(tmp_path / "fig" / f"{name}.csv")
        assert list(results["arm"]) == ["base", "traditional", "mixcpt"]
    probes = pd.read_csv(tmp_path / "fig/probes.csv")
    assert set(zip(probes["arm"], probes["point"])) == {("base", "start"), ("traditional", "start"),
        ("traditional", "stage1"), ("traditional", "stage2"), ("mixcpt", "start"), ("mixcpt", "stage1"),
        ("mixcpt", "stage2")}
    comparisons = pd.read_csv(tmp_path / "fig/comparisons.csv")
    assert (comparisons["lo"] <= comparisons["diff"] + 1e-9).all() and (comparisons["diff"] <= comparisons["hi"] + 1e-9).all()
    assert set(comparisons["n_questions"][comparisons["metric"] == "domain_qa_acc"]) == {16}
    from mixcpt_core.reproduce import load_grid_outputs

    hits = out["grids"]["validated"]["hits"]
    assert len(hits[("base", "mixcpt", 0)]["domain_stored"]) == 16
    assert load_grid_outputs(tmp_path / "fig")["hits"] == hits  # committed per-question outcomes round-trip
    (tmp_path / "recipes/base-mixcpt.yaml").unlink()
    with pytest.raises(ConfigError, match="base-mixcpt.yaml.*mixcpt search"):
        reproduce(rep, ROOT, tmp_path / "fig")


def _stub_search(monkeypatch, calls: list, stop_after: int | None = None):
    """Stub stages for run_search: stage 2's validation numbers are a hash of its key (so the rule's choices differ
    between settings), skip has format 0; ``calls`` collects every stage 2 trained; the ``stop_after``-th raises
    KeyboardInterrupt, as a session cut off."""
    import hashlib

    from mixcpt_core import pipelines
    from mixcpt_core.pipelines import stage1_key, stage2_key

    def run_stage1(start_dir, start_key, cpt, mix, seed, run_dir, root):
        return Path(run_dir) / stage1_key(start_key, cpt, mix, seed, root), {}

    def run_stage2(model_dir, key, align, seed, chat_start, run_dir, root):
        k = stage2_key(key, align, seed, align.init_chat_tokens and not chat_start, root)
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(k)
        h = int(hashlib.sha256(k.encode()).hexdigest(), 16)
        return Path(run_dir) / "s2", {"seconds": 1.0, "metrics": {"dpo": {
            "score": (h % 97) / 96, "general_accuracy": (h % 89) / 88, "domain_accuracy": (h % 83) / 82,
            "format_compliance": 0.0 if align.skip else (0.9 if h % 5 == 0 else 1.0)}}}

    monkeypatch.setattr(pipelines, "run_stage1", run_stage1)
    monkeypatch.setattr(pipelines, "run_stage2", run_stage2)
    monkeypatch.setattr(pipelines, "build_chat_start", lambda base, world, sft, out: Path(out))
    monkeypatch.setattr(pipelines, "weights_key", lambda d: Path(d).name)


def test_a_search_cut_off_goes_on_from_its_progress_file(monkeypatch, tmp_path):
    """The staged search cut off after 40 stage-2 runs, then run again with no stage cache (a new session): it
    trains only what the progress file lacks (the run that was cut off included), ends with the table and recipes
    of an uninterrupted search, and removes the progress file. A progress file of another config is ignored."""
    from mixcpt_core.search import progress_path, read_progress, search_fingerprint

    cfg = load_config(Stage2SearchConfig, ROOT / "configs/search-stage2-tiny-staged.yaml")
    whole = dataclasses.replace(cfg, table=str(tmp_path / "whole/table.csv"), out_dir=str(tmp_path / "whole/sel"))
    calls: list = []
    _stub_search(monkeypatch, calls)
    run_search(whole, ROOT)
    n_runs = len(calls)

    cut = dataclasses.replace(whole, table=str(tmp_path / "cut/table.csv"), out_dir=str(tmp_path / "cut/sel"))
    first: list = []
    _stub_search(monkeypatch, first, stop_after=40)
    with pytest.raises(KeyboardInterrupt):
        run_search(cut, ROOT)
    progress = progress_path(cut, ROOT)
    assert progress == tmp_path / "cut/table.progress.jsonl"
    rep = load_config(ReproduceConfig, ROOT / cut.reproduce)
    kept = read_progress(progress, search_fingerprint(cut, rep))
    assert len(kept) == 20  # two seeds per (pipeline, recipe): 40 runs finished 20 of them
    assert not (tmp_path / "cut/table.csv").exists()

    second: list = []
    _stub_search(monkeypatch, second)
    run_search(cut, ROOT)
    assert len(second) == n_runs - 40 and set(second) == set(calls) - set(first)
    assert (tmp_path / "cut/table.csv").read_text() == (tmp_path / "whole/table.csv").read_text()
    assert sorted(p.name for p in (tmp_path / "cut/sel").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole/sel").iterdir())
    for p in (tmp_path / "cut/sel").iterdir():
        assert p.read_text() == (tmp_path / "whole/sel" / p.name).read_text()
    assert not progress.exists()

    # progress written under another config (another rule here) is not taken
    other = dataclasses.replace(cut, min_format=0.9)
    progress.write_text(json.dumps({"fingerprint": search_fingerprint(cut, rep), "start": "base", "arm": "traditional",
                                    "recipe": "skip=True", "seeds": "0 1", "score": 1, "general_accuracy": 1,
                                    "domain_accuracy": 1, "format_compliance": 1, "seconds": 0}) + "\n")
    assert read_progress(progress, search_fingerprint(other, rep)) == {}
    assert len(read_progress(progress, search_fingerprint(cut, rep))) == 1
