"""The real-world question set (mixcpt_core.realworld): its shape and statements, its scoring rules, the
validation/test split, the format-free stored probe and its Question:/Answer: variant (against hand-built models whose
winners are known by hand), and the majority baseline."""

import hashlib
import json
import math
import re
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from mixcpt_core import realworld as rw
from mixcpt_core.realworld import REALWORLD_QA, SCORERS, score_contains, score_exact, score_reply_contains


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
        assert set(q) == {"id", "question", "answer", "aliases", "attribute", "statement"}
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


def test_the_committed_questions_and_split_are_unchanged():
    """Committed results are keyed by these ids, questions, answers and the split: fingerprints of the set as it was
    committed before the statements were added (computed from that commit's module)."""
    rows = [[q["id"], q["question"], q["answer"], q["aliases"], q["attribute"]] for q in REALWORLD_QA]
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    assert len(rows) == 318
    assert digest == "8f43df1c785fafa9eee6a0ad40d3d796af99eafdede69bc3d953b9d91c8fcb50"
    val = [q["id"] for q in rw.realworld_split()["val"]]
    assert hashlib.sha256(json.dumps(val).encode()).hexdigest() == (
        "a7310dd29c60426e5197374ecb4452cd8418d2552bd491eb77ef7f8869c70623")


# -- statements --------------------------------------------------------------------------------------------------------
def _subjects():
    """(item, subject) for every item of a category with a fixed question template, read from the category table."""
    out, i = [], 0
    for attribute, (template, rows) in rw._CATEGORIES.items():
        for subject, *_ in rows:
            if template != "{}":
                out.append((REALWORLD_QA[i], subject))
            i += 1
    return out


def test_every_item_has_a_well_formed_statement():
    for q in REALWORLD_QA:
        st = q["statement"]
        assert st.count("{}") == 1 and st.count("{") == 1 and st.count("}") == 1, st
        assert st.endswith(".") and st[0].isupper() and "?" not in st and "\n" not in st, st
        assert not {"question", "answer"} & set(re.findall(r"[a-z]+", st.casefold())), st
        gold = rw.statement_text(q, q["answer"])
        assert "{" not in gold and score_contains(gold, q), gold  # the gold answer is in it, as a whole word
        for c in rw.category_answers(q["attribute"]):  # every candidate fits in the same place
            shown = f"the {c}" if c in rw._WITH_ARTICLE else c  # a country that takes the article, with it
            assert rw.statement_text(q, c) == st.replace("{}", shown).replace("..", ".")
    # the statements differ from one another (each states its own fact)
    assert len({q["statement"] for q in REALWORLD_QA}) == len(REALWORLD_QA)


def test_a_country_that_takes_the_article_is_written_with_it():
    chicago = next(q for q in REALWORLD_QA if q["question"] == "In which country is the city of Chicago?")
    assert rw.statement_text(chicago, "United States") == "The city of Chicago is in the United States."
    assert rw.statement_text(chicago, "Canada") == "The city of Chicago is in Canada."


def test_templated_statements_name_their_subject():
    pairs = _subjects()
    assert len(pairs) > 150 and {q["attribute"] for q, _ in pairs} == {a for a, (t, _) in rw._CATEGORIES.items()
                                                                        if t != "{}"}
    for q, subject in pairs:
        gold = rw.statement_text(q, q["answer"])
        assert subject.casefold() in gold.casefold(), (subject, gold)
        assert q["question"] == rw._CATEGORIES[q["attribute"]][0].format(subject)


