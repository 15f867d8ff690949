"""`multihop`: two-hop questions over a generated world of fictional countries, cities, people and
companies with invented names, so a model cannot answer from memory and must search twice.

Each entity has one encyclopedia document; a question names one entity and asks for a fact of
another that only the first one's document names ("Where was the founder of X born?": X's page
names the founder, the founder's page names the city). The corpus goes to a JSONL file
(`{"id", "title", "text"}` per line) for the search tool's BM25 backend; the world and the
questions are deterministic in (`data.seed`, `data.multihop_people`).

It is beyond the embedded default: sampled at temperature 1, SmolLM2-135M-Instruct searched once
in 12 of 32 answers, never twice, and answered none right. It is meant for larger models.

Measured with `python -m benchmarks.task_premise --questions 16 --samples 4` (2026-11-29; untrained
SmolLM2-135M-Instruct, 16 held-out questions x 4 answers at T=1; dH over log V, k = 20): accuracy
0, 0.50 calls per answer (2% of answers with two), mean dH -0.0004.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from arpo.config.data import DataConfig
from arpo.data.corpus import cached_corpus
from arpo.data.example import DataError, Example
from arpo.data.prompts import SEARCH_SHOT, SEARCH_SYSTEM, chat
from arpo.data.split import split_of

_ONSETS = "b c d f g h k l m n p r s t v z br dr gr kr st th sh tr".split()
_VOWELS = "a e i o u a e o ai ei ou".split()
_CODAS = ["", "", "n", "r", "l", "s", "th", "k", "m"]
_CITY_SUFFIXES = ["", "", "port", "ville", "burg", "ford", "mouth", "holm"]
_INDUSTRIES = ["shipping", "textile", "mining", "software", "brewing", "robotics", "glassware", "insurance"]
_COMPANY_KINDS = ["Industries", "Works", "Group", "Holdings", "Labs", "Trading"]
_PROFESSIONS = ["engineer", "lawyer", "painter", "chemist", "pilot", "architect", "economist", "baker"]
_COUNTRIES = 12


@dataclass
class Person:
    name: str
    birthplace: str
    employer: str
    profession: str
    born: int


@dataclass
class Company:
    name: str
    founder: str
    hq: str
    industry: str
    founded: int


@dataclass
class World:
    country_of: dict[str, str]  # city -> country
    capital: dict[str, str]  # country -> capital city
    people: list[Person]
    companies: list[Company]


class Names:
    """Unique invented names (and never the few-shot example's)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used = {"Quillmark", "Edda", "Varnholt", "Tessaby", "Ostrava"}

    def word(self, syllables: int) -> str:
        while True:
            w = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(syllables)
            ).capitalize()
            if w not in self.used:
                self.used.add(w)
                return w


def build_world(seed: int, n_people: int) -> World:
    rng = random.Random(f"multihop:{seed}:{n_people}")
    names = Names(rng)
    countries = [names.word(3) for _ in range(_COUNTRIES)]
    cities = [names.word(2) + rng.choice(_CITY_SUFFIXES) for _ in range(max(n_people // 8, 2 * _COUNTRIES))]
    country_of = {c: countries[i % _COUNTRIES] for i, c in enumerate(cities)}
    capital = {k: next(c for c in cities if country_of[c] == k) for k in countries}
    company_names = [f"{names.word(2)} {rng.choice(_COMPANY_KINDS)}" for _ in range(max(n_people // 4, 1))]
    people = [
        Person(
            f"{names.word(2)} {names.word(3)}",
            rng.choice(cities),
            rng.choice(company_names),
            rng.choice(_PROFESSIONS),
            rng.randint(1900, 1990),
        )
        for _ in range(n_people)
    ]
    companies = []
    for name, founder in zip(company_names, rng.sample(people, len(company_names))):
        founder.employer = name
        companies.append(
            Company(name, founder.name, rng.choice(cities), rng.choice(_INDUSTRIES), founder.born + 30)
        )
    return World(country_of, capital, people, companies)


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def corpus_documents(world: World) -> list[dict]:
    docs = [
        {"title": k, "text": f"{k} is a country. Its capital is {world.capital[k]}."} for k in world.capital
    ]
    docs += [{"title": c, "text": f"{c} is a city in {k}."} for c, k in world.country_of.items()]
    docs += [
        {
            "title": p.name,
            "text": f"{p.name} is {_a(p.profession)} born in {p.birthplace} in {p.born}. "
            f"{p.name} works for {p.employer}.",
        }
        for p in world.people
    ]
    docs += [
        {
            "title": c.name,
            "text": f"{c.name} is {_a(c.industry)} company headquartered in {c.hq}. "
            f"It was founded in {c.founded} by {c.founder}.",
        }
        for c in world.companies
    ]
    return [{"id": str(i), **d} for i, d in enumerate(docs)]


def questions(world: World) -> list[tuple[str, str]]:
    """Every two-hop (question, answer) pair of the world whose answer is not already on the page
    of the entity the question names (a founder may have been born in the company's home city)."""
    page = {d["title"]: d["text"] for d in corpus_documents(world)}
    founder_of = {c.name: c.founder for c in world.companies}
    company = {c.name: c for c in world.companies}
    person = {p.name: p for p in world.people}
    qa = []  # (question, answer, the entity it names)
    for c in world.companies:
        qa.append((f"Where was the founder of {c.name} born?", person[c.founder].birthplace, c.name))
        qa.append((f"In which country is {c.name} headquartered?", world.country_of[c.hq], c.name))
    for p in world.people:
        qa.append((f"In which country was {p.name} born?", world.country_of[p.birthplace], p.name))
        qa.append(
            (
                f"In which city is the company {p.name} works for headquartered?",
                company[p.employer].hq,
                p.name,
            )
        )
        if founder_of[p.employer] != p.name:
            qa.append((f"Who founded the company {p.name} works for?", founder_of[p.employer], p.name))
    return [(q, a) for q, a, named in qa if a not in page[named]]


def multihop_corpus(cfg: DataConfig) -> str:
    """Path of the world's corpus JSONL under `cfg.cache_dir`, written on first use."""
    name = f"multihop_corpus_s{cfg.seed}_p{cfg.multihop_people}.jsonl"
    return cached_corpus(
        cfg.cache_dir, name, lambda: corpus_documents(build_world(cfg.seed, cfg.multihop_people))
    )


def multihop_examples(split: str, n: int, cfg: DataConfig) -> list[Example]:
    if cfg.multihop_people < 1:
        raise DataError(f"data.multihop_people must be positive, got {cfg.multihop_people}")
    pool = [
        qa
        for qa in questions(build_world(cfg.seed, cfg.multihop_people))
        if split_of(qa[0], cfg.seed) == split
    ]
    if len(pool) < n:
        raise DataError(
            f"multihop: only {len(pool)} {split} questions for data.multihop_people={cfg.multihop_people}, "
            f"{n} asked; raise data.multihop_people"
        )
    random.Random(f"multihop:{cfg.seed}:{split}").shuffle(pool)
    corpus = multihop_corpus(cfg)
    examples = []
    for i, (question, answer) in enumerate(pool[:n]):
        extra = {
            "index": i,
            "question": question,
            "ability": "qa",
            "reward": "multihop",
            "search_corpus": corpus,
        }
        examples.append(Example(chat(SEARCH_SYSTEM, (SEARCH_SHOT,), question), answer, "multihop", extra))
    return examples
