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


# -- the scale comparison: the same question at three model sizes ---------------------------------------------------
# profile -> (label, the folder of its results, the suffix of the grid that holds its headline comparison: for tiny
# the full grid, whose main arms ran 5 seeds)
SCALE_PROFILES = {
    "tiny": ("tiny (synthetic base)", "figures", "_full"),
    "small": ("small (synthetic base)", "figures/small", ""),
    "smollm2": ("SmolLM2-135M-Instruct", "figures/smollm2", ""),
}
SCALE_COLUMNS = ("profile", "label", "n_parameters", "n_seeds", "metric", "n_questions", "mixcpt", "traditional",
                 "diff", "lo", "hi", "mdd", "thin", "boot_lo", "boot_hi", "mixcpt_wins")
SCALE_PROBE_COLUMNS = ("profile", "arm", "qa_set", "stored", "extractable", "said")


def _n_parameters(root: Path, profile: str) -> int | None:
    """The start model's parameter count: from the shipped base checkpoint's info, or SmolLM2's known size."""
    info = root / "checkpoints" / f"base-{profile}" / "mixcpt_base.json"
    if info.exists():
        return json.loads(info.read_text(encoding="utf-8"))["n_parameters"]
    return 134_515_008 if profile == "smollm2" else None  # SmolLM2-135M-Instruct, tied embeddings


def scale_tables(root: str | Path = ".") -> tuple[list[dict], list[dict]]:
    """The scale comparison from each profile's committed results (``comparisons*.csv``, ``probes*.csv``):

    * rows of :data:`SCALE_COLUMNS`: Mix-CPT − traditional on domain and general QA (chat format, the arms' final
      models) with the 95% interval and minimum detectable difference of :func:`mixcpt_core.stats.paired_interval`
      (and the earlier bootstrap's interval), per profile that has results;
    * rows of :data:`SCALE_PROBE_COLUMNS`: stored / extractable / said after stage 2 for both arms, mean over seeds.

    A profile without results yet is left out."""
    import pandas as pd

    root = Path(root)
    diffs, probes = [], []
    for profile, (label, folder, suffix) in SCALE_PROFILES.items():
        comp, prob = root / folder / f"comparisons{suffix}.csv", root / folder / f"probes{suffix}.csv"
        if not comp.exists() or not prob.exists():
            continue
        c = pd.read_csv(comp)
        c = c[(c["a"] == "mixcpt") & (c["b"] == "traditional") & (c["start"] == "base")]
        for metric in ("domain_qa_acc", "general_qa_acc"):
            r = c[c["metric"] == metric]
            if r.empty:
                continue
            r = r.iloc[0]
            diffs.append({"profile": profile, "label": label, "n_parameters": _n_parameters(root, profile),
                          "n_seeds": int(r["n_seeds"]), "metric": metric, "n_questions": int(r["n_questions"]),
                          "mixcpt": r["a_mean"], "traditional": r["b_mean"], "diff": r["diff"], "lo": r["lo"],
                          "hi": r["hi"], "mdd": r["mdd"], "thin": int(r["thin"]), "boot_lo": r["boot_lo"],
                          "boot_hi": r["boot_hi"], "mixcpt_wins": int(r["a_wins"])})
        p = pd.read_csv(prob)
        p = p[(p["point"] == "stage2") & (p["start"] == "base") & p["arm"].isin(["traditional", "mixcpt"])]
        for (arm, qa_set), g in p.groupby(["arm", "qa_set"], sort=False):
            probes.append({"profile": profile, "arm": arm, "qa_set": qa_set,
                           **{level: g[level].mean() for level in ("stored", "extractable", "said")}})
    return diffs, probes


