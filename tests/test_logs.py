"""A training run prints no per-step logs: one progress bar on the screen, every logged row in the run's log file
(the same rows as the trainer's ``log_history``, also after a resume)."""

import dataclasses
import re

import pytest
import torch
from transformers import TrainerCallback

from mixcpt_core.logs import LOG_FILE, StepBar, read_log

from .conftest import ROOT

BASE = str(ROOT / "checkpoints" / "base-tiny")
# what the Trainer's callbacks printed per logged step: "{'loss': '2.535', ...}", and the QA lines "[step 3] ..."
PER_STEP_LINE = re.compile(r"\{'(loss|train_runtime)'|\[step \d+\]")


class KeepHistory(TrainerCallback):
    """The trainer's ``log_history`` as it stands when training ends."""

    def on_train_end(self, args, state, control, **kw):
        self.rows = list(state.log_history)


class Killed(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        raise KeyboardInterrupt  # the process dies right after writing its first checkpoint


def _not_timed(rows):
    """The rows a rerun reproduces: all but the Trainer's closing summary (wall times, its session's mean loss)."""
    return [r for r in rows if "train_runtime" not in r]


def test_stage1_prints_one_bar_and_logs_every_step_to_its_file(tmp_path, capfd):
    from datasets import Dataset

    from mixcpt_core.cpt import CPTConfig, LSSDConfig, run_cpt

    rows = torch.randint(3, 1259, (12, 32), generator=torch.Generator().manual_seed(0))  # ids of the tiny vocabulary
    data = Dataset.from_dict({"input_ids": rows.tolist()})
    cfg = CPTConfig(base_model=BASE, mix=str(ROOT / "configs/mix-tiny.yaml"), lssd=LSSDConfig(lam=0.5), max_steps=3,
                    batch_size=4, warmup_steps=0, logging_steps=1, save_steps=2, eval_every=3, probe_texts=2,
                    output_dir=str(tmp_path / "full"))
    kept = KeepHistory()
    capfd.readouterr()
    out = run_cpt(cfg, train_dataset=data, extra_callbacks=[kept])
    screen = "".join(capfd.readouterr())

    assert not PER_STEP_LINE.search(screen), screen
    assert re.search(r"stage 1: 100%.*3/3", screen), screen  # the run's one bar, at its end
    logged = read_log(out / LOG_FILE)
    assert logged == kept.rows  # every row of log_history, in order, values unchanged
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3]  # logging_steps = 1
    assert [r["step"] for r in logged if "heldout_qa_acc" in r] == [0, 3]  # eval_every = 3, and step 0

    # killed after its checkpoint at step 2, then rerun: the file holds the uninterrupted run's rows, none twice
    cut = dataclasses.replace(cfg, output_dir=str(tmp_path / "cut"))
    with pytest.raises(KeyboardInterrupt):
        run_cpt(cut, train_dataset=data, extra_callbacks=[Killed()])
    run_cpt(cut, train_dataset=data)
    resumed, whole = _not_timed(read_log(tmp_path / "cut" / LOG_FILE)), _not_timed(logged)
    assert len(resumed) == len(whole) and all(a == pytest.approx(b, rel=1e-6) for a, b in zip(resumed, whole))


def test_stage2_shows_one_bar_over_sft_and_dpo_and_logs_each_to_its_file(tmp_path, capfd, sample_world):
    from mixcpt_core.alignment import (DPOSettings, SFTSettings, dpo_dataset, make_dpo_trainer, make_sft_trainer,
                                       sft_dataset)
    from mixcpt_core.cpt import frozen_copy
    from mixcpt_core.models import load_causal_lm

    model, tok = load_causal_lm(BASE)
    ref = frozen_copy(model)
    bar = StepBar("stage 2", total=4)
    capfd.readouterr()
    sft = make_sft_trainer(model, tok, sft_dataset(sample_world.instructions[:4]), SFTSettings(max_steps=2, batch_size=2),
                           tmp_path / "sft", log_file=tmp_path / "sft_log.jsonl", bar=bar)
    sft.train()
    bar.offset = 2
    dpo = make_dpo_trainer(model, tok, dpo_dataset(sample_world.preferences[:4]), DPOSettings(max_steps=2, batch_size=2),
                           tmp_path / "dpo", ref_model=ref, log_file=tmp_path / "dpo_log.jsonl", bar=bar)
    dpo.train()
    screen = "".join(capfd.readouterr())

    assert not PER_STEP_LINE.search(screen), screen
    assert re.search(r"stage 2: 100%.*4/4", screen) and "2/2" not in screen, screen  # one bar, not one per trainer
    assert bar.bar is None  # closed at its total
    for trainer, name in ((sft, "sft"), (dpo, "dpo")):
        logged = read_log(tmp_path / f"{name}_log.jsonl")
        assert logged == trainer.state.log_history
        assert [r["step"] for r in logged if "loss" in r] == [1, 2]
