"""A small synthetic English-like corpus: TinyGPT's embedded offline default text.

Why this exists: TinyGPT must be able to train a model out of the box, on a machine with no
network, and its tests need a real text to learn from. Downloading a public-domain book would
need the network and would bring a licence to track, so instead this script *writes* a corpus.
Every sentence comes from templates written for this project and filled in with a seeded
`random.Random`; no text is copied or downloaded from anywhere.

What the text is like: short stories, dialogues, letters, lists, questions and answers, and
counting exercises about a fixed cast of 30 invented people in six invented towns. Each person
always has the same trade, town, pronoun, pet and favourite colour, so the text is consistent
("Mira the potter ... she ..."), and the templates repeat with many fillings. That gives a
small character-level model plenty of learnable structure (spelling, grammar, agreement,
recurring phrases, simple arithmetic), so its loss can fall far below the ~4 bits/char of
plain letter frequencies. The text uses 74 distinct characters, all printable ASCII plus the
newline: every letter and digit, space and ! " ' + , - . : = ?; paragraphs are separated by
blank lines.

The output is a pure function of the seed: `generate(seed)` uses only its own
`random.Random(seed)`, fixed tuples (never sets), and no `hash()`, so it is the same on every
machine and Python version that keeps `random.Random`'s documented sequence.

Regenerate the committed file with::

    python tools/make_tiny_corpus.py              # writes data/tiny_corpus.txt
    python tools/make_tiny_corpus.py --out x.txt

This is build-time tooling, not part of the installed package: the wheel ships only the text.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The repository root is the parent of this file's folder (tools/).
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "data" / "tiny_corpus.txt"

# ---------------------------------------------------------------------------------------------
# The world: fixed tables. They never depend on the seed, so facts stay true across the corpus.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A thing that can be counted: 'one jar', 'three jars'."""

    one: str
    many: str
    colourable: bool = True  # 'three blue jars' reads well; 'three blue jars of honey' does not

    def count(self, n: int, colour: str = "") -> str:
        noun = self.one if n == 1 else self.many
        if colour and self.colourable:
            noun = f"{colour} {noun}"
        return f"{number_word(n)} {noun}"


@dataclass(frozen=True)
class Trade:
    job: str  # 'potter'
    workplace: str  # where the work happens: 'workshop'
    does: str  # what the job is, after the name: 'makes jars and bowls from clay'
    goods: tuple[Item, ...]  # what this person makes, sells or carries
    tool: str  # the one thing they cannot work without (used in 'lost' stories)


@dataclass(frozen=True)
class Person:
    name: str
    female: bool
    trade: Trade
    town: str
    pet_kind: str  # 'cat'
    pet_name: str  # 'Pebble'
    pet_colour: str
    colour: str  # favourite colour
    food: str  # favourite food

    # Pronouns live on the person so every template agrees with them automatically.
    @property
    def he(self) -> str:
        return "she" if self.female else "he"

    @property
    def him(self) -> str:
        return "her" if self.female else "him"

    @property
    def his(self) -> str:
        return "her" if self.female else "his"

    @property
    def He(self) -> str:  # capitalised, for the start of a sentence
        return self.he.capitalize()

    @property
    def His(self) -> str:
        return self.his.capitalize()

    @property
    def pet(self) -> str:
        """'a grey cat called Pebble'."""
        return f"{a_or_an(self.pet_colour)} {self.pet_kind} called {self.pet_name}"

    @property
    def full(self) -> str:
        """'Mira the potter'."""
        return f"{self.name} the {self.trade.job}"


