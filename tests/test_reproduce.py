"""The reproduction: metrics against hand-computed examples, arm configs, cache keys, tables, and a tiny end-to-end
run that is cached, resumable and deterministic."""

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from mixcpt_core import evaluation
from mixcpt_core.config import ConfigError, load_config
from mixcpt_core.pipelines import (ReproduceConfig, load_arm, merge, stage1_key, stage2_key, sweep_variant)
from mixcpt_core.reproduce import (RESULT_COLUMNS, format_results_table, grid_pairs, reproduce, summarize, write_csv)
from mixcpt_core.tokenizer import END_OF_TURN

from .conftest import ROOT


# -- metrics ----------------------------------------------------------------------------------------------------------
class _ScriptedModel(torch.nn.Module):
    """Stands in for a model in generation: finds which question a prompt asks (and whether it is in the chat
    format) and emits the scripted reply's tokens, so every metric is known by construction."""

    def __init__(self, tokenizer, chat: dict, plain: dict):
        super().__init__()
        self.tok, self.chat, self.plain, self.device = tokenizer, chat, plain, torch.device("cpu")

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            prompt = self.tok.decode(ids[mask.bool()])
            is_chat = "<|assistant|>" in prompt
            q = next(q for q in (self.chat if is_chat else self.plain) if q in prompt)
            rows.append(self.tok((self.chat if is_chat else self.plain)[q], add_special_tokens=False).input_ids)
        width = max(map(len, rows))
        new = [r + [self.tok.pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(new)], dim=1)


class _World:
    def __init__(self, domain, general):
        self.split = {"domain": domain, "general_heldout": general}

    def qa_split(self, name):
        return self.split[name]

    def docs(self, group, split):
        return [f"{group} {split} document {i}" for i in range(3)]


def _qa(pairs):
    return [{"question": q, "answer": a, "attribute": "employer"} for q, a in pairs]


def test_chat_metrics_and_evaluate_model_by_hand(tiny_tokenizer, monkeypatch):
    end = END_OF_TURN
    domain = _qa([("Who employs Ada?", "Nimbus"), ("Who employs Bo?", "Kestrel"), ("Who employs Cy?", "Orbit")])
    general = _qa([("Who employs Di?", "Vela"), ("Who employs Ed?", "Lumen")])
    chat = {
        "Who employs Ada?": f" Nimbus.{end}",       # right, well formed (punctuation is normalised away)
        "Who employs Bo?": " Kestrel",              # right, but no end-of-turn token: not well formed
        "Who employs Cy?": f" Nimbus{end}",         # wrong, well formed
        "Who employs Di?": f"<|user|> Vela{end}",   # a role token inside the turn: not well formed; content "Vela"
        "Who employs Ed?": f"{end}",                # empty turn: not well formed, wrong
    }
    plain = {"Who employs Ada?": " Nimbus\nQuestion", "Who employs Bo?": " Orbit", "Who employs Cy?": " Orbit",
             "Who employs Di?": " Vela", "Who employs Ed?": " Lumen"}
    model = _ScriptedModel(tiny_tokenizer, chat, plain)
    m = evaluation.chat_qa_metrics(model, tiny_tokenizer, domain, batch_size=2)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["format_compliance"] == pytest.approx(2 / 3)
    assert [g["well_formed"] for g in m["generations"]] == [True, False, True]

    ppl = {"domain": 7.0, "general": 3.0}
    monkeypatch.setattr(evaluation, "document_perplexity", lambda model, tok, texts, **kw: ppl[texts[0].split()[0]])
    import mixcpt_core.probes as probes  # the stored probe has its own tests (test_probes.py): here only its wiring

    stored = {3: [1, 0, 0], 2: [1, 1]}
    monkeypatch.setattr(probes, "stored_knowledge", lambda model, tok, world, items: {
        "accuracy": sum(stored[len(items)]) / len(items), "hits": stored[len(items)]})
    r = evaluation.evaluate_model(model, tiny_tokenizer, _World(domain, general), n_examples=1)
    # by hand: chat domain 2/3 right; general: "Vela" counts (content before <|end|> without special tokens), Ed wrong
    assert r["domain_qa_acc"] == pytest.approx(2 / 3)
    assert r["general_qa_acc"] == pytest.approx(1 / 2)
    assert r["format_rate"] == pytest.approx(2 / 5)  # pooled over the 5 turns, not a mean of the two sets' rates
    assert (r["domain_ppl"], r["general_ppl"]) == (7.0, 3.0)
    # plain: Ada " Nimbus\nQuestion" -> first line "Nimbus", right; Bo " Orbit" wrong; Cy " Orbit" right; Di, Ed right
    assert r["plain_domain_qa_acc"] == pytest.approx(2 / 3) and r["plain_general_qa_acc"] == 1.0
    assert [(e["set"], e["gold"], e["correct"]) for e in r["examples"]] == [("domain", "Nimbus", True),
                                                                            ("general", "Vela", True)]
    assert (r["stored_domain_acc"], r["stored_general_acc"]) == (pytest.approx(1 / 3), 1.0)
    # the per-question hits behind every accuracy, for the paired bootstrap
    assert r["hits"] == {"domain_said": [1, 1, 0], "general_said": [1, 0], "domain_extractable": [1, 0, 1],
                         "general_extractable": [1, 1], "domain_stored": [1, 0, 0], "general_stored": [1, 1]}

    # a limit (fast tests) takes the first questions of each set and the first held-out documents of each half
    seen = []
    monkeypatch.setattr(evaluation, "document_perplexity", lambda model, tok, texts, **kw: seen.append(texts) or 1.0)
    r = evaluation.evaluate_model(model, tiny_tokenizer, _World(domain, general), spec=evaluation.EvalSpec(limit=2))
    assert seen == [["domain eval document 0", "domain eval document 1"],
                    ["general eval document 0", "general eval document 1"]]
    assert r["hits"]["domain_said"] == [1, 1] and r["hits"]["general_said"] == [1, 0]


