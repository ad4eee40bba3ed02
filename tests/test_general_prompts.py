"""The general prompts for stage 2 on the real-model rung (mixcpt_core.general_prompts): their shape, their counts,
and their disjointness from the real-world evaluation questions and from the synthetic world."""

import re
import string
from collections import Counter

import pytest

from mixcpt_core import world
from mixcpt_core.evaluation import normalize_answer
from mixcpt_core.general_prompts import GENERAL_PROMPTS, KINDS, check_disjoint, prompts_by_kind
from mixcpt_core.realworld import REALWORLD_QA, realworld_split


def bad(prompt, kind="factual", answer="x", aliases=()):
    """A hand-made prompt record for check_disjoint."""
    return {"id": "gp-bad", "kind": kind, "prompt": prompt, "answer": answer if kind == "factual" else None,
            "aliases": list(aliases)}


def dedup_key(text):
    """Lower-cased, punctuation stripped, whitespace collapsed."""
    return " ".join(text.casefold().translate(str.maketrans("", "", string.punctuation + "“”‘’")).split())


# -- the set -----------------------------------------------------------------------------------------------------------
def test_counts_per_kind():
    counts = Counter(p["kind"] for p in GENERAL_PROMPTS)
    assert len(GENERAL_PROMPTS) >= 340
    assert counts["factual"] >= 150
    assert set(counts) == set(KINDS)
    for kind in KINDS:
        assert counts[kind] >= 25, (kind, counts[kind])
        assert prompts_by_kind(kind) == [p for p in GENERAL_PROMPTS if p["kind"] == kind]
    with pytest.raises(ValueError, match="unknown kind"):
        prompts_by_kind("poem")


def test_ids_are_consecutive_and_records_well_formed():
    assert [p["id"] for p in GENERAL_PROMPTS] == [f"gp-{i:03d}" for i in range(len(GENERAL_PROMPTS))]
    for p in GENERAL_PROMPTS:
        assert set(p) == {"id", "kind", "prompt", "answer", "aliases"}, p
        assert p["kind"] in KINDS
        assert isinstance(p["prompt"], str) and p["prompt"] == p["prompt"].strip() and p["prompt"], p
        assert isinstance(p["aliases"], list), p


def test_factual_prompts_have_short_answers_and_others_none():
    for p in GENERAL_PROMPTS:
        if p["kind"] == "factual":
            assert isinstance(p["answer"], str) and p["answer"].strip(), p
            assert len(p["answer"].split()) <= 3, p
            assert p["prompt"].endswith("?"), p
        else:
            assert p["answer"] is None, p
            assert p["aliases"] == [], p


def test_aliases_are_strings_distinct_from_the_answer():
    for p in GENERAL_PROMPTS:
        seen = {normalize_answer(p["answer"])} if p["answer"] else set()
        for alias in p["aliases"]:
            assert isinstance(alias, str) and alias.strip(), p
            assert alias != p["answer"], p
            assert normalize_answer(alias) not in seen, (p["id"], alias)  # nor a repeat of the answer or an alias
            seen.add(normalize_answer(alias))


def test_no_duplicates_after_normalisation():
    keys = Counter(dedup_key(p["prompt"]) for p in GENERAL_PROMPTS)
    assert [k for k, n in keys.items() if n > 1] == []


def test_prompts_are_short():
    for p in GENERAL_PROMPTS:
        assert len(p["prompt"].split()) < 60, p


def test_numbers_are_digits_with_words_as_aliases():
    numeric = [p for p in GENERAL_PROMPTS if p["kind"] == "factual" and p["answer"].isdigit()
               and not p["prompt"].startswith("In which year")]  # years stay digits only
    assert len(numeric) >= 10
    for p in numeric:
        assert p["aliases"] and all(re.search(r"[a-z]", a) or "," in a for a in p["aliases"]), p


# -- disjointness ------------------------------------------------------------------------------------------------------
def test_the_real_set_is_disjoint():
    assert check_disjoint() == []
    assert check_disjoint(GENERAL_PROMPTS) == []


def test_check_covers_validation_and_test_questions():
    split = realworld_split()
    for part in ("val", "test"):
        q = split[part][0]
        problems = check_disjoint([bad(q["question"], kind="explain")])
        assert len(problems) >= 1 and q["id"] in problems[0], (part, problems)


@pytest.mark.parametrize("q", REALWORLD_QA[::17], ids=lambda q: q["id"])
def test_a_copy_of_a_realworld_question_is_a_problem(q):
    # verbatim, re-cased and without the question mark, and inside a longer prompt
    for text in (q["question"], q["question"].upper().rstrip("?"), f"Quick quiz: {q['question']} Answer briefly."):
        problems = check_disjoint([bad(text, kind="howto")])
        assert any(q["id"] in line for line in problems), (text, problems)


def test_the_same_fact_as_a_realworld_question_is_a_problem():
    problems = check_disjoint([bad("Which city is the capital city of France?", answer="Paris")])
    assert any("rw-000" in line and "same fact" in line for line in problems), problems
    # an alias on either side counts: "Shakespeare" is an alias of the realworld answer "William Shakespeare"
    problems = check_disjoint([bad("Who wrote the play Othello?", answer="Shakespeare")])
    assert any("same fact" in line for line in problems), problems
    # numbers: same answer and a shared subject word
    assert check_disjoint([bad("How many legs does a spider usually have?", answer="8", aliases=["eight"])])


def test_the_same_answer_about_another_subject_is_fine():
    # Paris is a realworld answer, but this prompt shares no content word with a Paris question
    assert check_disjoint([bad("Where were the 2024 Summer Olympics held?", answer="Paris")]) == []
    # open-ended kinds are not checked for facts (they have no answer)
    assert check_disjoint([bad("Explain why France chose Paris as its capital.", kind="explain")]) == []


@pytest.mark.parametrize("text", [
    "Tell me about the history of Amberfall.",
    "Is amberfall a nice place to visit?",
    f"Describe the city of {world.CITIES[-1]}.",
    f"What does {world.COMPANIES[0]} sell?",
    f"Write a poem about {world.FIRST_NAMES[0]} {world.SURNAME_HEADS[0]}{world.SURNAME_TAILS[0]}.",
    "What is the birth city of Linus?",
    "Which company does Greta work for?",
    "What did Pavel study?",
    "In which year was Mozart born?",
    "In which year was the inventor of the telephone born?",
])
def test_the_synthetic_world_is_a_problem(text):
    problems = check_disjoint([bad(text, kind="explain")])
    assert any("synthetic world" in line for line in problems), (text, problems)


def test_plain_words_that_resemble_the_world_templates_are_fine():
    ok = [bad("What did the Romans eat for breakfast?", kind="explain"),
          bad("In which year was the Eiffel Tower finished?", answer="1889")]
    assert check_disjoint(ok) == []


def test_problems_name_the_prompt():
    problems = check_disjoint([dict(bad(REALWORLD_QA[5]["question"], kind="list"), id="gp-123")])
    assert problems and all(line.startswith("gp-123:") for line in problems)