def test_statements_by_hand():
    """A sample of sentences written out by hand, gold answer inserted: one per category and a few tricky ones."""
    by_question = {q["question"]: q for q in REALWORLD_QA}
    expected = {
        "What is the capital of France?": "The capital of France is Paris.",
        "What is the capital of the United States?": "The capital of the United States is Washington, D.C.",
        "In which country is the city of Sydney?": "The city of Sydney is in Australia.",
        "On which continent is Egypt?": "Egypt is a country in Africa.",
        "What is the chemical symbol for gold?": "The chemical symbol for gold is Au.",
        "How many legs does a spider have?": "A spider has 8 legs.",
        "At how many degrees Celsius does water freeze?": "Water freezes at 0 degrees Celsius.",
        "Which planet is known as the Red Planet?": "The planet known as the Red Planet is Mars.",
        "Who wrote the Harry Potter books?": "The author of the Harry Potter books is J.K. Rowling.",
        "Who painted the Mona Lisa?": "The Mona Lisa was painted by Leonardo da Vinci.",
        "What is the main language spoken in Brazil?": "The main language spoken in Brazil is Portuguese.",
        "What color is the sky on a clear day?": "The sky on a clear day is blue.",
        "Which animal says moo?": "The animal that says moo is the cow.",
        "Who made the first powered airplane flight in 1903?":
            "The first powered airplane flight was made in 1903 by the Wright brothers.",
        "Who was the first person to walk on the Moon?": "The first person to walk on the Moon was Neil Armstrong.",
        "What is the currency of Japan?": "The currency of Japan is the yen.",
        "What is the opposite of hot?": "The opposite of hot is cold.",
        "Which organs do humans use to breathe?": "Humans use the lungs to breathe.",
        "What does water turn into when it freezes?": "When water freezes, it turns into ice.",
        "In which city is the Eiffel Tower?": "The Eiffel Tower is in Paris.",
    }
    assert {by_question[k]["attribute"] for k in expected} == set(rw.CATEGORIES)
    for question, sentence in expected.items():
        assert rw.statement_text(by_question[question], by_question[question]["answer"]) == sentence
    # a wrong candidate goes in the same place
    assert rw.statement_text(by_question["Which animal says moo?"], "giant panda") == (
        "The animal that says moo is the giant panda.")


def test_statement_of_a_record_without_one_is_looked_up_by_id():
    q = next(q for q in REALWORLD_QA if q["question"] == "What is the capital of Italy?")
    saved = {k: v for k, v in q.items() if k != "statement"}  # as written by an older run
    assert rw.statement_text(saved, "Rome") == "The capital of Italy is Rome."


def test_a_missing_or_malformed_statement_fails_the_build(monkeypatch):
    """What import-time errors the statements give (the module runs the same _build when it is imported)."""
    freeform = dict(rw._FREEFORM_STATEMENTS)
    del freeform["Which animal barks?"]
    monkeypatch.setattr(rw, "_FREEFORM_STATEMENTS", freeform)
    with pytest.raises(ValueError, match="no statement for 'Which animal barks\\?'"):
        rw._build()
    monkeypatch.setattr(rw, "_FREEFORM_STATEMENTS", {**rw._FREEFORM_STATEMENTS, "Which animal barks?": "Dogs bark.",
                                                     "Which animal barks loudly?": "The {} barks loudly."})
    with pytest.raises(ValueError, match="bad statement"):  # no "{}"
        rw._build()
    monkeypatch.setattr(rw, "_FREEFORM_STATEMENTS", {**freeform, "Which animal barks?": "The {} barks.",
                                                     "Which animal barks loudly?": "The {} barks loudly."})
    with pytest.raises(ValueError, match="do not exist"):  # a statement for a question that is not in the set
        rw._build()
    monkeypatch.setattr(rw, "_FREEFORM_STATEMENTS", {**freeform, "Which animal barks?": "The {} barks."})
    assert len(rw._build()) == len(REALWORLD_QA)  # the repaired table builds
    for bad in ("Question: the {} barks.", "The answer is {}.", "The {} barks", "the {} barks.", "{} or {}.",
                "The {0} barks."):
        monkeypatch.setattr(rw, "_FREEFORM_STATEMENTS", {**freeform, "Which animal barks?": bad})
        with pytest.raises(ValueError, match="bad statement"):
            rw._build()
    monkeypatch.undo()
    templates = dict(rw._STATEMENT_TEMPLATES)
    del templates["currency"]
    monkeypatch.setattr(rw, "_STATEMENT_TEMPLATES", templates)
    with pytest.raises(ValueError, match="no statement template for category 'currency'"):
        rw._build()


# -- scoring -----------------------------------------------------------------------------------------------------------
def test_scorers_registry():
    assert SCORERS == {"exact": score_exact, "contains": score_contains, "reply_contains": score_reply_contains}
    from mixcpt_core.evaluation import MATCH_RULES, EvalSpec, answer_matches

    assert set(MATCH_RULES) == set(SCORERS)
    assert EvalSpec(match="reply_contains").match == "reply_contains"
    paris = item("Paris")
    assert answer_matches("Sure!\nThe capital of France is Paris.", paris, "reply_contains")
    assert not answer_matches("Sure!\nThe capital of France is Paris.", paris, "contains")


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


