"""General prompts for stage 2 (format alignment) on the real-model rung.

Stage 2 of Mix-CPT (SFT, then DPO, on a few general samples) is meant to teach a chat model the chat *format*, not new
facts. For the real-model rung (SmolLM2-135M-Instruct, a small chat model that already has its own voice) the
responses to these prompts are generated later by the start model itself (greedy decoding), so stage 2 rehearses
the voice and the knowledge the model already has instead of writing someone else's into it. This module holds only
the prompts; no model is run here.

The prompts were written by hand for this project, not copied from any data set. They are everyday, harmless,
general-audience requests, short (one or two sentences), each distinct. Six kinds (:data:`KINDS`):

* ``factual``: short, unambiguous, well-known questions (geography, science, everyday knowledge, history, arts,
  sports, food, animals, language) that a 135M-parameter chat model has a fair chance of answering. Each carries a
  gold ``answer`` (one to three words) and ``aliases`` (other accepted spellings; numbers are digits with the words
  as aliases), so that only replies containing it are kept: stage 2 then rehearses facts the model *knows*;
* ``explain``: "Explain what X is in simple terms.", "Why is the sky blue?";
* ``list``: "List three fruits that are red.";
* ``compare``: "What is the difference between weather and climate?";
* ``rewrite``: rewrite, correct, summarise or simplify a short text given inside the prompt;
* ``howto``: "How do I boil an egg?", "Give me three tips for sleeping better.".

Every kind but ``factual`` is open-ended: ``answer`` is ``None`` and ``aliases`` is empty.

**Disjoint from the evaluation questions.** The factual prompts are not about the facts that the real-world
forgetting test (:data:`mixcpt_core.realworld.REALWORLD_QA`, validation and test alike) asks about: the capitals
asked here are of other countries, the chemical symbols of other elements, the books of other authors, and so on.
Otherwise stage 2 would rehearse exactly the answers whose forgetting is measured. Nor does any prompt echo the
synthetic world (:mod:`mixcpt_core.world`): its invented cities and companies, its people's names and its question
templates. :func:`check_disjoint` checks all of this and returns the problems it finds (none for this set).

Each prompt: ``{"id": "gp-000", "kind", "prompt", "answer" (str, or None), "aliases" (list of str)}``, ids
consecutive in list order.
"""

from __future__ import annotations

import re

from .evaluation import normalize_answer

KINDS = ("factual", "explain", "list", "compare", "rewrite", "howto")

# -- factual -----------------------------------------------------------------------------------------------------------
# Numbers: the digits are the answer, the words aliases (as in mixcpt_core.realworld).
_NUMBER_WORDS = {
    "3": ["three"], "4": ["four"], "5": ["five"], "6": ["six"], "8": ["eight"], "9": ["nine"], "10": ["ten"],
    "12": ["twelve"], "18": ["eighteen"], "28": ["twenty-eight", "twenty eight"], "30": ["thirty"],
    "32": ["thirty-two", "thirty two"], "88": ["eighty-eight", "eighty eight"], "90": ["ninety"],
    "100": ["one hundred", "a hundred"], "206": ["two hundred six", "two hundred and six"],
    "360": ["three hundred sixty", "three hundred and sixty"], "1000": ["1,000", "one thousand", "a thousand"],
}


def _n(prompt: str, number: int) -> tuple[str, str, list[str]]:
    """A question whose answer is a number: digits as the answer, words as aliases."""
    return prompt, str(number), list(_NUMBER_WORDS[str(number)])


