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
from .evaluation import LAYOUT_COLUMNS, LEVELS, METRIC_COLUMNS, PLAIN_COLUMNS, STORED_COLUMNS, format_base_table
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
RESULT_COLUMNS = ("arm", "start", "seed", *METRIC_COLUMNS, "train_seconds", *PLAIN_COLUMNS, *STORED_COLUMNS)
SWEEP_COLUMNS = ("param", "value", "arm", "start", "seed", *METRIC_COLUMNS, "train_seconds", *PLAIN_COLUMNS)
PROBE_COLUMNS = ("arm", "start", "seed", "point", "qa_set", "stored", "extractable", "said")
# lo, hi, se_seeds, se_questions, mdd: stats.paired_interval (NaN: a term that cannot be estimated); thin: fewer than
# stats.THIN_SEEDS seeds (0/1); boot_lo, boot_hi: the earlier percentile bootstrap (stats.paired_bootstrap)
COMPARISON_COLUMNS = ("question", "start", "metric", "a", "b", "n_seeds", "n_questions", "a_mean", "b_mean", "diff",
                      "lo", "hi", "se_seeds", "se_questions", "mdd", "thin", "boot_lo", "boot_hi", "a_wins")
POINTS = ("start", "stage1", "stage2")  # where the probes look: the start model, after stage 1, after stage 2
PROTOCOLS = ("validated", "fixed")
METRIC_LABELS = {
    "domain_qa_acc": "domain QA (chat)",
    "general_qa_acc": "held-out general QA (chat)",
    "format_rate": "format compliance",
    "domain_ppl": "domain doc. perplexity",
    "general_ppl": "general doc. perplexity",
    "plain_domain_qa_acc": "domain QA (plain)",
    "plain_general_qa_acc": "held-out general QA (plain)",
    "stored_domain_acc": "domain facts stored",
    "stored_general_acc": "held-out general facts stored",
    "stage1_layout_domain_qa_acc": "domain QA (stage-1 layout)",
    "stage1_layout_general_qa_acc": "held-out general QA (stage-1 layout)",
    "stored_general_acc_qa_layout": "held-out general stored (QA layout)",
}
# metric column -> the per-question hits behind it (evaluation.HIT_KEYS), for the paired intervals
METRIC_HITS = {col: f"{qa_set}_{level}" for level, cols in LEVELS.items() for qa_set, col in zip(("domain", "general"), cols)}


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


# The questions of the reproduction, each as (arm a, arm b, metrics): a paired comparison per start.
QUESTIONS = (
    ("Does Mix-CPT beat traditional?", "mixcpt", "traditional",
     ("domain_qa_acc", "general_qa_acc", "plain_domain_qa_acc", "stored_domain_acc")),
    ("Does LSSD reduce forgetting?", "mixcpt", "no_lssd", ("general_qa_acc", "plain_general_qa_acc", "domain_qa_acc")),
    ("Does the swap matter (vs plain self-KD)?", "mixcpt", "self_kd", ("domain_qa_acc", "general_qa_acc")),
    ("Does the mixture matter?", "mixcpt", "no_mix", ("domain_qa_acc", "general_qa_acc")),
    ("Does selection beat random?", "mixcpt", "random_selection", ("domain_qa_acc", "general_qa_acc")),
    ("Is stage 2 needed?", "mixcpt", "no_stage2", ("domain_qa_acc", "general_qa_acc", "format_rate")),
)


