"""Stage 1 (LSSD trainer) end to end on the shipped tiny base model: a few steps each."""

import dataclasses
import json

import pytest
import torch
import yaml

from mixcpt_core.cpt import CPT_INFO_FILE, CPTConfig, LoraSettings, LSSDConfig, check_same_vocabulary, run_cpt
from mixcpt_core.models import load_causal_lm

from .conftest import ROOT

BASE = str(ROOT / "checkpoints" / "base-tiny")


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """A small D_MIX (about 40k tokens) from the tiny world, built once; returns (mix yaml path, dataset)."""
    from mixcpt_core.config import load_config
    from mixcpt_core.data import MixConfig, build_mix

    path = tmp_path_factory.mktemp("mix") / "mix.yaml"
    path.write_text(yaml.safe_dump({
        "tokenizer": BASE, "total_tokens": 40000, "seed": 0,
        "sources": [{"name": "domain", "kind": "world_domain_docs", "share": 0.6},
                    {"name": "instructions", "kind": "world_instructions", "share": 0.3},
                    {"name": "preferences", "kind": "world_preferences", "share": 0.1}]}))
    blocks, _ = build_mix(load_config(MixConfig, path))
    return path, blocks


def _cfg(tmp_path, mix_path, name, **kw):
    settings = dict(batch_size=4, max_steps=4, warmup_steps=1, save_steps=100, eval_every=0, probe_texts=4)
    settings.update(kw)
    lssd = settings.pop("lssd", {})
    return CPTConfig(base_model=BASE, mix=str(mix_path), lssd=LSSDConfig(**lssd), output_dir=str(tmp_path / name),
                     **settings)


def _history(out):
    return [r for r in json.loads((out / CPT_INFO_FILE).read_text())["history"] if "loss" in r]


def test_logs_ce_lssd_total_and_probe_kl_every_step(tmp_path, mix):
    out = run_cpt(_cfg(tmp_path, mix[0], "a", lssd={"lam": 0.5}), train_dataset=mix[1])
    h = _history(out)
    assert [r["step"] for r in h] == [1, 2, 3, 4]
    for r in h:
        assert {"loss", "ce", "lssd", "probe_kl"} <= set(r)
        assert r["loss"] == pytest.approx(0.5 * r["ce"] + 0.5 * r["lssd"], rel=1e-4)
    assert h[0]["probe_kl"] == 0 < h[-1]["probe_kl"]  # step 1 has learning rate 0 (warm-up): no move yet
    assert (out / "model.safetensors").exists()


def test_lambda_one_stays_closer_to_the_original_than_lambda_zero(tmp_path, mix):
    runs = {lam: _history(run_cpt(_cfg(tmp_path, mix[0], f"lam{lam}", lssd={"lam": lam}, max_steps=12,
                                       learning_rate=2e-3), train_dataset=mix[1]))
            for lam in (0.0, 1.0)}
    kl0, kl1 = runs[0.0][-1]["probe_kl"], runs[1.0][-1]["probe_kl"]
    assert kl1 < 0.5 * kl0, (kl0, kl1)


def test_frozen_copy_and_adapter_disabled_teachers_give_identical_losses(tmp_path, mix):
    lora = LoraSettings(r=4, alpha=8)
    hist = {t: _history(run_cpt(_cfg(tmp_path, mix[0], t, lssd={"lam": 0.7, "teacher": t}, lora=lora,
                                     max_steps=3), train_dataset=mix[1]))
            for t in ("frozen_copy", "adapter_disabled")}
    for a, b in zip(hist["frozen_copy"], hist["adapter_disabled"]):
        for key in ("loss", "ce", "lssd", "probe_kl"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4, alpha=8)], ids=["full", "lora"])