# Per topic: (prompt, canonical answer, [aliases]). None of them asks a fact of mixcpt_core.realworld.
_FACTUAL: dict[str, list[tuple[str, str, list[str]]]] = {
    "capital": [
        ("What is the capital of Chile?", "Santiago", ["Santiago de Chile"]),
        ("What is the capital of Colombia?", "Bogotá", ["Bogota"]),
        ("What is the capital of Ukraine?", "Kyiv", ["Kiev"]),
        ("What is the capital of New Zealand?", "Wellington", []),
        ("What is the capital of the Philippines?", "Manila", []),
        ("What is the capital of Vietnam?", "Hanoi", ["Ha Noi"]),
        ("What is the capital of Iran?", "Tehran", ["Teheran"]),
        ("What is the capital of Iraq?", "Baghdad", []),
        ("What is the capital of Saudi Arabia?", "Riyadh", []),
        ("What is the capital of Pakistan?", "Islamabad", []),
        ("What is the capital of Scotland?", "Edinburgh", []),
        ("What is the capital of Iceland?", "Reykjavik", ["Reykjavík"]),
        ("What is the capital of Malaysia?", "Kuala Lumpur", []),
        ("What is the capital of Afghanistan?", "Kabul", []),
        ("What is the capital of Syria?", "Damascus", []),
        ("What is the capital of Lebanon?", "Beirut", []),
        ("What is the capital of Jamaica?", "Kingston", []),
        ("What is the capital of Nepal?", "Kathmandu", []),
        ("What is the capital of North Korea?", "Pyongyang", []),
        ("What is the capital of Wales?", "Cardiff", []),
    ],
    "geography": [
        ("Which is the largest ocean on Earth?", "Pacific Ocean", ["Pacific", "the Pacific"]),
        ("What is the tallest mountain in the world?", "Mount Everest", ["Everest", "Mt. Everest", "Mt Everest"]),
        ("What is the longest river in Africa?", "Nile", ["the Nile", "Nile River", "River Nile"]),
        ("Which river flows through London?", "Thames", ["the Thames", "River Thames"]),
        ("Which river flows through Paris?", "Seine", ["the Seine", "River Seine"]),
        ("What is the largest hot desert in the world?", "Sahara", ["the Sahara", "Sahara Desert"]),
        ("Which ocean lies between Europe and North America?", "Atlantic Ocean", ["Atlantic", "the Atlantic"]),
        ("Which US state is known as the Sunshine State?", "Florida", []),
        ("Which is the largest state of the United States by area?", "Alaska", []),
        ("Which US state is made up entirely of islands in the Pacific Ocean?", "Hawaii", ["Hawai'i"]),
        ("What is the largest island in the world?", "Greenland", []),
        ("What is the smallest country in the world?", "Vatican City", ["Vatican", "the Vatican", "Holy See"]),
        ("In which city is the Space Needle?", "Seattle", []),
        ("In which city is the Burj Khalifa?", "Dubai", []),
        ("In which city is the famous Hollywood sign?", "Los Angeles", []),
        ("In which country is Machu Picchu?", "Peru", []),
        ("Which is the coldest continent?", "Antarctica", []),
        ("What is the imaginary line that divides the Earth into northern and southern halves called?", "equator",
         ["the equator"]),
    ],
    "science": [
        ("What force pulls objects toward the ground?", "gravity", ["gravitation"]),
        ("What is the center of an atom called?", "nucleus", ["the nucleus"]),
        ("What is the closest star to the Earth?", "Sun", ["the Sun"]),
        ("What is the name of the galaxy we live in?", "Milky Way", ["the Milky Way"]),
        ("What is the Earth's natural satellite called?", "Moon", ["the Moon"]),
        ("What process do green plants use to make food from sunlight?", "photosynthesis", []),
        ("Which part of a plant absorbs water from the soil?", "roots", ["root", "the roots"]),
        ("Which gas do humans breathe out?", "carbon dioxide", ["CO2"]),
        _n("How many bones are there in the adult human body?", 206),
        _n("How many teeth does an adult human usually have?", 32),
        _n("How many chambers does the human heart have?", 4),
        ("Which organs filter the blood to make urine?", "kidneys", ["kidney", "the kidneys"]),
        ("What do we call animals that eat only plants?", "herbivores", ["herbivore"]),
        ("What do we call animals that eat only meat?", "carnivores", ["carnivore"]),
        ("What is the scientific study of living things called?", "biology", []),
        ("Which instrument makes very small things look bigger so scientists can study them?", "microscope",
         ["a microscope"]),
        ("Which instrument do astronomers use to look at distant stars?", "telescope", ["a telescope"]),
        ("What is the chemical symbol for lithium?", "Li", []),
        ("What is the chemical symbol for aluminum?", "Al", []),
        ("What is the path of a planet around the Sun called?", "orbit", ["an orbit"]),
        ("What is the smallest unit of life that can live on its own?", "cell", ["the cell", "cells"]),
        _n("How many degrees are there in a right angle?", 90),
    ],
    "everyday": [
        _n("How many eggs are there in a dozen?", 12),
        _n("How many days does February have when it is not a leap year?", 28),
        _n("How many days are there in the month of June?", 30),
        _n("How many grams are there in a kilogram?", 1000),
        _n("How many centimeters are there in a meter?", 100),
        _n("What is 2 plus 2?", 4),
        _n("What is 5 plus 3?", 8),
        _n("What is 10 times 10?", 100),
        _n("What is 9 minus 4?", 5),
        _n("How many wheels does a tricycle have?", 3),
        ("Which day of the week comes after Monday?", "Tuesday", []),
        ("Which month comes after June?", "July", []),
        ("What is the first month of the year?", "January", []),
        ("What is the last month of the year?", "December", []),
        ("Which season comes after winter?", "spring", []),
        ("Which season comes after summer?", "autumn", ["fall"]),
        ("What is the first meal of the day called?", "breakfast", []),
        ("What shape is a standard stop sign?", "octagon", ["an octagon", "octagonal"]),
    ],
    "history": [
        ("In which year did World War II end?", "1945", []),
        ("In which year did World War I begin?", "1914", []),
        ("In which year did the Titanic sink?", "1912", []),
        ("In which year did the Berlin Wall fall?", "1989", []),
        ("Which ship sank on its first voyage after hitting an iceberg?", "Titanic", ["the Titanic",
                                                                                      "RMS Titanic"]),
        ("Who was the British prime minister for most of World War II?", "Winston Churchill", ["Churchill"]),
        ("Who was the first woman to win a Nobel Prize?", "Marie Curie", ["Curie", "Madame Curie"]),
        ("Who was the first female prime minister of the United Kingdom?", "Margaret Thatcher", ["Thatcher"]),
        ("Which ancient people built the pyramids of Giza?", "Egyptians", ["the Egyptians", "ancient Egyptians",
                                                                           "the ancient Egyptians"]),
        ("Which Roman city was buried by the eruption of Mount Vesuvius in 79 AD?", "Pompeii", []),
        ("What was the name of the first artificial satellite, launched in 1957?", "Sputnik", ["Sputnik 1"]),
        ("Which British queen reigned for seventy years, until 2022?", "Elizabeth II",
         ["Queen Elizabeth II", "Queen Elizabeth", "Elizabeth"]),
        ("In which country were the ancient Olympic Games held?", "Greece", ["ancient Greece"]),
        ("Which long wall was built across northern China to keep out invaders?", "Great Wall",
         ["the Great Wall", "Great Wall of China"]),
    ],
    "arts": [
        ("Who wrote The Adventures of Sherlock Holmes?", "Arthur Conan Doyle",
         ["Conan Doyle", "Sir Arthur Conan Doyle", "Doyle"]),
        ("Who wrote Jane Eyre?", "Charlotte Brontë", ["Charlotte Bronte", "Brontë", "Bronte"]),
        ("Who wrote The Jungle Book?", "Rudyard Kipling", ["Kipling"]),
        ("Who wrote Treasure Island?", "Robert Louis Stevenson", ["Stevenson", "R. L. Stevenson"]),
        ("Who wrote Charlie and the Chocolate Factory?", "Roald Dahl", ["Dahl"]),
        ("Who wrote Gulliver's Travels?", "Jonathan Swift", ["Swift"]),
        ("Who wrote The Cat in the Hat?", "Dr. Seuss", ["Dr Seuss", "Seuss", "Theodor Geisel"]),
        ("Who wrote Les Misérables?", "Victor Hugo", ["Hugo"]),
        ("Who wrote Winnie-the-Pooh?", "A. A. Milne", ["A.A. Milne", "Milne"]),
        ("Who composed the Moonlight Sonata?", "Ludwig van Beethoven", ["Beethoven"]),
        ("Who sculpted the famous marble statue of David in Florence?", "Michelangelo", []),
        ("Which band recorded the song \"Hey Jude\"?", "The Beatles", ["Beatles"]),
        ("Who is known as the King of Rock and Roll?", "Elvis Presley", ["Elvis", "Presley"]),
        ("Who created the cartoon character Mickey Mouse?", "Walt Disney", ["Disney"]),
        ("In which Shakespeare play does a character say \"To be or not to be\"?", "Hamlet", []),
        ("Which fairy tale heroine loses a glass slipper at the royal ball?", "Cinderella", []),
        ("Which young wizard goes to Hogwarts School in a famous series of books?", "Harry Potter", ["Harry"]),
        ("What is the name of Sherlock Holmes's friend and assistant?", "Doctor Watson",
         ["Dr. Watson", "Dr Watson", "Watson", "John Watson"]),
        _n("How many strings does a standard guitar have?", 6),
    ],
    "sports": [
        ("In which sport do players score touchdowns?", "American football", ["football"]),
        ("In which sport do players hit home runs?", "baseball", []),
        ("Which sport is played at the Wimbledon Championships?", "tennis", []),
        _n("How many players does a basketball team have on the court at one time?", 5),
        _n("How many holes are played in a standard round of golf?", 18),
        ("In which sport is a shuttlecock used?", "badminton", []),
        ("Which sport is played on ice with sticks and a puck?", "ice hockey", ["hockey"]),
        ("How often are the Summer Olympic Games held?", "every four years",
         ["four years", "every 4 years", "4 years"]),
        ("Which sport is Lionel Messi famous for playing?", "soccer", ["football", "association football"]),
        ("Which sport did Michael Jordan play professionally?", "basketball", []),
        ("In chess, which piece can only move diagonally?", "bishop", ["the bishop", "bishops"]),
        ("In chess, which piece must be protected from checkmate?", "king", ["the king"]),
    ],
    "food": [
        ("What is the main ingredient of guacamole?", "avocado", ["avocados"]),
        ("Which fruit is crushed to make wine?", "grapes", ["grape"]),
        ("What are dried grapes called?", "raisins", ["raisin"]),
        ("What is tofu made from?", "soybeans", ["soybean", "soy", "soy beans", "soya beans", "soya"]),
        ("Which vegetable are French fries made from?", "potatoes", ["potato"]),
        ("Which grain is popcorn made from?", "corn", ["maize"]),
        ("What is made by churning cream?", "butter", []),
        ("What is cheese made from?", "milk", []),
        ("What is the yellow part of an egg called?", "yolk", ["the yolk", "egg yolk"]),
        ("Which fruit is said to keep the doctor away if you eat one a day?", "apple", ["an apple", "apples"]),
        ("Which Italian dish is a flat round bread baked with tomato sauce and cheese on top?", "pizza", []),
        ("What is the Japanese dish of vinegared rice with raw fish or vegetables called?", "sushi", []),
        ("Which tropical fruit has a spiky skin and a crown of leaves on top?", "pineapple", ["pineapples"]),
        ("Which hot drink is made from roasted beans and contains caffeine?", "coffee", []),
    ],
    "animals": [
        ("What does a caterpillar turn into?", "butterfly", ["a butterfly", "butterflies", "moth", "a moth"]),
        ("What is a baby cat called?", "kitten", ["kittens", "kitty"]),
        ("What is a baby dog called?", "puppy", ["pup", "puppies"]),
        ("What is a baby cow called?", "calf", ["calves"]),
        ("What is a baby sheep called?", "lamb", ["lambs"]),
        ("What is a baby horse called?", "foal", ["colt", "filly"]),
        ("What is a young frog with a tail that lives in water called?", "tadpole", ["tadpoles", "polliwog"]),
        ("Which mammal can fly?", "bat", ["bats"]),
        ("Which white bird is a common symbol of peace?", "dove", ["doves", "white dove"]),
        ("Which animal builds dams across rivers?", "beaver", ["beavers"]),
        ("Which big cat has orange fur with black stripes?", "tiger", ["tigers"]),
        ("Which bird hoots at night?", "owl", ["owls"]),
        ("What is a female deer called?", "doe", []),
        ("What is a group of wolves called?", "pack", ["a pack"]),
        ("What do cows mainly eat?", "grass", ["hay"]),
        ("What kind of animal is Winnie-the-Pooh?", "bear", ["a bear", "teddy bear"]),
    ],
    "language": [
        ("What is the plural of \"mouse\"?", "mice", []),
        ("What is the plural of \"child\"?", "children", []),
        ("What is the plural of \"tooth\"?", "teeth", []),
        ("What is the past tense of \"go\"?", "went", []),
        ("What is the past tense of \"eat\"?", "ate", []),
        ("What is the past tense of \"run\"?", "ran", []),
        ("What is the comparative form of \"good\"?", "better", []),
        ("How do you say \"thank you\" in French?", "merci", []),
        ("How do you say \"hello\" in Spanish?", "hola", []),
        ("How do you say \"goodbye\" in Spanish?", "adiós", ["adios"]),
        ("How do you say \"yes\" in French?", "oui", []),
        ("What does the French word \"bonjour\" mean in English?", "hello", ["good morning", "good day", "hi"]),
        ("What does the Spanish word \"gracias\" mean in English?", "thank you", ["thanks"]),
        ("What do you call a word that means the opposite of another word?", "antonym", ["antonyms"]),
        ("What do you call a word that means the same as another word?", "synonym", ["synonyms"]),
        ("Which punctuation mark ends a question?", "question mark", ["a question mark"]),
        ("What is the main language spoken in Finland?", "Finnish", []),
        ("What is the main language spoken in Norway?", "Norwegian", []),
        ("What is the main language spoken in Vietnam?", "Vietnamese", []),
    ],
}

