"""Real-world general-knowledge questions: what a real chat model already knows, and forgets during adaptation.

The synthetic world (:mod:`mixcpt_core.world`) measures forgetting on facts the tiny models learned from scratch. A
real chat model such as SmolLM2-135M-Instruct arrives already knowing things; this module is the committed set of
questions that measures whether domain adaptation erases them. The questions are public, well-known facts (capitals,
chemical symbols, authors of famous books, ...) written for this project, not copied from any data set. They are
deliberately easy and unambiguous, each with a one-to-three-word answer, so that even a 135M-parameter model answers
many of them correctly before adaptation.

**Forgetting is measured only on the questions the start model answers correctly before adaptation**: a question the
start model already gets wrong cannot be forgotten, and counting it would only add noise. So a run first scores the
start model, keeps its correct questions, and reports the fraction of those still answered correctly afterwards.

Every question has a category (its ``attribute``) with a closed set of short answers of the same kind (all capitals,
all chemical symbols, all colours, ...), so that a multiple choice among the category's answers is meaningful: that
is the format-free *stored* probe, :func:`stored_realworld`.

Scoring rules (:data:`SCORERS`), both case-insensitive, both accepting the canonical ``answer`` or any of the
``aliases``:

* ``exact`` (:func:`score_exact`): the first line of the reply, trimmed of whitespace and surrounding punctuation, *is*
  the answer (:func:`mixcpt_core.evaluation.normalize_answer` on both sides);
* ``contains`` (:func:`score_contains`): the answer appears as a whole word or phrase in the first non-empty line of
  the reply ("The capital of France is Paris." is right; a chat model rarely replies with the bare answer).

Validation and test: :func:`realworld_split` (validation for choosing things, test for reporting).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from .evaluation import normalize_answer

# -- the questions -----------------------------------------------------------------------------------------------------
# Per category: (question template, [(subject, canonical answer, [aliases]), ...]). Each category's phrasing is fixed by
# its template; its answers are all of one kind (its closed candidate set for the stored probe).
_NUMBER_WORDS = {"0": ["zero"], "2": ["two"], "3": ["three"], "4": ["four"], "5": ["five"], "6": ["six"],
                 "7": ["seven"], "8": ["eight"], "10": ["ten"], "11": ["eleven"], "12": ["twelve"],
                 "24": ["twenty-four", "twenty four"], "26": ["twenty-six", "twenty six"], "52": ["fifty-two",
                 "fifty two"], "60": ["sixty"], "100": ["one hundred", "a hundred", "hundred"],
                 "365": ["three hundred sixty-five", "three hundred and sixty-five"],
                 "366": ["three hundred sixty-six", "three hundred and sixty-six"]}

_USA = ["United States of America", "USA", "U.S.", "U.S.A.", "America"]  # not "US": the word "us"
_UK = ["UK", "U.K.", "Britain", "Great Britain", "England"]

_CATEGORIES: dict[str, tuple[str, list[tuple[str, str, list[str]]]]] = {
    "capital": ("What is the capital of {}?", [
        ("France", "Paris", []), ("Germany", "Berlin", []), ("Italy", "Rome", []), ("Spain", "Madrid", []),
        ("Japan", "Tokyo", []), ("the United Kingdom", "London", []), ("Russia", "Moscow", []),
        ("China", "Beijing", ["Peking"]), ("Egypt", "Cairo", []), ("Greece", "Athens", []), ("Canada", "Ottawa", []),
        ("Australia", "Canberra", []), ("India", "New Delhi", ["Delhi"]), ("Portugal", "Lisbon", []),
        ("Ireland", "Dublin", []), ("Norway", "Oslo", []), ("Sweden", "Stockholm", []), ("Austria", "Vienna", []),
        ("Poland", "Warsaw", []), ("Mexico", "Mexico City", []), ("Argentina", "Buenos Aires", []),
        ("Kenya", "Nairobi", []), ("Thailand", "Bangkok", []), ("South Korea", "Seoul", []),
        ("the Netherlands", "Amsterdam", []), ("Belgium", "Brussels", []), ("Denmark", "Copenhagen", []),
        ("Finland", "Helsinki", []), ("Turkey", "Ankara", []),
        ("the United States", "Washington, D.C.", ["Washington", "Washington D.C.", "Washington DC"]),
        ("Cuba", "Havana", []), ("Peru", "Lima", []), ("Hungary", "Budapest", []),
        ("the Czech Republic", "Prague", []), ("Brazil", "Brasília", ["Brasilia"]),
    ]),
    "city_country": ("In which country is the city of {}?", [
        ("Sydney", "Australia", []), ("Toronto", "Canada", []), ("Barcelona", "Spain", []), ("Munich", "Germany", []),
        ("Milan", "Italy", []), ("Venice", "Italy", []), ("Rio de Janeiro", "Brazil", []), ("Mumbai", "India", []),
        ("Osaka", "Japan", []), ("Shanghai", "China", []), ("Istanbul", "Turkey", ["Türkiye"]),
        ("Chicago", "United States", _USA), ("Los Angeles", "United States", _USA),
        ("Manchester", "United Kingdom", _UK), ("Marseille", "France", []), ("Saint Petersburg", "Russia", []),
        ("Geneva", "Switzerland", []), ("Dubai", "United Arab Emirates", ["UAE", "U.A.E."]),
        ("Amsterdam", "Netherlands", ["the Netherlands", "Holland"]), ("Cairo", "Egypt", []),
    ]),
    "continent": ("On which continent is {}?", [
        ("France", "Europe", []), ("Brazil", "South America", []), ("Egypt", "Africa", []), ("Japan", "Asia", []),
        ("Canada", "North America", []), ("Kenya", "Africa", []), ("India", "Asia", []),
        ("Argentina", "South America", []), ("Germany", "Europe", []), ("Mexico", "North America", []),
        ("Nigeria", "Africa", []), ("China", "Asia", []), ("Italy", "Europe", []), ("Peru", "South America", []),
        ("Spain", "Europe", []), ("Thailand", "Asia", []),
    ]),
    "chemical_symbol": ("What is the chemical symbol for {}?", [
        ("gold", "Au", []), ("silver", "Ag", []), ("iron", "Fe", []), ("oxygen", "O", []), ("hydrogen", "H", []),
        ("carbon", "C", []), ("nitrogen", "N", []), ("sodium", "Na", []), ("potassium", "K", []),
        ("copper", "Cu", []), ("lead", "Pb", []), ("calcium", "Ca", []), ("chlorine", "Cl", []), ("zinc", "Zn", []),
        ("mercury", "Hg", []), ("tin", "Sn", []), ("neon", "Ne", []), ("magnesium", "Mg", []),
    ]),
    "number": ("{}", [
        ("How many legs does a spider have?", "8", []), ("How many days are there in a week?", "7", []),
        ("How many sides does a hexagon have?", "6", []), ("How many sides does a triangle have?", "3", []),
        ("How many sides does a square have?", "4", []), ("How many sides does a pentagon have?", "5", []),
        ("How many sides does an octagon have?", "8", []), ("How many legs does an insect have?", "6", []),
        ("How many months are there in a year?", "12", []), ("How many hours are there in a day?", "24", []),
        ("How many minutes are there in an hour?", "60", []), ("How many seconds are there in a minute?", "60", []),
        ("How many planets are there in our solar system?", "8", []),
        ("How many continents are there on Earth?", "7", []), ("How many days are there in a leap year?", "366", []),
        ("How many days are there in a normal year?", "365", []), ("How many legs does a dog have?", "4", []),
        ("How many wheels does a bicycle have?", "2", []), ("How many players does a soccer team have on the field?",
                                                             "11", []),
        ("How many arms does an octopus have?", "8", []), ("How many weeks are there in a year?", "52", []),
        ("How many cents are there in a dollar?", "100", []), ("How many years are there in a century?", "100", []),
        ("How many years are there in a decade?", "10", []), ("How many colors are there in a rainbow?", "7", []),
        ("How many letters are there in the English alphabet?", "26", []),
        ("At how many degrees Celsius does water boil at sea level?", "100", []),
        ("At how many degrees Celsius does water freeze?", "0", []),
    ]),
    "planet": ("{}", [
        ("Which planet is the largest in our solar system?", "Jupiter", []),
        ("Which planet is known as the Red Planet?", "Mars", []),
        ("Which planet is closest to the Sun?", "Mercury", []),
        ("Which planet do humans live on?", "Earth", []),
        ("Which planet is famous for its large rings?", "Saturn", []),
        ("Which planet is the hottest in our solar system?", "Venus", []),
        ("Which planet is the farthest from the Sun?", "Neptune", []),
        ("Which planet is the third planet from the Sun?", "Earth", []),
        ("Which planet is the smallest in our solar system?", "Mercury", []),
        ("Which planet is the second planet from the Sun?", "Venus", []),
        ("Which planet is the fourth planet from the Sun?", "Mars", []),
        ("Which planet is the fifth planet from the Sun?", "Jupiter", []),
        ("Which planet is the sixth planet from the Sun?", "Saturn", []),
        ("Which planet is the seventh planet from the Sun?", "Uranus", []),
        ("Which planet is the eighth planet from the Sun?", "Neptune", []),
        ("Which planet rotates on its side?", "Uranus", []),
    ]),
    "author": ("Who wrote {}?", [
        ("Romeo and Juliet", "William Shakespeare", ["Shakespeare"]),
        ("Hamlet", "William Shakespeare", ["Shakespeare"]),
        ("Macbeth", "William Shakespeare", ["Shakespeare"]),
        ("the Harry Potter books", "J.K. Rowling", ["J. K. Rowling", "JK Rowling", "Rowling"]),
        ("Pride and Prejudice", "Jane Austen", ["Austen"]),
        ("the novel 1984", "George Orwell", ["Orwell"]),
        ("Animal Farm", "George Orwell", ["Orwell"]),
        ("The Adventures of Tom Sawyer", "Mark Twain", ["Twain"]),
        ("War and Peace", "Leo Tolstoy", ["Tolstoy"]),
        ("Oliver Twist", "Charles Dickens", ["Dickens"]),
        ("A Christmas Carol", "Charles Dickens", ["Dickens"]),
        ("The Lord of the Rings", "J.R.R. Tolkien", ["J. R. R. Tolkien", "JRR Tolkien", "Tolkien"]),
        ("The Hobbit", "J.R.R. Tolkien", ["J. R. R. Tolkien", "JRR Tolkien", "Tolkien"]),
        ("Don Quixote", "Miguel de Cervantes", ["Cervantes"]),
        ("The Odyssey", "Homer", []),
        ("Frankenstein", "Mary Shelley", ["Shelley"]),
        ("Dracula", "Bram Stoker", ["Stoker"]),
        ("The Great Gatsby", "F. Scott Fitzgerald", ["Scott Fitzgerald", "Fitzgerald"]),
        ("Alice's Adventures in Wonderland", "Lewis Carroll", ["Carroll"]),
        ("Moby-Dick", "Herman Melville", ["Melville"]),
        ("To Kill a Mockingbird", "Harper Lee", []),
        ("The Old Man and the Sea", "Ernest Hemingway", ["Hemingway"]),
    ]),
    "painter": ("Who painted {}?", [
        ("the Mona Lisa", "Leonardo da Vinci", ["da Vinci", "Leonardo"]),
        ("The Starry Night", "Vincent van Gogh", ["van Gogh"]),
        ("The Last Supper", "Leonardo da Vinci", ["da Vinci", "Leonardo"]),
        ("Guernica", "Pablo Picasso", ["Picasso"]),
        ("The Scream", "Edvard Munch", ["Munch"]),
        ("The Persistence of Memory", "Salvador Dalí", ["Salvador Dali", "Dalí", "Dali"]),
        ("Girl with a Pearl Earring", "Johannes Vermeer", ["Vermeer"]),
        ("The Night Watch", "Rembrandt", ["Rembrandt van Rijn"]),
        ("the Water Lilies series", "Claude Monet", ["Monet"]),
        ("the ceiling of the Sistine Chapel", "Michelangelo", []),
        ("The Birth of Venus", "Sandro Botticelli", ["Botticelli"]),
        ("Campbell's Soup Cans", "Andy Warhol", ["Warhol"]),
    ]),
    "language": ("What is the main language spoken in {}?", [
        ("France", "French", []), ("Germany", "German", []), ("Spain", "Spanish", []), ("Italy", "Italian", []),
        ("Japan", "Japanese", []), ("China", "Chinese", ["Mandarin", "Mandarin Chinese"]),
        ("Russia", "Russian", []), ("Brazil", "Portuguese", []), ("Portugal", "Portuguese", []),
        ("Mexico", "Spanish", []), ("Greece", "Greek", []), ("the Netherlands", "Dutch", []),
        ("Egypt", "Arabic", []), ("Poland", "Polish", []), ("Turkey", "Turkish", []), ("Sweden", "Swedish", []),
        ("South Korea", "Korean", []), ("England", "English", []), ("Argentina", "Spanish", []),
    ]),
    "color": ("What color is {}?", [
        ("the sky on a clear day", "blue", []), ("grass", "green", []), ("a ripe banana", "yellow", []),
        ("fresh snow", "white", []), ("coal", "black", []), ("a ripe tomato", "red", []), ("a carrot", "orange", []),
        ("a lemon", "yellow", []), ("an emerald", "green", []), ("a polar bear's fur", "white", []),
        ("a flamingo", "pink", []), ("blood", "red", []), ("a crow", "black", []), ("milk", "white", []),
        ("a ruby", "red", []), ("a sapphire", "blue", []), ("an eggplant", "purple", []),
        ("milk chocolate", "brown", []),
    ]),
    "animal": ("{}", [
        ("Which animal is the largest mammal on Earth?", "blue whale", ["the blue whale"]),
        ("Which animal is the fastest land animal?", "cheetah", ["cheetahs", "the cheetah"]),
        ("Which animal is the tallest animal in the world?", "giraffe", ["giraffes", "the giraffe"]),
        ("Which animal is known as the king of the jungle?", "lion", ["lions", "the lion"]),
        ("Which animal has a long trunk and big ears?", "elephant", ["elephants", "an elephant"]),
        ("Which animal is the largest bird in the world?", "ostrich", ["ostriches", "the ostrich"]),
        ("Which animal makes honey?", "bee", ["bees", "honeybee", "honeybees", "honey bee", "honey bees"]),
        ("Which animal carries its baby in a pouch and hops?", "kangaroo", ["kangaroos", "the kangaroo"]),
        ("Which animal is known as the ship of the desert?", "camel", ["camels", "the camel"]),
        ("Which animal says moo?", "cow", ["cows", "a cow"]),
        ("Which animal says meow?", "cat", ["cats", "a cat"]),
        ("Which animal barks?", "dog", ["dogs", "a dog"]),
        ("Which animal is a flightless bird that lives in Antarctica?", "penguin", ["penguins", "the penguin"]),
        ("Which animal can change the color of its skin to blend in?", "chameleon", ["chameleons"]),
        ("Which animal is the black-and-white bear that eats bamboo?", "giant panda", ["panda", "pandas"]),
        ("Which animal spins webs to catch insects?", "spider", ["spiders"]),
        ("Which animal is the largest land animal?", "elephant", ["elephants", "the elephant",
                                                                   "African elephant"]),
        ("Which animal has black and white stripes and looks like a horse?", "zebra", ["zebras", "the zebra"]),
    ]),
    "scientist": ("{}", [
        ("Who developed the theory of relativity?", "Albert Einstein", ["Einstein"]),
        ("Who invented the telephone?", "Alexander Graham Bell", ["Graham Bell", "Bell"]),
        ("Who formulated the three laws of motion?", "Isaac Newton", ["Newton", "Sir Isaac Newton"]),
        ("Who discovered penicillin?", "Alexander Fleming", ["Fleming"]),
        ("Who proposed the theory of evolution by natural selection?", "Charles Darwin", ["Darwin"]),
        ("Who discovered radium?", "Marie Curie", ["Curie", "Marie and Pierre Curie", "Pierre and Marie Curie"]),
        ("Who invented the World Wide Web?", "Tim Berners-Lee", ["Berners-Lee"]),
        ("Who invented the printing press with movable type in Europe?", "Johannes Gutenberg", ["Gutenberg"]),
        ("Who made the first powered airplane flight in 1903?", "the Wright brothers",
         ["Wright brothers", "Orville and Wilbur Wright", "Wilbur and Orville Wright", "Orville Wright"]),
        ("Who proposed that the Earth orbits the Sun in a book published in 1543?", "Nicolaus Copernicus",
         ["Copernicus"]),
        ("Who invented the phonograph?", "Thomas Edison", ["Edison", "Thomas Alva Edison"]),
        ("Who discovered the law of universal gravitation?", "Isaac Newton", ["Newton", "Sir Isaac Newton"]),
    ]),
    "person": ("{}", [
        ("Who was the first person to walk on the Moon?", "Neil Armstrong", ["Armstrong"]),
        ("Who was the first president of the United States?", "George Washington", ["Washington"]),
        ("Who sailed across the Atlantic to the Americas in 1492?", "Christopher Columbus", ["Columbus"]),
        ("Who was the 16th president of the United States?", "Abraham Lincoln", ["Lincoln"]),
        ("Who was the first black president of South Africa?", "Nelson Mandela", ["Mandela"]),
        ("Who gave the \"I Have a Dream\" speech?", "Martin Luther King",
         ["Martin Luther King Jr.", "Martin Luther King, Jr.", "Dr. Martin Luther King Jr."]),
        ("Who was the first person to travel into space?", "Yuri Gagarin", ["Gagarin"]),
        ("Who was the French emperor defeated at Waterloo?", "Napoleon", ["Napoleon Bonaparte", "Napoleon I"]),
        ("Who led India's non-violent independence movement against British rule?", "Mahatma Gandhi",
         ["Gandhi", "Mohandas Gandhi", "Mohandas Karamchand Gandhi"]),
        ("Who was the last pharaoh of ancient Egypt, famous for her relationships with Caesar and Mark Antony?",
         "Cleopatra", ["Cleopatra VII"]),
    ]),
    "currency": ("What is the currency of {}?", [
        ("Japan", "yen", ["Japanese yen"]),
        ("the United Kingdom", "pound", ["pound sterling", "pounds", "British pound", "pounds sterling"]),
        ("the United States", "dollar", ["US dollar", "U.S. dollar", "dollars", "United States dollar"]),
        ("Germany", "euro", ["euros"]), ("France", "euro", ["euros"]), ("Italy", "euro", ["euros"]),
        ("India", "rupee", ["Indian rupee", "rupees"]), ("China", "yuan", ["renminbi", "Chinese yuan", "RMB"]),
        ("Russia", "ruble", ["rouble", "Russian ruble", "rubles", "roubles"]),
        ("Mexico", "peso", ["Mexican peso", "pesos"]), ("Switzerland", "franc", ["Swiss franc", "francs"]),
        ("South Korea", "won", ["South Korean won", "Korean won"]),
        ("Canada", "dollar", ["Canadian dollar", "dollars"]),
        ("Australia", "dollar", ["Australian dollar", "dollars"]),
    ]),
    "opposite": ("What is the opposite of {}?", [
        ("hot", "cold", []), ("up", "down", []), ("big", "small", ["little"]), ("day", "night", []),
        ("black", "white", []), ("left", "right", []), ("open", "closed", ["shut"]), ("fast", "slow", []),
        ("happy", "sad", ["unhappy"]), ("love", "hate", []), ("heavy", "light", []), ("wet", "dry", []),
        ("tall", "short", []),
        ("full", "empty", []), ("early", "late", []), ("push", "pull", []), ("win", "lose", []),
        ("north", "south", []), ("east", "west", []), ("true", "false", []), ("rich", "poor", []),
        ("thick", "thin", []), ("asleep", "awake", []), ("top", "bottom", []), ("above", "below", ["beneath", "under"]),
    ]),
    "body_part": ("{}", [
        ("Which organ pumps blood around the body?", "heart", ["the heart"]),
        ("Which organs do humans use to breathe?", "lungs", ["the lungs", "lung"]),
        ("Which organ do humans think with?", "brain", ["the brain"]),
        ("Which body part do humans see with?", "eyes", ["eye", "the eyes"]),
        ("Which body part do humans hear with?", "ears", ["ear", "the ears"]),
        ("Which body part do humans smell with?", "nose", ["the nose"]),
        ("Which body part do humans taste with?", "tongue", ["the tongue"]),
        ("Which organ is the largest organ of the human body?", "skin", ["the skin"]),
        ("Which organ digests food after it is swallowed and before the intestines?", "stomach", ["the stomach"]),
        ("Which body part has five fingers?", "hand", ["hands", "the hand"]),
    ]),
    "substance": ("{}", [
        ("Which gas do plants absorb from the air for photosynthesis?", "carbon dioxide", ["CO2"]),
        ("Which gas do humans need to breathe in to live?", "oxygen", ["O2"]),
        ("What does water turn into when it freezes?", "ice", []),
        ("What substance has the chemical formula H2O?", "water", []),
        ("Which gas makes up most of the Earth's atmosphere?", "nitrogen", ["N2"]),
        ("Which light gas is used to make party balloons float?", "helium", []),
        ("What is the common name for sodium chloride?", "salt", ["table salt"]),
        ("What is the hardest natural substance on Earth?", "diamond", ["diamonds"]),
        ("Which metal is liquid at room temperature?", "mercury", []),
        ("What sweet food do bees make?", "honey", []),
        ("What drink do cows produce?", "milk", []),
        ("What does water turn into when it boils?", "steam", ["water vapor", "water vapour", "vapor", "vapour"]),
    ]),
    "landmark": ("In which city is {}?", [
        ("the Eiffel Tower", "Paris", []), ("the Colosseum", "Rome", []), ("Big Ben", "London", []),
        ("the Statue of Liberty", "New York", ["New York City", "NYC"]), ("the Kremlin", "Moscow", []),
        ("the Brandenburg Gate", "Berlin", []), ("the Sagrada Familia", "Barcelona", []),
        ("the Acropolis", "Athens", []), ("the Golden Gate Bridge", "San Francisco", []),
        ("Buckingham Palace", "London", []), ("the Louvre museum", "Paris", []),
        ("the Forbidden City", "Beijing", ["Peking"]), ("the Taj Mahal", "Agra", []),
    ]),
}

# numbers: the digit string is the answer, the word(s) an alias
for _i, (_q, _a, _aliases) in enumerate(_CATEGORIES["number"][1]):
    _CATEGORIES["number"][1][_i] = (_q, _a, _NUMBER_WORDS[_a])


def _build() -> list[dict]:
    items = []
    for attribute, (template, rows) in _CATEGORIES.items():
        for subject, answer, aliases in rows:
            items.append({"id": f"rw-{len(items):03d}", "question": template.format(subject), "answer": answer,
                          "aliases": list(aliases), "attribute": attribute})
    return items


REALWORLD_QA: list[dict] = _build()
"""Every question: ``{"id": "rw-000", "question", "answer" (canonical), "aliases" (other accepted answers),
"attribute" (category)}``, in category order."""

CATEGORIES: tuple[str, ...] = tuple(_CATEGORIES)


def category_answers(attribute: str) -> list[str]:
    """The closed candidate set of a category: the distinct canonical answers of its questions, sorted."""
    return sorted({q["answer"] for q in REALWORLD_QA if q["attribute"] == attribute})


# -- scoring -----------------------------------------------------------------------------------------------------------
def _accepted(item: dict) -> list[str]:
    """The item's answer and aliases, normalised as :func:`mixcpt_core.evaluation.normalize_answer`."""
    out = []
    for a in [item["answer"], *item.get("aliases", [])]:
        n = normalize_answer(a)
        if n and n not in out:
            out.append(n)
    return out


