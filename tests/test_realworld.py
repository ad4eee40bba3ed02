"""The real-world question set (mixcpt_core.realworld): its shape, its two scoring rules, the validation/test split
and the format-free stored probe (against hand-built models whose winners are known by hand)."""

import math
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from mixcpt_core import realworld as rw
from mixcpt_core.realworld import REALWORLD_QA, SCORERS, score_contains, score_exact


def item(answer, aliases=(), attribute="capital"):
    return {"id": "rw-x", "question": "?", "answer": answer, "aliases": list(aliases), "attribute": attribute}


# -- the set -----------------------------------------------------------------------------------------------------------
def test_the_set_has_enough_unique_well_formed_questions():
    assert len(REALWORLD_QA) >= 240
    ids = [q["id"] for q in REALWORLD_QA]
    assert len(set(ids)) == len(ids) and all(i.startswith("rw-") for i in ids)
    questions = [q["question"] for q in REALWORLD_QA]
    assert len(set(questions)) == len(questions)
    for q in REALWORLD_QA:
        assert set(q) == {"id", "question", "answer", "aliases", "attribute"}
        assert q["question"].strip().endswith("?")
        assert isinstance(q["answer"], str) and q["answer"].strip() and len(q["answer"].split()) <= 3
        assert isinstance(q["aliases"], list) and all(isinstance(a, str) and a.strip() for a in q["aliases"])
        assert q["attribute"] in rw.CATEGORIES
    counts = Counter(q["attribute"] for q in REALWORLD_QA)
    assert set(counts) == set(rw.CATEGORIES) and min(counts.values()) >= 8


def test_every_category_is_a_closed_multiple_choice():
    for attribute in rw.CATEGORIES:
        cands = rw.category_answers(attribute)
        assert cands == sorted(set(cands)) and len(cands) >= 2
        assert all(q["answer"] in cands for q in REALWORLD_QA if q["attribute"] == attribute)
    # the gold answer of a question is accepted by both of its own scorers
    for q in REALWORLD_QA:
        assert score_exact(q["answer"], q) and score_contains(q["answer"], q)
        assert all(score_exact(a, q) and score_contains(a, q) for a in q["aliases"])


def test_numbers_are_digits_with_their_words_as_aliases():
    for q in REALWORLD_QA:
        if q["attribute"] == "number":
            assert q["answer"].isdigit() and q["aliases"]


# -- scoring -----------------------------------------------------------------------------------------------------------
def test_scorers_registry():
    assert SCORERS == {"exact": score_exact, "contains": score_contains}


def test_score_exact():
    paris = item("Paris")
    for reply in ("Paris", "paris", "  PARIS.  ", "Paris!", '"Paris"', "Paris.\nIt is in France."):
        assert score_exact(reply, paris), reply
    for reply in ("The capital of France is Paris.", "Parisian", "London", "", "\nParis"):
        assert not score_exact(reply, paris), reply
    dc = item("Washington, D.C.", ["Washington"])
    assert score_exact("Washington, D.C.", dc) and score_exact("washington", dc) and score_exact("Washington.", dc)
    assert not score_exact("Washington state", dc)
    co2 = item("carbon dioxide", ["CO2"], "substance")
    assert score_exact("Carbon dioxide.", co2) and score_exact("co2", co2) and not score_exact("carbon", co2)
    eight = item("8", ["eight"], "number")
    assert score_exact("8", eight) and score_exact("Eight.", eight) and not score_exact("8 legs", eight)


def test_score_contains():
    paris = item("Paris")
    for reply in ("The capital of France is Paris.", "paris", "PARIS!", "It's Paris, of course", "(Paris)",
                  "\n\n  The answer is Paris.\nMore text"):
        assert score_contains(reply, paris), reply
    for reply in ("Parisian food is good.", "The capital is London.", "", "Comparison", "The capital is\nParis."):
        assert not score_contains(reply, paris), reply  # the last one: the answer is only on the second line
    eight = item("8", ["eight"], "number")
    for reply in ("8 legs", "A spider has 8 legs.", "Spiders have eight legs.", "EIGHT", "8."):
        assert score_contains(reply, eight), reply
    for reply in ("18 legs", "Spiders have eighteen legs", "It has 80 legs", "8.5 legs", "1,800", "a8"):
        assert not score_contains(reply, eight), reply
    co2 = item("carbon dioxide", ["CO2"], "substance")
    for reply in ("Plants absorb carbon dioxide.", "Carbon  Dioxide", "They take in CO2 from the air"):
        assert score_contains(reply, co2), reply
    for reply in ("Plants absorb carbon.", "dioxide", "carbon monoxide"):
        assert not score_contains(reply, co2), reply
    # punctuation inside an answer, and an alias that is a part of the answer
    dc = item("Washington, D.C.", ["Washington"])
    assert score_contains("The capital of the United States is Washington, D.C.", dc)
    assert score_contains("It is Washington D.C.", dc)
    rowling = item("J.K. Rowling", ["Rowling"], "author")
    assert score_contains("Harry Potter was written by J.K. Rowling.", rowling)
    assert score_contains("The author is Joanne Rowling", rowling) and not score_contains("J.K. Rollings", rowling)
    # letters and digits are word characters; the underscore is not
    assert score_contains("answer_Paris", paris) and not score_contains("Paris2", paris)
    assert not score_contains("The symbol is Au.", item("Ag", [], "chemical_symbol"))
    assert score_contains("The chemical symbol for gold is Au.", item("Au", [], "chemical_symbol"))


