"""Evaluation: greedy answers to QA prompts, exact-match accuracy and document perplexity.

Answer normalisation (what counts as a match): the generated text is cut at the first newline or special token,
stripped of surrounding whitespace and trailing punctuation, and compared case-insensitively with the gold value.
"""

from __future__ import annotations

import math
import string
from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .world import plain_qa_prompt


def normalize_answer(text: str) -> str:
    """First line of ``text``, whitespace- and punctuation-trimmed, case-folded."""
    first_line = text.split("\n", 1)[0]
    return first_line.strip().strip(string.punctuation + " ").casefold()


MATCH_RULES = ("exact", "contains")


def answer_matches(reply: str, item: dict, rule: str = "exact") -> bool:
    """Whether ``reply`` answers ``item`` (a QA record: ``answer`` and optional ``aliases``, other accepted answers).

    * ``exact``: :func:`normalize_answer` of the reply equals that of the answer or of an alias (the synthetic
      world's rule: its models answer with the bare value);
    * ``contains``: the answer or an alias occurs as a whole word or phrase, case-insensitively, in the first
      non-empty line of the reply ("The capital of France is Paris." contains "Paris"; "Parisian" does not): the
      rule for a real chat model, which answers in sentences.

    Both rules are :mod:`mixcpt_core.realworld`'s ``score_exact`` / ``score_contains`` (tested there)."""
    from .realworld import SCORERS

    if rule not in SCORERS:
        raise ValueError(f"unknown match rule {rule!r}; choose one of {MATCH_RULES}")
    return SCORERS[rule](reply, item)


@dataclass
class EvalSpec:
    """How a model is evaluated on test (and, in stage 2, validation) questions: one per profile.

    ``general``: what the general knowledge to protect is -- ``world`` (the world's held-out general people, the
    synthetic profiles) or ``realworld`` (the committed real-world questions of :mod:`mixcpt_core.realworld`, for a
    real chat model, which knows them before adaptation). ``match``: the rule of :func:`answer_matches`.
    ``max_new_tokens`` / ``plain_new_tokens``: generation budgets in the chat and the plain format. ``limit``: only
    the first ``limit`` questions of each set and held-out documents of each half (0 = all; for fast tests)."""

    general: str = "world"
    match: str = "exact"
    max_new_tokens: int = 12
    plain_new_tokens: int = 6
    batch_size: int = 128
    limit: int = 0

    def __post_init__(self):
        if self.general not in ("world", "realworld"):
            raise ValueError(f"general must be 'world' or 'realworld', got {self.general!r}")
        if self.match not in MATCH_RULES:
            raise ValueError(f"match must be one of {MATCH_RULES}, got {self.match!r}")
        for name in ("max_new_tokens", "plain_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")

    def is_default(self) -> bool:
        return self == EvalSpec()


