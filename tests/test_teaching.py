"""The teaching pack (docs/teaching/) holds together and cannot drift from the code or the committed results.

* Every numeric answer of the quiz key is computed here from ``mixcpt_core`` or from the committed files and compared
  with the number the key writes (:data:`ANSWERS`), signs included; the values a question gives are checked against
  their files too (:data:`GIVEN`). The non-numeric answers that a function decides (exact match, flattening, format
  compliance, the contains rule) are recomputed with that function.
* Every other number of the pack is tied to a file (:data:`TIES`) or declared for what it is (:data:`NOT_MEASURED`),
  with the scanner of ``tests/test_doc_numbers.py``; links resolve and the glossary names what the code names.
* The capstone: the reference loop (``tests/capstone_stage1.py``) has at most 40 lines and reproduces the package's
  ``run_cpt`` for a few steps; its recorded full runs meet the tolerance the capstone states; the YAML it gives loads
  and resolves as ``mixcpt reproduce`` would; its analysis snippet reproduces a committed comparison.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from functools import lru_cache

import pytest
import yaml

from .conftest import ROOT
from .test_doc_numbers import matches, numbers, runtime
from .test_docs import broken_links

TEACHING = ROOT / "docs" / "teaching"
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in TEACHING.glob("*.md"))
QUIZ, KEY, CAPSTONE = "docs/teaching/quiz.md", "docs/teaching/quiz-answers.md", "docs/teaching/capstone.md"
NOTEBOOKS = [f"0{i}" for i in range(7)]
NB02 = ROOT / "notebooks" / "02_cpt_with_distillation.ipynb"
REFERENCE = TEACHING / "capstone_reference.json"
LOOP_CHECK_STEPS = 10  # steps of the reference loop compared with run_cpt (the capstone states it)


def text(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8")


# -- sources, read once -------------------------------------------------------------------------------------------------
@lru_cache
def world():
    from mixcpt_core.world import WORLD_PRESETS, generate_world

    return generate_world(WORLD_PRESETS["tiny"])


@lru_cache
def composition() -> dict:
    from mixcpt_core.config import load_config
    from mixcpt_core.data import MixConfig, build_mix

    return build_mix(load_config(MixConfig, ROOT / "configs/mix-tiny.yaml"), root=ROOT)[1]


def source(name: str) -> dict:
    return next(s for s in composition()["sources"] if s["name"] == name)


def mean_length(name: str) -> float:
    s = source(name)
    return s["one_pass_tokens"] / s["unique_documents"]


def sampled_share(name: str) -> float:
    """The token share that the configured shares would give as per-example probabilities: p * mean length, normalised."""
    p = {s["name"]: s["requested_share"] for s in composition()["sources"]}
    return p[name] * mean_length(name) / sum(p[n] * mean_length(n) for n in p)


@lru_cache
def csv_rows(rel: str) -> tuple[dict, ...]:
    return tuple(csv.DictReader(io.StringIO(text(rel))))


def row(rel: str, **where) -> dict:
    found = [r for r in csv_rows(rel) if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (rel, where, len(found))
    return found[0]


def base_row(column: str) -> float:
    values = {float(r[column]) for r in csv_rows("figures/results.csv") if r["arm"] == "base"}
    assert len(values) == 1, values  # the start model is the same in every seed
    return values.pop()


def comparison(b: str, metric: str, column: str, a: str = "mixcpt", start: str = "base") -> float:
    return float(row("figures/comparisons_full.csv", a=a, b=b, metric=metric, start=start)[column])


def scale(profile: str, metric: str, column: str) -> float:
    return float(row("figures/scale.csv", profile=profile, metric=metric)[column])


def scale_probe(arm: str, level: str) -> float:
    return float(row("figures/scale_probes.csv", profile="tiny", arm=arm, qa_set="domain")[level])


def probe_mean(arm: str, point: str, level: str) -> float:
    vals = [float(r[level]) for r in csv_rows("figures/probes_full.csv")
            if r["arm"] == arm and r["point"] == point and r["start"] == "base" and r["qa_set"] == "domain"]
    return sum(vals) / len(vals)


def yml(rel: str, *keys):
    v = yaml.safe_load(text(rel))
    for k in keys:
        v = v[k]
    return v


def n_parameters(profile: str) -> int:
    return json.loads(text(f"checkpoints/base-{profile}/mixcpt_base.json"))["n_parameters"]


@lru_cache
def nb02_output() -> str:
    nb = json.loads(NB02.read_text(encoding="utf-8"))
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb["cells"] for o in c.get("outputs", []))


def nb02_table(run: str, column: int) -> float:
    """Notebook 02's stored results table: columns steps, train time, held-out QA, domain QA, probe KL, CE."""
    line = next(ln for ln in nb02_output().splitlines() if ln.startswith(run))
    return float(line[len(run):].split()[column])


NB02_RUNS = {0.5: "Mix-CPT (lambda=0.5)", 0.0: "plain CPT (lambda=0)"}


def nb02_probe_kl(lam: float) -> float:
    """The probe KL column sits on the wrapped second line of the table, after the run's name."""
    lines = [ln for ln in nb02_output().splitlines() if ln.startswith(NB02_RUNS[lam])]
    assert len(lines) == 2, lines  # the table is printed in two parts
    return float(lines[1][len(NB02_RUNS[lam]):].split()[0])


def nb02_gap() -> float:
    return nb02_probe_kl(0.0) - nb02_probe_kl(0.5)