# -- open-ended kinds --------------------------------------------------------------------------------------------------
_EXPLAIN = [
    "Explain what photosynthesis is in simple terms.",
    "Why is the sky blue?",
    "What does a thermometer measure and how?",
    "Explain what gravity is in simple terms.",
    "Why do we have seasons on Earth?",
    "Explain how a rainbow forms.",
    "What is a volcano and why does it erupt?",
    "Explain what an atom is to a ten-year-old.",
    "Why do leaves change color in autumn?",
    "How does a refrigerator keep food cold?",
    "Explain what inflation means, in simple words.",
    "What is the water cycle?",
    "Why does the Moon seem to change shape during the month?",
    "Explain what a computer virus is.",
    "How do vaccines help protect people from disease?",
    "What causes thunder and lightning?",
    "Explain what a budget is and why it is useful.",
    "Why do people need to sleep?",
    "What is recycling and why does it matter?",
    "Explain how a bicycle stays upright when it moves.",
    "What is a solar eclipse?",
    "Why does ice float on water?",
    "Explain what the internet is in simple terms.",
    "How does water travel from the roots of a tree to its leaves?",
    "What is a democracy?",
    "Explain what a habit is and how habits form.",
    "Why do we sweat when we are hot?",
    "What does a compass do and how does it work?",
    "Explain what an ecosystem is.",
    "Why is regular exercise good for the heart?",
    "What is a metaphor? Give an example.",
    "Explain how a savings account earns interest.",
    "Why does bread dough rise?",
    "What is the greenhouse effect?",
    "Explain what the scale on a map tells you.",
    "How do airplanes stay in the air?",
    "What are tides and what causes them?",
    "Explain what a password manager does.",
    "Why do cats purr?",
    "What is erosion?",
    "Explain what a museum curator does.",
    "Why do we yawn?",
    "What is a haiku?",
    "Explain how soap cleans dirty hands.",
    "Why do onions make people cry when they are cut?",
    "What is a calorie?",
    "Explain what an earthquake is.",
]