# One trade per line: job | workplace | what the job is | tool | goods (singular) | goods take a colour.
# A text table keeps all 30 trades on one screen; _parse_trades turns it into Trade objects.
_TRADE_TABLE = """
potter | workshop | makes jars and bowls from clay | wheel | jar, bowl, cup | yes
baker | bakery | bakes bread and sweet buns | oven paddle | loaf, bun, pie | no
fisher | boat | catches fish in the bay | net | fish, crab, eel | no
weaver | weaving room | weaves blankets on a wooden loom | shuttle | blanket, scarf, rug | yes
smith | forge | makes nails and tools from iron | leather apron | nail, hammer, horseshoe | no
gardener | garden | grows beans, onions and carrots | spade | carrot, onion, cabbage | no
carpenter | workshop | builds chairs and tables from wood | saw | chair, stool, shelf | yes
teacher | school | teaches the children to read and count | bell | book, slate, map | no
doctor | clinic | helps people who feel sick | bag | bottle, bandage, basket | no
sailor | ship | sails across the bay and back | compass | rope, sail, barrel | yes
farmer | farm | keeps goats and grows wheat | pitchfork | egg, apple, sack of wheat | no
miller | mill | grinds wheat into flour | flour scoop | sack of flour, bag of oats, sieve | no
painter | studio | paints pictures of the hills and the sea | easel | picture, brush, pot of paint | no
tailor | shop | sews coats and shirts | needle | coat, shirt, button | yes
beekeeper | hives | keeps bees and sells honey | smoker | jar of honey, honeycomb, beeswax candle | no
shepherd | meadow | looks after a flock of sheep | crook | bag of wool, bell, lamb | no
librarian | library | looks after the books in the library | ledger | book, letter, scroll | no
mapmaker | map room | draws maps of the coast and the hills | ruler | map, compass, pencil | no
clockmaker | clock shop | mends clocks and watches | tiny screwdriver | clock, watch, spring | no
cook | kitchen | cooks soup and stew at the inn | ladle | pot of soup, pie, cake | no
musician | music room | plays the fiddle at the inn | fiddle bow | fiddle, drum, flute | yes
builder | building yard | builds houses of stone and wood | trowel | brick, plank, bucket | no
glassblower | glass shop | makes bottles and vases from glass | blowpipe | vase, bottle, lamp | yes
candle maker | candle shop | makes candles from wax | wick cutter | candle, lantern | yes
mail carrier | post office | carries letters from town to town | satchel | letter, parcel, postcard | no
lighthouse keeper | lighthouse | keeps the lamp burning at night | spyglass | lamp, can of oil, rope | no
bookbinder | bindery | sews and glues old books | bone folder | book, notebook, spool of thread | no
herbalist | herb shop | makes tea from wild herbs | mortar | bunch of herbs, packet of tea, pot of salve | no
stonemason | quarry | cuts and shapes stone | mallet | stone, block of stone, chisel | no
boatbuilder | boatyard | builds small boats for the fishers | plane | oar, plank, rowing boat | yes
"""

# Plurals that the simple rules in plural() get wrong.
_IRREGULAR = {"fish": "fish", "loaf": "loaves", "scarf": "scarves", "shelf": "shelves"}


def plural(noun: str) -> str:
    """'jar' -> 'jars', 'brush' -> 'brushes', 'sack of flour' -> 'sacks of flour'."""
    head, sep, rest = noun.partition(" of ")  # pluralise the head: 'sacks of flour'
    if head in _IRREGULAR:
        head = _IRREGULAR[head]
    elif head.endswith(("s", "sh", "ch", "x")):
        head += "es"
    else:
        head += "s"
    return head + sep + rest


def _parse_trades(table: str) -> tuple[Trade, ...]:
    trades = []
    for line in table.strip().splitlines():
        job, workplace, does, tool, goods, colour = (field.strip() for field in line.split("|"))
        items = tuple(Item(g, plural(g), colour == "yes") for g in goods.split(", "))
        trades.append(Trade(job, workplace, does, items, tool))
    return tuple(trades)


TRADES: tuple[Trade, ...] = _parse_trades(_TRADE_TABLE)

