"""Next-token sampling with per-sequence generators, and the log-prob / entropy of each sampled token.

Each row draws its randomness only from its own generator (one uniform number per token, turned
into a token by inverse-CDF sampling), so a sequence's tokens depend on its seed and logits only,
never on which other sequences share the batch. The whole batch is tempered, filtered, normalised
and searched at once; only the uniform draws run per row (one `torch.multinomial` per row cost
~1 ms at a 49k vocabulary on CPU, the bulk of a batch's sampling time).
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


def draw(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]):
    """Token ids `[B]` (long): greedy rows take the arg-max, the others a draw from their tempered,
    filtered distribution."""
    tokens = logits.argmax(-1)
    sampled = [i for i, p in enumerate(params) if p.temperature > 0]
    if not sampled:
        return tokens
    rows = torch.tensor(sampled, device=logits.device)
    temps = torch.tensor([params[i].temperature for i in sampled], device=logits.device)
    z = logits[rows].div_(temps[:, None].to(logits.dtype))
    for j, i in enumerate(sampled):
        if params[i].top_k > 0 or params[i].top_p < 1.0:
            z[j] = filter_logits(z[j], params[i].top_k, params[i].top_p)
    # The CDF in float64, so that rounding over a large vocabulary cannot shift a token's share.
    cdf = torch.softmax(z, dim=-1).double().cumsum_(-1)
    uniforms = torch.cat(
        [torch.rand(1, generator=generators[i], dtype=torch.float64, device=cdf.device) for i in sampled]
    )
    targets = (uniforms * cdf[:, -1]).unsqueeze(-1)
    # The first token whose CDF exceeds u: zero-probability tokens never are.
    picked = torch.searchsorted(cdf, targets, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)
    tokens[rows] = picked
    return tokens


def sample_next(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]):
    """Sampled token ids `[B]` (long), their log-probs and entropies (float32 `[B]`).

    `logits` is float32 `[B, V]`. Temperature 0 is greedy; its log-prob and entropy are then those
    of the temperature-1 distribution. Log-prob and entropy ignore top-k / top-p (full vocabulary).
    """
    from arpo.kernels import logprob_entropy_from_logits

    tokens = draw(logits, params, generators)
    temps = [p.temperature if p.temperature > 0 else 1.0 for p in params]
    if len(set(temps)) == 1:  # the usual batch: one call, no row gathering
        logprobs, entropies = logprob_entropy_from_logits(logits, tokens, temps[0])
        return tokens, logprobs.float(), entropies.float()
    logprobs = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    entropies = torch.empty_like(logprobs)
    for t in sorted(set(temps)):
        rows = torch.tensor([i for i, ti in enumerate(temps) if ti == t], device=logits.device)
        lp, ent = logprob_entropy_from_logits(logits[rows], tokens[rows], t)
        logprobs[rows], entropies[rows] = lp.float(), ent.float()
    return tokens, logprobs, entropies
