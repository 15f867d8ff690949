"""The token tree of one rollout group: every unique token once, in depth-first (pre)order.

The group's prompt is the root path; a trajectory's response token `pos` is the same node as its
parent trajectory's token `pos` when `pos < fork_pos` (the rollout's declared sharing), else a new
node. In preorder a node's subtree is the contiguous range `[u, subtree_end[u])`, so "k is an
ancestor of q (or q itself)" is `k <= q < subtree_end[k]`: the attention mask needs O(T) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from arpo.errors import ArpoError
from arpo.rollout.tree import Group


class TreeError(ArpoError):
    pass


@dataclass
class PrefixTree:
    tokens: list[int]  # token id of each node
    parent: list[int]  # parent node (-1 for the first prompt token)
    depth: list[int]  # position id
    subtree_end: list[int]  # one past the last node of the node's subtree
    owner: list[tuple[int, int]]  # (trajectory index, response position) that created it; (-1, i) prompt
    n_prompt: int
    traj_nodes: list[list[int]]  # per trajectory (group order): node of each response token

    def __len__(self) -> int:
        return len(self.tokens)


def _creation_order(group: Group) -> list[int]:
    """Trajectory indices with every parent before its children."""
    index = {t.id: i for i, t in enumerate(group.trajectories)}
    if len(index) != len(group.trajectories):
        raise TreeError(f"group {group.group_id}: duplicate trajectory ids")
    order: list[int] = []
    state = [0] * len(group.trajectories)  # 0 new, 1 in progress, 2 done

    def visit(i: int) -> None:
        if state[i] == 2:
            return
        if state[i] == 1:
            raise TreeError(f"group {group.group_id}: trajectory parents form a cycle")
        state[i] = 1
        parent = group.trajectories[i].parent
        if parent is not None:  # Group.check() has verified that it exists
            visit(index[parent])
        state[i] = 2
        order.append(i)

    for i in range(len(group.trajectories)):
        visit(i)
    return order


def build_prefix_tree(group: Group) -> PrefixTree:
    if not group.prompt_ids:
        raise TreeError(f"group {group.group_id}: empty prompt (the first response token needs a context)")
    try:
        group.check()
    except ValueError as e:
        raise TreeError(f"group {group.group_id}: {e}") from None
    index = {t.id: i for i, t in enumerate(group.trajectories)}
    n_prompt = len(group.prompt_ids)
    tokens = list(group.prompt_ids)
    parent = list(range(-1, n_prompt - 1))
    owner = [(-1, i) for i in range(n_prompt)]
    traj_nodes: list[list[int]] = [[] for _ in group.trajectories]
    for i in _creation_order(group):
        t = group.trajectories[i]
        shared = traj_nodes[index[t.parent]][: t.fork_pos] if t.parent is not None else []
        nodes = list(shared)
        prev = nodes[-1] if nodes else n_prompt - 1
        for pos in range(len(shared), len(t.tokens)):
            tokens.append(t.tokens[pos])
            parent.append(prev)
            owner.append((i, pos))
            prev = len(tokens) - 1
            nodes.append(prev)
        traj_nodes[i] = nodes
    return _preorder(tokens, parent, owner, n_prompt, traj_nodes)


def _preorder(tokens, parent, owner, n_prompt, traj_nodes) -> PrefixTree:
    children: list[list[int]] = [[] for _ in tokens]
    for u, p in enumerate(parent):
        if p >= 0:
            children[p].append(u)
    order: list[int] = []
    stack = [0]
    while stack:
        u = stack.pop()
        order.append(u)
        stack.extend(reversed(children[u]))  # first-created child (the parent's own continuation) first
    new = [0] * len(tokens)
    for i, u in enumerate(order):
        new[u] = i
    new_parent = [new[parent[u]] if parent[u] >= 0 else -1 for u in order]
    depth = [0] * len(order)
    for i in range(1, len(order)):
        depth[i] = depth[new_parent[i]] + 1
    end = list(range(1, len(order) + 1))
    for i in range(len(order) - 1, 0, -1):  # children come after parents in preorder
        p = new_parent[i]
        end[p] = max(end[p], end[i])
    return PrefixTree(
        tokens=[tokens[u] for u in order],
        parent=new_parent,
        depth=depth,
        subtree_end=end,
        owner=[owner[u] for u in order],
        n_prompt=n_prompt,
        traj_nodes=[[new[u] for u in nodes] for nodes in traj_nodes],
    )
