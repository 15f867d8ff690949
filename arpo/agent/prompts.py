"""Examples -> prompt token ids, and the prompts that fit `data.max_prompt_tokens`."""

from __future__ import annotations

from arpo import output
from arpo.data import Example
from arpo.errors import ConfigError


def prompt_ids(tokenizer, example: Example) -> list[int]:
    """Chat-formatted prompt ids; rendered to text then encoded once (no special tokens added twice)."""
    text = tokenizer.apply_chat_template(example.prompt_messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def fitting_prompts(examples: list[Example], tokenizer, max_tokens: int, what: str) -> list[Example]:
    """Drop prompts longer than `data.max_prompt_tokens` (as verl does), saying how many."""
    if max_tokens <= 0:
        return examples
    kept = [ex for ex in examples if len(prompt_ids(tokenizer, ex)) <= max_tokens]
    if len(kept) < len(examples):
        output.say(
            f"arpo: dropped {len(examples) - len(kept)} of {len(examples)} {what} prompts longer than "
            f"data.max_prompt_tokens={max_tokens}"
        )
    if examples and not kept:
        raise ConfigError(f"every {what} prompt is longer than data.max_prompt_tokens={max_tokens}")
    return kept
