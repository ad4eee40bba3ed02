"""Drawn figures of the method (not of a run): the two pipelines and the logit swap.

``python -m mixcpt_core.diagrams`` writes ``figures/pipelines.png`` and ``figures/swap_diagram.png``. The README,
``docs/method.md`` and the notebooks show them. The swap diagram's bars are computed with
:func:`mixcpt_core.losses.swap_top1_with_label`, the function the loss uses, so the picture cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .atomic import atomic_file

# What each stage sees: one colour per kind of data.
DATA_COLOURS = {
    "domain documents": "#f4a259",
    "general instructions": "#5b8def",
    "general preference pairs": "#5fb37a",
}

# (stage title, loss / what it does, [(data kind, how it is shown to the model)])
PIPELINES: dict[str, list[tuple[str, str, list[tuple[str, str]]]]] = {
    "traditional": [
        ("CPT", "next-token CE", [("domain documents", "plain text")]),
        ("SFT", "assistant tokens only", [("general instructions", "all,\nchat template")]),
        ("DPO", "sigmoid loss", [("general preference pairs", "all,\nchat template")]),
    ],
    "Mix-CPT": [
        ("Stage 1: knowledge-mixture CPT on D_MIX",
         "(1 − λ)·CE + λ·L_LSSD\nteacher: the frozen original model",
         [("domain documents", "plain text"), ("general instructions", "flattened:\nno chat template"),
          ("general preference pairs", "prompt + chosen,\nflattened")]),
        ("Stage 2: format alignment", "SFT, then DPO\n(a few easy general samples)",
         [("general instructions", "N easiest,\nchat template"),
          ("general preference pairs", "N easiest,\nchat template")]),
    ],
}


def _save(fig, path):
    fig.tight_layout()
    if path is not None:
        with atomic_file(path) as tmp:  # never half an image
            fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    return fig


def _box(ax, x, y, w, h, text, face, edge="#333333", size=9, weight="normal", alpha=1.0):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=face, ec=edge,
                                lw=1.2, alpha=alpha))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight, wrap=True)


def _arrow(ax, x0, y0, x1, y1, colour="#333333", style="-|>", rad=0.0):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle=style, mutation_scale=14, color=colour, lw=1.4,
                                 connectionstyle=f"arc3,rad={rad}"))


def draw_pipelines(path: str | Path | None = None):
    """Traditional vs Mix-CPT: the stages of each (boxes, left to right) and the data each stage sees (coloured
    chips under it). Returns the figure; saves it to ``path`` if given."""
    fig, ax = plt.subplots(figsize=(13, 5.4))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 5.6)
    ax.axis("off")
    rows = {"traditional": 3.6, "Mix-CPT": 0.75}
    gap, span = 0.35, 9.4
    for name, y in rows.items():
        stages = PIPELINES[name]
        ax.text(0.1, y + 1.4, name, fontsize=13, weight="bold")
        _box(ax, 0.1, y + 0.3, 1.4, 0.9, "general LLM\n(base or chat)", "#eeeeee", size=9)
        chips = sum(len(d) for _, _, d in stages)
        x = 1.85
        _arrow(ax, 1.5, y + 0.75, x, y + 0.75)
        for i, (title, loss, data) in enumerate(stages):
            width = (span - gap * (len(stages) - 1)) * len(data) / chips
            _box(ax, x, y + 0.3, width, 0.9, f"{title}\n{loss}", "#ffffff", size=8.5, weight="bold")
            chip_w = (width - 0.08 * (len(data) - 1)) / len(data)
            for j, (kind, how) in enumerate(data):
                _box(ax, x + j * (chip_w + 0.08), y - 0.5, chip_w, 0.62, f"{kind}\n{how}", DATA_COLOURS[kind],
                     size=7.5, alpha=0.85)
            x += width + gap
            if i < len(stages) - 1:
                _arrow(ax, x - gap, y + 0.75, x, y + 0.75)
        _arrow(ax, x - gap, y + 0.75, 11.6, y + 0.75)
        _box(ax, 11.6, y + 0.3, 1.3, 0.9, "domain-\nadapted\nchat model", "#eeeeee", size=9)
    ax.text(0.1, -0.05, "Chips: the data a stage trains on. Only the domain documents are domain-specific; every "
            "instruction and preference pair is general.\nStage 1 sees them without the chat template (plain text); "
            "stage 2 teaches the template on a few samples chosen by their perplexity under the stage-1 model.",
            fontsize=8.5, color="#444444", va="top")
    return _save(fig, path)


# A 6-token example: at "... was born in" the teacher is sure of a wrong city; the label is another city.
SWAP_TOKENS = ["Amberfall", "Brisk", "Corvana", "Umberlee", "the", "1960"]
SWAP_LOGITS = [4.0, 2.6, 1.8, 1.0, 0.2, -0.6]
SWAP_LABEL = 3  # "Umberlee": the true next token, 4th most likely under the teacher


def swap_example(logits=SWAP_LOGITS, label: int = SWAP_LABEL, tau: float = 1.0) -> dict:
    """The numbers the swap diagram draws: teacher logits z, swapped z~ (by the loss's own function) and both
    softmaxes at temperature ``tau``."""
    import torch

    from .losses import swap_top1_with_label

    z = torch.tensor([logits], dtype=torch.float64)
    z_swapped = swap_top1_with_label(z, torch.tensor([label]))
    return {"z": z[0].tolist(), "z_swapped": z_swapped[0].tolist(),
            "p": torch.softmax(z[0] / tau, -1).tolist(), "q": torch.softmax(z_swapped[0] / tau, -1).tolist(),
            "top1": int(z.argmax()), "label": label}


def draw_swap(path: str | Path | None = None, tokens=SWAP_TOKENS, logits=SWAP_LOGITS, label: int = SWAP_LABEL):
    """Teacher logits before and after the swap (top row) and the distributions they give (bottom row). The top-1
    and the label exchange their logits; every other token keeps its own. Returns the figure."""
    ex = swap_example(logits, label)
    colours = ["#c0c0c0"] * len(tokens)
    colours[ex["top1"]], colours[label] = "#d9534f", "#2e7d32"
    fig, axes = plt.subplots(2, 2, figsize=(10, 5.4), sharex=True)
    panels = [("z", "teacher logits z (frozen original model)"), ("z_swapped", "swapped logits z~"),
              ("p", "softmax(z): the teacher's guess"), ("q", "q = softmax(z~): the LSSD target")]
    for ax, (key, title) in zip(axes.flat, panels):
        ax.bar(range(len(tokens)), ex[key], color=colours, edgecolor="#333333")
        ax.set_title(title, fontsize=10)
        ax.axhline(0, color="#333333", lw=0.6)
        for i, v in enumerate(ex[key]):
            ax.text(i, v + (0.05 if v >= 0 else -0.05) * (1 if key.startswith("z") else 0.4), f"{v:.2f}",
                    ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    for ax in axes[1]:
        ax.set_xticks(range(len(tokens)), tokens, rotation=20, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes[0]:
        ax.set_ylim(min(logits) - 0.8, max(logits) + 0.9)
    a = axes[0, 1]
    a.annotate("", xy=(label, ex["z_swapped"][label] + 0.45), xytext=(ex["top1"], ex["z_swapped"][ex["top1"]] + 0.45),
               arrowprops={"arrowstyle": "<|-|>", "connectionstyle": "arc3,rad=-0.35", "color": "#333333"})
    a.text((label + ex["top1"]) / 2, max(logits) + 0.45, "swap", ha="center", fontsize=9)
    fig.suptitle(f"The logit swap at one position: label = {tokens[label]!r} (green), teacher's top-1 = "
                 f"{tokens[ex['top1']]!r} (red); grey tokens keep their logits", fontsize=10)
    return _save(fig, path)


def main(figures: str | Path = Path(__file__).resolve().parent.parent / "figures") -> list[Path]:
    """Write both diagrams into ``figures`` and return their paths."""
    figures = Path(figures)
    out = [figures / "pipelines.png", figures / "swap_diagram.png"]
    for draw, path in zip([draw_pipelines, draw_swap], out):
        plt.close(draw(path))
    return out


if __name__ == "__main__":
    for p in main():
        print(p)
