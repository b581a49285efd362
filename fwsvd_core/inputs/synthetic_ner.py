"""A generated NER task (CoNLL-2003's tags), offline and deterministic by seed, hard enough to be worth compressing."""
from __future__ import annotations

import zlib

import numpy as np

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.token_data import CONLL2003_LABELS, TaggedSentences

SYNTHETIC_NER_VERSION = 1
SPLIT_SEEDS = {"train": 0, "dev": 1_000_003, "test": 2_000_029}  # added to the caller's seed: disjoint streams
UNSEEN_SHARE = 0.35  # of dev/test entities drawn from names the train split never shows

# Names per type. Several words are entities of more than one type, or no entity at all, depending on context:
# Jordan, Washington, Lincoln, Georgia, Paris (person / place), Chelsea (club / district), Amazon (company / river),
# Ford (person / company), Apple, Jaguar, Turkey, May (entity / common word).
_FIRST = ["Maria", "John", "Ahmed", "Li", "Sofia", "Pedro", "Anna", "Kenji", "Fatima", "Lukas", "Olga", "David",
          "Grace", "Ivan", "Amara", "Jordan", "Paris", "Georgia", "May", "Carlos", "Mei", "Tom", "Nadia", "Peter"]
_LAST = ["Schmidt", "Smith", "Khan", "Wei", "Rossi", "Silva", "Novak", "Tanaka", "Haddad", "Berg", "Petrova",
         "Cohen", "Okafor", "Jordan", "Washington", "Lincoln", "Ford", "Dubois", "Moreau", "Kowalski", "Andersen",
         "Nakamura", "Mendes", "Brown"]
_LOC = ["Germany", "France", "Jordan", "Washington", "Georgia", "Lincoln", "Paris", "Chelsea", "Turkey", "Brazil",
        "Kenya", "Japan", "Moscow", "Berlin", "New York", "Rio de Janeiro", "Hong Kong", "South Africa",
        "the Amazon", "Lake Geneva", "Buenos Aires", "Sri Lanka", "Cairo", "Oslo", "Lima", "Quebec", "New Delhi",
        "Baghdad", "Manila", "Vienna"]
_ORG = ["Apple", "Amazon", "Ford", "Jaguar", "Chelsea", "Siemens", "Reuters", "United Nations", "Bank of England",
        "Real Madrid", "European Union", "Toyota", "Red Cross", "World Bank", "Ajax", "Bayern Munich", "NATO",
        "General Motors", "Deutsche Bank", "Nokia", "Boca Juniors", "Interpol", "Barclays", "Lazio",
        "Sony", "Airbus", "Volvo", "Petrobras"]
_EVENTS = ["World Cup", "Olympic Games", "Tour de France", "Nobel Prize", "Grand Prix", "Australian Open",
           "Davis Cup", "Super Bowl", "Champions League", "Asian Games", "Golden Globe", "Ryder Cup"]
_HOLIDAYS = ["Christmas", "Ramadan", "Easter", "Diwali", "Hanukkah", "Thanksgiving"]
_CLUBS = ["Chelsea", "Real Madrid", "Ajax", "Bayern Munich", "Boca Juniors", "Lazio", "Celtic", "Benfica",
          "Inter Milan", "Galatasaray", "Santos", "Porto"]
_NATIONALITY = ["German", "French", "Japanese", "Brazilian", "Kenyan", "Russian", "Norwegian", "Turkish",
                "Egyptian", "English"]
_COMMON = ["apple", "turkey", "jaguar", "may"]  # the lowercase senses, never entities
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_VERBS_SAID = ["said", "told reporters", "announced", "confirmed", "denied", "warned"]
_TOPICS = ["the deal", "new tariffs", "the talks", "higher prices", "a merger", "job cuts", "the election",
           "the ceasefire", "a new plant", "record profits", "the strike"]


def _split_pool(pool: list[str], salt: str) -> tuple[list[str], list[str]]:
    """(names the train split uses, names only dev and test use): a fixed split by hash, the same on every machine."""
    seen: list[str] = []
    unseen: list[str] = []
    for name in pool:
        (unseen if zlib.crc32((salt + name).encode()) % 4 == 0 else seen).append(name)
    return seen or pool, unseen or pool


