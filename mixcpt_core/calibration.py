"""Calibrating stage 2 on the start model: applied to the untouched model, does a recipe leave it as it was?

Stage 2 is meant to teach format. A real chat model (SmolLM2-135M-Instruct) already has it, so stage 2 applied to the
*untouched* start model must change nothing that matters: its chat answers to the real-world facts it knew, and its
format. A recipe that damages the start model on its own would, in the comparison, measure itself rather than what
stage 1 did. :func:`calibrate_stage2` runs the profile's stage 2 (selection, SFT, DPO, each recipe given) on the
start model, with the start model as its own "stage-1" model and DPO reference, and evaluates the result exactly as
the reproduction evaluates every model (:func:`mixcpt_core.pipelines.evaluate_cached`).

A row *holds* when the general chat QA on the known facts moves by at most ``tolerance`` (0.03) and the format
compliance is at least ``min_format`` (0.95). The general QA is read on the known *test* facts: calibration chooses
nothing (the recipes it runs are the fixed one and those of the committed search), it checks an instrument.
``mixcpt calibrate --profile smollm2`` writes ``figures/smollm2/calibration.csv`` and, first, the budget of the
format rule fitted to the start model's own replies (:func:`fit_reply_budget`, ``figures/smollm2/reply_budget.json``).
"""

from __future__ import annotations

import time
from pathlib import Path

BUDGET_FILE = "reply_budget.json"
CALIBRATION_BEGIN = ("<!-- calibration:begin (rendered by `mixcpt calibrate` from figures/smollm2/calibration.csv; "
                     "do not edit by hand) -->")
CALIBRATION_END = "<!-- calibration:end -->"
CALIBRATION_DOC = "docs/stage2.md"


def fit_reply_budget(cfg, root: Path, figures: Path, quantile: float = 0.96, max_tokens: int = 640) -> dict:
    """The chat budget fitted to the start model's own replies: its greedy replies (the profile's decoding, up to
    ``max_tokens``) to the *validation* questions (the world's ``domain_val`` and the real-world validation
    questions), and :func:`mixcpt_core.format_pool.fitted_budget` of their lengths (tokens, end-of-turn included; a
    reply that never ended counts as longer than any) at ``quantile``: the budget within which that share of its
    replies end. Written to ``figures/reply_budget.json`` with the share that ended within each of a few budgets;
    the profile's ``evaluation.max_new_tokens`` must be at least ``fitted_budget`` (a test checks it)."""
    import dataclasses
    import json
    import math

    from .atomic import write_text_atomic
    from .evaluation import generate_chat
    from .format_pool import fitted_budget
    from .models import load_causal_lm
    from .realworld import realworld_split
    from .reproduce import start_model_dir
    from .world import generate_world

    spec = dataclasses.replace(cfg.evaluation, max_new_tokens=max_tokens)
    model, tokenizer = load_causal_lm(start_model_dir(cfg, root))
    sets = {"general_val": realworld_split()["val"], "domain_val": generate_world(cfg.world).qa_split("domain_val")}
    lengths = {}
    for name, items in sets.items():
        replies = generate_chat(model, tokenizer, [q["question"] for q in items], max_tokens, spec.batch_size,
                                spec.leak_check, progress=True, **spec.decoding())
        lengths[name] = [len(tokenizer(r["content"], add_special_tokens=False).input_ids) + 1 if r["ended"]
                         else math.inf for r in replies]
    pooled = lengths["general_val"] + lengths["domain_val"]
    out = {"quantile": quantile, "max_tokens": max_tokens, "fitted_budget": fitted_budget(pooled, quantile),
           "ended_within": {str(b): sum(n <= b for n in pooled) / len(pooled)
                            for b in (64, 128, 192, 256, 320, 384, 448, 512, max_tokens)},
           "lengths": {k: [None if math.isinf(n) else n for n in v] for k, v in lengths.items()},
           "decoding": spec.decoding()}
    figures.mkdir(parents=True, exist_ok=True)
    write_text_atomic(figures / BUDGET_FILE, json.dumps(out, indent=1) + "\n")
    print(f"[calibrate] the start model's replies to {len(pooled)} validation questions: {quantile:.0%} end within "
          f"{out['fitted_budget']} tokens (evaluation budget: {cfg.evaluation.max_new_tokens})", flush=True)
    return out


CALIBRATION_COLUMNS = ("arm", "recipe", "general_known_start", "general_known_after", "general_known_diff",
                       "format_start", "format_after", "domain_after", "holds", "seconds")


