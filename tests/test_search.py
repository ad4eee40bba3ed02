"""The stage-2 search: the declared space, the rule, and that it never reads a test set."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from mixcpt_core.config import ConfigError, load_config
from mixcpt_core.evaluation import EvalSpec
from mixcpt_core.pipelines import ReproduceConfig
from mixcpt_core.reproduce import reproduce
from mixcpt_core.search import (Stage2SearchConfig, choose, expand_space, load_recipe, run_search, setting_label,
                                setting_overrides)
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
                                              ("configs/smollm2/search-stage2.yaml", 4)])
def test_committed_search_config_declares_the_same_space_for_every_arm(path, n_settings):
    """Every profile's search covers exactly the pipelines of its grid that have a stage 2, with the same rule, and
    writes the recipes its reproduction reads."""
    cfg = load_config(Stage2SearchConfig, ROOT / path)
    rep = load_config(ReproduceConfig, ROOT / cfg.reproduce)
    with_stage2 = {(s, a) for s, arms in {**rep.main}.items() for a in arms if a not in ("base", "no_stage2")}
    with_stage2 |= {(s, a) for s, arms in rep.full.items() for a in arms if a not in ("base", "no_stage2")}
    assert with_stage2 == {(s, a) for s, arms in cfg.pairs.items() for a in arms}
    assert len(expand_space(cfg.space)) == n_settings and cfg.min_format == 0.95
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
        stage2.append((key, align.sft.learning_rate, align.lora is None))
        return Path(run_dir) / "s2", {"seconds": 1.0, "metrics": {"dpo": {
            "score": 0.5, "general_accuracy": 0.5, "domain_accuracy": 0.5, "format_compliance": 1.0}}}

    monkeypatch.setattr(pipelines, "run_stage1", stage1)
    monkeypatch.setattr(pipelines, "run_stage2", stage2_)
    monkeypatch.setattr(pipelines, "weights_key", lambda d: "start")
    cfg = load_config(Stage2SearchConfig, ROOT / "configs/smollm2/search-stage2.yaml")
    rows = run_search(cfg, ROOT, write=False)
    assert set(starts) == {Path(resolve_model_name(SMOLLM2))} and len(starts) == 3 * 4
    assert len(rows) == len(stage2) == 12 and [r["chosen"] for r in rows] == [1, 0, 0, 0] * 3  # ties: first
    assert stage2[:4] == [("s1-0.0", 1e-5, True), ("s1-0.0", 3e-5, True), ("s1-0.0", 1e-4, True),
                          ("s1-0.0", 1e-3, False)]  # traditional: no LSSD


def _tiny(run_dir, recipes) -> ReproduceConfig:
    cfg = load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml")
    return dataclasses.replace(
        cfg, main={"base": ["base", "traditional", "mixcpt"]}, seeds=[0], main_extra_seeds=[], run_dir=str(run_dir),
        examples=2, evaluation=EvalSpec(limit=16),  # the first 16 questions of each test set
        stage2_recipes=str(recipes),
        cpt_overrides={"max_steps": 3, "eval_every": 3, "save_steps": 2, "probe_texts": 2},
        align_overrides={"sft": {"max_steps": 2}, "dpo": {"max_steps": 2}, "eval_questions": 4})


def test_search_reads_no_test_set_and_reproduce_uses_its_recipes(tmp_path, monkeypatch):
    """A tiny search (2 settings x 2 arms), with every test split made unreadable while it runs. Then the validated
    reproduction runs each arm with its recipe, and a missing recipe is an error naming the file."""
    import yaml

    rep = _tiny(tmp_path / "run", tmp_path / "recipes")
    (tmp_path / "rep.yaml").write_text(yaml.safe_dump(dataclasses.asdict(rep)))
    cfg = Stage2SearchConfig(reproduce=str(tmp_path / "rep.yaml"), pairs={"base": ["traditional", "mixcpt"]},
                             space=[{"sft.max_steps": [1, 2]}], out_dir=str(tmp_path / "recipes"),
                             table=str(tmp_path / "search.csv"))
    # stage 1 first (its training curves read test QA for plotting, as in the reproduction; not part of the search)
    reproduce(rep, ROOT, tmp_path / "fig0", protocols=("fixed",))

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
    table = pd.read_csv(tmp_path / "search.csv")
    assert len(table) == 4 and table.groupby("arm")["chosen"].sum().to_dict() == {"mixcpt": 1, "traditional": 1}
    for r in rows:
        assert 0 <= r["score"] <= 1 and r["score"] == pytest.approx((r["general_accuracy"] + r["domain_accuracy"]) / 2)
    recipe = load_recipe(tmp_path / "recipes", "base", "mixcpt")
    assert set(recipe) == {"sft"} and recipe["sft"]["max_steps"] in (1, 2)

    out = reproduce(rep, ROOT, tmp_path / "fig", protocols=("validated", "fixed"))
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