def lssd_example():
    """Quiz 02.1-02.2 with the package's loss: an identity head turns hidden states into logits."""
    import torch

    from mixcpt_core.losses import OnlineTeacher, chunked_lssd, swap_top1_with_label

    head = torch.nn.Linear(4, 4, bias=False)
    head.weight.data = torch.eye(4)
    z, s, y = torch.tensor([[3.0, 0, 1, 0]]), torch.tensor([[1.0, 0, 1, 0]]), torch.tensor([2])
    out = chunked_lssd(s, head, y, OnlineTeacher(z, head), lam=0.5)
    swapped = "(" + ", ".join(str(int(v)) for v in swap_top1_with_label(z, y)[0].tolist()) + ")"
    return {"swapped": swapped, "kl": out.lssd.item(), "ce": out.ce.item(), "loss": out.loss.item()}


def dpo(chosen: float, rejected: float, beta: float) -> dict:
    import torch

    from mixcpt_core.alignment import dpo_sigmoid_loss

    out = dpo_sigmoid_loss(torch.tensor([chosen, rejected]), torch.zeros(2), beta)
    return {k: float(v) for k, v in out.items()}


def t(df: float) -> float:
    from mixcpt_core.stats import t_quantile

    return t_quantile(0.975, df)


def hits_fraction(arm: str, got: str, missed: str) -> float:
    from pathlib import Path

    from mixcpt_core.reproduce import read_hits

    h = read_hits(Path(ROOT / "figures/hits.json"))[("base", arm, 0)]
    pairs = list(zip(h[got], h[missed]))
    return sum(1 for a, b in pairs if a == 1 and b == 0) / len(pairs)


def hits_mean(arm: str, key: str) -> float:
    from pathlib import Path

    from mixcpt_core.reproduce import read_hits

    h = read_hits(Path(ROOT / "figures/hits.json"))[("base", arm, 0)][key]
    return sum(h) / len(h)


def cache_error(k: int, column: str) -> float:
    return next(r[column] for r in json.loads(text("figures/cache_error.json"))["rows"] if r["k"] == k)


def bench_ratio(name: str) -> float:
    return json.loads(text("figures/bench_lssd.json"))["results"]["vocab_32k"]["ratios"][name]


def chance() -> float:
    from mixcpt_core.world import ATTRIBUTE_VALUES, ATTRIBUTES

    return sum(1 / len(ATTRIBUTE_VALUES[a]) for a in ATTRIBUTES) / len(ATTRIBUTES)


def n_values(attribute: str) -> int:
    from mixcpt_core.world import ATTRIBUTE_VALUES

    return len(ATTRIBUTE_VALUES[attribute])


def qa_count(split: str) -> int:
    return len(world().qa_split(split))


def thin_seeds() -> int:
    from mixcpt_core.stats import THIN_SEEDS

    return THIN_SEEDS


def mdd_target() -> float:
    return float(re.search(r"is at most (0\.\d+)", text("configs/reproduce-tiny.yaml"))[1])