def calibrate_stage2(cfg, root: Path, figures: Path, recipes: dict[str, dict], arms=("traditional", "mixcpt"),
                     tolerance: float = 0.03, min_format: float = 0.95, redo: bool = False) -> list[dict]:
    """Stage 2 of each arm in ``arms`` with each recipe of ``recipes`` (label -> align overrides, ``{}`` = the arm's
    fixed recipe) applied to the start model of ``cfg`` (a :class:`~mixcpt_core.pipelines.ReproduceConfig`);
    stages and evaluations cached in ``cfg.run_dir``. Returns one row per (arm, recipe), see
    :data:`CALIBRATION_COLUMNS`, and writes them to ``figures/calibration.csv`` after each row.

    A row already in that file is kept and not run again unless ``redo``: the committed file is what lets a
    calibration that a session cut off go on in the next one (each row costs ~40 min on 2 cores), whatever the run
    folder's cache still holds. Rows of other (arm, recipe) pairs already there are kept too."""
    import csv

    from .pipelines import evaluate_cached, run_stage2, weights_key
    from .reproduce import known_realworld_questions, start_model_dir, write_csv
    from .world import generate_world

    out_csv = figures / "calibration.csv"
    done: dict[tuple[str, str], dict] = {}
    if out_csv.exists() and not redo:
        with open(out_csv, newline="", encoding="utf-8") as f:
            done = {(r["arm"], r["recipe"]): r for r in csv.DictReader(f)}
    for a, label in done:
        print(f"[calibrate] {a} stage 2, {label}: kept from {out_csv} (--redo runs it again)", flush=True)
    rows = list(done.values())
    # recipe by recipe (both arms of one recipe before the next): a run cut off leaves whole comparisons behind
    todo = [(a, label) for label in recipes for a in arms if (a, label) not in done]
    if todo:
        from .pipelines import load_arm

        def align_of(a, label):
            return load_arm(a, cfg.arms_dir, root, cfg.cpt_overrides, cfg.align_overrides, recipe=recipes[label]).align

        # a search setting can spell out an arm's fixed recipe (full fine-tuning at its own rate): the same stage 2
        # is the same row, copied under the setting's label instead of trained again
        for a, label in list(todo):
            twin = next((r for r in rows if r["arm"] == a and r["recipe"] in recipes and
                         align_of(a, r["recipe"]) == align_of(a, label)), None)
            if twin is not None:
                rows.append({**twin, "recipe": label})
                todo.remove((a, label))
                print(f"[calibrate] {a} stage 2, {label}: the same stage 2 as {twin['recipe']!r}, its row copied",
                      flush=True)
        write_csv(rows, CALIBRATION_COLUMNS, out_csv)
    if not todo:
        return rows
    run_dir = root / cfg.run_dir
    start = start_model_dir(cfg, root)
    key = weights_key(start)
    world = generate_world(cfg.world)
    # the known set with its replies goes to the run folder: figures/realworld_known.json belongs to the results
    # that `mixcpt reproduce` commits, which calibration must not change
    general = known_realworld_questions(start, cfg, run_dir, run_dir / "calibration")
    ev = dict(spec=cfg.evaluation, general_items=general)
    before = evaluate_cached(start, key, world, run_dir, 0, **ev)
    for arm_name, label in todo:
        t0 = time.time()
        model_dir, _ = run_stage2(start, key, align_of(arm_name, label), 0, False, run_dir, root)
        after = evaluate_cached(model_dir, model_dir.name, world, run_dir, 0, **ev)
        diff = after["general_qa_acc"] - before["general_qa_acc"]
        row = {"arm": arm_name, "recipe": label, "general_known_start": before["general_qa_acc"],
               "general_known_after": after["general_qa_acc"], "general_known_diff": diff,
               "format_start": before["format_rate"], "format_after": after["format_rate"],
               "domain_after": after["domain_qa_acc"],
               "holds": int(abs(diff) <= tolerance + 1e-9 and after["format_rate"] >= min_format),
               "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(f"[calibrate] {arm_name} stage 2, {label}: general QA on known facts {row['general_known_start']:.3f} "
              f"-> {row['general_known_after']:.3f} ({diff:+.3f}), format {row['format_start']:.3f} -> "
              f"{row['format_after']:.3f}: {'holds' if row['holds'] else 'does NOT hold'}", flush=True)
        write_csv(rows, CALIBRATION_COLUMNS, out_csv)
    return rows


def calibration_table(rows: list[dict]) -> str:
    """The rows of ``calibration.csv`` as a markdown table (the block that ``docs/stage2.md`` renders)."""
    lines = ["| stage 2 of | recipe | general QA on known facts: start → after | format: start → after | "
             "domain QA after | holds | minutes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arm']} | {r['recipe']} | {float(r['general_known_start']):.3f} → "
                     f"{float(r['general_known_after']):.3f} ({float(r['general_known_diff']):+.3f}) | "
                     f"{float(r['format_start']):.3f} → {float(r['format_after']):.3f} | "
                     f"{float(r['domain_after']):.3f} | {'yes' if int(r['holds']) else '**no**'} | "
                     f"{float(r['seconds']) / 60:.0f} |")
    if rows:  # the line a reader looks for: does any recipe hold, and how far is the closest from the bar
        held = [r for r in rows if int(r["holds"])]
        closest = min(rows, key=lambda r: abs(float(r["general_known_diff"])))
        lines += ["", f"{len(held)} of {len(rows)} rows hold. Closest on general QA: {closest['arm']}'s stage 2 with "
                  f"{closest['recipe']} ({float(closest['general_known_diff']):+.3f})."]
    return "\n".join(lines)


def render_calibration(csv_path: Path, doc: Path) -> None:
    """Re-render the calibration block of ``doc`` (between :data:`CALIBRATION_BEGIN` and :data:`CALIBRATION_END`)
    from ``csv_path``."""
    import csv

    from .atomic import write_text_atomic
    from .runtimes import replace_block

    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    text = doc.read_text(encoding="utf-8")
    new = replace_block(text, CALIBRATION_BEGIN, CALIBRATION_END, calibration_table(rows), str(doc))
    if new != text:
        write_text_atomic(doc, new)


def search_recipes(search_cfg, root: Path) -> dict[str, dict]:
    """``{label: align overrides}``: the fixed recipe (``{}``) and every trained setting of a declared search
    (``skip`` trains nothing and needs no calibration)."""
    from .search import expand_space, setting_label, setting_overrides

    out = {"fixed recipe": {}}
    for s in expand_space(search_cfg.space):
        if not s.get("skip"):
            out[setting_label(s)] = setting_overrides(s)
    return out


__all__ = ["fit_reply_budget", "calibrate_stage2", "search_recipes", "calibration_table", "render_calibration",
           "CALIBRATION_COLUMNS", "BUDGET_FILE", "CALIBRATION_BEGIN", "CALIBRATION_END", "CALIBRATION_DOC"]
