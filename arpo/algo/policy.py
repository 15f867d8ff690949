"""What the trainer calls: rollout groups -> policy loss, gradients and metrics; and log-probs.

Old log-probs: pass `old_logprobs` recomputed by the trainer with `compute_logprobs` before the
first update on a batch (as verl does; rollout-engine log-probs differ numerically from the
trainer's). `old_logprobs=None` means "the current policy, detached": identical to recomputing
when this is the first update since the rollout, and it saves a forward. To train against the
rollout engine's own log-probs pass `[[t.logprobs for t in g.trajectories] for g in groups]`.

The tree path runs the model on packed trees (keeping no logits), takes the decoder's final hidden
states and feeds the loss rows' and the LM head weight to the fused tree loss: full logits are never
materialised.
The flat path (`cfg.loss_impl == "flat"`) is the reference: linearised, padded trajectories
through the whole model, per-branch losses on materialised logits.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from arpo.algo.advantages import grpo_advantages, token_advantages
from arpo.algo.losses import flat_token_loss, policy_ratio, weighted_metrics
from arpo.algo.packing import TreeBatch, ancestor_block_mask, ancestor_mask, pack_groups, total_loss_tokens
from arpo.algo.prefix_tree import build_prefix_tree
from arpo.config.algo import AlgoConfig
from arpo.errors import ConfigError
from arpo.kernels import linear_logprob_entropy, linear_tree_loss, logprob_entropy_from_logits
from arpo.rollout.tree import Group


def tree_hidden_states(model, batch: TreeBatch) -> torch.Tensor:
    """Final hidden states `[B * L, H]` of the packed trees (ancestor-only attention, position = depth).

    Runs the whole model's forward, keeping no logits, and takes the decoder's output: going through
    the root module lets FSDP2 gather the root's parameters (embeddings, norm, LM head), which stay
    gathered after the root's forward, so `lm_head.weight` read afterwards is the full tensor."""
    device = model.get_output_embeddings().weight.device
    if getattr(model.config, "_attn_implementation", None) == "flex_attention":
        mask = ancestor_block_mask(batch, device)
    else:
        mask = ancestor_mask(batch).to(device)
    return _decoder_states(model, batch.input_ids.to(device), mask, batch.position_ids.to(device)).flatten(
        0, 1
    )


def _decoder_states(model, input_ids, attention_mask, position_ids) -> torch.Tensor:
    captured = []
    record = lambda mod, args, out: captured.append(out.last_hidden_state)
    hook = model.get_decoder().register_forward_hook(record)
    try:
        model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device),
        )
    finally:
        hook.remove()
    return captured[0]


def count_micro_batches(groups: list[Group], micro_batch_tokens: int) -> int:
    """How many packed passes `compute_logprobs` / `policy_loss_backward` make over `groups`."""
    return len(pack_groups(groups, micro_batch_tokens))


def _idle_pass(model, backward: bool) -> None:
    """A one-token pass contributing nothing: under FSDP2 every rank must run the same number of
    forwards and backwards (each is a collective), so a rank with fewer micro-batches pads with these."""
    device = model.get_output_embeddings().weight.device
    ids = torch.zeros(1, 1, dtype=torch.long, device=device)
    hidden = _decoder_states(model, ids, None, None)
    if backward:
        (hidden.sum() * 0.0 + model.get_output_embeddings().weight.sum() * 0.0).backward()


def _row_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, temperature: float):
    """Log-prob of each row's label (no gradient), through the fused pass."""
    with torch.no_grad():
        return linear_logprob_entropy(hidden, weight, labels, temperature)[0]


@torch.no_grad()
def compute_logprobs(
    model, groups: list[Group], micro_batch_tokens: int = 4096, temperature: float = 1.0, min_passes: int = 0
) -> list[list[list[float]]]:
    """Log-prob of every response token (tool tokens included), `[group][trajectory][position]`,
    from packed tree forwards; at least `min_passes` forwards (see `_idle_pass`)."""
    out: list[list[list[float]]] = [[[] for _ in g.trajectories] for g in groups]
    batches = pack_groups(groups, micro_batch_tokens)
    for _ in range(min_passes - len(batches)):
        _idle_pass(model, backward=False)
    for batch in batches:
        hidden = tree_hidden_states(model, batch)
        weight = model.get_output_embeddings().weight  # after the forward: gathered under FSDP2
        labels = batch.labels.to(hidden.device)
        logp = _row_logprobs(hidden[batch.row_hidden.to(hidden.device)], weight, labels, temperature)
        logp = logp.cpu()
        for gi, ti, rows in batch.traj_rows:
            out[gi][ti] = logp[rows].tolist()
    return out


