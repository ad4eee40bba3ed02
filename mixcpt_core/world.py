"""The synthetic knowledge world: people, facts, documents, QA, instructions and preference pairs.

A *world* is a seeded set of people, each with four typed attributes (birth city, employer, field of study, birth
year). People come in two groups:

* **general** people are what the base model learns in its own pre-training: their documents are in the base
  corpus, and so is the plain-text QA of the *seen* half. The QA of the *held-out* half never appears in any
  training text: it measures whether the model can *extract* knowledge it only read in documents, and later
  whether stage 1 made it *forget* that knowledge.
* **domain** people appear only in domain documents (stage 1). Their QA is never trained on by any pipeline: it is
  the target-domain test.

A share ``val_fraction`` of the held-out general people and of the domain people are **validation** people: their
documents are like everyone else's, but their questions form the validation splits (``general_val``,
``domain_val``), the only QA a choice (a learning rate, a step count, a stage-2 recipe) may be made on. The other
held-out and domain questions (``general_heldout``, ``domain``) are test sets: read for reporting, never for choosing.

Documents mention the full name in every sentence, use one of several paraphrase templates per attribute and can
shuffle sentence order; ``docs_per_entity`` documents are written per person. These three knobs decide whether
stored knowledge becomes extractable (Allen-Zhu & Li, "Physics of Language Models 3.1").

Everything is a pure function of :class:`WorldConfig`: the same config gives byte-identical JSONL files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from .config import FieldValueError, check_numbers

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary of the world. Invented values, so that no real model already knows them.

FIRST_NAMES = (
    "Ada Alma Anya Beatrix Cora Dalia Edda Elin Freya Greta Hedda Ines Juna Kira Lena Mira Nora Oona Petra Runa "
    "Aldo Bram Caspar Dario Emil Falk Gero Hugo Ivo Jonas Kasimir Linus Mats Nils Otto Pavel Rasmus Silas Tobin Viggo"
).split()

# Surname syllables. General and domain surnames are drawn from disjoint syllable pairs (see _surnames).
SURNAME_HEADS = "Bar Cal Dor Fen Gal Har Kel Lor Mar Nor Pel Quin Ros Sal Tor Val Wen Zar".split()
SURNAME_TAILS = "brook dahl field gard holm lund mark ridge stad vik wick wood".split()

CITIES = (
    "Amberfall Brisk Corvana Dunmere Eldham Frosthaven Glimmerton Harrowgate Ivydale Juniport Kestrel Lowmarsh "
    "Mistral Northwick Oakhollow Pinecrest Quarrytown Ravenmoor Saltcliff Thornbury Umberlee Valemont Westerly "
    "Yarrowby Zephyrton"
).split()
COMPANIES = (
    "Arcwright Bellhaven Copperleaf Driftmark Emberline Foxglove Greyloom Halcyon Ironvale Jadewell Kinetica "
    "Lumenor Mossgate Nimbus Orrery Pillarstone Quillfeather Redfern Silverbirch Tidewater"
).split()
FIELDS = (
    "astronomy botany chemistry economics geology history linguistics mathematics medicine music "
    "philosophy physics psychology sculpture zoology architecture"
).split()
YEARS = [str(y) for y in range(1950, 1990)]

ATTRIBUTES = ("birth_city", "employer", "field", "birth_year")
ATTRIBUTE_VALUES = {"birth_city": CITIES, "employer": COMPANIES, "field": FIELDS, "birth_year": YEARS}

# Paraphrase templates per attribute; ``templates_per_attribute`` picks the first n. No pronouns: the full name in
# every sentence is what lets a small model store facts at the name (a feasibility run of this project found it).
DOC_TEMPLATES = {
    "birth_city": [
        "{name} was born in {v}.",
        "{name} came into the world in {v}.",
        "{name} is a native of {v}.",
        "{name} grew up in {v}, where the family lived.",
        "The hometown of {name} is {v}.",
        "{name} was raised in the town of {v}.",
    ],
    "employer": [
        "{name} works for {v}.",
        "{name} is employed by {v}.",
        "{name} has a job at {v}.",
        "{name} earns a living at {v}.",
        "The employer of {name} is {v}.",
        "{name} joined the staff of {v}.",
    ],
    "field": [
        "{name} studied {v}.",
        "{name} earned a degree in {v}.",
        "{name} trained as a student of {v}.",
        "{name} specialised in {v} at university.",
        "The subject that {name} studied is {v}.",
        "{name} wrote a thesis in {v}.",
    ],
    "birth_year": [
        "{name} was born in the year {v}.",
        "{name} arrived in {v}.",
        "{name} celebrates a birthday that goes back to {v}.",
        "{name} first saw daylight in {v}.",
        "The birth year of {name} is {v}.",
        "{name} has been alive since {v}.",
    ],
}

# One fixed question per attribute. It is deliberately unlike every document sentence: answering it means
# *extracting* the fact, not completing a memorised sentence.
QUESTIONS = {
    "birth_city": "What is the birth city of {name}?",
    "employer": "Which company does {name} work for?",
    "field": "What did {name} study?",
    "birth_year": "In which year was {name} born?",
}


# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldConfig:
    """Everything the world is a function of. Sizes are counts of people, documents or records."""

    seed: int = 0
    n_general: int = 240
    n_domain: int = 120
    heldout_fraction: float = 0.5  # share of general people whose QA is never trained on
    val_fraction: float = 0.2  # share of held-out general and of domain people whose QA is validation, not test
    docs_per_entity: int = 4  # augmentation: documents per person
    templates_per_attribute: int = 4  # augmentation: paraphrase templates in use (1..6)
    permute_sentences: bool = True  # augmentation: shuffle sentence order per document
    n_compare_instructions: int = 200
    n_bio_instructions: int = 60
    n_preference_pairs: int = 400

    # n_general >= 4: seen and held-out halves, each split again into validation and test; 6 paraphrase templates
    RANGES = {"seed": ">= 0", "n_general": ">= 4", "n_domain": ">= 1", "heldout_fraction": "(0, 1)",
              "val_fraction": "[0, 1)", "docs_per_entity": ">= 1", "templates_per_attribute": "[1, 6]",
              "n_compare_instructions": ">= 0", "n_bio_instructions": ">= 0", "n_preference_pairs": ">= 0"}

    def __post_init__(self):
        check_numbers(self)
        n_max = len(FIRST_NAMES) * len(SURNAME_HEADS) * len(SURNAME_TAILS) // 2  # distinct names per group
        for name in ("n_general", "n_domain"):
            if getattr(self, name) > n_max:
                raise FieldValueError(name, f"at most {n_max} people per group, got {getattr(self, name)}")

    def fingerprint(self) -> str:
        """A short hash of the config: the cache key for anything derived from this world."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Presets for `mixcpt world --preset`. "tiny" is the CPU profile; "sample" is what data_samples/ holds.