# -- the answer key: question -> [(text as the key writes it, value)] ------------------------------------------------------
# A value is a number (the text must round to it), a list (every one of them; the same text standing for several
# values) or a string (the text must equal it).
ANSWERS: dict[str, list[tuple[str, object]]] = {
    "00.3": [("25", lambda: n_values("birth_city")), ("20", lambda: n_values("employer")),
             ("16", lambda: n_values("field")), ("40", lambda: n_values("birth_year")), ("0.044", chance)],
    "00.4": [("384", lambda: qa_count("domain")), ("96", lambda: qa_count("domain_val"))],
    "00.5": [("1,210,880", lambda: n_parameters("tiny")), ("1.2M", lambda: n_parameters("tiny")),
             ("0.919", lambda: base_row("plain_general_qa_acc")), ("0.042", lambda: base_row("plain_domain_qa_acc"))],
    "00.6": [("4", lambda: [yml("configs/mix-tiny.yaml", "world", "docs_per_entity"),
                            yml("configs/mix-tiny.yaml", "world", "templates_per_attribute")])],
    "00.7": [("0.000", lambda: base_row("format_rate"))],
    "01.1": [("60%", lambda: source("domain")["requested_share"])],
    "01.2": [("34.0", lambda: mean_length("domain")), ("19.5", lambda: mean_length("instructions")),
             ("15.8", lambda: mean_length("preferences")), ("0.73", lambda: sampled_share("domain")),
             ("0.21", lambda: sampled_share("instructions")), ("0.06", lambda: sampled_share("preferences"))],
    "01.3": [("30.1", lambda: source("domain")["repeat_factor"]),
             ("17.1", lambda: source("instructions")["repeat_factor"]),
             ("13.0", lambda: source("preferences")["repeat_factor"])],
    "01.6": [("127", lambda: composition()["padding_tokens"]), ("6,401", lambda: composition()["blocks"])],
    "02.1": [("(1, 0, 3, 0)", lambda: lssd_example()["swapped"]), ("0.415", lambda: lssd_example()["kl"])],
    "02.2": [("1.006", lambda: lssd_example()["ce"]), ("0.711", lambda: lssd_example()["loss"]),
             ("0.415", lambda: lssd_example()["kl"])],
    "02.3": [("61%", lambda: float(re.search(r"label at (\d+)% of these positions", nb02_output())[1]) / 100)],
    "02.4": [("+0.070", lambda: comparison("self_kd", "domain_qa_acc", "diff")),
             ("+0.023", lambda: comparison("self_kd", "domain_qa_acc", "lo")),
             ("+0.118", lambda: comparison("self_kd", "domain_qa_acc", "hi")),
             ("3 seeds", lambda: comparison("self_kd", "domain_qa_acc", "n_seeds"))],
    "02.5": [("0.5", lambda: yml("configs/cpt-tiny.yaml", "lssd", "lam")), ("0.262", lambda: nb02_probe_kl(0.5)), ("0.683", lambda: nb02_probe_kl(0.0)),
             ("0.680", lambda: nb02_table(NB02_RUNS[0.5], 2)), ("0.435", lambda: nb02_table(NB02_RUNS[0.5], 3)),
             ("0.547", lambda: nb02_table(NB02_RUNS[0.0], 2)), ("0.555", lambda: nb02_table(NB02_RUNS[0.0], 3))],
    "02.7": [("0.5", lambda: [yml("configs/cpt-tiny.yaml", "lssd", "lam"),
                              1 - yml("configs/cpt-tiny.yaml", "lssd", "lam")]),
             ("1.0", lambda: yml("configs/cpt-tiny.yaml", "lssd", "tau"))],
    "03.1": [("0.2", lambda: dpo(1.0, -3.0, 0.2)["chosen_reward"]), ("−0.6", lambda: dpo(1.0, -3.0, 0.2)["rejected_reward"]),
             ("0.8", lambda: dpo(1.0, -3.0, 0.2)["margin"]), ("0.371", lambda: dpo(1.0, -3.0, 0.2)["loss"])],
    "03.2": [("0.693", lambda: dpo(0.0, 0.0, 0.2)["loss"])],
    "03.4": [("64", lambda: [yml("configs/align-tiny.yaml", "selection", "n_sft"),
                             yml("configs/align-tiny.yaml", "selection", "n_dpo")]),
             ("740", lambda: len(world().instructions)), ("400", lambda: len(world().preferences))],
    "03.6": [("+0.017", lambda: comparison("random_selection", "domain_qa_acc", "diff")),
             ("−0.068", lambda: comparison("random_selection", "domain_qa_acc", "lo")),
             ("+0.103", lambda: comparison("random_selection", "domain_qa_acc", "hi")),
             ("+0.065", lambda: comparison("random_selection", "general_qa_acc", "diff")),
             ("−0.063", lambda: comparison("random_selection", "general_qa_acc", "lo")),
             ("+0.193", lambda: comparison("random_selection", "general_qa_acc", "hi")),
             ("3 seeds", lambda: comparison("random_selection", "domain_qa_acc", "n_seeds"))],
    "04.1": [("4.30", lambda: t(2)), ("2.78", lambda: t(4)), ("1.96", lambda: t(1e9))],
    "04.2": [("−0.064", lambda: comparison("traditional", "domain_qa_acc", "diff")),
             ("−0.119", lambda: comparison("traditional", "domain_qa_acc", "lo")),
             ("−0.008", lambda: comparison("traditional", "domain_qa_acc", "hi")),
             ("5 seeds", lambda: comparison("traditional", "domain_qa_acc", "n_seeds")),
             ("384 questions", lambda: comparison("traditional", "domain_qa_acc", "n_questions")),
             ("0.076", lambda: comparison("traditional", "domain_qa_acc", "mdd"))],
    "04.3": [("−0.034", lambda: comparison("traditional", "general_qa_acc", "diff")),
             ("−0.098", lambda: comparison("traditional", "general_qa_acc", "lo")),
             ("+0.030", lambda: comparison("traditional", "general_qa_acc", "hi")),
             ("0.087", lambda: comparison("traditional", "general_qa_acc", "mdd"))],
    "04.4": [("0.453", lambda: scale_probe("traditional", "stored")),
             ("0.102", lambda: scale_probe("traditional", "extractable")),
             ("0.222", lambda: scale_probe("traditional", "said")),
             ("0.259", lambda: scale_probe("mixcpt", "stored")),
             ("0.231", lambda: scale_probe("mixcpt", "extractable")),
             ("0.158", lambda: scale_probe("mixcpt", "said"))],
    "04.5": [("0.253", lambda: hits_fraction("mixcpt", "domain_extractable", "domain_said")),
             ("0.000", lambda: [hits_fraction("traditional", "domain_extractable", "domain_said"),
                                hits_mean("traditional", "domain_extractable")])],
    "04.6": [("96", lambda: [qa_count("general_val"), qa_count("domain_val")]),
             ("0.95", lambda: yml("configs/search-stage2-tiny.yaml", "min_format"))],
    "04.7": [("3 seeds", lambda: len(yml("configs/reproduce-tiny.yaml", "seeds")))],
    "04.8": [("12 seeds", lambda: len(yml("configs/reproduce-tiny.yaml", "headline_seeds"))), ("0.05", mdd_target),
             ("5 seeds", lambda: comparison("traditional", "domain_qa_acc", "n_seeds")),
             ("384", lambda: comparison("traditional", "domain_qa_acc", "n_questions"))],
    "05.1": [("0.676", lambda: cache_error(1, "ratio")), ("0.986", lambda: cache_error(64, "ratio")),
             ("0.8704", lambda: cache_error(1, "grad_cosine")), ("0.9997", lambda: cache_error(64, "grad_cosine"))],
    "05.2": [("8", lambda: yml("configs/smollm2-cpt.yaml", "lora", "r")),
             ("0.5", lambda: yml("configs/smollm2-cpt.yaml", "lssd", "lam"))],
    "05.4": [("0.95", lambda: bench_ratio("chunked_over_ce_time")),
             ("0.45", lambda: bench_ratio("chunked_over_ce_peak_mem"))],
    "06.1": [("1.2M", lambda: scale("tiny", "domain_qa_acc", "n_parameters")),
             ("6.6M", lambda: scale("small", "domain_qa_acc", "n_parameters")),
             ("134.5M", lambda: scale("smollm2", "domain_qa_acc", "n_parameters")),
             ("5.5", lambda: n_parameters("small") / n_parameters("tiny"))],
    "06.3": [("−0.064", lambda: scale("tiny", "domain_qa_acc", "diff")),
             ("0.076", lambda: scale("tiny", "domain_qa_acc", "mdd")),
             ("+0.033", lambda: scale("small", "domain_qa_acc", "diff")),
             ("0.130", lambda: scale("small", "domain_qa_acc", "mdd")),
             ("−0.116", lambda: scale("smollm2", "domain_qa_acc", "diff")),
             ("0.419", lambda: scale("smollm2", "domain_qa_acc", "mdd"))],
    "06.4": [("72", lambda: scale("smollm2", "domain_qa_acc", "n_questions")),
             ("384", lambda: scale("tiny", "domain_qa_acc", "n_questions"))],
    "06.6": [("3 seeds", thin_seeds)],
    "06.7": [("0.541", lambda: probe_mean("mixcpt", "stage1", "stored")),
             ("0.259", lambda: probe_mean("mixcpt", "stage2", "stored"))],
}
# Values a question gives: tied to their file, or (a string) why they are what they are.
GIVEN: dict[str, dict[str, object]] = {
    "01.2": {"0.6": lambda: source("domain")["requested_share"],
             "0.3": lambda: source("instructions")["requested_share"],
             "0.1": lambda: source("preferences")["requested_share"]},
    "02.2": {"0.5": lambda: yml("configs/cpt-tiny.yaml", "lssd", "lam")},
    "02.5": {"400 steps": lambda: yml("configs/cpt-tiny.yaml", "max_steps")},
    "03.1": {"1.0": "a given of the exercise", "3.0": "a given of the exercise", "0.2": "a given of the exercise"},
    "04.1": {"97.5%": "the quantile of a two-sided 95% interval, a design constant (mixcpt_core/stats.py)",
             "3 seeds": lambda: len(yml("configs/reproduce-tiny.yaml", "seeds")),
             "5 seeds": lambda: comparison("traditional", "domain_qa_acc", "n_seeds")},
    "04.2": {"95%": "the intervals' confidence level, a design constant"},
    "04.7": {"3 seeds": lambda: len(yml("configs/reproduce-tiny.yaml", "seeds"))},
}
DESIGN = {"95%": "the intervals' confidence level, a design constant (mixcpt_core/stats.py)",
          "80%": "the power of the minimum detectable difference, a design constant"}


