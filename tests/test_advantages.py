import random

import pytest
import torch

from arpo.algo.advantages import grpo_advantages, token_advantages
from arpo.algo.prefix_tree import build_prefix_tree
from arpo.algo.synthetic import synthetic_group
from arpo.errors import ConfigError


def _groups(seed: int, n: int = 3):
    rng = random.Random(seed)
    groups = [synthetic_group(rng, g, 470, n_traj=rng.randint(2, 7), n_roots=1) for g in range(n)]
    for g in groups:
        for t in g.trajectories:
            t.reward = rng.uniform(-1, 2)
    return groups


@pytest.mark.parametrize("norm_by_std", [True, False])
def test_grpo_matches_torch_float64(norm_by_std):
    groups = _groups(0)
    adv, metrics = grpo_advantages(groups, norm_by_std=norm_by_std, eps=1e-6)
    for g, a in zip(groups, adv):
        r = torch.tensor([t.reward for t in g.trajectories], dtype=torch.float64)
        want = r - r.mean()
        if norm_by_std:
            want = want / (r.std(unbiased=True) + 1e-6)
        torch.testing.assert_close(torch.tensor(a, dtype=torch.float64), want, rtol=1e-12, atol=1e-12)
    assert metrics["frac_reward_zero_std"] == 0.0


def test_groups_keyed_by_group_id():
    """Two Group objects of one prompt are normalised together, as one group of their union."""
    a, b = _groups(1, 2)
    b.group_id = a.group_id
    merged = type(a)(
        group_id=a.group_id, prompt_ids=a.prompt_ids, trajectories=a.trajectories + b.trajectories
    )
    split, _ = grpo_advantages([a, b])
    whole, metrics = grpo_advantages([merged])
    assert split[0] + split[1] == pytest.approx(whole[0], rel=1e-12)
    assert metrics["frac_reward_zero_std"] == 0.0


def test_zero_std_groups_get_zero_advantage():
    groups = _groups(2, 4)
    for t in groups[1].trajectories:
        t.reward = 0.1  # equal rewards: the mean may differ from 0.1 by rounding
    groups[2].trajectories = groups[2].trajectories[:1]  # a single trajectory
    adv, metrics = grpo_advantages(groups)
    assert all(x == 0.0 for x in adv[1] + adv[2])
    assert any(x != 0.0 for x in adv[0])
    assert metrics["frac_reward_zero_std"] == 0.5


def test_equal_rewards_up_to_rounding_are_zero_std():
    """Nine groups: two of equal rewards 0, two of eight rewards 1.1 (ARPO's reward with the tool
    bonus, whose float std is ~2e-16, not 0), five with signal."""
    groups = _groups(3, 9)
    for g in groups[:4]:
        g.trajectories = (g.trajectories * 8)[:8]
        for t in g.trajectories:
            t.reward = 0.0 if g is groups[0] or g is groups[1] else 1.1
    adv, metrics = grpo_advantages(groups)
    assert all(x == 0.0 for a in adv[:4] for x in a)
    assert all(any(x != 0.0 for x in a) for a in adv[4:])
    assert metrics["frac_reward_zero_std"] == pytest.approx(4 / 9)


@pytest.mark.parametrize("seed", range(4))
def test_hard_attribution_is_mean_over_sharing_trajectories(seed):
    """Direct definition: trajectory k shares token p of i when their response prefixes up to p are
    equal (synthetic trees make sharing and equal prefixes coincide)."""
    rng = random.Random(seed)
    g = synthetic_group(rng, 0, 470, n_traj=8, n_roots=2, max_depth=3)
    traj_adv = [rng.uniform(-2, 2) for _ in g.trajectories]
    tree = build_prefix_tree(g)
    hard = token_advantages(tree, traj_adv, "hard")
    soft = token_advantages(tree, traj_adv, "soft")
    for i, t in enumerate(g.trajectories):
        assert soft[i] == [traj_adv[i]] * len(t)
        for p in range(len(t)):
            sharing = [
                traj_adv[k] for k, o in enumerate(g.trajectories) if o.tokens[: p + 1] == t.tokens[: p + 1]
            ]
            assert hard[i][p] == pytest.approx(sum(sharing) / len(sharing), rel=1e-12)
    # the trees do share tokens, so hard differs from soft somewhere
    assert any(h != s for hi, si in zip(hard, soft) for h, s in zip(hi, si))


def test_unknown_attribution_is_rejected():
    g = _groups(3, 1)[0]
    with pytest.raises(ConfigError, match="attribution"):
        token_advantages(build_prefix_tree(g), [0.0] * len(g.trajectories), "medium")
