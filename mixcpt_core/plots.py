"""Figures. Each function draws on a new matplotlib figure, saves it when ``path`` is given and returns it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from transformers import TrainerCallback

from .atomic import atomic_file


def _finish(fig, path):
    """Lay the figure out, save it to ``path`` (creating its folder) when given, and return it."""
    fig.tight_layout()
    if path is not None:
        with atomic_file(path) as tmp:  # a killed run never leaves half an image
            fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    return fig


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
    return _finish(fig, path)


def plot_swap(view: dict, tokens: list[str], label: str, title: str = "", path: str | Path | None = None):
    """Bar chart of :func:`mixcpt_core.losses.swap_explained`: the teacher's distribution and the swapped target."""
    import numpy as np

    x = np.arange(len(tokens))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(x - 0.2, view["teacher"], 0.4, label="teacher (original model)")
    ax.bar(x + 0.2, view["swapped"], 0.4, label="swapped target")
    ax.set_xticks(x, [f"{t}\n(label)" if t == label else t for t in tokens], fontsize=8)
    # log scale: the teacher is often near-certain, and the small probabilities are the "dark knowledge" the swap keeps
    ax.set(ylabel="probability (log scale)", yscale="log", ylim=(1e-6, 2), title=title or "logit swap at one position")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_cpt_runs(histories: dict[str, list[dict]], path: str | Path | None = None):
    """Stage-1 runs side by side: training CE, probe KL to the original model (forgetting signal), held-out general
    QA (forgetting) and domain QA (learning) over steps. ``histories``: run name -> Trainer log history."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    panels = [("ce", "training CE"), ("probe_kl", "KL(original || model) on general text"),
              ("heldout_qa_acc", "held-out general QA (forgetting)"), ("domain_qa_acc", "domain QA (learning)")]
    for ax, (key, title) in zip(axes, panels):
        for name, hist in histories.items():
            rows = [r for r in hist if key in r]
            ax.plot([r["step"] for r in rows], [r[key] for r in rows], "-o" if "qa" in key else "-", ms=3, label=name)
        ax.set(title=title, xlabel="step")
        if "qa" in key:
            ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    return _finish(fig, path)


def plot_mix_composition(composition: dict, path: str | Path | None = None, compare: dict | None = None,
                         title: str = "D_MIX composition"):
    """Token shares of a mix (:func:`mixcpt_core.data.mix_and_pack`'s composition): requested vs achieved as stacked
    bars (left), plus any ``compare`` rows ``{label: {source: token share}}``; repeat factor per source (right)."""
    rows = composition["sources"]
    bars = {"requested": {r["name"]: r["requested_share"] for r in rows},
            "achieved (tokens)": {r["name"]: r["share"] for r in rows}, **(compare or {})}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 1.5 + 0.4 * len(bars)), width_ratios=(3, 1))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for y, (label, shares) in enumerate(reversed(bars.items())):
        left = 0.0
        for i, r in enumerate(rows):
            share = shares.get(r["name"], 0.0)
            ax1.barh(y, share, left=left, color=colors[i % len(colors)], label=r["name"] if y == 0 else None)
            if share > 0.06:
                ax1.text(left + share / 2, y, f"{share:.2f}", ha="center", va="center", fontsize=8, color="white")
            left += share
    ax1.set_yticks(range(len(bars)), list(reversed(bars)))
    ax1.set(xlim=(0, 1), xlabel="share of the packed tokens")
    ax1.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(rows), fontsize=8, frameon=False)
    ax2.barh(range(len(rows)), [r["repeat_factor"] for r in rows], color=colors[: len(rows)])
    ax2.set_yticks(range(len(rows)), [r["name"] for r in rows])
    ax2.axvline(1, color="gray", lw=0.8, ls="--")
    ax2.set(xlabel="repeat factor (x one pass)")
    fig.suptitle(title)
    return _finish(fig, path)


class LiveLossPlot(TrainerCallback):
    """A ``transformers.TrainerCallback`` that redraws the training curves in a notebook as training logs them.

    ``keys``: logged values to plot (e.g. ``("ce", "lssd", "probe_kl")``); redraws every ``every`` log events. In a
    plain terminal or a headless run it just renders the last state.
    """

    def __init__(self, keys=("ce", "lssd", "probe_kl"), every: int = 20, title: str = ""):
        self.keys, self.every, self.title = keys, every, title
        self.rows: list[dict] = []
        self._handle = None

    def _draw(self):
        from IPython.display import display

        fig, axes = plt.subplots(1, len(self.keys), figsize=(4 * len(self.keys), 2.8))
        for ax, key in zip(axes, self.keys):
            pts = [(r["step"], r[key]) for r in self.rows if key in r]
            if pts:
                ax.plot(*zip(*pts))
            ax.set(title=key, xlabel="step")
        fig.suptitle(self.title)
        fig.tight_layout()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and any(k in logs for k in self.keys):
            self.rows.append({"step": state.global_step, **logs})
            if len(self.rows) % self.every == 0:
                self._draw()

    def on_train_end(self, args, state, control, **kw):
        if self.rows:
            self._draw()


def plot_selection_scores(scores: list[float], selected: list[int], title: str = "", log: bool = True,
                          path: str | Path | None = None):
    """Histogram of stage-2 selection scores (e.g. response NLL under the stage-1 model) with the selected samples
    drawn on top in another colour. ``log``: bins on a log scale (NLLs span several decades)."""
    import numpy as np

    s = np.asarray(scores, dtype=float)
    sel = s[list(selected)]
    lo, hi = max(s.min(), 1e-8), s.max()
    bins = np.geomspace(lo, hi, 40) if log and hi > lo else 40
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(s, bins=bins, color="tab:gray", alpha=0.6, label=f"all ({len(s)})")
    ax.hist(sel, bins=bins, color="tab:orange", label=f"selected N = {len(sel)}")
    if log:
        ax.set_xscale("log")
    ax.set(xlabel="score (lower = easier)", ylabel="samples", title=title or "stage-2 selection scores")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_dpo_rewards(history: list[dict], path: str | Path | None = None, title: str = "DPO"):
    """DPO training curves from TRL's log history: loss, implicit rewards of chosen / rejected answers and their
    margin (β·Δ log-ratio, batch mean) over steps."""
    rows = [r for r in history if "rewards/margins" in r]
    steps = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.plot(steps, [r["loss"] for r in rows], color="tab:gray")
    ax1.axhline(0.6931, ls=":", color="k", lw=0.8)  # -log σ(0): the loss when policy == reference
    ax1.set(xlabel="step", ylabel="DPO loss", title="loss (dotted: log 2)")
    for key, label in (("rewards/chosen", "chosen reward"), ("rewards/rejected", "rejected reward"),
                       ("rewards/margins", "margin")):
        ax2.plot(steps, [r[key] for r in rows], label=label)
    ax2.axhline(0, color="k", lw=0.5)
    ax2.set(xlabel="step", ylabel="β · log π/π_ref", title="implicit rewards")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    return _finish(fig, path)


# -- the reproduction ---------------------------------------------------------------------------------------------------
RESULT_PANELS = (("domain_qa_acc", "domain QA (chat)\ntarget domain, higher is better"),
                 ("general_qa_acc", "held-out general QA (chat)\nforgetting, higher is better"),
                 ("format_rate", "format compliance\nhigher is better"),
                 ("domain_ppl", "domain doc. perplexity\nlower is better"),
                 ("general_ppl", "general doc. perplexity\nlower is better"))


def plot_results(results, path: str | Path | None = None, panels=RESULT_PANELS):
    """Grouped bars per metric: one bar per arm (x), one colour per start; height = mean over seeds, error bar =
    sample standard deviation, dots = the individual seeds. ``results``: a DataFrame of ``figures/results.csv``."""
    import numpy as np

    arms = list(dict.fromkeys(results["arm"]))
    starts = list(dict.fromkeys(results["start"]))
    width = 0.8 / len(starts)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.8))
    for ax, (metric, title) in zip(np.atleast_1d(axes), panels):
        for j, start in enumerate(starts):
            x0 = np.arange(len(arms)) - 0.4 + width * (j + 0.5)
            for xi, arm in zip(x0, arms):
                vals = results[(results["arm"] == arm) & (results["start"] == start)][metric].to_numpy()
                if len(vals) == 0:
                    continue
                ax.bar(xi, vals.mean(), width, yerr=vals.std(ddof=1) if len(vals) > 1 else 0, capsize=2,
                       color=f"C{j}", alpha=0.75, label=f"start: {start}" if xi == x0[0] else None)
                ax.plot([xi] * len(vals), vals, "k.", ms=3)
        ax.set_xticks(np.arange(len(arms)), arms, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        if metric.endswith("ppl"):
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 1.02)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    return _finish(fig, path)


PROBE_LEVELS = (("stored", "stored (likelihood choice)"), ("extractable", "extractable (plain QA)"),
                ("said", "said (chat QA)"))


def plot_probes(probes, path: str | Path | None = None, chance: dict | None = None, majority: dict | None = None):
    """Where the knowledge goes: for each (start, arm) that trains (columns) and each QA set (rows: domain facts,
    held-out general facts), the three knowledge levels at each point of the pipeline (start model, after stage 1,
    after stage 2) as grouped bars; height = mean over seeds, dots = seeds. ``probes``: ``figures/probes.csv``.
    ``chance``: ``{"domain": p, "general": p}``, the stored probe's chance level (1/K), drawn as a dotted line;
    ``majority``: the same for always answering the most common value of the attribute, a dashed line."""
    pairs = [k for k, g in probes.groupby(["start", "arm"], sort=False) if g["point"].nunique() > 1]
    fig, axes = plt.subplots(2, max(1, len(pairs)), figsize=(2.6 * max(1, len(pairs)) + 0.8, 5.6), squeeze=False,
                             sharey=True)
    width = 0.26
    for col, (start, arm) in enumerate(pairs):
        sub = probes[(probes["start"] == start) & (probes["arm"] == arm)]
        points = [p for p in ("start", "stage1", "stage2") if p in set(sub["point"])]
        for row, qa_set in enumerate(("domain", "general")):
            ax = axes[row, col]
            for j, (level, label) in enumerate(PROBE_LEVELS):
                for x, point in enumerate(points):
                    vals = sub[(sub["point"] == point) & (sub["qa_set"] == qa_set)][level].to_numpy()
                    xi = x + (j - 1) * width
                    ax.bar(xi, vals.mean(), width, color=f"C{j}", alpha=0.8,
                           label=label if (x == 0 and col == 0 and row == 0) else None)
                    ax.plot([xi] * len(vals), vals, "k.", ms=2)
            if chance:
                ax.axhline(chance[qa_set], color="C0", ls=":", lw=1)
            if majority:
                ax.axhline(majority[qa_set], color="0.3", ls="--", lw=0.8)
            ax.set_xticks(range(len(points)), [{"stage1": "stage 1", "stage2": "stage 2"}.get(p, p) for p in points],
                          fontsize=8)
            ax.set_ylim(0, 1.02)
            if row == 0:
                ax.set_title(f"{arm}\n(start: {start})", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{'domain facts' if qa_set == 'domain' else 'held-out general facts'}\naccuracy",
                              fontsize=9)
    fig.legend(loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 1.0), frameon=False)
    notes = [n for n, on in (("dotted: chance 1/K", chance), ("dashed: always the most common value", majority)) if on]
    fig.suptitle("Where the knowledge goes" + (f" ({'; '.join(notes)})" if notes else ""), fontsize=10, y=0.94)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return _finish(fig, path)


def plot_forgetting_curves(curves, path: str | Path | None = None):
    """Stage 1 over steps, plain-format QA: held-out general (forgetting) and domain (learning); one line per
    (arm, start), mean over seeds with a band of ± one standard deviation. ``curves``: ``figures/stage1_curves.csv``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, ((arm, start), g) in enumerate(curves.groupby(["arm", "start"], sort=False)):
        stats = g.groupby("step")[["heldout_qa_acc", "domain_qa_acc"]].agg(["mean", "std"]).fillna(0)
        for ax, key in zip(axes, ("heldout_qa_acc", "domain_qa_acc")):
            mean, std = stats[(key, "mean")], stats[(key, "std")]
            ax.plot(stats.index, mean, "-o", ms=3, color=f"C{i}", label=f"{arm} ({start})")
            ax.fill_between(stats.index, mean - std, mean + std, color=f"C{i}", alpha=0.15)
    axes[0].set(title="held-out general QA during stage 1 (forgetting)", xlabel="stage-1 step",
                ylabel="exact match, plain format", ylim=(0, 1))
    axes[1].set(title="domain QA during stage 1 (learning)", xlabel="stage-1 step", ylim=(0, 1))
    axes[0].legend(fontsize=8)
    return _finish(fig, path)


def plot_sweep(sweep, path: str | Path | None = None, reference: dict | None = None):
    """One panel per swept parameter (``param`` column): domain and held-out general QA after the whole pipeline,
    chat format (solid) and plain format (dashed), mean over seeds with ± one standard deviation as a band.
    ``sweep``: ``figures/sweep.csv``. ``reference``: ``{label: {"domain_qa_acc": x, "general_qa_acc": y}}`` drawn as
    dotted horizontal lines (e.g. the traditional pipeline's chat-format means)."""
    params = list(dict.fromkeys(sweep["param"]))
    ncols = min(2, len(params))
    nrows = -(-len(params) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(params):]:
        ax.set_visible(False)
    labels = {"cpt.lssd.lam": "LSSD weight λ (0 = CE only)", "mix.domain_share": "domain documents' token share in D_MIX",
              "align.sft.max_steps": "stage-2 SFT steps (64 samples, batch 8)",
              "align.sft.learning_rate": "stage-2 SFT learning rate",
              "align.selection.n_sft": "stage-2 SFT samples N (easiest first; 740 = all)"}
    for ax, param in zip(axes.flat, params):
        rows = sweep[sweep["param"] == param].groupby("value")
        g, sd = rows.mean(numeric_only=True), rows.std(ddof=1, numeric_only=True).fillna(0)
        for key, colour, name in (("domain_qa_acc", "C0", "domain QA"), ("general_qa_acc", "C1", "held-out general QA")):
            ax.plot(g.index, g[key], "-o", color=colour, label=f"{name} (chat)")
            ax.fill_between(g.index, g[key] - sd[key], g[key] + sd[key], color=colour, alpha=0.15)
            ax.plot(g.index, g["plain_" + key], "--", color=colour, alpha=0.6, label=f"{name} (plain)")
            for label, values in (reference or {}).items():
                ax.axhline(values[key], color=colour, ls=":", lw=1.2, label=f"{name}, {label}")
        ax.set(xlabel=labels.get(param, param), ylabel="exact match", ylim=(0, 1), title=f"sweep: {param}")
        if param.endswith(("learning_rate", "n_sft")):
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(list(g.index), [f"{v:g}" for v in g.index])
    axes[0][0].legend(fontsize=8)
    return _finish(fig, path)
