"""The main job, on the CPU profile: world -> tokenizer -> base model -> the compared pipelines -> ``figures/``.

:func:`reproduce_base` rebuilds the world and tokenizer and evaluates the base model every pipeline starts from;
:func:`reproduce` runs the arms of :class:`~mixcpt_core.pipelines.ReproduceConfig` for every seed (stages cached in
``run_dir``, see :mod:`mixcpt_core.pipelines`) and writes ``results.csv`` (one row per arm x start x seed of the main
grid), ``results.md`` (mean ± std over seeds), ``stage1_curves.csv``, ``generations.json`` and the figures; with
``full`` the same files with the suffix ``_full`` for the whole grid (main + ablations), and with ``sweep``
``sweep.csv`` and ``sweep.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path

from .atomic import write_text_atomic
from .evaluation import METRIC_COLUMNS, PLAIN_COLUMNS, format_base_table
from .plots import plot_base_training
from .tokenizer import train_tokenizer
from .training import BasePretrainConfig, evaluate_base, load_base_checkpoint, pretrain_base
from .world import generate_world, write_world


def reproduce_base(cfg: BasePretrainConfig, shipped: Path, figures: Path, run_dir: Path, retrain: bool = False) -> dict:
    """Regenerate the world and tokenizer, take the base model (the shipped checkpoint, checked against ``cfg``'s
    cache key, or retrained with ``retrain``), evaluate it and write figures and tables. Returns the metrics."""
    t0 = time.time()
    world = generate_world(cfg.world)
    write_world(world, run_dir / "world")
    print(f"[1/4] world {cfg.world.fingerprint()}: {len(world.entities)} people, {len(world.documents)} documents, "
          f"{len(world.qa)} QA items -> {run_dir / 'world'}")

    tokenizer = train_tokenizer(world.all_texts(), vocab_size=cfg.vocab_size)
    print(f"[2/4] tokenizer: byte-level BPE, {len(tokenizer)} tokens")

    if retrain:
        base_dir = pretrain_base(dataclasses.replace(cfg, output_dir=str(run_dir / "base")))
    else:
        base_dir = shipped
    model, base_tok, info = load_base_checkpoint(base_dir, cfg)
    if base_tok.get_vocab() != tokenizer.get_vocab():
        raise RuntimeError(f"{base_dir}: its tokenizer differs from the one trained on this world just now")
    print(f"[3/4] base model: {base_dir} ({info['n_parameters']:,} parameters, trained {info['train_seconds']:.0f} s "
          f"on {info['train_tokens']:,} tokens{'' if retrain else ', shipped checkpoint'})")

    metrics = evaluate_base(model, tokenizer, world)
    figures.mkdir(parents=True, exist_ok=True)
    write_text_atomic(figures / "base_metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    plot_base_training(info["history"], figures / "base_training.png")
    table = format_base_table(metrics)
    write_text_atomic(figures / "base_model.md", table + "\n")
    print(f"[4/4] evaluation -> {figures}/base_metrics.json, base_model.md, base_training.png\n")
    print(table)
    print(f"\ndone in {time.time() - t0:.0f} s")
    return metrics


# -- the compared pipelines ---------------------------------------------------------------------------------------------
RESULT_COLUMNS = ("arm", "start", "seed", *METRIC_COLUMNS, "train_seconds", *PLAIN_COLUMNS)
SWEEP_COLUMNS = ("param", "value", "arm", "start", "seed", *METRIC_COLUMNS, "train_seconds", *PLAIN_COLUMNS)
METRIC_LABELS = {
    "domain_qa_acc": "domain QA (chat)",
    "general_qa_acc": "held-out general QA (chat)",
    "format_rate": "format compliance",
    "domain_ppl": "domain doc. perplexity",
    "general_ppl": "general doc. perplexity",
    "plain_domain_qa_acc": "domain QA (plain)",
    "plain_general_qa_acc": "held-out general QA (plain)",
}


def grid_pairs(cfg, full: bool) -> list[tuple[str, str]]:
    """(start, arm) pairs in run order: ``cfg.main`` then, with ``full``, the ``cfg.full`` pairs not already in it."""
    pairs = [(s, a) for s, arms in cfg.main.items() for a in arms]
    if full:
        pairs += [(s, a) for s, arms in cfg.full.items() for a in arms if (s, a) not in pairs]
    return pairs


def write_csv(rows: list[dict], columns, path: Path) -> None:
    """``rows`` as CSV with exactly ``columns`` (floats with 6 decimals), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


