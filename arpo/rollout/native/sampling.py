"""Next-token sampling with per-sequence generators, and the log-prob / entropy of each sampled token.

Each row draws its randomness only from its own generator (`Exponential(1)` noise, one value per
vocabulary entry: `argmax(p / E)` is a sample of `p`), so a sequence's tokens depend on its seed
and logits only, never on which other sequences share the batch.
"""

from __future__ import annotations

import torch

from arpo.rollout.interface import SamplingParams


def filter_logits(z: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature-scaled logits `[V]` with everything outside the top-k / top-p set at -inf."""
    if top_k > 0 and top_k < z.numel():
        kth = torch.topk(z, top_k).values[-1]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sorted_z, order = torch.sort(z, descending=True)
        probs = torch.softmax(sorted_z, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (the token that crosses it included).
        drop = probs.cumsum(-1) - probs >= top_p
        z = z.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return z


def sample_next(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]):
    """Sampled token ids `[B]` (long), their log-probs and entropies (float32 `[B]`).

    `logits` is float32 `[B, V]`. Temperature 0 is greedy; its log-prob and entropy are then those
    of the temperature-1 distribution. Log-prob and entropy ignore top-k / top-p (full vocabulary).
    """
    from arpo.kernels import logprob_entropy_from_logits

    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for i, (p, gen) in enumerate(zip(params, generators)):
        if p.temperature <= 0:
            tokens[i] = logits[i].argmax()
            continue
        probs = torch.softmax(filter_logits(logits[i] / p.temperature, p.top_k, p.top_p), dim=-1)
        noise = torch.empty_like(probs).exponential_(generator=gen)
        tokens[i] = (probs / noise).argmax()
    logprobs = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    entropies = torch.empty_like(logprobs)
    temps = [p.temperature if p.temperature > 0 else 1.0 for p in params]
    for t in sorted(set(temps)):
        rows = torch.tensor([i for i, ti in enumerate(temps) if ti == t], device=logits.device)
        lp, ent = logprob_entropy_from_logits(logits[rows], tokens[rows], t)
        logprobs[rows], entropies[rows] = lp.float(), ent.float()
    return tokens, logprobs, entropies
