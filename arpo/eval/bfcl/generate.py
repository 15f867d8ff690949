"""Chat prompts -> greedy completions on any rollout engine (native sampler or vLLM), batched.

Each prompt is the whole conversation rendered by the model's chat template and tokenized once;
generation ends at an end-of-turn token (the tokenizer's EOS and the template's turn-closing
tokens) or at `max_new_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from arpo.rollout.interface import SamplingParams

# Tokens that close an assistant turn in common chat templates (besides the tokenizer's EOS).
TURN_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


@dataclass
class Completion:
    text: str
    tokens: int
    finish_reason: str  # "eos" | "length"


def turn_end_ids(tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in TURN_END_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def render(tokenizer, messages: list[dict], tools: list[dict]) -> list[int]:
    """The conversation as prompt ids, ready for the assistant's answer."""
    text = tokenizer.apply_chat_template(
        messages, tools=tools or None, add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def complete(engine, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[Completion]:
    """Greedy completions of `prompts`, all decoded together."""
    params = SamplingParams(
        temperature=0.0, max_new_tokens=max_new_tokens, eos_token_ids=turn_end_ids(tokenizer)
    )
    seq_ids = [engine.add(p, params) for p in prompts]
    tokens: dict[int, list[int]] = {s: [] for s in seq_ids}
    reasons: dict[int, str] = {}
    while engine.has_runnable():
        for event in engine.step():
            tokens[event.seq_id].append(event.token_id)
            if event.status != "running":
                reasons[event.seq_id] = event.finish_reason or "eos"
    out = []
    for s in seq_ids:
        out.append(
            Completion(
                tokenizer.decode(tokens[s], skip_special_tokens=True),
                len(tokens[s]),
                reasons.get(s, "length"),
            )
        )
        engine.release(s)
    return out