def format_scale_table(diffs: list[dict], probes: list[dict]) -> str:
    """Markdown: one row per profile with both differences (thin evidence flagged) and the domain probes of both
    arms after stage 2."""
    from .stats import interval_text

    lines = ["| profile | parameters | seeds | domain QA: Mix-CPT − traditional [95% interval] | general QA: Mix-CPT − "
             "traditional [95% interval] | domain facts after stage 2, stored / extractable / said: traditional | "
             "Mix-CPT |", "|---|---|---|---|---|---|---|"]
    for profile in dict.fromkeys(d["profile"] for d in diffs):
        by = {d["metric"]: d for d in diffs if d["profile"] == profile}
        cells = []
        for metric in ("domain_qa_acc", "general_qa_acc"):
            d = by.get(metric)
            cells.append(f"{interval_text(d)} ({d['mixcpt']:.3f} vs {d['traditional']:.3f})" if d else "—")
        for arm in ("traditional", "mixcpt"):
            p = next((p for p in probes if p["profile"] == profile and p["arm"] == arm and p["qa_set"] == "domain"), None)
            cells.append(" / ".join(f"{p[k]:.3f}" for k in ("stored", "extractable", "said")) if p else "—")
        first = next(iter(by.values()))
        n = f"{first['n_parameters'] / 1e6:.1f}M" if first["n_parameters"] else "?"
        lines.append(f"| {first['label']} | {n} | {first['n_seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_rows(root: str | Path = ".") -> list[dict]:
    """Per profile with an ablation grid (``--full``), each ablation question of the reproduction (Mix-CPT − the
    pipeline without one of its parts: LSSD, the swap, the mixture, the selection, stage 2) on domain and general QA,
    base start, with the 95% interval: rows of the profile's ``comparisons_full.csv``, questions in the reproduction's
    order, profiles smallest first. Only the questions a profile's grid ran appear."""
    import pandas as pd

    from .reproduce import QUESTIONS

    grids = {profile: (label, pd.read_csv(path)) for profile, (label, folder, _) in SCALE_PROFILES.items()
             if (path := Path(root) / folder / "comparisons_full.csv").exists()}
    rows = []
    for question, a, b, _ in QUESTIONS[1:]:  # the first is the main comparison (the scale table)
        for profile, (label, comparisons) in grids.items():
            c = comparisons[(comparisons["start"] == "base") & (comparisons["a"] == a) & (comparisons["b"] == b)]
            for metric in ("domain_qa_acc", "general_qa_acc"):
                r = c[c["metric"] == metric]
                if not r.empty:
                    r = r.iloc[0]
                    rows.append({"question": question, "b": b, "profile": profile, "label": label, "metric": metric,
                                 "n_seeds": int(r["n_seeds"]),
                                 **{k: float(r[k]) for k in ("a_mean", "b_mean", "diff", "lo", "hi", "mdd")}})
    return rows


ABLATED_PART = {"no_lssd": "LSSD", "self_kd": "the swap", "no_mix": "the mixture",
                "random_selection": "easy-sample selection", "no_stage2": "stage 2"}  # what each ablated arm removes


def format_ablation_table(rows: list[dict]) -> str:
    """One line per (question, profile): Mix-CPT − the pipeline without one part (:data:`ABLATED_PART`) on domain
    and general QA, 95% intervals; a difference whose interval excludes 0 is in bold, unless the evidence is thin
    (fewer than 3 seeds: flagged in the seeds column, never bold; :func:`mixcpt_core.stats.read_difference`)."""
    from .stats import interval_text, read_difference, thin_flag

    def cell(r):
        if r is None:
            return ""
        reading = read_difference(r["lo"], r["hi"], r["n_seeds"])
        text = interval_text(r, flag=False)  # the seeds column flags thin evidence
        return f"**{text}**" if reading["resolved"] and not reading["thin"] else text

    lines = ["| part removed (arm) | rung | seeds | domain QA | general QA |", "|---|---|---|---|---|"]
    for question, profile in dict.fromkeys((r["question"], r["profile"]) for r in rows):
        by = {r["metric"]: r for r in rows if r["question"] == question and r["profile"] == profile}
        first = next(iter(by.values()))
        part = ABLATED_PART.get(first["b"], first["b"])
        seeds = f"{first['n_seeds']} (thin evidence)" if thin_flag(first["n_seeds"]) else str(first["n_seeds"])
        lines.append(f"| {part} ({first['b']}) | {profile} | {seeds} | {cell(by.get('domain_qa_acc'))} | "
                     f"{cell(by.get('general_qa_acc'))} |")
    return "\n".join(lines)


def plot_scale(diffs: list[dict], probes: list[dict], path: str | Path | None = None):
    """Left: Mix-CPT − traditional (domain and general QA, 95% intervals) per profile, smallest model first. Right:
    domain facts stored / extractable / said after stage 2, traditional (hatched) beside Mix-CPT, per profile."""
    import matplotlib.pyplot as plt

    from .plots import _finish

    profiles = list(dict.fromkeys(d["profile"] for d in diffs))
    labels = [next(d["label"] for d in diffs if d["profile"] == p) for p in profiles]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for k, (metric, name, color) in enumerate((("domain_qa_acc", "domain QA", "tab:blue"),
                                               ("general_qa_acc", "general QA (forgetting)", "tab:orange"))):
        xs, ys, lo, hi = [], [], [], []
        for i, p in enumerate(profiles):
            d = next((d for d in diffs if d["profile"] == p and d["metric"] == metric), None)
            if d:
                xs.append(i + (k - 0.5) * 0.2)
                ys.append(d["diff"])
                lo.append(d["diff"] - d["lo"])
                hi.append(d["hi"] - d["diff"])
        ax1.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=4, color=color, label=name)
    ax1.axhline(0, color="grey", lw=0.8)
    ax1.set_xlim(-0.6, len(profiles) - 0.4)
    ax1.set_xticks(range(len(profiles)), [f"{lab}\n{next(d['n_seeds'] for d in diffs if d['profile'] == p)} seed(s)"
                                          for p, lab in zip(profiles, labels)], fontsize=8)
    ax1.set_ylabel("Mix-CPT − traditional (accuracy)")
    ax1.set_title("Does Mix-CPT beat traditional? (95% intervals)")
    ax1.legend(fontsize=8)
    levels = ("stored", "extractable", "said")
    width = 0.13
    for i, p in enumerate(profiles):
        for j, level in enumerate(levels):
            for a, arm in enumerate(("traditional", "mixcpt")):
                r = next((r for r in probes if r["profile"] == p and r["arm"] == arm and r["qa_set"] == "domain"), None)
                if r is None:
                    continue
                ax2.bar(i + (2 * j + a - 2.5) * width, r[level], width, color=f"C{j}",
                        hatch="//" if arm == "traditional" else None, edgecolor="white",
                        label=f"{level} ({arm})" if i == 0 else None)
    ax2.set_xticks(range(len(profiles)), labels, fontsize=8)
    ax2.set_xlim(-0.6, len(profiles) - 0.4)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("domain facts after stage 2")
    ax2.set_title("Stored / extractable / said (hatched: traditional)")
    ax2.legend(fontsize=7, ncol=3)
    return _finish(fig, path)


