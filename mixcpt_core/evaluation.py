"""Evaluation: greedy answers to QA prompts, exact-match accuracy and document perplexity.

Answer normalisation (what counts as a match): the generated text is cut at the first newline or special token,
stripped of surrounding whitespace and trailing punctuation, and compared case-insensitively with the gold value.
"""

from __future__ import annotations

import math
import string
from collections import defaultdict

import torch
from tqdm.auto import tqdm

from .world import plain_qa_prompt


def normalize_answer(text: str) -> str:
    """First line of ``text``, whitespace- and punctuation-trimmed, case-folded."""
    first_line = text.split("\n", 1)[0]
    return first_line.strip().strip(string.punctuation + " ").casefold()


@torch.no_grad()
def generate_greedy(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64,
                    stop_token_ids: list[int] | None = None, progress: bool = False) -> list[str]:
    """Greedy continuations of ``prompts`` (decoded without special tokens), batched with left padding.

    Prompts are tokenised as the tokenizer does by default (BOS first). Generation stops at EOS or any of
    ``stop_token_ids``.
    """
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos = [tokenizer.eos_token_id] + list(stop_token_ids or [])
    out: list[str] = []
    try:
        for i in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress, leave=False):
            batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True).to(model.device)
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id)
            new = gen[:, batch["input_ids"].shape[1] :]
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def plain_qa_accuracy(model, tokenizer, qa_items: list[dict], batch_size: int = 128) -> dict:
    """Exact-match accuracy of greedy answers to ``Question: …\\nAnswer:`` prompts (the base model's format).

    Returns ``{"accuracy": float, "n": int, "per_attribute": {attr: float}, "answers": [str]}``.
    """
    prompts = [plain_qa_prompt(q["question"]) for q in qa_items]
    answers = generate_greedy(model, tokenizer, prompts, max_new_tokens=6, batch_size=batch_size)
    hits = [normalize_answer(a) == normalize_answer(q["answer"]) for a, q in zip(answers, qa_items)]
    per_attr = defaultdict(list)
    for h, q in zip(hits, qa_items):
        per_attr[q["attribute"]].append(h)
    return {
        "accuracy": sum(hits) / max(1, len(hits)),
        "n": len(hits),
        "per_attribute": {a: sum(v) / len(v) for a, v in sorted(per_attr.items())},
        "answers": answers,
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