@torch.no_grad()
def generate_new_tokens(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64,
                        stop_token_ids: list[int] | None = None, add_special_tokens: bool = True,
                        progress: bool = False) -> list[list[int]]:
    """Greedy generation, batched with left padding: per prompt, the new token ids (padded with PAD after a stop).

    ``add_special_tokens=False`` for prompts that carry their own BOS (chat-template output). Generation stops at
    EOS or any of ``stop_token_ids``.
    """
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos = [tokenizer.eos_token_id] + list(stop_token_ids or [])
    out: list[list[int]] = []
    try:
        for i in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress, leave=False):
            batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=add_special_tokens).to(model.device)
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id)
            out += gen[:, batch["input_ids"].shape[1] :].tolist()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def generate_greedy(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64,
                    stop_token_ids: list[int] | None = None, progress: bool = False) -> list[str]:
    """Greedy continuations of ``prompts`` (tokenised with BOS first), decoded without special tokens."""
    new = generate_new_tokens(model, tokenizer, prompts, max_new_tokens, batch_size, stop_token_ids, progress=progress)
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def plain_qa_accuracy(model, tokenizer, qa_items: list[dict], batch_size: int = 128, match: str = "exact",
                      max_new_tokens: int = 6) -> dict:
    """Accuracy of greedy answers to ``Question: …\\nAnswer:`` prompts (the base model's format), by the ``match``
    rule of :func:`answer_matches` (exact by default).

    Returns ``{"accuracy": float, "n": int, "per_attribute": {attr: float}, "answers": [str], "hits": [0/1]}``.
    """
    prompts = [plain_qa_prompt(q["question"]) for q in qa_items]
    answers = generate_greedy(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    hits = [int(answer_matches(a, q, match)) for a, q in zip(answers, qa_items)]
    per_attr = defaultdict(list)
    for h, q in zip(hits, qa_items):
        per_attr[q["attribute"]].append(h)
    return {
        "accuracy": sum(hits) / max(1, len(hits)),
        "n": len(hits),
        "per_attribute": {a: sum(v) / len(v) for a, v in sorted(per_attr.items())},
        "answers": answers,
        "hits": hits,
    }


@torch.no_grad()
def document_perplexity(model, tokenizer, texts: list[str], batch_size: int = 64) -> float:
    """exp(mean next-token NLL) over every predicted token of ``texts`` (BOS … EOS; BOS itself is not predicted).

    Token-mean over the whole set, not a mean of per-document perplexities.
    """
    was_training = model.training
    model.eval()
    total_nll, total_tokens = 0.0, 0
    try:
        for i in range(0, len(texts), batch_size):
            enc = [tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in texts[i : i + batch_size]]
            width = max(map(len, enc))
            ids = torch.full((len(enc), width), tokenizer.pad_token_id)
            mask = torch.zeros((len(enc), width), dtype=torch.long)
            for r, e in enumerate(enc):
                ids[r, : len(e)] = torch.tensor(e)
                mask[r, : len(e)] = 1
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
            labels = ids[:, 1:].to(model.device)
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
            ).view_as(labels)
            valid = mask[:, 1:].to(model.device).bool()
            total_nll += nll[valid].sum().item()
            total_tokens += valid.sum().item()
    finally:
        model.train(was_training)
    return math.exp(total_nll / max(1, total_tokens))


# -- chat format (stage 2) ---------------------------------------------------------------------------------------------
def chat_prompt(tokenizer, question: str) -> str:
    """The chat-template prompt for one user turn, ending with the generation prompt ``<|assistant|>\\n``.
    It already starts with ``<|bos|>``: tokenise it with ``add_special_tokens=False``."""
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)


def parse_assistant_turn(token_ids: list[int], tokenizer) -> dict:
    """Judge one generated continuation of a chat prompt (token ids after the prompt, padding removed).

    **Format compliance** (``well_formed``): the continuation is a well-formed assistant turn, i.e.
      1. it contains the end-of-turn token ``<|end|>`` (within the generation budget), and
      2. the tokens before the first ``<|end|>`` are non-empty, decode to non-blank text, and contain no special
         token (no role token, ``<|bos|>``, ``<|eos|>`` or ``<|pad|>``).
    Whatever follows the first ``<|end|>`` is ignored (generation stops there anyway).

    Returns ``{"content": text before <|end|> (or all text if there is none), "ended": bool, "well_formed": bool}``.
    """
    from .tokenizer import end_of_turn_id

    end = end_of_turn_id(tokenizer)
    pad = tokenizer.pad_token_id
    # padding only ever follows the stop, so cut at the first end-of-turn *before* dropping padding: a tokenizer
    # whose pad token is its end-of-turn token (SmolLM2, Qwen2.5) would otherwise never end a turn
    ended = end in token_ids
    body = list(token_ids[: token_ids.index(end)]) if ended else [t for t in token_ids if t != pad]
    special = set(tokenizer.all_special_ids)
    content = tokenizer.decode(body, skip_special_tokens=True)
    well_formed = ended and bool(body) and not any(t in special for t in body) and bool(content.strip())
    return {"content": content, "ended": ended, "well_formed": well_formed}


@torch.no_grad()
def generate_chat(model, tokenizer, questions: list[str], max_new_tokens: int = 12, batch_size: int = 64) -> list[dict]:
    """Greedy assistant turns for ``questions`` in the chat format; each result is :func:`parse_assistant_turn`
    plus ``raw`` (the continuation decoded *with* special tokens). Stops at ``<|end|>`` or ``<|eos|>``."""
    from .tokenizer import end_of_turn_id

    prompts = [chat_prompt(tokenizer, q) for q in questions]
    rows = generate_new_tokens(model, tokenizer, prompts, max_new_tokens, batch_size,
                               stop_token_ids=[end_of_turn_id(tokenizer)], add_special_tokens=False)
    out: list[dict] = []
    for row in rows:
        r = parse_assistant_turn(row, tokenizer)
        r["raw"] = tokenizer.decode([t for t in row if t != tokenizer.pad_token_id], skip_special_tokens=False)
        out.append(r)
    return out