def _reference_runs() -> list[dict]:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))["runs"]


def _tolerance(kind: str) -> float:
    """The capstone's tolerance on the gap: ``full`` or ``half`` credit, read from the page."""
    m = re.search(r"within ±(\d\.\d+) of notebook 02's gap for full credit,\s+within ±(\d\.\d+) for half", text(CAPSTONE))
    assert m, "the capstone no longer states its tolerance in the expected words"
    return float(m[1] if kind == "full" else m[2])


# Numbers of the other pages: (page, text) -> a function giving the value (as in tests/test_doc_numbers.py).
TIES: dict[tuple[str, str], object] = {
    ("docs/teaching/syllabus.md", "8 s"): lambda: runtime("00_world_and_base_model.ipynb")(text("docs/runtimes.json")),
    ("docs/teaching/syllabus.md", "7 s"): lambda: {runtime(n)(text("docs/runtimes.json"))
                                                   for n in ("01_data_mixing.ipynb", "06_does_it_scale.ipynb")},
    ("docs/teaching/syllabus.md", "2 min 23 s"): lambda: runtime("02_cpt_with_distillation.ipynb")(text("docs/runtimes.json")),
    ("docs/teaching/syllabus.md", "11 s"): lambda: runtime("03_format_alignment.ipynb")(text("docs/runtimes.json")),
    ("docs/teaching/syllabus.md", "6 s"): lambda: runtime("04_evaluation.ipynb")(text("docs/runtimes.json")),
    ("docs/teaching/syllabus.md", "1 min 49 s"): lambda: runtime("05_scaling_up.ipynb")(text("docs/runtimes.json")),
    ("docs/teaching/capstone.md", "0.262"): lambda: nb02_probe_kl(0.5),
    ("docs/teaching/capstone.md", "0.683"): lambda: nb02_probe_kl(0.0),
    ("docs/teaching/capstone.md", "0.421"): nb02_gap,
    ("docs/teaching/capstone.md", "400 steps"): lambda: yml("configs/cpt-tiny.yaml", "max_steps"),
    ("docs/teaching/capstone.md", "10 steps"): lambda: LOOP_CHECK_STEPS,
    ("docs/teaching/capstone.md", "0.98"): lambda: float(re.search(r"adam_beta2=(\d\.\d+)", text("mixcpt_core/cpt.py"))[1]),
    ("docs/teaching/capstone.md", "0.5"): lambda: yml("configs/cpt-tiny.yaml", "lssd", "lam"),
    ("docs/teaching/instructor-notes.md", "60%"): lambda: yml("configs/mix-tiny.yaml", "sources")[0]["share"],
    ("docs/teaching/instructor-notes.md", "1.2M"): lambda: n_parameters("tiny"),
    ("docs/teaching/instructor-notes.md", "6.6M"): lambda: n_parameters("small"),
    ("docs/teaching/instructor-notes.md", "3 seeds"): lambda: {thin_seeds(), len(yml("configs/reproduce-tiny.yaml", "seeds"))},
    ("docs/teaching/syllabus.md", "3 seeds"): lambda: len(yml("configs/reproduce-tiny.yaml", "seeds")),
}
SUGGESTED = "a planning suggestion, not a measurement"
NOT_MEASURED: dict[tuple[str, str], str] = {
    **{("docs/teaching/syllabus.md", m): SUGGESTED for m in ("30 min", "40 min", "45 min", "60 min", "90 minutes",
                                                             "10 minutes")},
    **{("docs/teaching/syllabus.md", n): "an arXiv number" for n in ("1503.02531", "2106.09685", "2305.18290",
                                                                   "2411.00640", "2407.10804")},
    ("docs/teaching/capstone.md", "0.01"): "the capstone's tolerance on the gap (checked against the reference runs)",
    ("docs/teaching/capstone.md", "0.05"): "the capstone's tolerance on the gap (checked against the reference runs)",
    ("docs/teaching/capstone.md", "2.0"): "the example arm's temperature, a value of its config",
    ("docs/teaching/capstone.md", "0.2"): "val_fraction in the example config, as in configs/reproduce-tiny.yaml",
    ("docs/teaching/capstone.md", "95%"): DESIGN["95%"],
    ("docs/teaching/instructor-notes.md", "80%"): DESIGN["80%"],
    ("docs/teaching/instructor-notes.md", "95%"): DESIGN["95%"],
}