def paired_differences(results, hits: dict | None = None, questions=QUESTIONS, n_boot: int = 4000):
    """For each question and start where both arms ran with the same seeds: the mean difference a - b of each metric,
    its 95% interval and minimum detectable difference (:func:`mixcpt_core.stats.paired_interval`: a t interval over
    the seeds' mean differences with the question term, paired by seed), the earlier percentile bootstrap's interval
    beside it (``boot_lo``, ``boot_hi``), the per-seed spread and in how many seeds a > b. ``hits``: ``{(start, arm,
    seed): {hit key: [0/1 per question]}}`` (from the evaluations); metrics without per-question hits (format,
    perplexity) or arms without them get an interval over seeds only (one value per seed). Returns a DataFrame of
    :data:`COMPARISON_COLUMNS` plus ``diff_std``."""
    import numpy as np
    import pandas as pd

    from .stats import paired_bootstrap, paired_interval

    hits = hits or {}
    out = []
    for question, a, b, metrics in questions:
        for start in dict.fromkeys(results["start"]):
            ra = results[(results["arm"] == a) & (results["start"] == start)].set_index("seed")
            rb = results[(results["arm"] == b) & (results["start"] == start)].set_index("seed")
            seeds = sorted(set(ra.index) & set(rb.index))
            if not seeds:
                continue
            for m in metrics:
                key = METRIC_HITS.get(m)
                have = key and all((start, arm, s) in hits for arm in (a, b) for s in seeds)
                if have:
                    xa = np.array([hits[(start, a, s)][key] for s in seeds])  # [S, Q]
                    xb = np.array([hits[(start, b, s)][key] for s in seeds])
                else:  # one value per seed: [S, 1]
                    xa, xb = ra.loc[seeds, m].to_numpy()[:, None], rb.loc[seeds, m].to_numpy()[:, None]
                ci, boot = paired_interval(xa, xb), paired_bootstrap(xa, xb, n_boot=n_boot)
                d = ra.loc[seeds, m] - rb.loc[seeds, m]
                out.append({"question": question, "start": start, "metric": m, "a": a, "b": b,
                            "n_seeds": len(seeds), "n_questions": ci["n_questions"] if have else 0,
                            "a_mean": ra.loc[seeds, m].mean(), "b_mean": rb.loc[seeds, m].mean(),
                            "diff": d.mean(),
                            **{k: float(ci[k]) for k in ("lo", "hi", "se_seeds", "se_questions", "mdd")},
                            "thin": int(ci["thin"]), "boot_lo": boot["lo"], "boot_hi": boot["hi"],
                            "diff_std": d.std(ddof=1) if len(seeds) > 1 else 0.0, "a_wins": int((d > 0).sum())})
    return pd.DataFrame(out)


