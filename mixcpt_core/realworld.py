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
all chemical symbols, all colours, ...), so that a multiple choice among the category's answers is meaningful. Every
question also has a ``statement``: a declarative sentence with one ``{}`` where the answer goes ("The capital of France
is {}."), written so that every answer of the category fits it grammatically. The format-free *stored* probe,
:func:`stored_realworld`, compares the likelihood of that sentence with each candidate inserted
(:func:`statement_text`): no question, no ``Question:/Answer:`` layout, so it does not favour a model that practised
one. :func:`stored_realworld_qa_layout` is the older variant that scores ``"Question: ...\\nAnswer: <candidate>"``
(:func:`probe_text`), the plain layout stage 1 of Mix-CPT trains on: it mixes knowledge with familiarity with that
layout and is kept only for comparison. Both report two baselines: uniform chance (:func:`realworld_chance`) and
"always the most common answer of the category" (:func:`realworld_majority`).

Scoring rules (:data:`SCORERS`), all case-insensitive, all accepting the canonical ``answer`` or any of the
``aliases``:

* ``exact`` (:func:`score_exact`): the first line of the reply, trimmed of whitespace and surrounding punctuation, *is*
  the answer (:func:`mixcpt_core.evaluation.normalize_answer` on both sides);
* ``contains`` (:func:`score_contains`): the answer appears as a whole word or phrase in the first non-empty line of
  the reply ("The capital of France is Paris." is right; a chat model rarely replies with the bare answer);
* ``reply_contains`` (:func:`score_reply_contains`): the same whole-word search over the whole reply, every line (a
  chat model often opens with a line of its own and gives the answer after it).

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


# -- the statements (for the format-free stored probe) -----------------------------------------------------------------
# A declarative sentence per question with one "{}" where the answer goes. Every candidate of the category is put into
# the same sentence, so the sentence must read correctly for all of them: no article that depends on the answer ("a"
# vs "an"), no verb that agrees with it. Categories with a fixed question template get one statement template:
# "{subject}" is the row's subject, "{Subject}" the same with its first letter capitalised (at the start of a
# sentence), "{{}}" the answer's place.
_STATEMENT_TEMPLATES: dict[str, str] = {
    "capital": "The capital of {subject} is {{}}.",
    # the four answers that take "the" get it from statement_text (_WITH_ARTICLE): "is in the United States."
    "city_country": "The city of {subject} is in {{}}.",
    "continent": "{Subject} is a country in {{}}.",
    "chemical_symbol": "The chemical symbol for {subject} is {{}}.",
    "author": "The author of {subject} is {{}}.",  # not "... was written by": "the Harry Potter books" is plural
    "painter": "{Subject} was painted by {{}}.",
    "language": "The main language spoken in {subject} is {{}}.",
    "color": "{Subject} is {{}}.",
    "currency": "The currency of {subject} is the {{}}.",
    "opposite": "The opposite of {subject} is {{}}.",
    "landmark": "{Subject} is in {{}}.",
}

# Free-form categories (question template "{}"): one statement per question, keyed by the question.
_FREEFORM_STATEMENTS: dict[str, str] = {
    # number
    "How many legs does a spider have?": "A spider has {} legs.",
    "How many days are there in a week?": "There are {} days in a week.",
    "How many sides does a hexagon have?": "A hexagon has {} sides.",
    "How many sides does a triangle have?": "A triangle has {} sides.",
    "How many sides does a square have?": "A square has {} sides.",
    "How many sides does a pentagon have?": "A pentagon has {} sides.",
    "How many sides does an octagon have?": "An octagon has {} sides.",
    "How many legs does an insect have?": "An insect has {} legs.",
    "How many months are there in a year?": "There are {} months in a year.",
    "How many hours are there in a day?": "There are {} hours in a day.",
    "How many minutes are there in an hour?": "There are {} minutes in an hour.",
    "How many seconds are there in a minute?": "There are {} seconds in a minute.",
    "How many planets are there in our solar system?": "There are {} planets in our solar system.",
    "How many continents are there on Earth?": "There are {} continents on Earth.",
    "How many days are there in a leap year?": "There are {} days in a leap year.",
    "How many days are there in a normal year?": "There are {} days in a normal year.",
    "How many legs does a dog have?": "A dog has {} legs.",
    "How many wheels does a bicycle have?": "A bicycle has {} wheels.",
    "How many players does a soccer team have on the field?": "A soccer team has {} players on the field.",
    "How many arms does an octopus have?": "An octopus has {} arms.",
    "How many weeks are there in a year?": "There are {} weeks in a year.",
    "How many cents are there in a dollar?": "There are {} cents in a dollar.",
    "How many years are there in a century?": "There are {} years in a century.",
    "How many years are there in a decade?": "There are {} years in a decade.",
    "How many colors are there in a rainbow?": "There are {} colors in a rainbow.",
    "How many letters are there in the English alphabet?": "There are {} letters in the English alphabet.",
    "At how many degrees Celsius does water boil at sea level?": "At sea level, water boils at {} degrees Celsius.",
    "At how many degrees Celsius does water freeze?": "Water freezes at {} degrees Celsius.",
    # planet
    "Which planet is the largest in our solar system?": "The largest planet in our solar system is {}.",
    "Which planet is known as the Red Planet?": "The planet known as the Red Planet is {}.",
    "Which planet is closest to the Sun?": "The planet closest to the Sun is {}.",
    "Which planet do humans live on?": "The planet that humans live on is {}.",
    "Which planet is famous for its large rings?": "The planet famous for its large rings is {}.",
    "Which planet is the hottest in our solar system?": "The hottest planet in our solar system is {}.",
    "Which planet is the farthest from the Sun?": "The planet farthest from the Sun is {}.",
    "Which planet is the third planet from the Sun?": "The third planet from the Sun is {}.",
    "Which planet is the smallest in our solar system?": "The smallest planet in our solar system is {}.",
    "Which planet is the second planet from the Sun?": "The second planet from the Sun is {}.",
    "Which planet is the fourth planet from the Sun?": "The fourth planet from the Sun is {}.",
    "Which planet is the fifth planet from the Sun?": "The fifth planet from the Sun is {}.",
    "Which planet is the sixth planet from the Sun?": "The sixth planet from the Sun is {}.",
    "Which planet is the seventh planet from the Sun?": "The seventh planet from the Sun is {}.",
    "Which planet is the eighth planet from the Sun?": "The eighth planet from the Sun is {}.",
    "Which planet rotates on its side?": "The planet that rotates on its side is {}.",
    # animal ("the {}": every answer is a singular common noun)
    "Which animal is the largest mammal on Earth?": "The largest mammal on Earth is the {}.",
    "Which animal is the fastest land animal?": "The fastest land animal is the {}.",
    "Which animal is the tallest animal in the world?": "The tallest animal in the world is the {}.",
    "Which animal is known as the king of the jungle?": "The animal known as the king of the jungle is the {}.",
    "Which animal has a long trunk and big ears?": "The animal with a long trunk and big ears is the {}.",
    "Which animal is the largest bird in the world?": "The largest bird in the world is the {}.",
    "Which animal makes honey?": "The animal that makes honey is the {}.",
    "Which animal carries its baby in a pouch and hops?":
        "The animal that carries its baby in a pouch and hops is the {}.",
    "Which animal is known as the ship of the desert?": "The animal known as the ship of the desert is the {}.",
    "Which animal says moo?": "The animal that says moo is the {}.",
    "Which animal says meow?": "The animal that says meow is the {}.",
    "Which animal barks?": "The animal that barks is the {}.",
    "Which animal is a flightless bird that lives in Antarctica?":
        "The flightless bird that lives in Antarctica is the {}.",
    "Which animal can change the color of its skin to blend in?":
        "The animal that can change the color of its skin to blend in is the {}.",
    "Which animal is the black-and-white bear that eats bamboo?":
        "The black-and-white bear that eats bamboo is the {}.",
    "Which animal spins webs to catch insects?": "The animal that spins webs to catch insects is the {}.",
    "Which animal is the largest land animal?": "The largest land animal is the {}.",
    "Which animal has black and white stripes and looks like a horse?":
        "The animal that has black and white stripes and looks like a horse is the {}.",
    # scientist (passive voice: "the Wright brothers" fits after "by")
    "Who developed the theory of relativity?": "The theory of relativity was developed by {}.",
    "Who invented the telephone?": "The telephone was invented by {}.",
    "Who formulated the three laws of motion?": "The three laws of motion were formulated by {}.",
    "Who discovered penicillin?": "Penicillin was discovered by {}.",
    "Who proposed the theory of evolution by natural selection?":
        "The theory of evolution by natural selection was proposed by {}.",
    "Who discovered radium?": "Radium was discovered by {}.",
    "Who invented the World Wide Web?": "The World Wide Web was invented by {}.",
    "Who invented the printing press with movable type in Europe?":
        "The printing press with movable type was invented in Europe by {}.",
    "Who made the first powered airplane flight in 1903?": "The first powered airplane flight was made in 1903 by {}.",
    "Who proposed that the Earth orbits the Sun in a book published in 1543?":
        "In a book published in 1543, {} proposed that the Earth orbits the Sun.",
    "Who invented the phonograph?": "The phonograph was invented by {}.",
    "Who discovered the law of universal gravitation?": "The law of universal gravitation was discovered by {}.",
    # person
    "Who was the first person to walk on the Moon?": "The first person to walk on the Moon was {}.",
    "Who was the first president of the United States?": "The first president of the United States was {}.",
    "Who sailed across the Atlantic to the Americas in 1492?":
        "The explorer who sailed across the Atlantic to the Americas in 1492 was {}.",
    "Who was the 16th president of the United States?": "The 16th president of the United States was {}.",
    "Who was the first black president of South Africa?": "The first black president of South Africa was {}.",
    "Who gave the \"I Have a Dream\" speech?": "The \"I Have a Dream\" speech was given by {}.",
    "Who was the first person to travel into space?": "The first person to travel into space was {}.",
    "Who was the French emperor defeated at Waterloo?": "The French emperor defeated at Waterloo was {}.",
    "Who led India's non-violent independence movement against British rule?":
        "India's non-violent independence movement against British rule was led by {}.",
    "Who was the last pharaoh of ancient Egypt, famous for her relationships with Caesar and Mark Antony?":
        "The last pharaoh of ancient Egypt, famous for her relationships with Caesar and Mark Antony, was {}.",
    # body_part ("the {}" after a verb or a preposition: the answers mix singular and plural)
    "Which organ pumps blood around the body?": "Blood is pumped around the body by the {}.",
    "Which organs do humans use to breathe?": "Humans use the {} to breathe.",
    "Which organ do humans think with?": "Humans think with the {}.",
    "Which body part do humans see with?": "Humans see with the {}.",
    "Which body part do humans hear with?": "Humans hear with the {}.",
    "Which body part do humans smell with?": "Humans smell with the {}.",
    "Which body part do humans taste with?": "Humans taste with the {}.",
    "Which organ is the largest organ of the human body?": "The largest organ of the human body is the {}.",
    "Which organ digests food after it is swallowed and before the intestines?":
        "After food is swallowed, it is digested in the {} before it reaches the intestines.",
    "Which body part has five fingers?": "The body part that has five fingers is the {}.",
    # substance (every answer is a mass noun: no article)
    "Which gas do plants absorb from the air for photosynthesis?": "Plants absorb {} from the air for photosynthesis.",
    "Which gas do humans need to breathe in to live?": "Humans need to breathe in {} to live.",
    "What does water turn into when it freezes?": "When water freezes, it turns into {}.",
    "What substance has the chemical formula H2O?": "The substance with the chemical formula H2O is {}.",
    "Which gas makes up most of the Earth's atmosphere?": "Most of the Earth's atmosphere is made up of {}.",
    "Which light gas is used to make party balloons float?": "The light gas used to make party balloons float is {}.",
    "What is the common name for sodium chloride?": "The common name for sodium chloride is {}.",
    "What is the hardest natural substance on Earth?": "The hardest natural substance on Earth is {}.",
    "Which metal is liquid at room temperature?": "The metal that is liquid at room temperature is {}.",
    "What sweet food do bees make?": "Bees make a sweet food called {}.",
    "What drink do cows produce?": "The drink that cows produce is {}.",
    "What does water turn into when it boils?": "When water boils, it turns into {}.",
}


def _check_statement(statement: str, where: str) -> str:
    """``statement`` if it is a well-formed statement template, else ValueError (at import time)."""
    words = set(re.findall(r"[a-z]+", statement.casefold()))
    if (statement.count("{}") != 1 or "{" in statement.replace("{}", "") or "}" in statement.replace("{}", "")
            or not statement.endswith(".") or not statement[:1].isupper() or words & {"question", "answer"}):
        raise ValueError(f"bad statement for {where}: {statement!r} (one '{{}}', a capital first letter, a final '.', "
                         "no 'question' or 'answer')")
    return statement


def _statement(attribute: str, template: str, subject: str) -> str:
    if template == "{}":
        if attribute in _STATEMENT_TEMPLATES:
            raise ValueError(f"free-form category {attribute!r} takes one statement per question, not a template")
        if subject not in _FREEFORM_STATEMENTS:
            raise ValueError(f"no statement for {subject!r} ({attribute}): add it to _FREEFORM_STATEMENTS")
        statement = _FREEFORM_STATEMENTS[subject]
    else:
        if attribute not in _STATEMENT_TEMPLATES:
            raise ValueError(f"no statement template for category {attribute!r}: add it to _STATEMENT_TEMPLATES")
        statement = _STATEMENT_TEMPLATES[attribute].format(subject=subject, Subject=subject[:1].upper() + subject[1:])
    return _check_statement(statement, f"{attribute} / {subject!r}")


def _build() -> list[dict]:
    items = []
    for attribute, (template, rows) in _CATEGORIES.items():
        for subject, answer, aliases in rows:
            items.append({"id": f"rw-{len(items):03d}", "question": template.format(subject), "answer": answer,
                          "aliases": list(aliases), "attribute": attribute,
                          "statement": _statement(attribute, template, subject)})
    unused = set(_FREEFORM_STATEMENTS) - {q["question"] for q in items}
    if unused:
        raise ValueError(f"statements for questions that do not exist: {sorted(unused)}")
    return items


REALWORLD_QA: list[dict] = _build()
"""Every question: ``{"id": "rw-000", "question", "answer" (canonical), "aliases" (other accepted answers),
"attribute" (category), "statement" (a declarative sentence with one ``{}`` where the answer goes: "The capital of
France is {}.")}``, in category order."""

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
    return _contains_whole(_first_nonempty_line(reply), item)


def score_reply_contains(reply: str, item: dict) -> bool:
    """Reply-contains match: as :func:`score_contains` (whole word or phrase, case-insensitive, answer or alias, the
    same guards against numbers inside longer numbers), but anywhere in the whole ``reply``, every line.

    A real chat model often opens with a line of its own ("Sure! Here is the answer:") and gives the answer on the
    next one: "Sure!\\nThe capital of France is Paris." is right here and wrong for :func:`score_contains`. A
    multi-word answer may also be split across a line break (whitespace, newlines included, matches whitespace)."""
    return _contains_whole(reply, item)


def _contains_whole(text: str, item: dict) -> bool:
    """Whether the answer or an alias of ``item`` occurs in ``text`` as a whole word or phrase, case-insensitively."""
    text = text.casefold()
    for alt in _accepted(item):
        body = r"\s+".join(re.escape(part) for part in alt.split())
        if re.search(_BEFORE + body + _AFTER, text):
            return True
    return False


SCORERS = {"exact": score_exact, "contains": score_contains, "reply_contains": score_reply_contains}


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
# Country names that English writes with "the" inside a sentence: a candidate is put into a statement as the noun
# phrase it is ("The city of Chicago is in the United States."), every candidate in its own natural form, so that
# no candidate is handicapped by a sentence that reads wrong with it (measured on SmolLM2 before this was added: all
# five city_country misses of its test items were these four countries).
_WITH_ARTICLE = {"United States", "United Kingdom", "Netherlands", "United Arab Emirates"}


def statement_text(item: dict, candidate: str) -> str:
    """The text whose likelihood the format-free stored probe compares: the item's ``statement`` with ``candidate``
    in its ``{}`` ("The capital of France is {}." -> "The capital of France is Paris."). An item without a
    ``statement`` (a record saved before the field existed) takes that of the :data:`REALWORLD_QA` item with its id.
    A candidate that ends with a full stop ends the sentence itself: "... is Washington, D.C.", not "D.C..".
    A country that takes the article is written with it (:data:`_WITH_ARTICLE`): "... is in the Netherlands."."""
    statement = item["statement"] if "statement" in item else _BY_ID[item["id"]]["statement"]
    if candidate.endswith(".") and statement.endswith("{}."):
        statement = statement[:-1]
    if candidate in _WITH_ARTICLE:
        candidate = "the " + candidate
    return statement.replace("{}", candidate)


def probe_text(question: str, candidate: str) -> str:
    """The text whose likelihood :func:`stored_realworld_qa_layout` compares:
    ``"Question: {question}\\nAnswer: {candidate}"`` (the plain layout of stage 1 of Mix-CPT)."""
    return f"Question: {question}\nAnswer: {candidate}"


def stored_realworld(model, tokenizer, items: list[dict], batch_size: int = 64) -> dict:
    """The format-free *stored* probe on real-world questions: multiple choice by likelihood of a declarative
    sentence, no generation, no question.

    For each item, every candidate of its category (:func:`category_answers`: the distinct canonical answers of all
    questions of that category in :data:`REALWORLD_QA`, sorted) is put into the item's statement
    (:func:`statement_text`: "The capital of France is Paris.", "... is Rome.", ...) and the text is tokenised with
    the tokenizer's defaults and scored by :func:`mixcpt_core.probes.sequence_logprobs` (sum of token
    log-probabilities, first token unscored). The item counts as stored when its gold canonical answer has the highest
    log-likelihood; ties go to the first candidate in sorted order. No ``Question:/Answer:`` layout and no chat
    template: a model is not favoured for having practised a format (compare :func:`stored_realworld_qa_layout`).

    A sum of log-probabilities favours short candidates (fewer tokens, fewer negative terms): a multi-token answer
    ("Buenos Aires") competes at a disadvantage against one-token ones. That is accepted, as in the synthetic world's
    probe (:func:`mixcpt_core.probes.stored_knowledge`): the probe compares one model before and after adaptation on
    the same candidates, so the bias is the same on both sides.

    Returns ``{"accuracy", "n", "chance", "majority", "hits": [0/1 per item], "predictions": [candidate per item]}``,
    with ``chance`` = :func:`realworld_chance` and ``majority`` = :func:`realworld_majority` of ``items``."""
    choices = [{c: statement_text(q, c) for c in category_answers(q["attribute"])} for q in items]
    return _choose(model, tokenizer, items, choices, batch_size)


def stored_realworld_qa_layout(model, tokenizer, items: list[dict], batch_size: int = 64) -> dict:
    """Multiple choice by likelihood in the ``Question:/Answer:`` layout: as :func:`stored_realworld`, but each
    candidate is scored in :func:`probe_text`, ``"Question: {question}\\nAnswer: {candidate}"``.

    **Not format-free**: that is the plain layout stage 1 of Mix-CPT trains on, so a model that practised it scores
    higher here whether or not it knows more; the difference from :func:`stored_realworld` measures familiarity with
    the layout as much as knowledge. Kept to compare with the statement probe (it was the stored probe before it).
    Same candidates, tie rule and return value as :func:`stored_realworld`."""
    choices = [{c: probe_text(q["question"], c) for c in category_answers(q["attribute"])} for q in items]
    return _choose(model, tokenizer, items, choices, batch_size)


def _choose(model, tokenizer, items: list[dict], choices: list[dict[str, str]], batch_size: int) -> dict:
    from .probes import choose_by_likelihood

    return choose_by_likelihood(model, tokenizer, items, choices, realworld_chance(items), batch_size)


def realworld_chance(items: list[dict]) -> float:
    """Expected accuracy of a uniform random guess on the stored probe: mean over items of 1 / |candidates|."""
    return sum(1 / len(category_answers(q["attribute"])) for q in items) / max(1, len(items))


def realworld_majority(items: list[dict]) -> float:
    """Accuracy of always answering the most common answer of each category among ``items``
    (:func:`mixcpt_core.probes.majority_accuracy`; ties: the value that sorts first). Where a category's answers
    repeat (several numbers are "8", several colours "white") it is above uniform chance. It is computed from
    ``items`` themselves: what a guesser who knew the answer distribution of these very items would score."""
    from .probes import majority_accuracy

    return majority_accuracy(items)


_BY_ID = {q["id"]: q for q in REALWORLD_QA}

__all__ = ["REALWORLD_QA", "CATEGORIES", "category_answers", "score_exact", "score_contains", "score_reply_contains",
           "SCORERS", "realworld_split", "statement_text", "probe_text", "stored_realworld",
           "stored_realworld_qa_layout", "realworld_chance", "realworld_majority"]