_LIST = [
    "List three fruits that are red.",
    "Name four musical instruments.",
    "List five vegetables that are green.",
    "Name three animals that live in the ocean.",
    "List four things you might pack for a day at the beach.",
    "Name three sports that use a ball.",
    "List three kinds of weather.",
    "Name four household chores.",
    "List three birds that cannot fly.",
    "Name five things you can find in a kitchen.",
    "List four types of trees.",
    "Name three board games.",
    "List five jobs of people who work in a hospital.",
    "Name four ways to travel from one town to another.",
    "List three things that are cold.",
    "Name four healthy breakfast foods.",
    "List three kinds of flowers.",
    "Name five words that rhyme with \"cat\".",
    "List four things that can be recycled.",
    "Name three hobbies people enjoy outdoors.",
    "List four items of winter clothing.",
    "Name three kinds of cheese.",
    "List four geometric shapes.",
    "Name five school subjects.",
    "List three insects.",
    "Name four kinds of pasta.",
    "List three tools a carpenter uses.",
    "Name five things that are usually yellow.",
    "List four farm animals.",
    "Name three ways to save water at home.",
    "List four kinds of fish that people eat.",
    "Name three things you need to start a vegetable garden.",
    "List four different kinds of bread.",
    "Name five adjectives that describe the ocean.",
    "List three famous fairy tales.",
    "Name four spices used in cooking.",
]

