"""The reproduction's report: the README's results section, rendered from the committed CSVs.

Every number comes from a file in ``figures/`` written by ``mixcpt reproduce`` or ``mixcpt search``; nothing is typed
by hand. ``mixcpt report`` writes ``docs/reproduction.md`` and the part of ``README.md`` between :data:`BEGIN` and
:data:`END`; a test checks that both equal what this module renders from the committed files.
"""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- results:begin (rendered by `mixcpt report` from figures/*.csv; do not edit by hand) -->"
END = "<!-- results:end -->"


def _read(figures: Path, name: str):
    import pandas as pd

    path = figures / name
    return pd.read_csv(path) if path.exists() else None


def _mean(results, arm: str, metric: str, start: str = "base") -> float:
    rows = results[(results["arm"] == arm) & (results["start"] == start)]
    return float(rows[metric].mean())


def _cmp(comparisons, a: str, b: str, metric: str, start: str = "base") -> dict:
    rows = comparisons[(comparisons["a"] == a) & (comparisons["b"] == b) & (comparisons["metric"] == metric)
                       & (comparisons["start"] == start)]
    return rows.iloc[0].to_dict()


def interval(c: dict) -> str:
    """``+0.021 [-0.030, +0.070]`` (:func:`mixcpt_core.stats.interval_text`: with its flag when thin)."""
    from .stats import interval_text

    return interval_text(c)


def verdict(c: dict) -> str:
    """What the 95% interval says about ``a - b``, in the words of :func:`mixcpt_core.stats.read_difference`:
    ``mixcpt higher (the interval excludes 0)``, ``... lower ...`` or ``no resolvable difference``, with the
    thin-evidence flag when fewer than 3 seeds ran."""
    from .stats import read_difference

    r = read_difference(c["lo"], c["hi"], int(c["n_seeds"]))
    words = f"{c['a']} {r['verdict']} (the interval excludes 0)" if r["resolved"] else r["verdict"]
    return f"{words} {r['flag']}" if r["thin"] else words


def final_choices(search):
    """One row per (start, arm) of a search table (``figures/search_stage2.csv``): the recipe the search chose, in
    the table's order. A flat search: its chosen row. A staged search (a ``stage`` column): the chosen row of the
    last stage the pipeline searched, whose ``label`` becomes the whole recipe (the ``recipe`` column)."""
    chosen = search[search["chosen"] == 1]
    last = chosen.groupby(["start", "arm"], sort=False).tail(1)
    return last.assign(label=last["recipe"]) if "recipe" in last.columns else last


def search_table(search) -> str:
    """One row per (start, arm): the chosen recipe and its validation numbers, and how many of the pipeline's rows
    reached the format."""
    lines = ["| start | arm | chosen stage-2 recipe | validation score | general / domain (val, chat) | format (val) "
             "| settings with format ≥ 0.95 |", "|---|---|---|---|---|---|---|"]
    final = final_choices(search).set_index(["start", "arm"])
    for (start, arm), g in search.groupby(["start", "arm"], sort=False):
        c = final.loc[(start, arm)]
        ok = int((g["format_compliance"].round(9) >= 0.95).sum())
        lines.append(f"| {start} | {arm} | `{c['label']}` | {c['score']:.3f} | {c['general_accuracy']:.3f} / "
                     f"{c['domain_accuracy']:.3f} | {c['format_compliance']:.3f} | {ok} of {len(g)} |")
    return "\n".join(lines)


FIXED_DEFAULT_LABEL = "lora=full sft.learning_rate=0.001 sft.max_steps=100"  # align-tiny.yaml's stage 2 in the space


def default_vs_chosen(search) -> str:
    """Per pipeline: the validation numbers of the fixed default setting and of the chosen one (in a staged search
    the default is the first stage's row of the default SFT recipe: every later stage at its default there)."""
    lines = ["| start | arm | fixed default: score, general / domain, format | chosen | chosen: score, general / domain, "
             "format |", "|---|---|---|---|---|"]
    final = final_choices(search).set_index(["start", "arm"])
    for (start, arm), g in search.groupby(["start", "arm"], sort=False):
        first = g[g["stage"] == g["stage"].iloc[0]] if "stage" in g.columns else g
        d, c = first[first["label"] == FIXED_DEFAULT_LABEL], final.loc[(start, arm)]
        cell = (lambda r: f"{r['score']:.3f}, {r['general_accuracy']:.3f} / {r['domain_accuracy']:.3f}, "
                          f"{r['format_compliance']:.3f}")
        lines.append(f"| {start} | {arm} | {cell(d.iloc[0]) if len(d) else '—'} | `{c['label']}` | {cell(c)} |")
    return "\n".join(lines)


def _search_seeds(value) -> list[int]:
    """A search table's ``seeds`` cell (``0`` or ``"0 1"``) as a list of seeds."""
    return [int(x) for x in str(value).split()]


def _test_numbers(results, start: str, arm: str, seeds: list[int] | None = None) -> dict | None:
    """Means over ``seeds`` (default: every seed there) of a pipeline's test chat QA in a results table, and the
    validation score's counterpart on them: ``{"score", "general", "domain", "n"}``; ``None`` if a seed is missing."""
    rows = results[(results["start"] == start) & (results["arm"] == arm)]
    if seeds is not None:
        rows = rows[rows["seed"].isin(seeds)]
        if sorted(set(rows["seed"])) != sorted(set(seeds)):
            return None
    if rows.empty:
        return None
    general, domain = float(rows["general_qa_acc"].mean()), float(rows["domain_qa_acc"].mean())
    return {"score": (general + domain) / 2, "general": general, "domain": domain, "n": int(rows["seed"].nunique())}


def winners_curse_table(search, results) -> str:
    """Per pipeline: the chosen recipe's validation score (the search's rows: the mean of general and domain chat QA
    on the validation questions, over the search's seeds) next to the same score on the test questions
    (``results``: ``general_qa_acc`` and ``domain_qa_acc`` of the reproduction), on the search's seeds and on every
    seed that ran. The chosen recipe is the best of many noisy validation scores, so its validation score is biased
    upward: test minus validation on the same seeds measures that (and the difference between the question sets)."""
    lines = ["| start | arm | chosen recipe | validation: score (general / domain), seeds | test, same seeds: score "
             "(general / domain) | test − validation | test, all seeds: score (seeds) |", "|---|---|---|---|---|---|---|"]
    for _, c in final_choices(search).iterrows():
        seeds = _search_seeds(c["seeds"])
        same, every = (_test_numbers(results, c["start"], c["arm"], s) for s in (seeds, None))
        val = (f"{c['score']:.3f} ({c['general_accuracy']:.3f} / {c['domain_accuracy']:.3f}), "
               f"{' '.join(map(str, seeds))}")
        test = "—" if same is None else f"{same['score']:.3f} ({same['general']:.3f} / {same['domain']:.3f})"
        gap = "—" if same is None else f"{same['score'] - c['score']:+.3f}"
        allseeds = "—" if every is None else f"{every['score']:.3f} ({every['n']})"
        lines.append(f"| {c['start']} | {c['arm']} | `{c['label']}` | {val} | {test} | {gap} | {allseeds} |")
    return "\n".join(lines)


def winners_curse_gap(search, results, a: str = "mixcpt", b: str = "traditional", start: str = "base") -> str:
    """One sentence: ``a - b`` on domain and general chat QA as the search's validation rows saw it (the chosen
    recipes, the search's seeds) and on the test questions (same seeds, then every seed); empty if either is
    missing."""
    final = final_choices(search).set_index(["start", "arm"])
    if (start, a) not in final.index or (start, b) not in final.index:
        return ""
    ca, cb = final.loc[(start, a)], final.loc[(start, b)]
    seeds = _search_seeds(ca["seeds"])
    same = [_test_numbers(results, start, arm, seeds) for arm in (a, b)]
    every = [_test_numbers(results, start, arm) for arm in (a, b)]
    if None in same or None in every:
        return ""
    n = min(e["n"] for e in every)
    parts, flips = [], []
    plural = "s" if len(seeds) > 1 else ""
    for metric in ("domain", "general"):
        val, test = ca[f"{metric}_accuracy"] - cb[f"{metric}_accuracy"], same[0][metric] - same[1][metric]
        parts.append(f"{metric} QA {val:+.3f} on validation (seed{plural} {' '.join(map(str, seeds))}), {test:+.3f} "
                     f"on test with the same seed{plural}, {every[0][metric] - every[1][metric]:+.3f} on test over "
                     f"{n} seeds")
        if round(val, 9) * round(test, 9) < 0:
            flips.append(metric)
    flipped = (f" On {' and '.join(flips)} QA validation and test disagree in sign on the same seed{plural}: the "
               f"selection noise is as large as the difference." if flips else "")
    return f"{a} − {b} ({start} start): " + "; ".join(parts) + "." + flipped


def moved_table(validated, fixed) -> str:
    """Fixed defaults -> validated recipe, per main arm and headline metric (means over seeds)."""
    metrics = (("domain_qa_acc", "domain QA (chat)"), ("general_qa_acc", "held-out general QA (chat)"),
               ("plain_domain_qa_acc", "domain QA (plain)"), ("format_rate", "format compliance"))
    lines = ["| arm | metric | fixed defaults | validated recipe | moved |", "|---|---|---|---|---|"]
    for arm in dict.fromkeys(fixed["arm"]):
        if arm == "base":
            continue
        for m, label in metrics:
            f, v = _mean(fixed, arm, m), _mean(validated, arm, m)
            lines.append(f"| {arm} | {label} | {f:.3f} | {v:.3f} | {v - f:+.3f} |")
    return "\n".join(lines)


def render_tables(figures: Path) -> dict[str, str]:
    """The tables of the section, each from its CSV (keys: results, probes, comparisons, fixed, moved, search,
    full, full_probes, full_comparisons); a table whose CSV is missing is absent."""
    from .reproduce import (PLAIN_COLUMNS, format_differences_table, format_probe_table, format_results_table,
                            summarize)
    from .evaluation import STORED_COLUMNS

    out = {}
    for suffix, key in (("", ""), ("_full", "full_"), ("_fixed", "fixed_")):
        results = _read(figures, f"results{suffix}.csv")
        if results is None:
            continue
        out[f"{key}results"] = format_results_table(summarize(results))
        out[f"{key}knowledge"] = format_results_table(summarize(results, PLAIN_COLUMNS + STORED_COLUMNS),
                                                       PLAIN_COLUMNS + STORED_COLUMNS)
        probes, comparisons = _read(figures, f"probes{suffix}.csv"), _read(figures, f"comparisons{suffix}.csv")
        if probes is not None:
            out[f"{key}probes"] = format_probe_table(probes)
        if comparisons is not None:
            out[f"{key}comparisons"] = format_differences_table(comparisons)
    validated, fixed = _read(figures, "results.csv"), _read(figures, "results_fixed.csv")
    if validated is not None and fixed is not None:
        out["moved"] = moved_table(validated, fixed)
    search = _read(figures, "search_stage2.csv")
    if search is not None:
        out["search"] = search_table(search)
    return out


def replace_block(text: str, block: str, path: str = "README.md") -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{path}: expected one '{BEGIN}' line followed by one '{END}' line")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}"


def current_block(text: str) -> str:
    """The rendered part of a README (between the markers, stripped)."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


# -- the narrative ---------------------------------------------------------------------------------------------------
def _probe(probes, arm: str, point: str, qa_set: str, level: str, start: str = "base") -> float:
    rows = probes[(probes["arm"] == arm) & (probes["point"] == point) & (probes["qa_set"] == qa_set)
                  & (probes["start"] == start)]
    return float(rows[level].mean())


def _fate(probes, arm: str, qa_set: str = "domain", start: str = "base") -> str:
    """One sentence on what stage 2 did to ``arm``'s facts: stored / extractable / said after stage 1 and after
    stage 2, and whether the stored level fell (facts erased) or only the other two (the route lost)."""
    s1 = {lv: _probe(probes, arm, "stage1", qa_set, lv, start) for lv in ("stored", "extractable", "said")}
    s2 = {lv: _probe(probes, arm, "stage2", qa_set, lv, start) for lv in ("stored", "extractable", "said")}
    lost_stored = s1["stored"] - s2["stored"]
    lost_route = s1["extractable"] - s2["said"]
    kind = ("mostly the route to them: the facts stay stored" if lost_stored < 0.25 * max(lost_route, 1e-9)
            else "facts themselves: the stored level falls too")
    return (f"`{arm}`: stored {s1['stored']:.3f} → {s2['stored']:.3f}, extractable {s1['extractable']:.3f} → "
            f"{s2['extractable']:.3f}, said (chat) {s1['said']:.3f} → {s2['said']:.3f}; stage 2 loses {kind}")


def findings(figures: Path) -> str:
    """The reading of the committed results, every number from ``figures/`` (main grid, full grid if present)."""
    full = _read(figures, "results_full.csv")
    probes = _read(figures, "probes_full.csv")
    probes = probes if probes is not None else _read(figures, "probes.csv")
    comps_full = _read(figures, "comparisons_full.csv")
    comparisons = comps_full = comps_full if comps_full is not None else _read(figures, "comparisons.csv")
    dom, gen = (_cmp(comparisons, "mixcpt", "traditional", m) for m in ("domain_qa_acc", "general_qa_acc"))
    stored = _cmp(comparisons, "mixcpt", "traditional", "stored_domain_acc")
    n_seeds = int(dom["n_seeds"])
    lines = [
        f"- **Does Mix-CPT beat traditional end to end?** Domain QA (chat) {dom['a_mean']:.3f} vs {dom['b_mean']:.3f}: "
        f"{interval(dom)}, {verdict(dom)}; held-out general QA (chat) {gen['a_mean']:.3f} vs {gen['b_mean']:.3f}: "
        f"{interval(gen)}, {verdict(gen)} ({n_seeds} seeds × {int(dom['n_questions'])} questions per set; "
        f"Mix-CPT ahead on domain QA in {int(dom['a_wins'])} of {n_seeds} seeds). The smallest true difference the "
        f"domain comparison detects 80% of the time (MDD): {dom['mdd']:.3f}.",
        f"- **Stored domain knowledge after the whole pipeline**: {stored['a_mean']:.3f} (Mix-CPT) vs "
        f"{stored['b_mean']:.3f} (traditional), {interval(stored)}.",
    ]
    if probes is not None:
        lines.append("- **Where the domain knowledge goes in stage 2** (base start, mean over seeds): "
                     + "; ".join(_fate(probes, arm) for arm in ("traditional", "mixcpt")) + ".")
    if comps_full is not None and (comps_full["b"] == "no_lssd").any():
        lssd = _cmp(comps_full, "mixcpt", "no_lssd", "general_qa_acc")
        plain = _cmp(comps_full, "mixcpt", "no_lssd", "plain_general_qa_acc")
        lines.append(f"- **Does LSSD reduce forgetting?** Held-out general QA (chat) {lssd['a_mean']:.3f} with LSSD vs "
                     f"{lssd['b_mean']:.3f} without: {interval(lssd)}, {verdict(lssd)}; in the plain format "
                     f"{interval(plain)}.")
    for b, question in (("self_kd", "Does the swap matter (vs plain self-distillation)?"),
                        ("no_mix", "Does the mixture matter?"), ("random_selection", "Does easy selection beat random?")):
        if comps_full is not None and (comps_full["b"] == b).any():
            d, g = (_cmp(comps_full, "mixcpt", b, m) for m in ("domain_qa_acc", "general_qa_acc"))
            lines.append(f"- **{question}** Domain QA {d['a_mean']:.3f} vs {d['b_mean']:.3f} ({interval(d)}, "
                         f"{verdict(d)}); general QA {g['a_mean']:.3f} vs {g['b_mean']:.3f} ({interval(g)}, {verdict(g)}).")
    if full is not None and (full["start"] == "chat").any():
        cd, cg = (_cmp(comps_full, "mixcpt", "traditional", m, start="chat") for m in ("domain_qa_acc", "general_qa_acc"))
        lines.append(f"- **From the chat start**: domain QA {cd['a_mean']:.3f} (Mix-CPT) vs {cd['b_mean']:.3f} "
                     f"(traditional), {interval(cd)}, {verdict(cd)}; general QA {cg['a_mean']:.3f} vs "
                     f"{cg['b_mean']:.3f}, {interval(cg)}.")
    return "\n".join(lines)


# -- wall times --------------------------------------------------------------------------------------------------------
WALL_TIMES = "wall_times.json"


def cached_stages(run_dir: Path) -> int:
    """Finished stages (stage 1 and stage 2 directories with their info file) in a run directory."""
    return sum(1 for kind, info in (("stage1", "mixcpt_cpt.json"), ("stage2", "mixcpt_align.json"))
               for d in (Path(run_dir) / kind).glob("*") if (d / info).exists())


def record_wall_time(figures: Path, command: str, seconds: float, cached: int = 0) -> None:
    """Add ``command``'s measured wall time to ``figures/wall_times.json`` (with the date, the machine's CPU count
    and how many stages were already cached when it started), so that the docs render measured times, not typed
    ones. A run that started with ``cached`` stages adds its time to the command's earlier record (``invocations``
    counts the runs) instead of replacing it: the result is the work of all of them."""
    import datetime
    import json
    import os
    import platform

    from .atomic import write_text_atomic

    path = Path(figures) / WALL_TIMES
    times = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    record = {"seconds": round(seconds, 1), "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "cached_stages": cached}
    earlier = times.get(command)
    if cached and earlier:
        # a rerun that found stages cached continues the earlier runs' work (e.g. after an interruption, or a grid
        # extended by an arm): its time adds to theirs, and the record keeps how many stages the first one found
        record.update(seconds=round(earlier["seconds"] + seconds, 1), cached_stages=earlier.get("cached_stages", 0),
                      invocations=earlier.get("invocations", 1) + 1)
    times[command] = record
    write_text_atomic(path, json.dumps(times, indent=1, sort_keys=True) + "\n")


def wall_time_table(figures: Path) -> str:
    import json

    path = Path(figures) / WALL_TIMES
    if not path.exists():
        return ""
    lines = ["| command | wall time | stages already cached at its start | measured |", "|---|---|---|---|"]
    for command, t in json.loads(path.read_text(encoding="utf-8")).items():
        m, s = divmod(round(t["seconds"]), 60)
        cached = t.get("cached_stages", 0)
        lines.append(f"| `{command}` | {m} min {s:02d} s | {cached or 'none (from scratch)'} | {t['date']}, "
                     f"{t['machine']} |")
    return "\n".join(lines)


# -- the pages ---------------------------------------------------------------------------------------------------------
def sweep_table(sweep) -> str:
    """Mean ± std over seeds per sweep point (``figures/sweep.csv``)."""
    cols = (("domain_qa_acc", "domain QA (chat)"), ("general_qa_acc", "held-out general QA (chat)"),
            ("format_rate", "format compliance"), ("plain_domain_qa_acc", "domain QA (plain)"),
            ("plain_general_qa_acc", "held-out general QA (plain)"))
    lines = ["| setting | value | seeds | " + " | ".join(label for _, label in cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for (param, value), g in sweep.groupby(["param", "value"], sort=False):
        cells = [f"{g[c].mean():.3f} ± {g[c].std(ddof=1) if len(g) > 1 else 0:.3f}" for c, _ in cols]
        lines.append(f"| `{param}` | {value:g} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chat_start_sentence(comparisons) -> str:
    """The Mix-CPT vs traditional domain comparison from the chat start, if it ran."""
    rows = comparisons[(comparisons["start"] == "chat") & (comparisons["a"] == "mixcpt")
                       & (comparisons["b"] == "traditional") & (comparisons["metric"] == "domain_qa_acc")]
    if rows.empty:
        return ""
    c = rows.iloc[0].to_dict()
    return (f"From the **chat start** (a model that already follows the chat format, {int(c['n_seeds'])} seeds): "
            f"{interval(c)} on domain QA ({verdict(c)}). ")


def fixed_block(t: dict, figures: Path) -> str:
    """The fixed-default protocol's table and how far the validated recipes moved each main arm (README)."""
    if "fixed_results" not in t:
        return ""
    validated, fixed = _read(figures, "results.csv"), _read(figures, "results_fixed.csv")
    moved = "; ".join(
        f"{arm} {_mean(fixed, arm, 'domain_qa_acc'):.3f} → {_mean(validated, arm, 'domain_qa_acc'):.3f} domain, "
        f"{_mean(fixed, arm, 'general_qa_acc'):.3f} → {_mean(validated, arm, 'general_qa_acc'):.3f} general"
        for arm in dict.fromkeys(fixed["arm"]) if arm != "base")
    stored = "; ".join(f"{arm} {_mean(fixed, arm, 'stored_domain_acc'):.3f} → {_mean(validated, arm, 'stored_domain_acc'):.3f}"
                       for arm in dict.fromkeys(fixed["arm"]) if arm != "base")
    up = all(_mean(validated, a, "stored_domain_acc") > _mean(fixed, a, "stored_domain_acc")
             for a in dict.fromkeys(fixed["arm"]) if a != "base")
    rose = "up with them: the fixed recipe had erased more of what stage 1 stored" if up else "from"
    search = _read(figures, "search_stage2.csv")
    chosen = final_choices(search) if search is not None else None
    why = ("" if chosen is None else
           f" The search chose 400 SFT steps for {chosen['label'].str.contains('max_steps=400').sum()} of "
           f"{len(chosen)} pipelines and LoRA for {chosen['label'].str.contains('lora=r').sum()} of {len(chosen)};")
    return f"""
The same arms under the **fixed defaults** that stage 2 used before this protocol (full fine-tuning, SFT at 1e-3
for 100 steps, set before the validation split existed, on questions that are now test questions;
`figures/results_fixed.csv`), on the same test questions:

{t['fixed_results']}

Validation moved the pipelines (chat format: {moved}).{why} the domain facts still stored after stage 2 went
{rose} ({stored}). Details: docs/reproduction.md, "What validation changed".
"""


def readme_block(figures: Path) -> str:
    """The README's results block: the headline, the main figure and table, the probes figure, a link."""
    t = render_tables(figures)
    name = "comparisons_full.csv" if (figures / "comparisons_full.csv").exists() else "comparisons.csv"
    comparisons = _read(figures, name)
    dom, gen = (_cmp(comparisons, "mixcpt", "traditional", m) for m in ("domain_qa_acc", "general_qa_acc"))
    return f"""**The result** (tiny profile, each pipeline's stage 2 chosen on validation questions, test questions
only; {int(dom['n_seeds'])} seeds, `figures/{name}`): Mix-CPT − traditional = {interval(dom)} on domain QA in the
chat format ({verdict(dom)}; detectable at 80% power: {dom['mdd']:.3f}) and {interval(gen)} on held-out general QA
({verdict(gen)}); 95% intervals over seeds and questions. {chat_start_sentence(comparisons)}The table:
`make reproduce`, seeds 0–2.

![results](figures/results.png)

{t['results']}
{fixed_block(t, figures)}
Where the knowledge goes — stored (likelihood multiple choice), extractable (plain QA), said (chat QA), at the start,
after stage 1 and after stage 2:

![where the knowledge goes](figures/probes.png)"""


STAGED_SEARCH = "configs/search-stage2-tiny-staged.yaml"


def search_bullet(search) -> str:
    """The protocol's bullet on the search behind the committed recipes: the first (SFT recipe, seed 0) or the staged
    one (a ``stage`` column in the table), its stages and seeds read from the table."""
    if search is not None and "stage" in search.columns:
        sizes = search.groupby("stage", sort=False)["setting"].max() + 1
        stages = ", then ".join(f"`{name}` ({n} settings)" for name, n in sizes.items())
        seeds = " and ".join(map(str, _search_seeds(search["seeds"].iloc[0])))
        return f"""- **The search** (`{STAGED_SEARCH}`, committed before it ran): in stages, per pipeline, each stage
  searching its settings with the earlier stages' choices fixed: {stages}; on every pipeline that has a stage 2
  (a stage names the arms it applies to), seeds {seeds} (each setting's validation numbers averaged over them),
  scored on the validation questions in the chat format."""
    n_settings = search["setting"].nunique() if search is not None else 0
    return f"""- **The search** (`configs/search-stage2-tiny.yaml`, committed before it ran): {n_settings} stage-2 settings — full
  fine-tuning with SFT learning rate 1e-4, 3e-4 or 1e-3 × 100 or 400 steps, and LoRA r 16 (with trainable chat-token
  rows) at 1e-3 or 3e-3 × 100 or 400 steps — on every pipeline that has a stage 2, seed 0, scored on the validation
  questions in the chat format."""


def winners_curse_section(search, results) -> str:
    """The section comparing each chosen recipe's validation score with its test score (:func:`winners_curse_table`),
    with the mean gap and the headline difference (:func:`winners_curse_gap`); empty without a search table."""
    if search is None or results is None:
        return ""
    final = final_choices(search)
    gaps = []
    for _, c in final.iterrows():
        same = _test_numbers(results, c["start"], c["arm"], _search_seeds(c["seeds"]))
        if same is not None:
            gaps.append(same["score"] - c["score"])
    summary = (f"Over the {len(gaps)} pipelines, test − validation is {sum(gaps) / len(gaps):+.3f} on average, and "
               f"the test score is the lower one in {sum(g < 0 for g in gaps)} of {len(gaps)}." if gaps else "")
    return f"""## The winner's curse: the chosen recipes on validation and on test

The search keeps the setting with the best validation score, so that score is the maximum of several noisy
estimates and overstates the recipe (the winner's curse). Each chosen recipe's validation score next to the same
score (the mean of general and domain chat QA) on the test questions of the same seeds, and over every seed that
ran (`figures/search_stage2.csv`, `figures/results_full.csv`). The gap also holds any difference in difficulty
between the two question sets; no choice was made on the test numbers.
{summary}

{winners_curse_table(search, results)}

The comparison the protocol exists for, {winners_curse_gap(search, results)}
"""


def chosen_before_validation_section(search, staged_table: bool = False) -> str:
    """What stage 2's fixed defaults were set on, and which of them the staged search validates (whether it ran yet
    is read from the search table; ``staged_table``: its own table, ``figures/search_stage2_staged.csv``, exists)."""
    ran = search is not None and "stage" in search.columns
    state = ("It ran: the recipes above come from it." if ran else
             "It has run (`figures/search_stage2_staged.csv`, recipes in `configs/stage2-selected-staged/`), but the\n"
             "reproduction has not rerun with its recipes yet: the recipes above still come from the first search,\n"
             "which chose the SFT recipe only, on seed 0." if staged_table else
             "It is declared and runs first in `make reproduce-full`; until it has run, the recipes above come from\n"
             "the first search, which chose the SFT recipe only, on seed 0.")
    return f"""## What was chosen before the validation split, and on what

Before the validation split existed, `run_align` scored stage 2 on all 480 held-out general questions of the world,
which include today's 384 test questions, and the tiny profile's stage-2 defaults (`configs/align-tiny.yaml`,
[stage2.md](stage2.md)) were set on those numbers:

- the SFT recipe: full fine-tuning, 100 steps at learning rate 1e-3 (40 steps or 3e-4 did not teach `<|end|>`,
  3e-3 collapsed the answers);
- N = 64 selected samples (`n_sft`, `n_dpo`; N = 16, 64 and 256 were compared there);
- `leading_space: true` (answers as `" answer"`: held-out accuracy 0.027 without it, 0.331 with it);
- `init_chat_tokens: true` (the never-trained chat-token embeddings start at the mean embedding);
- and, fixed then and never searched since: the DPO settings (30 steps at 2e-4, beta 0.1, the stage-1 model as the
  reference; traditional 50 steps) and the selection score (`ppl`, easiest first; easy beat random there, one seed).

These were set on questions that are now test questions, so the fixed-default results (`results_fixed.csv`) are test
numbers of settings partly chosen on those very questions (optimistic for them). The first search
(`configs/search-stage2-tiny.yaml`) validated the SFT recipe only (learning rate, steps, LoRA), on one seed. The
staged search (`{STAGED_SEARCH}`, two seeds) validates, per pipeline: the SFT recipe and
whether to run stage 2 at all (stage `sft`), N = 64, 256 or all (`n`), DPO steps and beta (`dpo`) and the selection
score, `ppl` or `random` (`score`, for the arms whose stage 2 is Mix-CPT's).
{state}
Validated by neither search: `leading_space` and `init_chat_tokens` (set on the old questions), the DPO learning
rate and reference, and the chat start's SFT (`chat_sft`: 100 steps at 1e-3, the same recipe).
"""


def reproduction_page(figures: Path) -> str:
    """``docs/reproduction.md``: the whole reproduction, rendered from ``figures/``."""
    t = render_tables(figures)
    full = "full_results" in t
    probes_png = "probes_full.png" if full else "probes.png"
    sweep = _read(figures, "sweep.csv")
    search = _read(figures, "search_stage2.csv")
    results_any = _read(figures, "results_full.csv")
    results_any = results_any if results_any is not None else _read(figures, "results.csv")
    parts = [f"""# The reproduction: traditional vs Mix-CPT

`make reproduce` runs the main arms (base, traditional, mixcpt) from the shipped base model under the **validated
protocol** and, for comparison, under the **fixed defaults**; `make reproduce-full` first runs the declared stage-2
search, then every ablation and the chat start. Every number on this page is rendered from the files in `figures/`
by `mixcpt report` (a test checks that this page equals what the committed files give).

## In short

{findings(figures)}

## The protocol: validation data for choices, test data for the report

- **Splits.** A fifth of the held-out general people and of the domain people are *validation* people
  (`WorldConfig.val_fraction = 0.2`): 96 general and 96 domain questions that no training set contains. The other
  384 held-out general and 384 domain questions are the **test** sets. Documents are unchanged: only questions are
  held out (the base model did not change). `tests/test_world.py` proves the splits disjoint;
  `tests/test_search.py` runs the search from an empty run folder, its own stage 1 included (trained without the
  test-question monitoring curves), with the test splits made unreadable.
{search_bullet(search)}
- **The rule** (fixed in advance, the same for every pipeline): among settings with validation format compliance
  ≥ 0.95, the highest mean of general and domain validation accuracy; ties go to the setting declared first.
- **The chosen recipes** are committed in `configs/stage2-selected/`, so `make reproduce` does not search again:

{t.get('search', '(no search table yet)')}

{winners_curse_section(search, results_any)}
{chosen_before_validation_section(search, (figures / "search_stage2_staged.csv").exists())}
## Main result (validated protocol, base start, `figures/results.md`)

![results](../figures/results.png)

{t['results']}

What the same models know in the plain format, and what they have stored:

{t['knowledge']}

## Where the knowledge goes

Three probes on the same test facts (`mixcpt_core/probes.py`): **stored** = the gold value's document sentence is the
most likely among all values of the attribute (chance: 1/25 for a city … 1/40 for a year, dotted), **extractable** =
plain `Question:/Answer:` QA, **said** = chat-format QA; at the start model, after stage 1 and after stage 2 (mean over
seeds).

![where the knowledge goes](../figures/{probes_png})

{t['full_probes'] if full else t['probes']}

## Paired comparisons with 95% intervals

Each row is a − b over the same test questions and seeds. The interval is a Student-t interval over the seeds'
mean differences, widened by the question term (which questions were asked), paired by seed
(`mixcpt_core/stats.py`, [evaluation.md](evaluation.md#paired-comparisons-and-their-intervals)). The
MDD is the smallest true difference this design detects (its interval excluding 0) 80% of the time; a smaller one
can hide in an interval that contains 0. Results with fewer than 3 seeds carry a thin-evidence flag. The earlier
percentile bootstrap over questions and seeds is shown beside the interval: at 3 seeds it covers the truth less
often than 95% where the seeds disagree. Format compliance has no per-question outcome here and gets an interval
over seeds only.

{t['full_comparisons'] if full else t['comparisons']}
"""]
    if "moved" in t:
        parts.append(f"""## What validation changed: the fixed defaults

Before this protocol, stage 2 ran with the fixed defaults of the arm configs (full fine-tuning, SFT learning rate
1e-3 for 100 steps, N = 64; the arm configs as they are), which were set while stage 2 was scored on all 480
held-out general questions, today's test questions among them (see "What was chosen before the validation split").
The same main arms with those settings, on the same test questions (`figures/results_fixed.md`):

{t['fixed_results']}

{t['fixed_knowledge']}

Fixed defaults → validated recipe (test questions, means over seeds):

{t['moved']}

Why they moved: on the validation questions (seed 0), the fixed default setting and the chosen one scored

{default_vs_chosen(search) if search is not None else ''}
""")
    if full:
        parts.append(f"""## All arms and both starts (`figures/results_full.md`)

{t['full_results']}

{t['full_knowledge']}
""")
    if sweep is not None:
        parts.append(f"""## The sweeps (earlier version, `figures/sweep.csv`)

One setting of the `mixcpt` arm changed at a time, base start, seeds 0–2, with the **fixed** stage-2 defaults. These
runs predate the validation split: they were scored on all 480 held-out questions of each set (today's 384 test + 96
validation questions) and have not been rerun (`make reproduce-sweep` reruns them, about 45 minutes on 2 cores).
They explain the fixed-default result and chose nothing.

![sweeps](../figures/sweep.png)

{sweep_table(sweep)}
""")
    parts.append(f"""## Determinism

- **Same machine, same seeds: identical.** Every stage is a pure function of its inputs on a given CPU:
  `tests/test_reproduce.py::test_tiny_reproduction_is_cached_and_deterministic` reruns a tiny grid from the cache
  without training, then from scratch in a new directory, and requires equal numbers.
- **Another CPU: close, not identical.** Float sums in the CPU kernels can run in another order on another processor
  (vector width, thread split), and training amplifies last-digit differences. Retraining the base model on the AMD
  EPYC machine of this run gave weights up to 0.35 away from the shipped ones (trained on an earlier machine), whose
  evaluation is nevertheless reproduced exactly here (`tests/test_base_checkpoint.py`). Compare seeds, not digits.
- **Thread count** can change last digits too; the committed runs used the default (2 threads on 2 cores).
- **GPU** (not measured here): cuBLAS may choose different reduction orders and some backward kernels use atomic
  adds; `torch.use_deterministic_algorithms(True)` with `CUBLAS_WORKSPACE_CONFIG=:4096:8` makes one GPU type
  repeatable at some speed cost.

## Wall times

Recorded by the commands themselves (`figures/wall_times.json`; the committed search and full grid shared the two
cores with other jobs for much of their run, `make reproduce` ran from a fresh clone on an otherwise idle machine):

{wall_time_table(figures)}
""")
    return "\n".join(parts)


def write_report(root: Path, figures: Path | None = None) -> list[str]:
    """Render ``docs/reproduction.md`` and the README's results block from ``figures/``; returns the files changed."""
    from .atomic import write_text_atomic

    figures = figures or root / "figures"
    changed = []
    page = root / "docs" / "reproduction.md"
    text = reproduction_page(figures)
    if not page.exists() or page.read_text(encoding="utf-8") != text:
        page.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(page, text)
        changed.append(str(page.relative_to(root)))
    readme = root / "README.md"
    old = readme.read_text(encoding="utf-8")
    new = replace_block(old, readme_block(figures), str(readme))
    if new != old:
        write_text_atomic(readme, new)
        changed.append("README.md")
    return changed


__all__ = ["BEGIN", "END", "render_tables", "replace_block", "current_block", "interval", "verdict", "findings",
           "moved_table", "final_choices", "winners_curse_table", "winners_curse_gap", "record_wall_time",
           "cached_stages", "readme_block", "reproduction_page", "write_report"]