def chat_qa_metrics(model, tokenizer, qa_items: list[dict], batch_size: int = 128, max_new_tokens: int = 12,
                    match: str = "exact") -> dict:
    """Chat-format QA on ``qa_items``: ``accuracy`` of the assistant turn's content by the ``match`` rule of
    :func:`answer_matches` (exact by default; a turn without ``<|end|>`` can still be right) and
    ``format_compliance`` = fraction of well-formed turns (:func:`parse_assistant_turn`). Also ``n``, the
    ``generations`` and ``hits`` (0/1 per item)."""
    gens = generate_chat(model, tokenizer, [q["question"] for q in qa_items], max_new_tokens, batch_size)
    hits = [int(answer_matches(g["content"], q, match)) for g, q in zip(gens, qa_items)]
    n = max(1, len(gens))
    return {"accuracy": sum(hits) / n, "format_compliance": sum(g["well_formed"] for g in gens) / n,
            "n": len(gens), "generations": gens, "hits": hits}


# -- the reproduction's metrics ----------------------------------------------------------------------------------------
METRIC_COLUMNS = ("domain_qa_acc", "general_qa_acc", "format_rate", "domain_ppl", "general_ppl")
PLAIN_COLUMNS = ("plain_domain_qa_acc", "plain_general_qa_acc")
STORED_COLUMNS = ("stored_domain_acc", "stored_general_acc")
# The three knowledge levels (mixcpt_core.probes) as the metric of each QA set, and the per-question hits behind them
LEVELS = {"stored": STORED_COLUMNS, "extractable": PLAIN_COLUMNS, "said": ("domain_qa_acc", "general_qa_acc")}
HIT_KEYS = tuple(f"{qa_set}_{level}" for level in LEVELS for qa_set in ("domain", "general"))