_COMPARE = [
    "What is the difference between weather and climate?",
    "What is the difference between a lake and a pond?",
    "How is a frog different from a toad?",
    "What is the difference between a virus and a bacterium?",
    "Compare cats and dogs as pets.",
    "What is the difference between a city and a village?",
    "How is a crocodile different from an alligator?",
    "What is the difference between speed and velocity?",
    "Compare reading a paper book with reading an e-book.",
    "What is the difference between a fruit and a vegetable?",
    "How is a hurricane different from a tornado?",
    "What is the difference between borrowing and lending?",
    "Compare walking and cycling as ways to get to work.",
    "What is the difference between a noun and a verb?",
    "How is tea different from coffee?",
    "What is the difference between an ocean and a sea?",
    "Compare summer and winter.",
    "What is the difference between a doctor and a nurse?",
    "What is the difference between a simile and a metaphor?",
    "How do butterflies differ from moths?",
    "What is the difference between saving money and investing it?",
    "Compare trains and airplanes for long journeys.",
    "What is the difference between a mountain and a hill?",
    "How is a violin different from a cello?",
    "What is the difference between a rabbit and a hare?",
    "What is the difference between a debit card and a credit card?",
    "Compare living in a city with living in the countryside.",
    "What is the difference between a star and a planet?",
    "How is baking different from frying?",
    "What is the difference between an email and a letter?",
    "What is the difference between a hobby and a job?",
    "How is a dolphin different from a shark?",
]

