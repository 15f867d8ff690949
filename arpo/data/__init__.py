"""Datasets: `load_dataset(spec, split, cfg)` -> list of `Example` (chat prompt, ground truth,
data source, extra with the default reward's name)."""

from arpo.data.arith import arith_examples, arith_problems
from arpo.data.example import DataError, Example
from arpo.data.files import read_examples
from arpo.data.loader import TASKS, load_dataset
from arpo.data.multihop import build_world, corpus_documents, multihop_corpus, multihop_examples, questions
from arpo.data.prompts import (
    ARPO_SYSTEM,
    PYTHON_SHOT,
    PYTHON_SYSTEM,
    SEARCH_SHOT,
    SEARCH_SYSTEM,
    SHOP_SHOTS,
    SHOP_SYSTEM,
)
from arpo.data.shop import shop_examples

__all__ = [
    "ARPO_SYSTEM",
    "PYTHON_SHOT",
    "PYTHON_SYSTEM",
    "SEARCH_SHOT",
    "SEARCH_SYSTEM",
    "SHOP_SHOTS",
    "SHOP_SYSTEM",
    "TASKS",
    "DataError",
    "Example",
    "arith_examples",
    "arith_problems",
    "build_world",
    "corpus_documents",
    "load_dataset",
    "multihop_corpus",
    "multihop_examples",
    "questions",
    "read_examples",
    "shop_examples",
]
