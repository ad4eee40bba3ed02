"""The format-alignment pool of a real chat model: general prompts answered by the start model itself.

Stage 2 is meant to teach *format*, not facts. A small synthetic model learns the chat template from nothing, so
the synthetic world's short answers are the right stage-2 data for it. A real chat model such as
SmolLM2-135M-Instruct already has a template and a voice: fine-tuning it on one-word answers about invented people
teaches it to answer tersely about things it does not know (Gekhman et al., EMNLP 2024, measured exactly this).
So for a real model the general samples are written by the model:

* **prompts**: :data:`mixcpt_core.general_prompts.GENERAL_PROMPTS`, written for this project (short factual
  questions with gold answers, explain, list, compare, rewrite, how-to), disjoint from every evaluation question;
* **instructions** (SFT): the start model's own greedy reply in its chat template, decoded as the evaluation decodes
  (:class:`mixcpt_core.evaluation.EvalSpec`: n-gram blocking, the same budget). A reply is kept only when it is a
  well-formed turn (ends with the end-of-turn token within the budget, no template leakage), and a factual prompt's
  reply only when it contains the gold answer (:func:`mixcpt_core.realworld.score_reply_contains`): the pool holds
  *known* facts only, so stage 2 cannot teach new ones;
* **preference pairs** (DPO): chosen = that reply; rejected = the same model's greedy *plain-text continuation* of
  the prompt in the layout that stage 1 trains on (``Question: …\\nAnswer:``, no chat template), cut at
  ``rejected_new_tokens``. Why this degradation and not a wrong-fact variant: the pool must be one for every pipeline
  (so it cannot come from a pipeline's stage-1 model) and deterministic, and what stage 2 has to teach is the
  difference between the chat voice and a document-style continuation — which is exactly what stage 1's plain
  layout produces. A pair whose two sides are equal after whitespace is dropped.

:func:`generate_pool` returns the records and a summary (counts per kind, reply lengths, the evaluation budget
fitted to the start model's replies); :func:`write_pool` writes ``instructions.jsonl``, ``preferences.jsonl`` and
``pool.json`` (the command, the model and its weights' hash, the decoding) atomically. Greedy decoding in fixed
batches is deterministic: generating again gives the same files (tested). ``mixcpt pool CONFIG`` runs it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

POOL_FILES = ("instructions.jsonl", "preferences.jsonl")
POOL_INFO = "pool.json"


@dataclass
class PoolConfig:
    """How the pool is generated (``mixcpt pool CONFIG``)."""

    model: str = "smollm2:135m-instruct"  # the start model: a model directory or smollm2:135m-instruct
    max_new_tokens: int = 256  # a reply that has not ended by then is dropped
    first_pass_tokens: int = 64  # EvalSpec.first_pass_tokens: cost only, not the replies
    no_repeat_ngram_size: int = 6  # EvalSpec.no_repeat_ngram_size: the evaluation's decoding
    rejected_new_tokens: int = 96  # length of the plain-text continuation (rejected side of a pair)
    budget_quantile: float = 0.95  # the evaluation budget: this quantile of the factual replies' lengths
    batch_size: int = 16
    limit: int = 0  # only the first ``limit`` prompts (0 = all; for tests)
    out_dir: str = "data/smollm2-pool"

    def __post_init__(self):
        for name in ("max_new_tokens", "rejected_new_tokens", "batch_size"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("first_pass_tokens", "no_repeat_ngram_size", "limit"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.budget_quantile <= 1:
            raise ValueError(f"budget_quantile must be in (0, 1], got {self.budget_quantile}")


def plain_prompt(prompt: str) -> str:
    """The stage-1 layout of a prompt, whose continuation is the rejected side: ``Question: p\\nAnswer:``."""
    return f"Question: {prompt}\nAnswer:"


def fitted_budget(lengths: list[float], quantile: float, multiple: int = 8) -> int:
    """The smallest multiple of ``multiple`` at or above the ``quantile`` of ``lengths`` (tokens of a reply
    including its end-of-turn token; ``inf`` for a reply that never ended), by the nearest-rank rule: the value
    at position ceil(q * n) of the sorted lengths. ``ValueError`` if that is ``inf`` (the budget cannot be fitted)."""
    if not lengths:
        raise ValueError("no reply lengths to fit a budget to")
    ranked = sorted(lengths)
    value = ranked[max(0, math.ceil(quantile * len(ranked)) - 1)]
    if math.isinf(value):
        raise ValueError(f"the {quantile} quantile of the start model's reply lengths is a reply that never ended: "
                         f"raise max_new_tokens")
    return int(math.ceil(value / multiple) * multiple)


def generate_pool(cfg: PoolConfig, model, tokenizer, prompts: list[dict] | None = None) -> dict:
    """The pool of ``prompts`` (default :data:`mixcpt_core.general_prompts.GENERAL_PROMPTS`) answered by ``model``.

    Returns ``{"instructions", "preferences", "summary"}``; ``summary`` holds per kind the prompts, kept replies and
    pairs, why replies were dropped, reply lengths in tokens (end-of-turn included) and ``fitted_budget``:
    :func:`fitted_budget` of the factual prompts' reply lengths (every factual reply, kept or not; one that never
    ended counts as longer than any). The evaluation budget of a profile is set to at least this value."""
    from .evaluation import generate_chat, generate_greedy
    from .general_prompts import GENERAL_PROMPTS
    from .realworld import score_reply_contains

    prompts = list(GENERAL_PROMPTS if prompts is None else prompts)
    if cfg.limit:
        prompts = prompts[: cfg.limit]
    texts = [p["prompt"] for p in prompts]
    replies = generate_chat(model, tokenizer, texts, cfg.max_new_tokens, cfg.batch_size, leak_check=True,
                            progress=True, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
                            first_pass_tokens=cfg.first_pass_tokens)
    plain = generate_greedy(model, tokenizer, [plain_prompt(t) for t in texts], cfg.rejected_new_tokens,
                            cfg.batch_size, progress=True)
    instructions, preferences, lengths, dropped, factual_lengths = [], [], {}, {}, []
    for p, r, rejected in zip(prompts, replies, plain):
        n_tokens = len(tokenizer(r["content"], add_special_tokens=False).input_ids) + 1 if r["ended"] else math.inf
        if p["kind"] == "factual":
            factual_lengths.append(n_tokens)
        reason = ("not a well-formed turn" if not r["well_formed"] else
                  "does not contain the gold answer" if p.get("answer") and not score_reply_contains(r["content"], p)
                  else None)
        if reason:
            dropped.setdefault(reason, []).append(p["id"])
            continue
        content = r["content"].strip()
        lengths.setdefault(p["kind"], []).append(n_tokens)
        instructions.append({"id": f"pool-{p['id']}", "kind": p["kind"],
                             "messages": [{"role": "user", "content": p["prompt"]},
                                          {"role": "assistant", "content": content}]})
        rejected = rejected.strip()
        if rejected and " ".join(rejected.split()) != " ".join(content.split()):
            preferences.append({"id": f"pool-{p['id']}", "kind": p["kind"], "prompt": p["prompt"],
                                "chosen": content, "rejected": rejected})
    kinds = sorted({p["kind"] for p in prompts})
    summary = {
        "prompts": {k: sum(p["kind"] == k for p in prompts) for k in kinds},
        "instructions": {k: sum(r["kind"] == k for r in instructions) for k in kinds},
        "preferences": {k: sum(r["kind"] == k for r in preferences) for k in kinds},
        "dropped": {reason: ids for reason, ids in sorted(dropped.items())},
        "reply_tokens": {k: {"median": sorted(v)[len(v) // 2], "max": max(v)} for k, v in sorted(lengths.items())},
        "factual_reply_tokens": [None if math.isinf(n) else n for n in factual_lengths],
        "factual_ended": sum(not math.isinf(n) for n in factual_lengths) / max(1, len(factual_lengths)),
        "fitted_budget": None,
    }
    try:  # None, not an error: the pool is still usable, and the summary says how many replies ended
        summary["fitted_budget"] = fitted_budget(factual_lengths, cfg.budget_quantile)
    except ValueError:
        pass
    return {"instructions": instructions, "preferences": preferences, "summary": summary}


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def write_pool(pool: dict, out_dir: str | Path, info: dict) -> Path:
    """Write :func:`generate_pool`'s records as ``instructions.jsonl`` / ``preferences.jsonl`` and ``pool.json``
    (``info`` + the summary), atomically (a folder that holds a pool already is replaced whole)."""
    from .atomic import atomic_directory

    with atomic_directory(out_dir, POOL_INFO) as tmp:
        (tmp / POOL_FILES[0]).write_text(_jsonl(pool["instructions"]), encoding="utf-8")
        (tmp / POOL_FILES[1]).write_text(_jsonl(pool["preferences"]), encoding="utf-8")
        (tmp / POOL_INFO).write_text(json.dumps({**info, "summary": pool["summary"]}, indent=1) + "\n",
                                     encoding="utf-8")
    return Path(out_dir)


def pool_files(folder: str | Path) -> list[Path]:
    """The two JSONL files of a pool folder (whether or not they exist)."""
    return [Path(folder) / name for name in POOL_FILES]


def read_pool(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """``(instructions, preferences)`` of a pool folder. A missing folder or file, or a malformed line, is a
    :class:`mixcpt_core.config.ConfigError` naming the file and line."""
    from .config import ConfigError
    from .data import FieldError, check_messages, check_text
    from .jsonl import iter_jsonl

    folder = Path(folder)
    out = []
    for path, fields in zip(pool_files(folder), (("messages",), ("prompt", "chosen", "rejected"))):
        if not path.is_file():
            raise ConfigError(f"selection.pool: {path}: not found (generate the pool with `mixcpt pool CONFIG`)")
        rows = []
        try:
            for lineno, record in iter_jsonl(path):
                try:
                    for name in fields:
                        (check_messages if name == "messages" else check_text)(record.get(name), name)
                except FieldError as e:
                    raise ConfigError(f"{path}:{lineno}: {e}") from None
                rows.append(record)
        except ValueError as e:  # DataError: not JSON, not an object
            raise ConfigError(str(e)) from None
        out.append(rows)
    return out[0], out[1]


def run_pool(cfg: PoolConfig, command: str, root: str | Path = ".") -> Path:
    """Load the start model, generate the pool and write it to ``cfg.out_dir`` (relative to ``root``)."""
    from .config import to_dict
    from .models import load_causal_lm, resolve_model_name
    from .pipelines import weights_key

    t0 = time.time()
    location = Path(resolve_model_name(cfg.model))
    if not location.is_absolute() and not location.exists():
        location = Path(root) / cfg.model
    model, tokenizer = load_causal_lm(location)
    pool = generate_pool(cfg, model, tokenizer)
    info = {"command": command, "model": cfg.model, "model_weights": weights_key(location), "config": to_dict(cfg),
            "seconds": round(time.time() - t0, 1)}
    return write_pool(pool, Path(root) / cfg.out_dir, info)


__all__ = ["PoolConfig", "plain_prompt", "fitted_budget", "generate_pool", "write_pool", "pool_files", "read_pool",
           "run_pool", "POOL_FILES", "POOL_INFO"]
