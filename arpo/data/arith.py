"""`arith`: the embedded default task. Multiplications a 135M model gets wrong in its head but right
with one Python call: `What is 48 * 73?`, answered `<answer>3504</answer>`.

Operand sizes follow `data.arith_mix` ("2x2", "3x2", ...), drawn uniformly per problem. Operands
that are multiples of 10 are left out (trivial without a tool), and so is the few-shot example.
`a * b` and `b * a` count as one problem for the train/validation split.

The worked example is a previous chat turn, not part of the system prompt: sampled at temperature 1,
SmolLM2-135M-Instruct closed a `<python>` call in 41 of 64 answers with it as a chat turn (20 of 64
scored 1, none without the tool), and in 1 of 64 with the same example inside the system prompt.

Measured with `python -m benchmarks.task_premise --questions 16 --samples 4` (2026-11-29; untrained
SmolLM2-135M-Instruct, 16 held-out questions x 4 answers at T=1; dH over log V, k = 20): accuracy
0.188, 0.50 calls per answer, mean dH +0.018 (entropy 0.53 over the tokens closing a call, 0.90 after
its result); with `data.arith_mix=[3x3]`: 0.141, 0.45 calls, dH +0.009.
"""

from __future__ import annotations

import random
import re

from arpo.config.data import DataConfig
from arpo.data.example import DataError, Example
from arpo.data.prompts import PYTHON_SHOT, PYTHON_SYSTEM, chat
from arpo.data.split import split_of

_MIX = re.compile(r"([1-4])x([1-4])")
_SHOT = (37, 59)


def _digit_pairs(mix: list[str]) -> list[tuple[int, int]]:
    pairs = []
    for item in mix:
        m = _MIX.fullmatch(str(item).strip())
        if m is None:
            raise DataError(f"data.arith_mix: '{item}' is not like '2x2' (operand digits 1-4)")
        pairs.append((int(m.group(1)), int(m.group(2))))
    if not pairs:
        raise DataError("data.arith_mix is empty; give operand digit counts like ['2x2']")
    return pairs


def _operand(rng: random.Random, digits: int) -> int:
    while True:
        n = rng.randint(10 ** (digits - 1), 10**digits - 1)
        if n % 10:
            return n


def arith_problems(split: str, n: int, cfg: DataConfig) -> list[tuple[int, int]]:
    """`n` distinct (a, b) pairs of `split`, deterministic in `cfg.seed`."""
    pairs = _digit_pairs(cfg.arith_mix)
    rng = random.Random(f"arith:{cfg.seed}:{split}")
    seen: set[tuple[int, int]] = set()
    problems = []
    for _ in range(100 * n + 1000):
        if len(problems) == n:
            return problems
        da, db = rng.choice(pairs)
        a, b = _operand(rng, da), _operand(rng, db)
        key = (min(a, b), max(a, b))
        if key in seen or key == _SHOT or split_of(f"{key[0]}*{key[1]}", cfg.seed) != split:
            continue
        seen.add(key)
        problems.append((a, b))
    raise DataError(
        f"arith: found only {len(problems)} distinct {split} problems of {n} for arith_mix="
        f"{list(cfg.arith_mix)}; ask for fewer or add larger operands"
    )


def arith_examples(split: str, n: int, cfg: DataConfig) -> list[Example]:
    examples = []
    for i, (a, b) in enumerate(arith_problems(split, n, cfg)):
        question = f"What is {a} * {b}?"
        extra = {"index": i, "question": question, "ability": "math", "reward": "arith"}
        examples.append(Example(chat(PYTHON_SYSTEM, (PYTHON_SHOT,), question), str(a * b), "arith", extra))
    return examples
