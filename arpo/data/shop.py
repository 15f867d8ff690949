"""`shop`: a price lookup, then arithmetic on what was read. "Item: copper lamp. How much do 37 of
them cost?": the price is only in the shop's catalogue, so the model searches it (`<search>`), says
in a sentence which of the returned pages (the best match and two other items) is the item and what
it costs, computes the total with `<python>`, says what the result means and answers
`<answer>2183</answer>`.

Each problem needs two tool calls, and each result must be read before the next step: the price is
picked out of three pages, and the quantity is brought back from the question beside it. Items are
split by name, so held-out prices were never seen in training. The catalogue goes to a JSONL corpus
for the search tool's BM25 backend; items, prices and quantities are deterministic in `data.seed`.

It sits between `arith` (one call, its result copied) and `multihop` (out of reach of a 135M
model), and it is the built-in task on which ARPO's premise holds for the embedded model.
Measured with `python -m benchmarks.task_premise --questions 16 --samples 4 --tasks shop`
(2026-11-29; untrained SmolLM2-135M-Instruct, 16 held-out questions x 4 answers at T=1; dH over
log V, k = 20): accuracy 0.219, 1.70 calls per answer (73% of answers with both), mean dH +0.043
(+0.042 after search results, 60% of them positive; +0.044 after Python results, 73%).

How the prompt got there (same measurement): with invented item names, questions "How much do 37
Quillmark lamps cost?" and answers that act on a result without a word (one or two worked
exchanges), dH was -0.033 to -0.043: copying an invented name into the first search was the most
uncertain step of the answer (its first token alone about 2 nats), and the steps after results
(one price into a product, then the product into the answer) were near copies. A sentence after
each result gave +0.003; with plain item names as well, -0.004 and +0.013 on two catalogues
(noise of about 0.01). Putting the item name in its own field ("Item: ...") made the search a
plain copy (mean entropy 0.39 over the tokens closing a call, 0.79 after a result) and moved the
uncertainty to where ARPO looks for it, after the results.
"""

from __future__ import annotations

import hashlib
import json
import random

from arpo.config.data import DataConfig
from arpo.data.corpus import cached_corpus
from arpo.data.example import DataError, Example
from arpo.data.prompts import SHOP_SHOTS, SHOP_SYSTEM, chat
from arpo.data.split import split_of

_GOODS = "lamp chair kettle basket candle blanket mirror bucket clock jar towel bowl".split()
# Plain words, so that the search query is an easy copy of the question: the model's uncertainty is
# then in reading the result, not in spelling an invented name.
_KINDS = (
    "red blue green black white yellow pink grey brown golden silver copper brass iron steel wooden oak "
    "pine maple cedar glass stone clay paper silk wool linen cotton leather velvet tiny small large giant "
    "round square tall short old new antique modern rustic royal simple fancy plain striped dotted painted "
    "carved folding spare garden kitchen travel desk wall floor"
).split()
_ITEMS = 600  # catalogue size: enough for 2000 training problems over ~540 training items


def catalogue(seed: int) -> dict[str, int]:
    """Item name -> price in coins (11-99, never a multiple of 10: no free mental arithmetic)."""
    rng = random.Random(f"shop:{seed}")
    items = {}
    while len(items) < _ITEMS:
        price = rng.choice([p for p in range(11, 100) if p % 10])
        items[f"{rng.choice(_KINDS)} {rng.choice(_GOODS)}"] = price
    return items


def catalogue_documents(items: dict[str, int]) -> list[dict]:
    return [
        {"id": str(i), "title": name, "text": f"A {name} costs {price} coins."}
        for i, (name, price) in enumerate(items.items())
    ]


def shop_corpus(cfg: DataConfig) -> str:
    """Path of the catalogue's corpus JSONL under `cfg.cache_dir`, written on first use. The name
    carries a digest of the documents, so a cache written by another version is never read."""
    documents = catalogue_documents(catalogue(cfg.seed))
    digest = hashlib.sha256(json.dumps(documents).encode()).hexdigest()[:12]
    return cached_corpus(cfg.cache_dir, f"shop_corpus_s{cfg.seed}_{digest}.jsonl", lambda: documents)


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
        question = f"Item: {name}. How much do {q} of them cost?"
        extra = {
            "index": i,
            "question": question,
            "ability": "math",
            "reward": "arith",
            "search_corpus": corpus,
        }
        examples.append(Example(chat(SHOP_SYSTEM, SHOP_SHOTS, question), str(q * price), "shop", extra))
    return examples
