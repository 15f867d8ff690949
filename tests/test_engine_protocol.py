"""Both engines implement the whole `RolloutEngine` protocol, with the protocol's parameters."""

import inspect

import pytest

from arpo.rollout.interface import RolloutEngine
from arpo.rollout.native import NativeEngine
from arpo.rollout.vllm import VllmEngine

METHODS = [
    name
    for name, member in vars(RolloutEngine).items()
    if callable(member) and not name.startswith("_") and name != "mro"
]


def test_the_protocol_lists_what_the_trainer_calls():
    assert {"add", "step", "resume", "fork", "release", "update_weights", "sleep", "close"} <= set(METHODS)
    assert {"vocab_size", "exact_entropy", "stats"} <= set(RolloutEngine.__annotations__)


@pytest.mark.parametrize("engine", [NativeEngine, VllmEngine], ids=["native", "vllm"])
@pytest.mark.parametrize("method", METHODS)
def test_engine_implements_the_method(engine, method):
    assert hasattr(engine, method), f"{engine.__name__} lacks {method}"
    expected = list(inspect.signature(getattr(RolloutEngine, method)).parameters)
    assert list(inspect.signature(getattr(engine, method)).parameters) == expected