def summarize(results, columns=METRIC_COLUMNS + ("train_seconds",)):
    """Mean and sample standard deviation (ddof = 1; 0 for a single seed) over seeds per (start, arm), in the order
    of first appearance. ``results``: a DataFrame with the :data:`RESULT_COLUMNS`. Returns a DataFrame with
    ``start, arm, n_seeds`` and ``<metric>_mean`` / ``<metric>_std``."""
    import pandas as pd

    out = []
    for (start, arm), g in results.groupby(["start", "arm"], sort=False):
        row = {"start": start, "arm": arm, "n_seeds": len(g)}
        for c in columns:
            row[f"{c}_mean"] = g[c].mean()
            row[f"{c}_std"] = g[c].std(ddof=1) if len(g) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def format_results_table(summary, columns=METRIC_COLUMNS + ("train_seconds",)) -> str:
    """Markdown table of :func:`summarize` (mean ± std over seeds), one row per (start, arm)."""
    head = ["start", "arm", "seeds"] + [METRIC_LABELS.get(c, "train s") for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [r["start"], r["arm"], str(r["n_seeds"])]
        for c in columns:
            fmt = ".0f" if c == "train_seconds" else (".2f" if c.endswith("ppl") else ".3f")
            cells.append(f"{r[c + '_mean']:{fmt}} ± {r[c + '_std']:{fmt}}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The questions of the issue, each as (arm a, arm b, metrics): a paired comparison per start, seed by seed.
QUESTIONS = (
    ("Does Mix-CPT beat traditional?", "mixcpt", "traditional", ("domain_qa_acc", "general_qa_acc")),
    ("Does LSSD reduce forgetting?", "mixcpt", "no_lssd", ("general_qa_acc", "plain_general_qa_acc", "domain_qa_acc")),
    ("Does the swap matter (vs plain self-KD)?", "mixcpt", "self_kd", ("domain_qa_acc", "general_qa_acc")),
    ("Does the mixture matter?", "mixcpt", "no_mix", ("domain_qa_acc", "general_qa_acc")),
    ("Does selection beat random?", "mixcpt", "random_selection", ("domain_qa_acc", "general_qa_acc")),
    ("Is stage 2 needed?", "mixcpt", "no_stage2", ("domain_qa_acc", "general_qa_acc", "format_rate")),
)


def paired_differences(results, questions=QUESTIONS):
    """For each question and start where both arms ran with the same seeds: the per-seed difference a - b of each
    metric, its mean and sample standard deviation, and in how many seeds a > b. Returns a DataFrame."""
    import pandas as pd

    out = []
    for question, a, b, metrics in questions:
        for start in dict.fromkeys(results["start"]):
            ra = results[(results["arm"] == a) & (results["start"] == start)].set_index("seed")
            rb = results[(results["arm"] == b) & (results["start"] == start)].set_index("seed")
            seeds = sorted(set(ra.index) & set(rb.index))
            if not seeds:
                continue
            for m in metrics:
                d = ra.loc[seeds, m] - rb.loc[seeds, m]
                out.append({"question": question, "start": start, "a": a, "b": b, "metric": m, "n_seeds": len(seeds),
                            "a_mean": ra.loc[seeds, m].mean(), "b_mean": rb.loc[seeds, m].mean(),
                            "diff_mean": d.mean(), "diff_std": d.std(ddof=1) if len(seeds) > 1 else 0.0,
                            "a_wins": int((d > 0).sum())})
    return pd.DataFrame(out)


def format_differences_table(diffs) -> str:
    """Markdown table of :func:`paired_differences`."""
    lines = ["| question | start | metric | a | b | a − b (mean ± std) | seeds where a > b |", "|---|---|---|---|---|---|---|"]
    for _, r in diffs.iterrows():
        lines.append(f"| {r['question']} | {r['start']} | {METRIC_LABELS[r['metric']]} | {r['a']} {r['a_mean']:.3f} | "
                     f"{r['b']} {r['b_mean']:.3f} | {r['diff_mean']:+.3f} ± {r['diff_std']:.3f} | "
                     f"{r['a_wins']} of {r['n_seeds']} |")
    return "\n".join(lines)


def write_grid_outputs(rows: list[dict], curves: list[dict], examples: dict, figures: Path, suffix: str,
                       seeds: list[int]):
    """Write one grid's files to ``figures``: ``results<suffix>.csv`` (:data:`RESULT_COLUMNS`), ``results<suffix>.md``
    (the mean ± std tables and the paired differences), ``results<suffix>.png``, ``stage1_curves<suffix>.csv``,
    ``forgetting_curves<suffix>.png`` (if there is a stage 1) and ``generations<suffix>.json``. Returns the results as a
    DataFrame and the names of the files written."""
    import pandas as pd

    from .plots import plot_forgetting_curves, plot_results

    figures.mkdir(parents=True, exist_ok=True)
    write_csv(rows, RESULT_COLUMNS, figures / f"results{suffix}.csv")
    write_csv(curves, ("arm", "start", "seed", "step", "heldout_qa_acc", "domain_qa_acc"),
              figures / f"stage1_curves{suffix}.csv")
    write_text_atomic(figures / f"generations{suffix}.json", json.dumps(examples, indent=1) + "\n")
    results = pd.read_csv(figures / f"results{suffix}.csv")
    table = format_results_table(summarize(results))
    md = (f"{table}\n\nWhat the models know in the plain `Question:/Answer:` format of pre-training:\n\n"
          f"{format_results_table(summarize(results, PLAIN_COLUMNS), PLAIN_COLUMNS)}\n\nMean ± sample standard "
          f"deviation over seeds {seeds}; `train s` = wall time of the arm's own stages on this machine.\n")
    diffs = paired_differences(results)
    if len(diffs):
        md += f"\nPaired by seed (a − b):\n\n{format_differences_table(diffs)}\n"
    write_text_atomic(figures / f"results{suffix}.md", md)
    plot_results(results, figures / f"results{suffix}.png")
    names = [f"{n}{suffix}.{ext}" for n, ext in (("results", "csv"), ("results", "md"), ("results", "png"),
                                                  ("stage1_curves", "csv"), ("generations", "json"))]
    if curves:
        plot_forgetting_curves(pd.read_csv(figures / f"stage1_curves{suffix}.csv"),
                               figures / f"forgetting_curves{suffix}.png")
        names.append(f"forgetting_curves{suffix}.png")
    print(f"\n{table}")
    return results, names


def load_grid_outputs(figures: Path) -> dict:
    """The largest grid written to ``figures``: the ``_full`` files if ``mixcpt reproduce --full`` wrote them, else the
    main ones. Returns ``{"name", "results", "curves", "generations"}`` (DataFrames, and a dict of generations)."""
    import pandas as pd

    suffix = "_full" if (figures / "results_full.csv").exists() else ""
    curves = figures / f"stage1_curves{suffix}.csv"
    return {"name": f"results{suffix}.csv", "results": pd.read_csv(figures / f"results{suffix}.csv"),
            "curves": pd.read_csv(curves) if curves.exists() else None,
            "generations": json.loads((figures / f"generations{suffix}.json").read_text(encoding="utf-8"))}


def sweep_reference(results, arm: str = "traditional", start: str = "base") -> dict:
    """``{"<arm> (n seeds)": {metric: mean}}`` of an arm's chat-format QA in ``results``, for :func:`plot_sweep`'s
    reference lines (empty if the arm did not run)."""
    rows = results[(results["arm"] == arm) & (results["start"] == start)]
    if rows.empty:
        return {}
    return {f"{arm} ({len(rows)} seeds)": {m: rows[m].mean() for m in ("domain_qa_acc", "general_qa_acc")}}


def reproduce(cfg, root: Path, figures: Path, full: bool = False, sweep: bool = False) -> dict:
    """Run the grid (``cfg.main``, plus ``cfg.full`` with ``full``) for every seed, then the sweep with ``sweep``;
    write the tables and figures to ``figures``. Every stage is cached in ``cfg.run_dir`` (relative to ``root``):
    rerunning after an interruption continues where it stopped. Returns ``{"rows", "sweep_rows", "seconds"}``."""
    import pandas as pd

    from .pipelines import build_chat_start, load_arm, run_arm, sweep_variant
    from .plots import plot_sweep
    from .world import generate_world

    t0 = time.time()
    run_dir = root / cfg.run_dir
    world = generate_world(cfg.world)
    starts = {"base": root / cfg.base_model}
    pairs = grid_pairs(cfg, full)
    if any(s == "chat" for s, _ in pairs):
        print("[start] chat = base model + SFT on all general instructions", flush=True)
        starts["chat"] = build_chat_start(starts["base"], cfg.world, cfg.chat_sft, run_dir / "start-chat")
    arms = {a: load_arm(a, cfg.arms_dir, root, cfg.cpt_overrides, cfg.align_overrides) for _, a in pairs}

    rows, curves, examples = [], [], {}
    total = len(pairs) * len(cfg.seeds)
    for seed in cfg.seeds:
        for start, arm in pairs:
            t = time.time()
            r = run_arm(arms[arm], start, starts[start], seed, world, run_dir, root, cfg.examples if seed == 0 else 0)
            rows.append({"arm": arm, "start": start, "seed": seed, **{c: r["metrics"][c] for c in
                         METRIC_COLUMNS + PLAIN_COLUMNS}, "train_seconds": r["train_seconds"]})
            if r["stage1"]:
                curves += [{"arm": arm, "start": start, "seed": seed, "step": h["step"],
                            "heldout_qa_acc": h["heldout_qa_acc"], "domain_qa_acc": h["domain_qa_acc"]}
                           for h in r["stage1"]["history"] if "heldout_qa_acc" in h]
            if seed == cfg.seeds[0]:
                examples[f"{arm} / {start}"] = r["metrics"].get("examples", [])
            m = rows[-1]
            print(f"[{len(rows)}/{total}] {arm:>17} start={start} seed={seed}: domain QA {m['domain_qa_acc']:.3f}  "
                  f"general QA {m['general_qa_acc']:.3f}  format {m['format_rate']:.3f}  "
                  f"({time.time() - t:.0f} s, {(time.time() - t0) / 60:.1f} min so far)", flush=True)

    main_pairs = set(grid_pairs(cfg, full=False))
    is_main = [(r["start"], r["arm"]) in main_pairs for r in rows]
    results, written = write_grid_outputs([r for r, m in zip(rows, is_main) if m],
                                          [c for c in curves if (c["start"], c["arm"]) in main_pairs],
                                          {k: v for k, v in examples.items() if tuple(k.split(" / ")[::-1]) in main_pairs},
                                          figures, "", cfg.seeds)
    if full:
        results, names = write_grid_outputs(rows, curves, examples, figures, "_full", cfg.seeds)
        written += names

    sweep_rows = []
    if sweep and cfg.sweep:
        base = load_arm(cfg.sweep_arm, cfg.arms_dir, root, cfg.cpt_overrides, cfg.align_overrides)
        points = [(param, value, sweep_variant(base, param, value)) for param, vals in cfg.sweep.items()
                  for value in vals]  # every variant is built (and checked) before anything runs
        for seed in cfg.sweep_seeds:
            for i, (param, value, variant) in enumerate(points, 1):
                t = time.time()
                r = run_arm(variant, "base", starts["base"], seed, world, run_dir, root)
                sweep_rows.append({"param": param, "value": value, "arm": cfg.sweep_arm, "start": "base", "seed": seed,
                                   **{c: r["metrics"][c] for c in METRIC_COLUMNS + PLAIN_COLUMNS},
                                   "train_seconds": r["train_seconds"]})
                print(f"[sweep {i}/{len(points)}] {param}={value} seed={seed}: domain QA "
                      f"{r['metrics']['domain_qa_acc']:.3f}  general QA {r['metrics']['general_qa_acc']:.3f} "
                      f"({time.time() - t:.0f} s)", flush=True)
        write_csv(sweep_rows, SWEEP_COLUMNS, figures / "sweep.csv")
        plot_sweep(pd.read_csv(figures / "sweep.csv"), figures / "sweep.png", reference=sweep_reference(results))

    seconds = time.time() - t0
    written += ["sweep.csv", "sweep.png"] if sweep_rows else []
    print(f"\nwrote {', '.join(written)} to {figures}/ in {seconds / 60:.1f} min")
    return {"rows": rows, "sweep_rows": sweep_rows, "seconds": seconds}
