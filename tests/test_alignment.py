"""Stage 2: assistant-only SFT labels, DPO loss parity with a hand computation, short SFT/DPO runs (full and LoRA)."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mixcpt_core.alignment import (AlignConfig, DPOSettings, SFTSettings, completion_logps, dpo_dataset,
                                   dpo_loss_from_scratch, dpo_sigmoid_loss, make_dpo_trainer, make_sft_trainer,
                                   run_align, sft_dataset)
from mixcpt_core.models import load_causal_lm

from .conftest import ROOT

BASE = str(ROOT / "checkpoints" / "base-tiny")
STEP = dict(batch_size=4, warmup_steps=0, learning_rate=1e-3)


@pytest.fixture()
def base():
    model, tok = load_causal_lm(BASE)
    return model, tok


def _batch(trainer):
    return {k: v for k, v in next(iter(trainer.get_train_dataloader())).items()}


def test_sft_labels_are_assistant_tokens_only(base, tmp_path):
    model, tok = base
    rec = {"messages": [{"role": "user", "content": "Who was born earlier, Ada Barbrook or Bram Caldahl?"},
                        {"role": "assistant", "content": "Ada Barbrook"}]}
    trainer = make_sft_trainer(model, tok, sft_dataset([rec]), SFTSettings(max_steps=1, batch_size=1), tmp_path)
    batch = _batch(trainer)
    # independent reference: tokenise the template's pieces by hand
    prompt = tok("<|bos|><|user|>\n" + rec["messages"][0]["content"] + "<|end|>\n<|assistant|>\n",
                 add_special_tokens=False).input_ids
    answer = tok("Ada Barbrook<|end|>", add_special_tokens=False).input_ids
    tail = tok("\n", add_special_tokens=False).input_ids
    assert batch["input_ids"][0].tolist() == prompt + answer + tail
    assert batch["labels"][0].tolist() == [-100] * len(prompt) + answer + [-100] * len(tail)
    assert answer[-1] == tok.convert_tokens_to_ids("<|end|>")  # the end-of-turn token is trained on


def test_prompt_completion_sft_puts_the_loss_on_the_reply_only(base, tmp_path):
    """The format for a chat template without generation markers (SmolLM2's): prompt = [user turn], completion =
    [assistant turn]; TRL renders both with the template and masks the prompt."""
    model, tok = base
    rec = {"messages": [{"role": "user", "content": "Who was born earlier, Ada Barbrook or Bram Caldahl?"},
                        {"role": "assistant", "content": "Ada Barbrook"}]}
    data = sft_dataset([rec], fmt="prompt_completion")
    assert data[0] == {"prompt": rec["messages"][:1], "completion": rec["messages"][1:]}
    trainer = make_sft_trainer(model, tok, data, SFTSettings(max_steps=1, batch_size=1), tmp_path)
    batch = _batch(trainer)
    prompt = tok("<|bos|><|user|>\n" + rec["messages"][0]["content"] + "<|end|>\n<|assistant|>\n",
                 add_special_tokens=False).input_ids
    reply = batch["input_ids"][0].tolist()[len(prompt):]
    assert batch["input_ids"][0].tolist()[: len(prompt)] == prompt
    assert tok.decode(reply).startswith("Ada Barbrook<|end|>")
    labels = batch["labels"][0].tolist()
    assert labels[: len(prompt)] == [-100] * len(prompt) and labels[len(prompt):] == reply


def test_dpo_loss_matches_hand_computation(base, sample_world, tmp_path):
    model, tok = base
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.no_grad():  # make policy != reference so that the log-ratios are not all zero
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    beta = 0.3
    trainer = make_dpo_trainer(model, tok, dpo_dataset(sample_world.preferences[:4]),
                               DPOSettings(max_steps=1, beta=beta, **STEP), tmp_path, ref_model=ref)
    batch = _batch(trainer)
    model.eval()
    trl_loss = trainer.compute_loss(model, batch).item()
    trl_margin = trainer._metrics["eval"]["rewards/margins"][-1]  # model.eval() -> "eval"
    mine = dpo_loss_from_scratch(model, ref, batch, beta)
    # and by hand from the definition, per pair, in float64
    pi = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]).double()
    rf = completion_logps(ref, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]).double()
    d = [(pi[i] - rf[i]) - (pi[i + 4] - rf[i + 4]) for i in range(4)]
    hand = sum(torch.log1p(torch.exp(-beta * x)).item() for x in d) / 4
    assert abs(mine["loss"].item()) > 1e-3 and abs(mine["margin"].item()) > 1e-4
    assert trl_loss == pytest.approx(hand, rel=1e-4)
    assert mine["loss"].item() == pytest.approx(hand, rel=1e-4)
    assert trl_margin == pytest.approx(mine["margin"].item(), rel=1e-3, abs=1e-6)


def test_two_sft_steps_change_parameters_and_lower_the_loss(base, sample_world, tmp_path):
    model, tok = base
    trainer = make_sft_trainer(model, tok, sft_dataset(sample_world.instructions[:4]),
                               SFTSettings(max_steps=2, **STEP), tmp_path)
    batch = _batch(trainer)  # the whole training set: 4 records, one batch
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        loss0 = model(**batch).loss.item()
    trainer.train()
    with torch.no_grad():
        loss1 = model.eval()(**batch).loss.item()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert loss1 < loss0


def test_two_dpo_steps_change_parameters_and_lower_the_loss(base, sample_world, tmp_path):
    model, tok = base
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = make_dpo_trainer(model, tok, dpo_dataset(sample_world.preferences[:4]),
                               DPOSettings(max_steps=2, **STEP), tmp_path, ref_model=ref)
    batch = _batch(trainer)
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        loss0 = dpo_loss_from_scratch(model.eval(), ref, batch, 0.1)["loss"].item()
    assert loss0 == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)  # policy == reference: -log σ(0)
    trainer.train()
    with torch.no_grad():
        loss1 = dpo_loss_from_scratch(model.eval(), ref, batch, 0.1)["loss"].item()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert loss1 < loss0


def test_lora_dpo_reference_is_the_adapter_disabled(base, sample_world, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tok = base
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    with torch.no_grad():  # a trained adapter (B != 0): reference (adapter off) and policy now differ
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    trainer = make_dpo_trainer(model, tok, dpo_dataset(sample_world.preferences[:4]),
                               DPOSettings(max_steps=2, **STEP), tmp_path)
    assert "ref" not in model.peft_config
    batch = _batch(trainer)
    model.eval()
    trl_loss = trainer.compute_loss(model, batch).item()
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    with torch.no_grad():
        pi = completion_logps(model, *args)
        with model.disable_adapter():
            rf = completion_logps(model, *args)
    hand = dpo_sigmoid_loss(pi, rf, 0.1)["loss"].item()
    assert abs(hand - torch.log(torch.tensor(2.0)).item()) > 1e-4
    assert trl_loss == pytest.approx(hand, rel=1e-4)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    trainer.train()
    params = dict(model.named_parameters())
    assert any(not torch.equal(v, params[n]) for n, v in lora_before.items())
    assert all(torch.equal(v, params[n]) for n, v in base_before.items())  # the stage-1 weights stay frozen


def test_run_align_end_to_end_writes_safetensors_and_metrics(sample_world, tmp_path):
    from mixcpt_core.selection import SelectionConfig
    from mixcpt_core.world import WORLD_PRESETS

    cfg = AlignConfig(selection=SelectionConfig(model=BASE, world=WORLD_PRESETS["sample"], n_sft=4, n_dpo=4),
                      sft=SFTSettings(max_steps=2, batch_size=4), dpo=DPOSettings(max_steps=2, batch_size=4),
                      eval_questions=8, output_dir=str(tmp_path / "align"))
    info = run_align(cfg)
    out = tmp_path / "align"
    assert (out / "model.safetensors").exists() and (out / "sft" / "model.safetensors").exists()
    saved = json.loads((out / "mixcpt_align.json").read_text())
    assert set(saved["metrics"]) == {"before", "sft", "dpo"} and saved["metrics"]["before"]["n"] == 8
    assert len(json.loads((out / "selection.json").read_text())["sft"]["selected"]) == 4
    assert [r["step"] for r in info["dpo_history"]] == [1, 2]


def test_format_compliance_definition(base):
    from mixcpt_core.evaluation import parse_assistant_turn

    _, tok = base
    ids = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    assert parse_assistant_turn(ids("Amberfall<|end|>"), tok) == {"content": "Amberfall", "ended": True,
                                                                  "well_formed": True}
    assert parse_assistant_turn(ids("Amberfall<|end|>\n<|user|>"), tok)["well_formed"]  # after <|end|>: ignored
    assert not parse_assistant_turn(ids("Answer: Amberfall"), tok)["well_formed"]  # never ends the turn
    assert not parse_assistant_turn(ids("<|end|>"), tok)["well_formed"]  # empty turn
    assert not parse_assistant_turn(ids("<|assistant|>\nAmberfall<|end|>"), tok)["well_formed"]  # role token inside
    assert not parse_assistant_turn(ids("Amberfall<|eos|>"), tok)["well_formed"]


def test_plots_draw(tmp_path):
    from mixcpt_core.plots import plot_dpo_rewards, plot_selection_scores

    plot_selection_scores([0.1, 0.2, 3.0, 0.01], [3, 0], path=tmp_path / "s.png")
    h = [{"step": i, "loss": 0.7 - 0.1 * i, "rewards/chosen": 0.1 * i, "rewards/rejected": -0.1 * i,
          "rewards/margins": 0.2 * i} for i in range(1, 4)]
    plot_dpo_rewards(h, path=tmp_path / "d.png")
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "d.png").stat().st_size > 0


def test_leading_space_makes_answers_the_plain_text_tokens(base):
    _, tok = base
    msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Arcwright"}]
    row = sft_dataset([{"messages": msgs}], leading_space=True)[0]
    assert row["messages"][1]["content"] == " Arcwright" and row["messages"][0]["content"] == "Q?"
    plain = tok("Answer: Arcwright").input_ids[-1]  # the token the base model learned answers with
    chat = tok.apply_chat_template(row["messages"], tokenize=False)
    assert plain in tok(chat, add_special_tokens=False).input_ids
    pair = dpo_dataset([{"prompt": "Q?", "chosen": "a", "rejected": "b"}], leading_space=True)[0]
    assert pair["chosen"][0]["content"] == " a" and pair["rejected"][0]["content"] == " b"


def test_align_config_rejects_bad_values():
    with pytest.raises(ValueError, match="reference"):
        DPOSettings(reference="base")
    with pytest.raises(ValueError, match="max_steps"):
        SFTSettings(max_steps=0)


def test_run_align_with_lora_saves_a_merged_model(tmp_path):
    from mixcpt_core.cpt import LoraSettings
    from mixcpt_core.selection import SelectionConfig
    from mixcpt_core.world import WORLD_PRESETS

    cfg = AlignConfig(selection=SelectionConfig(model=BASE, world=WORLD_PRESETS["sample"], n_sft=4, n_dpo=4),
                      sft=SFTSettings(max_steps=2, batch_size=4), dpo=DPOSettings(max_steps=2, batch_size=4),
                      lora=LoraSettings(r=4, alpha=8), init_chat_tokens=False,  # only the adapter may change weights
                      eval_questions=4, output_dir=str(tmp_path / "lora"))
    run_align(cfg)
    merged, _ = load_causal_lm(tmp_path / "lora")  # plain safetensors: no adapter files needed to load it
    base, _ = load_causal_lm(BASE)
    assert not any(k.startswith("base_model") or "lora" in k for k in merged.state_dict())
    assert any(not torch.equal(v, merged.state_dict()[k]) for k, v in base.state_dict().items())


def _align_cfg(out, lora: bool):
    from mixcpt_core.cpt import LoraSettings
    from mixcpt_core.selection import SelectionConfig
    from mixcpt_core.world import WORLD_PRESETS

    return AlignConfig(selection=SelectionConfig(model=BASE, world=WORLD_PRESETS["sample"], n_sft=4, n_dpo=4),
                       sft=SFTSettings(max_steps=4, batch_size=2),
                       dpo=DPOSettings(max_steps=4, batch_size=2, reference="sft" if lora else "stage1"),
                       lora=LoraSettings(r=4, alpha=8, dropout=0.1) if lora else None, eval_questions=2,
                       output_dir=str(out))


@pytest.mark.parametrize("lora, killed_in, at_step", [(False, "trainer-sft", 2), (False, "trainer-dpo", 2),
                                                      (True, "trainer-sft", 4)],
                         ids=["full-killed-in-sft", "full-killed-in-dpo", "lora-killed-after-sft"])
def test_stage2_resumes_after_interruption_with_the_same_parameters(tmp_path, monkeypatch, lora, killed_in, at_step):
    """Kill run_align right after a checkpoint of SFT or DPO (4 steps each, a checkpoint every step) and rerun it:
    the rerun must train only the missing steps and end with the weights of an uninterrupted run.

    The LoRA case (DPO reference = the SFT model, LoRA dropout on) dies after SFT's last checkpoint, before DPO
    started: DPO's fresh adapter is then drawn from the random state SFT left behind, which the rerun (loading the
    finished SFT instead of training it) must restore."""
    import mixcpt_core.alignment as al
    from transformers import TrainerCallback

    steps = []  # (trainer directory, global step) of every optimizer step taken

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            steps.append((Path(args.output_dir).name, state.global_step))

    class Killed(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if Path(args.output_dir).name == killed_in and state.global_step == at_step:
                raise KeyboardInterrupt  # the process dies right after writing this checkpoint

    quiet, callbacks = al._quiet, [Record()]

    def with_callbacks(trainer, *args):  # every trainer run_align makes gets these callbacks
        for c in callbacks:
            trainer.add_callback(c)
        return quiet(trainer, *args)

    monkeypatch.setattr(al, "_quiet", with_callbacks)

    run_align(_align_cfg(tmp_path / "full", lora))
    assert steps == [("trainer-sft", s) for s in range(1, 5)] + [("trainer-dpo", s) for s in range(1, 5)]
    assert not any((tmp_path / "full" / d).exists() for d in al.TRAINER_DIRS)  # removed once the result is written

    callbacks.append(Killed())
    with pytest.raises(KeyboardInterrupt):
        run_align(_align_cfg(tmp_path / "cut", lora))
    assert (tmp_path / "cut" / killed_in / f"checkpoint-{at_step}").exists()
    assert not (tmp_path / "cut" / "mixcpt_align.json").exists()

    callbacks.pop()
    steps.clear()
    info = run_align(_align_cfg(tmp_path / "cut", lora))
    if killed_in == "trainer-sft":
        assert steps == [("trainer-sft", s) for s in range(at_step + 1, 5)] + [("trainer-dpo", s) for s in range(1, 5)]
    else:
        assert steps == [("trainer-dpo", s) for s in range(at_step + 1, 5)]
    assert [r["step"] for r in info["sft_history"]] == [1, 2, 3, 4] == [r["step"] for r in info["dpo_history"]]
    assert info["resumed_from_step"] == ({"sft": at_step, "dpo": 0} if killed_in == "trainer-sft"
                                         else {"sft": 4, "dpo": at_step})  # a finished SFT is loaded: step 4
    full, _ = load_causal_lm(tmp_path / "full")
    resumed, _ = load_causal_lm(tmp_path / "cut")
    for (name, x), y in zip(full.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def align_reference(tmp_path_factory):
    """``mixcpt align`` on the base model (8 instructions and 6 pairs selected, SFT 8 steps, DPO 8 steps, a checkpoint every 2 steps of
    each) run once to its end in a subprocess: (config path, its output directory, seconds from SFT's first
    checkpoint to its result)."""
    import yaml

    from mixcpt_core.config import to_dict

    from .kill import mixcpt_command, run_to_the_end

    d = tmp_path_factory.mktemp("align-kill")
    cfg = _align_cfg(d / "unused", lora=False)
    cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, n_sft=8, n_dpo=6),
                              sft=dataclasses.replace(cfg.sft, max_steps=8),
                              dpo=dataclasses.replace(cfg.dpo, max_steps=8), eval_questions=8)
    path = d / "align.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    command = mixcpt_command("align", path, "--out", d / "full")
    return path, d / "full", run_to_the_end(command, d / "full", "trainer-sft/checkpoint-*/trainer_state.json",
                                            d / "full" / "mixcpt_align.json")


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_killed_stage2_rerun_gives_the_same_weights_and_metrics(align_reference, tmp_path, signal_name):
    """A real ``mixcpt align`` killed at a random moment after SFT's first checkpoint (in SFT, in DPO, in an
    evaluation, while a model or the result is written, or while the checkpoints are removed), then the same
    command again: the final weights and every evaluation equal the uninterrupted run's."""
    from .kill import kill_then_rerun, mixcpt_command

    path, full, remaining = align_reference
    out = tmp_path / "killed"
    kill = kill_then_rerun(mixcpt_command("align", path, "--out", out), out,
                           "trainer-sft/checkpoint-*/trainer_state.json", remaining, signal_name,
                           out / "mixcpt_align.json")
    a, _ = load_causal_lm(full)
    b, _ = load_causal_lm(out)
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6, msg=f"{name} ({kill})")
    info_a, info_b = (json.loads((d / "mixcpt_align.json").read_text()) for d in (full, out))
    assert info_a["metrics"] == info_b["metrics"], str(kill)
    resumed = info_b["resumed_from_step"]
    if kill.finished:  # the checkpoints were (being) removed: a rerun of a finished stage 2 trains it again
        assert resumed["sft"] in (0, 8) and resumed["dpo"] in (0, 8), f"{resumed} ({kill})"
    else:  # SFT from one of its checkpoints, or loaded finished; DPO from the start or one of its checkpoints
        assert resumed["sft"] in (2, 4, 6, 8) and resumed["dpo"] in ((0, 2, 4, 6, 8) if resumed["sft"] == 8 else (0,)), \
            f"{resumed} ({kill})"
    assert not [p.name for p in out.iterdir() if p.name.startswith(("trainer-", ".trainer-"))], str(kill)