def format_differences_table(diffs) -> str:
    """Markdown table of :func:`paired_differences`: the difference with its 95% interval (flagged when thin), the
    minimum detectable difference at 80% power, and the earlier bootstrap interval for comparison."""
    from .stats import interval_text

    lines = ["| question | start | metric | a | b | a − b [95% interval] | detectable at 80% power (MDD) | "
             "earlier percentile bootstrap | seeds where a > b |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in diffs.iterrows():
        lines.append(f"| {r['question']} | {r['start']} | {METRIC_LABELS[r['metric']]} | {r['a']} {r['a_mean']:.3f} | "
                     f"{r['b']} {r['b_mean']:.3f} | {interval_text(r)} | {r['mdd']:.3f} | "
                     f"[{r['boot_lo']:+.3f}, {r['boot_hi']:+.3f}] | {r['a_wins']} of {r['n_seeds']} |")
    return "\n".join(lines)


DIFFERENCES_INTRO = ("\nPaired differences (a − b): 95% t interval over the seeds' mean differences with the question "
                     "term, paired by seed (`mixcpt_core/stats.py`); MDD = the smallest true difference this design "
                     "detects 80% of the time; beside it the earlier percentile bootstrap (too narrow at 3 seeds "
                     "where the seeds disagree):")


def differences_section(diffs) -> str:
    """The paired-differences part of ``results*.md`` (its end): :data:`DIFFERENCES_INTRO` and the table."""
    return f"{DIFFERENCES_INTRO}\n\n{format_differences_table(diffs)}\n" if len(diffs) else ""


def probe_rows(arm: str, start: str, seed: int, probes: dict) -> list[dict]:
    """Rows of ``probes.csv`` for one run: per point (start, stage 1, stage 2) and QA set, the three levels."""
    rows = []
    for point in POINTS:
        if point not in probes:
            continue
        m = probes[point]
        for i, qa_set in enumerate(("domain", "general")):
            rows.append({"arm": arm, "start": start, "seed": seed, "point": point, "qa_set": qa_set,
                         **{level: m[cols[i]] for level, cols in LEVELS.items()}})
    return rows


def format_probe_table(probes) -> str:
    """Markdown table of ``probes.csv``: per (start, arm, point), stored / extractable / said on domain and on
    held-out general facts, mean over seeds."""
    g = probes.groupby(["start", "arm", "point", "qa_set"], sort=False)[["stored", "extractable", "said"]].mean()
    lines = ["| start | arm | point | domain: stored | extractable | said | general: stored | extractable | said |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (start, arm, point), sub in g.groupby(level=[0, 1, 2], sort=False):
        cells = []
        for qa_set in ("domain", "general"):
            r = sub.xs(qa_set, level=3).iloc[0]
            cells += [f"{r[level]:.3f}" for level in ("stored", "extractable", "said")]
        lines.append(f"| {start} | {arm} | {point} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_grid_outputs(grid: dict, figures: Path, suffix: str, seeds: list[int], label: str):
    """Write one grid's files to ``figures``: ``results<suffix>.csv`` (:data:`RESULT_COLUMNS`), ``results<suffix>.md``
    (mean ± std tables, the probes, the paired differences with intervals), ``results<suffix>.png``,
    ``probes<suffix>.csv`` / ``.png``, ``comparisons<suffix>.csv``, ``stage1_curves<suffix>.csv``,
    ``forgetting_curves<suffix>.png`` (if there is a stage 1) and ``generations<suffix>.json``. ``grid``: what
    :func:`run_grid` returns. Returns the results as a DataFrame and the names of the files written."""
    import pandas as pd

    from .plots import plot_forgetting_curves, plot_probes, plot_results

    figures.mkdir(parents=True, exist_ok=True)
    # a profile's extra probe columns (stage 1's own layout, kept as what it is) after the usual ones
    layout = [c for c in LAYOUT_COLUMNS if grid["rows"] and c in grid["rows"][0]]
    write_csv(grid["rows"], RESULT_COLUMNS + tuple(layout), figures / f"results{suffix}.csv")
    write_csv(grid["curves"], ("arm", "start", "seed", "step", "heldout_qa_acc", "domain_qa_acc"),
              figures / f"stage1_curves{suffix}.csv")
    write_csv(grid["probes"], PROBE_COLUMNS, figures / f"probes{suffix}.csv")
    write_text_atomic(figures / f"generations{suffix}.json", json.dumps(grid["examples"], indent=1) + "\n")
    write_hits(grid["hits"], figures / f"hits{suffix}.json")
    results = pd.read_csv(figures / f"results{suffix}.csv")
    probes = pd.read_csv(figures / f"probes{suffix}.csv")
    diffs = paired_differences(results, grid["hits"])
    write_csv(diffs.to_dict("records"), COMPARISON_COLUMNS, figures / f"comparisons{suffix}.csv")
    table = format_results_table(summarize(results))
    plain_cols = PLAIN_COLUMNS + STORED_COLUMNS + tuple(layout)
    where = ("a plain layout that stage 1 never trains on (`Q:/A:`), what they have stored (multiple choice by "
             "likelihood of declarative sentences), and the same probes in stage 1's own `Question:/Answer:` layout "
             "(the last columns, not format-free)" if layout else
             "the plain `Question:/Answer:` format of pre-training, and what they have stored (multiple choice by "
             "likelihood)")
    md = (f"{label}\n\n{table}\n\nWhat the models know in {where}:\n\n"
          f"{format_results_table(summarize(results, plain_cols), plain_cols)}"
          f"\n\nMean ± sample standard deviation over the seeds of each row (`seeds` column; seeds {seeds}); `train s` = "
          f"wall time of the arm's own stages on "
          f"this machine.\n\nWhere the knowledge goes (mean over seeds):\n\n{format_probe_table(probes)}\n")
    if grid.get("majority"):
        c, m = grid["chance"], grid["majority"]
        md += (f"\nBaselines of the stored probe: uniform chance 1/K = {c['domain']:.3f} (domain) and {c['general']:.3f} "
               f"(general); always answering the most common value of the attribute = {m['domain']:.3f} (domain) and "
               f"{m['general']:.3f} (general).\n")
    md += differences_section(diffs)
    write_text_atomic(figures / f"results{suffix}.md", md)
    plot_results(results, figures / f"results{suffix}.png")
    plot_probes(probes, figures / f"probes{suffix}.png", chance=grid.get("chance"), majority=grid.get("majority"))
    names = [f"{n}{suffix}.{ext}" for n, ext in (("results", "csv"), ("results", "md"), ("results", "png"),
                                                  ("probes", "csv"), ("probes", "png"), ("comparisons", "csv"),
                                                  ("hits", "json"),
                                                  ("stage1_curves", "csv"), ("generations", "json"))]
    if grid["curves"]:
        plot_forgetting_curves(pd.read_csv(figures / f"stage1_curves{suffix}.csv"),
                               figures / f"forgetting_curves{suffix}.png")
        names.append(f"forgetting_curves{suffix}.png")
    print(f"\n{label}\n{table}")
    return results, names


def write_hits(hits: dict, path: Path) -> None:
    """The per-question outcomes behind every accuracy, so that anyone can recompute the intervals from the
    committed files: ``{"<start>/<arm>/<seed>": {hit key: "0110..."}}`` (one character per question, in the order of
    ``world.qa_split``; keys :data:`mixcpt_core.evaluation.HIT_KEYS`)."""
    rows = {f"{start}/{arm}/{seed}": {k: "".join(map(str, v)) for k, v in h.items()}
            for (start, arm, seed), h in hits.items()}
    write_text_atomic(path, json.dumps(rows, indent=1, sort_keys=True) + "\n")


def read_hits(path: Path) -> dict:
    """:func:`write_hits`'s file back as ``{(start, arm, seed): {hit key: [0/1, ...]}}``."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return {(k.split("/")[0], k.split("/")[1], int(k.split("/")[2])): {key: [int(c) for c in v] for key, v in h.items()}
            for k, h in rows.items()}


def load_grid_outputs(figures: Path) -> dict:
    """The largest grid written to ``figures``: the ``_full`` files if ``mixcpt reproduce --full`` wrote them, else the
    main ones. Returns ``{"name", "results", "curves", "probes", "comparisons", "hits", "generations"}``
    (DataFrames, the hits of :func:`read_hits` and a dict of generations; ``None`` for a file that is not there)."""
    import pandas as pd

    suffix = "_full" if (figures / "results_full.csv").exists() else ""

    def read(name):
        return pd.read_csv(figures / name) if (figures / name).exists() else None

    return {"name": f"results{suffix}.csv", "results": read(f"results{suffix}.csv"),
            "curves": read(f"stage1_curves{suffix}.csv"), "probes": read(f"probes{suffix}.csv"),
            "comparisons": read(f"comparisons{suffix}.csv"),
            "hits": read_hits(figures / f"hits{suffix}.json") if (figures / f"hits{suffix}.json").exists() else None,
            "generations": json.loads((figures / f"generations{suffix}.json").read_text(encoding="utf-8"))}


def recompute_comparisons(figures: Path) -> list[str]:
    """Recompute every ``comparisons<suffix>.csv`` of ``figures`` and the paired-differences part of its
    ``results<suffix>.md`` from the committed ``results<suffix>.csv`` and ``hits<suffix>.json`` (suffixes "", _full,
    _fixed), without training: after a change of the interval method. Returns the names of the files written."""
    import pandas as pd

    figures, written = Path(figures), []
    for suffix in ("", "_full", "_fixed"):
        results, hits_path = figures / f"results{suffix}.csv", figures / f"hits{suffix}.json"
        if not results.exists() or not hits_path.exists():
            continue
        diffs = paired_differences(pd.read_csv(results), read_hits(hits_path))
        write_csv(diffs.to_dict("records"), COMPARISON_COLUMNS, figures / f"comparisons{suffix}.csv")
        written.append(f"comparisons{suffix}.csv")
        md_path = figures / f"results{suffix}.md"
        if md_path.exists():
            md = md_path.read_text(encoding="utf-8")
            cut = md.find("\nPaired differences (a − b)")  # the section is the file's end (write_grid_outputs)
            write_text_atomic(md_path, (md if cut < 0 else md[:cut]) + differences_section(diffs))
            written.append(md_path.name)
    return written


def sweep_reference(results, arm: str = "traditional", start: str = "base") -> dict:
    """``{"<arm> (n seeds)": {metric: mean}}`` of an arm's chat-format QA in ``results``, for :func:`plot_sweep`'s
    reference lines (empty if the arm did not run)."""
    rows = results[(results["arm"] == arm) & (results["start"] == start)]
    if rows.empty:
        return {}
    return {f"{arm} ({len(rows)} seeds)": {m: rows[m].mean() for m in ("domain_qa_acc", "general_qa_acc")}}


def resolve_arms(cfg, root: Path, pairs: list[tuple[str, str]], protocol: str) -> dict:
    """``{(start, arm): ResolvedArm}``. ``validated``: every arm with a stage 2 gets its selected recipe
    (``cfg.stage2_recipes/<start>-<arm>.yaml``, written by ``mixcpt search``); ``fixed``: the arm configs as they
    are (the fixed defaults)."""
    from .pipelines import load_arm
    from .search import load_recipe

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    arms = {}
    for start, name in pairs:
        plain = load_arm(name, cfg.arms_dir, root, cfg.cpt_overrides, cfg.align_overrides)
        recipe = (load_recipe(root / cfg.stage2_recipes, start, name)
                  if protocol == "validated" and plain.align is not None else None)
        arms[(start, name)] = (load_arm(name, cfg.arms_dir, root, cfg.cpt_overrides, cfg.align_overrides, recipe=recipe)
                               if recipe else plain)
    return arms


def run_grid(cfg, root: Path, world, starts: dict, pairs: list[tuple[str, str]], arms: dict, tag: str,
             seeds: list[int] | None = None, general_items: list[dict] | None = None) -> dict:
    """Every (start, arm) of ``pairs`` for every seed of ``seeds`` (default ``cfg.seeds``): results rows, stage-1
    curves, probe rows, per-question hits (for the intervals) and the first seed's example generations. Every model
    is evaluated by ``cfg.evaluation`` on ``general_items`` as its general questions (default: the world's)."""
    from .pipelines import run_arm

    t0 = time.time()
    run_dir = root / cfg.run_dir
    from .probes import chance_accuracy, majority_accuracy

    general = general_items if general_items is not None else world.qa_split("general_heldout")
    if general_items is not None:
        from .realworld import realworld_chance

        general_chance = realworld_chance(general_items)
    else:
        general_chance = chance_accuracy(general)
    limit = cfg.evaluation.limit or None  # the questions evaluate_model reads
    grid = {"rows": [], "curves": [], "probes": [], "hits": {}, "examples": {},
            "chance": {"domain": chance_accuracy(world.qa_split("domain")), "general": general_chance},
            "majority": {"domain": majority_accuracy(world.qa_split("domain")[:limit]),
                         "general": majority_accuracy(general[:limit])}}
    seeds = cfg.seeds if seeds is None else seeds
    total = len(pairs) * len(seeds)
    for seed in seeds:
        for start, arm in pairs:
            t = time.time()
            r = run_arm(arms[(start, arm)], start, starts[start], seed, world, run_dir, root,
                        cfg.examples if seed == seeds[0] else 0, spec=cfg.evaluation, general_items=general_items)
            m = r["metrics"]
            grid["rows"].append({"arm": arm, "start": start, "seed": seed, "train_seconds": r["train_seconds"],
                                 **{c: m[c] for c in METRIC_COLUMNS + PLAIN_COLUMNS + STORED_COLUMNS + LAYOUT_COLUMNS
                                    if c in m}})
            grid["hits"][(start, arm, seed)] = m["hits"]
            grid["probes"] += probe_rows(arm, start, seed, r["probes"])
            if r["stage1"]:
                grid["curves"] += [{"arm": arm, "start": start, "seed": seed, "step": h["step"],
                                    "heldout_qa_acc": h["heldout_qa_acc"], "domain_qa_acc": h["domain_qa_acc"]}
                                   for h in r["stage1"]["history"] if "heldout_qa_acc" in h]
            if seed == seeds[0]:
                grid["examples"][f"{arm} / {start}"] = m.get("examples", [])
            print(f"[{tag} {len(grid['rows'])}/{total}] {arm:>17} start={start} seed={seed}: domain QA "
                  f"{m['domain_qa_acc']:.3f}  general QA {m['general_qa_acc']:.3f}  format {m['format_rate']:.3f}  "
                  f"stored {m['stored_domain_acc']:.3f}/{m['stored_general_acc']:.3f}  ({time.time() - t:.0f} s, "
                  f"{(time.time() - t0) / 60:.1f} min so far)", flush=True)
    return grid


def _subset(grid: dict, keep: set, seeds: list[int]) -> dict:
    """The part of a grid whose (start, arm) is in ``keep`` and whose seed is in ``seeds``."""
    def ok(start, arm, seed):
        return (start, arm) in keep and seed in seeds

    return {"rows": [r for r in grid["rows"] if ok(r["start"], r["arm"], r["seed"])],
            "curves": [c for c in grid["curves"] if ok(c["start"], c["arm"], c["seed"])],
            "probes": [p for p in grid["probes"] if ok(p["start"], p["arm"], p["seed"])],
            "hits": {k: v for k, v in grid["hits"].items() if ok(*k)},
            "examples": {k: v for k, v in grid["examples"].items() if tuple(k.split(" / ")[::-1]) in keep},
            "chance": grid["chance"], "majority": grid.get("majority")}


PROTOCOL_LABELS = {
    "validated": "**Validated protocol**: each pipeline's stage-2 recipe chosen on validation QA by the declared "
                 "search (`{recipes}/`).",  # the profile's recipes folder (ReproduceConfig.stage2_recipes)
    "fixed": "**Fixed defaults** (the stage-2 settings of the arm configs, set before the validation split existed; not validated).",
}


def start_model_dir(cfg, root: Path) -> Path:
    """The directory of ``cfg.base_model``: relative to ``root``, or SmolLM2's converted checkpoint for
    ``smollm2:135m-instruct`` (:func:`mixcpt_core.models.resolve_model_name`)."""
    from .models import SMOLLM2, resolve_model_name

    return Path(resolve_model_name(cfg.base_model)) if cfg.base_model == SMOLLM2 else root / cfg.base_model


def profile_seeds(cfg) -> list[int]:
    """``cfg.gpu_seeds`` when they are given and a CUDA GPU is present (a GPU runs more seeds of the same
    command), else ``cfg.seeds``."""
    import torch

    return list(cfg.gpu_seeds) if cfg.gpu_seeds and torch.cuda.is_available() else list(cfg.seeds)


def known_realworld_questions(start_dir: Path, cfg, run_dir: Path, figures: Path) -> list[dict]:
    """The real-world *test* questions that the start model answers correctly in the chat format (by
    ``cfg.evaluation``'s rule): forgetting is measured on these. Computed once (cached in
    ``run_dir/eval/realworld-known-<start>.json``) and written to ``figures/realworld_known.json`` with every
    question's reply, so the set can be checked by hand."""
    from .evaluation import chat_qa_metrics
    from .models import load_causal_lm
    from .pipelines import weights_key
    from .realworld import realworld_split

    spec = cfg.evaluation
    items = realworld_split()["test"]
    items = items[: spec.limit] if spec.limit else items
    decoding = "".join(f"-{k}{v}" for k, v in spec.decoding().items())  # another decoding is another set
    path = run_dir / "eval" / (f"realworld-known-{weights_key(start_dir)}-{spec.match}-{spec.max_new_tokens}"
                               f"-{len(items)}{decoding}.json")
    if not path.exists():
        model, tokenizer = load_causal_lm(start_dir)
        m = chat_qa_metrics(model, tokenizer, items, batch_size=spec.batch_size, max_new_tokens=spec.max_new_tokens,
                            match=spec.match, leak_check=spec.leak_check, **spec.decoding())
        rows = [{"id": q["id"], "question": q["question"], "answer": q["answer"], "reply": g["content"], "known": h}
                for q, g, h in zip(items, m["generations"], m["hits"])]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(rows, indent=1) + "\n")
    rows = json.loads(path.read_text(encoding="utf-8"))
    figures.mkdir(parents=True, exist_ok=True)
    write_text_atomic(figures / "realworld_known.json", json.dumps(rows, indent=1) + "\n")
    known = {r["id"] for r in rows if r["known"]}
    print(f"[start] real-world test questions the start model answers ({spec.match}): {len(known)} of {len(rows)}",
          flush=True)
    return [q for q in items if q["id"] in known]


def reproduce(cfg, root: Path, figures: Path, full: bool = False, sweep: bool = False,
              protocols=("validated",)) -> dict:
    """Run the grid (``cfg.main``, plus ``cfg.full`` with ``full``) for every seed under each protocol of
    ``protocols`` -- ``validated`` (the selected stage-2 recipes) writes ``results.*`` (and ``results_full.*``),
    ``fixed`` (the arm configs' fixed defaults, main arms only) writes ``results_fixed.*`` -- then the sweep with
    ``sweep``. Every stage is cached in ``cfg.run_dir`` (relative to ``root``): rerunning after an interruption
    continues where it stopped. Returns ``{"grids", "sweep_rows", "seconds"}``."""
    import pandas as pd

    from .pipelines import build_chat_start, load_arm, log_locations, run_arm, sweep_variant
    from .plots import plot_sweep
    from .world import generate_world

    t0 = time.time()
    run_dir = root / cfg.run_dir
    world = generate_world(cfg.world)
    starts = {"base": start_model_dir(cfg, root)}
    cfg = dataclasses.replace(cfg, seeds=profile_seeds(cfg))
    general_items = None
    if cfg.evaluation.general == "realworld":  # forgetting = on what the start model knew before adaptation
        general_items = known_realworld_questions(starts["base"], cfg, run_dir, figures)
    pairs = grid_pairs(cfg, full)
    main_pairs = grid_pairs(cfg, full=False)
    print(log_locations(run_dir), flush=True)
    if any(s == "chat" for s, _ in pairs):
        print("[start] chat = base model + SFT on all general instructions", flush=True)
        starts["chat"] = build_chat_start(starts["base"], cfg.world, cfg.chat_sft, run_dir / "start-chat")
    # every arm of every protocol is resolved (and so checked: a missing recipe stops here) before anything runs
    # the whole grid under the validated protocol, or under the only one asked for (smollm2: fixed, no search)
    whole = "validated" if "validated" in protocols else protocols[0]
    plan = {p: resolve_arms(cfg, root, pairs if p == whole else main_pairs, p) for p in protocols}

    grids, written = {}, []
    extra = [s for s in (cfg.headline_seeds or cfg.main_extra_seeds) if s not in cfg.seeds] if full else []
    labels = {p: label.format(recipes=cfg.stage2_recipes.rstrip("/")) for p, label in PROTOCOL_LABELS.items()}
    for protocol, arms in plan.items():
        grid = run_grid(cfg, root, world, starts, list(arms), arms, protocol, general_items=general_items)
        if protocol == "validated" and extra:  # the headline comparison with more seeds
            more = run_grid(cfg, root, world, starts, main_pairs, arms, f"{protocol}, more seeds", extra,
                            general_items=general_items)
            for key in ("rows", "curves", "probes"):
                grid[key] += more[key]
            grid["hits"].update(more["hits"])
        grids[protocol] = grid
        if protocol == "validated":
            results, names = write_grid_outputs(_subset(grid, set(main_pairs), cfg.seeds), figures, "", cfg.seeds,
                                                labels[protocol])
            written += names
            if full:
                seeds = cfg.seeds + extra
                results, names = write_grid_outputs(grid, figures, "_full", seeds, labels[protocol])
                written += names
        else:
            written += write_grid_outputs(grid, figures, "_fixed", cfg.seeds, labels[protocol])[1]

    sweep_rows = []
    if sweep and cfg.sweep:
        base = load_arm(cfg.sweep_arm, cfg.arms_dir, root, cfg.cpt_overrides, cfg.align_overrides)
        points = [(param, value, sweep_variant(base, param, value)) for param, vals in cfg.sweep.items()
                  for value in vals]  # every variant is built (and checked) before anything runs
        for seed in cfg.sweep_seeds:
            for i, (param, value, variant) in enumerate(points, 1):
                t = time.time()
                r = run_arm(variant, "base", starts["base"], seed, world, run_dir, root, probe_stages=False)
                sweep_rows.append({"param": param, "value": value, "arm": cfg.sweep_arm, "start": "base", "seed": seed,
                                   **{c: r["metrics"][c] for c in METRIC_COLUMNS + PLAIN_COLUMNS},
                                   "train_seconds": r["train_seconds"]})
                print(f"[sweep {i}/{len(points)}] {param}={value} seed={seed}: domain QA "
                      f"{r['metrics']['domain_qa_acc']:.3f}  general QA {r['metrics']['general_qa_acc']:.3f} "
                      f"({time.time() - t:.0f} s)", flush=True)
        write_csv(sweep_rows, SWEEP_COLUMNS, figures / "sweep.csv")
        reference = pd.DataFrame(grids["fixed"]["rows"]) if "fixed" in grids else pd.read_csv(figures / "results.csv")
        plot_sweep(pd.read_csv(figures / "sweep.csv"), figures / "sweep.png", reference=sweep_reference(reference))

    seconds = time.time() - t0
    written += ["sweep.csv", "sweep.png"] if sweep_rows else []
    print(f"\nwrote {', '.join(written)} to {figures}/ in {seconds / 60:.1f} min")
    return {"grids": grids, "sweep_rows": sweep_rows, "seconds": seconds}


if __name__ == "__main__":  # python -m mixcpt_core.reproduce figures figures/small figures/smollm2
    import sys

    for folder in sys.argv[1:] or ["figures"]:
        written = recompute_comparisons(Path(folder))
        print(f"{folder}/: recomputed {', '.join(written) or 'nothing (no results and hits there)'}")
