"""Figures. Each function draws on a new matplotlib figure, saves it when ``path`` is given and returns it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def plot_base_training(history: list[dict], path: str | Path | None = None, title: str = "Base model pre-training"):
    """Training loss (left axis) and plain-format QA accuracy on seen / held-out general facts (right panel).

    ``history`` rows are Trainer log entries: ``{"step", "loss"}`` and ``{"step", "seen_qa_acc", "heldout_qa_acc"}``.
    """
    loss = [(r["step"], float(r["loss"])) for r in history if "loss" in r]
    acc = [r for r in history if "heldout_qa_acc" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if loss:
        ax1.plot(*zip(*loss), color="tab:gray")
    ax1.set(xlabel="step", ylabel="training loss (CE)", title="loss", yscale="log")
    ax2.plot([r["step"] for r in acc], [r["seen_qa_acc"] for r in acc], "o-", label="seen general QA (trained)")
    ax2.plot([r["step"] for r in acc], [r["heldout_qa_acc"] for r in acc], "o-", label="held-out general QA (never trained)")
    ax2.set(xlabel="step", ylabel="exact match", ylim=(0, 1.02), title="plain-format QA accuracy")
    ax2.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
