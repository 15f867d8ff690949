"""The native sampler against `transformers`: greedy equality, log-probs / entropies, weight sharing."""

import pytest
import torch

from arpo.config.rollout import SamplerConfig
from arpo.models.tiny import TINY_FAMILIES, tiny_model
from arpo.rollout.interface import SamplingParams
from arpo.rollout.native.engine import NativeEngine
from arpo.rollout.native.rope import inverse_frequencies


def random_prompts(lengths, seed=0, vocab=470):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def run_all(engine):
    events = []
    while engine.has_runnable():
        events += engine.step()
    return events


def hf_greedy(model, prompt, n):
    x = torch.tensor([prompt])
    out = model.generate(
        x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
        output_logits=True,
        return_dict_in_generate=True,
    )
    return out.sequences[0, len(prompt) :].tolist(), torch.stack(out.logits, 1)[0].double()


def reference_logprob_entropy(logits, tokens, temperature):
    logp = torch.log_softmax(logits.double() / temperature, -1)
    return logp.gather(-1, torch.tensor(tokens)[:, None])[:, 0], -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_greedy_matches_transformers_on_a_mixed_length_batch(family):
    model, tok = tiny_model(family, seed=1)
    engine = NativeEngine(model, tok, SamplerConfig(block_size=4, num_blocks=128, max_prefill_tokens=16))
    prompts = random_prompts([1, 3, 9, 17, 30], seed=2)
    n = 10
    ids = [engine.add(p, SamplingParams(temperature=0, max_new_tokens=n)) for p in prompts]
    events = run_all(engine)
    for prompt, seq_id in zip(prompts, ids):
        expected, logits = hf_greedy(model, prompt, n)
        assert engine.token_ids(seq_id) == prompt + expected
        mine = [e for e in events if e.seq_id == seq_id]
        lp, ent = reference_logprob_entropy(logits, expected, 1.0)
        assert torch.allclose(torch.tensor([e.logprob for e in mine]).double(), lp, atol=1e-4)
        assert torch.allclose(torch.tensor([e.entropy for e in mine]).double(), ent, atol=1e-4)
        assert [e.status for e in mine] == ["running"] * (n - 1) + ["finished"]
        assert mine[-1].finish_reason == "length"
    assert engine.blocks.num_used_blocks == 0  # finished sequences freed their blocks
    assert engine.stats["recomputed_tokens"] == 0
    assert engine.stats["decode_tokens"] == len(prompts) * (n - 1)
    assert engine.stats["prefill_tokens"] == sum(map(len, prompts))


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_sampled_tokens_report_logprob_and_entropy_of_the_tempered_distribution(family):
    model, tok = tiny_model(family, seed=3)
    engine = NativeEngine(model, tok, SamplerConfig(block_size=8, num_blocks=64))
    temperature = 0.7
    prompts = random_prompts([4, 11], seed=5)
    ids = [
        engine.add(p, SamplingParams(temperature=temperature, max_new_tokens=12, seed=i))
        for i, p in enumerate(prompts)
    ]
    events = run_all(engine)
    for prompt, seq_id in zip(prompts, ids):
        full = engine.token_ids(seq_id)
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0, len(prompt) - 1 : -1]
        lp, ent = reference_logprob_entropy(logits, full[len(prompt) :], temperature)
        mine = [e for e in events if e.seq_id == seq_id]
        assert torch.allclose(torch.tensor([e.logprob for e in mine]).double(), lp, atol=1e-4)
        assert torch.allclose(torch.tensor([e.entropy for e in mine]).double(), ent, atol=1e-4)


def test_top_k_one_is_greedy_and_seeds_reproduce():
    model, tok = tiny_model("qwen2", seed=4)
    prompt = random_prompts([6], seed=9)[0]

    def run(**kw):
        engine = NativeEngine(model, tok, SamplerConfig(block_size=4, num_blocks=32))
        seq = engine.add(prompt, SamplingParams(max_new_tokens=8, **kw))
        run_all(engine)
        return engine.token_ids(seq)

    assert run(top_k=1, seed=1) == run(temperature=0)
    assert run(seed=7) == run(seed=7)
    assert run(seed=7, top_p=0.9) == run(seed=7, top_p=0.9)


def test_weight_updates_are_seen_without_rebuilding_the_engine():
    model, tok = tiny_model("qwen2", seed=5)
    engine = NativeEngine(model, tok, SamplerConfig(block_size=4, num_blocks=32))
    prompt = random_prompts([7], seed=1)[0]
    params = SamplingParams(temperature=0, max_new_tokens=6)
    first = engine.add(prompt, params)
    run_all(engine)
    with torch.no_grad():
        model.lm_head.weight.neg_()
        model.model.layers[0].mlp.down_proj.weight.mul_(3)
    second = engine.add(prompt, params)
    run_all(engine)
    expected, _ = hf_greedy(model, prompt, 6)
    assert engine.token_ids(second) == prompt + expected != engine.token_ids(first)


def test_llama3_rope_frequencies_match_transformers():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
        "rope_theta": 50000.0,
    }
    config = LlamaConfig(
        hidden_size=128,
        num_attention_heads=2,
        rope_scaling=scaling,
        rope_theta=50000.0,
        max_position_embeddings=512,
    )
    expected = LlamaRotaryEmbedding(config).inv_freq
    assert torch.allclose(inverse_frequencies(config, 64), expected, rtol=1e-6)
    plain = LlamaConfig(hidden_size=128, num_attention_heads=2, rope_theta=1234.0)
    assert torch.allclose(inverse_frequencies(plain, 64), LlamaRotaryEmbedding(plain).inv_freq, rtol=1e-6)
