"""Resolving `reward.name` to a function `(text, ground_truth, extra) -> dict with a float "score"`:
a built-in name, `task` (each example's own default, `extra["reward"]`), or a user's
`path/to/file.py:function` in the arpo, verl or TRL convention (`arpo.rewards.plugins`).

A user function that raises scores 0 with the error recorded in the result (`reward_error`), so
the trainer counts it (`reward/error_rate`) and warns; it never passes as a silent 0. A result of
the wrong type is a contract violation and stops the run with one line."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

from arpo.config.reward import RewardConfig
from arpo.errors import ArpoError
from arpo.plugin import load_object
from arpo.rewards.arpo_reward import arpo_reward
from arpo.rewards.builtin import arith_reward, em_reward, f1_reward, math_reward
from arpo.rewards.plugins import RewardError, adapt

log = logging.getLogger(__name__)

RewardFn = Callable[[str, Any, dict], dict]


def _builtins(cfg: RewardConfig) -> dict[str, Callable]:
    return {
        "arpo": functools.partial(
            arpo_reward,
            multi_tool_bonus=cfg.multi_tool_bonus,
            format_penalty=cfg.format_penalty,
            qa_metric=cfg.qa_metric,
            require_think=cfg.require_think,
        ),
        "f1": f1_reward,
        "em": em_reward,
        "math": math_reward,
        "arith": arith_reward,
        "multihop": f1_reward,
    }


BUILTIN_NAMES = ("task", "arpo", "f1", "em", "math", "arith", "multihop")


def _load_user_function(spec: str) -> Callable:
    try:
        fn = load_object(spec, "reward.name")
    except ArpoError as e:
        raise RewardError(str(e)) from None
    if not callable(fn):
        raise RewardError(f"reward.name: {spec!r} is not a function")
    return fn


def _as_dict(out: Any, name: str) -> dict:
    if isinstance(out, dict):
        if "score" not in out:
            raise RewardError(f"reward '{name}' returned a dict without a 'score' key: {sorted(out)}")
        result = dict(out)
    elif isinstance(out, (int, float)):
        result = {"score": out}
    else:
        raise RewardError(f"reward '{name}' returned {type(out).__name__}; expected a float or a dict")
    try:
        result["score"] = float(result["score"])
    except (TypeError, ValueError):
        raise RewardError(f"reward '{name}' returned a non-numeric score {result['score']!r}") from None
    if not math.isfinite(result["score"]):
        raise RewardError(f"reward '{name}' returned a non-finite score {result['score']}")
    return result


def _counting_errors(fn: Callable, name: str) -> RewardFn:
    """`fn` whose exceptions become a scored failure carrying the error, warned about once."""
    warned = False

    def call(text: str, ground_truth: Any, extra: dict) -> dict:
        nonlocal warned
        try:
            out = fn(text, ground_truth, extra)
        except RewardError:
            raise
        except Exception as e:
            error = f"{type(e).__name__}: {e}".splitlines()[0]
            if not warned:
                warned = True
                log.warning("reward '%s' raised (%s); counted as reward/error_rate, scored 0", name, error)
            return {"score": 0.0, "acc": 0.0, "reward_error": error}
        return _as_dict(out, name)

    return call


def _resolve(name: str, builtins: dict[str, Callable], cfg: RewardConfig) -> RewardFn:
    if name in builtins:
        fn = builtins[name]
        return lambda text, ground_truth, extra: _as_dict(fn(text, ground_truth, extra), name)
    if ":" in name and name.rpartition(":")[0].endswith(".py"):
        return _counting_errors(adapt(_load_user_function(name), name, cfg.style, cfg.kwargs), name)
    raise RewardError(
        f"unknown reward '{name}'; use one of {', '.join(BUILTIN_NAMES)} or path/to/file.py:function"
    )


def load_reward(cfg: RewardConfig) -> RewardFn:
    """The reward function `cfg.name` names; its results are always dicts with a float `score`."""
    builtins = _builtins(cfg)
    if cfg.name != "task":
        return _resolve(cfg.name, builtins, cfg)

    @functools.cache
    def per_example(name: str) -> RewardFn:
        return _resolve(name, builtins, cfg)

    def task_reward(text: str, ground_truth: Any, extra: dict) -> dict:
        if "reward" not in extra:
            raise RewardError("reward.name=task needs extra['reward'] on each example; set reward.name")
        return per_example(extra["reward"])(text, ground_truth, extra)

    return task_reward