TOWNS: tuple[str, ...] = ("Willowbrook", "Stonehaven", "Ferncliff", "Oakmere", "Larkbridge", "Redwater")
COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "white", "brown", "grey", "orange")
PETS: tuple[str, ...] = ("cat", "dog", "goat", "parrot", "rabbit", "tortoise", "duck", "pony")
PET_NAMES: tuple[str, ...] = (
    "Pebble", "Biscuit", "Juniper", "Moss", "Button", "Clover", "Pip", "Sparrow", "Toffee", "Quill",
)  # fmt: skip
FOODS: tuple[str, ...] = (
    "plum cake", "bean soup", "warm bread", "apple pie",
    "fish stew", "honey buns", "cheese pie", "rice pudding",
)  # fmt: skip

# 30 names, one per trade, so 'Mira the potter' is always the same person. The initials cover
# every capital letter, which keeps the character set stable and complete.
NAMES: tuple[tuple[str, bool], ...] = (
    ("Mira", True), ("Tobin", False), ("Ada", True), ("Bram", False), ("Cora", True),
    ("Dario", False), ("Elsa", True), ("Finn", False), ("Greta", True), ("Hugo", False),
    ("Iris", True), ("Jonah", False), ("Kira", True), ("Leo", False), ("Nora", True),
    ("Pavel", False), ("Quinn", True), ("Rosa", True), ("Silas", False), ("Una", True),
    ("Theo", False), ("Vera", True), ("Wendel", False), ("Xavi", False), ("Yara", True),
    ("Zeno", False), ("Olga", True), ("Malik", False), ("Lina", True), ("Nico", False),
)  # fmt: skip


def _build_cast() -> tuple[Person, ...]:
    """Give each name a trade, a town and favourites by simple arithmetic (not by chance)."""
    cast = []
    for i, (name, female) in enumerate(NAMES):
        cast.append(
            Person(
                name=name,
                female=female,
                trade=TRADES[i],
                town=TOWNS[i % len(TOWNS)],
                pet_kind=PETS[i % len(PETS)],
                pet_name=PET_NAMES[i % len(PET_NAMES)],
                pet_colour=COLOURS[(i * 3) % len(COLOURS)],
                colour=COLOURS[(i * 5 + 1) % len(COLOURS)],
                food=FOODS[(i * 7) % len(FOODS)],
            )
        )
    return tuple(cast)


CAST: tuple[Person, ...] = _build_cast()

PLACES: tuple[str, ...] = (
    "the harbour", "the market", "the old bridge", "the town square", "the well", "the orchard",
    "the river bank", "the inn", "the top of the hill", "the edge of the forest", "the mill pond",
)  # fmt: skip
DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS: tuple[str, ...] = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class Weather:
    sky: str  # a sentence describing it
    after: str  # 'When the rain stopped' - opens a causal sentence
    because: str  # 'Because the road was wet' - opens a causal sentence
    so: str  # what a person does about it; {he}/{his} are filled in per person
    word: str  # one word for titles and answers


WEATHERS: tuple[Weather, ...] = (
    Weather("Grey clouds hung low, and rain fell on the roofs.", "When the rain stopped",
            "Because the road was wet and muddy", "{he} walked slowly by the side of the road", "rainy"),
    Weather("The sun was bright and the sky was clear.", "When the sun rose over the hills",
            "Because the day was warm", "{he} rested in the shade of a tree", "sunny"),
    Weather("A strong breeze blew in from the sea.", "When the wind grew calm",
            "Because the wind was strong", "{he} held {his} hat with one hand", "windy"),
    Weather("The pond was frozen, and snow lay on the fields.", "When the snow stopped falling",
            "Because the path was covered in snow", "{he} put on {his} thick boots", "snowy"),
    Weather("A thick fog lay over the harbour.", "When the fog lifted",
            "Because the fog was thick", "{he} carried a small lamp", "foggy"),
    Weather("Dark clouds gathered, and thunder rolled over the hills.", "When the storm had passed",
            "Because the storm was loud", "{he} stayed close to the walls of the houses", "stormy"),
)  # fmt: skip

ONES: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
TENS: tuple[str, ...] = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")