def evaluate_model(model, tokenizer, world, n_examples: int = 0, spec: EvalSpec | None = None,
                   general_items: list[dict] | None = None) -> dict:
    """Every metric of a results row (docs/evaluation.md), on never-trained QA and held-out documents:

    * ``domain_qa_acc`` / ``general_qa_acc``: chat-format QA (:func:`chat_qa_metrics`) on all domain QA (the target
      domain) and all general QA (forgetting), one greedy answer per question;
    * ``format_rate``: fraction of well-formed assistant turns (:func:`parse_assistant_turn`) over both sets;
    * ``domain_ppl`` / ``general_ppl``: :func:`document_perplexity` of the world's held-out domain / general documents;
    * ``plain_domain_qa_acc`` / ``plain_general_qa_acc``: the same questions in the plain ``Question:/Answer:``
      format of pre-training (what the model *knows*, whether or not it can say it in the chat format);
    * ``stored_domain_acc`` / ``stored_general_acc``: the same facts by multiple choice on likelihood
      (:func:`mixcpt_core.probes.stored_knowledge`, :func:`mixcpt_core.realworld.stored_realworld`: is the fact in
      the weights at all?);
    * ``hits``: per question, 0/1 for each of the six (set, level) pairs of :data:`HIT_KEYS` (``domain_said`` =
      the chat-format hits behind ``domain_qa_acc``, ...), in question order: what the paired bootstrap of
      :mod:`mixcpt_core.stats` resamples.

    ``spec`` (:class:`EvalSpec`, default: the synthetic profiles') says what "general" is and how answers match.
    General questions: ``general_items`` if given (the SmolLM2 profile passes the real-world test questions its
    start model answered correctly), else the world's ``general_heldout`` split (``spec.general == "world"``) or
    every real-world test question (``"realworld"``). Only *test* splits are read: this is the reporting
    function, never a selection criterion.

    ``n_examples`` > 0 also returns ``examples``: the first n questions of each set with gold answer, chat output
    (decoded with special tokens) and whether it matched.
    """
    from .probes import stored_knowledge

    spec = spec or EvalSpec()
    domain = world.qa_split("domain")
    if general_items is not None:
        general = general_items
    elif spec.general == "world":
        general = world.qa_split("general_heldout")
    else:
        from .realworld import realworld_split

        general = realworld_split()["test"]
    domain_docs, general_docs = world.docs("domain", "eval"), world.docs("general", "eval")
    if spec.limit:
        domain, general = domain[: spec.limit], general[: spec.limit]
        domain_docs, general_docs = domain_docs[: spec.limit], general_docs[: spec.limit]
    chat = dict(match=spec.match, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size)
    plain = dict(match=spec.match, max_new_tokens=spec.plain_new_tokens, batch_size=spec.batch_size)
    m_dom, m_gen = chat_qa_metrics(model, tokenizer, domain, **chat), chat_qa_metrics(model, tokenizer, general, **chat)
    p_dom, p_gen = plain_qa_accuracy(model, tokenizer, domain, **plain), plain_qa_accuracy(model, tokenizer, general, **plain)
    s_dom = stored_knowledge(model, tokenizer, world, domain)
    if spec.general == "world":
        s_gen = stored_knowledge(model, tokenizer, world, general)
    else:
        from .realworld import stored_realworld

        s_gen = stored_realworld(model, tokenizer, general)
    out = {
        "domain_qa_acc": m_dom["accuracy"],
        "general_qa_acc": m_gen["accuracy"],
        "format_rate": (m_dom["format_compliance"] * m_dom["n"] + m_gen["format_compliance"] * m_gen["n"])
        / max(1, m_dom["n"] + m_gen["n"]),
        "domain_ppl": document_perplexity(model, tokenizer, domain_docs),
        "general_ppl": document_perplexity(model, tokenizer, general_docs),
        "plain_domain_qa_acc": p_dom["accuracy"],
        "plain_general_qa_acc": p_gen["accuracy"],
        "stored_domain_acc": s_dom["accuracy"],
        "stored_general_acc": s_gen["accuracy"],
        "hits": {"domain_stored": s_dom["hits"], "general_stored": s_gen["hits"], "domain_extractable": p_dom["hits"],
                 "general_extractable": p_gen["hits"], "domain_said": m_dom["hits"], "general_said": m_gen["hits"]},
    }
    if n_examples:
        out["examples"] = [
            {"set": name, "question": q["question"], "gold": q["answer"], "output": g["raw"],
             "correct": bool(h)}
            for name, items, m in (("domain", domain, m_dom), ("general", general, m_gen))
            for q, g, h in zip(items[:n_examples], m["generations"][:n_examples], m["hits"][:n_examples])
        ]
    return out


# (key, label, format) of the rows of the two metric tables below
MODEL_TABLE_ROWS = (
    ("domain_qa_acc", "domain QA, chat format (target domain, never trained)", ".3f"),
    ("general_qa_acc", "held-out general QA, chat format (forgetting)", ".3f"),
    ("format_rate", "format compliance (well-formed assistant turns)", ".3f"),
    ("domain_ppl", "perplexity, held-out domain documents", ".2f"),
    ("general_ppl", "perplexity, held-out general documents", ".2f"),
    ("plain_domain_qa_acc", "domain QA, plain format", ".3f"),
    ("plain_general_qa_acc", "held-out general QA, plain format", ".3f"),
    ("stored_domain_acc", "domain facts stored (likelihood multiple choice)", ".3f"),
    ("stored_general_acc", "held-out general facts stored (likelihood multiple choice)", ".3f"),
)
BASE_TABLE_ROWS = (
    ("general_seen_qa_acc", "plain QA, seen general facts (trained)", ".3f"),
    ("general_heldout_qa_acc", "plain QA, held-out general facts (never trained)", ".3f"),
    ("domain_qa_acc", "plain QA, domain facts (not yet learned)", ".3f"),
    ("general_eval_doc_ppl", "perplexity, held-out general documents", ".2f"),
    ("domain_eval_doc_ppl", "perplexity, held-out domain documents", ".2f"),
)


def _metric_table(m: dict, rows) -> str:
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {label} | {m[key]:{fmt}} |" for key, label, fmt in rows)


def format_metrics_table(m: dict) -> str:
    """Markdown table of :func:`evaluate_model`'s metrics."""
    return _metric_table(m, MODEL_TABLE_ROWS)


def format_base_table(m: dict) -> str:
    """Markdown table of a base model's metrics (the keys of :func:`mixcpt_core.training.evaluate_base`)."""
    return _metric_table(m, BASE_TABLE_ROWS)
