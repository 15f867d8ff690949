"""BFCL (the Berkeley Function Calling Leaderboard) in `arpo eval`: `eval.data=bfcl:<categories>`.

BFCL's data, prompts, decoders and checkers come from the `bfcl-eval` package, run in its own
environment behind a pipe (worker.py, bridge.py); arpo generates the answers with its engines,
in each model's own call format (calls.py, dialogue.py, generate.py, runner.py, sizing.py), and reports
(report.py, compare.py). Entry point: `evaluate_bfcl` in evaluate.py.
"""

from arpo.eval.bfcl.categories import PREFIX


def is_bfcl(data: str) -> bool:
    """Whether an `eval.data` value names BFCL categories (the whole value: `bfcl:a,b,...`)."""
    return data.strip().startswith(PREFIX)