class _Writer:
    """Words and tags of one sentence, entity by entity."""

    def __init__(self, rng: np.random.Generator, unseen: bool) -> None:
        self.rng, self.unseen = rng, unseen
        self.words: list[str] = []
        self.tags: list[str] = []

    def pick(self, pool: list[str], salt: str) -> str:
        seen, unseen = _split_pool(pool, salt)
        use = unseen if self.unseen and self.rng.random() < UNSEEN_SHARE else seen
        return str(use[int(self.rng.integers(len(use)))])

    def o(self, text: str) -> _Writer:
        for word in text.split():
            self.words.append(word)
            self.tags.append("O")
        return self

    def entity(self, text: str, kind: str) -> _Writer:
        for i, word in enumerate(text.split()):
            self.words.append(word)
            self.tags.append(f"{'B' if i == 0 else 'I'}-{kind}")
        return self

    def person(self, full: float = 0.6) -> _Writer:
        if self.rng.random() < full:
            name = f"{self.pick(_FIRST, 'first')} {self.pick(_LAST, 'last')}"
            if self.rng.random() < 0.1:
                name = f"{name.split()[0]} {chr(65 + int(self.rng.integers(26)))}. {name.split()[1]}"
        else:
            name = self.pick(_LAST, "last")
        return self.entity(name, "PER")

    def place(self) -> _Writer:
        name = self.pick(_LOC, "loc")
        if name.startswith("the "):  # "the" is no part of the name
            self.o("the")
            name = name[4:]
        return self.entity(name, "LOC")

    def org(self) -> _Writer:
        return self.entity(self.pick(_ORG, "org"), "ORG")

    def event(self) -> _Writer:
        return self.entity(self.pick(_EVENTS, "event"), "MISC")

    def club(self) -> _Writer:
        return self.entity(self.pick(_CLUBS, "club"), "ORG")

    def choice(self, options: list[str]) -> str:
        return str(options[int(self.rng.integers(len(options)))])


