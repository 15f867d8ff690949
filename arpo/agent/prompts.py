"""Examples -> prompt token ids, and the prompts that fit `data.max_prompt_tokens`."""

from __future__ import annotations

from arpo import output
from arpo.data import Example
from arpo.errors import ConfigError
from arpo.tools.prompting import render_prompt


def prompt_ids(tokenizer, example: Example, parser) -> list[int]:
    """Chat-formatted prompt ids showing the parser's tools in its format (see arpo.tools.prompting);
    rendered to text then encoded once (no special tokens added twice)."""
    text = render_prompt(tokenizer, example.prompt_messages, parser.registry, parser.fmt)
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def fitting_prompts(examples: list[Example], tokenizer, parser, max_tokens: int, what: str) -> list[Example]:
    """Drop prompts longer than `data.max_prompt_tokens` (as verl does), saying how many."""
    if max_tokens <= 0:
        return examples
    kept = [ex for ex in examples if len(prompt_ids(tokenizer, ex, parser)) <= max_tokens]
    if len(kept) < len(examples):
        output.say(
            f"arpo: dropped {len(examples) - len(kept)} of {len(examples)} {what} prompts longer than "
            f"data.max_prompt_tokens={max_tokens}"
        )
    if examples and not kept:
        raise ConfigError(f"every {what} prompt is longer than data.max_prompt_tokens={max_tokens}")
    return kept
