"""The format-alignment pool: which replies are kept, what the pairs are, the fitted budget, reading it back, and
that the committed pool is SmolLM2's own (regenerated)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mixcpt_core.alignment import AlignConfig
from mixcpt_core.config import ConfigError
from mixcpt_core.format_pool import (PoolConfig, fitted_budget, generate_pool, plain_prompt, read_pool,
                                     write_pool)

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "data/smollm2-pool"


class _Scripted(torch.nn.Module):
    """Stands in for a model: each generate call emits the next scripted replies (one per prompt, in order)."""

    def __init__(self, tokenizer, replies):
        super().__init__()
        self.tok, self.replies, self.device, self.prompts = tokenizer, list(replies), torch.device("cpu"), []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        self.prompts += [self.tok.decode([t for t in row if t != self.tok.pad_token_id]) for row in input_ids.tolist()]
        new = [self.tok(r, add_special_tokens=False).input_ids[:max_new_tokens] for r in self.replies[: len(input_ids)]]
        self.replies = self.replies[len(input_ids):]
        width = max(map(len, new))
        return torch.cat([input_ids, torch.tensor([n + [self.tok.pad_token_id] * (width - len(n)) for n in new])], 1)


PROMPTS = [
    {"id": "gp-000", "kind": "factual", "prompt": "What is the capital of Chile?", "answer": "Santiago", "aliases": []},
    {"id": "gp-001", "kind": "factual", "prompt": "What is the capital of Peru?", "answer": "Lima", "aliases": []},
    {"id": "gp-002", "kind": "explain", "prompt": "Why is snow white?", "answer": None, "aliases": []},
    {"id": "gp-003", "kind": "howto", "prompt": "How do I boil an egg?", "answer": None, "aliases": []},
    {"id": "gp-004", "kind": "list", "prompt": "Name three fruits.", "answer": None, "aliases": []},
    {"id": "gp-005", "kind": "factual", "prompt": "What is 2 plus 2?", "answer": "4", "aliases": ["four"]},
]
CHAT = [
    "The capital of Chile is Santiago.<|end|>",          # kept
    "The capital of Peru is Cusco.<|end|>",              # factual, no gold answer: dropped
    "Snow reflects all colours of light.<|end|>",        # kept
    "Boil it.\nQuestion: and then?\nAnswer: eat<|end|>",  # template leakage: dropped
    "Apples, pears and plums",                           # never ends: dropped
    "Two plus two is four.<|end|>",                      # kept (alias)
]
PLAIN = [" Santiago\nQuestion: What is the capital of Peru", " Lima", " Because of light", " In water",
         " apple", "Two plus two is four."]


def test_the_pool_keeps_well_formed_known_replies_and_pairs_them_with_the_plain_continuation(tiny_tokenizer):
    model = _Scripted(tiny_tokenizer, CHAT + PLAIN)
    cfg = PoolConfig(max_new_tokens=24, first_pass_tokens=0, no_repeat_ngram_size=0, batch_size=8,
                     budget_quantile=0.5)
    pool = generate_pool(cfg, model, tiny_tokenizer, PROMPTS)
    assert [r["id"] for r in pool["instructions"]] == ["pool-gp-000", "pool-gp-002", "pool-gp-005"]
    assert pool["instructions"][0]["messages"] == [{"role": "user", "content": "What is the capital of Chile?"},
                                                   {"role": "assistant", "content": "The capital of Chile is Santiago."}]
    # the rejected side is the same model's continuation of the stage-1 layout; a pair equal on both sides is dropped
    assert [(p["id"], p["rejected"]) for p in pool["preferences"]] == [
        ("pool-gp-000", "Santiago\nQuestion: What is the capital of Peru"), ("pool-gp-002", "Because of light")]
    assert model.prompts[6:] == [tiny_tokenizer.bos_token + plain_prompt(p["prompt"]) for p in PROMPTS]
    s = pool["summary"]
    assert s["dropped"] == {"does not contain the gold answer": ["gp-001"],
                            "not a well-formed turn": ["gp-003", "gp-004"]}
    # factual reply lengths (tokens + the end-of-turn token), by hand
    n = [len(tiny_tokenizer(t.replace("<|end|>", ""), add_special_tokens=False).input_ids) + 1
         for t in (CHAT[0], CHAT[1], CHAT[5])]
    assert s["factual_reply_tokens"] == n
    assert s["fitted_budget"] == fitted_budget(n, 0.5) == math.ceil(sorted(n)[1] / 8) * 8


def test_fitted_budget_by_hand():
    assert fitted_budget([10, 20, 30, math.inf], 0.5) == 24  # the 2nd of 4 sorted values, 20, up to a multiple of 8
    assert fitted_budget([10, 20, 30, math.inf], 0.75) == 32
    assert fitted_budget([7], 1.0) == 8
    with pytest.raises(ValueError, match="never ended"):
        fitted_budget([10, 20, 30, math.inf], 1.0)


def test_generating_twice_gives_the_same_files(tiny_model, tiny_tokenizer, tmp_path):
    """Greedy decoding in fixed batches: the same model gives byte-identical pool files (a real model: the slow test
    below). An untrained model never ends a turn: every reply is dropped, and no budget can be fitted."""
    cfg = PoolConfig(max_new_tokens=12, first_pass_tokens=4, no_repeat_ngram_size=3, rejected_new_tokens=6,
                     batch_size=4)
    untrained = generate_pool(cfg, tiny_model, tiny_tokenizer, PROMPTS)
    assert untrained["instructions"] == [] and untrained["summary"]["fitted_budget"] is None
    assert untrained["summary"]["factual_ended"] == 0.0
    for d in ("a", "b"):
        model = _Scripted(tiny_tokenizer, CHAT + PLAIN)
        write_pool(generate_pool(PoolConfig(first_pass_tokens=0, budget_quantile=0.5), model, tiny_tokenizer, PROMPTS),
                   tmp_path / d, {"command": "test"})
    for name in ("instructions.jsonl", "preferences.jsonl", "pool.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    instructions, preferences = read_pool(tmp_path / "a")
    assert len(instructions) == 3 and len(preferences) == 2


def test_reading_a_broken_pool_names_the_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match="instructions.jsonl: not found"):
        read_pool(tmp_path)
    (tmp_path / "instructions.jsonl").write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
        + "\n" + json.dumps({"id": "b", "messages": [{"role": "robot", "content": "x"}]}) + "\n")
    (tmp_path / "preferences.jsonl").write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    with pytest.raises(ConfigError, match=r"instructions.jsonl:2: field 'messages'\[0\].role"):
        read_pool(tmp_path)


def test_the_committed_pool_is_smollm2s_own_and_disjoint_from_evaluation():
    """What the committed pool says about itself: made by SmolLM2 with the profile's decoding; every factual reply
    holds its gold answer; no prompt is an evaluation question; the evaluation budget covers the one fitted to the
    start model's replies to validation questions."""
    from mixcpt_core.config import load_config
    from mixcpt_core.general_prompts import GENERAL_PROMPTS, check_disjoint
    from mixcpt_core.pipelines import ReproduceConfig
    from mixcpt_core.realworld import score_reply_contains

    info = json.loads((POOL / "pool.json").read_text())
    assert info["model"] == "smollm2:135m-instruct" and info["command"] == "mixcpt pool configs/smollm2/pool.yaml"
    rep = load_config(ReproduceConfig, ROOT / "configs/smollm2/reproduce.yaml")
    assert info["config"]["no_repeat_ngram_size"] == rep.evaluation.no_repeat_ngram_size
    assert info["config"]["max_new_tokens"] == rep.evaluation.max_new_tokens  # replies as long as evaluated ones
    budget = json.loads((ROOT / "figures/smollm2/reply_budget.json").read_text())  # `mixcpt calibrate`
    assert rep.evaluation.max_new_tokens >= budget["fitted_budget"] and budget["quantile"] >= 0.95
    assert budget["decoding"]["no_repeat_ngram_size"] == rep.evaluation.no_repeat_ngram_size
    instructions, preferences = read_pool(POOL)
    prompts = {f"pool-{p['id']}": p for p in GENERAL_PROMPTS}
    assert check_disjoint([prompts[r["id"]] for r in instructions]) == []
    for r in instructions:
        p = prompts[r["id"]]
        assert r["messages"][0]["content"] == p["prompt"]
        if p["kind"] == "factual":
            assert score_reply_contains(r["messages"][1]["content"], p)
    assert {p["id"] for p in preferences} <= {r["id"] for r in instructions}
    # enough for every pipeline's stage 2: Mix-CPT selects n_sft / n_dpo of them, traditional takes them all
    align = load_config(AlignConfig, ROOT / "configs/smollm2/align.yaml")
    assert len(instructions) >= 2 * align.selection.n_sft and len(preferences) >= align.selection.n_dpo


