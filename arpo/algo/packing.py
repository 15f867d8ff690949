"""Tree packing: rollout groups -> micro-batches of unique tokens with per-predicted-token loss data.

A micro-batch holds whole trees (each group's tree: prompt path plus responses), one per batch row,
right-padded: unique tokens in depth-first order, position id = depth, attention from a token to
its ancestors only. One tree per row keeps dense attention at sum(tree^2) rather than (sum tree)^2
(padding attends to itself only). The loss rows are the predicted (response) tokens: row r is the
pair (hidden state of the node's parent, the node's token), so a node with several children has its
hidden state gathered once per child.

Per row (docs/design.md, "The loss over the tree"), with `w = 1 / (loss tokens of the linearised batch)`:
`s_plus`/`s_minus` = sum of `w * A` over the trajectories through the token with `A > 0`/`A < 0`,
`w` = sum of `w` over all of them (`w_plus`/`w_minus` over those with `A > 0`/`A < 0`: for the
clip-fraction metrics). Tool-result tokens (loss_mask 0) and prompt tokens carry no loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from arpo.algo.advantages import token_advantages
from arpo.algo.prefix_tree import PrefixTree, build_prefix_tree
from arpo.rollout.tree import Group

log = logging.getLogger(__name__)

WEIGHTS = ("s_plus", "s_minus", "w", "w_plus", "w_minus")


@dataclass
class TreeBatch:
    input_ids: torch.Tensor  # [B, L] long, one tree per row, right-padded with 0
    position_ids: torch.Tensor  # [B, L] long: depth in its tree
    parent: torch.Tensor  # [B, L] long: index in the row; -1 at the root and on padding
    subtree_end: torch.Tensor  # [B, L] long: ancestors of q are the k with k <= q < subtree_end[k]
    num_tokens: int  # unique (unpadded) tokens
    row_hidden: torch.Tensor  # [R] long: flat index (b * L + i) of the node whose hidden state predicts row r
    labels: torch.Tensor  # [R] long: the predicted token
    loss_mask: torch.Tensor  # [R] bool: some trajectory trains on this token
    old_logprob: torch.Tensor  # [R] float32 (zeros when none were given)
    s_plus: torch.Tensor  # [R] float32
    s_minus: torch.Tensor  # [R] float32
    w: torch.Tensor  # [R] float32
    w_plus: torch.Tensor  # [R] float32
    w_minus: torch.Tensor  # [R] float32
    traj_rows: list[tuple[int, int, torch.Tensor]]  # (group index, trajectory index, row of each token)


def total_loss_tokens(groups: list[Group]) -> int:
    """The token-mean normaliser: loss tokens of all linearised trajectories."""
    return sum(sum(t.loss_mask) for g in groups for t in g.trajectories)


def _tree_rows(
    group: Group,
    tree: PrefixTree,
    w_token: float,
    traj_adv: list[float] | None,
    attribution: str,
    old: list[list[float]] | None,
) -> dict[str, list]:
    """Per response node (rows in node order): label, loss mask, old log-prob and loss weights."""
    n_rows = len(tree) - tree.n_prompt
    rows: dict[str, list] = {k: [0.0] * n_rows for k in WEIGHTS}
    rows["loss_mask"] = [False] * n_rows
    tok_adv = token_advantages(tree, traj_adv, attribution) if traj_adv is not None else None
    for i, (t, nodes) in enumerate(zip(group.trajectories, tree.traj_nodes)):
        for pos, u in enumerate(nodes):
            if not t.loss_mask[pos]:
                continue
            r = u - tree.n_prompt
            rows["loss_mask"][r] = True
            rows["w"][r] += w_token
            a = tok_adv[i][pos] if tok_adv is not None else 0.0
            if a > 0:
                rows["s_plus"][r] += w_token * a
                rows["w_plus"][r] += w_token
            elif a < 0:
                rows["s_minus"][r] += w_token * a
                rows["w_minus"][r] += w_token
    owners = tree.owner[tree.n_prompt :]
    rows["old_logprob"] = [old[i][pos] for i, pos in owners] if old is not None else [0.0] * n_rows
    return rows


def _group_trees(sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive trees while (count x longest), the padded size, fits `budget` tokens; an oversized
    tree goes alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i, n in enumerate(sizes):
        if n > budget:
            log.warning("a tree of %d tokens exceeds micro_batch_tokens=%d; it goes alone", n, budget)
        if current and (len(current) + 1) * max(longest, n) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


def pack_groups(
    groups: list[Group],
    micro_batch_tokens: int,
    traj_advantages: list[list[float]] | None = None,
    attribution: str = "soft",
    old_logprobs: list[list[list[float]]] | None = None,
) -> list[TreeBatch]:
    """Micro-batches of whole trees. `traj_advantages[g][i]`: trajectory advantages (None: zero
    loss weights, for log-prob passes); `old_logprobs[g][i][pos]`: one per response token; a shared
    token takes the value of the trajectory that generated it."""
    trees = [build_prefix_tree(g) for g in groups]
    total = total_loss_tokens(groups)
    w_token = 1.0 / total if total else 0.0
    per_tree = [
        _tree_rows(
            g,
            tree,
            w_token,
            traj_advantages[gi] if traj_advantages is not None else None,
            attribution,
            old_logprobs[gi] if old_logprobs is not None else None,
        )
        for gi, (g, tree) in enumerate(zip(groups, trees))
    ]
    batches = []
    for members in _group_trees([len(t) for t in trees], micro_batch_tokens):
        batches.append(_concat(trees, per_tree, members))
    return batches


def _concat(trees: list[PrefixTree], per_tree: list[dict], members: list[int]) -> TreeBatch:
    width = max(len(trees[gi]) for gi in members)
    shape = (len(members), width)
    ids = torch.zeros(shape, dtype=torch.long)
    pos = torch.zeros(shape, dtype=torch.long)
    parent = torch.full(shape, -1, dtype=torch.long)
    end = torch.arange(1, width + 1).repeat(len(members), 1)  # padding: its own subtree
    hidden, labels = [], []
    cols: dict[str, list] = {k: [] for k in (*WEIGHTS, "loss_mask", "old_logprob")}
    traj_rows = []
    row_off = 0
    for b, gi in enumerate(members):
        tree, rows = trees[gi], per_tree[gi]
        n = len(tree)
        ids[b, :n] = torch.tensor(tree.tokens)
        pos[b, :n] = torch.tensor(tree.depth)
        parent[b, :n] = torch.tensor(tree.parent)
        end[b, :n] = torch.tensor(tree.subtree_end)
        resp = range(tree.n_prompt, n)
        hidden += [b * width + tree.parent[u] for u in resp]
        labels += [tree.tokens[u] for u in resp]
        for k in cols:
            cols[k] += rows[k]
        for ti, nodes in enumerate(tree.traj_nodes):
            idx = torch.tensor([u - tree.n_prompt + row_off for u in nodes], dtype=torch.long)
            traj_rows.append((gi, ti, idx))
        row_off += len(resp)
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)
    return TreeBatch(
        input_ids=ids,
        position_ids=pos,
        parent=parent,
        subtree_end=end,
        num_tokens=sum(len(trees[gi]) for gi in members),
        row_hidden=torch.tensor(hidden, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        loss_mask=torch.tensor(cols["loss_mask"], dtype=torch.bool),
        old_logprob=f32(cols["old_logprob"]),
        traj_rows=traj_rows,
        **{k: f32(cols[k]) for k in WEIGHTS},
    )


def ancestor_mask(batch: TreeBatch) -> torch.Tensor:
    """Dense boolean `[B, 1, L, L]` mask (True = attend) for `transformers` sdpa/eager attention."""
    idx = torch.arange(batch.input_ids.shape[1])
    q, k = idx[:, None], idx[None, :]
    return ((k <= q) & (q < batch.subtree_end[:, None, :]))[:, None]


def ancestor_block_mask(batch: TreeBatch, device: torch.device):
    """The same mask as a FlexAttention BlockMask (for `attn_implementation="flex_attention"`)."""
    from torch.nn.attention.flex_attention import create_block_mask

    end = batch.subtree_end.to(device)

    def is_ancestor(b, h, q, kv):
        return (kv <= q) & (q < end[b, kv])

    n_rows, width = batch.input_ids.shape
    return create_block_mask(is_ancestor, B=n_rows, H=None, Q_LEN=width, KV_LEN=width, device=device)