_REWRITE = [
    "Rewrite this sentence in a more formal tone: \"Hey, can you send me that report real quick?\"",
    "Rewrite this sentence in a more formal tone: \"We gotta fix this before the boss sees it.\"",
    "Rewrite this sentence in a friendlier tone: \"Submit the form by Friday or it will not be accepted.\"",
    "Rewrite this request so that it sounds polite: \"Give me the salt.\"",
    "Correct the grammar: \"She don't like apples.\"",
    "Correct the grammar: \"Me and him goes to the park every day.\"",
    "Correct the grammar: \"There is three books on the table.\"",
    "Correct the spelling: \"I recieved a beautifull present yesterday.\"",
    "Correct the grammar: \"The childrens was playing outside.\"",
    "Correct the grammar: \"He have went to the store already.\"",
    "Correct the grammar: \"Their going to the movies tonight.\"",
    "Add the missing punctuation and capital letters: \"lets eat grandma said the boy\"",
    "Summarize in one sentence: \"The town library will close for two weeks in July while workers repair the "
    "roof. Books can still be returned through the box outside.\"",
    "Summarize in one sentence: \"Maria practiced the piano every evening for a year. At the spring concert she "
    "played without a single mistake.\"",
    "Summarize in one sentence: \"Heavy rain fell all night. By morning the river had risen over its banks, and "
    "several roads near the bridge were closed.\"",
    "Summarize in one sentence: \"The new café on Elm Street serves fresh bread and soup. It opens at seven and "
    "is popular with students.\"",
    "Summarize in one sentence: \"Our class met on Monday to plan the school fair. We chose a date, picked "
    "games, and agreed to bring snacks.\"",
    "Rewrite this sentence in simpler words: \"The precipitation will commence in the late afternoon.\"",
    "Rewrite in plain English: \"Kindly utilize the receptacle for the disposal of refuse.\"",
    "Make this sentence shorter: \"Due to the fact that it was raining, we made the decision to stay inside.\"",
    "Rewrite this sentence in the past tense: \"I walk to school and meet my friends.\"",
    "Rewrite this sentence in the future tense: \"We visit our grandparents.\"",
    "Change this sentence to the passive voice: \"The cat chased the mouse.\"",
    "Change this sentence to the active voice: \"The cake was eaten by the children.\"",
    "Rewrite this statement as a question: \"The train leaves at noon.\"",
    "Turn this into a polite opening line for an email: \"I need the invoice.\"",
    "Rewrite this sentence to make it sound more exciting: \"The dog ran across the field.\"",
    "Paraphrase this saying: \"Practice makes perfect.\"",
    "Turn this shopping list into one sentence: eggs, milk, bread, apples.",
    "Rewrite this sentence without the word \"very\": \"The soup was very hot.\"",
    "Make this sentence more concise: \"In my personal opinion, I think that the movie was good.\"",
    "Rewrite this sentence in the first person: \"She finished her homework before dinner.\"",
    "Rewrite this headline as a full sentence: \"Local school wins science prize.\"",
    "Put these words in the right order to make a sentence: \"park the to we went yesterday\".",
    "Rewrite this text message in standard English: \"c u l8r, gonna b late\".",
    "Correct the capital letters: \"my friend lives in london and visits us on mondays.\"",
    "Rewrite this sentence for a young child: \"Photosynthesis converts light energy into chemical energy.\"",
]

