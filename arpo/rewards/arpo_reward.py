"""ARPO's hierarchical reward, as the official code scores its RL data:

    bad format                                  -> format_penalty (-1)
    good format                                 -> accuracy (token F1 for QA, 0/1 math equivalence)
    good format, accuracy > 0, search and python -> accuracy + multi_tool_bonus (0.1)

`extra["ability"] == "math"` selects math equivalence (the official mixed-data setting); anything
else is scored as QA.
"""

from __future__ import annotations

from typing import Any

from arpo.rewards.extract import arpo_format_error, final_answer, tools_used
from arpo.rewards.math_equiv import math_equal
from arpo.rewards.qa import exact_match, token_f1

BONUS_TOOLS = {"search", "python"}


def arpo_reward(
    text: str,
    ground_truth: Any,
    extra: dict,
    *,
    multi_tool_bonus: float = 0.1,
    format_penalty: float = -1.0,
    qa_metric: str = "f1",
    require_think: bool = True,
) -> dict:
    math = extra.get("ability") == "math"
    metric = "math equivalence" if math else "exact match" if qa_metric == "em" else "token F1"
    why = arpo_format_error(text, require_think)
    if why is not None:
        return {
            "score": format_penalty,
            "acc": 0.0,
            "acc_metric": metric,
            "answer": None,
            "format_ok": False,
            "reason": why,
        }
    answer = final_answer(text) or ""
    if math:
        acc = float(math_equal(answer, ground_truth))
    elif qa_metric == "em":
        acc = exact_match(answer, ground_truth)
    else:
        acc = token_f1(answer, ground_truth)
    bonus = multi_tool_bonus if acc > 0 and BONUS_TOOLS <= tools_used(text, extra) else 0.0
    return {
        "score": acc + bonus,
        "acc": acc,
        "acc_metric": metric,
        "answer": answer,
        "format_ok": True,
        "bonus": bonus,
    }
