"""Stage 2 of Mix-CPT: format alignment with a few selected general samples, SFT then DPO (TRL), chat template.

* **SFT** (``trl.SFTTrainer``): conversational records ``{"messages": [user, assistant]}`` rendered with the
  tokenizer's chat template; the loss is the token-mean NLL over *assistant tokens only* (``assistant_only_loss``:
  the template's ``{% generation %}`` block = answer content + ``<|end|>``). Prompt and role tokens get label -100.
* **DPO** (``trl.DPOTrainer``), sigmoid loss: for a pair (x, y_w, y_l),
  ``L = -log σ(β [(log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))])``, mean over pairs,
  where log π(y|x) is the *sum* of the completion tokens' log-probabilities. The reference π_ref is the stage-1
  model (``dpo.reference = stage1``, the issue's choice) or the SFT model (``sft``, the usual DPO recipe): a frozen
  copy for full fine-tuning, the same model with its LoRA adapter disabled for PEFT (no second copy of weights).
  :func:`dpo_loss_from_scratch` recomputes this loss by hand (a test checks it equals TRL's).

:func:`run_align` runs selection -> SFT -> DPO and evaluates chat-format QA accuracy and format compliance on the
*validation* questions (general and domain) before stage 2, after SFT and after DPO: the test questions are never
read here, so a stage-2 recipe can be chosen on these numbers (:mod:`mixcpt_core.search`).

**LoRA** (``lora``): the adapter on the linear layers plus the embedding rows of the chat tokens
(:func:`add_stage2_lora`), which a model that never saw the template must learn to read and to emit.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset

from .atomic import remove_directory, write_text_atomic
from .config import check_choice, check_numbers
from .cpt import LoraSettings, frozen_copy
from .evaluation import EvalSpec
from .logs import LOG_FILE, StepBar
from .selection import SelectionConfig

ALIGN_INFO_FILE = "mixcpt_align.json"
REFERENCES = ("stage1", "sft")
SFT_FORMATS = ("messages", "prompt_completion")
# TRL 1.x reads transformers 5's deprecated `is_gradient_checkpointing` during every SFT/DPO step: 24 identical
# warnings per `make reproduce` that the user can do nothing about. Only that message is silenced.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

TRAINER_DIRS = ("trainer-sft", "trainer-dpo")  # run_align's Trainer checkpoints, one directory per trainer
LOG_FILES = ("sft_log.jsonl", "dpo_log.jsonl")  # run_align's per-step logs (kept: the checkpoints are removed)
CHECKPOINTS_PER_TRAINER = 4  # a rerun after an interruption loses at most a quarter of the SFT or DPO steps


@dataclass
class SFTSettings:
    """SFT on the selected instructions. A fixed step budget, so that runs with different N cost the same."""

    max_steps: int = 60
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup_steps: int = 5
    max_length: int = 256

    RANGES = {"max_steps": ">= 1", "batch_size": ">= 1", "learning_rate": "> 0", "warmup_steps": ">= 0",
              "max_length": ">= 1"}

    def __post_init__(self):
        check_numbers(self)


@dataclass
class DPOSettings:
    """DPO (sigmoid loss) on the selected preference pairs."""

    max_steps: int = 30
    batch_size: int = 8
    learning_rate: float = 2e-4
    beta: float = 0.1
    warmup_steps: int = 3
    reference: str = "stage1"  # stage1 | sft
    max_length: int = 256

    RANGES = {**SFTSettings.RANGES, "beta": "> 0"}

    def __post_init__(self):
        check_numbers(self)
        check_choice(self.reference, "reference", REFERENCES)


@dataclass
class AlignConfig:
    """Stage 2 end to end: selection (``selection``), SFT (``sft``), DPO (``dpo``), optional LoRA."""

    selection: SelectionConfig = field(default_factory=SelectionConfig)
    sft: SFTSettings = field(default_factory=SFTSettings)
    dpo: DPOSettings = field(default_factory=DPOSettings)
    lora: LoraSettings | None = None
    eval_questions: int = 0  # validation questions per split (general_val, domain_val) at each point; 0 = all
    init_chat_tokens: bool = True  # set the never-trained chat-token embeddings to the mean embedding first
    leading_space: bool = True  # answers as " answer" (same BPE tokens as in plain text, see sft_dataset)
    # messages: the template's {% generation %} block marks the loss (this project's tokenizers); prompt_completion:
    # TRL's prompt/completion rows, loss on the completion (a hub template without generation markers, e.g. SmolLM2)
    sft_format: str = "messages"
    evaluation: EvalSpec | None = None  # validation questions and match rule; None = the world's, exact match
    # no stage 2 at all: the stage-1 model is the result (only its validation numbers are written). A setting a
    # declared search can choose, so that "is stage 2 needed?" is answered on validation like every other choice
    skip: bool = False
    # the validation numbers between SFT and DPO too (a real model's long replies make each evaluation cost minutes;
    # the search reads only the final ones)
    eval_after_sft: bool = True
    seed: int = 0
    output_dir: str = "runs/tiny/align"

    RANGES = {"eval_questions": ">= 0", "seed": ">= 0"}
    # the stage-1 model: its default holds only when run from the repository root after `mixcpt cpt`
    REQUIRED = ("selection.model",)

    def __post_init__(self):
        check_numbers(self)
        check_choice(self.sft_format, "sft_format", SFT_FORMATS)


# -- datasets ------------------------------------------------------------------------------------------------------
def _answer(text: str, leading_space: bool) -> str:
    return " " + text if leading_space and not text.startswith(" ") else text


def sft_dataset(records: list[dict], leading_space: bool = False, fmt: str = "messages") -> Dataset:
    """Conversational SFT data: one ``{"messages": [...]}`` row per instruction record, or with
    ``fmt="prompt_completion"`` one ``{"prompt": [user turn], "completion": [assistant turn]}`` row (TRL then puts the
    loss on the completion tokens: for a chat template without ``{% generation %}`` markers, such as SmolLM2's).

    ``leading_space``: write each assistant answer as ``" " + answer``. Why: byte-level BPE gives a word a
    different token at the start of a text (``Arcwright``) than after a space (``ĠArcwright``); the chat template
    starts the answer right after ``<|assistant|>\n``, so without the space every answer begins with a token the
    model (trained on ``Answer: Arcwright``) has almost never seen, and its knowledge does not carry over."""
    rows = [[{**m, "content": _answer(m["content"], leading_space)} if m["role"] == "assistant" else m
             for m in r["messages"]] for r in records]
    if fmt == "prompt_completion":
        return Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in rows])
    return Dataset.from_list([{"messages": m} for m in rows])


def dpo_dataset(pairs: list[dict], leading_space: bool = False) -> Dataset:
    """Conversational preference data: ``prompt`` = [user turn], ``chosen`` / ``rejected`` = [assistant turn]
    (``leading_space`` as in :func:`sft_dataset`)."""
    return Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt"]}],
                               "chosen": [{"role": "assistant", "content": _answer(p["chosen"], leading_space)}],
                               "rejected": [{"role": "assistant", "content": _answer(p["rejected"], leading_space)}]}
                              for p in pairs])


def _common_args(out: Path, s, seed: int, checkpoints: bool = False) -> dict:
    """Trainer arguments shared by SFT and DPO. ``checkpoints``: write :data:`CHECKPOINTS_PER_TRAINER` Trainer
    checkpoints (the last at the final step; only the newest is kept) into ``out``, for a rerun to resume from."""
    saving = (dict(save_strategy="steps", save_steps=max(1, math.ceil(s.max_steps / CHECKPOINTS_PER_TRAINER)),
                   save_total_limit=1) if checkpoints else dict(save_strategy="no"))
    return dict(output_dir=str(out), max_steps=s.max_steps, per_device_train_batch_size=s.batch_size,
                learning_rate=s.learning_rate, warmup_steps=s.warmup_steps, lr_scheduler_type="cosine",
                max_length=s.max_length, logging_steps=1, report_to=[], seed=seed, **saving,
                logging_nan_inf_filter=False,  # log a NaN loss as NaN (FiniteGuard stops on it); changes no finite run
                data_seed=seed, bf16=False, gradient_checkpointing=False,  # tiny model: memory is not the issue
                use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True)


# -- trainers --------------------------------------------------------------------------------------------------------
def _quiet(trainer, log_file: str | Path, bar):
    """No per-step log lines on the screen: the rows of ``trainer.state.log_history`` go to ``log_file``, progress to
    ``bar`` (:func:`mixcpt_core.logs.quiet_trainer`), so a terminal or a notebook cell stays readable. Also adds the
    NaN/inf guard (:class:`mixcpt_core.training.FiniteGuard`)."""
    from .logs import quiet_trainer
    from .training import FiniteGuard

    trainer.add_callback(FiniteGuard())
    return quiet_trainer(trainer, log_file, bar)


def make_sft_trainer(model, tokenizer, dataset: Dataset, s: SFTSettings, out: str | Path, seed: int = 0,
                     checkpoints: bool = False, log_file: str | Path | None = None, bar="SFT"):
    """A ``trl.SFTTrainer`` that trains on assistant tokens only: the chat template's generation block for
    ``messages`` rows, the completion for ``prompt``/``completion`` rows (:func:`sft_dataset`);
    ``checkpoints``: write Trainer checkpoints into ``out`` (see :func:`_common_args`). Every step's logged row goes
    to ``log_file`` (default ``<out>/train_log.jsonl``) and progress to ``bar`` (a
    :class:`mixcpt_core.logs.StepBar` or the description of a bar of its own), nothing per step to the screen."""
    from trl import SFTConfig, SFTTrainer

    from .sources import quiet_datasets

    with warnings.catch_warnings(), quiet_datasets():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames gradient_checkpointing
        messages = "messages" in dataset.column_names
        args = SFTConfig(**_common_args(Path(out), s, seed, checkpoints), assistant_only_loss=messages,
                         completion_only_loss=None if messages else True, packing=False)
        return _quiet(SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer),
                      log_file or Path(out) / LOG_FILE, bar)


def make_dpo_trainer(model, tokenizer, dataset: Dataset, s: DPOSettings, out: str | Path, ref_model=None,
                     seed: int = 0, checkpoints: bool = False, log_file: str | Path | None = None, bar="DPO"):
    """A ``trl.DPOTrainer`` with the sigmoid loss and ``beta = s.beta`` (``checkpoints``, ``log_file`` and ``bar``
    as in :func:`make_sft_trainer`).

    ``ref_model``: a frozen model (full fine-tuning) or ``None`` for a PEFT ``model``, whose reference is then the
    model with its adapter *disabled*. TRL would otherwise copy an existing adapter into a "ref" adapter (the
    reference would be the adapter's current state), so that copy is removed again.
    """
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    if ref_model is None and not isinstance(model, PeftModel):
        raise ValueError("DPO needs ref_model for a non-PEFT model (TRL would try to reload it from its name)")
    from .sources import quiet_datasets

    with warnings.catch_warnings(), quiet_datasets():
        warnings.simplefilter("ignore", FutureWarning)
        args = DPOConfig(**_common_args(Path(out), s, seed, checkpoints), beta=s.beta, loss_type=["sigmoid"])
        trainer = _quiet(DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                                    processing_class=tokenizer), log_file or Path(out) / LOG_FILE, bar)
    if ref_model is None and "ref" in model.peft_config:
        model.delete_adapter("ref")  # reference = adapter disabled (see docstring)
    return trainer


# -- DPO from scratch ------------------------------------------------------------------------------------------------
def completion_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     completion_mask: torch.Tensor) -> torch.Tensor:
    """Sum of log p(token) over completion tokens: ``[B, T]`` inputs -> ``[B]``.

    Token t is predicted at position t-1, so the logits are shifted by one against the ids and the mask."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()  # [B, T, V]
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    return (logp * completion_mask[:, 1:]).sum(dim=1)


def dpo_sigmoid_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> dict:
    """DPO sigmoid loss from sequence log-probs ``[2B]`` (rows ``[:B]`` chosen, ``[B:]`` rejected, TRL's layout).

    Returns scalars ``loss`` (mean over the B pairs of -log σ(β·Δ), Δ = chosen log-ratio - rejected log-ratio),
    ``chosen_reward`` / ``rejected_reward`` (mean of β·(log π - log π_ref) per side) and ``margin`` (mean β·Δ, what
    TRL logs as ``rewards/margins``)."""
    chosen, rejected = (policy_logps - ref_logps).chunk(2)  # [B] log-ratios of the chosen and rejected answers
    delta = chosen - rejected
    return {"loss": -F.logsigmoid(beta * delta).mean(), "chosen_reward": (beta * chosen).mean().detach(),
            "rejected_reward": (beta * rejected).mean().detach(), "margin": (beta * delta).mean().detach()}


def dpo_loss_from_scratch(policy, reference, batch: dict, beta: float) -> dict:
    """:func:`dpo_sigmoid_loss` of one collated DPO batch (``input_ids``, ``attention_mask``, ``completion_mask``,
    each ``[2B, T]``), with the policy's and the frozen ``reference`` model's completion log-probs."""
    ids, mask, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    with torch.no_grad():
        ref = completion_logps(reference, ids, mask, comp)
    return dpo_sigmoid_loss(completion_logps(policy, ids, mask, comp), ref, beta)


def init_chat_token_embeddings(model, tokenizer) -> list[int]:
    """Set the input (and, if untied, output) embedding rows of the chat tokens (role tokens and ``<|end|>``) to the
    mean of all other rows; returns their ids.

    Why: a base model that only read plain text never updated these rows, so they are still at their random
    initialisation and put the model's hidden states off the distribution it was trained on. The mean embedding is
    the usual initialisation for added tokens. Measured (N = 64, stage-1 model runs/nb02/lam0.5, one seed):
    held-out chat QA after SFT 0.331 with it, 0.273 without. The mechanism is not established: the initial NLL of
    ``<|end|>`` barely moves (27 -> 25 nats on one example). Only for models that never saw the template.
    """
    from .tokenizer import END_OF_TURN, ROLE_TOKENS

    ids = [tokenizer.convert_tokens_to_ids(t) for t in (END_OF_TURN, *ROLE_TOKENS.values())]
    with torch.no_grad():
        for emb in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
            keep = torch.ones(emb.weight.shape[0], dtype=torch.bool)
            keep[ids] = False
            emb.weight[ids] = emb.weight[keep].mean(0)
    return ids


# -- stage 2 end to end ----------------------------------------------------------------------------------------------
def evaluate_validation(model, tokenizer, val: dict[str, list[dict]], spec: EvalSpec | None = None) -> dict:
    """Chat-format QA on the *validation* questions (``val``: {"general": general_val items, "domain": domain_val
    items}), the only QA stage 2 looks at: ``general_accuracy``, ``domain_accuracy``, their mean ``score`` (what the
    stage-2 search maximises), ``format_compliance`` pooled over both sets, ``n`` and 8 example generations."""
    from .evaluation import chat_qa_metrics

    kw = (dict(match=spec.match, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size,
               leak_check=spec.leak_check, **spec.decoding()) if spec else {})
    m = {name: chat_qa_metrics(model, tokenizer, items, **kw) for name, items in val.items()}
    n = sum(r["n"] for r in m.values())
    return {"general_accuracy": m["general"]["accuracy"], "domain_accuracy": m["domain"]["accuracy"],
            "score": (m["general"]["accuracy"] + m["domain"]["accuracy"]) / 2,
            "format_compliance": sum(r["format_compliance"] * r["n"] for r in m.values()) / max(1, n), "n": n,
            "examples": [g["raw"] for g in (m["general"]["generations"][:4] + m["domain"]["generations"][:4])]}


def cached_validation(model, tokenizer, val: dict[str, list[dict]], spec: EvalSpec | None,
                      cache: tuple[Path, str] | None) -> dict:
    """:func:`evaluate_validation`, cached: ``cache`` = (folder, the model's key), the file
    ``<folder>/validation-<key>-<hash>.json`` (hash of the evaluation and of the question ids). Every stage-2 setting
    of a search starts from the same stage-1 model, whose validation numbers need computing once. ``None``: not
    cached (a model passed in, ``mixcpt align``)."""
    import hashlib

    from .config import to_dict

    if cache is None:
        return evaluate_validation(model, tokenizer, val, spec)
    blob = json.dumps({"spec": to_dict(spec) if spec else None,
                       "val": {name: [q["id"] for q in items] for name, items in val.items()}}, sort_keys=True)
    folder, key = cache
    path = Path(folder) / f"validation-{key}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.json"
    if not path.exists():
        write_text_atomic(path, json.dumps(evaluate_validation(model, tokenizer, val, spec), indent=1) + "\n")
    return json.loads(path.read_text(encoding="utf-8"))


def add_stage2_lora(model, lora: LoraSettings, new_token_ids: list[int]):
    """``model`` wrapped in a PEFT LoRA adapter for stage 2 whose trainable parameters also include the embedding rows
    of ``new_token_ids`` (the chat tokens a base model never trained; PEFT's ``trainable_token_indices``).

    Why: LoRA alone leaves those rows at their initialisation, and a low-rank update of the layers cannot make the
    model *emit* ``<|end|>`` when the head row that scores it never moves: format compliance stayed at 0.000 in
    every LoRA run without them. With a tied head (the tiny model) PEFT trains the shared rows once; an untied head
    gets its own trainable rows. Disabling the adapter (the DPO reference) disables these rows too, so the reference
    is the stage-1 model exactly as full fine-tuning's frozen copy is."""
    from peft import LoraConfig, get_peft_model

    tokens = None
    if new_token_ids:
        names = {m: n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
        emb_in, emb_out = model.get_input_embeddings(), model.get_output_embeddings()
        tied = emb_out is None or emb_out.weight is emb_in.weight
        tokens = ({names[emb_in]: list(new_token_ids)} if tied else
                  {names[emb_in]: list(new_token_ids), names[emb_out]: list(new_token_ids)})
    model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM",
                                             trainable_token_indices=tokens))
    out = model.get_output_embeddings()
    if not hasattr(out, "bias"):
        # TRL's fused LM-head loss reads ``lm_head.bias``; PEFT's TrainableTokensWrapper forwards only ``weight``
        # (which it returns merged with the trainable rows, so the fused loss sees the trained rows)
        out.bias = getattr(out.token_adapter.base_layer, "bias", None) if hasattr(out, "token_adapter") else None
    return model


def _history(trainer) -> list[dict]:
    return [{k: v for k, v in r.items() if isinstance(v, (int, float))} for r in trainer.state.log_history
            if "loss" in r]


def run_align(cfg: AlignConfig, root: str | Path = ".", selection: dict | None = None, model=None,
              tokenizer=None, validation_cache: tuple[Path, str] | None = None) -> dict:
    """Selection -> SFT -> DPO from the stage-1 model ``cfg.selection.model``; evaluates before, after SFT and after
    DPO. Writes ``selection.json``, ``sft/`` and the final model (safetensors) + ``mixcpt_align.json`` to
    ``cfg.output_dir`` and returns the info dict (metrics, training histories, timings).

    SFT and DPO write Trainer checkpoints into ``trainer-sft/`` and ``trainer-dpo/``. Rerunning after an
    interruption loads a finished SFT, resumes the unfinished trainer from its last checkpoint and ends with the
    same weights as an uninterrupted run; both directories are removed once the result is written. Their logged
    rows go to ``sft_log.jsonl`` and ``dpo_log.jsonl``; the screen shows one progress bar for both.
    ``validation_cache``: (folder, key of the stage-1 model) to cache its validation numbers in
    (:func:`cached_validation`); ``cfg.skip``: no stage 2, only those numbers are written."""
    from transformers import set_seed

    from .config import to_dict
    from .models import load_causal_lm
    from .selection import (check_chat_template, check_pool_sizes, general_pool, run_selection, selected_records,
                            stage1_model)
    from .training import _last_checkpoint, train_or_resume
    from .world import generate_world

    t0 = time.time()
    root, out = Path(root), Path(cfg.output_dir)
    world = generate_world(cfg.selection.world)
    pool = general_pool(cfg.selection, root)  # the world's general samples, or a pool folder's
    if selection is None:
        check_pool_sizes(cfg.selection, pool)  # before the model is loaded and before anything is written
    if model is None:
        location = stage1_model(cfg.selection, root)
        check_chat_template(location)
        model, tokenizer = load_causal_lm(location)
    else:
        check_chat_template(cfg.selection.model, tokenizer)
    val = {name: world.qa_split(split) for name, split in (("general", "general_val"), ("domain", "domain_val"))}
    if cfg.evaluation is not None and cfg.evaluation.general == "realworld":  # a real model's own knowledge
        from .realworld import realworld_split

        val["general"] = realworld_split()["val"]
    val = {name: items[: cfg.eval_questions] if cfg.eval_questions else items for name, items in val.items()}
    (out / ALIGN_INFO_FILE).unlink(missing_ok=True)  # inputs checked; an earlier result is incomplete while rewritten
    before = cached_validation(model, tokenizer, val, cfg.evaluation, validation_cache)
    if cfg.skip:  # no stage 2: the validation numbers of the model as it is, nothing trained or saved
        info = {"config": to_dict(cfg), "metrics": {"before": before, "dpo": before}, "n_sft": 0, "n_dpo": 0,
                "sft_history": [], "dpo_history": [], "seconds": round(time.time() - t0, 1), "skipped": True}
        write_text_atomic(out / ALIGN_INFO_FILE, json.dumps(info, indent=2) + "\n")
        return info
    if selection is None:
        selection = run_selection(cfg.selection, model, tokenizer, out_dir=out, root=root)
    sft_records, pairs = selected_records(pool, selection)

    metrics = {"before": before}
    chat_ids = init_chat_token_embeddings(model, tokenizer) if cfg.init_chat_tokens else []
    stage1 = frozen_copy(model) if cfg.lora is None else None
    set_seed(cfg.seed)
    if cfg.lora is not None:
        model = add_stage2_lora(model, cfg.lora, chat_ids)
    sft_dir, dpo_dir = (out / d for d in TRAINER_DIRS)
    bar = StepBar("stage 2", total=cfg.sft.max_steps + cfg.dpo.max_steps)  # SFT's steps, then DPO's
    sft = make_sft_trainer(model, tokenizer, sft_dataset(sft_records, cfg.leading_space, cfg.sft_format), cfg.sft,
                           sft_dir, cfg.seed, checkpoints=True, log_file=out / LOG_FILES[0], bar=bar)
    sft_resumed = train_or_resume(sft, _last_checkpoint(sft_dir))  # a finished SFT is loaded, not run again
    if cfg.eval_after_sft:
        metrics["sft"] = evaluate_validation(model, tokenizer, val, cfg.evaluation)
    _save(model, tokenizer, out / "sft", cfg.lora is not None)

    if cfg.dpo.reference == "sft":
        ref = frozen_copy(model) if cfg.lora is None else None
        if cfg.lora is not None:  # reference = the SFT'd model: merge the SFT adapter, start a fresh one for DPO
            model = add_stage2_lora(model.merge_and_unload(), cfg.lora, chat_ids)
    else:
        ref = stage1  # None for LoRA: the adapter disabled is the stage-1 model
    dpo = make_dpo_trainer(model, tokenizer, dpo_dataset(pairs, cfg.leading_space), cfg.dpo, dpo_dir, ref,
                           cfg.seed, checkpoints=True, log_file=out / LOG_FILES[1], bar=bar)
    bar.offset = cfg.sft.max_steps
    dpo_resumed = train_or_resume(dpo, _last_checkpoint(dpo_dir))
    bar.close()  # already closed, unless DPO was loaded finished (a rerun) and never started
    metrics["dpo"] = evaluate_validation(model, tokenizer, val, cfg.evaluation)
    _save(model, tokenizer, out, cfg.lora is not None)

    info = {"config": to_dict(cfg), "metrics": metrics, "n_sft": len(sft_records), "n_dpo": len(pairs),
            "sft_history": _history(sft), "dpo_history": _history(dpo), "seconds": round(time.time() - t0, 1),
            "resumed_from_step": {"sft": sft_resumed, "dpo": dpo_resumed}}
    write_text_atomic(out / ALIGN_INFO_FILE, json.dumps(info, indent=2) + "\n")  # last: it marks the result complete
    for d in (sft_dir, dpo_dir):  # the result is written: the checkpoints only served a rerun (and hold ~3x the model)
        remove_directory(d)
    return info


def _save(model, tokenizer, path: Path, is_peft: bool) -> None:
    """Save a plain safetensors checkpoint (a PEFT model is merged into a copy first, so training can go on)."""
    final = copy.deepcopy(model).merge_and_unload() if is_peft else model
    final.save_pretrained(path)
    tokenizer.save_pretrained(path)


ALIGN_TABLE_COLUMNS = ("general_accuracy", "domain_accuracy", "format_compliance")


def format_align_table(rows: list[dict]) -> str:
    """Markdown table: one row per (N, point) with validation chat QA (general, domain) and format compliance."""
    lines = ["| N | point | general QA, validation (chat) | domain QA, validation (chat) | format compliance |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['point']} | " + " | ".join(f"{r[k]:.3f}" for k in ALIGN_TABLE_COLUMNS) + " |")
    return "\n".join(lines)


def align_rows(info: dict) -> list[dict]:
    """Rows for :func:`format_align_table` from :func:`run_align`'s info."""
    return [{"n": info["n_sft"], "point": p, **{k: info["metrics"][p][k] for k in ALIGN_TABLE_COLUMNS}}
            for p in ("before", "sft", "dpo") if p in info["metrics"]]


__all__ = ["AlignConfig", "SFTSettings", "DPOSettings", "sft_dataset", "dpo_dataset", "make_sft_trainer",
           "make_dpo_trainer", "completion_logps", "dpo_sigmoid_loss", "dpo_loss_from_scratch",
           "init_chat_token_embeddings", "evaluate_validation", "add_stage2_lora", "run_align", "format_align_table", "align_rows"]