def test_stage2_lora_trains_the_chat_token_rows_and_its_reference_is_the_stage1_model(base):
    """add_stage2_lora: the chat tokens' embedding rows are trainable (PEFT trainable tokens, tied head included),
    every other base weight is frozen, and with the adapter disabled the model is exactly the stage-1 model."""
    from mixcpt_core.alignment import add_stage2_lora, init_chat_token_embeddings
    from mixcpt_core.cpt import LoraSettings, frozen_copy

    model, tok = base
    ids = init_chat_token_embeddings(model, tok)
    stage1 = frozen_copy(model)
    peft = add_stage2_lora(model, LoraSettings(r=4, alpha=8), ids)
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert any("token_adapter" in n for n in trainable) and any("lora_A" in n for n in trainable)
    assert all("lora_" in n or "token_adapter" in n for n in trainable)
    with torch.no_grad():  # as after training: the adapter and the chat rows have moved
        for n, p in peft.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    x = tok("<|bos|><|user|>\nWhat did Ada Barbrook study?<|end|>\n<|assistant|>\n", add_special_tokens=False,
            return_tensors="pt").input_ids
    with torch.no_grad():
        policy = peft(input_ids=x).logits
        with peft.disable_adapter():
            reference = peft(input_ids=x).logits
        expected = stage1(input_ids=x).logits
    assert torch.allclose(reference, expected, atol=1e-6)
    end = tok.convert_tokens_to_ids("<|end|>")
    assert not torch.allclose(policy[..., end], expected[..., end], atol=1e-3)  # the head row of <|end|> moved


