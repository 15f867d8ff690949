"""`shop`: a price lookup, then arithmetic on what was read. "How much do 37 Quillmark lamps
cost?": the price of an item with an invented name is only in the shop's catalogue, so the model
searches it (`<search>`), reads the price out of the returned pages (the best match and two other
items), computes the total with `<python>` and answers `<answer>2183</answer>`.

Each problem needs two tool calls, and the first result must be interpreted, not copied: the next
step is code built from one number picked out of three pages. Items are split by name, so held-out
prices were never seen in training. The catalogue goes to a JSONL corpus for the search tool's
BM25 backend; items, prices and quantities are deterministic in `data.seed`.

It is meant to sit between `arith` (one call, its result copied) and `multihop` (out of reach
of a 135M model).

Measured with `python -m benchmarks.task_premise --questions 16 --samples 4` (2026-11-29; untrained
SmolLM2-135M-Instruct, 16 held-out questions x 4 answers at T=1; dH over log V, k = 20): accuracy
0.156, 1.67 calls per answer (70% of answers with both), mean dH -0.043 (entropy 0.84 over the
tokens closing a call, 0.66 after its result). With one worked exchange instead of two: accuracy
0.047 and dH -0.033 (the model garbled the item's name in two thirds of its searches). The
branching signal stays negative: once the name is copied, the step after a result (one price into
a product, then the product into the answer) is more certain than the search that opened the
answer. So for this model the task has the accuracy it was built for (5-40%) but not the rise in
entropy (dH > 0).
"""

from __future__ import annotations

import random

from arpo.config.data import DataConfig
from arpo.data.corpus import cached_corpus
from arpo.data.example import DataError, Example
from arpo.data.multihop import Names
from arpo.data.prompts import SHOP_SHOTS, SHOP_SYSTEM, chat
from arpo.data.split import split_of

_GOODS = "lamp chair kettle basket candle blanket mirror bucket clock jar towel brush".split()
_ITEMS = 600  # catalogue size: enough for 2000 training problems over ~540 training items


def catalogue(seed: int) -> dict[str, int]:
    """Item name -> price in coins (11-99, never a multiple of 10: no free mental arithmetic)."""
    rng = random.Random(f"shop:{seed}")
    names = Names(rng)
    items = {}
    while len(items) < _ITEMS:
        items[f"{names.word(2)} {rng.choice(_GOODS)}"] = rng.choice([p for p in range(11, 100) if p % 10])
    return items


def catalogue_documents(items: dict[str, int]) -> list[dict]:
    return [
        {"id": str(i), "title": name, "text": f"A {name} costs {price} coins."}
        for i, (name, price) in enumerate(items.items())
    ]


def shop_corpus(cfg: DataConfig) -> str:
    """Path of the catalogue's corpus JSONL under `cfg.cache_dir`, written on first use."""
    return cached_corpus(
        cfg.cache_dir, f"shop_corpus_s{cfg.seed}.jsonl", lambda: catalogue_documents(catalogue(cfg.seed))
    )


def shop_problems(split: str, n: int, cfg: DataConfig) -> list[tuple[str, int, int]]:
    """`n` distinct (item, quantity, price) of `split`, deterministic in `cfg.seed`."""
    items = [
        (name, price) for name, price in catalogue(cfg.seed).items() if split_of(name, cfg.seed) == split
    ]
    quantities = [q for q in range(11, 100) if q % 10]
    if n > len(items) * len(quantities):
        raise DataError(f"shop: only {len(items) * len(quantities)} {split} problems, {n} asked")
    rng = random.Random(f"shop:{cfg.seed}:{split}")
    seen: set[tuple[str, int]] = set()
    problems = []
    while len(problems) < n:
        (name, price), q = rng.choice(items), rng.choice(quantities)
        if (name, q) not in seen:
            seen.add((name, q))
            problems.append((name, q, price))
    return problems


def shop_examples(split: str, n: int, cfg: DataConfig) -> list[Example]:
    corpus = shop_corpus(cfg)
    examples = []
    for i, (name, q, price) in enumerate(shop_problems(split, n, cfg)):
        question = f"How much do {q} {name}s cost?"
        extra = {
            "index": i,
            "question": question,
            "ability": "math",
            "reward": "arith",
            "search_corpus": corpus,
        }
        examples.append(Example(chat(SHOP_SYSTEM, SHOP_SHOTS, question), str(q * price), "shop", extra))
    return examples
