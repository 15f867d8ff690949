"""Chat prompts -> greedy completions on any rollout engine (native sampler or vLLM), batched,
with each conversation's KV cache kept between its answers.

Each prompt is the whole conversation rendered by the model's chat template and tokenized once;
an answer ends at an end-of-turn token (the tokenizer's EOS and the template's turn-closing
tokens) or after `max_new_tokens`. Either way its sequence is paused, not finished, so the engine
keeps its KV cache: the conversation's next prompt (the same conversation rendered with what came
since) usually extends the sequence's tokens, and then only the new tokens are appended and
prefilled, as tool results are in agent rollouts. Where the rendering differs from what the engine
holds (a template that re-renders the answer, text that tokenizes differently) the sequence is
forked at the longest common prefix, so only the rest is computed; with no common prefix the
prompt is prefilled afresh. A conversation's first prompt is likewise forked from the held sequence
of another conversation that shares the longest prefix with it (conversations over the same
function docs share their whole system prompt), so a prefix is computed and cached once. Every
answer says which happened (`Completion.cache`). The tokens fed are the rendered prompt's in every
case, so the answers equal those of a fresh prefill.
"""

from __future__ import annotations

from dataclasses import dataclass

from arpo.rollout.interface import SamplingParams

# Tokens that close an assistant turn in common chat templates (besides the tokenizer's EOS).
TURN_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
# How a prompt reached the engine: a conversation's first, prefilled; a conversation's first, forked
# from another conversation's sequence; its sequence extended by the new tokens; forked where the
# rendering differs from it; prefilled afresh (nothing in common, or it was gone).
STARTED, SHARED = "started", "shared"
APPENDED, DIVERGED, RESTARTED = "appended", "diverged", "restarted"
CACHE_PATHS = (STARTED, SHARED, APPENDED, DIVERGED, RESTARTED)


@dataclass
class Completion:
    text: str
    tokens: int
    finish_reason: str  # "eos" | "length"
    cache: str = STARTED  # STARTED | SHARED | APPENDED | DIVERGED | RESTARTED
    reused_tokens: int = 0  # prompt tokens whose KV cache was already held (this or another conversation)
    prompt_tokens: int = 0


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


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


class Conversations:
    """One engine sequence per conversation (any hashable key), kept paused between answers."""

    def __init__(self, engine, tokenizer, max_new_tokens: int):
        self.engine, self.tokenizer, self.max_new_tokens = engine, tokenizer, max_new_tokens
        self.turn_ends = turn_end_ids(tokenizer)
        self.sequences: dict = {}  # key -> the engine sequence holding that conversation

    def complete(self, prompts: dict) -> dict:
        """Greedy answers to `prompts` (key -> prompt ids), all decoded together."""
        placed = {}
        for key, ids in prompts.items():  # registered at once: a later new conversation may share it
            placed[key] = self._place(key, ids)
            self.sequences[key] = placed[key][0]
        tokens: dict[int, list[int]] = {seq: [] for seq, _ in placed.values()}
        reasons: dict[int, str] = {}
        while self.engine.has_runnable():
            for event in self.engine.step():
                tokens[event.seq_id].append(event.token_id)
                if event.status != "running":  # paused by a turn-end token, or finished
                    reasons[event.seq_id] = "length" if event.finish_reason == "length" else "eos"
                elif len(tokens[event.seq_id]) >= self.max_new_tokens:
                    self.engine.pause(event.seq_id)  # at its cap: paused, so its cache stays
        out = {}
        for key, (seq, (cache, reused)) in placed.items():
            text = self.tokenizer.decode(tokens[seq], skip_special_tokens=True)
            reason = reasons.get(seq, "length")
            out[key] = Completion(text, len(tokens[seq]), reason, cache, reused, len(prompts[key]))
        return out

    def close(self, key) -> None:
        """The conversation is over: free its sequence."""
        seq = self.sequences.pop(key, None)
        if seq is not None:
            self.engine.release(seq)

    def _params(self, prompt_tokens: int) -> SamplingParams:
        # The engine counts every token its sequence generated, over all answers; the prompt's length
        # bounds those, so this never cuts an answer short: `complete` enforces the cap itself.
        return SamplingParams(
            temperature=0.0,
            max_new_tokens=prompt_tokens + self.max_new_tokens,
            stop_token_ids=self.turn_ends,
        )

    def _place(self, key, prompt: list[int]) -> tuple[int, tuple[str, int]]:
        """The sequence that answers `prompt`, and (how it got there, prompt tokens reused)."""
        params = self._params(len(prompt))
        seq = self.sequences.pop(key, None)
        if seq is None:
            return self._start(prompt, params)
        paused = self.engine.status(seq)[0] == "paused"  # else finished: its cache is gone
        held = self.engine.token_ids(seq) if paused else []
        shared = common_prefix(held, prompt)
        if not shared:
            self.engine.release(seq)
            return self.engine.add(prompt, params), (RESTARTED, 0)
        if shared == len(held):
            self.engine.resume(seq, prompt[shared:], params)
            return seq, (APPENDED, shared)
        child = self._branch(seq, shared, prompt, params)  # it replaces the sequence
        self.engine.release(seq)
        return child, (DIVERGED, shared)

    def _start(self, prompt: list[int], params: SamplingParams) -> tuple[int, tuple[str, int]]:
        """A new conversation: a child of the held sequence sharing the longest prefix with its
        prompt (its cached part is not computed again), else a fresh sequence."""
        held = [s for s in self.sequences.values() if self.engine.status(s)[0] != "finished"]
        donor, shared = max(
            ((s, common_prefix(self.engine.token_ids(s), prompt)) for s in held),
            key=lambda pair: pair[1],
            default=(None, 0),
        )
        if not shared:
            return self.engine.add(prompt, params), (STARTED, 0)
        return self._branch(donor, shared, prompt, params), (SHARED, shared)

    def _branch(self, seq: int, shared: int, prompt: list[int], params: SamplingParams) -> int:
        """A child of `seq` holding its first `shared` tokens, then the rest of `prompt` appended."""
        (child,) = self.engine.fork(seq, 1, shared)
        self.engine.pause(child)
        self.engine.resume(child, prompt[shared:], params)
        return child
