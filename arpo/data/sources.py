"""Which accuracy a data source needs (math equivalence or QA F1) and its default reward."""

from __future__ import annotations

_MATH_HINTS = ("math", "gsm", "aime", "amc", "olympiad", "arith")


def ability_of(data_source: str, row_ability: str | None, configured: str = "auto") -> str:
    """`math` or `qa`: the configured value, else the row's own, else a guess from the name."""
    if configured != "auto":
        return configured
    if row_ability in ("math", "qa"):
        return row_ability
    return "math" if any(h in data_source.lower() for h in _MATH_HINTS) else "qa"


def default_reward(ability: str, messages: list[dict]) -> str:
    """ARPO's hierarchical reward for prompts that ask for its format (a `\\boxed{}` answer, in
    either spelling), else plain answer checking: math equivalence or token F1."""
    system = " ".join(m.get("content") or "" for m in messages if m.get("role") == "system")
    if "oxed{" in system and "<answer>" in system:
        return "arpo"
    return "math" if ability == "math" else "f1"