def _sentence(w: _Writer) -> None:
    """One sentence in one of many forms: news, sport results, ambiguous words, adjacent entities, common words."""
    r = w.rng
    form = int(r.integers(16))
    if form == 0:  # a person said something in a place on a day
        w.person().o(w.choice(_VERBS_SAID) + " in").place().o(f"on {w.choice(_DAYS)} that").o(w.choice(_TOPICS))
        w.o("would go ahead .")
    elif form == 1:  # company and place
        w.org().o("will open a factory in").place().o("next year , a spokesman for").org().o("said .")
    elif form == 2:  # sport headline in capitals, as in CoNLL-2003's own headlines
        w.o("SOCCER -")
        start = len(w.words)
        w.club().o(w.choice(["BEAT", "DRAW WITH", "HOLD", "THRASH"])).club()
        w.o(f"{int(r.integers(1, 6))}-{int(r.integers(0, 4))} .")
        w.words[start:] = [word.upper() for word in w.words[start:]]
    elif form == 3:  # adjacent entities of one type: a B- right after an I- or a B-
        w.o("Talks on the")
        w.place().place().o("border ended on").o(w.choice(_DAYS) + " .")
    elif form == 4:
        w.o("The").org().org().o("joint venture was approved by").org().o(".")
    elif form == 5:  # results table: PER ( LOC ) beat PER ( LOC )
        w.person().o("(").place().o(") beat").person().o("(").place()
        w.o(f") {int(r.integers(3, 7))}-{int(r.integers(0, 5))} {int(r.integers(3, 7))}-{int(r.integers(0, 5))}")
    elif form == 6:  # nationality adjective before a person: MISC then PER
        w.entity(w.choice(_NATIONALITY), "MISC")
        w.o(w.choice(["striker", "minister", "driver", "singer", "banker"])).person().o("won the").event().o(".")
    elif form == 7:  # common words that are entities elsewhere
        word = w.choice(_COMMON)
        if word == "apple":
            w.o("She ate an apple pie in").place().o(".")
        elif word == "turkey":
            w.o("They bought turkey and bread for").person(full=1.0).o(".")
        elif word == "jaguar":
            w.o("A jaguar was seen near").place().o("on").o(w.choice(_DAYS) + " .")
        else:
            w.o("They may meet").person().o("in").place().o(".")
    elif form == 8:  # a common word opening the sentence, capitalised
        word = w.choice(["Apple", "Turkey", "May"])
        rest = {"Apple": "pie is popular in", "Turkey": "sandwiches sell well in", "May": "rains flooded parts of"}
        w.o(f"{word} {rest[word]}").place().o(".")
    elif form == 9:  # the same names as people: context decides
        w.entity(w.choice(["Jordan", "Washington", "Lincoln", "Paris", "Georgia", "Ford"]), "PER")
        w.o(w.choice(["scored twice for", "signed a contract with", "was sacked by", "joined"])).org().o(".")
    elif form == 10:  # ... and as places
        w.o(w.choice(["Floods hit", "Troops entered", "Prices rose in", "The ambassador left"]))
        w.entity(w.choice(["Jordan", "Washington", "Lincoln", "Paris", "Georgia", "Chelsea"]), "LOC")
        w.o(f"on {w.choice(_DAYS)} .")
    elif form == 11:  # ... and as organisations
        w.o("Shares of").entity(w.choice(["Apple", "Amazon", "Ford", "Jaguar"]), "ORG")
        w.o(w.choice(["rose", "fell", "slipped", "jumped"]) + f" {int(r.integers(1, 9))} percent in").place().o(".")
    elif form == 12:  # a bare name leading a news sentence: person, place or organisation, not said by the words
        kind = w.choice(["PER", "LOC", "ORG"])
        name = {"PER": w.pick(_LAST, "last"), "LOC": w.pick(_LOC, "loc").removeprefix("the "), "ORG": w.pick(_ORG, "org")}
        w.entity(name[kind], kind).o(w.choice(_VERBS_SAID) + " it would back").o(w.choice(_TOPICS) + " .")
    elif form == 13:  # lower-case user text: names without capitals
        start = len(w.words)
        w.o("just landed in").place().o("with").person(full=0.5).o("for")
        w.entity(w.choice(_HOLIDAYS), "MISC") if r.random() < 0.5 else w.o("the").event()
        w.words[start:] = [word.lower() for word in w.words[start:]]
    elif form == 14:  # a sentence with no entity at all
        noun = w.choice(["oil", "wheat", "gold", "copper", "coffee", "steel"])
        w.o(f"The price of {noun} {w.choice(['rose', 'fell', 'moved'])} sharply on")
        w.o(f"{w.choice(_DAYS)} , analysts said .")
    else:  # an event, a team and a city: MISC, ORG, LOC
        w.club().o("won the").event().o("final in").place().o("after beating").club().o(".")



def synthetic_ner(split: str, n: int, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """n generated sentences as (words, IOB2 tags); the same split, n and seed give the same sentences.

    Splits are drawn from disjoint seeds; dev and test also use names the train split never shows.
    """
    if split not in SPLIT_SEEDS:
        raise DataError(f"The generated NER task has splits {list(SPLIT_SEEDS)}, not {split!r}.")
    if n <= 0:
        raise DataError(f"The number of sentences must be positive, got {n}.")
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split], SYNTHETIC_NER_VERSION])
    words, tags = [], []
    for _ in range(n):
        writer = _Writer(rng, unseen=split != "train")
        _sentence(writer)
        words.append(writer.words)
        tags.append(writer.tags)
    return words, tags


def synthetic_ner_sentences(split: str, n: int, seed: int = 0) -> TaggedSentences:
    """`synthetic_ner` as tagged sentences with CoNLL-2003's label list (source says 'synthetic')."""
    words, tags = synthetic_ner(split, n, seed)
    index = {name: i for i, name in enumerate(CONLL2003_LABELS)}
    arrays = [np.asarray([index[t] for t in sentence], dtype=np.int64) for sentence in tags]
    return TaggedSentences(words, arrays, CONLL2003_LABELS, f"synthetic NER v{SYNTHETIC_NER_VERSION} ({split}, seed {seed})")
