"""Stage-2 sample selection: score general instructions and preference pairs under the stage-1 model, keep N.

Mix-CPT's second stage teaches *format* (the chat template) from a few general samples. Samples the stage-1 model
already finds easy carry little new knowledge, so fitting them can only teach the format. The score of a sample is
its **response loss given the prompt**:

* ``ppl`` (default): mean NLL of the response tokens given the prompt in the *plain* layout the model was trained on
  in stage 1 (``Question: …`` / ``Answer: …``, :func:`mixcpt_core.data.flatten_messages`); ranking by mean NLL is
  ranking by perplexity exp(mean NLL). For a preference pair the response is the *chosen* answer.
* ``format_ratio``: (mean response NLL with the chat template) / (mean response NLL in the plain layout): how much
  the unfamiliar template alone disturbs a response the model otherwise knows. The same response text is scored in
  both contexts (content only, without the end-of-turn token, which is new to the model and would dominate).
* ``random``: the random-N baseline (the scores are still computed, so they can be plotted).
* ``all``: every sample, in dataset order, unscored (the traditional pipeline's full SFT/DPO sets; ``n_*`` ignored).

The N samples with the *lowest* score are selected (ties broken by dataset order). Scores are written next to the
selection (``selection.json``) so that a notebook can plot them without a model.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .atomic import write_text_atomic
from .config import check_choice, check_numbers
from .world import WorldConfig

SCORES = ("ppl", "format_ratio", "random", "all")
SELECTION_FILE = "selection.json"


@dataclass
class SelectionConfig:
    """Which samples stage 2 trains on. ``n_sft`` instructions and ``n_dpo`` preference pairs, chosen by ``score``."""

    model: str = "runs/tiny/cpt"  # the stage-1 model that scores the samples (`mixcpt cpt configs/cpt-tiny.yaml`)
    world: WorldConfig = field(default_factory=WorldConfig)  # the world whose general instructions/pairs are scored
    # a folder with instructions.jsonl and preferences.jsonl (`mixcpt pool`): the general samples to score instead
    # of the world's (a real chat model's own replies); relative to the repository root
    pool: str | None = None
    n_sft: int = 64
    n_dpo: int = 64
    score: str = "ppl"  # ppl | format_ratio | random | all
    batch_size: int = 64
    seed: int = 0  # for score = random

    RANGES = {"n_sft": ">= 1", "n_dpo": ">= 1", "batch_size": ">= 1", "seed": ">= 0"}

    def __post_init__(self):
        check_numbers(self)
        check_choice(self.score, "score", SCORES)


# -- scoring ---------------------------------------------------------------------------------------------------------
def plain_pair(user: str, assistant: str) -> tuple[str, str]:
    """(prompt, response) in the plain layout: ``"Question: u\\nAnswer:"`` and ``" a"``.

    Split before the space so that prompt + response is exactly :func:`flatten_messages` of the turn and the
    byte-level BPE tokenises the response as it does inside the full text (`` Amberfall`` is one token)."""
    return f"Question: {user}\nAnswer:", f" {assistant}"


def chat_pair(tokenizer, user: str, assistant: str) -> tuple[str, str]:
    """(prompt, response) with the chat template: the generation prompt (which includes ``<|bos|>``) and the bare
    answer content (no ``<|end|>``; see the module docstring)."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                           tokenize=False)
    return prompt, assistant


def _encode_pair(tokenizer, prompt: str, response: str) -> tuple[list[int], int]:
    """Token ids of prompt + response and the number of prompt tokens. The prompt gets BOS unless it already
    starts with it (the chat template writes ``<|bos|>`` itself)."""
    has_bos = tokenizer.bos_token and prompt.startswith(tokenizer.bos_token)
    p = tokenizer(prompt, add_special_tokens=not has_bos).input_ids
    r = tokenizer(response, add_special_tokens=False).input_ids
    return p + r, len(p)