def score_exact(reply: str, item: dict) -> bool:
    """Exact match: the first line of ``reply``, stripped of surrounding whitespace and punctuation and case-folded
    (:func:`mixcpt_core.evaluation.normalize_answer`), equals the answer or an alias normalised the same way.

    "Paris." and " paris" are right for Paris; "The capital is Paris." is not."""
    return normalize_answer(reply) in _accepted(item)


# A word character here is a letter or a digit (not "_", unlike regex \\w). A number does not match inside a longer
# number written with a decimal point or thousands separator ("8" is not in "8.5" or "1,800").
_BEFORE = r"(?<![^\W_])(?<!\d[.,])"
_AFTER = r"(?![^\W_])(?![.,]\d)"


def _first_nonempty_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def score_contains(reply: str, item: dict) -> bool:
    """Contains match: the answer or an alias (normalised as in :func:`score_exact`) appears as a whole word or
    phrase in the first non-empty line of ``reply``, case-insensitively.

    Whole word: the characters just before and after the match are not letters or digits (so "Paris" is found in
    "The capital of France is Paris." but not in "Parisian", "8" in "8 legs" but not in "18"); whitespace inside a
    multi-word answer matches any run of whitespace. Only the first non-empty line counts: an answer that appears
    only on a later line is not found."""
    line = _first_nonempty_line(reply).casefold()
    for alt in _accepted(item):
        body = r"\s+".join(re.escape(part) for part in alt.split())
        if re.search(_BEFORE + body + _AFTER, line):
            return True
    return False