def test_score_reply_contains_searches_every_line():
    paris = item("Paris")
    second_line = "Sure! Here is the answer.\nThe capital of France is Paris."
    assert score_reply_contains(second_line, paris) and not score_contains(second_line, paris)
    for reply in ("Paris", "The capital is\nParis.", "\n\nLet me think.\n\n  PARIS!", "Hmm.\n(paris)",
                  "The capital of France is Paris.\nIt is a big city."):
        assert score_reply_contains(reply, paris), reply
    for reply in ("Parisian food is good.\nParisians love it.", "Hmm.\nComparison", "", "\n\n", "London\nLondon"):
        assert not score_reply_contains(reply, paris), reply
    eight = item("8", ["eight"], "number")
    for reply in ("Let me count.\nA spider has 8 legs.", "Well...\nEight.", "Spiders:\n8"):
        assert score_reply_contains(reply, eight) and not score_contains(reply, eight), reply
    for reply in ("18 legs", "Let me count.\nIt has 18 legs.", "Hmm.\neighteen", "Hmm.\n8.5 legs", "x\n1,800",
                  "x\na8"):
        assert not score_reply_contains(reply, eight), reply
    # aliases, on any line; a multi-word answer may be split by a line break
    dc = item("Washington, D.C.", ["Washington"])
    assert score_reply_contains("The capital of the USA?\nIt is Washington.", dc)
    assert score_reply_contains("It is Washington,\nD.C.", dc)
    co2 = item("carbon dioxide", ["CO2"], "substance")
    assert score_reply_contains("Plants breathe.\nThey take in CO2.", co2)
    assert score_reply_contains("Plants absorb carbon\ndioxide.", co2)
    assert not score_reply_contains("Plants absorb carbon.\nAnd monoxide.", co2)
    # whatever contains finds, reply_contains finds too
    for q in REALWORLD_QA:
        assert score_reply_contains(q["answer"], q) and score_reply_contains("Well.\n" + q["answer"], q)


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
    """A word tokenizer that already knows every word of every candidate text of ``items`` (statement and
    Question:/Answer: layout)."""
    tok = WordTokenizer()
    for q in items:
        for c in rw.category_answers(q["attribute"]):
            tok.ids(rw.statement_text(q, c))
            tok.ids(rw.probe_text(q["question"], c))
    return tok


class FixedWordTokenizer:
    """Whitespace tokenizer over a fixed vocabulary in which "." is a word of its own; records every text it encodes
    (so a test can see exactly which texts a probe scored). No BOS, pad id 0."""

    pad_token_id, eos_token_id = 0, 0

    def __init__(self, texts):
        self.vocab = {"<pad>": 0}
        for t in texts:
            for w in self.words(t):
                self.vocab.setdefault(w, len(self.vocab))
        self.seen = []

    @staticmethod
    def words(text):
        return text.replace(".", " . ").split()

    def __call__(self, text):
        self.seen.append(text)
        return SimpleNamespace(input_ids=[self.vocab[w] for w in self.words(text)])