# -- helpers over the pages ---------------------------------------------------------------------------------------------
QID = re.compile(r"^\*\*(\d\d\.\d)\*\*", re.M)
QUESTION_REF = re.compile(r"(?<![\w.])0[0-6]\.[1-9](?!\d)")  # "quiz 01.2", "**03.7**": a question, not a number


def unreferenced(page_text: str) -> str:
    """The text with its question ids blanked, so that the number scanners do not read "03.7" as a decimal."""
    return QUESTION_REF.sub(lambda m: " " * len(m.group()), page_text)


def sections(rel: str) -> dict[str, str]:
    """``{question id: its paragraph(s)}`` of the quiz or the key (up to the next question or heading)."""
    page = text(rel)
    marks = list(QID.finditer(page))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(page)
        heading = page.find("\n#", m.end(), end)
        out[m[1]] = page[m.end(): heading if heading != -1 else end]
    return out


def found(section: str, shown: str) -> bool:
    """``shown`` stands in ``section`` as a whole number (an unsigned text not preceded by a sign)."""
    before = r"(?<![\w.,])" if shown[0] in "+−-(" else r"(?<![\w.,+−-])"
    return re.search(before + re.escape(shown) + r"(?![\w]|[.,]\d)", " ".join(section.split())) is not None


def equals(shown: str, value) -> bool:
    if isinstance(value, str):
        return shown == value
    if isinstance(value, list):
        return all(equals(shown, v) for v in value)
    sign = -1 if shown[0] in "−-" else 1
    return matches(shown.lstrip("+−-"), sign * float(value))


def registered(page: str) -> set[str]:
    known = {t for p, t in TIES if p == page} | {t for p, t in NOT_MEASURED if p == page}
    if page == KEY:
        known |= {t.lstrip("+−-") for items in ANSWERS.values() for t, _ in items}
        known |= {t for g in GIVEN.values() for t in g} | set(DESIGN)
    if page == QUIZ:
        known |= {t for g in GIVEN.values() for t in g}
    return known


# -- the tests ----------------------------------------------------------------------------------------------------------
def test_the_pack_has_its_pages_and_is_linked_from_the_readme_and_the_notebooks_page():
    assert set(PAGES) == {f"docs/teaching/{n}.md" for n in ("README", "syllabus", "quiz", "quiz-answers", "capstone",
                                                             "instructor-notes")}
    index = text("docs/teaching/README.md")
    for page in PAGES:
        name = page.rsplit("/", 1)[1]
        assert name == "README.md" or f"]({name})" in index, f"docs/teaching/README.md does not link {name}"
    assert "](docs/teaching/README.md)" in text("README.md")
    assert "](teaching/README.md)" in text("docs/notebooks.md")


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    assert broken_links(ROOT / page) == []


def test_the_license_is_the_apache_2_0_text_the_package_declares():
    lic = text("LICENSE")
    project = text("pyproject.toml")
    assert 'license = "Apache-2.0"' in project and 'license-files = ["LICENSE"]' in project  # SPDX, no warning
    assert lic.split()[:4] == ["Apache", "License", "Version", "2.0,"] and "END OF TERMS AND CONDITIONS" in lic
    assert "APPENDIX: How to apply the Apache License to your work." in lic
    assert len(re.findall(r"(?m)^\s+\d\. [A-Z]", lic)) == 9  # the nine sections of the terms


def test_every_notebook_has_a_quiz_of_five_to_eight_questions_and_every_question_an_answer():
    quiz, key = sections(QUIZ), sections(KEY)
    assert list(quiz) == list(key), "the quiz and the key must list the same questions in the same order"
    for nb in NOTEBOOKS:
        n = sum(1 for q in quiz if q.startswith(nb + "."))
        assert 5 <= n <= 8, (nb, n)
    assert set(ANSWERS) <= set(key) and set(GIVEN) <= set(quiz)