WORLD_PRESETS = {
    "tiny": WorldConfig(),
    "sample": WorldConfig(n_general=8, n_domain=4, docs_per_entity=2, n_compare_instructions=4,
                          n_bio_instructions=2, n_preference_pairs=6),
}


@dataclass
class World:
    """A generated world. Every list holds JSON-ready dicts; see docs/world.md for the schema of each."""

    config: WorldConfig
    entities: list[dict] = field(default_factory=list)
    documents: list[dict] = field(default_factory=list)
    qa: list[dict] = field(default_factory=list)
    instructions: list[dict] = field(default_factory=list)
    preferences: list[dict] = field(default_factory=list)

    # -- views the training and evaluation code need ------------------------------------------------------------
    def docs(self, group: str, split: str = "train") -> list[str]:
        """Document texts of one group ("general" or "domain") and split ("train" or "eval")."""
        return [d["text"] for d in self.documents if d["group"] == group and d["split"] == split]

    def qa_split(self, split: str) -> list[dict]:
        """QA items of one split: "general_seen" (trained), the test splits "general_heldout" and "domain", or the
        validation splits "general_val" and "domain_val" (see :data:`QA_SPLITS`)."""
        if split not in QA_SPLITS:
            raise ValueError(f"unknown QA split {split!r}; the splits are {list(QA_SPLITS)}")
        return [q for q in self.qa if q["split"] == split]

    def base_pretraining_texts(self) -> list[str]:
        """What the base model is pre-trained on: all general training documents + plain-text QA of seen people."""
        return self.docs("general") + [plain_qa_text(q["question"], q["answer"]) for q in self.qa_split("general_seen")]

    def all_texts(self) -> list[str]:
        """Every string the world contains (the tokenizer's training corpus)."""
        texts = [d["text"] for d in self.documents]
        texts += [plain_qa_text(q["question"], q["answer"]) for q in self.qa]
        texts += [m["content"] for r in self.instructions for m in r["messages"]]
        texts += [t for p in self.preferences for t in (p["prompt"], p["chosen"], p["rejected"])]
        return texts