SCORERS = {"exact": score_exact, "contains": score_contains}


# -- validation / test -------------------------------------------------------------------------------------------------
def realworld_split(seed: int = 0, val_fraction: float = 0.25) -> dict[str, list[dict]]:
    """Deterministic split of :data:`REALWORLD_QA` into ``"val"`` (for choosing things) and ``"test"`` (for reporting).

    Stratified by category: within each category (in :data:`CATEGORIES` order) the questions are shuffled by one
    ``random.Random(seed)`` and the first ``round(n * val_fraction)`` (at least 1, at most n - 1) go to validation.
    No overlap, the union is every question, each part keeps :data:`REALWORLD_QA` order."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = random.Random(seed)
    by_cat = defaultdict(list)
    for q in REALWORLD_QA:
        by_cat[q["attribute"]].append(q["id"])
    val_ids = set()
    for attribute in CATEGORIES:
        ids = list(by_cat[attribute])
        rng.shuffle(ids)
        k = min(len(ids) - 1, max(1, round(len(ids) * val_fraction)))
        val_ids.update(ids[:k])
    return {"val": [q for q in REALWORLD_QA if q["id"] in val_ids],
            "test": [q for q in REALWORLD_QA if q["id"] not in val_ids]}


# -- the stored probe --------------------------------------------------------------------------------------------------
def probe_text(question: str, candidate: str) -> str:
    """The text whose likelihood the stored probe compares: ``"Question: {question}\\nAnswer: {candidate}"``."""
    return f"Question: {question}\nAnswer: {candidate}"


def stored_realworld(model, tokenizer, items: list[dict], batch_size: int = 64) -> dict:
    """The format-free *stored* probe on real-world questions: multiple choice by likelihood, no generation.

    For each item, every candidate of its category (:func:`category_answers`: the distinct canonical answers of all
    questions of that category in :data:`REALWORLD_QA`, sorted) is put into :func:`probe_text` and the text is
    tokenised with the tokenizer's defaults and scored by :func:`mixcpt_core.probes.sequence_logprobs` (sum of token
    log-probabilities, first token unscored). The item counts as stored when its gold canonical answer has the highest
    log-likelihood; ties go to the first candidate in sorted order.

    A sum of log-probabilities favours short candidates (fewer tokens, fewer negative terms): a multi-token answer
    ("Buenos Aires") competes at a disadvantage against one-token ones. That is accepted, as in the synthetic world's
    probe (:func:`mixcpt_core.probes.stored_knowledge`): the probe compares one model before and after adaptation on
    the same candidates, so the bias is the same on both sides.

    Returns ``{"accuracy", "n", "chance", "hits": [0/1 per item], "predictions": [candidate per item]}``, with
    ``chance`` = :func:`realworld_chance`."""
    from .probes import choose_by_likelihood

    choices = [{c: probe_text(q["question"], c) for c in category_answers(q["attribute"])} for q in items]
    return choose_by_likelihood(model, tokenizer, items, choices, realworld_chance(items), batch_size)


def realworld_chance(items: list[dict]) -> float:
    """Expected accuracy of a uniform random guess on the stored probe: mean over items of 1 / |candidates|."""
    return sum(1 / len(category_answers(q["attribute"])) for q in items) / max(1, len(items))


__all__ = ["REALWORLD_QA", "CATEGORIES", "category_answers", "score_exact", "score_contains", "SCORERS",
           "realworld_split", "probe_text", "stored_realworld", "realworld_chance"]