def test_gradient_checkpointing_changes_memory_not_losses(tmp_path, mix, lora):
    from transformers import TrainerCallback

    from mixcpt_core.cpt import causal_lm

    seen = []

    class Check(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            seen.append(causal_lm(model).is_activation_checkpointing)

    teacher = "frozen_copy" if lora is None else "adapter_disabled"
    hist = {gc: _history(run_cpt(_cfg(tmp_path, mix[0], f"gc{gc}", lssd={"lam": 0.5, "teacher": teacher}, lora=lora,
                                      max_steps=3, gradient_checkpointing=gc), train_dataset=mix[1],
                                 extra_callbacks=[Check()]))
            for gc in (False, True)}
    assert seen == [False, True]
    for a, b in zip(hist[False], hist[True]):
        for key in ("loss", "ce", "lssd", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_cached_teacher_is_a_close_lower_bound_of_the_online_one(tmp_path, mix):
    online = _history(run_cpt(_cfg(tmp_path, mix[0], "on", lssd={"lam": 1.0}, max_steps=1), train_dataset=mix[1]))
    cached = _history(run_cpt(_cfg(tmp_path, mix[0], "ca", lssd={"lam": 1.0, "teacher": "cached", "cache_topk": 32},
                                   max_steps=1), train_dataset=mix[1]))
    # step 1 sees the same batch with the same (original) weights: only the teacher's representation differs
    assert cached[0]["lssd"] <= online[0]["lssd"] + 1e-6
    assert cached[0]["lssd"] >= 0.9 * online[0]["lssd"]


def test_gradient_accumulation_matches_the_full_batch(tmp_path, mix):
    """Batch 4 in one go and 2 x 2 accumulated: the same logged histories (loss, its parts, gradient norm, probe KL)
    and the same weights. The weights alone would not do: Adam ignores a constant scale of the gradient and clipping
    normalises it, so an accumulated loss off by a constant factor still ends with the same weights (its logged
    gradient norm shows it)."""
    a = run_cpt(_cfg(tmp_path, mix[0], "full", batch_size=4, grad_accum=1, max_steps=2), train_dataset=mix[1])
    b = run_cpt(_cfg(tmp_path, mix[0], "accum", batch_size=2, grad_accum=2, max_steps=2), train_dataset=mix[1])
    ha, hb = _history(a), _history(b)
    assert [r["step"] for r in ha] == [1, 2] == [r["step"] for r in hb]
    for x, y in zip(ha, hb):
        for key in ("loss", "ce", "lssd", "grad_norm", "probe_kl"):
            assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-7), (x["step"], key)
    ma, _ = load_causal_lm(a)
    mb, _ = load_causal_lm(b)
    for (name, x), y in zip(ma.named_parameters(), mb.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def test_resume_after_interruption_gives_the_same_parameters(tmp_path, mix, monkeypatch):
    from transformers import TrainerCallback

    cfg = _cfg(tmp_path, mix[0], "full", max_steps=6, save_steps=3)
    full = run_cpt(cfg, train_dataset=mix[1])

    class Killed(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt  # the process dies right after writing checkpoint-3

    cut = dataclasses.replace(cfg, output_dir=str(tmp_path / "cut"))
    with pytest.raises(KeyboardInterrupt):
        run_cpt(cut, train_dataset=mix[1], extra_callbacks=[Killed()])
    assert (tmp_path / "cut" / "trainer" / "checkpoint-3").exists()
    resumed = run_cpt(cut, train_dataset=mix[1])
    # it resumed from checkpoint-3 (a run from step 0 would end with the same weights: training is deterministic)
    assert json.loads((resumed / CPT_INFO_FILE).read_text())["resumed_from_step"] == 3
    assert json.loads((full / CPT_INFO_FILE).read_text())["resumed_from_step"] == 0
    assert [r["step"] for r in _history(resumed)] == list(range(1, 7))  # the restored log history and the new steps
    ma, _ = load_causal_lm(full)
    mb, _ = load_causal_lm(resumed)
    for (name, x), y in zip(ma.named_parameters(), mb.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6, msg=name)


def test_vocabulary_mismatch_is_caught_before_training():
    from transformers import LlamaConfig, LlamaForCausalLM

    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    a, b = LlamaForCausalLM(LlamaConfig(vocab_size=100, **small)), LlamaForCausalLM(LlamaConfig(vocab_size=101, **small))
    with pytest.raises(ValueError, match="vocabularies differ in size"):
        check_same_vocabulary(a, b)


@pytest.mark.parametrize("kw, message", [
    (dict(lssd=LSSDConfig(teacher="adapter_disabled")), "needs a lora section"),
    (dict(learning_rate=-1.0), "learning_rate: must be a finite number > 0, got -1.0"),
])
def test_config_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        CPTConfig(**kw)


@pytest.mark.parametrize("kw, message", [(dict(lam=1.5), r"lam: must be a finite number in \[0, 1\]"),
                                         (dict(tau=0), "tau: must be a finite number > 0"),
                                         (dict(teacher="oracle"), "teacher: must be one of"),
                                         (dict(head_matmul="fp8"), "head_matmul: must be one of")])
def test_lssd_config_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        LSSDConfig(**kw)


@pytest.mark.parametrize("head_matmul, expected", [("autocast", torch.bfloat16), ("float32", torch.float32)])
def test_bf16_training_gives_the_loss_and_the_teacher_its_mixed_precision(tmp_path, mix, monkeypatch, head_matmul,
                                                                          expected):
    """accelerate's autocast wraps only the student's forward: the trainer itself hands its dtype to the loss's head
    products and runs the frozen teacher under it (float32 there made the GPU step 5x slower than CE's)."""
    from transformers import TrainingArguments

    from mixcpt_core import cpt

    seen = {}
    real = cpt.chunked_lssd

    def spy(h, head, y, teacher, **kw):
        seen["matmul_dtype"] = kw["matmul_dtype"]
        return real(h, head, y, teacher, **kw)

    monkeypatch.setattr(cpt, "chunked_lssd", spy)
    model, _ = load_causal_lm(BASE)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, bf16=True,
                             use_cpu=True, report_to=[], save_strategy="no", remove_unused_columns=False,
                             disable_tqdm=True)
    teacher = cpt.frozen_copy(model)
    teacher.register_forward_pre_hook(lambda *_: seen.update(teacher_autocast=torch.is_autocast_enabled("cpu")))
    model.model.layers[0].register_forward_pre_hook(  # the student's forward: autocast by accelerate, whatever the loss
        lambda *_: seen.update(student_autocast=torch.is_autocast_enabled("cpu")))
    trainer = cpt.LSSDTrainer(model=model, args=args, train_dataset=mix[1].select(range(8)),
                              data_collator=cpt.packed_collator, lssd=LSSDConfig(lam=0.5, head_matmul=head_matmul),
                              teacher_model=teacher)
    trainer.train()
    assert seen == {"matmul_dtype": expected, "teacher_autocast": expected == torch.bfloat16, "student_autocast": True}


@pytest.mark.parametrize("poison_at", [3, 4])  # 3: the next log sees NaN; 4: NaN weights right before a save
def test_a_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, mix, poison_at):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from mixcpt_core.training import NonFiniteLossError

    class Poison(TrainerCallback):  # as if the optimizer step of step `poison_at` produced NaN weights
        def on_optimizer_step(self, args, state, control, model=None, **kw):
            if state.global_step + 1 == poison_at:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

    cfg = _cfg(tmp_path, mix[0], "nan", max_steps=6, save_steps=2, probe_texts=0)
    with pytest.raises(NonFiniteLossError, match=r"at step \d: training stopped. Last good checkpoint: .*checkpoint-2"):
        run_cpt(cfg, train_dataset=mix[1], extra_callbacks=[Poison()])
    out = tmp_path / "nan"
    assert [p.name for p in (out / "trainer").glob("checkpoint-*")] == ["checkpoint-2"]
    weights = load_file(out / "trainer/checkpoint-2/model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (out / "model.safetensors").exists() and not (out / CPT_INFO_FILE).exists()


def _nan_loss_from_step(monkeypatch, step: int) -> None:
    """Make the stage-1 loss NaN from optimizer step ``step`` on, as a diverging run's would be."""
    from mixcpt_core.cpt import LSSDTrainer

    original = LSSDTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        return loss * float("nan") if self.state.global_step + 1 >= step else loss

    monkeypatch.setattr(LSSDTrainer, "compute_loss", compute_loss)


def test_a_nan_loss_stops_at_its_step_and_names_the_last_good_checkpoint(tmp_path, mix, monkeypatch):
    from safetensors.torch import load_file

    from mixcpt_core.training import NonFiniteLossError

    _nan_loss_from_step(monkeypatch, 3)  # after checkpoint-2 was written
    cfg = _cfg(tmp_path, mix[0], "nan", max_steps=6, save_steps=2, probe_texts=0)
    out = tmp_path / "nan"
    # the loss itself is reported (not the NaN weights at the next save, step 4)
    with pytest.raises(NonFiniteLossError, match=r"^loss = nan at step 3: training stopped\. Last good checkpoint: "
                                                 + str(out / "trainer" / "checkpoint-2") + ";"):
        run_cpt(cfg, train_dataset=mix[1])
    assert [p.name for p in (out / "trainer").glob("checkpoint-*")] == ["checkpoint-2"]
    weights = load_file(out / "trainer/checkpoint-2/model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (out / "model.safetensors").exists() and not (out / CPT_INFO_FILE).exists()


def test_cli_reports_a_nan_loss_in_one_line_with_exit_1(tmp_path, mix, monkeypatch, capsys):
    from mixcpt_core.cli import main

    _nan_loss_from_step(monkeypatch, 3)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"base_model": BASE, "mix": str(mix[0]), "max_steps": 4, "save_steps": 2,
                                   "batch_size": 4, "warmup_steps": 1, "eval_every": 0, "probe_texts": 0}))
    capsys.readouterr()
    assert main(["cpt", str(cfg), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "mixcpt: error:" in line]
    assert errors == [err.splitlines()[-1]] and "Traceback" not in err  # progress bars above it, then one line
    assert errors[0].startswith("mixcpt: error: loss = nan at step 3: training stopped. Last good checkpoint: "
                                f"{tmp_path / 'm' / 'trainer' / 'checkpoint-2'}; rerunning resumes from it.")
    assert not (tmp_path / "m" / "model.safetensors").exists()


@pytest.fixture(scope="module")
def cpt_reference(tmp_path_factory):
    """A 12-step ``mixcpt cpt`` (checkpoint every 4 steps) run once to its end in a subprocess:
    (config path, its output directory, seconds from the first checkpoint to its result)."""
    from .kill import mixcpt_command, run_to_the_end

    d = tmp_path_factory.mktemp("cpt-kill")
    mix_yaml = d / "mix.yaml"
    mix_yaml.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "configs/mix-tiny.yaml").read_text()),
                                        "total_tokens": 6400}))  # 12 steps x 4 blocks x 128 = 6144 tokens
    cfg = d / "cpt.yaml"
    cfg.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "configs/cpt-tiny.yaml").read_text()),
                                   "mix": str(mix_yaml), "max_steps": 12, "batch_size": 4, "save_steps": 4,
                                   "warmup_steps": 2, "eval_every": 0, "probe_texts": 0}))
    remaining = run_to_the_end(mixcpt_command("cpt", cfg, "--out", d / "full"), d / "full", FIRST_CHECKPOINT,
                               d / "full" / CPT_INFO_FILE)
    return cfg, d / "full", remaining


