"""Token F1 and exact match for QA answers, with SQuAD-style normalisation extended to Chinese and
Japanese: every Han or kana character is a token of its own (these scripts put no spaces between
words, so whitespace tokens would turn F1 into exact match), and punctuation of every script is
stripped (`，。？！“”《》（）` as well as ASCII). A ground truth may be one string or a list of
acceptable strings (the score is the best over them)."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Han ideographs (with extension A and compatibility forms), hiragana and katakana.
_CHAR_TOKENS = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff])")
# As in HotpotQA's evaluation: a yes/no answer gets no partial credit from token overlap.
_NO_PARTIAL = {"yes", "no", "noanswer"}


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if not _is_punctuation(ch))
    s = _CHAR_TOKENS.sub(r" \1 ", s)
    return " ".join(_ARTICLES.sub(" ", s).split())


def answer_list(ground_truth: Any) -> list[str]:
    if isinstance(ground_truth, (list, tuple)):
        return [str(g) for g in ground_truth]
    return [str(ground_truth)]


def _f1(pred: str, gold: str) -> float:
    if (pred in _NO_PARTIAL or gold in _NO_PARTIAL) and pred != gold:
        return 0.0
    common = Counter(pred.split()) & Counter(gold.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred.split()), same / len(gold.split())
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, ground_truth: Any) -> float:
    pred = normalize_answer(prediction)
    return max(_f1(pred, normalize_answer(g)) for g in answer_list(ground_truth))


def exact_match(prediction: str, ground_truth: Any) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in answer_list(ground_truth)))
