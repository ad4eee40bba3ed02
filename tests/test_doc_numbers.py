"""No typed number can drift: every number in README.md and docs/*.md is rendered from a file, tied to one, or
declared for what it is.

**What counts as a number** (:data:`NUMBER`): a decimal (``0.663``, ``2.24``, ``1.2M``, ranges ``0.13–0.16``), a
percentage (``45%``, ``10–30%``), a duration (``9.7 s``, ``13 min``, ``11 min 37 s``, ``16-22 min``) and a count next
to ``tests``, ``questions``, ``steps``, ``seeds``, ``facts`` or ``people`` (``473 tests``, ``384 test questions``). Not
scanned: text inside inline code (commands, identifiers, versions such as ``torch 2.13.0``), link targets, and
version numbers with two dots.

**Where a number may stand**, one of:

1. inside a rendered block, ``<!-- NAME:begin (rendered ...) -->`` ... ``<!-- NAME:end -->``, whose NAME is in
   :data:`RENDERED_ELSEWHERE` (a test named there checks it equals its rendering) or in
   :data:`mixcpt_core.docblocks.BLOCKS` (checked here), or on a page rendered whole (:data:`WHOLE_PAGES`);
2. tied to a file, :data:`TIES`: ``(page, text) -> (source file, reader)``; the reader's value, rounded as the page
   writes it (to its last digit, its unit, its ``M`` or ``k``), is the number. Sources that ``make reproduce`` or the
   notebooks rewrite are read as committed (``git show HEAD:``) and as in the working tree: either passes;
3. a one-off measurement, :data:`ONE_OFF`: it cannot be rendered (no file keeps it), so the section of the page that
   states it (from the heading above it to the next) names its date and, where it still exists, its command;
4. not a measurement, :data:`NOT_MEASURED`, with the reason: a threshold or a design constant of the method, a
   version, a citation, arithmetic on other numbers of the page.

A number found nowhere fails, so a measurement typed into a doc fails until it is rendered or registered; an entry
whose number left its page fails too, so the registry does not rot. Keys are texts: the same text twice on one page
is one entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from .committed import versions
from .conftest import ROOT

UNIT = r"(?:ms|s|min|h|seconds?|minutes?|hours?)"
COUNT = r"(?:tests?|questions?|steps?|seeds?|facts?|people)"
NUMBER = re.compile(rf"""(?<![\w.\-/=:@#])(?:
    \d+(?:\.\d+)?(?:\s?[–-]\s?\d+(?:\.\d+)?)?\s?%
  | \d+\s(?:h\s\d+\smin|min\s\d+\ss)(?![\w-])
  | \d+(?:\.\d+)?(?:\s?[–-]\s?\d+(?:\.\d+)?)?\s?{UNIT}(?![\w-])
  | (?<!stage\s)\d+(?:,\d{{3}})*(?:\s?[–-]\s?\d+(?:,\d{{3}})*)?\s{COUNT}\b
  | \d*\.\d+(?:\s?[–-]\s?\d*\.\d+)?[kM]?(?![\d.]|\w)
)""", re.X)
BLOCK = re.compile(r"<!-- ([\w-]+):begin.*?-->.*?<!-- \1:end -->", re.S)
NOT_PROSE = re.compile(r"(?<!`)`[^`]+`(?!`)|\]\([^)]*\)", re.S)  # inline code, link targets

PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
WHOLE_PAGES = {"docs/reproduction.md": "tests/test_reproduce.py::test_readme_and_docs_are_rendered_from_the_committed_results"}
RENDERED_ELSEWHERE = {
    "results": "tests/test_reproduce.py::test_readme_and_docs_are_rendered_from_the_committed_results",
    "scale": "tests/test_profiles.py (the committed scale table is the rendering of the committed results)",
    "course": "tests/test_runtimes.py", "runtimes": "tests/test_runtimes.py",
    "coverage": "tests/test_stats.py", "calibration": "tests/test_format_pool.py",
}


def numbers(text: str) -> list[tuple[int, str]]:
    """``(position, text)`` of every number outside rendered blocks, inline code and link targets."""
    masked = BLOCK.sub(lambda m: " " * len(m.group()), text)
    masked = NOT_PROSE.sub(lambda m: " " * len(m.group()), masked)
    return [(m.start(), re.sub(r"\s+", " ", m.group())) for m in NUMBER.finditer(masked)]


# -- reading a number the way the page writes it -----------------------------------------------------------------------
def parse(text: str) -> list[tuple[float, float]]:
    """The values of a number's text with their resolution: ``0.663`` -> [(0.663, 0.001)], ``45%`` -> [(0.45, 0.01)],
    ``11 min 37 s`` -> [(697, 1)], ``16-22 min`` -> [(960, 60), (1320, 60)], ``1.19M`` -> [(1190000, 10000)]."""
    text = text.replace("−", "-")
    m = re.fullmatch(r"(\d+) (h|min) (\d+) (min|s)", text)
    if m:
        big, small = (3600, 60) if m[2] == "h" else (60, 1)
        return [(int(m[1]) * big + int(m[3]) * small, small)]
    scale, unit = 1.0, ""
    m = re.fullmatch(r"(.+?)\s?(%|ms|s|min|h|seconds?|minutes?|hours?|[kM])", text)
    if m:
        text, unit = m[1], m[2]
        scale = {"%": 0.01, "ms": 0.001, "s": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
                 "h": 3600, "hour": 3600, "hours": 3600, "k": 1e3, "M": 1e6}[unit]
    text = re.sub(r"\s" + COUNT + r"$", "", text)
    out = []
    for part in re.split(r"\s?[–-]\s?", text):
        part = part.replace(",", "")
        decimals = len(part.split(".")[1]) if "." in part else 0
        out.append((float(part) * scale, 10 ** -decimals * scale))
    return out


def matches(text: str, value) -> bool:
    """``value`` (a number, a (low, high) pair for a range, or a set of numbers any of which may be meant) rounds to
    the number ``text`` writes."""
    got = parse(text)
    if isinstance(value, (set, frozenset)):
        return any(matches(text, v) for v in value)
    want = list(value) if isinstance(value, (tuple, list)) else [value]
    return len(got) == len(want) and all(abs(float(v) - x) <= res / 2 + 1e-9 * max(1.0, abs(x))
                                         for (x, res), v in zip(got, want))


# -- readers: source text -> value ---------------------------------------------------------------------------------
def js(*keys):
    def read(text):
        v = json.loads(text)
        for k in keys:
            v = v[k]
        return v
    return read


def yml(*keys):
    def read(text):
        v = yaml.safe_load(text)
        for k in keys:
            v = v[k]
        return v
    return read


def count(*keys):
    def read(text):
        return len(yml(*keys)(text))
    return read


def notebook_output(pattern: str, group: int = 1):
    """A number in a notebook's stored outputs (text and plain-text results, in order), by regex."""
    def read(text):
        nb = json.loads(text)
        out = "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                        for c in nb["cells"] for o in c.get("outputs", []))
        m = re.search(pattern, out)
        assert m, f"{pattern!r} not in the notebook's outputs"
        return float(m[group].replace(",", ""))
    return read


def runtime(*names, key="reference"):
    """Seconds of notebooks in docs/runtimes.json (summed)."""
    def read(text):
        nbs = json.loads(text)["notebooks"]
        return sum(nbs[n][key]["seconds"] for n in names)
    return read


def text_duration(pattern: str):
    """A duration written in a source text (``2 min 6 s``), found by regex (group 1), in seconds."""
    def read(text):
        m = re.search(pattern, text)
        assert m, f"{pattern!r} not found"
        ((seconds, _),) = parse(m[1])
        return seconds
    return read


def code(fn: Callable[[], object]):
    """A value computed by the package itself (a constant, a function's default, a quantile)."""
    return lambda _text: fn()


def csv_value(where: dict, column: str):
    def read(text):
        import csv
        import io

        rows = [r for r in csv.DictReader(io.StringIO(text)) if all(r[k] == v for k, v in where.items())]
        assert len(rows) == 1, (where, len(rows))
        return float(rows[0][column])
    return read


def seed_differences(text):
    """Mix-CPT − traditional on domain QA per seed, chat start (figures/results_full.csv), as a set."""
    import csv
    import io

    acc = {(r["arm"], r["seed"]): float(r["domain_qa_acc"]) for r in csv.DictReader(io.StringIO(text))
           if r["start"] == "chat"}
    return {acc[("mixcpt", s)] - acc[("traditional", s)] for a, s in acc if a == "mixcpt"}


def chance_of_the_stored_probe():
    from mixcpt_core.world import ATTRIBUTE_VALUES, ATTRIBUTES

    return sum(1 / len(ATTRIBUTE_VALUES[a]) for a in ATTRIBUTES) / len(ATTRIBUTES)


def world_counts(config: str, *keys):
    """Sizes of the world a config describes: people and questions per split, as a set of numbers."""
    def read(text):
        from mixcpt_core.world import WorldConfig, generate_world

        world = generate_world(WorldConfig(**yml(*keys)(text)))
        people = {}
        for e in world.entities:
            people[e["split"]] = people.get(e["split"], 0) + 1
        qa = {}
        for q in world.qa:
            qa[q["split"]] = qa.get(q["split"], 0) + 1
        return set(people.values()) | set(qa.values()) | {sum(1 for e in world.entities if e["group"] == "domain")}
    return read


BASE = "checkpoints/base-tiny/mixcpt_base.json"
SMALL = "checkpoints/base-small/mixcpt_base.json"
WALL = "figures/wall_times.json"
RUNTIMES = "docs/runtimes.json"
NB02 = "notebooks/02_cpt_with_distillation.ipynb"
REPRODUCE = "configs/reproduce-tiny.yaml"
MIX = "figures/bench_mix.json"
LSSD = "figures/bench_lssd.json"
HISTORY = {"0.11": 400, "0.42": 600, "0.68": 800, "0.92": 1600}  # docs/base-model.md: held-out QA at these steps


def _heldout_at(step):
    return lambda text: next(r["heldout_qa_acc"] for r in json.loads(text)["history"]
                             if r.get("step") == step and "heldout_qa_acc" in r)


def _step_minutes(step: str):
    """The durations of one step's row of docs/first-hour.md (its one-off measurements), as (fewest, most)."""
    def read(text):
        row = next(line for line in text.splitlines() if line.startswith(f"| {step}"))
        seconds = [parse(t)[0][0] for _, t in numbers(row) if re.search(r"\d (min|s)$", t)]
        return (min(seconds), max(seconds))
    return read


T = tuple  # (source, reader)
TIES: dict[tuple[str, str], T] = {
    # README.md
    ("README.md", "3 seeds"): (REPRODUCE, count("seeds")),
    ("README.md", "12 min"): (WALL, js("mixcpt reproduce --profile tiny", "seconds")),
    ("README.md", "16-22 min"): ("docs/first-hour.md", _step_minutes("2. the tests")),
    ("README.md", "1.2M"): (BASE, js("n_parameters")),
    ("README.md", "6.6M"): (SMALL, js("n_parameters")),
    # docs/first-hour.md
    ("docs/first-hour.md", "11 min 37 s"): (WALL, js("mixcpt reproduce --profile tiny", "seconds")),
    ("docs/first-hour.md", "4 min 44 s"): (RUNTIMES, runtime(*(f"0{i}_{n}.ipynb" for i, n in enumerate(
        ["world_and_base_model", "data_mixing", "cpt_with_distillation", "format_alignment", "evaluation",
         "scaling_up"])))),
    ("docs/first-hour.md", "8 s"): (RUNTIMES, runtime("00_world_and_base_model.ipynb")),
    ("docs/first-hour.md", "7 s"): (RUNTIMES, runtime("01_data_mixing.ipynb")),  # and 06's
    ("docs/first-hour.md", "2 min 23 s"): (RUNTIMES, runtime("02_cpt_with_distillation.ipynb")),
    ("docs/first-hour.md", "11 s"): (RUNTIMES, runtime("03_format_alignment.ipynb")),
    ("docs/first-hour.md", "1 min 49 s"): (RUNTIMES, runtime("05_scaling_up.ipynb")),
    ("docs/first-hour.md", "2 min 6 s"): (RUNTIMES, text_duration(r"(\d+ min \d+ s) the first time")),
    # docs/base-model.md
    ("docs/base-model.md", "0.044"): ("mixcpt_core/world.py", code(chance_of_the_stored_probe)),
    ("docs/base-model.md", "1,600 steps"): ("configs/base-tiny.yaml", yml("max_steps")),
    ("docs/base-model.md", "3.28M"): (BASE, js("train_tokens")),
    ("docs/base-model.md", "4.6"): ("checkpoints/base-tiny/model.safetensors",
                                    code(lambda: (ROOT / "checkpoints/base-tiny/model.safetensors").stat().st_size
                                         / 2**20)),
    ("docs/base-model.md", "0.92"): (BASE, _heldout_at(1600)),
    ("docs/base-model.md", "25%"): ("configs/base-tiny.yaml", yml("decay_fraction")),
    ("docs/base-model.md", "400 steps"): (BASE, lambda t: {r["step"] for r in json.loads(t)["history"]
                                                          if "heldout_qa_acc" in r}),  # a step it was evaluated at
    **{("docs/base-model.md", k): (BASE, _heldout_at(step)) for k, step in HISTORY.items()},
    # docs/stage1.md
    ("docs/stage1.md", "0.5"): ("configs/cpt-tiny.yaml", yml("lssd", "lam")),
    ("docs/stage1.md", "0.25"): ("figures/sweep.csv", lambda t: _sweep_peak(t, "cpt.lssd.lam", "domain_qa_acc")),
    ("docs/stage1.md", "6 steps"): (LSSD, js("config", "steps")),
    ("docs/stage1.md", "1.2M"): (BASE, js("n_parameters")),
    ("docs/stage1.md", "0.325 s"): (LSSD, js("results", "tiny_vocab", "ce", "step_s")),
    ("docs/stage1.md", "1.07"): (LSSD, js("results", "tiny_vocab", "ratios", "cached_over_ce_time")),
    ("docs/stage1.md", "0.95"): (LSSD, js("results", "vocab_32k", "ratios", "chunked_over_ce_time")),
    ("docs/stage1.md", "0.45"): (LSSD, js("results", "vocab_32k", "ratios", "chunked_over_ce_peak_mem")),
    ("docs/stage1.md", "0.9997"): ("figures/cache_error.json", lambda t: next(
        r["grad_cosine"] for r in json.loads(t)["rows"] if r["k"] == 64)),
    ("docs/stage1.md", "400 steps"): ("configs/cpt-tiny.yaml", yml("max_steps")),
    ("docs/stage1.md", "0.919"): (NB02, notebook_output(r"\[step 0\] heldout_qa_acc ([\d.]+)")),
    ("docs/stage1.md", "0.042"): (NB02, notebook_output(r"\[step 0\] heldout_qa_acc [\d.]+\s+domain_qa_acc ([\d.]+)")),
    ("docs/stage1.md", "0.680"): (NB02, notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+\d+\s+\d+\s+([\d.]+)")),
    ("docs/stage1.md", "0.435"): (NB02, notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+)")),
    ("docs/stage1.md", "85 s"): (NB02, notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+\d+\s+(\d+)")),
    ("docs/stage1.md", "0.547"): (NB02, notebook_output(r"plain CPT \(lambda=0\)\s+\d+\s+\d+\s+([\d.]+)")),
    ("docs/stage1.md", "0.555"): (NB02, notebook_output(r"plain CPT \(lambda=0\)\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+)")),
    ("docs/stage1.md", "66 s"): (NB02, notebook_output(r"plain CPT \(lambda=0\)\s+\d+\s+(\d+)")),
    ("docs/stage1.md", "0.262"): (NB02, notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+([\d.]+)\s+[\d.]+\s*\n")),
    ("docs/stage1.md", "0.683"): (NB02, notebook_output(r"plain CPT \(lambda=0\)\s+([\d.]+)\s+[\d.]+\s*(?:\n|$)")),
    ("docs/stage1.md", "0.26"): (NB02, notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+([\d.]+)\s+[\d.]+\s*\n")),
    ("docs/stage1.md", "0.68"): (NB02, lambda t: {notebook_output(r"plain CPT \(lambda=0\)\s+([\d.]+)\s+[\d.]+\s*(?:\n|$)")(
        t), notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+\d+\s+\d+\s+([\d.]+)")(t)}),
    ("docs/stage1.md", "0.55"): (NB02, lambda t: {notebook_output(r"plain CPT \(lambda=0\)\s+\d+\s+\d+\s+([\d.]+)")(t),
                                                  notebook_output(r"plain CPT \(lambda=0\)\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+)")(t)}),
    ("docs/stage1.md", "0.43"): (NB02, notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+)")),
    ("docs/stage1.md", "3 seeds"): (REPRODUCE, count("seeds")),
    # docs/stage2.md
    ("docs/stage2.md", "384 test"): (REPRODUCE, lambda t: len(_tiny_world().qa_split("general_heldout"))),
    ("docs/stage2.md", "0.919"): (BASE, js("metrics", "general_heldout_qa_acc")),
    ("docs/stage2.md", "0.680"): (NB02, notebook_output(r"Mix-CPT \(lambda=0\.5\)\s+\d+\s+\d+\s+([\d.]+)")),
    ("docs/stage2.md", "95%"): ("mixcpt_core/format_pool.py", code(lambda: _default("format_pool", "PoolConfig",
                                                                                     "budget_quantile"))),
    ("docs/stage2.md", "0.03"): ("mixcpt_core/calibration.py", code(lambda: _calibration_default("tolerance"))),
    ("docs/stage2.md", "0.95"): ("mixcpt_core/calibration.py", code(lambda: _calibration_default("min_format"))),
    # docs/scaling.md
    ("docs/scaling.md", "1.2M"): (BASE, js("n_parameters")),
    ("docs/scaling.md", "6.6M"): (SMALL, js("n_parameters")),
    ("docs/scaling.md", "5.5"): (SMALL, lambda t: json.loads(t)["n_parameters"] / json.loads(
        (ROOT / BASE).read_text())["n_parameters"]),
    ("docs/scaling.md", "384 test"): (REPRODUCE, lambda t: len(_tiny_world().qa_split("domain"))),
    ("docs/scaling.md", "3 seeds"): ("configs/reproduce-small.yaml", count("seeds")),
    ("docs/scaling.md", "4 facts"): ("mixcpt_core/world.py", code(lambda: len(_attributes()))),
    ("docs/scaling.md", "75 test"): ("configs/smollm2/mix.yaml", world_counts("configs/smollm2/mix.yaml", "world")),
    ("docs/scaling.md", "300 test"): ("configs/smollm2/mix.yaml", world_counts("configs/smollm2/mix.yaml", "world")),
    ("docs/scaling.md", "100 questions"): ("configs/smollm2/mix.yaml",
                                           world_counts("configs/smollm2/mix.yaml", "world")),
    ("docs/scaling.md", "240 steps"): ("configs/smollm2/cpt.yaml", yml("max_steps")),
    ("docs/scaling.md", "318 questions"): ("mixcpt_core/realworld.py", code(lambda: len(_realworld()))),
    ("docs/scaling.md", "0.5"): ("configs/smollm2-cpt.yaml", yml("lssd", "lam")),
    ("docs/scaling.md", "1 min 49 s"): (RUNTIMES, runtime("05_scaling_up.ipynb")),
    ("docs/scaling.md", "1,000 steps"): ("configs/gpu-qwen2.5-0.5b-full-cpt.yaml", yml("max_steps")),
    ("docs/scaling.md", "65.5M"): ("configs/gpu-qwen2.5-0.5b-mix.yaml", yml("total_tokens")),
    # docs/world.md
    ("docs/world.md", "0.2"): ("mixcpt_core/world.py", code(lambda: _default("world", "WorldConfig", "val_fraction"))),
    ("docs/world.md", "96 questions"): (REPRODUCE, lambda t: len(_tiny_world().qa_split("general_val"))),
    ("docs/world.md", "384 test"): (REPRODUCE, lambda t: len(_tiny_world().qa_split("domain"))),
    ("docs/world.md", "1.2M"): (BASE, js("n_parameters")),
    ("docs/world.md", "6.6M"): (SMALL, js("n_parameters")),
    # docs/data-mix.md
    ("docs/data-mix.md", "0.6"): ("configs/mix-tiny.yaml", lambda t: _share(t, "domain")),
    ("docs/data-mix.md", "60%"): ("configs/mix-tiny.yaml", lambda t: _share(t, "domain")),
    ("docs/data-mix.md", "0.3"): ("configs/mix-tiny.yaml", lambda t: _share(t, "instructions")),
    ("docs/data-mix.md", "0.1"): ("configs/mix-tiny.yaml", lambda t: _share(t, "preferences")),
    ("docs/data-mix.md", "0.016%"): (MIX, js("runs", "tiny_world", "padding_fraction")),
    ("docs/data-mix.md", "0.59998"): (MIX, js("runs", "tiny_world", "shares", "domain")),
    ("docs/data-mix.md", "0.30001"): (MIX, js("runs", "tiny_world", "shares", "instructions")),
    ("docs/data-mix.md", "0.10001"): (MIX, js("runs", "tiny_world", "shares", "preferences")),
    ("docs/data-mix.md", "400 steps"): ("configs/cpt-tiny.yaml", yml("max_steps")),
    ("docs/data-mix.md", "0.4M"): (MIX, js("runs", "tiny_world", "tokenize_tokens_per_s")),
    ("docs/data-mix.md", "1.19M"): (MIX, js("runs", "large_world", "packed_tokens")),
    ("docs/data-mix.md", "4 s"): (MIX, js("runs", "large_world", "seconds", "total")),
    ("docs/data-mix.md", "0.4 s"): (MIX, js("runs", "tiny_world", "seconds", "total")),
    # docs/running-anywhere.md
    ("docs/running-anywhere.md", "5 steps"): ("figures/bench_peers.json", js("config", "steps")),
    ("docs/running-anywhere.md", "10 steps"): ("mixcpt_core/bench_gpu.py", code(lambda: _bench_gpu_full()["steps"])),
    ("docs/running-anywhere.md", "4 steps"): ("tests/test_fsdp.py", lambda t: int(re.search(r"^STEPS = (\d+)", t,
                                                                                              re.M)[1])),
    ("docs/running-anywhere.md", "0.5"): ("figures/bench_peers.json", js("config", "lambda")),  # and test_fsdp's λ
    ("docs/running-anywhere.md", "300 s"): ("tests/test_fsdp.py", lambda t: int(re.search(r"timeout=(\d+)", t)[1])),
    # docs/method.md
    ("docs/method.md", "0.5"): ("configs/cpt-tiny.yaml", yml("lssd", "lam")),
    ("docs/method.md", "60%"): ("configs/mix-tiny.yaml", lambda t: _share(t, "domain")),
    ("docs/method.md", "0.6"): ("configs/mix-tiny.yaml", lambda t: _share(t, "domain")),
    ("docs/method.md", "0.3"): ("configs/mix-tiny.yaml", lambda t: _share(t, "instructions")),
    ("docs/method.md", "0.1"): ("configs/mix-tiny.yaml", lambda t: _share(t, "preferences")),
    # docs/evaluation.md
    ("docs/evaluation.md", "0.044"): ("figures/results_full.csv", lambda t: seed_differences(t) | {
        chance_of_the_stored_probe()}),
    ("docs/evaluation.md", "0.148"): ("figures/results_full.csv", seed_differences),
    ("docs/evaluation.md", "0.156"): ("figures/results_full.csv", seed_differences),
    ("docs/evaluation.md", "0.042"): ("figures/comparisons_full.csv", lambda t: {
        _chat_domain(t, "boot_lo"), -_chat_domain(t, "lo")}),  # written [+0.042, ...] and [−0.042, ...]
    ("docs/evaluation.md", "0.183"): ("figures/comparisons_full.csv", lambda t: _chat_domain(t, "boot_hi")),
    ("docs/evaluation.md", "0.274"): ("figures/comparisons_full.csv", lambda t: _chat_domain(t, "hi")),
    ("docs/evaluation.md", "96%"): ("figures/smollm2/reply_budget.json", js("quantile")),
    ("docs/evaluation.md", "0.03"): ("mixcpt_core/calibration.py", code(lambda: _calibration_default("tolerance"))),
    ("docs/evaluation.md", "0.95"): ("mixcpt_core/calibration.py", code(lambda: _calibration_default("min_format"))),
    ("docs/evaluation.md", "4.30"): ("mixcpt_core/stats.py", code(lambda: _t(0.975, 2))),
    ("docs/evaluation.md", "1.96"): ("mixcpt_core/stats.py", code(lambda: _t(0.975, 1e9))),
    ("docs/evaluation.md", "384 questions"): ("figures/comparisons_full.csv", lambda t: _chat_domain(t, "n_questions")),
    ("docs/evaluation.md", "75–80%"): ("figures/interval_coverage.csv", lambda t: _detected(t)),
    ("docs/evaluation.md", "93%"): ("tests/test_stats.py", lambda t: 0.93 if "0.93" in t else None),
    ("docs/evaluation.md", "72%"): ("tests/test_stats.py", lambda t: 0.72 if "0.72" in t else None),
    ("docs/evaluation.md", "88%"): ("tests/test_stats.py", lambda t: 0.88 if "0.88" in t else None),
}


def _bench_gpu_full():
    from mixcpt_core.bench_gpu import FULL

    return FULL


def _tiny_world():
    from mixcpt_core.world import WORLD_PRESETS, generate_world

    return generate_world(WORLD_PRESETS["tiny"])


def _attributes():
    from mixcpt_core.world import ATTRIBUTES

    return ATTRIBUTES


def _realworld():
    from mixcpt_core.realworld import REALWORLD_QA

    return REALWORLD_QA


def _default(module: str, cls: str, field: str):
    import dataclasses
    import importlib

    return next(f.default for f in dataclasses.fields(getattr(importlib.import_module(f"mixcpt_core.{module}"), cls))
                if f.name == field)


def _calibration_default(name: str):
    import inspect

    from mixcpt_core import calibration

    defaults = [p.default for f in vars(calibration).values() if inspect.isfunction(f) and f.__module__ ==
                calibration.__name__ for n, p in inspect.signature(f).parameters.items() if n == name]
    assert defaults and len(set(defaults)) == 1, (name, defaults)
    return defaults[0]


def _t(p, df):
    from mixcpt_core.stats import t_quantile

    return t_quantile(p, df)


def _share(text, name):
    return next(s["share"] for s in yaml.safe_load(text)["sources"] if s["name"] == name)


def _sweep_peak(text, param, metric):
    import io

    import pandas as pd

    d = pd.read_csv(io.StringIO(text))
    means = d[d["param"] == param].groupby("value")[metric].mean()
    return float(means.idxmax())


def _chat_domain(text, column):
    return csv_value({"start": "chat", "a": "mixcpt", "b": "traditional", "metric": "domain_qa_acc"}, column)(text)


def _detected(text):
    import csv
    import io

    rates = [float(r["detected_at_mdd"]) for r in csv.DictReader(io.StringIO(text)) if r["detected_at_mdd"]]
    return (min(rates), max(rates))


@dataclass(frozen=True)
class OneOff:
    """Numbers measured once, on ``date``, with ``command`` (``None``: the code is gone; ``why`` says so): the page
    section that states them names both."""

    date: str
    command: str | None
    numbers: tuple[str, ...]
    why: str = ""


ONE_OFF: dict[str, list[OneOff]] = {
    "docs/first-hour.md": [
        OneOff("2026-12-03", "make reproduce", ("1 min 43 s", "0.0026", "0.0006", "0.0009"),
               "creating .venv and comparing the Xeon's results with the committed ones"),
        OneOff("2026-12-03", "make test", ("19 min 47 s", "21 min 33 s", "16 min 10 s", "21–25 s", "13–14 s")),
        OneOff("2026-11-30", ".venv/bin/mixcpt evaluate runs/tiny/align",
               ("1 min 20 s", "9 s", "6 s", "0.081", "0.377")),
    ],
    "docs/base-model.md": [
        OneOff("2026-11-25", "mixcpt pretrain-base --config configs/base-tiny.yaml", ("7 min 21 s", "428 s", "9 s",
                                                                                      "7.7k")),
        OneOff("2026-11-30", "make reproduce", ("8 min 11 s", "45 s")),
        OneOff("2026-11-30", "make test", ("4 min 41 s", "40 s", "4 min 1 s")),
        OneOff("2026-11-25", None, ("150 people", "0.31", "0.08", "3.2M"), "the feasibility study's code is gone"),
        OneOff("2026-11-25", None, ("36%",), "the token share of the up-sampled QA, counted once"),
    ],
    "docs/stage1.md": [
        OneOff("2026-11-25", "mixcpt bench lssd", ("3 min 49 s", "45%", "0.13–0.16 s", "0.03 s", "1.45", "10–30%",
                                                   "3.9 s")),
        OneOff("2026-11-25", "mixcpt bench cache-error", ("0.12",), "the cosine before the tail fix"),
    ],
    "docs/stage2.md": [
        OneOff("2026-11-25", "mixcpt align configs/align-tiny.yaml", (
            "0.027", "0.331", "15 s", "480 questions", "0.000", "0.052", "0.958", "0.058", "0.954", "1.000", "0.377",
            "0.452", "0.515", "0.256", "0.360", "0.977")),
    ],
    "docs/scaling.md": [
        OneOff("2026-11-30", "/usr/bin/time -v python -c", ("0.5 s", "1.5")),
        OneOff("2026-12-01", "pytest tests/test_distributed.py -k two_processes", ("13–14 s",)),
    ],
    "docs/configs.md": [OneOff("2026-11-25", None, ("40 s",), "a hub call without network, timed once")],
    "docs/notebooks.md": [OneOff("2026-11-30", "make notebooks", ("5 min 3 s",))],
    "docs/data-mix.md": [
        OneOff("2026-11-25", "mixcpt mix configs/mix-tiny.yaml", ("0.73", "0.21", "0.06", "34.0", "19.5", "15.8",
                                                                   "30.1", "17.1", "13.0")),
        OneOff("2026-11-25", "mixcpt bench mix", ("0.25–0.42M",), "the range over 4 runs; the JSON keeps the last"),
    ],
    "docs/running-anywhere.md": [
        OneOff("2026-11-30", "tests/test_colab.py -m colab", ("77 s", "29 s", "48 s")),
        OneOff("2026-12-03", "tests/test_colab.py -m colab", ("3 min 15 s", "175 s", "20 s")),
        OneOff("2026-11-30", None, ("2.16 s",), "timed by a script not kept"),
        OneOff("2026-11-30", "mixcpt bench peers --out figures/bench_peers.json", ("8 min 31 s",)),
        OneOff("2026-11-30", "mixcpt bench peers --dry-run", ("26 s",)),
        OneOff("2026-12-01", "python3 figures/gpu/mixed_precision.py", ("2.5 minutes",), "an estimate from its run"),
        OneOff("2026-12-01", "mixcpt bench gpu --dry-run", ("42 s",)),
        OneOff("2026-11-30", "pytest tests/test_fsdp.py", ("18-19 s", "77 s", "25 s", "19 s", "34 s", "12-16 s", "6 s",
                                                         "379 s", "482 s", "5.49", "4.85")),
        OneOff("2026-11-30", "pip download deepspeed", ("20 s",)),
    ],
}

NOT_MEASURED: dict[tuple[str, str], str] = {
    ("docs/evaluation.md", "95%"): "the intervals' confidence level, a design constant (mixcpt_core/stats.py)",
    ("docs/evaluation.md", "80%"): "the power of the minimum detectable difference, a design constant",
    ("docs/evaluation.md", "5%"): "the two-sided test's level, a design constant",
    ("docs/evaluation.md", "3 seeds"): "the seed counts the interval is designed for and flags below (stats.py)",
    ("docs/evaluation.md", "5 seeds"): "the seed counts the interval is designed and simulated for",
    ("docs/scaling.md", "95%"): "the intervals' confidence level, a design constant",
    ("docs/running-anywhere.md", "0.6"): "arithmetic: a [1,024 x 152k] float32 buffer, in GB",
    ("docs/running-anywhere.md", "5 %"): "the target set for the chunked loss, not a measurement",
    ("docs/running-anywhere.md", "5%"): "the target set for the chunked loss, not a measurement",
    ("docs/running-anywhere.md", "1.16"): "TRL's version",
    ("docs/running-anywhere.md", "1.15"): "accelerate's version",
    ("docs/running-anywhere.md", "3.11"): "Python's version",
    ("docs/running-anywhere.md", "2.2"): "arithmetic: 2 x 8,192 x 896 x 151,936 FLOPs, in TFLOP",
    ("docs/running-anywhere.md", "20 minutes"): "a limit CI must stay under, not a measurement",
    ("README.md", "2407.10804"): "the paper's arXiv number",
    ("docs/method.md", "2407.10804"): "the paper's arXiv number",
}


# -- the tests ---------------------------------------------------------------------------------------------------------
def _registered(page: str) -> dict[str, str]:
    """Every number text the registries know for ``page``, with the registry that holds it."""
    known = {text: "TIES" for (p, text) in TIES if p == page}
    for o in ONE_OFF.get(page, []):
        known.update({t: "ONE_OFF" for t in o.numbers if t not in known})
    known.update({text: "NOT_MEASURED" for (p, text) in NOT_MEASURED if p == page and text not in known})
    return known


@pytest.mark.parametrize("page", [p for p in PAGES if p not in WHOLE_PAGES])
def test_every_number_is_rendered_or_registered(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    known = _registered(page)
    typed = sorted({n for _, n in numbers(text)} - set(known))
    assert not typed, (f"{page}: numbers typed by hand: {typed}. Render them from their file (a block: "
                       "mixcpt_core/docblocks.py), or register them in tests/test_doc_numbers.py: TIES (tied to a "
                       "file), ONE_OFF (a one-off measurement: its section must name its date and command) or "
                       "NOT_MEASURED (with the reason)")
    stale = sorted(set(known) - {n for _, n in numbers(text)})
    assert not stale, f"{page}: registered numbers no longer on the page (remove them from the registry): {stale}"


@pytest.mark.parametrize("key", sorted(TIES), ids=lambda k: f"{k[0]}:{k[1]}")
def test_every_tied_number_equals_its_file(key):
    page, text = key
    source, read = TIES[key]
    values = [read(v) for v in versions(source)] if (ROOT / source).suffix in (".json", ".csv", ".yaml", ".ipynb",
                                                                               ".md", ".py") else [read("")]
    assert any(matches(text, v) for v in values), (
        f"{page}: {text!r} is not what {source} gives ({values}): re-render it or update the page")


def _sections(text: str) -> list[tuple[int, int]]:
    starts = [0] + [m.start() for m in re.finditer(r"^#+ ", text, re.M)] + [len(text)]
    return list(zip(starts, starts[1:]))


@pytest.mark.parametrize("page", sorted(ONE_OFF))
def test_one_off_measurements_say_when_and_how(page):
    """The section stating a one-off measurement names its date and its command."""
    text = (ROOT / page).read_text(encoding="utf-8")
    found = numbers(text)
    for o in ONE_OFF[page]:
        assert o.command or o.why, o
        for n in o.numbers:
            places = [pos for pos, t in found if t == n]
            assert places, f"{page}: {n!r} is not on the page"
            sections = [text[a:b] for a, b in _sections(text) if any(a <= pos < b for pos in places)]
            assert any(o.date in s and (o.command is None or o.command in s) for s in sections), (
                f"{page}: the section stating {n!r} must name its date {o.date} and its command {o.command!r}")


def test_every_block_has_a_renderer_and_equals_its_rendering(tmp_path):
    """Every ``<!-- NAME:begin`` of README and docs is a block a test checks: one of docblocks.BLOCKS (checked here:
    the page's block equals the rendering of the committed source or of the working tree's) or one rendered by
    another command and checked by the test named in RENDERED_ELSEWHERE."""
    import shutil

    from mixcpt_core.docblocks import BLOCKS, current

    for page in PAGES:
        for name in re.findall(r"<!-- ([\w-]+):begin", (ROOT / page).read_text(encoding="utf-8")):
            assert name in BLOCKS or name in RENDERED_ELSEWHERE, f"{page}: block {name!r} has no renderer a test checks"
            if name in BLOCKS:
                assert BLOCKS[name].page == page, (name, page)
    for name, b in BLOCKS.items():
        renderings = []
        for i, text in enumerate(versions(b.source)):
            root = tmp_path / f"{name}-{i}"
            (root / b.source).parent.mkdir(parents=True)
            (root / b.source).write_text(text, encoding="utf-8")
            renderings.append(b.render(root))
        assert current(name) in renderings, f"{b.page}: block {name!r} is not the rendering of {b.source}: run `{b.command}`"
        shutil.rmtree(tmp_path, ignore_errors=True)
        tmp_path.mkdir()


def test_the_rule_catches_a_typed_measurement():
    """What the rule finds, and that a number typed into a page is caught."""
    text = ("<!-- results:begin (rendered) -->\n0.111 and 12 min\n<!-- results:end -->\nThe run took 13 min 2 s; "
            "`torch 2.13.0` and `--steps 6` are code; 473 tests passed, 45% of 384 test questions, 16-22 min, "
            "0.25–0.42M tokens/s, version 1.2.3, [x](figures/a0.5.png).")
    assert [t for _, t in numbers(text)] == ["13 min 2 s", "473 tests", "45%", "384 test", "16-22 min", "0.25–0.42M"]
    assert parse("13 min 2 s") == [(782, 1)] and parse("45%") == [(0.45, 0.01)]
    assert matches("0.663", 0.6634) and not matches("0.663", 0.662) and matches("16-22 min", (970, 1293))
    assert matches("1.19M", 1186680) and matches("12 min", 696.6) and not matches("13 min", 696.6)