SCALE_BEGIN = "<!-- scale:begin (rendered by `mixcpt scale` from figures/*/comparisons*.csv; do not edit by hand) -->"
SCALE_END = "<!-- scale:end -->"
# profile -> the commands that make its results, as recorded in the wall-time files (relative to the profile folder)
PROFILE_COMMANDS = {
    "tiny": ("mixcpt reproduce --profile tiny", "mixcpt search configs/search-stage2-tiny.yaml",
             "mixcpt search configs/search-stage2-tiny-staged.yaml", "mixcpt reproduce --profile tiny --full"),
    "small": ("mixcpt search configs/search-stage2-small.yaml", "mixcpt reproduce --profile small",
              "mixcpt reproduce --profile small --full"),
    "smollm2": ("mixcpt reproduce --profile smollm2 --protocol fixed", "mixcpt search configs/smollm2/search-stage2.yaml",
                "mixcpt reproduce --profile smollm2 --full --protocol validated fixed",
                # seeds 1 and 2 of the main arms on the CPU (seed 0 is the cached run of the command above)
                "mixcpt reproduce --profile smollm2 --seeds 0 1 2"),
}


def verdict(d: dict) -> str:
    """A difference's reading from its 95% interval (:func:`mixcpt_core.stats.read_difference`): a win or a loss
    when the interval excludes 0, with the thin-evidence flag when fewer than 3 seeds ran."""
    from .stats import read_difference

    r = read_difference(d["lo"], d["hi"], int(d["n_seeds"]))
    words = {"higher": "Mix-CPT wins", "lower": "Mix-CPT loses"}.get(r["verdict"], r["verdict"])
    return f"{words} {r['flag']}" if r["thin"] else words


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n > 1 else ''}"