@pytest.mark.parametrize("qid", sorted(ANSWERS))
def test_every_numeric_answer_equals_what_the_code_or_the_files_give(qid):
    section = sections(KEY)[qid]
    for shown, compute in ANSWERS[qid]:
        assert found(section, shown), f"{qid}: {shown!r} is not in the key's answer"
        value = compute()
        assert equals(shown, value), f"{qid}: the key writes {shown}, the code and files give {value}"
    # no number in the answer that nothing checks: every decimal or percentage, with its sign, is one of them
    allowed = {s for s, _ in ANSWERS[qid]} | set(GIVEN.get(qid, {})) | set(DESIGN)
    written = re.findall(r"(?<![\w.,])[+−-]?\d*\.\d+[%M]?|(?<![\w.,])\d+(?:\.\d+)?%",
                         " ".join(unreferenced(section).split()))
    unchecked = sorted({w for w in written if w not in allowed and w.lstrip("+−-") not in allowed})
    assert not unchecked, f"{qid}: numbers the test does not check: {unchecked}"


@pytest.mark.parametrize("qid", sorted(GIVEN))
def test_every_value_a_question_gives_is_in_the_question_and_true_of_its_file(qid):
    question = sections(QUIZ)[qid]
    for shown, value in GIVEN[qid].items():
        assert found(question, shown), f"{qid}: {shown!r} is not in the question"
        if callable(value):
            assert equals(shown, value()), f"{qid}: the question gives {shown}, the files give {value()}"


def test_no_numbered_answer_without_a_check():
    """A question of the key whose answer holds a decimal or a percentage must be in ANSWERS (or give it)."""
    for qid, section in sections(KEY).items():
        if re.search(r"\d\.\d|\d%", unreferenced(section)):
            assert qid in ANSWERS or qid in GIVEN, f"{qid}: add its numbers to ANSWERS in tests/test_teaching.py"


@pytest.mark.parametrize("page", PAGES)
def test_every_number_of_the_pack_is_checked_tied_or_declared(page):
    known = registered(page)
    on_page = {n for _, n in numbers(unreferenced(text(page)))}
    typed = sorted(on_page - known)
    assert not typed, f"{page}: numbers typed by hand: {typed}: tie them to their file in tests/test_teaching.py"
    stale = sorted({t for p, t in [*TIES, *NOT_MEASURED] if p == page} - on_page)
    assert not stale, f"{page}: registered numbers no longer on the page: {stale}"


@pytest.mark.parametrize("key", sorted(TIES), ids=lambda k: f"{k[0]}:{k[1]}")
def test_every_tied_number_equals_its_source(key):
    value = TIES[key]()
    assert matches(key[1], value), f"{key[0]}: {key[1]!r} is not what its source gives ({value})"


# -- answers decided by a function ---------------------------------------------------------------------------------------
def _quoted(segment: str) -> list[str]:
    """The Python string literals written in backticks: `"Nimbus!"` -> Nimbus!."""
    return [ast.literal_eval(s) for s in re.findall(r'`("(?:[^"\\`]|\\.)*")`', segment)]


def _question_items(qid: str) -> list[str]:
    return _quoted(sections(QUIZ)[qid])


def test_00_1_exact_match_as_normalize_answer_decides():
    from mixcpt_core.evaluation import normalize_answer

    key = sections(KEY)["00.1"]
    right, wrong = key.split("Wrong:")[0], key.split("Wrong:")[1].split(".")[0]
    items = _question_items("00.1")
    assert sorted(_quoted(right) + _quoted(wrong)) == sorted(items)
    for item in items:
        assert (normalize_answer(item) == normalize_answer("Nimbus")) == (item in _quoted(right)), item


def test_05_3_exact_and_contains_as_the_package_decides():
    from mixcpt_core.evaluation import normalize_answer
    from mixcpt_core.scaling import contains_answer

    key = sections(KEY)["05.3"]
    exact = _quoted(key.split("Contains")[0])
    contains = _quoted(key.split("Contains")[1].split("Neither:")[0])
    neither = _quoted(key.split("Neither:")[1].split("Note")[0])
    for item in _question_items("05.3"):
        assert (normalize_answer(item) == normalize_answer("Rome")) == (item in exact), item
        assert contains_answer(item, "Rome") == (item in contains), item
        assert (item in neither) == (item not in exact and item not in contains), item


def test_03_3_format_compliance_as_parse_assistant_turn_decides():
    from mixcpt_core.data import load_tokenizer
    from mixcpt_core.evaluation import parse_assistant_turn

    tok = load_tokenizer("checkpoints/base-tiny", ROOT)
    items = re.findall(r"`([^`]+)`", sections(QUIZ)["03.3"].split("Does the answer")[0])
    items = [i for i in items if i != "parse_assistant_turn"]
    key = sections(KEY)["03.3"]
    cut = key.index("Not:")
    assert len(items) == 6
    for item in items:
        ids = tok(item, add_special_tokens=False).input_ids
        place = key.find(f"`{item}`")
        assert place != -1, item
        assert parse_assistant_turn(ids, tok)["well_formed"] == (place < cut), item
    leak = "Answer: Quarrytown<|end|>"
    ids = tok(leak, add_special_tokens=False).input_ids
    assert parse_assistant_turn(ids, tok)["well_formed"] and not parse_assistant_turn(ids, tok, leak_check=True)["well_formed"]
    assert "no longer well-formed" in key


def test_01_4_the_flattened_turn_is_what_flatten_messages_writes():
    from mixcpt_core.data import flatten_messages

    flat = flatten_messages([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}])
    assert f"`{flat.encode('unicode_escape').decode()}`" in sections(KEY)["01.4"]


# -- the glossary --------------------------------------------------------------------------------------------------------
def glossary() -> dict[str, str]:
    notes = text("docs/teaching/instructor-notes.md")
    part = notes[notes.index("## Glossary"):]
    return {m[1]: m[2] for m in re.finditer(r"(?ms)^- \*\*(.+?)\*\*(.*?)(?=^- \*\*|\Z)", part)}