@pytest.mark.parametrize("new_tokens", [True, False], ids=["with-chat-token-rows", "lora-alone"])
def test_lora_stage2_learns_the_format_within_full_fine_tunings_budget(tmp_path, monkeypatch, new_tokens):
    """On the base model (never saw the chat template), LoRA r 16 learns the format in the same 100 SFT steps at
    lr 1e-3 that full fine-tuning uses (the stage-2 defaults of configs/align-tiny.yaml): format compliance on the
    validation questions >= 0.9 after SFT. Without trainable chat-token rows it does not (the failure this fixes)."""
    import mixcpt_core.alignment as alignment
    from mixcpt_core.config import load_config
    from mixcpt_core.cpt import LoraSettings

    if not new_tokens:
        real = alignment.add_stage2_lora
        monkeypatch.setattr(alignment, "add_stage2_lora", lambda m, lora, ids: real(m, lora, []))
    cfg = load_config(AlignConfig, ROOT / "configs/align-tiny.yaml")
    cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, model=BASE), lora=LoraSettings(r=16, alpha=32),
                              dpo=dataclasses.replace(cfg.dpo, max_steps=2), eval_questions=48,
                              output_dir=str(tmp_path / "lora"))
    assert (cfg.sft.max_steps, cfg.sft.learning_rate) == (100, 1e-3)
    info = run_align(cfg)
    compliance = info["metrics"]["sft"]["format_compliance"]
    if new_tokens:
        assert compliance >= 0.9
    else:
        assert compliance < 0.1


