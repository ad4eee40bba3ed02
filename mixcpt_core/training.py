"""Training: packing texts into blocks and pre-training the tiny base model with ``transformers.Trainer``.

The base model is the "general LLM" every pipeline starts from: a Llama-architecture model trained from scratch
on the general half of the world (all general documents + plain-text QA of the *seen* general people). Whether it
can answer questions about *held-out* people, whose QA it never saw, is the measure of a useful base: it has
learned to extract knowledge from documents, the skill stage 1 must preserve and carry over to the domain.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from .atomic import write_text_atomic
from .config import check_choice, check_numbers, to_dict
from .errors import NonFiniteLossError
from .evaluation import document_perplexity, plain_qa_accuracy
from .logs import LOG_FILE, quiet_trainer
from .models import SIZE_PRESETS, build_model, count_parameters
from .tokenizer import train_tokenizer
from .world import World, WorldConfig, generate_world

BASE_INFO_FILE = "mixcpt_base.json"


class FiniteGuard(TrainerCallback):
    """Stops training at the first NaN/inf in a logged value (``loss``, ``ce``, ``lssd``, ``grad_norm``), and refuses
    to let a checkpoint with non-finite weights be written: when the Trainer is about to save, and when training
    ends (before the caller writes the final model), the weights are checked first (every parameter, only then).
    The last checkpoint on disk is therefore always a good one, and rerunning the same command resumes from it
    (after lowering the learning rate, say).

    ``grad_norm`` is watched because the Trainer's ``logging_nan_inf_filter`` (on by default) replaces a NaN loss
    by the window's mean in the logs, while the NaN gradient still reaches the weights; the trainers of this
    package also turn that filter off, so that a NaN loss is logged as NaN."""

    KEYS = ("loss", "ce", "lssd", "grad_norm")

    def _stop(self, what: str, args, state):
        last = _last_checkpoint(Path(args.output_dir))
        raise NonFiniteLossError(
            f"{what} at step {state.global_step}: training stopped. Last good checkpoint: "
            f"{last if last else 'none yet (nothing was saved)'}; rerunning resumes from it. Lower the learning rate "
            f"or raise the warmup first.")

    def on_log(self, args, state, control, logs=None, **kw):
        for key in self.KEYS:
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not torch.isfinite(torch.tensor(float(value))):
                self._stop(f"{key} = {value}", args, state)

    def _check_weights(self, args, state, model) -> None:
        if model is not None and not all(torch.isfinite(p).all() for p in model.parameters()):
            self._stop("non-finite weights", args, state)

    def on_step_end(self, args, state, control, model=None, **kw):
        if control.should_save:
            self._check_weights(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kw):
        self._check_weights(args, state, model)


@dataclass
class BasePretrainConfig:
    """Pre-training of the base model on the general world. One step = ``batch_size`` blocks of ``block_size``."""

    world: WorldConfig = field(default_factory=WorldConfig)
    vocab_size: int = 1536  # an upper bound: BPE stops earlier once every word of the world is one token
    model_preset: str = "tiny"
    block_size: int = 128
    batch_size: int = 16
    max_steps: int = 1600
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    decay_fraction: float = 0.25  # warmup-stable-decay schedule: last share of steps decays to min_lr_ratio
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    qa_upsample: int = 2  # each seen QA text appears this many times per pass over the documents
    eval_every: int = 200
    save_steps: int = 200
    seed: int = 0
    output_dir: str = "checkpoints/base-tiny"

    RANGES = {"vocab_size": ">= 1", "block_size": ">= 1", "batch_size": ">= 1", "max_steps": ">= 1",
              "learning_rate": "> 0", "warmup_steps": ">= 0", "decay_fraction": "[0, 1]", "min_lr_ratio": "[0, 1]",
              "weight_decay": ">= 0", "qa_upsample": ">= 1", "eval_every": ">= 1", "save_steps": ">= 1",
              "seed": ">= 0"}

    def __post_init__(self):
        check_numbers(self)
        check_choice(self.model_preset, "model_preset", SIZE_PRESETS)

    def cache_key(self) -> str:
        """Hash of everything the checkpoint is a function of (world, tokenizer, model, training); not paths, and not
        the world's ``val_fraction``, which only relabels questions that no training text contains (a test checks
        that every text of the world is the same whatever its value)."""
        d = to_dict(self)
        d["world"].pop("val_fraction")
        d.pop("output_dir")
        d.pop("eval_every")
        d.pop("save_steps")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def pack_texts(texts: list[str], tokenizer, block_size: int, n_tokens: int, seed: int) -> list[list[int]]:
    """Concatenate ``BOS text EOS`` sequences in a fresh random order per pass until ``n_tokens`` are reached, and
    cut the stream into blocks of ``block_size`` (the last partial block is dropped; no padding anywhere).

    Returns a list of ``n_tokens // block_size`` blocks.
    """
    encoded = [tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in texts]
    rng = random.Random(seed)
    stream: list[int] = []
    while len(stream) < n_tokens:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for i in order:
            stream += encoded[i]
    n_blocks = n_tokens // block_size
    return [stream[b * block_size : (b + 1) * block_size] for b in range(n_blocks)]


class QAEvalCallback(TrainerCallback):
    """Every ``every`` steps (and at step 0): plain-format QA accuracy on named splits, appended to the trainer's
    ``log_history`` as ``{"step", "<name>_qa_acc", ...}`` (so it is checkpointed and survives a resume, and
    :class:`mixcpt_core.logs.LogFile` writes it to the run's log file with the losses)."""

    def __init__(self, splits: dict[str, list[dict]], tokenizer, every: int):
        self.splits, self.tokenizer, self.every = splits, tokenizer, every

    def _evaluate(self, model, state):
        row = {"step": state.global_step}
        for name, items in self.splits.items():
            row[f"{name}_qa_acc"] = plain_qa_accuracy(model, self.tokenizer, items)["accuracy"]
        state.log_history.append(row)

    def on_train_begin(self, args, state, control, model=None, **kw):
        if state.global_step == 0:  # not on resume: the step-0 point is already in the restored history
            self._evaluate(model, state)

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._evaluate(model, state)


def pretrain_base(cfg: BasePretrainConfig, resume: bool = True) -> Path:
    """Generate the world, train the tokenizer and pre-train the base model; write the checkpoint to
    ``cfg.output_dir`` (safetensors + tokenizer + ``mixcpt_base.json`` with metrics and the cache key).

    Intermediate Trainer checkpoints live in ``<output_dir>/trainer``; rerunning after an interruption resumes
    from the last one. The logged rows (losses, QA) go to ``<output_dir>/train_log.jsonl``, the screen shows one
    progress bar (:mod:`mixcpt_core.logs`). Returns the output directory.
    """
    t0 = time.time()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    world = generate_world(cfg.world)
    tokenizer = train_tokenizer(world.all_texts(), vocab_size=cfg.vocab_size)
    model = build_model(cfg.model_preset, tokenizer, max_position_embeddings=max(256, cfg.block_size), seed=cfg.seed)

    texts = world.docs("general") + [
        t for t in world.base_pretraining_texts()[len(world.docs("general")) :] for _ in range(cfg.qa_upsample)
    ]
    n_tokens = cfg.max_steps * cfg.batch_size * cfg.block_size
    blocks = pack_texts(texts, tokenizer, cfg.block_size, n_tokens, seed=cfg.seed)
    dataset = Dataset.from_dict({"input_ids": blocks})

    out = Path(cfg.output_dir)
    trainer_dir = out / "trainer"
    n_decay = int(cfg.max_steps * cfg.decay_fraction)
    args = TrainingArguments(
        output_dir=str(trainer_dir),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="warmup_stable_decay",
        lr_scheduler_kwargs={"num_decay_steps": n_decay, "min_lr_ratio": cfg.min_lr_ratio},
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        logging_steps=max(1, min(25, cfg.max_steps // 10)),
        logging_nan_inf_filter=False,  # log a NaN loss as NaN (FiniteGuard stops on it); changes no finite run
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        use_cpu=True,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[QAEvalCallback({"seen": world.qa_split("general_seen"), "heldout": world.qa_split("general_heldout")},
                                  tokenizer, cfg.eval_every), FiniteGuard()],
    )
    quiet_trainer(trainer, out / LOG_FILE, "base model")  # per-step logs to a file, one progress bar
    resumed_from = train_or_resume(trainer, _last_checkpoint(trainer_dir) if resume else None)
    train_seconds = time.time() - t0

    metrics = evaluate_base(model, tokenizer, world)
    history = [r for r in trainer.state.log_history if "loss" in r or "heldout_qa_acc" in r]
    info = {
        "cache_key": cfg.cache_key(),
        "world_fingerprint": cfg.world.fingerprint(),
        "config": to_dict(cfg),
        "n_parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "train_tokens": n_tokens,
        "train_seconds": round(train_seconds, 1),
        "resumed_from_step": resumed_from,
        "torch_threads": torch.get_num_threads(),
        "metrics": metrics,
        "history": history,
    }
    save_checkpoint(model, tokenizer, out, info)
    return out


def evaluate_base(model, tokenizer, world: World) -> dict:
    """Plain-format QA accuracy (seen / held-out general, domain) and perplexity on held-out documents."""
    m = {}
    for split in ("general_seen", "general_heldout", "domain"):
        r = plain_qa_accuracy(model, tokenizer, world.qa_split(split))
        m[f"{split}_qa_acc"] = round(r["accuracy"], 4)
        m[f"{split}_qa_per_attribute"] = {k: round(v, 4) for k, v in r["per_attribute"].items()}
    m["general_eval_doc_ppl"] = round(document_perplexity(model, tokenizer, world.docs("general", "eval")), 4)
    m["domain_eval_doc_ppl"] = round(document_perplexity(model, tokenizer, world.docs("domain", "eval")), 4)
    return m


def save_checkpoint(model, tokenizer, out: Path, info: dict) -> None:
    """Write model (safetensors), tokenizer and the info JSON into ``out``, keeping ``out/trainer`` if present."""
    out.mkdir(parents=True, exist_ok=True)
    (out / BASE_INFO_FILE).unlink(missing_ok=True)  # a killed save must not leave new weights under an old info file
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_text_atomic(out / BASE_INFO_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")  # last: marks it complete


def _is_complete(checkpoint: Path) -> bool:
    """The Trainer writes ``trainer_state.json`` last, in place: a checkpoint without a readable one was cut short
    (the process was killed while saving it) and cannot be resumed from."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _last_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``trainer_dir`` (a partly written newer one is skipped), or None."""
    ckpts = sorted((p for p in Path(trainer_dir).glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
                   key=lambda p: int(p.name.split("-")[1]))
    return next((c for c in reversed(ckpts) if _is_complete(c)), None)


def train_or_resume(trainer, checkpoint: Path | None) -> int:
    """``trainer.train()``, resuming from ``checkpoint`` (a Trainer ``checkpoint-N`` directory) when given. Returns the
    step it resumed from (0: trained from the start), which the stages record as ``resumed_from_step``.

    A checkpoint written at the last step (the process died after saving it, before the result was written) is
    loaded instead of resumed: transformers 5 runs one optimiser step past ``max_steps`` when resumed there, which
    would make an interrupted-and-rerun stage differ from an uninterrupted one. Its random-number states are
    restored too: they are those at the end of training, so what comes next (stage 2's fresh LoRA adapter for DPO
    after SFT) draws the same numbers as in an uninterrupted run."""
    from transformers import TrainerState

    if checkpoint is None:
        trainer.train()
        return 0
    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    if 0 < trainer.args.max_steps <= state.global_step:
        trainer._load_from_checkpoint(str(checkpoint))  # the weights (full model or adapter) as trained
        trainer._load_rng_state(str(checkpoint))
        trainer.state = state  # its log history is the run's record
    else:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    return state.global_step


class StaleCheckpointError(RuntimeError):
    """The checkpoint on disk was built from a different config than the one asked for."""


def base_info(path: str | Path) -> dict:
    """The ``mixcpt_base.json`` written next to a base checkpoint."""
    f = Path(path) / BASE_INFO_FILE
    if not f.exists():
        raise FileNotFoundError(f"{f}: not found; is {path} a base checkpoint made by `mixcpt pretrain-base`?")
    return json.loads(f.read_text(encoding="utf-8"))


def load_base_checkpoint(path: str | Path, cfg: BasePretrainConfig | None = None):
    """Load a base checkpoint through the normal loader; with ``cfg``, first check its cache key.

    Returns ``(model, tokenizer, info)``. A key mismatch raises :class:`StaleCheckpointError` saying how to rebuild.
    """
    from .models import load_causal_lm

    info = base_info(path)
    if cfg is not None and info["cache_key"] != cfg.cache_key():
        raise StaleCheckpointError(
            f"{path}: checkpoint was built with cache key {info['cache_key']}, but the config asks for "
            f"{cfg.cache_key()} (world, tokenizer, model or training settings changed). Rebuild it with "
            f"`mixcpt pretrain-base --config <your config> --out {path}` (about 10 minutes on 2 CPU cores)."
        )
    model, tokenizer = load_causal_lm(path)
    return model, tokenizer, info