_HOWTO = [
    "How do I boil an egg?",
    "Give me three tips for sleeping better.",
    "How do I make a cup of tea?",
    "How can I keep my houseplants healthy?",
    "Give me three tips for studying for an exam.",
    "How do I tie my shoelaces?",
    "How can I save money on groceries?",
    "Give me three tips for staying focused while working from home.",
    "How do I make a simple green salad?",
    "How can I get better at remembering people's names?",
    "What are some good ways to reduce stress?",
    "How do I wash a wool sweater?",
    "Give me three tips for writing a clear email.",
    "How should a beginner start running?",
    "How do I make pancakes?",
    "Give me three tips for keeping a desk tidy.",
    "How can I drink more water during the day?",
    "How do I fix a flat bicycle tire?",
    "How can I prepare for a job interview?",
    "Give me three tips for learning a new language.",
    "How do I grow tomatoes from seeds?",
    "How can I make my phone battery last longer?",
    "How do I write a thank-you note?",
    "Give me three tips for a long car trip.",
    "How can I keep my kitchen clean?",
    "How do I clean my eyeglasses without scratching them?",
    "Give me three tips for speaking in public.",
    "How can I use less plastic at home?",
    "How do I fold a paper airplane?",
    "How can I get better at drawing?",
    "Give me three tips for packing a suitcase.",
    "How do I cook rice on the stove?",
    "How can I stay warm at home in winter without turning up the heating?",
    "Give me three tips for taking care of a new puppy.",
    "How do I make a weekly budget?",
    "How can I make friends after moving to a new town?",
    "How do I get a coffee stain out of a shirt?",
]


def _build() -> list[dict]:
    rows: list[tuple[str, str, str | None, list[str]]] = []
    for table in _FACTUAL.values():
        rows += [("factual", prompt, answer, list(aliases)) for prompt, answer, aliases in table]
    for kind, prompts in (("explain", _EXPLAIN), ("list", _LIST), ("compare", _COMPARE), ("rewrite", _REWRITE),
                          ("howto", _HOWTO)):
        rows += [(kind, prompt, None, []) for prompt in prompts]
    return [{"id": f"gp-{i:03d}", "kind": kind, "prompt": prompt, "answer": answer, "aliases": aliases}
            for i, (kind, prompt, answer, aliases) in enumerate(rows)]


GENERAL_PROMPTS: list[dict] = _build()
"""Every prompt: ``{"id": "gp-000", "kind", "prompt", "answer" (gold answer of a factual prompt, else None),
"aliases" (other accepted answers; empty unless factual)}``, factual prompts first, then kind by kind."""


def prompts_by_kind(kind: str) -> list[dict]:
    """The prompts of one kind (one of :data:`KINDS`), in :data:`GENERAL_PROMPTS` order."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; the kinds are {list(KINDS)}")
    return [p for p in GENERAL_PROMPTS if p["kind"] == kind]


# -- disjointness ------------------------------------------------------------------------------------------------------
# Words that say nothing about a question's subject: stopwords and question words (only words of 4+ letters count).
_STOPWORDS = frozenset("""
    what which whom whose when where there their theirs these those this that than then them they does done doing
    have having were been being from into onto with without about above below over under after before also each
    every many much most more some such very your yours only just other another same called name named known
    usually often main kind kinds make made makes could would should will shall