# Animals and how many legs they have, for question-and-answer pages.
LEGS: tuple[tuple[str, int], ...] = (
    ("cat", 4), ("dog", 4), ("goat", 4), ("duck", 2), ("parrot", 2), ("spider", 8),
    ("beetle", 6), ("snake", 0), ("horse", 4), ("hen", 2), ("ant", 6), ("sheep", 4),
)  # fmt: skip


def number_word(n: int) -> str:
    """0..99 as English words: 42 -> 'forty-two'."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] if ones == 0 else f"{TENS[tens]}-{ONES[ones]}"


def cap(text: str) -> str:
    """Capitalise the first letter only ('the harbour' -> 'The harbour')."""
    return text[:1].upper() + text[1:]


def title_case(text: str) -> str:
    """Capitalise every word, for titles ('tiny screwdriver' -> 'Tiny Screwdriver')."""
    return " ".join(cap(word) for word in text.split())


def poss(name: str) -> str:
    """Possessive of a name: 'Mira' -> "Mira's"."""
    return f"{name}'s"


def a_or_an(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def join_and(items: Sequence[str]) -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------------
# Sections. Each takes the RNG and returns one block of text (title + paragraphs), no trailing
# newline. Paragraphs are joined with a blank line.
# ---------------------------------------------------------------------------------------------


def _para(*sentences: str) -> str:
    return " ".join(sentences)


def _two(rng: random.Random) -> tuple[Person, Person]:
    a, b = rng.sample(CAST, 2)
    return a, b


def story_market(rng: random.Random) -> str:
    """A market day: carry goods, sell them, count the coins (arithmetic kept correct)."""
    hero, friend = _two(rng)
    w = rng.choice(WEATHERS)
    day = rng.choice(DAYS)
    item = rng.choice(hero.trade.goods)
    n = rng.randint(3, 12)
    sold = rng.randint(1, n - 1)
    price = rng.randint(2, 9)
    earned = sold * price
    colour = rng.choice(COLOURS)
    place = rng.choice(("the market", "the town square", "the harbour"))
    title = rng.choice(
        (f"Market Day in {hero.town}", f"{hero.name} Goes to Market", f"A {cap(w.word)} {day}")
    )
    return "\n\n".join(
        (
            title,
            _para(
                f"On {day} morning, {hero.full} woke up early in {hero.town}.",
                w.sky,
                f"{hero.He} looked out of the window and thought about the market.",
            ),
            _para(
                f"{w.after}, {hero.name} carried {item.count(n, colour)} to {place}.",
                f"{w.because}, {w.so.format(he=hero.he, his=hero.his)}.",
                f"At {place}, {hero.he} met {friend.full}, who {friend.trade.does}.",
            ),
            _para(
                f'"Good morning, {friend.name}," said {hero.name}. "Would you like to buy something?"',
                f'"Yes, please," said {friend.name}. "How much does one {item.one} cost?"',
                f'"One {item.one} costs {number_word(price)} coins," said {hero.name}.',
            ),
            _para(
                f"By the evening, {hero.name} had sold {item.count(sold)}.",
                f"{hero.He} had {number_word(n - sold)} left.",
                f"{cap(number_word(sold))} times {number_word(price)} is {number_word(earned)},",
                f"so {hero.he} went home with {number_word(earned)} coins in {hero.his} pocket.",
            ),
        )
    )


def story_lost(rng: random.Random) -> str:
    """Someone loses the tool of their trade; a friend helps find it."""
    hero, friend = _two(rng)
    w = rng.choice(WEATHERS)
    tool = hero.trade.tool
    searched = rng.sample(PLACES, 3)
    found = searched[-1]
    where = rng.choice(
        ("under a bench", "behind a barrel", "next to a basket", "under some leaves", "in the grass")
    )
    title = rng.choice(
        (
            f"The Lost {title_case(tool)}",
            f"{hero.name} and the Missing {title_case(tool)}",
            f"Where Is the {title_case(tool)}?",
        )
    )
    return "\n\n".join(
        (
            title,
            _para(
                f"{hero.full} lived in {hero.town} with {hero.pet}.",
                f"Every day {hero.he} went to {hero.his} {hero.trade.workplace},",
                f"because {hero.he} {hero.trade.does}.",
                f"One morning {hero.he} could not find {hero.his} {tool}.",
            ),
            _para(
                f'"Oh no," said {hero.name}. "I cannot work without my {tool}."',
                f"{hero.He} looked at {searched[0]}, but it was not there.",
                f"{hero.He} looked at {searched[1]}, but it was not there either.",
            ),
            _para(
                f"{w.after}, {friend.full} came by.",
                f'"Why do you look so sad, {hero.name}?" asked {friend.name}.',
                f'"I have lost my {tool}," said {hero.name}.',
                f'"I will help you look," said {friend.name}.',
            ),
            _para(
                f"Together they walked to {found}.",
                f"There was the {tool}, {where}!",
                f"{hero.name} was very happy. {hero.He} thanked {friend.name} and gave {friend.him} "
                f"{a_or_an(rng.choice(hero.trade.goods).one)}.",
                f'"You are a good friend," said {hero.name}.',
            ),
        )
    )


def story_gift(rng: random.Random) -> str:
    """A gift exchange between two people of different trades."""
    hero, friend = _two(rng)
    month = rng.choice(MONTHS)
    gift = rng.choice(hero.trade.goods)
    back = rng.choice(friend.trade.goods)
    n = rng.randint(2, 6)
    m = rng.randint(1, 5)
    # Why the gift, and what the giver says at the door.
    reason, greeting = rng.choice(
        (
            (f"it was {poss(friend.name)} birthday", "Happy birthday"),
            (f"{friend.name} had moved into a new house", "Good luck in your new house"),
            (f"{friend.name} was getting married", "Congratulations"),
            (f"{friend.name} had been ill for a week", "Get well soon"),
        )
    )
    return "\n\n".join(
        (
            rng.choice((f"A Gift for {friend.name}", f"{hero.name} and {friend.name}", f"A Day in {month}")),
            _para(
                f"In {month}, {hero.full} heard that {reason}.",
                f"{friend.name} is the {friend.trade.job} in {friend.town}.",
                f"{hero.He} wanted to give {friend.him} something nice.",
            ),
            _para(
                f"So {hero.name} went to {hero.his} {hero.trade.workplace} and worked all afternoon.",
                f"When {hero.he} was done, {hero.he} had {gift.count(n, friend.colour)}.",
                f"{hero.He} tied them with {a_or_an(friend.colour)} ribbon, because {friend.colour} is",
                f"{poss(friend.name)} favourite colour.",
            ),
            _para(
                f"Then {hero.he} walked to {friend.town} and knocked on the door.",
                f'"{greeting}, {friend.name}!" said {hero.name}. "These are for you."',
                f'"Thank you, {hero.name}!" said {friend.name}. "Please take {back.count(m)} from me."',
            ),
            _para(
                f"They sat together, ate {friend.food} and talked until the stars came out.",
                f"{hero.name} walked home slowly. {hero.He} was tired, but {hero.he} was happy.",
            ),
        )
    )


def story_day(rng: random.Random) -> str:
    """One day in order, with clock times and sequence words (first, then, after that, finally)."""
    p, friend = _two(rng)
    w = rng.choice(WEATHERS)
    month = rng.choice(MONTHS)
    start = rng.randint(5, 8)
    first, second = rng.sample(p.trade.goods, 2)
    n1, n2 = rng.randint(2, 9), rng.randint(2, 9)
    place = rng.choice(PLACES)
    topics = rng.sample(
        (
            "the weather",
            "the market",
            "their pets",
            "the harvest",
            "the new bridge",
            "the boats",
            "old stories",
        ),
        3,
    )
    return "\n\n".join(
        (
            rng.choice((f"A Day with {p.name}", f"{p.name} in {month}", f"A {cap(w.word)} Day in {p.town}")),
            _para(
                f"{p.full} lives in {p.town}.",
                f"On a {w.word} day in {month}, {p.he} got up at {number_word(start)} o'clock.",
                w.sky,
                f"First, {p.he} fed {p.his} {p.pet_kind}, {p.pet_name}.",
                f"Then {p.he} ate a bowl of porridge by the window.",
            ),
            _para(
                f"At {number_word(start + 1)} o'clock, {p.he} went to {p.his} {p.trade.workplace}.",
                f"In the morning {p.he} made {first.count(n1)},",
                f"and in the afternoon {p.he} made {second.count(n2)}.",
                f"{cap(number_word(n1))} and {number_word(n2)} make {number_word(n1 + n2)}.",
            ),
            _para(
                f"After that, {p.he} walked to {place}, where {friend.full} was waiting.",
                f"{w.because}, {w.so.format(he=p.he, his=p.his)}.",
                f"They talked about {join_and(topics)}.",
            ),
            _para(
                f"Finally, when the sun went down, {p.name} went home.",
                f"{p.He} ate {p.food} for supper",
                f"and went to bed at {number_word(rng.randint(8, 11))} o'clock.",
                f"{p.His} {p.pet_kind} slept at the end of the bed.",
            ),
        )
    )


def story_storm(rng: random.Random) -> str:
    """Bad weather breaks something; a neighbour with the right skill helps."""
    helpers = [
        p for p in CAST if p.trade.job in ("carpenter", "builder", "smith", "stonemason", "boatbuilder")
    ]
    helper = rng.choice(helpers)
    hero = rng.choice([p for p in CAST if p not in helpers])  # someone who cannot mend it alone
    w = rng.choice(WEATHERS[2:] + WEATHERS[:1])  # wind, snow, fog, storm, rain
    broken = rng.choice(("the fence", "the gate", "the window", "the roof", "the door", "the garden wall"))
    hours = rng.randint(2, 6)
    return "\n\n".join(
        (
            rng.choice(
                (f"The {cap(w.word)} Night", f"After the {cap(w.word)} Night", f"{hero.name} Needs Help")
            ),
            _para(
                f"It was a {w.word} night in {hero.town}.",
                w.sky,
                f"{hero.full} sat by the fire with {hero.pet}.",
            ),
            _para(
                f"In the morning, {hero.name} saw that {broken} was broken.",
                f"{cap(w.because)}, {hero.he} could not mend it alone.",
                f"So {hero.he} went to find {helper.full}, who {helper.trade.does}.",
            ),
            _para(
                f'"Can you help me?" asked {hero.name}. "{cap(broken)} is broken."',
                f'"Of course," said {helper.name}. "I will bring my {helper.trade.tool}."',
            ),
            _para(
                f"{helper.name} worked for {number_word(hours)} hours, and then {broken} was as good as new.",
                f"{hero.name} made a pot of tea, and they drank it together.",
                f'"Thank you, {helper.name}," said {hero.name}. "Now I can sleep well."',
            ),
        )
    )


def dialogue(rng: random.Random) -> str:
    """A script-style dialogue, 'Name: line' on each line, with a few choices at each turn."""
    a, b = _two(rng)
    place = rng.choice(PLACES)
    day = rng.choice(DAYS)
    item = rng.choice(b.trade.goods)
    offer = rng.choice(a.trade.goods)
    n = rng.randint(2, 9)
    k = rng.randint(1, min(4, n))  # never ask for more than there is
    w = rng.choice(WEATHERS)
    hello = rng.choice(("Good morning", "Hello", "Good afternoon"))
    lines = [
        f"{a.name}: {hello}, {b.name}. How are you today?",
        rng.choice(
            (
                f"{b.name}: I am well, thank you. It is a {w.word} day, is it not?",
                f"{b.name}: I am a little tired, but well. What a {w.word} day it is!",
            )
        ),
        f"{a.name}: Yes, it is. Where are you going?",
        f"{b.name}: I am going to {place} with {item.count(n)}.",
    ]
    if rng.random() < 0.5:  # sometimes a short exchange about the pet
        lines += [
            f"{a.name}: How is your {b.pet_kind}, {b.pet_name}?",
            f"{b.name}: {b.pet_name} is well. It is sleeping by the fire at home.",
        ]
    if rng.random() < 0.7:  # usually a trade, sometimes a refusal
        lines += [
            f"{a.name}: May I have {item.count(k)}? I can give you {offer.count(k)}.",
            f"{b.name}: That is a fair trade. Here you are.",
            f"{a.name}: Thank you. See you on {day}!",
        ]
    else:
        other = rng.choice([p for p in CAST if p not in (a, b)])
        lines += [
            f"{a.name}: May I have {item.count(k)}?",
            f"{b.name}: I am sorry, they are all for {other.name}. Come back on {day}.",
            f"{a.name}: All right. I will come back on {day}.",
        ]
    lines.append(f"{b.name}: Goodbye, {a.name}.")
    scene = f"{a.name} the {a.trade.job} and {b.name} the {b.trade.job} meet in the street in {a.town}."
    return "\n\n".join((f"Dialogue: {a.name} and {b.name}", scene, "\n".join(lines)))


def letter(rng: random.Random) -> str:
    a, b = _two(rng)
    item = rng.choice(b.trade.goods)
    n = rng.randint(2, 9)
    month = rng.choice(MONTHS)
    date = rng.randint(1, 28)
    w = rng.choice(WEATHERS)
    return "\n\n".join(
        (
            f"A Letter from {a.name}",
            f"{a.town}, {date} {month}",
            f"Dear {b.name},",
            _para(
                f"Thank you for the {item.many} you sent me.",
                f"I counted them, and there were {number_word(n)}.",
                f"Here in {a.town} the weather is {w.word}. {w.sky}",
            ),
            _para(
                f"My {a.pet_kind}, {a.pet_name}, is well, and I am busy at my {a.trade.workplace}.",
                f"Please come and visit me in {rng.choice(MONTHS)}. I will make {a.food} for you.",
            ),
            f"Your friend,\n{a.name}",
        )
    )


def a_list(rng: random.Random) -> str:
    """Short lists with '- ' items: tools of a trade, a shopping list, people of a town."""
    kind = rng.randrange(3)
    if kind == 0:
        p = rng.choice(CAST)
        items = [g.count(rng.randint(1, 9), rng.choice(COLOURS)) for g in p.trade.goods]
        items.append(f"one {p.trade.tool}")
        head = f"Things in the {p.trade.workplace} of {p.full}:"
    elif kind == 1:
        p = rng.choice(CAST)
        sellers = rng.sample(CAST, 3)
        items = [f"{rng.choice(s.trade.goods).count(rng.randint(1, 6))} from {s.name}" for s in sellers]
        head = f"Shopping list of {p.name} for {rng.choice(DAYS)}:"
    else:
        town = rng.choice(TOWNS)
        people = [p for p in CAST if p.town == town]
        items = [f"{p.name}, the {p.trade.job}" for p in people]
        head = f"People who live in {town}:"
    return "\n".join([head] + [f"- {x}" for x in items])


def questions(rng: random.Random) -> str:
    """Question-and-answer pairs; every answer is true in this world."""
    pairs = []
    for _ in range(rng.randint(3, 5)):
        p = rng.choice(CAST)
        kind = rng.randrange(8)
        if kind == 0:
            q, a = f"What does {p.name} do?", f"{p.name} is {a_or_an(p.trade.job)}. {p.He} {p.trade.does}."
        elif kind == 1:
            q, a = f"Where does {p.name} live?", f"{p.name} lives in {p.town}."
        elif kind == 2:
            q, a = f"Who is the {p.trade.job}?", f"The {p.trade.job} is {p.name}, who lives in {p.town}."
        elif kind == 3:
            q, a = f"Does {p.name} have a pet?", f"Yes. {p.He} has {p.pet}."
        elif kind == 4:
            q, a = f"What is {poss(p.name)} favourite colour?", f"{p.His} favourite colour is {p.colour}."
        elif kind == 5:
            x, y = rng.randint(1, 20), rng.randint(1, 20)
            q = f"What is {number_word(x)} plus {number_word(y)}?"
            a = f"{cap(number_word(x))} plus {number_word(y)} is {number_word(x + y)}."
        elif kind == 6:
            animal, legs = rng.choice(LEGS)
            q, a = (
                f"How many legs does {a_or_an(animal)} have?",
                f"{cap(a_or_an(animal))} has {number_word(legs) if legs else 'no'} legs.",
            )
        else:
            i = rng.randrange(7)
            q, a = f"What day comes after {DAYS[i]}?", f"After {DAYS[i]} comes {DAYS[(i + 1) % 7]}."
        pairs.append(f"Q: {q}\nA: {a}")
    return "\n\n".join(["Questions and Answers"] + pairs)


def counting(rng: random.Random) -> str:
    """Counting out loud, then a few sums written with digits."""
    p = rng.choice(CAST)
    item = rng.choice(p.trade.goods)
    n = rng.randint(3, 12)
    k = rng.randint(1, n - 1)
    spoken = ", ".join(number_word(i) for i in range(1, n + 1))
    sums = []
    for _ in range(rng.randint(2, 4)):
        x, y = rng.randint(0, 50), rng.randint(0, 49)
        if rng.random() < 0.5:
            sums.append(f"{x} + {y} = {x + y}")
        else:
            x, y = max(x, y), min(x, y)
            sums.append(f"{x} - {y} = {x - y}")
    return "\n\n".join(
        (
            f"Counting with {p.name}",
            _para(
                f"{p.full} counted {p.his} {item.many}: {spoken}.",
                f"There were {number_word(n)} {item.many} in all.",
                f"Then {p.he} gave {item.count(k)} to a friend, so {number_word(n - k)} were left.",
                f"{n} - {k} = {n - k}.",
            ),
            "\n".join(sums),
        )
    )


def portrait(rng: random.Random) -> str:
    """A short description of one person: trade, town, habits."""
    p = rng.choice(CAST)
    hour = rng.randint(5, 8)
    friend = rng.choice([q for q in CAST if q.town == p.town and q is not p])
    return "\n\n".join(
        (
            f"About {p.name}",
            _para(
                f"{p.name} is the {p.trade.job} of {p.town}. {p.He} {p.trade.does}.",
                f"{p.He} gets up at {number_word(hour)} o'clock every morning",
                f"and walks to {p.his} {p.trade.workplace}.",
                f"{p.He} lives with {p.pet}, and {p.his} favourite food is {p.food}.",
                f"{p.His} best friend in {p.town} is {friend.full}.",
            ),
        )
    )


# Relative weights: stories carry most of the prose, the rest adds formats and variety.
SECTIONS: tuple[tuple[Callable[[random.Random], str], int], ...] = (
    (story_market, 4),
    (story_lost, 3),
    (story_gift, 3),
    (story_storm, 2),
    (story_day, 3),
    (dialogue, 3),
    (letter, 2),
    (a_list, 2),
    (questions, 3),
    (counting, 2),
    (portrait, 2),
)


def generate(seed: int = 0, target_bytes: int = 800_000) -> str:
    """Return the corpus: sections separated by blank lines, stopping once target_bytes is reached.

    Pure and deterministic: the same seed always gives the same text. The result ends with a
    single newline and overshoots target_bytes by less than one section (under 1 KB).
    """
    rng = random.Random(seed)
    makers = [m for m, _ in SECTIONS]
    weights = [w for _, w in SECTIONS]
    parts: list[str] = []
    size = 0
    while size < target_bytes:
        section = rng.choices(makers, weights)[0](rng)
        parts.append(section)
        size += len(section) + 2  # +2 for the blank line that separates sections
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write TinyGPT's synthetic default corpus.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the committed file uses 0)")
    args = parser.parse_args(argv)
    text = generate(seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {len(text):,} bytes to {args.out}")


if __name__ == "__main__":
    main()