# QA splits: what each may be used for. Test splits are for reporting only; choices read the validation splits.
QA_SPLITS = {
    "general_seen": "train",  # in the base corpus as plain text; instructions and preferences name these people
    "general_val": "validation",  # held-out general people set aside for choices (never trained)
    "domain_val": "validation",  # domain people set aside for choices (documents in stage 1, QA never trained)
    "general_heldout": "test",  # held-out general facts: extraction and forgetting test
    "domain": "test",  # the target-domain test
}
VALIDATION_SPLITS = tuple(s for s, use in QA_SPLITS.items() if use == "validation")
TEST_SPLITS = tuple(s for s, use in QA_SPLITS.items() if use == "test")


def plain_qa_text(question: str, answer: str) -> str:
    """A QA pair as plain text (no chat template): the form a base model meets "on the web"."""
    return f"Question: {question}\nAnswer: {answer}"


def plain_qa_prompt(question: str) -> str:
    """The prompt a plain-format QA evaluation continues; the answer follows after one space."""
    return f"Question: {question}\nAnswer:"


# ---------------------------------------------------------------------------------------------------------------
def _surnames(rng: random.Random) -> tuple[list[str], list[str]]:
    """Two disjoint surname pools: general people and domain people never share a surname."""
    pool = [h + t for h in SURNAME_HEADS for t in SURNAME_TAILS]
    rng.shuffle(pool)
    half = len(pool) // 2
    return pool[:half], pool[half:]


def _people(rng: random.Random, n: int, surnames: list[str], group: str, prefix: str) -> list[dict]:
    names = [f"{f} {s}" for f in FIRST_NAMES for s in surnames]
    chosen = rng.sample(names, n)
    people = []
    for i, name in enumerate(chosen):
        attrs = {a: rng.choice(ATTRIBUTE_VALUES[a]) for a in ATTRIBUTES}
        people.append({"id": f"{prefix}{i:04d}", "group": group, "name": name, "attributes": attrs})
    return people


def _document(rng: random.Random, person: dict, n_templates: int, permute: bool) -> str:
    sentences = [
        rng.choice(DOC_TEMPLATES[a][:n_templates]).format(name=person["name"], v=person["attributes"][a])
        for a in ATTRIBUTES
    ]
    if permute:
        rng.shuffle(sentences)
    return " ".join(sentences)


def _documents(rng: random.Random, people: list[dict], cfg: WorldConfig) -> list[dict]:
    """``docs_per_entity`` training documents per person, plus one evaluation document not among them."""
    out = []
    for p in people:
        train = [_document(rng, p, cfg.templates_per_attribute, cfg.permute_sentences) for _ in range(cfg.docs_per_entity)]
        # The eval document is a fresh combination of the same templates, different from every training document
        # when the knobs allow one (with one template and no permutation all documents are identical).
        for _ in range(20):
            held = _document(rng, p, cfg.templates_per_attribute, cfg.permute_sentences)
            if held not in train:
                break
        for k, text in enumerate(train):
            out.append({"id": f"{p['id']}-d{k}", "entity_id": p["id"], "group": p["group"], "split": "train", "text": text})
        out.append({"id": f"{p['id']}-e0", "entity_id": p["id"], "group": p["group"], "split": "eval", "text": held})
    return out


def _qa(people: list[dict], split_of) -> list[dict]:
    return [
        {
            "id": f"{p['id']}-{a}",
            "entity_id": p["id"],
            "attribute": a,
            "question": QUESTIONS[a].format(name=p["name"]),
            "answer": p["attributes"][a],
            "split": split_of(p),
        }
        for p in people
        for a in ATTRIBUTES
    ]


def _bio(person: dict) -> str:
    """The canonical short biography (first template of each attribute, fixed order)."""
    return " ".join(DOC_TEMPLATES[a][0].format(name=person["name"], v=person["attributes"][a]) for a in ATTRIBUTES)