def _ticked(entry: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", entry))


def test_the_glossary_defines_the_repository_words():
    terms = glossary()
    for word in ("arm", "pipeline", "start", "seed", "profile", "rung", "stored / extractable / said",
                 "validation protocol", "FAST", "D_MIX", "LSSD"):
        assert word in terms, word


def test_the_glossary_names_what_the_code_names():
    from mixcpt_core.cli import PROFILE_FIGURES, REPRODUCE_CONFIGS
    from mixcpt_core.cpt import TEACHER_SOURCES
    from mixcpt_core.evaluation import HIT_KEYS
    from mixcpt_core.notebook import PROFILES as NOTEBOOK_PROFILES
    from mixcpt_core.pipelines import STARTS
    from mixcpt_core.reproduce import PROTOCOLS
    from mixcpt_core.scaling import SCALE_PROFILES

    g = glossary()
    arms = {p.stem for p in (ROOT / "configs" / "arms").glob("*.yaml")}
    assert arms <= _ticked(g["arm"]) and _ticked(g["arm"]) - arms <= {"configs/arms/", "ArmConfig",
                                                                      "mixcpt_core/pipelines.py"}
    assert set(STARTS) <= _ticked(g["start"])
    assert set(REPRODUCE_CONFIGS) | set(NOTEBOOK_PROFILES) <= _ticked(g["profile"])
    for profile, folder in PROFILE_FIGURES.items():
        assert f"`{folder}/`" in g["profile"], (profile, folder)
    assert set(SCALE_PROFILES) <= _ticked(g["rung"])
    assert {k for k in HIT_KEYS if k.startswith("domain_")} <= _ticked(g["stored / extractable / said"])
    assert set(PROTOCOLS) <= _ticked(g["validation protocol"])
    assert "`MIXCPT_FAST=1`" in g["FAST"] and 'os.environ.get("MIXCPT_FAST") == "1"' in text("mixcpt_core/notebook.py")
    assert set(TEACHER_SOURCES) <= _ticked(g["teacher source"])
    assert "`losses.chunked_lssd`" in g["LSSD"] and "`data.build_mix`" in g["D_MIX"]


# -- the capstone -------------------------------------------------------------------------------------------------------
def _code_blocks(lang: str) -> list[str]:
    return re.findall(rf"(?ms)^```{lang}\n(.*?)^```", text(CAPSTONE))


def test_the_reference_loop_has_at_most_40_lines():
    import inspect

    from .capstone_stage1 import stage1_loop

    lines = [ln for ln in inspect.getsource(stage1_loop).splitlines() if ln.strip()]
    assert len(lines) <= 40, len(lines)
    assert "Trainer" not in inspect.getsource(stage1_loop) and "chunked_lssd" not in inspect.getsource(stage1_loop)
    assert "at most 40 lines" in text(CAPSTONE)


def test_the_reference_loop_reproduces_run_cpt(tmp_path):
    """A few steps of the plain loop give the probe KL of the package's Trainer-based stage 1, at both lambdas."""
    import dataclasses

    import torch

    from mixcpt_core.config import load_config
    from mixcpt_core.cpt import CPT_INFO_FILE, CPTConfig, run_cpt

    from .capstone_stage1 import stage1_loop

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several times faster than two threads on a shared 2-core machine
    try:
        cfg = load_config(CPTConfig, ROOT / "configs/cpt-tiny.yaml")
        for lam in (0.5, 0.0):
            run = dataclasses.replace(cfg, lssd=dataclasses.replace(cfg.lssd, lam=lam), max_steps=LOOP_CHECK_STEPS,
                                      eval_every=0, save_steps=10_000, output_dir=str(tmp_path / f"lam{lam}"),
                                      base_model=str(ROOT / cfg.base_model), mix=str(ROOT / cfg.mix))
            info = json.loads((run_cpt(run, root=ROOT) / CPT_INFO_FILE).read_text())
            trainer_kl = [r["probe_kl"] for r in info["history"] if "probe_kl" in r][-1]
            loop_kl = stage1_loop(lam, LOOP_CHECK_STEPS)
            assert loop_kl > 0 and loop_kl == pytest.approx(trainer_kl, rel=1e-5), (lam, loop_kl, trainer_kl)
    finally:
        torch.set_num_threads(threads)


def test_the_reference_runs_meet_the_capstone_tolerance_and_its_table_is_theirs():
    runs = _reference_runs()
    assert runs and any(r["seed"] == 0 and r["steps"] == yml("configs/cpt-tiny.yaml", "max_steps") for r in runs)
    for r in runs:
        assert r["gap"] == pytest.approx(r["probe_kl_lam0"] - r["probe_kl_lam0.5"], abs=2e-6)
    # with run_cpt's data order (seed 0) the reference meets the full-credit tolerance ...
    same_order = next(r for r in runs if r["seed"] == 0)
    assert abs(same_order["gap"] - nb02_gap()) <= _tolerance("full"), (same_order, nb02_gap())
    assert _tolerance("full") < _tolerance("half")
    # ... and, as the capstone says to explain why the order is prescribed, another order lands beyond it
    assert any(abs(r["gap"] - nb02_gap()) > _tolerance("full") for r in runs if r["seed"] != 0)
    block = re.search(r"(?s)<!-- capstone-reference:begin.*?-->\n(.*?)<!-- capstone-reference:end -->", text(CAPSTONE))
    lines = [ln for ln in block[1].splitlines() if ln.startswith("| ") and not ln.startswith("| data order")]
    assert len(lines) == len(runs)
    for line, r in zip(lines, runs):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0].split()[0] == str(r["seed"]) and cells[1] == str(r["steps"])
        assert [matches(c, v) for c, v in zip(cells[2:5], (r["probe_kl_lam0.5"], r["probe_kl_lam0"], r["gap"]))] == [True] * 3
        assert cells[5] == f"{r['date']}, {r['machine']}"


