"""Evaluation: greedy answers to QA prompts, exact-match accuracy and document perplexity.

Answer normalisation (what counts as a match): the generated text is cut at the first newline or special token,
stripped of surrounding whitespace and trailing punctuation, and compared case-insensitively with the gold value.
"""

from __future__ import annotations

import math
import re
import string
from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .config import FieldValueError, check_choice, check_numbers
from .world import plain_qa_prompt


def normalize_answer(text: str) -> str:
    """First line of ``text``, whitespace- and punctuation-trimmed, case-folded."""
    first_line = text.split("\n", 1)[0]
    return first_line.strip().strip(string.punctuation + " ").casefold()


MATCH_RULES = ("exact", "contains", "reply_contains")


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
    the first ``limit`` questions of each set and held-out documents of each half (0 = all; for fast tests).

    For a real chat model, whose replies are sentences of varying length (the SmolLM2 profile):

    * ``no_repeat_ngram_size``: greedy decoding never repeats an n-gram of that many tokens (0 = plain greedy).
      Why: a 135M chat model decoded greedily falls into a repetition loop on about one prompt in eight and never
      ends its turn; the guard is part of the decoding, the same for every model compared.
    * ``first_pass_tokens``: generate every reply up to this many tokens first, then continue only the unfinished
      ones, in passes that double the length reached, up to ``max_new_tokens`` (0 = one pass). Greedy decoding continues a prefix exactly as one long pass would,
      so this changes the cost, not the replies (up to float rounding of a different padding): a batch no longer
      waits for its longest reply while the finished ones idle.
    * ``leak_check``: a well-formed turn must also be free of template leakage and document-style continuation
      (:func:`parse_assistant_turn`).
    * ``plain_prompt``: the layout of the *extractable* probe (:func:`plain_qa_accuracy`), ``{question}`` filled
      in. The default is the plain layout of pre-training and of stage 1's flattened instructions; a profile can
      probe with a layout stage 1 never trains on (the stage-1 layout is then still reported, as its own column).
    * ``stored_statements``: the real-world *stored* probe scores declarative sentences
      (:func:`mixcpt_core.realworld.stored_realworld`); the ``Question:/Answer:`` likelihood is its own column."""

    general: str = "world"
    match: str = "exact"
    max_new_tokens: int = 12
    plain_new_tokens: int = 6
    batch_size: int = 128
    limit: int = 0
    no_repeat_ngram_size: int = 0
    first_pass_tokens: int = 0
    leak_check: bool = False
    plain_prompt: str = "Question: {question}\nAnswer:"

    RANGES = {"max_new_tokens": ">= 1", "plain_new_tokens": ">= 1", "batch_size": ">= 1", "limit": ">= 0",
              "no_repeat_ngram_size": ">= 0", "first_pass_tokens": ">= 0"}

    def __post_init__(self):
        check_numbers(self)
        check_choice(self.general, "general", ("world", "realworld"))
        check_choice(self.match, "match", MATCH_RULES)
        if "{question}" not in self.plain_prompt:
            raise FieldValueError("plain_prompt", f"must contain {{question}}, got {self.plain_prompt!r}")

    def decoding(self) -> dict:
        """The keyword arguments of :func:`generate_new_tokens` that this spec sets (empty at the defaults)."""
        out = {}
        if self.no_repeat_ngram_size:
            out["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.first_pass_tokens:
            out["first_pass_tokens"] = self.first_pass_tokens
        return out

    def is_default(self) -> bool:
        return self == EvalSpec()


@torch.no_grad()
def generate_new_tokens(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64,
                        stop_token_ids: list[int] | None = None, add_special_tokens: bool = True,
                        progress: bool = False, no_repeat_ngram_size: int = 0,
                        first_pass_tokens: int = 0) -> list[list[int]]:
    """Greedy generation, batched with left padding: per prompt, the new token ids (padded with PAD after a stop).

    ``add_special_tokens=False`` for prompts that carry their own BOS (chat-template output). Generation stops at
    EOS or any of ``stop_token_ids``. ``no_repeat_ngram_size`` > 0: no n-gram of that many tokens occurs twice in
    prompt + reply (transformers' n-gram blocking). ``first_pass_tokens`` in (0, ``max_new_tokens``): every prompt is
    generated up to that many tokens, then only the rows that have not stopped are continued, regrouped into full
    batches, from prompt + their tokens so far (greedy: the same continuation as one long pass), each further pass
    doubling the length reached (64, 128, 256, ... up to ``max_new_tokens``): a batch no longer waits for its one
    long reply while the rest idle.
    """
    from .logs import interactive

    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    stops = [tokenizer.eos_token_id] + list(stop_token_ids or [])
    extra = {"no_repeat_ngram_size": no_repeat_ngram_size} if no_repeat_ngram_size else {}
    pad = tokenizer.pad_token_id
    first = first_pass_tokens if 0 < first_pass_tokens < max_new_tokens else max_new_tokens
    try:
        encoded = [tokenizer(p, add_special_tokens=add_special_tokens).input_ids for p in prompts]
        out: list[list[int]] = [[] for _ in prompts]
        todo, budget, used = list(range(len(prompts))), first, 0
        while todo:
            for i in tqdm(range(0, len(todo), batch_size), desc="generate", disable=not (progress and interactive()),
                          leave=False):  # a transient bar: only where it can be erased
                rows = todo[i : i + batch_size]
                seqs = [encoded[r] + out[r] for r in rows]
                width = max(map(len, seqs))
                ids = torch.tensor([[pad] * (width - len(q)) + q for q in seqs])
                mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in seqs])
                gen = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                     max_new_tokens=budget, do_sample=False, eos_token_id=stops, pad_token_id=pad,
                                     **extra)
                for r, new in zip(rows, gen[:, width:].tolist()):
                    out[r] += new
            used += budget  # a row that has not stopped got exactly this many tokens so far
            # the rows still going: no stop token among their tokens (padding only ever follows a stop)
            todo = [r for r in todo if used < max_new_tokens and not any(t in stops for t in out[r])]
            budget = min(used, max_new_tokens - used)  # each pass doubles the length reached so far
        # a row that stopped early in a pass is padded to that pass's width: keep the padding only up to the budget
        return [row[:max_new_tokens] for row in out]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)


def generate_greedy(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64,
                    stop_token_ids: list[int] | None = None, progress: bool = False) -> list[str]:
    """Greedy continuations of ``prompts`` (tokenised with BOS first), decoded without special tokens."""
    new = generate_new_tokens(model, tokenizer, prompts, max_new_tokens, batch_size, stop_token_ids, progress=progress)
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def plain_qa_accuracy(model, tokenizer, qa_items: list[dict], batch_size: int = 128, match: str = "exact",
                      max_new_tokens: int = 6, prompt: str | None = None) -> dict:
    """Accuracy of greedy answers to ``Question: …\\nAnswer:`` prompts (the base model's format), by the ``match``
    rule of :func:`answer_matches` (exact by default). ``prompt``: another layout, a template with ``{question}``
    (e.g. ``"Q: {question}\\nA:"``, one that stage 1 never trains on).

    Returns ``{"accuracy": float, "n": int, "per_attribute": {attr: float}, "answers": [str], "hits": [0/1]}``.
    """
    prompts = [plain_qa_prompt(q["question"]) if prompt is None else prompt.format(question=q["question"])
               for q in qa_items]
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


# Template leakage or a document-style continuation inside a reply: a line in the plain Question:/Answer: layout of
# stage 1, or a chat-template marker written out as text ("<|im_start|>", "<|end|>"), which a tokenizer that does
# not treat it as one special token would otherwise let through.
LEAK_PATTERN = re.compile(r"(?m)^\s*(?:Question|Answer)\s*:|<\|[a-z_]+\|>")


def parse_assistant_turn(token_ids: list[int], tokenizer, leak_check: bool = False) -> dict:
    """Judge one generated continuation of a chat prompt (token ids after the prompt, padding removed).

    **Format compliance** (``well_formed``): the continuation is a well-formed assistant turn, i.e.
      1. it contains the end-of-turn token ``<|end|>`` (within the generation budget), and
      2. the tokens before the first ``<|end|>`` are non-empty, decode to non-blank text, and contain no special
         token (no role token, ``<|bos|>``, ``<|eos|>`` or ``<|pad|>``).
    Whatever follows the first ``<|end|>`` is ignored (generation stops there anyway). With ``leak_check`` it must
    also 3. contain no template leakage or document-style continuation (:data:`LEAK_PATTERN`: a line starting with
    ``Question:`` or ``Answer:``, or a ``<|...|>`` marker as text).

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
    if leak_check and LEAK_PATTERN.search(content):
        well_formed = False
    return {"content": content, "ended": ended, "well_formed": well_formed}


@torch.no_grad()
def generate_chat(model, tokenizer, questions: list[str], max_new_tokens: int = 12, batch_size: int = 64,
                  leak_check: bool = False, progress: bool = False, **decoding) -> list[dict]:
    """Greedy assistant turns for ``questions`` in the chat format; each result is :func:`parse_assistant_turn`
    plus ``raw`` (the continuation decoded *with* special tokens). Stops at ``<|end|>`` or ``<|eos|>``.
    ``decoding``: :func:`generate_new_tokens`'s ``no_repeat_ngram_size`` / ``first_pass_tokens``."""
    from .tokenizer import end_of_turn_id

    prompts = [chat_prompt(tokenizer, q) for q in questions]
    rows = generate_new_tokens(model, tokenizer, prompts, max_new_tokens, batch_size,
                               stop_token_ids=[end_of_turn_id(tokenizer)], add_special_tokens=False,
                               progress=progress, **decoding)
    out: list[dict] = []
    for row in rows:
        r = parse_assistant_turn(row, tokenizer, leak_check)
        r["raw"] = tokenizer.decode([t for t in row if t != tokenizer.pad_token_id], skip_special_tokens=False)
        out.append(r)
    return out


def chat_qa_metrics(model, tokenizer, qa_items: list[dict], batch_size: int = 128, max_new_tokens: int = 12,
                    match: str = "exact", leak_check: bool = False, **decoding) -> dict:
    """Chat-format QA on ``qa_items``: ``accuracy`` of the assistant turn's content by the ``match`` rule of
    :func:`answer_matches` (exact by default; a turn without ``<|end|>`` can still be right) and
    ``format_compliance`` = fraction of well-formed turns (:func:`parse_assistant_turn`, with ``leak_check``).
    Also ``n``, the ``generations`` and ``hits`` (0/1 per item). ``decoding``: as in :func:`generate_chat`."""
    gens = generate_chat(model, tokenizer, [q["question"] for q in qa_items], max_new_tokens, batch_size, leak_check,
                         **decoding)
    hits = [int(answer_matches(g["content"], q, match)) for g, q in zip(gens, qa_items)]
    n = max(1, len(gens))
    return {"accuracy": sum(hits) / n, "format_compliance": sum(g["well_formed"] for g in gens) / n,
            "n": len(gens), "generations": gens, "hits": hits}


# -- the reproduction's metrics ----------------------------------------------------------------------------------------
METRIC_COLUMNS = ("domain_qa_acc", "general_qa_acc", "format_rate", "domain_ppl", "general_ppl")
PLAIN_COLUMNS = ("plain_domain_qa_acc", "plain_general_qa_acc")
STORED_COLUMNS = ("stored_domain_acc", "stored_general_acc")
# Columns only a profile with another extractable layout or the real-world general set has (EvalSpec): the probes
# in stage 1's own Question:/Answer: layout, reported next to the format-free ones, named as what they are
LAYOUT_COLUMNS = ("stage1_layout_domain_qa_acc", "stage1_layout_general_qa_acc", "stored_general_acc_qa_layout")
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
    chat = dict(match=spec.match, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size,
                leak_check=spec.leak_check, **spec.decoding())
    plain = dict(match=spec.match, max_new_tokens=spec.plain_new_tokens, batch_size=spec.batch_size)
    default_layout = spec.plain_prompt == EvalSpec().plain_prompt
    m_dom, m_gen = chat_qa_metrics(model, tokenizer, domain, **chat), chat_qa_metrics(model, tokenizer, general, **chat)
    layout = None if default_layout else spec.plain_prompt
    p_dom = plain_qa_accuracy(model, tokenizer, domain, prompt=layout, **plain)
    p_gen = plain_qa_accuracy(model, tokenizer, general, prompt=layout, **plain)
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
    if not default_layout:  # the extractable probe in stage 1's own layout, kept as what it is
        for qa_set, items in (("domain", domain), ("general", general)):
            out[f"stage1_layout_{qa_set}_qa_acc"] = plain_qa_accuracy(model, tokenizer, items, **plain)["accuracy"]
    if spec.general == "realworld":  # the real-world stored probe in the Question:/Answer: layout, kept as what it is
        from .realworld import stored_realworld_qa_layout

        out["stored_general_acc_qa_layout"] = stored_realworld_qa_layout(model, tokenizer, general)["accuracy"]
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
