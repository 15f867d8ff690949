import logging
import random

import pytest
import torch

from arpo.algo.packing import ancestor_block_mask, ancestor_mask, pack_groups, total_loss_tokens
from arpo.algo.policy import compute_logprobs
from arpo.algo.prefix_tree import TreeError, build_prefix_tree
from arpo.algo.synthetic import synthetic_group
from arpo.models.tiny import tiny_model
from arpo.rollout.tree import Group, Trajectory


def _groups(seed: int, n: int = 3, **kw):
    rng = random.Random(seed)
    return [synthetic_group(rng, g, 470, n_traj=rng.randint(1, 7), **kw) for g in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_prefix_tree_structure(seed):
    g = _groups(seed, 1)[0]
    tree = build_prefix_tree(g)
    # unique tokens = distinct token prefixes (prompt prefixes + prompt-plus-response prefixes)
    seqs = [g.prompt_ids + t.tokens for t in g.trajectories]
    prefixes = {tuple(g.prompt_ids[: i + 1]) for i in range(len(g.prompt_ids))}
    prefixes |= {tuple(s[:i]) for s in seqs for i in range(len(g.prompt_ids) + 1, len(s) + 1)}
    assert len(tree) == len(prefixes)
    for u in range(1, len(tree)):
        assert tree.parent[u] < u and tree.depth[u] == tree.depth[tree.parent[u]] + 1
    # each trajectory's nodes spell its tokens along a parent chain starting below the prompt
    for t, nodes in zip(g.trajectories, tree.traj_nodes):
        assert [tree.tokens[u] for u in nodes] == t.tokens
        chain = [tree.n_prompt - 1] + nodes
        assert all(tree.parent[b] == a for a, b in zip(chain, chain[1:]))
        assert [tree.depth[u] for u in nodes] == list(range(len(g.prompt_ids), len(g.prompt_ids) + len(t)))


def test_ancestor_mask_is_the_parent_closure():
    batch = pack_groups(_groups(7, 3), 10_000)[0]
    n_rows, width = batch.input_ids.shape
    assert n_rows == 3
    want = torch.zeros(n_rows, width, width, dtype=torch.bool)
    for b in range(n_rows):
        parent = batch.parent[b].tolist()
        for q in range(width):
            want[b, q, q] = True  # padding attends to itself only
            k = parent[q]
            while k >= 0:
                want[b, q, k] = True
                k = parent[k]
    assert torch.equal(ancestor_mask(batch)[:, 0], want)
    block = ancestor_block_mask(batch, torch.device("cpu"))
    q, k = torch.arange(width)[:, None].expand(width, width), torch.arange(width)[None].expand(width, width)
    for b in range(n_rows):
        assert torch.equal(block.mask_mod(torch.tensor(b), torch.tensor(0), q, k), want[b])


def test_row_weights_and_old_logprobs():
    groups = _groups(11, 4)
    adv = [[random.Random(i).uniform(-1, 1) for i in range(len(g.trajectories))] for g in groups]
    old = [[t.logprobs for t in g.trajectories] for g in groups]
    batches = pack_groups(groups, 10_000, adv, "soft", old)
    n_loss = total_loss_tokens(groups)
    w_sum = sum(float(b.w.double().sum()) for b in batches)
    s_sum = sum(float((b.s_plus + b.s_minus).double().sum()) for b in batches)
    flat_s = sum(a * sum(t.loss_mask) for g, ga in zip(groups, adv) for a, t in zip(ga, g.trajectories))
    assert w_sum == pytest.approx(1.0, rel=1e-6)
    assert s_sum == pytest.approx(flat_s / n_loss, rel=1e-5, abs=1e-7)
    for b in batches:
        assert torch.equal(b.w_plus + b.w_minus > 0, (b.s_plus > 0) | (b.s_minus < 0))
        assert torch.equal(b.loss_mask, b.w > 0)
        for gi, ti, rows in b.traj_rows:
            t = groups[gi].trajectories[ti]
            assert b.labels[rows].tolist() == t.tokens
            torch.testing.assert_close(b.old_logprob[rows], torch.tensor(t.logprobs, dtype=torch.float32))


def test_micro_batches_hold_whole_trees(caplog):
    groups = _groups(3, 6)
    sizes = [len(build_prefix_tree(g)) for g in groups]
    budget = 2 * max(sizes[:-1])  # any two consecutive trees fit
    groups[-1].prompt_ids = groups[-1].prompt_ids * 20  # a tree bigger than the budget
    sizes[-1] = len(build_prefix_tree(groups[-1]))
    with caplog.at_level(logging.WARNING):
        batches = pack_groups(groups, budget)
    assert "exceeds micro_batch_tokens" in caplog.text
    assert sum(b.num_tokens for b in batches) == sum(sizes)
    assert batches[-1].num_tokens == sizes[-1]
    assert all(b.input_ids.numel() <= budget for b in batches[:-1])
    assert len(batches) < len(groups)  # some micro-batch holds several trees
    seen = [gi for b in batches for gi in dict.fromkeys(gi for gi, _, _ in b.traj_rows)]
    assert seen == list(range(len(groups)))


def test_bad_trees_are_rejected():
    t = Trajectory(id=1, parent=7, fork_pos=0, tokens=[5], loss_mask=[1], logprobs=[0.0], entropies=[0.0])
    with pytest.raises(TreeError, match="bad parent"):
        build_prefix_tree(Group(group_id=0, prompt_ids=[3], trajectories=[t]))
    u = Trajectory(id=7, parent=1, fork_pos=0, tokens=[6], loss_mask=[1], logprobs=[0.0], entropies=[0.0])
    with pytest.raises(TreeError, match="cycle"):
        build_prefix_tree(Group(group_id=0, prompt_ids=[3], trajectories=[t, u]))
    t.parent = None
    with pytest.raises(TreeError, match="empty prompt"):
        build_prefix_tree(Group(group_id=0, prompt_ids=[], trajectories=[t]))
    with pytest.raises(TreeError, match="duplicate"):
        build_prefix_tree(Group(group_id=0, prompt_ids=[3], trajectories=[t, t]))


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_packed_logprobs_equal_each_trajectory_alone(family):
    """Ancestor mask + position ids through transformers sdpa reproduce separate runs (measured ~7e-7)."""
    model, _ = tiny_model(family, seed=1)
    groups = _groups(5, 3, max_depth=3)
    packed = compute_logprobs(model, groups, micro_batch_tokens=10_000)  # several trees per micro-batch
    with torch.no_grad():
        for g, lps in zip(groups, packed):
            for t, lp in zip(g.trajectories, lps):
                ids = torch.tensor([g.prompt_ids + t.tokens])
                logits = model(input_ids=ids).logits[0, len(g.prompt_ids) - 1 : -1].double()
                want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(t.tokens)[:, None])[:, 0]
                torch.testing.assert_close(torch.tensor(lp, dtype=torch.float64), want, rtol=0, atol=5e-6)
