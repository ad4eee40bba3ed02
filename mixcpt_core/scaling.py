"""Scaling up (notebook 05): a real chat model on the synthetic domain on a CPU, with the configs a GPU run uses.

SmolLM2-135M-Instruct (:mod:`mixcpt_core.smollm2`) has never seen the invented people of the world, so its domain
QA starts near zero: the domain is genuinely new to it. The world's *general* people are just as unknown to it, so
for this model forgetting is measured on :data:`GENERAL_QA`, a few real-world facts it answers before stage 1.

A chat model answers in sentences ("The capital of France is Paris."), so besides the project's exact match
(:func:`mixcpt_core.evaluation.normalize_answer`) the reports give a **contains** match: the gold value appears as a
whole word, case-insensitively, in the first line of the reply.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from transformers import TrainerCallback

from .evaluation import chat_qa_metrics, normalize_answer, plain_qa_accuracy

# Real-world facts a 135M chat model knows (checked: SmolLM2-135M-Instruct answers most of them before training).
GENERAL_QA = [{"question": q, "answer": a, "attribute": "general"} for q, a in [
    ("What is the capital of France?", "Paris"), ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Italy?", "Rome"), ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of Spain?", "Madrid"), ("What is the capital of England?", "London"),
    ("What is the capital of Russia?", "Moscow"), ("What is the capital of Egypt?", "Cairo"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("What planet is known as the Red Planet?", "Mars"),
    ("What is the chemical symbol for gold?", "Au"), ("How many legs does a spider have?", "eight"),
    ("What gas do plants absorb from the air?", "carbon dioxide"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the freezing point of water in degrees Celsius?", "0"),
    ("What is the largest ocean on Earth?", "Pacific"),
]]


def contains_answer(reply: str, gold: str) -> bool:
    """The gold value appears as a whole word (case-insensitive) in the first line of ``reply``."""
    first_line = reply.strip().split("\n", 1)[0]
    return re.search(r"(?<!\w)" + re.escape(gold.casefold()) + r"(?!\w)", first_line.casefold()) is not None


def real_model_qa(model, tokenizer, domain_qa: list[dict], general_qa: list[dict] = GENERAL_QA,
                  max_new_tokens: int = 24, batch_size: int = 16) -> dict:
    """Domain QA in the plain format (``Question: …\\nAnswer:``) and in the chat format, and real-world general QA
    in the chat format. Accuracies: ``*_exact`` (project's exact match) and ``*_contains`` (see module doc)."""
    plain = plain_qa_accuracy(model, tokenizer, domain_qa, batch_size=batch_size)
    chat = chat_qa_metrics(model, tokenizer, domain_qa, batch_size=batch_size, max_new_tokens=max_new_tokens)
    general = chat_qa_metrics(model, tokenizer, general_qa, batch_size=batch_size, max_new_tokens=max_new_tokens)

    def rate(replies, items, match):
        return sum(match(r, q["answer"]) for r, q in zip(replies, items)) / max(1, len(items))

    exact = lambda r, g: normalize_answer(r) == normalize_answer(g)  # noqa: E731
    chat_replies = [g["content"] for g in chat["generations"]]
    general_replies = [g["content"] for g in general["generations"]]
    return {
        "domain_plain_exact": rate(plain["answers"], domain_qa, exact),
        "domain_plain_contains": rate(plain["answers"], domain_qa, contains_answer),
        "domain_chat_exact": rate(chat_replies, domain_qa, exact),
        "domain_chat_contains": rate(chat_replies, domain_qa, contains_answer),
        "general_chat_contains": rate(general_replies, general_qa, contains_answer),
        "format_compliance": chat["format_compliance"],
        "n_domain": len(domain_qa), "n_general": len(general_qa),
        "examples": [{"question": q["question"], "gold": q["answer"], "reply": r}
                     for q, r in list(zip(domain_qa, chat_replies))[:3] + list(zip(general_qa, general_replies))[:3]],
    }


class StepTimer(TrainerCallback):
    """Wall-clock seconds of every optimizer step (forward, teacher, backward, update), in ``seconds``."""

    def __init__(self):
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._t0)


def timed_cpt(cfg, root: str | Path = ".", train_dataset=None) -> dict:
    """:func:`mixcpt_core.cpt.run_cpt` with a :class:`StepTimer`: ``{"out", "step_seconds", "train_seconds",
    "teacher_stats_seconds", "history"}`` (``train_seconds`` covers loading, data, statistics, training, saving).
    ``train_dataset``: packed blocks to train on instead of building ``cfg.mix``.

    Always trains from the first step: checkpoints of an earlier run in ``cfg.output_dir`` are removed first (a
    resumed or already finished run would time few steps or none, e.g. when a notebook is run a second time)."""
    from .atomic import remove_directory
    from .cpt import CPT_INFO_FILE, run_cpt

    remove_directory(Path(cfg.output_dir) / "trainer")
    timer = StepTimer()
    out = run_cpt(cfg, train_dataset=train_dataset, root=root, extra_callbacks=[timer])
    info = json.loads((Path(out) / CPT_INFO_FILE).read_text())
    return {"out": Path(out), "step_seconds": timer.seconds, "train_seconds": info["train_seconds"],
            "teacher_stats_seconds": info.get("teacher_stats_seconds"), "history": info["history"]}
