import json
import re

import pytest

from mixcpt_core.world import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    DOC_TEMPLATES,
    WORLD_FILES,
    WORLD_PRESETS,
    WorldConfig,
    generate_world,
    load_world,
    plain_qa_text,
    write_world,
)

from .conftest import ROOT


def _files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path):
    cfg = WorldConfig(seed=3)
    write_world(generate_world(cfg), tmp_path / "a")
    write_world(generate_world(cfg), tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    write_world(generate_world(WorldConfig(seed=4)), tmp_path / "c")
    assert _files(tmp_path / "a")["entities.jsonl"] != _files(tmp_path / "c")["entities.jsonl"]


def test_committed_sample_is_reproduced_exactly(tmp_path):
    write_world(generate_world(WORLD_PRESETS["sample"]), tmp_path / "world")
    assert _files(tmp_path / "world") == _files(ROOT / "data_samples" / "world")


def test_round_trip_through_jsonl(tmp_path, sample_world):
    loaded = load_world(write_world(sample_world, tmp_path / "w"))
    for name in WORLD_FILES:
        assert getattr(loaded, name) == getattr(sample_world, name)
    assert loaded.config == sample_world.config


def test_sizes_and_splits(tiny_world):
    cfg = tiny_world.config
    general = [e for e in tiny_world.entities if e["group"] == "general"]
    domain = [e for e in tiny_world.entities if e["group"] == "domain"]
    assert len(general) == cfg.n_general and len(domain) == cfg.n_domain
    n_heldout = round(cfg.n_general * cfg.heldout_fraction)
    assert sum(e["split"] in ("heldout", "val") for e in general) == n_heldout
    assert sum(e["split"] == "val" for e in general) == round(n_heldout * cfg.val_fraction)
    assert sum(e["split"] == "domain_val" for e in domain) == round(cfg.n_domain * cfg.val_fraction)
    assert len({e["name"] for e in tiny_world.entities}) == len(tiny_world.entities)  # names are unique
    # general and domain surnames are disjoint: the domain is new to the base model
    assert not {e["name"].split()[1] for e in general} & {e["name"].split()[1] for e in domain}
    n_people = cfg.n_general + cfg.n_domain
    assert len(tiny_world.documents) == n_people * (cfg.docs_per_entity + 1)  # + one eval document each
    assert len(tiny_world.qa) == n_people * len(ATTRIBUTES)
    for e in tiny_world.entities:
        for a in ATTRIBUTES:
            assert e["attributes"][a] in ATTRIBUTE_VALUES[a]


def test_no_test_qa_or_test_person_reaches_training_text(tiny_world):
    w = tiny_world
    training = w.base_pretraining_texts() + w.docs("domain")
    training += [m["content"] for r in w.instructions for m in r["messages"]]
    training += [t for p in w.preferences for t in (p["prompt"], p["chosen"], p["rejected"])]
    blob = "\n".join(training)
    for q in w.qa_split("general_heldout") + w.qa_split("domain") + w.qa_split("general_val") + w.qa_split("domain_val"):
        assert q["question"] not in blob
        assert plain_qa_text(q["question"], q["answer"]) not in blob
    # instruction and preference data only ever name seen general people
    seen = {e["name"] for e in w.entities if e["split"] == "seen"}
    names = re.compile("|".join(re.escape(e["name"]) for e in w.entities))
    instr = [m["content"] for r in w.instructions for m in r["messages"]] + [p["prompt"] for p in w.preferences]
    assert {n for t in instr for n in names.findall(t)} <= seen
    # the base corpus never names a domain person
    base = "\n".join(w.base_pretraining_texts())
    assert not any(e["name"] in base for e in w.entities if e["group"] == "domain")
    # held-out documents are not training documents
    assert not set(w.docs("general", "eval")) & set(w.docs("general", "train"))


def test_documents_state_every_fact_with_the_full_name(tiny_world):
    people = {e["id"]: e for e in tiny_world.entities}
    for d in tiny_world.documents[:200]:
        p = people[d["entity_id"]]
        sentences = d["text"].split(". ")
        assert len(sentences) == len(ATTRIBUTES)
        assert all(s.startswith(p["name"]) or p["name"] in s for s in sentences)
        assert all(p["attributes"][a] in d["text"] for a in ATTRIBUTES)


@pytest.mark.parametrize("n_templates", [1, 2, 6])
def test_augmentation_knobs(n_templates):
    w = generate_world(WorldConfig(n_general=8, n_domain=4, docs_per_entity=3, templates_per_attribute=n_templates,
                                   permute_sentences=False))
    allowed = {a: [t.split("{v}")[0].replace("{name}", "") for t in DOC_TEMPLATES[a][:n_templates]] for a in ATTRIBUTES}
    people = {e["id"]: e for e in w.entities}
    by_person = {}
    for d in w.documents:
        p = people[d["entity_id"]]
        sentences = d["text"].split(". ")
        for a, s in zip(ATTRIBUTES, sentences):  # unpermuted: attribute order is fixed
            s = s.replace(p["name"], "")
            assert any(s.startswith(prefix) for prefix in allowed[a]), (a, s)
        by_person.setdefault(d["entity_id"], []).append(d["text"])
    if n_templates == 1:  # one template, no permutation: every document of a person is the same text
        assert all(len(set(texts)) == 1 for texts in by_person.values())


def test_permutation_changes_sentence_order():
    w = generate_world(WorldConfig(n_general=8, n_domain=4, docs_per_entity=4, templates_per_attribute=1))
    first_words = {d["text"].split(". ")[0].split()[2] for d in w.documents}
    assert len(first_words) > 1


def test_instruction_records_are_correct(tiny_world):
    """Every kind of instruction checked against the people's facts, about seen general people only: ``qa`` answers
    its question, ``compare`` names the one born earlier, ``bio`` states all four facts (written out here by hand,
    in the first sentence form of each attribute)."""
    people = {e["name"]: e for e in tiny_world.entities}
    cfg = tiny_world.config
    by_kind = {}
    for r in tiny_world.instructions:
        by_kind.setdefault(r["kind"], []).append(r)
    assert set(by_kind) == {"qa", "compare", "bio"}
    n_seen = sum(e["split"] == "seen" for e in tiny_world.entities)
    assert (len(by_kind["qa"]), len(by_kind["compare"]), len(by_kind["bio"])) == (
        4 * n_seen, cfg.n_compare_instructions, min(cfg.n_bio_instructions, n_seen))
    questions = {q["question"]: q for q in tiny_world.qa}
    for r in tiny_world.instructions:
        user, assistant = r["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        if r["kind"] == "qa":
            q = questions[user["content"]]
            assert assistant["content"] == q["answer"] and q["split"] == "general_seen"
        elif r["kind"] == "compare":
            a, b = re.match(r"Who was born earlier, (.+) or (.+)\?", user["content"]).groups()
            assert people[a]["split"] == people[b]["split"] == "seen" and a != b
            ya, yb = int(people[a]["attributes"]["birth_year"]), int(people[b]["attributes"]["birth_year"])
            assert ya != yb and assistant["content"] == (a if ya < yb else b)
        else:
            (name,) = re.fullmatch(r"Write a short biography of (.+)\.", user["content"]).groups()
            p = people[name]
            assert p["split"] == "seen" and p["group"] == "general"
            f = p["attributes"]
            assert assistant["content"] == (f"{name} was born in {f['birth_city']}. {name} works for {f['employer']}. "
                                            f"{name} studied {f['field']}. {name} was born in the year "
                                            f"{f['birth_year']}.")
    bios = [re.fullmatch(r"Write a short biography of (.+)\.", r["messages"][0]["content"]).group(1)
            for r in by_kind["bio"]]
    assert len(set(bios)) == len(bios)  # one biography per person


def test_preference_pairs(tiny_world):
    values = {v: a for a in ATTRIBUTES for v in ATTRIBUTE_VALUES[a]}
    qa = {q["question"]: q["answer"] for q in tiny_world.qa}
    assert len(tiny_world.preferences) == tiny_world.config.n_preference_pairs
    for p in tiny_world.preferences:
        assert p["chosen"] == qa[p["prompt"]]
        assert p["chosen"] != p["rejected"]
        if p["kind"] == "wrong_value":  # plausible: a value of the same type
            assert values[p["rejected"]] == values[p["chosen"]]


@pytest.mark.parametrize("bad", [dict(n_general=-1), dict(n_domain=0), dict(docs_per_entity=0),
                                 dict(templates_per_attribute=7), dict(heldout_fraction=1.0)])
def test_bad_config_raises(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        WorldConfig(**bad)


def test_failed_write_leaves_nothing(tmp_path, sample_world, monkeypatch):
    import mixcpt_core.world as world_mod

    calls = {"n": 0}
    real = world_mod._jsonl

    def boom(rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(rows)

    monkeypatch.setattr(world_mod, "_jsonl", boom)
    with pytest.raises(OSError):
        write_world(sample_world, tmp_path / "w")
    assert list(tmp_path.iterdir()) == []


def test_world_json_records_config_and_counts(tmp_path, sample_world):
    meta = json.loads((write_world(sample_world, tmp_path / "w") / "world.json").read_text())
    assert meta["fingerprint"] == sample_world.config.fingerprint()
    assert meta["counts"]["qa"] == len(sample_world.qa)


def test_validation_and_test_splits_are_disjoint(tiny_world):
    """Validation questions (the only ones a choice may read) share no question, fact or person with the test
    questions, and every QA item is in exactly one split."""
    from mixcpt_core.world import QA_SPLITS, TEST_SPLITS, VALIDATION_SPLITS

    by_split = {s: tiny_world.qa_split(s) for s in QA_SPLITS}
    assert sum(map(len, by_split.values())) == len(tiny_world.qa)
    val = [q for s in VALIDATION_SPLITS for q in by_split[s]]
    test = [q for s in TEST_SPLITS for q in by_split[s]]
    assert len(by_split["general_val"]) == len(by_split["domain_val"]) == 96  # 24 people x 4 facts each
    assert len(by_split["general_heldout"]) == len(by_split["domain"]) == 384
    for key in ("id", "question", "entity_id"):
        assert not {q[key] for q in val} & {q[key] for q in test}
    # validation people are held-out general people or domain people: their QA is in no training text either
    split_of = {e["id"]: e["split"] for e in tiny_world.entities}
    assert {split_of[q["entity_id"]] for q in by_split["general_val"]} == {"val"}
    assert {split_of[q["entity_id"]] for q in by_split["domain_val"]} == {"domain_val"}
    with pytest.raises(ValueError, match="unknown QA split"):
        tiny_world.qa_split("heldout")


def test_val_fraction_changes_no_training_text():
    """Carving out validation questions draws nothing from the world's random stream: every document, instruction
    and preference pair (so the tokenizer and the base model) is the same with and without a validation split."""
    with_val, without = generate_world(WorldConfig(val_fraction=0.2)), generate_world(WorldConfig(val_fraction=0.0))
    assert with_val.all_texts() == without.all_texts()
    assert (with_val.documents, with_val.instructions, with_val.preferences) == (
        without.documents, without.instructions, without.preferences)
    assert not without.qa_split("general_val") and not without.qa_split("domain_val")
    assert {q["id"] for q in with_val.qa_split("general_val") + with_val.qa_split("general_heldout")} == {
        q["id"] for q in without.qa_split("general_heldout")}
    with pytest.raises(ValueError, match="val_fraction"):
        WorldConfig(val_fraction=1.0)