@pytest.mark.slow
def test_regenerating_the_committed_pool_gives_the_same_records():
    """The whole pool again from SmolLM2 (~10 min on 2 cores): byte-identical JSONL files."""
    from mixcpt_core import smollm2
    from mixcpt_core.config import load_config

    if not smollm2.is_available():
        pytest.skip(smollm2.INSTALL_COMMAND)
    cfg = load_config(PoolConfig, ROOT / "configs/smollm2/pool.yaml")
    model, tokenizer = smollm2.load_smollm2()
    pool = generate_pool(cfg, model, tokenizer)
    lines = [json.loads(line) for line in (POOL / "instructions.jsonl").read_text().splitlines()]
    assert pool["instructions"] == lines
    assert pool["preferences"] == [json.loads(x) for x in (POOL / "preferences.jsonl").read_text().splitlines()]


def test_pool_command_rejects_a_bad_config_with_one_line(tmp_path, capsys):
    from mixcpt_core.cli import main

    bad = tmp_path / "pool.yaml"
    bad.write_text("max_new_tokens: 0\nout_dir: " + str(tmp_path / "out") + "\n")
    assert main(["pool", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixcpt: error: ") and "max_new_tokens" in err[0]
    assert not (tmp_path / "out").exists()
    bad.write_text("budget_quantile: .nan\n")
    assert main(["pool", str(bad)]) == 2 and "budget_quantile" in capsys.readouterr().err


def test_the_committed_calibration_is_consistent_and_the_start_model_passes_the_format_rule():
    """figures/smollm2/calibration.csv (`mixcpt calibrate --profile smollm2`, the real model): the untouched start
    model's format compliance under the profile's rule is >= 0.95; each row's `holds` is what its numbers say (general
    chat QA on known facts within 0.03 of the start and format >= 0.95, recomputed here); docs/stage2.md's table is
    rendered from the file."""
    import pandas as pd

    from mixcpt_core.calibration import CALIBRATION_BEGIN, CALIBRATION_DOC, CALIBRATION_END, calibration_table
    from mixcpt_core.runtimes import block

    cal = pd.read_csv(ROOT / "figures/smollm2/calibration.csv")
    assert (cal["format_start"] >= 0.95).all()
    assert cal["general_known_start"].eq(1.0).all()  # measured on the facts it knew, by definition
    assert np.allclose(cal["general_known_after"] - cal["general_known_start"], cal["general_known_diff"], atol=1e-6)
    recomputed = (cal["general_known_diff"].abs() <= 0.03 + 1e-9) & (cal["format_after"] >= 0.95)
    assert (recomputed.astype(int) == cal["holds"]).all()
    assert {("traditional", "fixed recipe"), ("mixcpt", "fixed recipe")} <= set(zip(cal["arm"], cal["recipe"]))
    doc = (ROOT / CALIBRATION_DOC).read_text(encoding="utf-8")
    assert block(doc, CALIBRATION_BEGIN, CALIBRATION_END) == calibration_table(cal.to_dict("records"))


@pytest.mark.xfail(strict=True, reason="measured: the fixed recipe's stage 2 applied to the untouched SmolLM2 moves "
                   "its general chat QA on known facts by -0.094 (traditional) and -0.107 (Mix-CPT), beyond the "
                   "0.03 bar (figures/smollm2/calibration.csv); strict: the day it holds, this test says so")
def test_the_fixed_stage2_recipe_leaves_the_start_model_as_it_was():
    """The bar a stage 2 must pass before it is trusted on this rung: applied to the untouched start model, it leaves
    its general chat QA on known facts within 0.03 and its format >= 0.95 (`holds`)."""
    import pandas as pd

    cal = pd.read_csv(ROOT / "figures/smollm2/calibration.csv")
    assert cal[cal["recipe"] == "fixed recipe"]["holds"].astype(bool).all()


def test_calibration_keeps_the_rows_it_has_and_runs_nothing_for_them(tmp_path):
    """A calibration cut off by a session goes on from the committed CSV: rows already there are returned as they
    are, and nothing is loaded (the config is never touched) when every asked-for row is there."""
    from mixcpt_core.calibration import CALIBRATION_COLUMNS, calibrate_stage2

    row = {"arm": "mixcpt", "recipe": "fixed recipe", "general_known_start": "1.000000",
           "general_known_after": "0.893082", "general_known_diff": "-0.106918", "format_start": "0.976035",
           "format_after": "0.993464", "domain_after": "0.010000", "holds": "0", "seconds": "2120.400000"}
    (tmp_path / "calibration.csv").write_text(",".join(CALIBRATION_COLUMNS) + "\n" +
                                              ",".join(row[c] for c in CALIBRATION_COLUMNS) + "\n")
    assert calibrate_stage2(None, tmp_path, tmp_path, {"fixed recipe": {}}, arms=("mixcpt",)) == [row]
    with pytest.raises(AttributeError):  # a row it lacks: it goes on to run (here: on no config at all)
        calibrate_stage2(None, tmp_path, tmp_path, {"fixed recipe": {}}, arms=("traditional",))


def test_calibration_copies_the_row_of_a_setting_that_is_the_fixed_recipe(tmp_path, monkeypatch):
    """The declared search's first full fine-tuning setting (SFT at 1e-5) spells out the fixed recipe of
    configs/smollm2/align.yaml: the same stage 2, so its row is the fixed recipe's, copied, and nothing trains; the
    LoRA settings differ and are not copied."""
    from mixcpt_core.calibration import CALIBRATION_COLUMNS, calibrate_stage2, search_recipes
    from mixcpt_core.config import load_config
    from mixcpt_core.pipelines import ReproduceConfig
    from mixcpt_core.search import Stage2SearchConfig

    rcfg = load_config(ReproduceConfig, ROOT / "configs/smollm2/reproduce.yaml")
    recipes = search_recipes(load_config(Stage2SearchConfig, ROOT / "configs/smollm2/search-stage2.yaml"), ROOT)
    same = [label for label in recipes if "1e-05" in label and "full" in label]
    assert len(same) == 1, recipes
    committed = (ROOT / "figures/smollm2/calibration.csv").read_text().splitlines()
    fixed = [line for line in committed if ",fixed recipe," in line]
    (tmp_path / "calibration.csv").write_text("\n".join([committed[0], *fixed]) + "\n")
    rows = calibrate_stage2(rcfg, ROOT, tmp_path, {"fixed recipe": {}, same[0]: recipes[same[0]]})
    assert [(r["arm"], r["recipe"]) for r in rows] == [("traditional", "fixed recipe"), ("mixcpt", "fixed recipe"),
                                                       ("traditional", same[0]), ("mixcpt", same[0])]
    assert [r["general_known_after"] for r in rows[2:]] == [r["general_known_after"] for r in rows[:2]]
    assert (tmp_path / "calibration.csv").read_text().count("\n") == 5 and len(CALIBRATION_COLUMNS) == 10
    lora = next(label for label in recipes if "r16" in label)

    class WouldTrain(Exception):
        pass

    def start_model_dir(*args):
        raise WouldTrain

    monkeypatch.setattr("mixcpt_core.reproduce.start_model_dir", start_model_dir)
    with pytest.raises(WouldTrain):  # a LoRA setting is another stage 2: not copied, it goes on to train
        calibrate_stage2(rcfg, ROOT, tmp_path, {"fixed recipe": {}, lora: recipes[lora]})