def _duration(seconds: float) -> str:
    m = round(seconds) // 60
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min {round(seconds) % 60:02d} s"


def profile_wall_times(root: str | Path = ".") -> list[dict]:
    """Per profile with results: the measured wall time of the commands that made them (``wall_times.json`` of its
    folder, recorded by the commands) and, for a profile with a base model pre-trained here, that pre-training's
    (``checkpoints/base-<profile>/mixcpt_base.json``)."""
    root = Path(root)
    rows = []
    for profile, (label, folder, _) in SCALE_PROFILES.items():
        times = root / folder / "wall_times.json"
        recorded = json.loads(times.read_text(encoding="utf-8")) if times.exists() else {}
        parts = [(c, recorded[c]) for c in PROFILE_COMMANDS[profile] if c in recorded]
        if not parts:
            continue
        info = root / "checkpoints" / f"base-{profile}" / "mixcpt_base.json"
        base = json.loads(info.read_text(encoding="utf-8"))["train_seconds"] if info.exists() else None
        rows.append({"profile": profile, "label": label, "commands": [c for c, _ in parts],
                     "seconds": sum(t["seconds"] for _, t in parts), "base_seconds": base,
                     "machine": parts[-1][1]["machine"], "date": parts[-1][1]["date"]})
    return rows


def scale_readme_block(root: str | Path = ".") -> str:
    """The README's scale block: the table, one line per profile with the verdict on both questions, and the
    measured wall time of every profile."""
    root = Path(root)
    diffs, probes = scale_tables(root)
    lines = [format_scale_table(diffs, probes), ""]
    for profile in dict.fromkeys(d["profile"] for d in diffs):
        by = {d["metric"]: d for d in diffs if d["profile"] == profile}
        said = " and ".join(f"{name}: {verdict(by[m])}" for m, name in (("domain_qa_acc", "domain QA"),
                                                                           ("general_qa_acc", "general QA")) if m in by)
        first = next(iter(by.values()))
        p = {r["arm"]: r for r in probes if r["profile"] == profile and r["qa_set"] == "domain"}
        probe = (f" After stage 2, domain facts stored: Mix-CPT {p['mixcpt']['stored']:.3f} vs traditional "
                 f"{p['traditional']['stored']:.3f}; extractable {p['mixcpt']['extractable']:.3f} vs "
                 f"{p['traditional']['extractable']:.3f}; said {p['mixcpt']['said']:.3f} vs "
                 f"{p['traditional']['said']:.3f}." if {"mixcpt", "traditional"} <= set(p) else "")
        lines.append(f"- **{first['label']}** ({_seeds(first['n_seeds'])}, {first['n_questions']} domain test "
                     f"questions): {said}.{probe}")
    ablations = ablation_rows(root)
    if ablations:
        lines += ["", "Ablations (`--full`): Mix-CPT − the pipeline without one part; bold: the 95% interval "
                  "excludes 0.", "", format_ablation_table(ablations)]
    times = profile_wall_times(root)
    if times:
        lines += ["", "| profile | wall time of its results | commands | base pre-training | measured |",
                  "|---|---|---|---|---|"]
        for t in times:
            base = _duration(t["base_seconds"]) if t["base_seconds"] else "none (a released model)"
            lines.append(f"| {t['label']} | {_duration(t['seconds'])} | "
                         f"{', '.join(f'`{c}`' for c in t['commands'])} | {base} | {t['date']}, {t['machine']} |")
    return "\n".join(lines)


