"""Stage 1: knowledge-mixture continual pre-training with logit-swap self-distillation (LSSD).

:class:`LSSDTrainer` is a ``transformers.Trainer`` whose loss is :func:`mixcpt_core.losses.chunked_lssd`, so
checkpointing, resume, gradient accumulation, logging and accelerate (DDP / FSDP / DeepSpeed) come from the
ecosystem. The teacher is the model *before* stage 1, from one of three sources (``LSSDConfig.teacher``):

* ``frozen_copy``       a frozen copy of the original model (full fine-tuning);
* ``adapter_disabled``  the same model with its LoRA adapter switched off (PEFT): no second copy of the weights;
* ``cached``            top-k teacher statistics computed once and stored with the dataset: no teacher in memory.

Logged every ``logging_steps``: ``ce``, ``lssd`` (token means), ``loss`` (the total) and ``probe_kl``, the token-mean
KL(original || current) on a fixed batch of general text: the forgetting signal.
"""

from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import torch
from transformers import SchedulerType, Trainer

try:  # FSDP2's sharded parameters
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch built without torch.distributed: nothing is ever a DTensor
    DTensor = ()

from .atomic import write_text_atomic
from .config import FieldValueError, check_choice, check_numbers
from .device import select_device
from .losses import CachedTeacher, OnlineTeacher, chunked_lssd, supervised_rows, teacher_topk_stats