def test_stored_probe_scores_statements_and_the_qa_layout_scores_question_answer():
    """Two continent questions (France: Europe, Japan: Asia), five candidates each. A bigram model where only the
    word after "in" is not uniform: "in -> Asia" has logit 3. By hand, with V words and Z = e^3 + V - 1:

    * statement "France is a country in X .": Africa/Europe: -5 log V - log Z; Asia: -5 log V + 3 - log Z;
      North/South America: one word more, -6 log V - log Z. Asia wins both questions (hits [0, 1]).
    * Question:/Answer: layout: no "in" right before the answer (it follows "Answer:"), so every one-word candidate
      costs the same and the first in sorted order, Africa, wins both (hits [0, 0]).

    Then "in -> South" and "South -> America" get logit 5: South America wins the statements (10 - log Z' - log Z_S
    against 3 - log Z'), although it is a word longer."""
    france, japan = (next(q for q in REALWORLD_QA if q["question"] == f"On which continent is {c}?")
                     for c in ("France", "Japan"))
    items = [france, japan]
    cands = rw.category_answers("continent")
    assert cands == ["Africa", "Asia", "Europe", "North America", "South America"]
    statements = [[f"{s} is a country in {c}." for c in cands] for s in ("France", "Japan")]
    layouts = [[f"Question: On which continent is {s}?\nAnswer: {c}" for c in cands] for s in ("France", "Japan")]
    tok = FixedWordTokenizer(statements[0] + statements[1] + layouts[0] + layouts[1])
    V = len(tok.vocab)
    model = BigramModel(V)
    with torch.no_grad():
        model.table[tok.vocab["in"], tok.vocab["Asia"]] = 3.0
    log_z = math.log(math.exp(3) + V - 1)
    by_hand = {"Africa": -5 * math.log(V) - log_z, "Asia": -5 * math.log(V) + 3 - log_z,
               "Europe": -5 * math.log(V) - log_z, "North America": -6 * math.log(V) - log_z,
               "South America": -6 * math.log(V) - log_z}
    assert max(by_hand, key=by_hand.get) == "Asia"

    r = rw.stored_realworld(model, tok, items)
    assert tok.seen == statements[0] + statements[1]  # exactly these texts, no question, no "Answer:"
    assert r["predictions"] == ["Asia", "Asia"] and r["hits"] == [0, 1] and r["accuracy"] == 0.5 and r["n"] == 2
    assert r["chance"] == pytest.approx(1 / 5)
    assert r["majority"] == 0.5  # Europe and Asia once each: the tie goes to Asia (sorts first), right for Japan

    tok.seen.clear()
    r = rw.stored_realworld_qa_layout(model, tok, items)
    assert tok.seen == layouts[0] + layouts[1]
    assert r["predictions"] == ["Africa", "Africa"] and r["hits"] == [0, 0] and r["accuracy"] == 0.0
    assert r["chance"] == pytest.approx(1 / 5) and r["majority"] == 0.5

    with torch.no_grad():
        model.table[tok.vocab["in"], tok.vocab["South"]] = 5.0
        model.table[tok.vocab["South"], tok.vocab["America"]] = 5.0
    log_z2 = math.log(math.exp(3) + math.exp(5) + V - 2)
    log_zs = math.log(math.exp(5) + V - 1)
    south, asia = -5 * math.log(V) + 10 - log_z2 - log_zs, -5 * math.log(V) + 3 - log_z2
    assert south > asia
    r = rw.stored_realworld(model, tok, items)
    assert r["predictions"] == ["South America", "South America"] and r["hits"] == [0, 0]


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
    """Statements: make the first word of the gold answer likely after "<subject> is" (the word two before the answer
    identifies the question) and every further word after its previous word: the gold answer wins, one-word or not.
    Then boost a wrong answer harder for two questions: those two now pick it and miss."""
    pool = [q for q in REALWORLD_QA if q["attribute"] in ("capital", "chemical_symbol", "color")]
    key = {q["id"]: q["statement"].split()[-3] for q in pool}  # "The capital of France is {}." -> "France"
    last = Counter(key.values())
    items = [q for q in pool if last[key[q["id"]]] == 1]
    assert len(items) >= 40 and any(len(q["answer"].split()) > 1 for q in items)
    assert all(q["statement"].split()[-2:] == ["is", "{}."] for q in items)
    tok = _prepared(items)
    model = BigramModel(len(tok.vocab))
    v = tok.vocab
    with torch.no_grad():
        for q in items:
            words = rw.statement_text(q, q["answer"]).split()[-len(q["answer"].split()):]  # the answer's words
            model.ctx[v[key[q["id"]]], v[words[0]]] = 20.0
            for a, b in zip(words, words[1:]):
                model.table[v[a], v[b]] = 20.0
    r = rw.stored_realworld(model, tok, items, batch_size=16)
    assert r["predictions"] == [q["answer"] for q in items] and r["accuracy"] == 1.0 and r["hits"] == [1] * len(items)
    # the same model knows nothing in the Question:/Answer: layout (the boosts sit on other contexts)
    assert rw.stored_realworld_qa_layout(model, tok, items)["accuracy"] < 0.2

    france = next(i for i, q in enumerate(items) if q["question"] == "What is the capital of France?")
    gold = next(i for i, q in enumerate(items) if q["question"] == "What is the chemical symbol for gold?")
    with torch.no_grad():
        model.ctx[v["France"], v["Rome."]] = 30.0
        model.ctx[v["gold"], v["Ag."]] = 30.0
    r = rw.stored_realworld(model, tok, items)
    expected = [q["answer"] for q in items]
    expected[france], expected[gold] = "Rome", "Ag"
    assert r["predictions"] == expected
    assert r["hits"] == [int(i not in (france, gold)) for i in range(len(items))]