def test_the_capstone_arm_and_grid_load_and_resolve_as_mixcpt_reproduce_would(tmp_path):
    import dataclasses
    import shutil

    from mixcpt_core.config import load_config
    from mixcpt_core.pipelines import ReproduceConfig, load_arm
    from mixcpt_core.reproduce import resolve_arms

    arm_yaml, grid_yaml = _code_blocks("yaml")
    arm = yaml.safe_load(arm_yaml)
    arms = tmp_path / "arms"
    shutil.copytree(ROOT / "configs" / "arms", arms)
    (arms / f"{arm['name']}.yaml").write_text(arm_yaml, encoding="utf-8")
    assert f"configs/arms/{arm['name']}.yaml" in text(CAPSTONE)
    (tmp_path / "reproduce-tau2.yaml").write_text(grid_yaml, encoding="utf-8")
    cfg = load_config(ReproduceConfig, tmp_path / "reproduce-tau2.yaml")
    assert cfg.world == load_config(ReproduceConfig, ROOT / "configs/reproduce-tiny.yaml").world
    # the recipes folder as the capstone's two `cp` commands make it
    recipes = tmp_path / "recipes"
    shutil.copytree(ROOT / "configs" / "stage2-selected", recipes)
    shutil.copy(recipes / "base-mixcpt.yaml", recipes / f"base-{arm['name']}.yaml")
    commands = _code_blocks("bash")[0]
    assert f"cp -r configs/stage2-selected {cfg.stage2_recipes}" in commands
    assert f"base-mixcpt.yaml {cfg.stage2_recipes}/base-{arm['name']}.yaml" in commands
    cfg = dataclasses.replace(cfg, arms_dir=str(arms), stage2_recipes=str(recipes))
    pairs = [(start, name) for start, names in cfg.main.items() for name in names]
    resolved = resolve_arms(cfg, ROOT, pairs, "validated")
    new, mixcpt = resolved[("base", arm["name"])], resolved[("base", "mixcpt")]
    assert new.cpt.lssd.tau == 2.0 and mixcpt.cpt.lssd.tau == 1.0
    assert dataclasses.replace(new.cpt, lssd=dataclasses.replace(new.cpt.lssd, tau=1.0)) == mixcpt.cpt
    assert new.mix == mixcpt.mix and new.align == mixcpt.align  # the same stage 2, mixcpt's recipe included
    assert load_arm(arm["name"], arms, ROOT).cpt.lssd.tau == 2.0
    run = next(b for b in _code_blocks("bash") if "mixcpt reproduce" in b)
    assert "--config configs/reproduce-tau2.yaml" in run and "--protocol validated" in run


def test_the_capstone_snippet_reproduces_a_committed_comparison():
    """The analysis of step 5, run on the committed self_kd ablation, gives comparisons_full.csv's row, sign turned."""
    snippet = next(b for b in _code_blocks("python") if "paired_differences" in b)
    line = 'figures, suffix, arm = Path("figures/tau2"), "", "tau2"'
    assert line in snippet
    scope: dict = {}
    exec(snippet.replace(line, f'figures, suffix, arm = Path({str(ROOT / "figures")!r}), "_full", "self_kd"'), scope)
    table = scope["table"].set_index("metric")
    for metric in ("domain_qa_acc", "general_qa_acc"):
        got = table.loc[metric]
        assert got["n_seeds"] == comparison("self_kd", metric, "n_seeds")
        assert got["diff"] == pytest.approx(-comparison("self_kd", metric, "diff"), abs=2e-6)
        assert got["lo"] == pytest.approx(-comparison("self_kd", metric, "hi"), abs=2e-6)
        assert got["hi"] == pytest.approx(-comparison("self_kd", metric, "lo"), abs=2e-6)
        assert got["mdd"] == pytest.approx(comparison("self_kd", metric, "mdd"), abs=2e-6)


def test_the_capstone_search_for_the_new_arm_loads_as_a_declared_search(tmp_path):
    """The bonus route of step 2: configs/search-stage2-tiny.yaml with the keys the capstone names changed."""
    from mixcpt_core.config import load_config
    from mixcpt_core.search import Stage2SearchConfig

    page = " ".join(text(CAPSTONE).split())
    changes = {}
    for m in re.finditer(r"`((?:reproduce|pairs|out_dir|table): [^`]+)`", page[page.index("For the bonus"):]):
        changes.update(yaml.safe_load(m[1]))
    assert set(changes) == {"reproduce", "pairs", "out_dir", "table"}
    search = {**yml("configs/search-stage2-tiny.yaml"), **changes}
    (tmp_path / "search-stage2-tau2.yaml").write_text(yaml.safe_dump(search), encoding="utf-8")
    cfg = load_config(Stage2SearchConfig, tmp_path / "search-stage2-tau2.yaml")
    assert cfg.pairs == {"base": ["tau2"]} and cfg.out_dir == "configs/stage2-selected-tau2"
    assert cfg.reproduce == "configs/reproduce-tau2.yaml" and "mixcpt search configs/search-stage2-tau2.yaml" in page