def policy_loss_backward(
    model,
    groups: list[Group],
    cfg: AlgoConfig,
    old_logprobs: list[list[list[float]]] | None = None,
    ref_model=None,
    scale: float = 1.0,
    temperature: float = 1.0,
    min_passes: int = 0,
) -> dict[str, float]:
    """Advantages, loss and `backward()` (gradients accumulate, multiplied by `scale`) over all
    groups; the loss is the token mean over every loss token of the linearised groups. Returns the
    unscaled loss and metrics. `ref_model` is used when `cfg.kl_coef > 0`. The tree path makes at
    least `min_passes` forward+backward passes (see `_idle_pass`)."""
    if cfg.kl_coef and ref_model is None:
        raise ConfigError("algo.kl_coef > 0 needs a reference model (ref_model)")
    traj_adv, metrics = grpo_advantages(groups, cfg.norm_by_std, cfg.adv_eps)
    ref = ref_model if cfg.kl_coef else None
    if cfg.loss_impl == "flat":
        sums = _flat_backward(model, groups, cfg, traj_adv, old_logprobs, ref, scale, temperature)
    else:
        sums = _tree_backward(model, groups, cfg, traj_adv, old_logprobs, ref, scale, temperature, min_passes)
    metrics.update(_read_once(sums))
    metrics["loss_tokens"] = float(total_loss_tokens(groups))
    metrics["linearised_tokens"] = float(
        sum(len(g.prompt_ids) + len(t) for g in groups for t in g.trajectories)
    )
    return metrics


def _read_once(sums: dict) -> dict[str, float]:
    """Metric sums, some of them device tensors, as floats: one host synchronisation per update, not per
    micro-batch (a sync stalls the launch queue until the device catches up)."""
    tensors = {k: v for k, v in sums.items() if isinstance(v, torch.Tensor)}
    values = torch.stack([v.double() for v in tensors.values()]).tolist() if tensors else []
    return {**sums, **dict(zip(tensors, values))}


def _loss_kwargs(cfg: AlgoConfig, temperature: float) -> dict:
    return dict(
        eps_low=cfg.eps_low,
        eps_high=cfg.eps_high,
        dual_clip_c=cfg.dual_clip_c,
        kl_coef=cfg.kl_coef,
        entropy_coef=cfg.entropy_coef,
        temperature=temperature,
    )


def _tree_backward(model, groups, cfg, traj_adv, old_logprobs, ref_model, scale, temperature, min_passes=0):
    sums: dict[str, float] = defaultdict(float)
    passes = 0
    for batch in pack_groups(groups, cfg.micro_batch_tokens, traj_adv, cfg.attribution, old_logprobs):
        sums["tokens_forwarded"] += batch.input_ids.numel()  # padding included
        sums["unique_tokens"] += batch.num_tokens
        if batch.loss_mask.any():
            passes += 1
            has_old = old_logprobs is not None
            for k, v in _tree_microbatch(model, batch, cfg, has_old, ref_model, scale, temperature).items():
                sums[k] += v
    for _ in range(min_passes - passes):
        if ref_model is not None:
            with torch.no_grad():
                _idle_pass(ref_model, backward=False)
        _idle_pass(model, backward=True)
    return sums


