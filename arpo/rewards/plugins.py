"""A user's reward function, taken as it is from any of the three conventions people bring, and
adapted to the project's per-trajectory reward `(text, ground_truth, extra) -> dict`:

    arpo  f(text, ground_truth, extra, **kwargs) -> float | dict with "score"
    verl  compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)
          -> float | dict with "score"
    trl   f(prompts, completions, **kwargs) -> list[float | None]   (batched; called with one item)

The convention is read from the signature (a `solution_str` parameter is verl's, `completions` is
TRL's, anything else that takes three positional arguments is arpo's) or named with `reward.style`.
A function that fits none, or the named one, is an error at start-up, not at the first reward.

verl and TRL functions are called with keywords, passing only the names they accept (all of them
when they take `**kwargs`). TRL's conversational convention applies, since prompts are chat messages:
`prompts=[messages]`, `completions=[[{"role": "assistant", "content": text}]]`, and the example's
columns as one-element lists: `ground_truth` (also as `solution`, the name TRL's math datasets use),
`data_source` and every key of the example's extra fields.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from arpo.errors import ArpoError

STYLES = ("auto", "arpo", "verl", "trl")
_SHAPES = {
    "arpo": "f(text, ground_truth, extra)",
    "verl": "compute_score(data_source, solution_str, ground_truth, extra_info)",
    "trl": "f(prompts, completions, **kwargs) -> list[float]",
}


class RewardError(ArpoError):
    """A reward that cannot be loaded or broke its contract: the run stops with one line."""


def detect_style(fn: Callable, style: str = "auto") -> str:
    """The convention `fn` follows; `style` other than `auto` is checked rather than detected."""
    params = inspect.signature(fn).parameters
    if style == "auto":
        style = "verl" if "solution_str" in params else "trl" if "completions" in params else "arpo"
    return style


def _check_binds(fn: Callable, name: str, style: str, args: tuple, kwargs: dict) -> None:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        shapes = "; ".join(f"{s}: {shape}" for s, shape in _SHAPES.items())
        raise RewardError(
            f"reward '{name}' does not fit the {style} convention ({e}); expected one of {shapes} "
            "(reward.style names one)"
        ) from None


def _accepted(fn: Callable, offered: dict) -> dict:
    """The keyword arguments of `offered` that `fn` can take."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}


def _verl_arguments(text: str, ground_truth: Any, extra: dict) -> dict:
    return {
        "data_source": extra.get("data_source", ""),
        "solution_str": text,
        "ground_truth": ground_truth,
        "extra_info": extra,
    }


def _trl_arguments(text: str, ground_truth: Any, extra: dict) -> dict:
    columns = {k: v for k, v in extra.items() if k != "prompt"}
    columns.update(ground_truth=ground_truth, solution=ground_truth)
    return {
        "prompts": [extra.get("prompt", [])],
        "completions": [[{"role": "assistant", "content": text}]],
        **{k: [v] for k, v in columns.items()},
    }


def _single(out: Any, name: str) -> Any:
    """The one value a batched TRL function returned for its one completion."""
    if not isinstance(out, (list, tuple)) or len(out) != 1:
        raise RewardError(f"reward '{name}' (trl) returned {out!r}; expected a list of one value")
    if out[0] is None:
        raise ValueError("returned None for the completion (TRL's 'not applicable')")
    return out[0]


def adapt(fn: Callable, name: str, style: str, kwargs: dict) -> Callable[[str, Any, dict], Any]:
    """`fn` as `(text, ground_truth, extra) -> its raw result`, after checking its signature."""
    style = detect_style(fn, style)
    if style == "arpo":
        _check_binds(fn, name, style, ("", None, {}), kwargs)
        return lambda text, ground_truth, extra: fn(text, ground_truth, extra, **kwargs)
    build = _verl_arguments if style == "verl" else _trl_arguments
    _check_binds(fn, name, style, (), {**_accepted(fn, build("", None, {})), **kwargs})

    def call(text: str, ground_truth: Any, extra: dict) -> Any:
        out = fn(**_accepted(fn, build(text, ground_truth, extra)), **kwargs)
        return _single(out, name) if style == "trl" else out

    return call
