"""The PPO update of one rollout batch: old log-probs fixed for the whole batch, its groups shuffled
(seeded) into mini-batches of `trainer.ppo_mini_batch` prompts, `trainer.ppo_epochs` passes over
them, one optimizer step per mini-batch (as verl's `ppo_mini_batch_size`, counted in prompts).

A group (a prompt's tree) is never split across mini-batches, so its advantages are those of the
whole batch. Mini-batches are drawn over the step's global prompt positions: under `torchrun` each
rank trains on its own members of a mini-batch, the loss is the token mean over the mini-batch's
loss tokens on all ranks, and every rank makes as many packed passes as the busiest one (each FSDP2
pass is a collective; a rank with no member runs idle passes), so N ranks make the updates one
process makes.

Old log-probs (`algo.old_logprobs`): `recompute` runs the trainer's forward once over the batch
before its first update (the engine's numbers may differ: vLLM, bf16); `rollout` takes the
engine's own log-probs and makes no such pass.
"""

from __future__ import annotations

import math
import random

import torch

from arpo.algo.packing import total_loss_tokens
from arpo.algo.policy import compute_logprobs, count_micro_batches, policy_loss_backward
from arpo.rollout.tree import Group
from arpo.trainer.distributed import Dist, all_reduce


def minibatch_plan(num_prompts: int, mini_batch: int, epochs: int, seed: int) -> list[list[int]]:
    """Prompt positions of each update, in order: per epoch a seeded permutation cut into chunks of
    `mini_batch` (0 or >= num_prompts: the whole batch, unshuffled)."""
    size = mini_batch if 0 < mini_batch < num_prompts else num_prompts
    plan = []
    for epoch in range(epochs):
        order = list(range(num_prompts))
        if size < num_prompts:
            random.Random(f"minibatch:{seed}:{epoch}").shuffle(order)
        plan += [sorted(order[i : i + size]) for i in range(0, num_prompts, size)]
    return plan


def max_over_ranks(value: int, d: Dist) -> int:
    return int(all_reduce([float(value)], d, "max")[0]) if d.enabled else value


def old_logprobs(model, groups: list[Group], cfg, d: Dist, temperature: float):
    """`[group][trajectory][position]` log-probs the ratio is taken against, fixed for the batch."""
    if cfg.algo.old_logprobs == "rollout":
        return [[list(t.logprobs) for t in g.trajectories] for g in groups]
    passes = max_over_ranks(count_micro_batches(groups, cfg.algo.micro_batch_tokens), d)
    return compute_logprobs(model, groups, cfg.algo.micro_batch_tokens, temperature, passes)


def ppo_update(
    model, groups, positions, old, cfg, ref_model, optimizer, d: Dist, temperature: float, seed: int
) -> list[dict[str, float]]:
    """Every update of the batch; `positions[i]` is the global prompt position of local `groups[i]`.
    Returns each update's metrics (loss metrics, `grad_norm`, `skipped`)."""
    plan = minibatch_plan(cfg.data.prompts_per_step, cfg.trainer.ppo_mini_batch, cfg.trainer.ppo_epochs, seed)
    updates = []
    for members in plan:
        chosen = [i for i, p in enumerate(positions) if p in set(members)]
        mini_old = [old[i] for i in chosen] if old is not None else None
        mini = [groups[i] for i in chosen]
        updates.append(_update(model, mini, mini_old, cfg, ref_model, optimizer, d, temperature))
    return updates


def _update(model, groups, old, cfg, ref_model, optimizer, d: Dist, temperature: float) -> dict[str, float]:
    """Loss, backward and one optimizer step over this rank's part of a mini-batch; the step is
    skipped on every rank when any rank's loss or gradient is not finite."""
    passes = max_over_ranks(count_micro_batches(groups, cfg.algo.micro_batch_tokens), d)
    local = float(total_loss_tokens(groups))
    loss_tokens = all_reduce([local], d)[0]
    # `scale` turns this rank's token mean into its share of the mini-batch's token mean; FSDP2
    # averages gradients over ranks, which `* world` undoes.
    actor = policy_loss_backward(
        model, groups, cfg.algo, old, ref_model, scale=d.world * local / max(loss_tokens, 1.0),
        temperature=temperature, min_passes=passes,
    )  # fmt: skip
    grad_norm = _grad_norm(model, cfg.trainer.grad_clip)
    bad = 0.0 if math.isfinite(grad_norm) and math.isfinite(actor.get("loss", 0.0)) else 1.0
    skipped = all_reduce([bad], d, "max")[0]
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {**actor, "grad_norm": grad_norm, "skipped": skipped}


def _grad_norm(model, max_norm: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def mean_over_updates(updates: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the updates that report it, plus `updates` (their count)."""
    keys = {k for u in updates for k in u}
    out = {k: sum(u[k] for u in updates if k in u) / sum(1 for u in updates if k in u) for k in keys}
    out["updates"] = float(len(updates))
    return out