""".split())


def _normalise(text: str) -> str:
    """Case-folded, whitespace collapsed, trailing punctuation stripped."""
    return re.sub(r"\s+", " ", text.casefold()).strip().rstrip("?.!,;: ").strip()


def _content_words(text: str) -> set[str]:
    """Words of 4+ letters that are not stopwords or question words."""
    return {w for w in re.findall(r"[^\W\d_]+", text.casefold()) if len(w) >= 4 and w not in _STOPWORDS}


def _accepted(answer: str | None, aliases) -> set[str]:
    if answer is None:
        return set()
    return {n for n in (normalize_answer(a) for a in [answer, *(aliases or [])]) if n}


def _world_patterns() -> list[tuple[str, re.Pattern]]:
    """(label, pattern) for the synthetic world's vocabulary: invented cities and companies, full names, and the
    question templates (a template's fixed wording followed by a capitalised word, i.e. a name)."""
    from . import world

    pats = [(f"world city {c!r}", re.compile(rf"\b{re.escape(c)}\b", re.IGNORECASE)) for c in world.CITIES]
    pats += [(f"world company {c!r}", re.compile(rf"\b{re.escape(c)}\b", re.IGNORECASE)) for c in world.COMPANIES]
    first = "|".join(map(re.escape, world.FIRST_NAMES))
    heads = "|".join(map(re.escape, world.SURNAME_HEADS))
    tails = "|".join(map(re.escape, world.SURNAME_TAILS))
    pats.append(("a world person's name", re.compile(rf"\b(?:{first})\s+(?:{heads})(?:{tails})\b", re.IGNORECASE)))
    for attribute, template in world.QUESTIONS.items():
        head, tail = template.split("{name}")
        # the fixed wording before the name, followed by a capitalised word (a name)
        pats.append((f"world question template ({attribute})",
                     re.compile(rf"(?i:\b{re.escape(head.strip())})\s+[A-Z]")))
        # the whole template, whatever stands for the name
        pats.append((f"world question template ({attribute})",
                     re.compile(rf"\b{re.escape(head.strip())}\s+.+?\s*{re.escape(tail)}", re.IGNORECASE)))
    return pats


def check_disjoint(prompts=GENERAL_PROMPTS) -> list[str]:
    """The problems of ``prompts`` (empty list: none) against the evaluation sets. A problem is:

    * a prompt that equals a question of :data:`mixcpt_core.realworld.REALWORLD_QA` (every question: validation and
      test) or contains one as a whole-word substring, both after normalisation (case-folded, whitespace collapsed,
      trailing punctuation stripped);
    * a factual prompt about the same fact as a real-world question: the two share a normalised answer (answer or
      alias, :func:`mixcpt_core.evaluation.normalize_answer`) *and* a content word (4+ letters, not a stopword or
      question word). "Which city is the capital city of France?" (Paris) is one: it shares Paris and "france"
      with "What is the capital of France?";
    * a prompt that mentions the synthetic world (:mod:`mixcpt_core.world`): one of its invented cities or
      companies (whole word, any case), a full name of one of its people, or one of its question templates
      ("What is the birth city of", "Which company does", "What did", "In which year was" followed by a name, or
      the whole template with anything in place of the name).

    Each problem is one line naming the prompt (its ``id``, or its text when it has none) and what it collides with.
    """
    from .realworld import REALWORLD_QA

    rw = [(q, _normalise(q["question"]), _accepted(q["answer"], q.get("aliases")), _content_words(q["question"]))
          for q in REALWORLD_QA]
    world_pats = _world_patterns()
    problems = []
    for p in prompts:
        text = p["prompt"]
        label = p.get("id") or repr(text)
        norm = _normalise(text)
        for q, qnorm, _, _ in rw:
            if norm == qnorm:
                problems.append(f"{label}: equals real-world question {q['id']} {q['question']!r}")
            elif re.search(rf"(?<!\w){re.escape(qnorm)}(?!\w)", norm):
                problems.append(f"{label}: contains real-world question {q['id']} {q['question']!r}")
        if p.get("kind") == "factual":
            answers, words = _accepted(p.get("answer"), p.get("aliases")), _content_words(text)
            for q, _, qanswers, qwords in rw:
                shared_answers, shared_words = answers & qanswers, words & qwords
                if shared_answers and shared_words:
                    problems.append(f"{label}: same fact as real-world question {q['id']} {q['question']!r} "
                                    f"(answer {sorted(shared_answers)}, words {sorted(shared_words)})")
        for what, pat in world_pats:
            if pat.search(text):
                problems.append(f"{label}: mentions the synthetic world ({what})")
    return problems


__all__ = ["KINDS", "GENERAL_PROMPTS", "prompts_by_kind", "check_disjoint"]