# -- split -------------------------------------------------------------------------------------------------------------
def test_the_split_is_deterministic_disjoint_complete_and_stratified():
    a, b = rw.realworld_split(), rw.realworld_split()
    assert a == b
    val, test = {q["id"] for q in a["val"]}, {q["id"] for q in a["test"]}
    assert not val & test and val | test == {q["id"] for q in REALWORLD_QA}
    assert len(val) == pytest.approx(0.25 * len(REALWORLD_QA), abs=len(rw.CATEGORIES))
    for part in ("val", "test"):
        assert {q["attribute"] for q in a[part]} == set(rw.CATEGORIES)
        order = [int(q["id"][3:]) for q in a[part]]
        assert order == sorted(order)  # each part keeps the set's order
    other = rw.realworld_split(seed=1)
    assert {q["id"] for q in other["val"]} != val
    assert len(rw.realworld_split(val_fraction=0.5)["val"]) > len(val)
    with pytest.raises(ValueError):
        rw.realworld_split(val_fraction=1.0)


# -- stored probe ------------------------------------------------------------------------------------------------------
class WordTokenizer:
    """Whitespace tokenizer with a growing vocabulary: one id per distinct word; no BOS, pad id 0."""

    pad_token_id, eos_token_id = 0, 0

    def __init__(self):
        self.vocab = {"<pad>": 0}

    def ids(self, text):
        return [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

    def __call__(self, text):
        return SimpleNamespace(input_ids=self.ids(text))


class BigramModel(torch.nn.Module):
    """logits[t] = table[x_t] + ctx[x_{t-1}]: the next token depends on the current and the previous token only, so
    the log-likelihood of a text is a sum of terms that can be set (and computed) by hand."""

    def __init__(self, vocab_size):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab_size, vocab_size))
        self.ctx = torch.nn.Parameter(torch.zeros(vocab_size, vocab_size))

    @property
    def device(self):
        return self.table.device

    def forward(self, input_ids, attention_mask=None):
        previous = torch.nn.functional.pad(input_ids[:, :-1], (1, 0))
        return SimpleNamespace(logits=self.table[input_ids] + self.ctx[previous])


def _prepared(items):
    """A word tokenizer that already knows every word of every candidate text of ``items``."""
    tok = WordTokenizer()
    for q in items:
        for c in rw.category_answers(q["attribute"]):
            tok.ids(rw.probe_text(q["question"], c))
    return tok


def test_stored_probe_uniform_model_picks_the_shortest_first_candidate():
    """All-zero logits: every token costs log(V), so the fewest-token candidate wins, ties to the first sorted one
    (the documented bias of a sum of log-probs, and the tie rule)."""
    items = [q for q in REALWORLD_QA if q["attribute"] in ("capital", "color")][::5]
    tok = _prepared(items)
    model = BigramModel(len(tok.vocab)).train()
    r = rw.stored_realworld(model, tok, items, batch_size=7)
    assert model.training  # restored
    expected = [min(rw.category_answers(q["attribute"]), key=lambda c: len(c.split())) for q in items]
    assert r["predictions"] == expected
    assert r["predictions"][0] == "Amsterdam"  # one word, first in sorted order (not "Buenos Aires")
    assert r["hits"] == [int(p == q["answer"]) for p, q in zip(expected, items)]
    assert r["accuracy"] == sum(r["hits"]) / len(items) and r["n"] == len(items)
    assert r["chance"] == pytest.approx(rw.realworld_chance(items))
    assert r["chance"] == pytest.approx(sum(1 / len(rw.category_answers(q["attribute"])) for q in items) / len(items))