def _chat(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _instructions(rng: random.Random, seen: list[dict], cfg: WorldConfig) -> list[dict]:
    """General instruction data over *seen* general people only (held-out facts must never reach training text).

    Kinds: ``qa`` (one per seen fact), ``compare`` (who was born earlier) and ``bio`` (write a short biography).
    """
    records = [{"id": f"ins-qa-{q['id']}", "kind": "qa", "messages": _chat(q["question"], q["answer"])}
               for q in _qa(seen, lambda p: "general_seen")]
    for i in range(cfg.n_compare_instructions):
        a, b = rng.sample(seen, 2)
        while a["attributes"]["birth_year"] == b["attributes"]["birth_year"]:
            a, b = rng.sample(seen, 2)
        older = a if int(a["attributes"]["birth_year"]) < int(b["attributes"]["birth_year"]) else b
        q = f"Who was born earlier, {a['name']} or {b['name']}?"
        records.append({"id": f"ins-compare-{i:04d}", "kind": "compare", "messages": _chat(q, older["name"])})
    for i, p in enumerate(rng.sample(seen, min(cfg.n_bio_instructions, len(seen)))):
        q = f"Write a short biography of {p['name']}."
        records.append({"id": f"ins-bio-{i:04d}", "kind": "bio", "messages": _chat(q, _bio(p))})
    return records


def _preferences(rng: random.Random, seen: list[dict], cfg: WorldConfig) -> list[dict]:
    """Preference pairs on seen general facts. chosen = the correct, well-formed answer; rejected = either a
    plausible wrong value of the same type (``wrong_value``) or the right value badly formed (``malformed``)."""
    pairs = []
    for i in range(cfg.n_preference_pairs):
        p = rng.choice(seen)
        a = rng.choice(ATTRIBUTES)
        right = p["attributes"][a]
        if i % 2 == 0:
            kind = "wrong_value"
            rejected = rng.choice([v for v in ATTRIBUTE_VALUES[a] if v != right])
        else:
            kind = "malformed"
            rejected = rng.choice([
                f"{right} {right} {right}",
                f"{QUESTIONS[a].format(name=p['name'])} {right}",
                f"answer answer {right.lower()} and and",
            ])
        pairs.append({"id": f"pref-{i:04d}", "kind": kind, "prompt": QUESTIONS[a].format(name=p["name"]),
                      "chosen": right, "rejected": rejected})
    return pairs


def generate_world(cfg: WorldConfig) -> World:
    """Build the world described by ``cfg``. Deterministic: only ``random.Random(cfg.seed)`` is used."""
    rng = random.Random(cfg.seed)
    general_surnames, domain_surnames = _surnames(rng)
    general = _people(rng, cfg.n_general, general_surnames, "general", "g")
    domain = _people(rng, cfg.n_domain, domain_surnames, "domain", "d")
    n_heldout = max(1, min(cfg.n_general - 2, round(cfg.n_general * cfg.heldout_fraction)))
    # People were sampled in random order, so a prefix split is a random split. The validation people are the last
    # ones of the held-out and of the domain people: assigning them draws nothing from rng, so every document and
    # every training text is the same whatever val_fraction is.
    n_val_general, n_val_domain = _n_val(n_heldout, cfg.val_fraction), _n_val(cfg.n_domain, cfg.val_fraction)
    for i, p in enumerate(general):
        p["split"] = ("seen" if i >= n_heldout else "val" if i >= n_heldout - n_val_general else "heldout")
    for i, p in enumerate(domain):
        p["split"] = "domain_val" if i >= cfg.n_domain - n_val_domain else "domain"
    seen = [p for p in general if p["split"] == "seen"]

    world = World(config=cfg, entities=general + domain)
    world.documents = _documents(rng, general + domain, cfg)
    world.qa = _qa(general, lambda p: f"general_{p['split']}") + _qa(domain, lambda p: p["split"])
    world.instructions = _instructions(rng, seen, cfg)
    world.preferences = _preferences(rng, seen, cfg)
    return world


def _n_val(n_people: int, fraction: float) -> int:
    """Validation people among ``n_people``: ``round(fraction * n)``, at least 1 when ``fraction > 0``, and always
    leaving at least one test person."""
    return 0 if fraction == 0 else max(1, min(n_people - 1, round(n_people * fraction)))


# ---------------------------------------------------------------------------------------------------------------
WORLD_FILES = ("entities", "documents", "qa", "instructions", "preferences")


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def write_world(world: World, out_dir: str | Path) -> Path:
    """Write ``<name>.jsonl`` for each of :data:`WORLD_FILES` plus ``world.json`` (config, fingerprint, counts).

    Atomic: files are written into a sibling temporary directory that is renamed into place at the end, so an
    error leaves no half-written world. An existing ``out_dir`` is replaced only if it holds a world already.
    """
    from .atomic import atomic_directory

    with atomic_directory(out_dir, "world.json") as tmp:
        for name in WORLD_FILES:
            (tmp / f"{name}.jsonl").write_text(_jsonl(getattr(world, name)), encoding="utf-8")
        meta = {"config": dataclasses.asdict(world.config), "fingerprint": world.config.fingerprint(),
                "counts": {name: len(getattr(world, name)) for name in WORLD_FILES}}
        (tmp / "world.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(out_dir)


def load_world(path: str | Path) -> World:
    """Read a directory written by :func:`write_world`."""
    path = Path(path)
    meta_file = path / "world.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{meta_file}: not found; create a world with `mixcpt world --out {path}`")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    world = World(config=WorldConfig(**meta["config"]))
    for name in WORLD_FILES:
        f = path / f"{name}.jsonl"
        rows = []
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}:{lineno}: invalid JSON ({e.msg})") from None
        setattr(world, name, rows)
    return world
