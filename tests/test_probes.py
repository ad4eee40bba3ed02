"""The stored-knowledge probe, its majority baseline and the paired bootstrap, against hand computations."""

import math

import numpy as np
import pytest
import torch

from mixcpt_core.probes import (
    chance_accuracy,
    majority_accuracy,
    majority_answers,
    probe_sentences,
    sequence_logprobs,
    stored_knowledge,
)
from mixcpt_core.stats import paired_bootstrap


class BigramModel(torch.nn.Module):
    """A causal LM whose next-token logits depend only on the current token: ``logits[b, t] = table[ids[b, t]]``."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    @property
    def device(self):
        return self.table.device

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_sequence_logprobs_by_hand():
    # vocabulary of 3; from token 0 the next token is 1 with p = e^2 / (e^2 + 2), ...
    table = [[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    model = BigramModel(table)
    lp = lambda a, b: table[a][b] - math.log(sum(math.exp(x) for x in table[a]))  # noqa: E731
    seqs = [[0, 1, 0], [2, 2], [0, 2, 2, 1]]  # different lengths: padding must not count
    expected = [lp(0, 1) + lp(1, 0), lp(2, 2), lp(0, 2) + lp(2, 2) + lp(2, 1)]
    got = sequence_logprobs(model, seqs, pad_id=0, batch_size=2)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


class WordTokenizer:
    """Whitespace tokenizer over a fixed vocabulary (ids = positions), no special tokens."""

    pad_token_id = 0

    def __init__(self, words):
        self.vocab = {w: i for i, w in enumerate(["<pad>", *words])}

    def __call__(self, text):
        return type("Enc", (), {"input_ids": [self.vocab[w] for w in text.rstrip(".").split()]})()


class FakeWorld:
    def __init__(self, entities):
        self.entities = entities


def test_stored_knowledge_picks_the_most_likely_sentence(monkeypatch):
    """Two made-up fields; the bigram model makes "studied -> botany" likely, so the probe predicts botany for
    everyone: right for Ada (botany), wrong for Bo (music). Chance = 1/2 per question."""
    import mixcpt_core.probes as probes

    monkeypatch.setitem(probes.ATTRIBUTE_VALUES, "field", ("music", "botany"))
    monkeypatch.setitem(probes.PROBE_TEMPLATES, "field", "{name} studied {v}.")
    tok = WordTokenizer(["Ada", "Bo", "studied", "music", "botany"])
    table = torch.zeros(6, 6)
    table[tok.vocab["studied"], tok.vocab["botany"]] = 1.0  # log-odds botany : music = 1 after "studied"
    world = FakeWorld([{"id": "a", "name": "Ada"}, {"id": "b", "name": "Bo"}])
    qa = [{"entity_id": "a", "attribute": "field", "answer": "botany"},
          {"entity_id": "b", "attribute": "field", "answer": "music"}]
    r = stored_knowledge(BigramModel(table), tok, world, qa)
    assert r["predictions"] == ["botany", "botany"] and r["hits"] == [1, 0] and r["accuracy"] == 0.5
    assert r["chance"] == 0.5
    assert r["majority"] == 0.5  # botany and music once each: the tie goes to botany (sorts first), right for Ada
    table[tok.vocab["studied"], tok.vocab["music"]] = 2.0  # now music wins for both
    assert stored_knowledge(BigramModel(table), tok, world, qa)["hits"] == [0, 1]
    # a third person who studied music: music is the majority, 2 of 3; chance stays 1/2
    world.entities.append({"id": "c", "name": "Bo"})
    r = stored_knowledge(BigramModel(table), tok, world, qa + [{"entity_id": "c", "attribute": "field",
                                                                "answer": "music"}])
    assert r["majority"] == pytest.approx(2 / 3) and r["chance"] == 0.5 and r["hits"] == [0, 1, 1]


def _qa(attribute, answers):
    return [{"attribute": attribute, "answer": a} for a in answers]


def test_majority_accuracy_by_hand():
    assert majority_accuracy(_qa("x", "AABCA")) == pytest.approx(3 / 5)  # A is right 3 times of 5
    # two attributes mixed: x = A,A,B (A: 2 of 3), y = P,Q,Q,Q (Q: 3 of 4), interleaved -> 5 of 7
    mixed = [_qa("x", "A")[0], *_qa("y", "PQ"), *_qa("x", "AB"), *_qa("y", "QQ")]
    assert majority_accuracy(mixed) == pytest.approx(5 / 7)
    assert majority_answers(mixed) == {"x": "A", "y": "Q"}
    # the majority is per attribute: the same value counts separately in each
    assert majority_accuracy(_qa("x", "AAB") + _qa("y", "BC")) == pytest.approx((2 + 1) / 5)
    assert majority_accuracy([]) == 0
    assert majority_accuracy(_qa("x", "B")) == 1.0
    # other keys of the records are ignored
    assert majority_accuracy([{**q, "entity_id": i} for i, q in enumerate(_qa("x", "AAB"))]) == pytest.approx(2 / 3)


def test_majority_ties_go_to_the_value_that_sorts_first():
    assert majority_answers(_qa("x", "BA")) == {"x": "A"}
    assert majority_answers(_qa("x", "CBBCA")) == {"x": "B"}  # B and C twice each, A once
    assert majority_answers(_qa("year", ["1990", "885", "885", "1990"])) == {"year": "1990"}  # string order
    assert majority_answers(_qa("x", "CBBCAC")) == {"x": "C"}  # no tie: C three times
    assert majority_accuracy(_qa("x", "CBBCA")) == pytest.approx(2 / 5)


def test_majority_is_never_below_chance_on_the_world(tiny_world):
    for split in ("domain", "general_heldout"):
        qa = tiny_world.qa_split(split)
        m = majority_accuracy(qa)
        by_attr = {}
        for q in qa:
            by_attr.setdefault(q["attribute"], []).append(q["answer"])
        by_hand = sum(max(answers.count(v) for v in set(answers)) for answers in by_attr.values()) / len(qa)
        assert m == pytest.approx(by_hand) and m >= chance_accuracy(qa) - 1e-12


def test_chance_and_sentences_of_the_real_world(tiny_world):
    values, sentences = probe_sentences("Ada Lorvik", "birth_city")
    assert len(values) == 25 and sentences[0] == "Ada Lorvik was born in Amberfall."
    qa = [{"attribute": a} for a in ("birth_city", "employer", "field", "birth_year")]
    assert chance_accuracy(qa) == pytest.approx((1 / 25 + 1 / 20 + 1 / 16 + 1 / 40) / 4)


def test_stored_probe_on_the_base_model(tiny_world):
    """The shipped base model stored the held-out general facts it read (far above chance) and not the domain
    facts it never read (near chance)."""
    from mixcpt_core.models import load_causal_lm

    from .conftest import ROOT

    model, tok = load_causal_lm(ROOT / "checkpoints" / "base-tiny")
    general = stored_knowledge(model, tok, tiny_world, tiny_world.qa_split("general_heldout")[:80])
    domain = stored_knowledge(model, tok, tiny_world, tiny_world.qa_split("domain")[:80])
    assert general["accuracy"] > 0.8
    assert domain["accuracy"] < 3 * domain["chance"]


def test_bootstrap_constant_difference_has_no_width():
    a = np.ones((3, 50))
    b = np.zeros((3, 50))
    r = paired_bootstrap(a, b, n_boot=200)
    assert (r["diff"], r["lo"], r["hi"], r["half_width"]) == (1.0, 1.0, 1.0, 0.0)


def test_bootstrap_matches_the_normal_interval_for_one_seed():
    """One seed, many questions: the interval is the classical mean ± 1.96 sd / sqrt(Q) of the paired differences."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, (1, 2000))
    b = rng.integers(0, 2, (1, 2000))
    d = (a - b)[0]
    r = paired_bootstrap(a, b, n_boot=4000)
    expected = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert r["half_width"] == pytest.approx(expected, rel=0.08)
    assert r["lo"] < d.mean() < r["hi"]


def test_bootstrap_pairs_by_question_and_widens_with_seed_spread():
    """Pairing removes what both arms share: the same noisy questions in a and b give a narrow interval. Seeds that
    disagree widen it."""
    rng = np.random.default_rng(2)
    shared = rng.integers(0, 2, (3, 400)).astype(float)
    narrow = paired_bootstrap(shared + 0.1, shared, n_boot=500)
    assert narrow["half_width"] < 1e-9 and narrow["diff"] == pytest.approx(0.1)
    seeds_differ = shared + np.array([[0.0], [0.2], [0.4]])
    wide = paired_bootstrap(seeds_differ, shared, n_boot=2000)
    assert wide["diff"] == pytest.approx(0.2) and wide["half_width"] > 0.1
    with pytest.raises(ValueError, match="seeds, questions"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((3, 2)))