def write_scale(root: str | Path = ".") -> list[str]:
    """``figures/scale.csv`` (:data:`SCALE_COLUMNS`), ``figures/scale_probes.csv``, ``figures/scale.md`` and
    ``figures/scale.png`` from the committed results of every profile (:func:`scale_tables`). Returns the names."""
    from .atomic import write_text_atomic
    from .reproduce import write_csv

    root = Path(root)
    diffs, probes = scale_tables(root)
    if not diffs:
        raise FileNotFoundError("no profile has results yet: run `mixcpt reproduce --profile tiny` first")
    fig_dir = root / "figures"
    write_csv(diffs, SCALE_COLUMNS, fig_dir / "scale.csv")
    write_csv(probes, SCALE_PROBE_COLUMNS, fig_dir / "scale_probes.csv")
    write_text_atomic(fig_dir / "scale.md", format_scale_table(diffs, probes) + "\n")
    plot_scale(diffs, probes, fig_dir / "scale.png")
    import matplotlib.pyplot as plt

    plt.close("all")
    names = ["scale.csv", "scale_probes.csv", "scale.md", "scale.png"]
    readme = root / "README.md"
    if readme.exists() and SCALE_BEGIN in readme.read_text(encoding="utf-8"):
        old = readme.read_text(encoding="utf-8")
        new = replace_scale_block(old, scale_readme_block(root))
        if new != old:
            write_text_atomic(readme, new)
            names.append("../README.md")
    names += [f"../{n}" for n in render_smollm2_cpu(root)]
    return names


# docs/scaling.md's blocks rendered from figures/smollm2_cpu.json (written by notebook 05's full run)
SMOLLM2_CPU_JSON = "figures/smollm2_cpu.json"
SMOLLM2_CPU_BLOCKS = {
    "smollm2-cpu": ("<!-- smollm2-cpu:begin (rendered by `mixcpt scale` from figures/smollm2_cpu.json; do not edit by "
                    "hand) -->", "<!-- smollm2-cpu:end -->"),
    "smollm2-conversion": ("<!-- smollm2-conversion:begin (rendered by `mixcpt scale` from figures/smollm2_cpu.json; "
                           "do not edit by hand) -->", "<!-- smollm2-conversion:end -->"),
}
# the rows of the notebook's summary, as the doc names them
SMOLLM2_CPU_ROWS = {"before": ("before", None),
                    "LoRA, adapter-disabled teacher": ("LoRA steps, teacher = adapter disabled "
                                                       "(`configs/smollm2-cpt.yaml`)", "adapter_disabled"),
                    "LoRA, cached teacher": ("LoRA steps, cached top-64 teacher (`configs/smollm2-cached-cpt.yaml`)",
                                             "cached")}


def step_seconds(seconds: list[float]) -> float:
    """Seconds per step as notebook 05 reports them: the mean of every step after the first."""
    return sum(seconds[1:]) / max(1, len(seconds) - 1)


