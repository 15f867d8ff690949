import math

import numpy as np
import pytest

from arpo.config import load_config
from arpo.errors import ConfigError
from arpo.rollout.branching import (
    branch_score,
    decision_rng,
    derived_seed,
    entropy_delta,
    mean_entropy,
    should_branch,
)


def test_entropy_delta_normalises_by_log_vocab():
    assert entropy_delta(3.0, 1.0, 256) == pytest.approx(2.0 / math.log(256), rel=1e-12)
    assert entropy_delta(1.0, 1.0, 470) == 0.0
    # The largest possible change (uniform vs one-hot) is exactly 1.
    assert entropy_delta(math.log(1000), 0.0, 1000) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ConfigError):
        entropy_delta(1.0, 0.0, 1)


def test_mean_entropy():
    assert mean_entropy([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        mean_entropy([])


def test_branch_score_defaults():
    assert branch_score(0.0, 0.5, 0.2) == 0.5
    assert branch_score(-0.5, 0.5, 0.2) == pytest.approx(0.4)


def test_threshold_is_strict_and_never_draws():
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert should_branch(0.5 + 1e-9, "threshold", 0.5, rng)
    assert not should_branch(0.5, "threshold", 0.5, rng)  # P == tau does not branch
    assert not should_branch(0.1, "threshold", 0.5, rng)
    assert rng.bit_generator.state == before


def test_sample_rule_clips_and_matches_probability():
    rng = np.random.default_rng(123)
    assert all(should_branch(1.7, "sample", 0.5, rng) for _ in range(200))
    assert not any(should_branch(-0.3, "sample", 0.5, rng) for _ in range(200))
    n = 20000
    hits = sum(should_branch(0.3, "sample", 0.5, rng) for _ in range(n))
    # Binomial(20000, 0.3): std ~ 65 draws; 5 std either side.
    assert abs(hits - 0.3 * n) < 5 * math.sqrt(n * 0.3 * 0.7)


def test_unknown_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="rollout.rule='coin' is not valid"):
        load_config(None, ["rollout.rule=coin"])


def test_seeds_are_deterministic_and_distinct():
    assert derived_seed(7, 1, 2) == derived_seed(7, 1, 2)
    seeds = {derived_seed(s, g, t) for s in range(3) for g in range(5) for t in range(8)}
    assert len(seeds) == 3 * 5 * 8
    assert all(0 <= s < 2**63 for s in seeds)
    assert decision_rng(1, 2, 3, 4).random() == decision_rng(1, 2, 3, 4).random()
    assert decision_rng(1, 2, 3, 4).random() != decision_rng(1, 2, 3, 5).random()
