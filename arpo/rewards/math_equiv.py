"""Mathematical equivalence of two answers through `math-verify`, guarded so that a parser crash
or timeout scores "not equal" instead of raising.

math-verify times out with `signal.alarm`, which works in the main thread only; elsewhere it runs
without a timeout, so answers longer than `MAX_CHARS` are refused up front (sympy can hang on
huge expressions).
"""

from __future__ import annotations

import re
import threading
from typing import Any

MAX_CHARS = 400
TIMEOUT_S = 5
_PERCENT = re.compile(r"\\?%\s*$")


def _compact(s: str) -> str:
    return "".join(s.split()).rstrip(".")


def _verify(gold: str, pred: str) -> bool:
    from math_verify import parse, verify  # imports sympy: only when an answer needs it

    timeout = TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    # `$...$` makes the LaTeX parser read the whole string (bare `3\sqrt{3} - 6` parses as 6).
    g = parse(f"${gold}$", parsing_timeout=timeout)
    p = parse(f"${pred}$", parsing_timeout=timeout)
    return bool(g and p and verify(g, p, timeout_seconds=timeout))


def math_equal(prediction: str | None, ground_truth: Any) -> bool:
    """Whether `prediction` equals the ground truth (or any of a list of them). `7.69\\%` and
    `7.69` are equal: answers are compared with and without a trailing percent sign."""
    if prediction is None:
        return False
    golds = ground_truth if isinstance(ground_truth, (list, tuple)) else [ground_truth]
    for gold in map(str, golds):
        if _compact(prediction) == _compact(gold):
            return True
        if len(prediction) > MAX_CHARS or len(gold) > MAX_CHARS:
            continue
        for g, p in ((gold, prediction), (_PERCENT.sub("", gold), _PERCENT.sub("", prediction))):
            try:
                if _verify(g, p):
                    return True
            except Exception:  # math-verify/sympy raise many types on odd input: not equal
                continue
    return False