TEACHER_SOURCES = ("frozen_copy", "adapter_disabled", "cached")
HEAD_MATMULS = ("autocast", "float32")
# The learning-rate schedules of transformers' SchedulerType that run with what a CPT config gives the Trainer:
# the others need lr_scheduler_kwargs (a minimum rate, decay steps) or an evaluation strategy, which it has no keys for
LR_SCHEDULERS = tuple(s.value for s in SchedulerType if s.value not in (
    "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "reduce_lr_on_plateau", "greedy"))
CPT_INFO_FILE = "mixcpt_cpt.json"
STAT_COLUMNS = ("teacher_topk_logits", "teacher_topk_ids", "teacher_label_logit", "teacher_lse")


@dataclass
class LSSDConfig:
    """The stage-1 objective L = (1 - lam) * CE + lam * L_LSSD (see :mod:`mixcpt_core.losses`)."""

    lam: float = 0.5  # 0 = plain CPT, 1 = pure LSSD
    tau: float = 1.0
    swap: bool = True  # False = plain self-distillation toward the unswapped teacher
    teacher: str = "frozen_copy"
    cache_topk: int = 64
    chunk_size: int = 1024  # positions per chunk of the loss; 0 = from a memory budget (losses.DEFAULT_CHUNK_MB)
    head_matmul: str = "autocast"  # "autocast": the loss's head products and the teacher's forward in the Trainer's
    # mixed-precision dtype (bf16 under bf16=True; float32 without it); "float32": both always float32

    RANGES = {"lam": "[0, 1]", "tau": "> 0", "cache_topk": ">= 1", "chunk_size": ">= 0"}

    def __post_init__(self):
        check_numbers(self)
        check_choice(self.teacher, "teacher", TEACHER_SOURCES)
        check_choice(self.head_matmul, "head_matmul", HEAD_MATMULS)


def causal_lm(model):
    """The ``*ForCausalLM`` inside DDP/accelerate and PEFT wrappers."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def check_same_vocabulary(student, teacher, student_tokenizer=None, teacher_tokenizer=None) -> None:
    """Distillation compares distributions token by token: the two vocabularies must be the same, id for id."""
    vs, vt = student.config.vocab_size, teacher.config.vocab_size
    if vs != vt:
        raise ValueError(f"student and teacher vocabularies differ in size ({vs} vs {vt}): LSSD needs one vocabulary")
    if student_tokenizer is not None and teacher_tokenizer is not None:
        if student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
            raise ValueError("student and teacher tokenizers map tokens to different ids: LSSD needs one tokenizer")


def final_hidden(model, input_ids, attention_mask=None) -> torch.Tensor:
    """[B, T, H] final (post-norm) hidden states through the model's own forward (so DDP hooks run), computing
    logits for the last position only instead of [B, T, V]."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, output_hidden_states=True)
    return out.hidden_states[-1]


def _zero3_enabled() -> bool:
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def _as_forward_of(module, fn, *args):
    """``fn(*args)`` run as ``module``'s forward, through ``module(...)``, so that the hooks on the module run around
    it. DeepSpeed ZeRO-3 holds a parameter whole only inside its module's forward and backward (its hooks gather it);
    the chunked loss uses the LM head's weight directly, so it runs as the head's forward: the weight is gathered for
    the loss, and again for its backward, where the loss hands the weight its gradient (TRL gathers it with
    ``maybe_gather_lm_head_ctx`` and reroutes the loss through the model's forward, ``_ForwardRedirection``)."""
    original = module.forward
    module.forward = fn
    try:
        return module(*args)
    finally:
        module.forward = original


class _AdapterDisabledHead(torch.nn.Module):
    """The LM head as the original model applies it (LoRA off), for heads that are adapted too."""

    def __init__(self, peft_model):
        super().__init__()
        self.peft_model = peft_model

    def forward(self, x):
        with self.peft_model.disable_adapter():
            return causal_lm(self.peft_model).get_output_embeddings()(x)


class LSSDTrainer(Trainer):
    """``Trainer`` with the stage-1 loss. ``teacher_model`` is needed for ``frozen_copy``; ``probe`` is a dict with
    ``input_ids`` / ``attention_mask`` of general text and ``ref_logprobs`` (the original model's log-probs)."""

    def __init__(self, *args, lssd: LSSDConfig, teacher_model=None, probe: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lssd, self.teacher_model, self.probe = lssd, teacher_model, probe
        self._metrics: dict[str, list[tuple[float, int]]] = defaultdict(list)  # (token mean, tokens) per micro-batch
        if lssd.teacher == "frozen_copy" and lssd.lam > 0 and teacher_model is None:
            raise ValueError("lssd.teacher = frozen_copy needs teacher_model")
        if teacher_model is not None:  # the Trainer moves only the student; the teacher must sit beside it
            teacher_model.to(self.args.device)

    def _teacher_target(self, model, inputs, rows):
        cfg = self.lssd
        if cfg.teacher == "cached":
            if STAT_COLUMNS[0] not in inputs:
                raise ValueError("lssd.teacher = cached, but the batch has no teacher statistics columns")
            k = inputs["teacher_topk_logits"].shape[-1]
            stats = {
                "topk_logits": inputs["teacher_topk_logits"].reshape(-1, k)[rows],
                "topk_ids": inputs["teacher_topk_ids"].reshape(-1, k)[rows],
                "label_logit": inputs["teacher_label_logit"].reshape(-1)[rows],
                "lse": inputs["teacher_lse"].reshape(-1)[rows],
            }
            return CachedTeacher(stats, cfg.tau)
        # accelerate's autocast wraps only the student's forward: the teacher's needs its own (on an H200, Qwen2.5-0.5B
        # shape, the step with a float32 teacher and loss measured 5x the CE step; docs/running-anywhere.md)
        amp = self.mixed_precision_dtype()
        with torch.inference_mode(), torch.autocast(self.args.device.type, dtype=amp, enabled=amp is not None):
            if cfg.teacher == "frozen_copy":
                teacher = self.teacher_model
                hidden = final_hidden(teacher, inputs["input_ids"], inputs.get("attention_mask"))
                head = teacher.get_output_embeddings()
            else:  # adapter_disabled
                peft_model = getattr(model, "module", model)
                with peft_model.disable_adapter():
                    hidden = final_hidden(peft_model, inputs["input_ids"], inputs.get("attention_mask"))
                head = _AdapterDisabledHead(peft_model)
        return OnlineTeacher(hidden[:, :-1].reshape(-1, hidden.shape[-1])[rows], head)

    def mixed_precision_dtype(self) -> torch.dtype | None:
        """The dtype the loss's head products and the teacher's forward take: the Trainer's mixed precision
        (``bf16``/``fp16``) with ``head_matmul: autocast``, else None (float32)."""
        if self.lssd.head_matmul != "autocast":
            return None
        return torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        hidden = final_hidden(model, inputs["input_ids"], inputs.get("attention_mask"))
        h, y, rows = supervised_rows(hidden, labels)
        teacher = self._teacher_target(model, inputs, rows) if self.lssd.lam > 0 else None
        head = causal_lm(model).get_output_embeddings()
        if isinstance(head.weight, DTensor):  # FSDP2 (accelerate) keeps the head gathered after the forward
            raise RuntimeError("the LM head is still sharded (a DTensor) after the forward; the chunked LSSD loss "
                               "needs it whole, as accelerate's FSDP2 leaves it (reshard_after_forward=False)")

        def loss_fn(h):
            out = chunked_lssd(h, head, y, teacher, lam=self.lssd.lam, tau=self.lssd.tau, swap=self.lssd.swap,
                               chunk_size=self.lssd.chunk_size or None, num_items=num_items_in_batch,
                               matmul_dtype=self.mixed_precision_dtype() or torch.float32)
            return out.loss, out

        # ZeRO-3: the head's weight is whole only inside the head's own forward and backward (_as_forward_of)
        loss, out = _as_forward_of(head, loss_fn, h) if _zero3_enabled() else loss_fn(h)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the normaliser is global
        self._metrics["ce"].append((out.ce.item(), out.n_tokens))
        if teacher is not None:
            self._metrics["lssd"].append((out.lssd.item(), out.n_tokens))
        return (loss, out) if return_outputs else loss

    @torch.no_grad()
    def probe_kl(self) -> float:
        """Token-mean KL(original || current) on the probe batch: how far the model has moved on general text."""
        model = self.model
        was_training = model.training
        model.eval()
        p = self.probe
        logits = model(input_ids=p["input_ids"].to(model.device), attention_mask=p["attention_mask"].to(model.device)).logits
        log_p = torch.log_softmax(logits[:, :-1].float(), -1)
        ref = p["ref_logprobs"].to(log_p.device)
        mask = p["attention_mask"][:, 1:].to(log_p.device).bool()
        kl = (ref.exp() * (ref - log_p)).sum(-1)
        model.train(was_training)
        return (kl[mask].sum() / mask.sum()).item()

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs (not the final summary); every process gets here
            for key, vals in self._metrics.items():
                if vals:  # token mean over the micro-batches since the last log, and over all processes
                    sums = torch.tensor([sum(v * n for v, n in vals), sum(n for _, n in vals)], dtype=torch.float64,
                                        device=self.args.device)
                    total, count = self.accelerator.reduce(sums, reduction="sum").tolist()
                    logs[key] = total / max(count, 1)
            self._metrics.clear()
            if self.probe is not None:
                logs["probe_kl"] = self.probe_kl()
        super().log(logs, start_time)


@torch.no_grad()
def make_probe(model, tokenizer, texts: list[str], max_length: int = 64) -> dict:
    """Tokenise general ``texts`` (padded to the longest, at most ``max_length``) and record the original model's
    log-probabilities on them: [P, T-1, V]. Keep the probe small: its size is P * T * V floats."""
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    was_training = model.training
    model.eval()
    logits = model(input_ids=enc["input_ids"].to(model.device), attention_mask=enc["attention_mask"].to(model.device)).logits
    model.train(was_training)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "ref_logprobs": torch.log_softmax(logits[:, :-1].float(), -1).cpu()}


@torch.no_grad()
def add_teacher_stats(dataset, teacher, k: int, tau: float = 1.0, batch_size: int = 8):
    """Add the cached-teacher columns (:data:`STAT_COLUMNS`) to a packed dataset (``input_ids`` [T] per row; every
    position supervised, as in packed CPT). Per row: top-k logits/ids [T-1, k], label logit and logsumexp [T-1]."""
    teacher.eval()

    def stats(batch):
        ids = torch.tensor(batch["input_ids"], device=teacher.device)
        hidden = final_hidden(teacher, ids)[:, :-1]
        head = teacher.get_output_embeddings()
        out = {c: [] for c in STAT_COLUMNS}
        for h_row, y_row in zip(hidden, ids[:, 1:]):
            s = teacher_topk_stats(head(h_row), y_row, k=k, tau=tau)
            out["teacher_topk_logits"].append(s["topk_logits"].cpu().numpy())
            out["teacher_topk_ids"].append(s["topk_ids"].cpu().numpy())
            out["teacher_label_logit"].append(s["label_logit"].cpu().numpy())
            out["teacher_lse"].append(s["lse"].cpu().numpy())
        return out

    return dataset.map(stats, batched=True, batch_size=batch_size, desc=f"teacher top-{k} statistics")


def frozen_copy(model):
    """A frozen, eval-mode copy of ``model`` (the teacher for full fine-tuning)."""
    return copy.deepcopy(model).eval().requires_grad_(False)


@dataclass
class LoraSettings:
    """LoRA on the student (PEFT). The teacher is then the same model with the adapter disabled (or a cache)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])

    RANGES = {"r": ">= 1", "alpha": "> 0", "dropout": "[0, 1)"}

    def __post_init__(self):
        check_numbers(self)
        if not self.target_modules:
            raise FieldValueError("target_modules", "give at least one module name")


@dataclass
class CPTConfig:
    """Stage 1: knowledge-mixture CPT with LSSD. One step = ``batch_size * grad_accum`` packed blocks."""

    base_model: str = "checkpoints/base-tiny"  # local path or hub id; also the teacher
    mix: str = "configs/mix-tiny.yaml"  # a MixConfig YAML: the D_MIX stream
    lssd: LSSDConfig = field(default_factory=LSSDConfig)
    lora: LoraSettings | None = None
    max_steps: int = 400
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 1e-3
    lr_scheduler: str = "cosine"
    warmup_steps: int = 20
    weight_decay: float = 0.0
    logging_steps: int = 1
    save_steps: int = 100
    eval_every: int = 50  # plain QA on held-out general (forgetting) and domain (learning) facts; 0 = off
    probe_texts: int = 16  # general eval documents in the probe batch (probe_kl); 0 = off
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more compute (GPU runs)
    output_dir: str = "runs/tiny/cpt"

    RANGES = {"max_steps": ">= 1", "batch_size": ">= 1", "grad_accum": ">= 1", "learning_rate": "> 0",
              "warmup_steps": ">= 0", "weight_decay": ">= 0", "logging_steps": ">= 1", "save_steps": ">= 1",
              "eval_every": ">= 0", "probe_texts": ">= 0", "seed": ">= 0"}
    # Defaults that hold only when run from the repository root: elsewhere base_model would be looked up on the hub
    REQUIRED = ("base_model", "mix")

    def __post_init__(self):
        check_numbers(self)
        check_choice(self.lr_scheduler, "lr_scheduler", LR_SCHEDULERS)
        if self.lssd.teacher == "adapter_disabled" and self.lora is None:
            raise ValueError("lssd.teacher = adapter_disabled needs a lora section (there is no adapter to disable)")


def packed_collator(features: list[dict]) -> dict:
    """Stack packed rows (``input_ids``, ``attention_mask``, ``labels`` and any teacher statistics) into tensors.
    Rows without labels get ``labels = input_ids`` (-100 where ``attention_mask`` is 0)."""
    batch = {k: torch.tensor(np.stack([np.asarray(f[k]) for f in features])) for k in features[0]}
    if "labels" not in batch:
        labels = batch["input_ids"].clone()
        if "attention_mask" in batch:
            labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
    return batch


def check_cpt_inputs(cfg: CPTConfig, root: str | Path = "."):
    """Check what a stage-1 run reads before it loads a model or writes anything: ``base_model`` (a directory with
    safetensors weights, or a hub id), the ``mix`` config, and that the mix's blocks fit in the model's context
    (longer blocks would index past the position embeddings). Returns ``(base model path or id, MixConfig)``;
    a problem raises :class:`mixcpt_core.config.ConfigError` naming the key and the file."""
    from .config import ConfigError, load_config
    from .data import MixConfig
    from .models import check_model_dir, context_length, resolve_model_name

    root = Path(root)
    base = root / cfg.base_model if (root / cfg.base_model).exists() else cfg.base_model
    try:
        check_model_dir(resolve_model_name(base))
        n_positions = context_length(resolve_model_name(base))
    except (OSError, ValueError) as e:  # not found, no weights, or a hub id that is not cached (offline)
        raise ConfigError(f"base_model: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    try:
        mix = load_config(MixConfig, root / cfg.mix)
    except ConfigError as e:
        raise ConfigError(f"mix: {e}") from None
    if n_positions is not None and mix.block_length > n_positions:
        raise ConfigError(f"mix: {root / cfg.mix}: block_length {mix.block_length} is longer than the context of "
                          f"base_model {base} (max_position_embeddings = {n_positions})")
    return base, mix


def run_cpt(cfg: CPTConfig, train_dataset=None, root: str | Path = ".", extra_callbacks=()) -> Path:
    """Stage 1 end to end: load the base model (student and teacher), build D_MIX from ``cfg.mix`` (unless
    ``train_dataset`` is given: rows with ``input_ids`` [and ``attention_mask``, ``labels``]), train with
    :class:`LSSDTrainer`, and save the result to ``cfg.output_dir`` (safetensors; a LoRA run saves the merged model).

    Rerunning after an interruption resumes from the last checkpoint in ``<output_dir>/trainer``. The logged rows
    (losses every ``logging_steps``, QA every ``eval_every``) go to ``<output_dir>/train_log.jsonl``; the screen
    shows one progress bar (:mod:`mixcpt_core.logs`).
    """
    from transformers import TrainingArguments, set_seed
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    from .config import to_dict
    from .data import build_mix
    from .logs import LOG_FILE, quiet_trainer
    from .models import load_causal_lm
    from .training import QAEvalCallback, _last_checkpoint, train_or_resume
    from .world import generate_world

    t0 = time.time()
    set_seed(cfg.seed)  # LoRA's initial A matrices are drawn before the Trainer seeds anything
    base, mix_cfg = check_cpt_inputs(cfg, root)  # before anything is loaded or written
    root = Path(root)
    model, tokenizer = load_causal_lm(base)
    if train_dataset is None:
        train_dataset, _ = build_mix(mix_cfg, tokenizer, root=root)
    world = generate_world(mix_cfg.world)

    teacher = None
    if cfg.lssd.teacher == "frozen_copy" and cfg.lssd.lam > 0:
        teacher = frozen_copy(model)
        check_same_vocabulary(model, teacher)
    stats_seconds = None
    if cfg.lssd.teacher == "cached" and cfg.lssd.lam > 0:
        t_stats = time.time()
        train_dataset = add_teacher_stats(train_dataset, model, cfg.lssd.cache_topk, cfg.lssd.tau)
        stats_seconds = round(time.time() - t_stats, 1)
    probe = make_probe(model, tokenizer, world.docs("general", "eval")[: cfg.probe_texts]) if cfg.probe_texts else None
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                                 target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))

    out = Path(cfg.output_dir)
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,  # log a NaN loss as NaN (FiniteGuard stops on it); changes no finite run
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        use_cpu=select_device()[0] == "cpu",  # else the Trainer takes CUDA, or Apple's MPS
        report_to=[],
        remove_unused_columns=False,  # keep the teacher statistics columns
        disable_tqdm=False,
        dataloader_num_workers=0,
    )
    from .training import FiniteGuard

    callbacks = [FiniteGuard(), *extra_callbacks]
    if cfg.eval_every:
        callbacks.append(QAEvalCallback({"heldout": world.qa_split("general_heldout"), "domain": world.qa_split("domain")},
                                        tokenizer, cfg.eval_every))
    trainer = LSSDTrainer(model=model, args=args, train_dataset=train_dataset, data_collator=packed_collator,
                          lssd=cfg.lssd, teacher_model=teacher, probe=probe, callbacks=callbacks)
    quiet_trainer(trainer, out / LOG_FILE, "stage 1")  # per-step logs to a file, one progress bar
    sharded = trainer.is_fsdp_enabled or is_deepspeed_zero3_enabled()  # weights sharded over the processes
    if sharded and cfg.lora is not None:
        raise NotImplementedError("stage 1 with LoRA under FSDP / ZeRO-3 is not supported (the final merge needs "
                                  "whole weights)")
    resumed_from = train_or_resume(trainer, _last_checkpoint(out / "trainer"))

    full_state = None  # FSDP, ZeRO-3: each process holds a shard of every weight; all take part in gathering them
    if sharded:  # full tensors on rank 0
        full_state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
        tied = defaultdict(list)  # the gathered copies of a tied weight (embeddings) are one tensor again, so that
        for name, p in model.named_parameters(remove_duplicate=False):  # save_pretrained writes it once, as unsharded
            tied[id(p)].append(name)
        for names in tied.values() if full_state else ():
            for name in names[1:]:
                if names[0] in full_state and name in full_state:
                    full_state[name] = full_state[names[0]]
    if not trainer.is_world_process_zero():  # under torchrun / accelerate launch only rank 0 writes the result
        return out
    final = model.merge_and_unload() if cfg.lora is not None else model
    (out / CPT_INFO_FILE).unlink(missing_ok=True)  # an earlier result is not complete while its weights are rewritten
    final.save_pretrained(out, state_dict=full_state)
    tokenizer.save_pretrained(out)
    info = {"config": to_dict(cfg), "train_seconds": round(time.time() - t0, 1), "resumed_from_step": resumed_from,
            "world_size": trainer.args.world_size, "teacher_stats_seconds": stats_seconds,
            "history": [r for r in trainer.state.log_history if "loss" in r or "heldout_qa_acc" in r]}
    write_text_atomic(out / CPT_INFO_FILE, json.dumps(info, indent=2) + "\n")  # last: it marks the result complete
    return out