def test_stored_probe_finds_the_boosted_answer():
    """Make every word of the gold answer likely after "<last word of the question> Answer:" (one-word answers) and
    after its previous word (multi-word answers): the gold answer wins, one-word or not. Then boost a wrong answer
    harder for two questions: those two now pick it and miss."""
    pool = [q for q in REALWORLD_QA if q["attribute"] in ("capital", "chemical_symbol", "color")]
    last = Counter(q["question"].split()[-1] for q in pool)
    items = [q for q in pool if last[q["question"].split()[-1]] == 1]  # the last word identifies the question
    assert len(items) >= 40 and any(len(q["answer"].split()) > 1 for q in items)
    tok = _prepared(items)
    model = BigramModel(len(tok.vocab))
    v = tok.vocab
    with torch.no_grad():
        for q in items:
            words = q["answer"].split()
            model.ctx[v[q["question"].split()[-1]], v[words[0]]] = 20.0
            for a, b in zip(words, words[1:]):
                model.table[v[a], v[b]] = 20.0
    r = rw.stored_realworld(model, tok, items, batch_size=16)
    assert r["predictions"] == [q["answer"] for q in items] and r["accuracy"] == 1.0 and r["hits"] == [1] * len(items)

    france = next(i for i, q in enumerate(items) if q["question"] == "What is the capital of France?")
    gold = next(i for i, q in enumerate(items) if q["question"] == "What is the chemical symbol for gold?")
    with torch.no_grad():
        model.ctx[v["France?"], v["Rome"]] = 30.0
        model.ctx[v["gold?"], v["Ag"]] = 30.0
    r = rw.stored_realworld(model, tok, items)
    expected = [q["answer"] for q in items]
    expected[france], expected[gold] = "Rome", "Ag"
    assert r["predictions"] == expected
    assert r["hits"] == [int(i not in (france, gold)) for i in range(len(items))]
    assert r["accuracy"] == pytest.approx((len(items) - 2) / len(items))


def test_stored_probe_matches_a_per_sequence_reference_on_a_llama():
    """A small random Llama, batched and padded by the probe, against an unbatched per-text log-likelihood."""
    from transformers import LlamaConfig, LlamaForCausalLM

    items = [q for q in REALWORLD_QA if q["attribute"] in ("continent", "opposite", "number")][::4]
    tok = _prepared(items)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok.vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    r = rw.stored_realworld(model, tok, items, batch_size=5)
    predictions = []
    for q in items:
        cands = rw.category_answers(q["attribute"])
        scores = []
        for c in cands:
            ids = torch.tensor([tok.ids(rw.probe_text(q["question"], c))])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            scores.append(sum(logp[t, ids[0, t + 1]].item() for t in range(ids.shape[1] - 1)))
        best = max(scores)
        assert sorted(scores)[-2] < best - 1e-4  # no near-tie: the batched and the reference argmax must agree
        predictions.append(cands[scores.index(best)])
    assert r["predictions"] == predictions
    assert r["hits"] == [int(p == q["answer"]) for p, q in zip(predictions, items)]
    assert r["accuracy"] == pytest.approx(sum(r["hits"]) / len(items))


def test_chance_and_empty_input():
    assert rw.realworld_chance([]) == 0
    caps = [q for q in REALWORLD_QA if q["attribute"] == "capital"]
    assert rw.realworld_chance(caps) == pytest.approx(1 / len(rw.category_answers("capital")))
    assert math.isclose(rw.realworld_chance(REALWORLD_QA), sum(
        1 / len(rw.category_answers(q["attribute"])) for q in REALWORLD_QA) / len(REALWORLD_QA))


# -- the real model (slow: loads SmolLM2-135M-Instruct, converting it first on a fresh machine) ----------------------
@pytest.mark.slow
def test_smollm2_knows_some_and_the_probe_matches_by_hand():
    from mixcpt_core import smollm2

    if not smollm2.is_available():
        pytest.skip(f"SmolLM2 packages not installed: {smollm2.INSTALL_COMMAND}")
    from mixcpt_core.evaluation import chat_qa_metrics
    from mixcpt_core.models import SMOLLM2, load_causal_lm, resolve_model_name
    from mixcpt_core.probes import sequence_logprobs

    model, tok = load_causal_lm(resolve_model_name(SMOLLM2))
    easy = [q for q in REALWORLD_QA if q["question"] in (
        "What is the capital of France?", "What color is grass?", "What is the opposite of hot?",
        "How many days are there in a week?")]
    m = chat_qa_metrics(model, tok, easy, batch_size=4, max_new_tokens=24)
    assert sum(score_contains(g["content"], q) for g, q in zip(m["generations"], easy)) >= 3
    r = rw.stored_realworld(model, tok, easy[:2])
    cands = rw.category_answers(easy[0]["attribute"])
    scores = sequence_logprobs(model, [tok(rw.probe_text(easy[0]["question"], c)).input_ids for c in cands],
                               pad_id=tok.pad_token_id)
    assert r["predictions"][0] == cands[int(scores.argmax())] and r["n"] == 2
