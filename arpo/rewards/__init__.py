"""Rewards: `load_reward(cfg)` -> `f(text, ground_truth, extra) -> {"score": float, ...}`."""

from arpo.rewards.arpo_reward import arpo_reward
from arpo.rewards.builtin import arith_reward, em_reward, f1_reward, math_reward, parse_integer
from arpo.rewards.extract import arpo_format_error, final_answer, last_boxed, tools_used
from arpo.rewards.loader import BUILTIN_NAMES, RewardError, RewardFn, load_reward
from arpo.rewards.math_equiv import math_equal
from arpo.rewards.qa import exact_match, normalize_answer, token_f1

__all__ = [
    "BUILTIN_NAMES",
    "RewardError",
    "RewardFn",
    "arith_reward",
    "arpo_format_error",
    "arpo_reward",
    "em_reward",
    "exact_match",
    "f1_reward",
    "final_answer",
    "last_boxed",
    "load_reward",
    "math_equal",
    "math_reward",
    "normalize_answer",
    "parse_integer",
    "token_f1",
    "tools_used",
]