def smollm2_cpu_blocks(data: dict) -> dict[str, str]:
    """docs/scaling.md's notebook-05 table and its reading, and the conversion's timing, from the summary notebook 05
    writes (``figures/smollm2_cpu.json``): every number of the two blocks is read or computed here."""
    import textwrap

    steps, tokens = data["steps"], data["tokens_per_step"]
    per_step = {k: step_seconds(v) for k, v in data["seconds_per_step"].items()}
    lines = ["| | domain QA, plain (exact) | domain QA, chat (contains) | real-world QA, chat (contains) | replies "
             "ending with `<|im_end|>` | s/step | tokens/s |", "|---|---|---|---|---|---|---|"]
    for key, m in data["metrics"].items():
        label, timing = SMOLLM2_CPU_ROWS.get(key, (key, None))
        label = label if timing is None else f"{steps} {label}"
        cells = [f"{m[c]:.3f}" for c in ("domain_plain_exact", "domain_chat_contains", "general_chat_contains",
                                         "format_compliance")]
        rate = ["", ""] if timing is None else [f"{per_step[timing]:.2f}", f"{tokens / per_step[timing]:.0f}"]
        lines.append(f"| {label} | " + " | ".join(cells + rate) + " |")
    n = len(GENERAL_QA)
    before = round(data["metrics"]["before"]["general_chat_contains"] * n)
    after = sorted({round(m["general_chat_contains"] * n) for k, m in data["metrics"].items() if k != "before"})
    saved = 1 - per_step["cached"] / per_step["adapter_disabled"]
    lines += ["", textwrap.fill(f"A step is {tokens} tokens; s/step is the mean of steps 2–{steps} (StepTimer callback: forward, "
              f"teacher, backward, update), and tokens/s is {tokens} over it. The cached teacher saves the teacher "
              f"forward ({saved:.0%} of a step) after a one-off pass over D_MIX: "
              f"{data['teacher_stats_seconds']:.1f} s. The {steps} steps ({steps * tokens:,} tokens) measure the "
              f"cost, not the effect: the model answered {before} of the {n} real-world questions before and "
              f"{' or '.join(map(str, after))} after the runs (one seed, {n} questions: an observation, not a "
              "forgetting measurement).", width=118, break_long_words=False, break_on_hyphens=False)]
    c = data["conversion"]
    conversion = ["| step | wall time |", "|---|---|",
                  f"| conversion: GGUF load + de-quantisation ({c['gguf_load_seconds']:.1f} s) + save "
                  f"({c['save_seconds']:.1f} s), {c['parameters']:,} parameters | "
                  f"{c['gguf_load_seconds'] + c['save_seconds']:.1f} s |"]
    return {"smollm2-cpu": "\n".join(lines), "smollm2-conversion": "\n".join(conversion)}


def render_smollm2_cpu(root: str | Path = ".") -> list[str]:
    """Re-render the blocks of ``docs/scaling.md`` from ``figures/smollm2_cpu.json``; returns ``["docs/scaling.md"]``
    if it changed (nothing when either file is missing)."""
    from .atomic import write_text_atomic
    from .runtimes import replace_block

    root = Path(root)
    page, source = root / "docs" / "scaling.md", root / SMOLLM2_CPU_JSON
    if not page.exists() or not source.exists():
        return []
    old = page.read_text(encoding="utf-8")
    new = old
    for name, text in smollm2_cpu_blocks(json.loads(source.read_text(encoding="utf-8"))).items():
        begin, end = SMOLLM2_CPU_BLOCKS[name]
        if begin in new:
            new = replace_block(new, begin, end, text, str(page))
    if new == old:
        return []
    write_text_atomic(page, new)
    return ["docs/scaling.md"]


def replace_scale_block(text: str, block: str) -> str:
    """``text`` with the part between :data:`SCALE_BEGIN` and :data:`SCALE_END` replaced by ``block``."""
    if text.count(SCALE_BEGIN) != 1 or text.count(SCALE_END) != 1:
        raise ValueError(f"README.md: expected one '{SCALE_BEGIN}' line followed by one '{SCALE_END}' line")
    head, rest = text.split(SCALE_BEGIN, 1)
    return f"{head}{SCALE_BEGIN}\n{block.strip()}\n{SCALE_END}{rest.split(SCALE_END, 1)[1]}"
