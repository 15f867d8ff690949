"""The native sampler's draw: inverse-CDF sampling with one uniform per row from the row's own
generator. Frequencies follow the tempered, filtered distribution, masked tokens are never drawn,
and a row's token does not depend on the other rows of its batch."""

import torch

from arpo.rollout.interface import SamplingParams
from arpo.rollout.native.sampling import draw

LOGITS = torch.tensor([1.0, 0.0, float("-inf"), 2.0, -1.0, 0.5])


def generators(n: int, offset: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def test_frequencies_follow_the_tempered_distribution_and_masked_tokens_never_come_up():
    rows, temperature = 20000, 0.8
    params = [SamplingParams(temperature=temperature)] * rows
    tokens = draw(LOGITS.repeat(rows, 1), params, generators(rows))
    counts = torch.bincount(tokens, minlength=LOGITS.numel()).double()
    probs = torch.softmax(LOGITS.double() / temperature, -1)
    sigma = (rows * probs * (1 - probs)).sqrt()
    assert counts[2] == 0
    assert ((counts - rows * probs).abs() <= 4 * sigma + 1e-9).all(), (counts, rows * probs)


def test_top_k_keeps_only_the_k_most_likely_tokens():
    rows = 2000
    tokens = draw(LOGITS.repeat(rows, 1), [SamplingParams(temperature=1.0, top_k=2)] * rows, generators(rows))
    assert set(tokens.tolist()) == {0, 3}


def test_a_rows_token_depends_on_its_generator_only():
    gen = torch.Generator().manual_seed(7)
    batch = torch.randn(8, 50, generator=gen) * 3
    params = [SamplingParams(temperature=1.0)] * 8
    together = draw(batch.clone(), params, generators(8))
    alone = [draw(batch[i : i + 1].clone(), params[:1], generators(1, offset=i))[0].item() for i in range(8)]
    assert together.tolist() == alone
    greedy = [SamplingParams(temperature=0.0)] + params[1:]
    mixed = draw(batch.clone(), greedy, generators(8))
    assert mixed[0] == batch[0].argmax() and mixed[1:].tolist() == together[1:].tolist()
