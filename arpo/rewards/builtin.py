"""Plain answer-checking rewards (no format penalty): the answer is read from `<answer>`, with or
without `\\boxed{}`, and a response without one scores 0. Each returns a dict with `score`, `acc`
(exact correctness, for evaluation), `acc_metric` (what `acc` measures, as reports name it) and the
extracted `answer`."""

from __future__ import annotations

import re
from typing import Any

from arpo.rewards.extract import final_answer
from arpo.rewards.math_equiv import math_equal
from arpo.rewards.qa import exact_match, token_f1

_INTEGER = re.compile(r"-?\d+")


def f1_reward(text: str, ground_truth: Any, extra: dict) -> dict:
    answer = final_answer(text)
    if answer is None:
        return {"score": 0.0, "acc": 0.0, "acc_metric": "exact match", "answer": None}
    f1, em = token_f1(answer, ground_truth), exact_match(answer, ground_truth)
    return {"score": f1, "acc": em, "acc_metric": "exact match", "answer": answer}


def em_reward(text: str, ground_truth: Any, extra: dict) -> dict:
    answer = final_answer(text)
    em = exact_match(answer, ground_truth) if answer is not None else 0.0
    return {"score": em, "acc": em, "acc_metric": "exact match", "answer": answer}


def math_reward(text: str, ground_truth: Any, extra: dict) -> dict:
    answer = final_answer(text)
    ok = float(math_equal(answer, ground_truth))
    return {"score": ok, "acc": ok, "acc_metric": "math equivalence", "answer": answer}


def parse_integer(answer: str) -> int | None:
    """`2183`, `2,183`, `$2183$`, `2183.` -> 2183; anything else (words, a second number) -> None."""
    s = answer.replace("$", "").replace("\\,", "").replace(",", "").strip().rstrip(".").replace(" ", "")
    return int(s) if _INTEGER.fullmatch(s) else None


def arith_reward(text: str, ground_truth: Any, extra: dict) -> dict:
    """The `arith` task's checker: 1 when the answer is exactly the product, else 0. No partial
    credit for format: a right answer already needs the format, and a format-only reward lets a
    small model settle for well-formed wrong answers."""
    answer = final_answer(text)
    value = parse_integer(answer) if answer is not None else None
    ok = float(value is not None and value == int(ground_truth))
    return {"score": ok, "acc": ok, "acc_metric": "exact integer", "answer": answer}