FIRST_CHECKPOINT = "trainer/checkpoint-*/trainer_state.json"


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_kill_at_a_random_point_then_rerun_gives_the_same_parameters(cpt_reference, tmp_path, signal_name):
    """A real ``mixcpt cpt`` process, killed (SIGKILL, or SIGTERM as a scheduler sends it) at a random moment after its
    first checkpoint (possibly while it writes a later one, or its result), then the same command again: the weights
    must equal an uninterrupted run's."""
    from .kill import kill_then_rerun, mixcpt_command

    cfg, full, remaining = cpt_reference
    out = tmp_path / "killed"
    kill = kill_then_rerun(mixcpt_command("cpt", cfg, "--out", out), out, FIRST_CHECKPOINT, remaining, signal_name,
                           out / CPT_INFO_FILE)
    resumed = json.loads((out / CPT_INFO_FILE).read_text())["resumed_from_step"]
    assert resumed in (4, 8, 12), f"resumed from step {resumed} ({kill})"  # from a checkpoint, never from the start
    a, _ = load_causal_lm(full)
    b, _ = load_causal_lm(out)
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6, msg=f"{name} ({kill})")
    assert _history(full) == _history(out), str(kill)


def test_timed_cpt_times_every_step_even_when_run_again_in_the_same_directory(tmp_path, mix):
    """A measurement must not resume: notebook 05 run a second time found its finished checkpoint, timed no step
    and failed. Both runs time all 4 steps."""
    from mixcpt_core.scaling import timed_cpt

    path, blocks = mix
    cfg = _cfg(tmp_path, path, "timed", save_steps=2)
    first = timed_cpt(cfg, train_dataset=blocks)
    again = timed_cpt(cfg, train_dataset=blocks)
    assert len(first["step_seconds"]) == len(again["step_seconds"]) == 4
    assert json.loads((tmp_path / "timed" / CPT_INFO_FILE).read_text())["resumed_from_step"] == 0