def test_skip_is_no_stage2_and_the_stage1_validation_is_computed_once(tmp_path, monkeypatch):
    """``skip: true`` (a setting a declared search may choose): nothing is trained, the stage-1 model is the result,
    its validation numbers are the info's. Those numbers are cached per stage-1 model: a second stage 2 from the
    same model does not evaluate it again."""
    import mixcpt_core.alignment as al
    from mixcpt_core.pipelines import run_stage2
    from mixcpt_core.selection import SelectionConfig
    from mixcpt_core.world import WORLD_PRESETS

    calls = []
    real = al.evaluate_validation
    monkeypatch.setattr(al, "evaluate_validation", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = AlignConfig(selection=SelectionConfig(model=BASE, world=WORLD_PRESETS["sample"], n_sft=4, n_dpo=4),
                      sft=SFTSettings(max_steps=1, batch_size=4), dpo=DPOSettings(max_steps=1, batch_size=4),
                      eval_questions=4, skip=True)
    model_dir, info = run_stage2(Path(BASE), "base0", cfg, 0, False, tmp_path, ROOT)
    assert model_dir == Path(BASE) and info["skipped"] and info["n_sft"] == 0
    assert info["metrics"]["dpo"] == info["metrics"]["before"] and len(calls) == 1
    assert len(list((tmp_path / "eval").glob("validation-base0-*.json"))) == 1
    trained_dir, trained = run_stage2(Path(BASE), "base0", dataclasses.replace(cfg, skip=False), 0, False, tmp_path,
                                      ROOT)
    assert trained_dir != Path(BASE) and (trained_dir / "model.safetensors").exists()
    assert trained["metrics"]["before"] == info["metrics"]["before"]
    assert len(calls) == 3  # after SFT and after DPO only: "before" came from the cache