@torch.no_grad()
def response_nll(model, tokenizer, prompts: list[str], responses: list[str], batch_size: int = 64,
                 progress: bool = False) -> torch.Tensor:
    """Mean next-token NLL of each response given its prompt; returns a float tensor of shape ``[n]``.

    Per example: sum of ``-log p(r_t | prompt, r_<t)`` over the response tokens divided by their number (a token
    mean within the example, not over the batch). Batches are right-padded; padding never enters a sum.
    """
    from .logs import interactive

    was_training = model.training
    model.eval()
    out = []
    try:
        for i in tqdm(range(0, len(prompts), batch_size), desc="score", disable=not (progress and interactive()),
                      leave=False):  # a transient bar: only where it can be erased
            chunk = zip(prompts[i : i + batch_size], responses[i : i + batch_size])
            enc = [_encode_pair(tokenizer, p, r) for p, r in chunk]
            width = max(len(ids) for ids, _ in enc)
            ids = torch.full((len(enc), width), tokenizer.pad_token_id)
            mask = torch.zeros((len(enc), width), dtype=torch.long)
            is_response = torch.zeros((len(enc), width), dtype=torch.bool)  # [B, T]: token t belongs to the response
            for row, (e, n_prompt) in enumerate(enc):
                ids[row, : len(e)] = torch.tensor(e)
                mask[row, : len(e)] = 1
                is_response[row, n_prompt : len(e)] = True
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
            # position t-1 predicts token t: shift so that row [:, t] is the loss of token t+1
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(model.device), reduction="none")
            target = is_response[:, 1:].to(model.device)  # [B, T-1]
            out.append(((nll * target).sum(1) / target.sum(1).clamp(min=1)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def record_turn(record: dict) -> tuple[str, str]:
    """(user, assistant) of an instruction record (``messages``) or a preference pair (``prompt``, ``chosen``)."""
    if "messages" in record:
        user = next(m["content"] for m in record["messages"] if m["role"] == "user")
        return user, next(m["content"] for m in record["messages"] if m["role"] == "assistant")
    return record["prompt"], record["chosen"]


def score_records(model, tokenizer, records: list[dict], score: str = "ppl", batch_size: int = 64,
                  progress: bool = True) -> list[float]:
    """One score per record (lower = easier), see the module docstring. ``random`` scores like ``ppl``."""
    if score == "all":
        raise ValueError("score 'all' selects every sample without scoring them")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    turns = [record_turn(r) for r in records]
    plain = response_nll(model, tokenizer, *zip(*[plain_pair(u, a) for u, a in turns]), batch_size=batch_size,
                         progress=progress) if turns else torch.zeros(0)
    if score != "format_ratio":
        return plain.tolist()
    chat = response_nll(model, tokenizer, *zip(*[chat_pair(tokenizer, u, a) for u, a in turns]),
                        batch_size=batch_size, progress=progress)
    return (chat / plain.clamp(min=1e-6)).tolist()


def select_easy_samples(scores: list[float], n: int, method: str = "lowest", seed: int = 0) -> list[int]:
    """Indices of the ``n`` samples to train on, in ascending score order (``lowest``) or in a seeded random order
    (``random``). Ties are broken by index, so the result is deterministic. ``n`` larger than the pool takes all."""
    if method == "random":
        return random.Random(seed).sample(range(len(scores)), min(n, len(scores)))
    if method != "lowest":
        raise ValueError(f"method must be 'lowest' or 'random', got {method!r}")
    return sorted(range(len(scores)), key=lambda i: (scores[i], i))[:n]


# -- the whole selection step ------------------------------------------------------------------------------------------
@dataclass
class GeneralPool:
    """The general samples stage 2 selects from: ``instructions`` (``{"id", "kind", "messages"}``) and
    ``preferences`` (``{"id", "kind", "prompt", "chosen", "rejected"}``), the world's or a pool folder's."""

    instructions: list[dict]
    preferences: list[dict]


def general_pool(cfg: SelectionConfig, root: str | Path = ".") -> GeneralPool:
    """The world's general instructions and pairs, or with ``cfg.pool`` the pool folder's
    (:func:`mixcpt_core.format_pool.read_pool`; a missing or malformed file is a ConfigError naming it)."""
    if cfg.pool is None:
        from .world import generate_world

        world = generate_world(cfg.world)
        return GeneralPool(world.instructions, world.preferences)
    from .format_pool import read_pool

    instructions, preferences = read_pool(Path(root) / cfg.pool)
    return GeneralPool(instructions, preferences)


def check_pool_sizes(cfg: SelectionConfig, world) -> None:
    """``n_sft`` / ``n_dpo`` larger than the world's pool would silently train on fewer samples than asked for (and
    label the run with the wrong N): :class:`mixcpt_core.config.ConfigError` instead. ``score: all`` ignores N."""
    from .config import ConfigError

    if cfg.score == "all":
        return
    for key, n, pool, what in (("n_sft", cfg.n_sft, len(world.instructions), "general instructions"),
                               ("n_dpo", cfg.n_dpo, len(world.preferences), "preference pairs")):
        if n > pool:
            raise ConfigError(f"selection.{key}: {n} is larger than the pool (the world has {pool} {what}); "
                              f"lower it, or use score: all to take every one")


def check_chat_template(model_path, tokenizer=None) -> None:
    """:class:`mixcpt_core.config.ConfigError` if the stage-1 model's tokenizer has no chat template (stage 2 formats
    its data with it). Without ``tokenizer`` only the tokenizer is read: this fails before any weights are loaded."""
    from .config import ConfigError
    from .models import has_chat_template

    ok = tokenizer.chat_template is not None if tokenizer is not None else has_chat_template(model_path)
    if not ok:
        raise ConfigError(f"selection.model: {model_path}: the tokenizer has no chat template, which stage 2 needs "
                          f"(add a chat_template.jinja to the model directory)")


def stage1_model(cfg: SelectionConfig, root: str | Path = ".") -> str | Path:
    """Where ``cfg.model`` is: relative to ``root`` if it exists there, else as given (an absolute path or a hub
    id). :class:`mixcpt_core.config.ConfigError` if it is a local path that does not exist, holds no weights or
    unreadable ones, or a config that does not load (:func:`mixcpt_core.models.check_model_dir`)."""
    from .config import ConfigError
    from .models import check_model_dir

    path = Path(root) / cfg.model
    location = path if path.exists() else cfg.model
    try:
        check_model_dir(location)
    except OSError as e:  # not found, no weights, unreadable weights, a config that does not load
        raise ConfigError(f"selection.model: {e}") from None
    return location


def run_selection(cfg: SelectionConfig, model=None, tokenizer=None, out_dir: str | Path | None = None,
                  root: str | Path = ".") -> dict:
    """Score every general instruction and preference pair of ``cfg.world`` (or of ``cfg.pool``) and select ``n_sft`` / ``n_dpo`` of
    them. Returns ``{"config", "sft": {...}, "dpo": {...}}`` where each part has ``ids``, ``kinds``, ``scores``
    (every record, dataset order) and ``selected`` (indices); written to ``out_dir/selection.json`` if given."""
    from .config import to_dict
    from .models import load_causal_lm

    world = general_pool(cfg, root)
    check_pool_sizes(cfg, world)  # before the model is loaded and before anything is written
    if model is None:
        location = stage1_model(cfg, root)
        if cfg.score == "format_ratio":
            check_chat_template(location)
        model, tokenizer = load_causal_lm(location)
    elif cfg.score == "format_ratio":
        check_chat_template(cfg.model, tokenizer)
    method = "random" if cfg.score == "random" else "lowest"
    result = {"config": to_dict(cfg)}
    for part, records, n in (("sft", world.instructions, cfg.n_sft), ("dpo", world.preferences, cfg.n_dpo)):
        if cfg.score == "all":
            scores, selected = [], list(range(len(records)))
        else:
            scores = score_records(model, tokenizer, records, cfg.score, cfg.batch_size)
            selected = select_easy_samples(scores, n, method, cfg.seed)
        result[part] = {"ids": [r["id"] for r in records], "kinds": [r["kind"] for r in records], "scores": scores,
                        "selected": selected}
    if out_dir is not None:
        write_text_atomic(Path(out_dir) / SELECTION_FILE, json.dumps(result) + "\n")
    return result


def selected_records(world, selection: dict) -> tuple[list[dict], list[dict]]:
    """The selected instruction records and preference pairs of ``world`` (a World or a :class:`GeneralPool`, in
    selection order)."""
    return ([world.instructions[i] for i in selection["sft"]["selected"]],
            [world.preferences[i] for i in selection["dpo"]["selected"]])


def load_selection(path: str | Path) -> dict:
    """Read ``selection.json`` (a file or the directory holding it)."""
    path = Path(path)
    return json.loads((path / SELECTION_FILE if path.is_dir() else path).read_text(encoding="utf-8"))
