import json

import pytest
import torch

from mixcpt_core.training import (
    BasePretrainConfig,
    StaleCheckpointError,
    base_info,
    load_base_checkpoint,
    pack_texts,
    pretrain_base,
)
from mixcpt_core.world import WORLD_PRESETS


def test_packing_loses_and_duplicates_nothing(tiny_tokenizer):
    texts = ["Ada works for Nimbus.", "Otto studied botany.", "Question: What did Otto study?\nAnswer: botany"]
    encoded = [tiny_tokenizer(t).input_ids + [tiny_tokenizer.eos_token_id] for t in texts]
    per_pass = sum(map(len, encoded))
    blocks = pack_texts(texts, tiny_tokenizer, block_size=7, n_tokens=3 * per_pass, seed=0)
    assert len(blocks) == 3 * per_pass // 7 and all(len(b) == 7 for b in blocks)
    stream = [t for b in blocks for t in b]
    first_pass = stream[:per_pass]
    # the first pass is a permutation of whole sequences, each BOS ... EOS
    seqs, cur = [], []
    for t in first_pass:
        cur.append(t)
        if t == tiny_tokenizer.eos_token_id:
            seqs.append(cur)
            cur = []
    assert sorted(seqs) == sorted(encoded)
    assert stream.count(tiny_tokenizer.bos_token_id) >= 3 * len(texts) - 1


def test_tiny_pretraining_run_writes_a_loadable_checkpoint(tmp_path):
    cfg = BasePretrainConfig(world=WORLD_PRESETS["sample"], max_steps=6, batch_size=4, block_size=32,
                             warmup_steps=1, eval_every=3, save_steps=3, output_dir=str(tmp_path / "base"))
    out = pretrain_base(cfg)
    info = base_info(out)
    assert info["cache_key"] == cfg.cache_key()
    assert info["train_tokens"] == 6 * 4 * 32
    assert [r["step"] for r in info["history"] if "heldout_qa_acc" in r] == [0, 3, 6]
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert len([r for r in json.loads((out / "mixcpt_base.json").read_text())["history"] if "loss" in r]) >= 1
    model, tok, _ = load_base_checkpoint(out, cfg)
    assert model.config.vocab_size == len(tok)
    with pytest.raises(StaleCheckpointError, match="mixcpt pretrain-base"):
        load_base_checkpoint(out, BasePretrainConfig(world=WORLD_PRESETS["sample"], max_steps=7))


def test_resume_after_interruption_gives_the_same_weights(tmp_path, monkeypatch):
    """Run 6 steps in one go; separately, a run killed right after its step-3 checkpoint, then the same command
    again: it resumes from checkpoint-3 and must end with the same weights."""
    import mixcpt_core.training as tr

    common = dict(world=WORLD_PRESETS["sample"], max_steps=6, batch_size=4, block_size=32, warmup_steps=1,
                  eval_every=100, save_steps=3)
    full = pretrain_base(BasePretrainConfig(output_dir=str(tmp_path / "a"), **common))

    class KilledAfterFirstCheckpoint(tr.QAEvalCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt  # as if the process died right after writing checkpoint-3

    with monkeypatch.context() as m:
        m.setattr(tr, "QAEvalCallback", KilledAfterFirstCheckpoint)
        with pytest.raises(KeyboardInterrupt):
            pretrain_base(BasePretrainConfig(output_dir=str(tmp_path / "b"), **common))
    assert (tmp_path / "b" / "trainer" / "checkpoint-3").exists()
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed = pretrain_base(BasePretrainConfig(output_dir=str(tmp_path / "b"), **common))
    a, _, info_a = load_base_checkpoint(full)
    b, _, info_b = load_base_checkpoint(resumed)
    # it resumed from checkpoint-3 (a run from step 0 would end with the same weights: training is deterministic)
    assert (info_a["resumed_from_step"], info_b["resumed_from_step"]) == (0, 3)
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def base_reference(tmp_path_factory):
    """A 12-step ``mixcpt pretrain-base`` on the sample world (checkpoint and QA evaluation every 4 steps), run once to
    its end in a subprocess: (config path, its output directory, seconds from the first checkpoint to its result)."""
    import yaml

    from mixcpt_core.config import to_dict

    from .kill import mixcpt_command, run_to_the_end

    d = tmp_path_factory.mktemp("base-kill")
    cfg = d / "base.yaml"
    cfg.write_text(yaml.safe_dump(to_dict(BasePretrainConfig(
        world=WORLD_PRESETS["sample"], max_steps=12, batch_size=4, block_size=32, warmup_steps=1, eval_every=4,
        save_steps=4))))
    command = mixcpt_command("pretrain-base", "--config", cfg, "--out", d / "full")
    return cfg, d / "full", run_to_the_end(command, d / "full", "trainer/checkpoint-*/trainer_state.json",
                                           d / "full" / "mixcpt_base.json")


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_killed_pretraining_rerun_gives_the_same_weights_and_metrics(base_reference, tmp_path, signal_name):
    """A real ``mixcpt pretrain-base`` killed at a random moment after its first checkpoint, then the same command
    again: the weights, the final metrics and the QA evaluations along the way equal the uninterrupted run's."""
    from .kill import kill_then_rerun, mixcpt_command

    cfg, full, remaining = base_reference
    out = tmp_path / "killed"
    kill = kill_then_rerun(mixcpt_command("pretrain-base", "--config", cfg, "--out", out), out,
                           "trainer/checkpoint-*/trainer_state.json", remaining, signal_name, out / "mixcpt_base.json")
    a, _, info_a = load_base_checkpoint(full)
    b, _, info_b = load_base_checkpoint(out)
    assert info_b["resumed_from_step"] in (4, 8, 12), str(kill)  # from a checkpoint, never from the start
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6, msg=f"{name} ({kill})")
    assert info_a["metrics"] == info_b["metrics"], str(kill)
    evals = [[r for r in info["history"] if "heldout_qa_acc" in r] for info in (info_a, info_b)]
    assert evals[0] == evals[1] and [r["step"] for r in evals[0]] == [0, 4, 8, 12], str(kill)


def test_a_partly_written_checkpoint_is_skipped_on_resume(tmp_path):
    """A process killed while the Trainer writes checkpoint-8 leaves it without (or with a truncated)
    trainer_state.json, which the Trainer writes last: resume from checkpoint-4 instead of failing on it."""
    from mixcpt_core.training import _last_checkpoint

    assert _last_checkpoint(tmp_path) is None
    for step in (4, 8, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_step": 8, "log_hist')  # cut short
    (tmp_path / "checkpoint-12" / "model.safetensors").write_bytes(b"")  # killed before the state was written
    assert _last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text('{"global_step": 12}')
    assert _last_checkpoint(tmp_path) == tmp_path / "checkpoint-12"  # by step number, not by name order
