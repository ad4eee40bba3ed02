"""Knowledge probes: is a fact *stored*, *extractable* or *said*?

The paper frames domain adaptation as knowledge memorisation -> utilisation -> format alignment. Three probes measure
each level separately, on the same questions (domain facts and held-out general facts):

* **stored** (memorisation, format-free): :func:`stored_knowledge`. For a fact "Ada Lorvik -- birth city --
  Amberfall", every value of the attribute (all 25 cities) is put into one document-style sentence, "Ada Lorvik was
  born in <city>.", and the model's log-likelihood of each sentence is computed. The fact counts as stored when the
  gold sentence is the most likely one: multiple choice by likelihood, no generation, no question format, so it works
  for any causal LM (a chat model, a base model, SmolLM2). Chance is known exactly: 1 / (number of values) per
  question (:func:`chance_accuracy`); a second baseline, "always the most common value of the attribute"
  (:func:`majority_accuracy`), is reported next to it.
* **extractable** (utilisation): the plain ``Question: ...\\nAnswer:`` format of pre-training, greedy, exact match
  (:func:`mixcpt_core.evaluation.plain_qa_accuracy`).
* **said** (format): the chat template, greedy, exact match (:func:`mixcpt_core.evaluation.chat_qa_metrics`).

A fact that is stored but not extractable was memorised and cannot be used; one that is extractable but not said is
known and lost only in the chat format. Comparing the three after stage 1 and after stage 2 says whether stage 2
erased facts or only the route to them.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import torch

from .world import ATTRIBUTE_VALUES, DOC_TEMPLATES

# The probe sentence per attribute: the first document template ("{name} was born in {v}."), the form in which the
# fact was written most often. Any fixed sentence works for a likelihood comparison; this one is where the fact lives.
PROBE_TEMPLATES = {attribute: templates[0] for attribute, templates in DOC_TEMPLATES.items()}


@torch.no_grad()
def sequence_logprobs(model, sequences: list[list[int]], pad_id: int, batch_size: int = 256) -> torch.Tensor:
    """Log-likelihood of each token sequence: ``sum_{t >= 1} log p(x_t | x_<t)`` -> ``[N]`` (float64).

    The first token is not scored (it has no context); sequences are right-padded with ``pad_id`` in batches of
    ``batch_size``, padding masked out of the sum. Model in eval mode for the call, restored after."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(sequences), batch_size):
            chunk = sequences[i : i + batch_size]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, seq in enumerate(chunk):
                ids[r, : len(seq)] = torch.tensor(seq)
                mask[r, : len(seq)] = 1
            ids, mask = ids.to(model.device), mask.to(model.device)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()  # [B, T, V]
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
            out.append((logp * mask[:, 1:]).double().sum(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def probe_sentences(name: str, attribute: str) -> tuple[list[str], list[str]]:
    """``(values, sentences)``: every value of ``attribute`` and the probe sentence for ``name`` with that value."""
    values = list(ATTRIBUTE_VALUES[attribute])
    return values, [PROBE_TEMPLATES[attribute].format(name=name, v=v) for v in values]


def stored_knowledge(model, tokenizer, world, qa_items: list[dict], batch_size: int = 256) -> dict:
    """The *stored* probe on ``qa_items`` (QA records of ``world``): multiple choice among all values of each
    question's attribute by the log-likelihood of the probe sentence (:data:`PROBE_TEMPLATES`).

    Each sentence is tokenised as the tokenizer does by default (BOS first where it adds one) and scored by
    :func:`sequence_logprobs`; ties go to the first value in :data:`mixcpt_core.world.ATTRIBUTE_VALUES` order.
    Returns ``{"accuracy", "n", "chance", "majority", "hits": [0/1 per item], "predictions": [value per item]}``
    (``chance``: :func:`chance_accuracy`, ``majority``: :func:`majority_accuracy` of ``qa_items``)."""
    names = {e["id"]: e["name"] for e in world.entities}
    choices = [dict(zip(*probe_sentences(names[q["entity_id"]], q["attribute"]))) for q in qa_items]
    return choose_by_likelihood(model, tokenizer, qa_items, choices, chance_accuracy(qa_items), batch_size)


def choose_by_likelihood(model, tokenizer, qa_items: list[dict], choices: list[dict[str, str]], chance: float,
                         batch_size: int = 256) -> dict:
    """Multiple choice by likelihood, the core of every stored probe: for item i, ``choices[i]`` maps each candidate
    answer to the text that states it; the prediction is the candidate whose text has the highest log-likelihood
    (:func:`sequence_logprobs` of the tokenizer's default encoding; ties: the first candidate in ``choices[i]``
    order), a hit when it equals the item's ``answer``. Returns ``{"accuracy", "n", "chance", "majority", "hits",
    "predictions"}``: ``chance`` as passed in, ``majority`` = :func:`majority_accuracy` of ``qa_items``."""
    sequences, spans = [], []
    for options in choices:
        spans.append((len(sequences), list(options)))
        sequences += [tokenizer(text).input_ids for text in options.values()]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = sequence_logprobs(model, sequences, pad, batch_size)
    predictions = [values[int(torch.argmax(scores[start : start + len(values)]))] for start, values in spans]
    hits = [int(p == q["answer"]) for p, q in zip(predictions, qa_items)]
    return {"accuracy": sum(hits) / max(1, len(hits)), "n": len(hits), "chance": chance,
            "majority": majority_accuracy(qa_items), "hits": hits, "predictions": predictions}


def chance_accuracy(qa_items: list[dict]) -> float:
    """Expected accuracy of a uniform random guess on the stored probe: mean over items of 1 / |values|."""
    return sum(1 / len(ATTRIBUTE_VALUES[q["attribute"]]) for q in qa_items) / max(1, len(qa_items))


def majority_accuracy(qa_items: list[dict]) -> float:
    """Accuracy of always answering the most common value: mean over items of [the item's ``answer`` equals the most
    common ``answer`` among the items of its ``attribute`` in ``qa_items``]; 0 for no items.

    Ties between equally common values go to the value that sorts first. The counts come from ``qa_items`` itself,
    so this is the score of a guesser who knows the answer distribution of exactly these items (and nothing about
    each one). Never below uniform chance over the attribute's values (an attribute's most common answer covers at
    least 1 / (number of distinct answers) of its items), above it when answers repeat. Works for the synthetic
    world's QA records and for :data:`mixcpt_core.realworld.REALWORLD_QA` items alike (both have ``attribute`` and
    ``answer``)."""
    majority = majority_answers(qa_items)
    return sum(q["answer"] == majority[q["attribute"]] for q in qa_items) / max(1, len(qa_items))


def majority_answers(qa_items: list[dict]) -> dict[str, str]:
    """Per ``attribute`` of ``qa_items``, its most common ``answer`` among them (what :func:`majority_accuracy`
    always answers); ties go to the value that sorts first."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for q in qa_items:
        counts[q["attribute"]][q["answer"]] += 1
    # sorted first, then max: max keeps the first of equal counts, so a tie goes to the value that sorts first
    return {a: max(sorted(c), key=c.__getitem__) for a, c in counts.items()}


__all__ = ["PROBE_TEMPLATES", "sequence_logprobs", "probe_sentences", "stored_knowledge", "choose_by_likelihood",
           "chance_accuracy", "majority_accuracy", "majority_answers"]