def test_qa_layout_probe_finds_the_boosted_answer():
    """The Question:/Answer: layout: make every word of the gold answer likely after "<last word of the question>
    Answer:" (one-word answers) and after its previous word (multi-word answers): the gold answer wins, one-word or
    not. Then boost a wrong answer harder for two questions: those two now pick it and miss."""
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
    r = rw.stored_realworld_qa_layout(model, tok, items, batch_size=16)
    assert r["predictions"] == [q["answer"] for q in items] and r["accuracy"] == 1.0 and r["hits"] == [1] * len(items)

    france = next(i for i, q in enumerate(items) if q["question"] == "What is the capital of France?")
    gold = next(i for i, q in enumerate(items) if q["question"] == "What is the chemical symbol for gold?")
    with torch.no_grad():
        model.ctx[v["France?"], v["Rome"]] = 30.0
        model.ctx[v["gold?"], v["Ag"]] = 30.0
    r = rw.stored_realworld_qa_layout(model, tok, items)
    expected = [q["answer"] for q in items]
    expected[france], expected[gold] = "Rome", "Ag"
    assert r["predictions"] == expected
    assert r["hits"] == [int(i not in (france, gold)) for i in range(len(items))]
    assert r["accuracy"] == pytest.approx((len(items) - 2) / len(items))


@pytest.mark.parametrize("probe, text", [
    (rw.stored_realworld, lambda q, c: rw.statement_text(q, c)),
    (rw.stored_realworld_qa_layout, lambda q, c: rw.probe_text(q["question"], c)),
], ids=["statement", "qa_layout"])
def test_stored_probe_matches_a_per_sequence_reference_on_a_llama(probe, text):
    """A small random Llama, batched and padded by the probe, against an unbatched per-text log-likelihood."""
    from transformers import LlamaConfig, LlamaForCausalLM

    items = [q for q in REALWORLD_QA if q["attribute"] in ("continent", "opposite", "number")][::4]
    tok = _prepared(items)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok.vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    r = probe(model, tok, items, batch_size=5)
    predictions = []
    for q in items:
        cands = rw.category_answers(q["attribute"])
        scores = []
        for c in cands:
            ids = torch.tensor([tok.ids(text(q, c))])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            scores.append(sum(logp[t, ids[0, t + 1]].item() for t in range(ids.shape[1] - 1)))
        best = max(scores)
        assert sorted(scores)[-2] < best - 1e-4  # no near-tie: the batched and the reference argmax must agree
        predictions.append(cands[scores.index(best)])
    assert r["predictions"] == predictions
    assert r["hits"] == [int(p == q["answer"]) for p, q in zip(predictions, items)]
    assert r["accuracy"] == pytest.approx(sum(r["hits"]) / len(items))


def test_majority_baseline_of_the_real_world():
    """By hand from the table: among the 28 numbers "8" is the most common answer (spider, octagon, planets,
    octopus); among the 18 colours red and white tie at 3 (red sorts first); all 35 capitals differ."""
    from mixcpt_core.probes import majority_answers

    numbers = [q for q in REALWORLD_QA if q["attribute"] == "number"]
    colors = [q for q in REALWORLD_QA if q["attribute"] == "color"]
    caps = [q for q in REALWORLD_QA if q["attribute"] == "capital"]
    assert rw.realworld_majority(numbers) == pytest.approx(4 / 28)
    assert rw.realworld_majority(colors) == pytest.approx(3 / 18)
    assert majority_answers(numbers + colors) == {"number": "8", "color": "red"}
    assert rw.realworld_majority(caps) == pytest.approx(1 / 35)
    assert rw.realworld_majority(numbers + colors + caps) == pytest.approx((4 + 3 + 1) / (28 + 18 + 35))
    assert rw.realworld_majority([]) == 0


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

    model, tok = load_causal_lm(resolve_model_name(SMOLLM2))
    model.eval()
    easy = [q for q in REALWORLD_QA if q["question"] in (
        "What is the capital of France?", "What color is grass?", "What is the opposite of hot?",
        "How many days are there in a week?")]
    m = chat_qa_metrics(model, tok, easy, batch_size=4, max_new_tokens=24)
    assert sum(score_contains(g["content"], q) for g, q in zip(m["generations"], easy)) >= 3
    cands = rw.category_answers(easy[0]["attribute"])
    for probe, text in ((rw.stored_realworld, lambda c: rw.statement_text(easy[0], c)),
                        (rw.stored_realworld_qa_layout, lambda c: rw.probe_text(easy[0]["question"], c))):
        r = probe(model, tok, easy[:2])
        scores = []  # by hand: one unpadded sequence at a time, sum_t log_softmax(logits_t)[x_{t+1}] in float64
        for c in cands:
            ids = tok(text(c)).input_ids
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].double(), -1)
            scores.append(sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1)))
        best = max(scores)
        assert sorted(scores)[-2] < best - 1e-3  # no near-tie, which batching could break either way
        assert r["predictions"][0] == cands[scores.index(best)] and r["n"] == 2