def _tree_microbatch(model, batch: TreeBatch, cfg, has_old: bool, ref_model, scale, temperature):
    """Forward, fused loss and backward of one micro-batch over its loss rows; its metric sums."""
    # The per-token inputs go to the device before the forward is queued: a copy from host memory
    # queued after it would wait for it (a host sync per micro-batch).
    keep = batch.loss_mask.nonzero().squeeze(1)
    take = lambda t: t[keep].to(model.get_output_embeddings().weight.device)
    fields = (
        batch.row_hidden,
        batch.labels,
        batch.w,
        batch.s_plus,
        batch.s_minus,
        batch.w_plus,
        batch.w_minus,
    )
    row_index, labels, w, s_plus, s_minus, w_plus, w_minus = map(take, fields)
    old = take(batch.old_logprob) if has_old else None
    hidden = tree_hidden_states(model, batch)
    weight = model.get_output_embeddings().weight  # after the forward: gathered under FSDP2
    rows = hidden[row_index]
    if old is None:
        old = _row_logprobs(rows, weight, labels, temperature)
    ref = None
    if ref_model is not None:
        with torch.no_grad():
            ref_rows = tree_hidden_states(ref_model, batch)[row_index]
            ref = _row_logprobs(ref_rows, ref_model.get_output_embeddings().weight, labels, temperature)
    loss, aux = linear_tree_loss(
        rows, weight, labels, old, s_plus, s_minus, w, ref, **_loss_kwargs(cfg, temperature)
    )
    (loss * scale).backward()
    logp, entropy = aux["logprob"], aux["entropy"]
    metrics = weighted_metrics(cfg, aux["ratio"], logp, old, entropy, w, w_plus, w_minus, ref)
    metrics["loss"] = loss.detach()
    return metrics


def _linearise(groups, cfg, traj_adv, old_logprobs):
    """One record per trajectory: (prompt + response ids, prompt length, advantage per token,
    loss mask, old log-probs or None)."""
    seqs = []
    for gi, g in enumerate(groups):
        tok_adv = token_advantages(build_prefix_tree(g), traj_adv[gi], cfg.attribution)
        for ti, t in enumerate(g.trajectories):
            old = old_logprobs[gi][ti] if old_logprobs is not None else None
            seqs.append((list(g.prompt_ids) + t.tokens, len(g.prompt_ids), tok_adv[ti], t.loss_mask, old))
    return seqs


def _flat_batches(seqs, budget: int) -> list[list]:
    """Consecutive trajectories while (count x longest) fits the token budget."""
    batches, current, longest = [], [], 0
    for s in seqs:
        n = max(longest, len(s[0]))
        if current and n * (len(current) + 1) > budget:
            batches.append(current)
            current, n = [], len(s[0])
        current.append(s)
        longest = n
    if current:
        batches.append(current)
    return batches


def _flat_logprobs(model, batch, device, temperature):
    """Per trajectory (log-prob, entropy) of its response tokens from one padded forward."""
    width = max(len(s[0]) for s in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    attn = torch.zeros(len(batch), width, dtype=torch.long)
    for b, s in enumerate(batch):
        ids[b, : len(s[0])] = torch.tensor(s[0])
        attn[b, : len(s[0])] = 1
    logits = model(input_ids=ids.to(device), attention_mask=attn.to(device), use_cache=False).logits
    out = []
    for b, (seq, n_prompt, *_) in enumerate(batch):
        labels = torch.tensor(seq[n_prompt:], device=device)
        out.append(logprob_entropy_from_logits(logits[b, n_prompt - 1 : len(seq) - 1], labels, temperature))
    return out


def _flat_backward(model, groups, cfg, traj_adv, old_logprobs, ref_model, scale, temperature):
    sums: dict[str, float] = defaultdict(float)
    device = model.get_output_embeddings().weight.device
    w_token = 1.0 / max(total_loss_tokens(groups), 1)
    seqs = sorted(_linearise(groups, cfg, traj_adv, old_logprobs), key=lambda s: len(s[0]))  # less padding
    for batch in _flat_batches(seqs, cfg.micro_batch_tokens):
        sums["tokens_forwarded"] += len(batch) * max(len(s[0]) for s in batch)  # padding included
        logps = _flat_logprobs(model, batch, device, temperature)
        refs = [None] * len(batch)
        if ref_model is not None:
            with torch.no_grad():
                refs = [lp for lp, _ in _flat_logprobs(ref_model, batch, device, temperature)]
        total = 0.0
        for (_, _, adv, mask, old), (logp, entropy), ref in zip(batch, logps, refs):
            adv = torch.tensor(adv, dtype=torch.float32, device=device)
            w = w_token * torch.tensor(mask, dtype=torch.float32, device=device)
            old = logp.detach() if old is None else torch.tensor(old, dtype=torch.float32, device=device)
            total = total + flat_token_loss(logp, old, adv, w, entropy, cfg, ref).sum()
            ratio = policy_ratio(logp, old).detach()
            for k, v in weighted_metrics(
                cfg, ratio, logp.detach(), old, entropy.detach(), w, w * (adv > 0), w * (adv < 0), ref
            ).items():
                sums[k] += v
        (total * scale).backward()
        sums["loss"] += total.detach()
    return sums