def test_summary_is_mean_and_sample_std_by_hand(tmp_path):
    rows = [{"arm": "a", "start": "base", "seed": s, "domain_qa_acc": v, "general_qa_acc": 0.5, "format_rate": 1.0,
             "domain_ppl": 2.0, "general_ppl": 3.0, "train_seconds": 10.0 * (s + 1), "plain_domain_qa_acc": 0.1,
             "plain_general_qa_acc": 0.2} for s, v in enumerate([0.1, 0.2, 0.6])]
    rows.append({**rows[0], "arm": "b", "seed": 0})
    write_csv(rows, RESULT_COLUMNS, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        assert tuple(next(csv.reader(f))) == RESULT_COLUMNS
    s = summarize(pd.read_csv(tmp_path / "r.csv"))
    a = s[s["arm"] == "a"].iloc[0]
    assert a["n_seeds"] == 3 and a["domain_qa_acc_mean"] == pytest.approx(0.3)
    # sample std of 0.1, 0.2, 0.6: deviations -0.2, -0.1, 0.3 -> sqrt((0.04 + 0.01 + 0.09) / 2)
    assert a["domain_qa_acc_std"] == pytest.approx(math.sqrt(0.07))
    assert a["train_seconds_mean"] == pytest.approx(20.0)
    assert s[s["arm"] == "b"].iloc[0]["domain_qa_acc_std"] == 0.0  # one seed: no spread
    table = format_results_table(s)
    assert "| base | a | 3 | 0.300 ± 0.265 |" in table and table.count("\n") == 3


# -- arms, overrides and cache keys ----------------------------------------------------------------------------------
def test_merge_is_nested_and_does_not_touch_inputs():
    base = {"lssd": {"lam": 0.5, "tau": 1.0}, "max_steps": 400}
    over = {"lssd": {"lam": 0.0}, "mix": "m.yaml"}
    assert merge(base, over) == {"lssd": {"lam": 0.0, "tau": 1.0}, "max_steps": 400, "mix": "m.yaml"}
    assert base == {"lssd": {"lam": 0.5, "tau": 1.0}, "max_steps": 400}


def test_shipped_arms_load_and_differ_as_documented():
    cfg = load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml")
    arms = {a: load_arm(a, cfg.arms_dir, ROOT) for _, a in grid_pairs(cfg, full=True)}
    assert set(arms) == {"base", "traditional", "mixcpt", "no_lssd", "no_mix", "random_selection", "self_kd",
                         "no_stage2"}
    mix, trad = arms["mixcpt"], arms["traditional"]
    assert arms["base"].cpt is None and arms["base"].align is None and arms["no_stage2"].align is None
    assert mix.cpt.lssd.lam == 0.5 and mix.cpt.lssd.swap and [s.name for s in mix.mix.sources] == [
        "domain", "instructions", "preferences"]
    assert trad.cpt.lssd.lam == 0.0 and [s.name for s in trad.mix.sources] == ["domain"]
    assert trad.align.selection.score == "all" and trad.align.dpo.max_steps == 50
    assert arms["no_lssd"].cpt.lssd.lam == 0.0 and arms["no_lssd"].mix == mix.mix
    assert arms["no_mix"].cpt.lssd.lam == 0.5 and arms["no_mix"].mix == trad.mix
    assert arms["self_kd"].cpt.lssd.swap is False
    assert arms["random_selection"].align.selection.score == "random" and arms["random_selection"].cpt == mix.cpt
    # every arm trains stage 1 for the same number of tokens: a fair comparison
    assert {(a.cpt.max_steps, a.cpt.batch_size, a.mix.total_tokens) for a in arms.values() if a.cpt} == {
        (400, 16, 819200)}


def test_arm_override_errors_name_the_files(tmp_path):
    (tmp_path / "arms").mkdir()
    (tmp_path / "arms/bad.yaml").write_text("name: bad\ncpt: configs/cpt-tiny.yaml\ncpt_overrides: {lssd: {lamda: 1}}\n")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    with pytest.raises(ConfigError, match=r"cpt-tiny.yaml with the overrides of .*bad.yaml.*lamda"):
        load_arm("bad", "arms", tmp_path)
    (tmp_path / "arms/named.yaml").write_text("name: other\n")
    with pytest.raises(ConfigError, match="named.yaml: field 'name' is 'other'"):
        load_arm("named", "arms", tmp_path)


def test_stage_keys_depend_on_inputs_not_paths():
    arm = load_arm("mixcpt", "configs/arms", ROOT)
    k = stage1_key("w0", arm.cpt, arm.mix, 0)
    assert k == stage1_key("w0", dataclasses.replace(arm.cpt, output_dir="elsewhere", base_model="x"), arm.mix, 0)
    assert k != stage1_key("w0", arm.cpt, arm.mix, 1)
    assert k != stage1_key("w1", arm.cpt, arm.mix, 0)
    assert k != stage1_key("w0", sweep_variant(arm, "cpt.lssd.lam", 0.25).cpt, arm.mix, 0)
    a = stage2_key(k, arm.align, 0, True)
    assert a == stage2_key(k, dataclasses.replace(arm.align, output_dir="x"), 0, True)
    assert len({a, stage2_key(k, arm.align, 1, True), stage2_key(k, arm.align, 0, False)}) == 3


def test_sweep_variants():
    mixcpt = load_arm("mixcpt", "configs/arms", ROOT)
    arm = sweep_variant(mixcpt, "mix.domain_share", 0.9)
    shares = {s.name: s.share for s in arm.mix.sources}
    assert shares["domain"] == 0.9 and sum(shares.values()) == pytest.approx(1.0)
    assert shares["instructions"] / shares["preferences"] == pytest.approx(3.0)
    steps = sweep_variant(mixcpt, "align.sft.max_steps", 25.0).align.sft
    assert steps.max_steps == 25 and type(steps.max_steps) is int and steps.learning_rate == mixcpt.align.sft.learning_rate
    assert sweep_variant(mixcpt, "cpt.lssd.lam", 1.0).cpt.lssd.lam == 1.0 and mixcpt.cpt.lssd.lam == 0.5
    for param, value, message in [("cpt.lssd.lamda", 0.1, "has no field 'lamda'"), ("cpt.lssd.lam", 2.0, "in \\[0, 1\\]"),
                                  ("align.sft.max_steps", 2.5, "not an integer"), ("model.x", 1, "expected cpt")]:
        with pytest.raises(ConfigError, match=message):
            sweep_variant(mixcpt, param, value)


# -- end to end -------------------------------------------------------------------------------------------------------
def _no_recipes(path: Path) -> Path:
    """A recipes directory whose every recipe is empty: the validated protocol then runs the tiny test budgets."""
    path.mkdir(parents=True, exist_ok=True)
    for arm in (ROOT / "configs/arms").glob("*.yaml"):
        for start in ("base", "chat"):
            (path / f"{start}-{arm.stem}.yaml").write_text("{}\n")
    return path


# the first 16 questions of each set: with the full sets (384 each), evaluation took 39 of a tiny reproduction's 52 s
EVAL_16 = evaluation.EvalSpec(limit=16)


def _tiny_config(run_dir, recipes: Path) -> ReproduceConfig:
    cfg = load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml")
    return dataclasses.replace(
        cfg, main={"base": ["base", "mixcpt", "random_selection"]}, seeds=[0], main_extra_seeds=[], headline_seeds=[], sweep_seeds=[0],
        run_dir=str(run_dir),
        examples=2, stage2_recipes=str(_no_recipes(recipes)), evaluation=EVAL_16,
        sweep={"align.sft.max_steps": [1, 2]},
        cpt_overrides={"max_steps": 3, "eval_every": 3, "save_steps": 2, "probe_texts": 2},
        align_overrides={"sft": {"max_steps": 2}, "dpo": {"max_steps": 2}, "eval_questions": 4})


def test_tiny_reproduction_is_cached_and_deterministic(tmp_path, monkeypatch):
    import mixcpt_core.alignment as align_module
    import mixcpt_core.cpt as cpt_module

    first = reproduce(_tiny_config(tmp_path / "run", tmp_path / "recipes"), ROOT, tmp_path / "fig", sweep=True)
    csv_text = (tmp_path / "fig/results.csv").read_text()
    table = pd.read_csv(tmp_path / "fig/results.csv")
    assert list(table.columns) == list(RESULT_COLUMNS)
    assert [tuple(r) for r in table[["arm", "start", "seed"]].to_numpy()] == [
        ("base", "base", 0), ("mixcpt", "base", 0), ("random_selection", "base", 0)]
    assert table.loc[0, "train_seconds"] == 0 and (table["train_seconds"][1:] > 0).all()
    assert table.loc[0, "format_rate"] == 0.0  # the base model never saw the chat template
    curves = pd.read_csv(tmp_path / "fig/stage1_curves.csv")
    assert sorted(set(curves["step"])) == [0, 3]
    assert len(list((tmp_path / "run/stage1").iterdir())) == 1  # mixcpt and random selection share stage 1
    assert set(json.loads((tmp_path / "fig/generations.json").read_text())) == {
        "base / base", "mixcpt / base", "random_selection / base"}
    for name in ("results.md", "results.png", "forgetting_curves.png", "sweep.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 0
    sweep = pd.read_csv(tmp_path / "fig/sweep.csv")
    assert list(sweep["value"]) == [1, 2] and set(sweep["param"]) == {"align.sft.max_steps"}
    # the sweep point equal to the arm's own setting (2 SFT steps here) is the cached mixcpt run itself
    assert sweep.loc[1, "domain_qa_acc"] == table.loc[1, "domain_qa_acc"]
    assert sweep.loc[1, "train_seconds"] == table.loc[1, "train_seconds"]

    # a rerun trains nothing and writes the same table
    with monkeypatch.context() as m:
        m.setattr(cpt_module, "run_cpt", lambda *a, **k: pytest.fail("stage 1 ran again"))
        m.setattr(align_module, "run_align", lambda *a, **k: pytest.fail("stage 2 ran again"))
        reproduce(_tiny_config(tmp_path / "run", tmp_path / "recipes"), ROOT, tmp_path / "fig2", sweep=True)
    assert (tmp_path / "fig2/results.csv").read_text() == csv_text

    # from scratch in a fresh run directory: the same numbers (CPU, same seeds); train time aside
    again = reproduce(_tiny_config(tmp_path / "run2", tmp_path / "recipes"), ROOT, tmp_path / "fig3")
    strip = [{k: v for k, v in r.items() if k != "train_seconds"} for r in first["grids"]["validated"]["rows"]]
    assert [{k: v for k, v in r.items() if k != "train_seconds"} for r in again["grids"]["validated"]["rows"]] == strip


def test_an_interrupted_stage_is_run_again(tmp_path):
    cfg = _tiny_config(tmp_path / "run", tmp_path / "recipes")
    cfg = dataclasses.replace(cfg, main={"base": ["no_stage2"]})
    reproduce(cfg, ROOT, tmp_path / "fig")
    (stage,) = (tmp_path / "run/stage1").iterdir()
    before = (stage / "model.safetensors").read_bytes()
    (stage / "mixcpt_cpt.json").unlink()  # as if killed before the end: the stage is not finished
    (evaluated,) = (tmp_path / "run/eval").glob(f"{stage.name}*.json")
    evaluated.unlink()
    reproduce(cfg, ROOT, tmp_path / "fig")
    assert (stage / "mixcpt_cpt.json").exists() and (stage / "model.safetensors").read_bytes() == before
    # from its last checkpoint (step 3, the last step: loaded, not trained again); a run from step 0 would end with
    # the same bytes too, training being deterministic
    assert json.loads((stage / "mixcpt_cpt.json").read_text())["resumed_from_step"] == 3


@pytest.fixture(scope="module")
def reproduce_reference(tmp_path_factory):
    """``mixcpt reproduce`` with a tiny grid (mixcpt from the base start, seed 0; stage 1: 6 steps with a checkpoint
    every 2) run once to its end in a subprocess: (command maker, its figures directory, seconds from stage 1's
    first checkpoint to its last file)."""
    import yaml

    from mixcpt_core.config import to_dict

    from .kill import mixcpt_command, run_to_the_end

    d = tmp_path_factory.mktemp("reproduce-kill")
    cfg = dataclasses.replace(_tiny_config("unused", d / "recipes"), main={"base": ["mixcpt"]}, sweep={},
                              cpt_overrides={"max_steps": 6, "eval_every": 3, "save_steps": 2, "probe_texts": 2})
    path = d / "reproduce.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))

    def command(name):
        return mixcpt_command("reproduce", "--config", path, "--run-dir", d / name / "run", "--figures", d / name / "fig",
                              "--protocol", "validated")

    remaining = run_to_the_end(command("full"), d / "full" / "run", STAGE1_CHECKPOINT,
                               d / "full" / "fig" / "forgetting_curves.png")
    return command, d, remaining


STAGE1_CHECKPOINT = "stage1/*/trainer/checkpoint-*/trainer_state.json"


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_killed_reproduction_rerun_gives_the_same_results(reproduce_reference, signal_name):
    """A real ``mixcpt reproduce`` killed at a random moment after stage 1's first checkpoint (in stage 1 or 2, in an
    evaluation, while figures and tables are written), then the same command again: the results table (train time
    aside), the stage-1 curves and the generations equal the uninterrupted run's."""
    from .kill import kill_then_rerun

    command, d, remaining = reproduce_reference
    run = d / signal_name / "run"
    kill = kill_then_rerun(command(signal_name), run, STAGE1_CHECKPOINT, remaining, signal_name,
                           d / signal_name / "fig" / "forgetting_curves.png")
    (stage1,) = (run / "stage1").iterdir()
    info = stage1 / "mixcpt_cpt.json"
    if info.stat().st_mtime > kill.ended_at:  # stage 1 was cut short: the rerun resumed it from a checkpoint
        assert json.loads(info.read_text())["resumed_from_step"] in (2, 4, 6), str(kill)
    full, killed = d / "full" / "fig", d / signal_name / "fig"
    tables = [pd.read_csv(f / "results.csv").drop(columns="train_seconds") for f in (full, killed)]
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True, obj=str(kill))
    for name in ("stage1_curves.csv", "generations.json", "base_metrics.json"):
        assert (full / name).read_text() == (killed / name).read_text(), f"{name} ({kill})"


def test_paired_differences_by_hand():
    from mixcpt_core.reproduce import format_differences_table, paired_differences

    rows = []
    for seed, (m, t) in enumerate([(0.3, 0.1), (0.2, 0.25), (0.4, 0.1)]):
        base = {c: 0.0 for c in RESULT_COLUMNS[3:]}
        rows += [{**base, "arm": "mixcpt", "start": "base", "seed": seed, "domain_qa_acc": m},
                 {**base, "arm": "traditional", "start": "base", "seed": seed, "domain_qa_acc": t}]
    rows.append({**rows[0], "seed": 7})  # a seed only one arm has is left out of the pairing
    d = paired_differences(pd.DataFrame(rows), questions=[("q?", "mixcpt", "traditional", ("domain_qa_acc",))])
    (r,) = d.to_dict("records")
    # differences 0.2, -0.05, 0.3: mean 0.15, deviations 0.05, -0.2, 0.15 -> std sqrt(0.065 / 2)
    assert r["n_seeds"] == 3 and r["diff"] == pytest.approx(0.15) and r["a_wins"] == 2
    assert r["diff_std"] == pytest.approx(math.sqrt(0.0325))
    # no per-question hits: a t interval over the 3 seeds' differences, se = std / sqrt(3), t_{0.975,2} = 4.302653
    se = math.sqrt(0.0325 / 3)
    assert (r["lo"], r["hi"]) == pytest.approx((0.15 - 4.302653 * se, 0.15 + 4.302653 * se), abs=1e-6)
    assert r["mdd"] == pytest.approx((4.302653 + 1.060660) * se, abs=1e-6) and r["n_questions"] == 0
    assert r["se_seeds"] == pytest.approx(se) and math.isnan(r["se_questions"]) and r["thin"] == 0
    # the earlier bootstrap over the 3 seeds, beside it: a resampled mean lies between min and max difference
    assert -0.05 - 1e-9 <= r["boot_lo"] <= 0.15 <= r["boot_hi"] <= 0.3 + 1e-9
    assert (f"| +0.150 [{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['mdd']:.3f} | [{r['boot_lo']:+.3f}, {r['boot_hi']:+.3f}] "
            "| 2 of 3 |") in format_differences_table(d)
    # with per-question hits: per-question differences 1, 0, 0, 0 in every seed, so no seed term (the seed means
    # are all 0.25) and the question term is a t over the 4 question means: sd 0.5, se 0.25, t_{0.975,3} = 3.182446
    hits = {("base", arm, seed): {"domain_said": h} for seed in range(3)
            for arm, h in (("mixcpt", [1, 1, 0, 1]), ("traditional", [0, 1, 0, 1]))}
    (r,) = paired_differences(pd.DataFrame(rows), hits, [("q?", "mixcpt", "traditional", ("domain_qa_acc",))]).to_dict("records")
    assert r["n_questions"] == 4 and r["se_seeds"] == 0 and r["se_questions"] == pytest.approx(0.25)
    assert (r["lo"], r["hi"]) == pytest.approx((0.25 - 3.182446 * 0.25, 0.25 + 3.182446 * 0.25), abs=1e-6)
    # the bootstrap: a replicate's mean is k/4 with k ~ Binomial(4, 1/4), whose 2.5% and 97.5% quantiles are k = 0
    # (P = 0.316) and k = 3 (P(k <= 2) = 0.949 < 0.975 <= P(k <= 3) = 0.996)
    assert (r["boot_lo"], r["boot_hi"]) == (0.0, 0.75)
    # one seed: thin evidence, flagged in the table
    (r,) = paired_differences(pd.DataFrame(rows[:2]), questions=[("q?", "mixcpt", "traditional", ("domain_qa_acc",))]
                              ).to_dict("records")
    assert r["thin"] == 1 and "(1 seed: thin evidence)" in format_differences_table(pd.DataFrame([r]))


def test_committed_comparisons_are_computed_from_the_committed_hits():
    """Every comparisons*.csv in figures/ is what paired_differences gives on the results*.csv and hits*.json beside
    it (`python -m mixcpt_core.reproduce figures figures/small figures/smollm2` rewrites them without training)."""
    from mixcpt_core.reproduce import COMPARISON_COLUMNS, paired_differences, read_hits

    checked = 0
    for path in sorted((ROOT / "figures").glob("**/comparisons*.csv")):
        suffix = path.stem[len("comparisons"):]
        got = paired_differences(pd.read_csv(path.parent / f"results{suffix}.csv"),
                                 read_hits(path.parent / f"hits{suffix}.json"))[list(COMPARISON_COLUMNS)]
        pd.testing.assert_frame_equal(pd.read_csv(path), got, check_dtype=False, atol=2e-6, obj=str(path))
        checked += 1
    assert checked == 8


def test_readme_and_docs_are_rendered_from_the_committed_results(tmp_path):
    """docs/reproduction.md and the README's results block are exactly what mixcpt_core.report renders from the
    committed figures/ files (no hand-copied numbers), and the README's table is the one of results.md. Rendered
    from ``git archive HEAD figures``, so a checkout whose figures/ was regenerated by ``make reproduce`` is still
    checked; README and docs re-rendered from such regenerated figures (``mixcpt report`` after a new run) pass too."""
    from mixcpt_core.report import current_block, readme_block, reproduction_page

    from .committed import committed_figures

    committed = committed_figures(tmp_path)  # skips, saying why, where this is not a git checkout
    readme = (ROOT / "README.md").read_text()
    got = (current_block(readme), (ROOT / "docs/reproduction.md").read_text())
    renderings = {f: (readme_block(f).strip(), reproduction_page(f)) for f in dict.fromkeys((committed, ROOT / "figures"))}
    matching = [f for f, rendered in renderings.items() if rendered == got]
    if not matching:  # say which of the two differs from the committed run's rendering
        assert got[0] == renderings[committed][0], "README's results block: run `mixcpt report`"
        assert got[1] == renderings[committed][1], "docs/reproduction.md: run `mixcpt report`"
    figures = matching[0] if matching else committed
    results = pd.read_csv(figures / "results.csv")
    assert list(results.columns) == list(RESULT_COLUMNS)
    table = format_results_table(summarize(results))
    assert table in readme and table in (figures / "results.md").read_text()


def test_committed_results_have_every_row():
    """Every (arm, start, seed) of the committed grids is there once: the main grid in results.csv, main + ablations
    in results_full.csv, and the main rows are the same numbers in both."""
    cfg = load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml")
    for name, full in (("results.csv", False), ("results_full.csv", True)):
        results = pd.read_csv(ROOT / "figures" / name)
        got = sorted(zip(results["arm"], results["start"], results["seed"]))
        want = [(a, s, seed) for s, a in grid_pairs(cfg, full) for seed in cfg.seeds]
        want += [(a, s, seed) for s, a in grid_pairs(cfg, False) for seed in cfg.main_extra_seeds] if full else []
        assert got == sorted(want), name
    main, full = (pd.read_csv(ROOT / "figures" / n).set_index(["arm", "start", "seed"])
                  for n in ("results.csv", "results_full.csv"))
    pd.testing.assert_frame_equal(main.sort_index(), full.loc[main.index].sort_index())
    fixed = pd.read_csv(ROOT / "figures/results_fixed.csv")
    assert sorted(zip(fixed["arm"], fixed["start"], fixed["seed"])) == sorted(
        (a, s, seed) for s, a in grid_pairs(cfg, False) for seed in cfg.seeds)
    # every probe row: each arm that trains has its start, stage-1 and/or stage-2 points, for both QA sets
    probes = pd.read_csv(ROOT / "figures/probes_full.csv")
    points = probes.groupby(["start", "arm", "seed"])["point"].apply(lambda p: tuple(sorted(set(p)))).to_dict()
    for (start, arm, seed), got in points.items():
        want = {"base": ("start",), "no_stage2": ("stage1", "start")}.get(arm, ("stage1", "stage2", "start"))
        assert got == want, (start, arm, seed)
    assert len(probes) == 2 * sum(len(p) for p in points.values())


def test_full_grid_writes_its_own_files_and_keeps_the_main_ones(tmp_path):
    from mixcpt_core.reproduce import load_grid_outputs

    cfg = dataclasses.replace(_tiny_config(tmp_path / "run", tmp_path / "recipes"), main={"base": ["base"]}, full={"base": ["no_stage2"]})
    reproduce(cfg, ROOT, tmp_path / "fig", full=True)
    main, full = pd.read_csv(tmp_path / "fig/results.csv"), pd.read_csv(tmp_path / "fig/results_full.csv")
    assert list(main["arm"]) == ["base"] and list(full["arm"]) == ["base", "no_stage2"]
    assert set(json.loads((tmp_path / "fig/generations_full.json").read_text())) == {"base / base", "no_stage2 / base"}
    assert not (tmp_path / "fig/stage1_curves.csv").read_text().strip().count("\n")  # the main grid has no stage 1
    for name in ("results_full.md", "results_full.png", "forgetting_curves_full.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 0
    assert load_grid_outputs(tmp_path / "fig")["name"] == "results_full.csv"


def test_base_model_doc_shows_the_committed_table():
    """docs/base-model.md shows the table `make reproduce` writes to figures/base_model.md, not a typed copy."""
    assert (ROOT / "figures/base_model.md").read_text().strip() in (ROOT / "docs/base-model.md").read_text()


def test_a_rerun_that_found_stages_cached_adds_its_wall_time(tmp_path):
    """A command's wall time is the work of every run that built its results: a rerun with cached stages adds to the
    earlier record; a run from scratch replaces it."""
    import json

    from mixcpt_core.report import WALL_TIMES, record_wall_time

    record_wall_time(tmp_path, "mixcpt reproduce", 100.0, cached=0)
    record_wall_time(tmp_path, "mixcpt reproduce", 20.5, cached=3)
    t = json.loads((tmp_path / WALL_TIMES).read_text())["mixcpt reproduce"]
    assert (t["seconds"], t["cached_stages"], t["invocations"]) == (120.5, 0, 2)
    record_wall_time(tmp_path, "mixcpt reproduce", 50.0, cached=0)
    t = json.loads((tmp_path / WALL_TIMES).read_text())["mixcpt reproduce"]
    assert t["seconds"] == 50.0 and "invocations" not in t


def test_stage1_key_ignores_head_matmul_at_its_default():
    """A config field added later must not invalidate every cached stage: at its default the key is the one
    computed without the field (the formula before it existed); set otherwise, it changes the key."""
    import hashlib

    from mixcpt_core.config import to_dict
    from mixcpt_core.cpt import CPTConfig, LSSDConfig
    from mixcpt_core.data import MixConfig, SourceConfig
    from mixcpt_core.pipelines import PIPELINE_VERSION, stage1_key

    cpt, mix = CPTConfig(), MixConfig(sources=[SourceConfig(name="d", kind="world_domain_docs", share=1.0)])
    c = {k: v for k, v in to_dict(cpt).items() if k not in ("base_model", "mix", "output_dir", "seed")}
    c["lssd"] = {k: v for k, v in c["lssd"].items() if k != "head_matmul"}
    m = {k: v for k, v in to_dict(mix).items() if k not in ("output_dir", "seed")}
    old = hashlib.sha256(json.dumps({"v": PIPELINE_VERSION, "start": "abc", "seed": 0, "cpt": c, "mix": m},
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert stage1_key("abc", cpt, mix, 0) == "s1-" + old
    f32 = dataclasses.replace(cpt, lssd=LSSDConfig(head_matmul="float32"))
    assert stage1_key("abc", f32, mix, 0) != "s1-" + old
