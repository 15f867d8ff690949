"""Tiny random-initialised Llama / Qwen2 / Qwen3 models and a small byte-level BPE tokenizer,
built entirely in code so tests never download anything."""

from __future__ import annotations

import functools

import torch

TINY_FAMILIES = ("llama", "qwen2", "qwen3")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Text the tokenizer's merges are learnt from: the tool formats and the built-in tasks' words.
_CORPUS = [
    "<python>print(17 * 23)</python> <result>391</result> <answer>391</answer>",
    "<search>capital of Veloria</search> <result>Page 1: The capital of Veloria is Marn.</result>",
    '<tool_call>{"name": "python", "arguments": {"code": "print(1+1)"}}</tool_call>',
    "<tool_response>2</tool_response> <think>Let me compute this with Python.</think>",
    "You are a helpful assistant. What is 37 times 59? Use the Python tool. The answer is \\boxed{2183}.",
    "system user assistant question answer the of and is a to in that what who which where when",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 + - * / = ( ) [ ] { } : ; , . ! ? ' \"",
]


@functools.cache
def _tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer (every string round-trips) with a ChatML template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_config(family: str, vocab_size: int):
    """A 2-layer config of the family with GQA; Qwen2 has attention biases, Qwen3 q/k norms."""
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=2,
        pad_token_id=0,
    )
    if family == "llama":
        return LlamaConfig(**common, tie_word_embeddings=True, rope_theta=10000.0)
    if family == "qwen2":
        return Qwen2Config(**common, tie_word_embeddings=False, rope_theta=10000.0)
    if family == "qwen3":
        return Qwen3Config(**common, head_dim=32, tie_word_embeddings=True, rope_theta=10000.0)
    raise ValueError(f"unknown tiny family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")


def tiny_model(family: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32):
    """(model, tokenizer): a random tiny causal LM of `family` whose vocabulary matches the tokenizer."""
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer()
    config = tiny_config(family, len(tok))
    config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    config.pad_token_id = tok.pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    return model.eval(), tok
