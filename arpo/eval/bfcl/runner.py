"""A BFCL category end to end: entries -> conversations on the engine -> BFCL's verdicts.

Up to `at_once` conversations are live; they advance in lockstep: every one still talking gets its
next answer from one batched call (each conversation keeps its engine sequence and KV cache
between answers, so a step prefills only what was added since: generate.py), and an entry starts
as soon as another ends. Multi-turn calls then run in the worker (whose state for an entry is
rebuilt by replaying its earlier steps if the worker was restarted meanwhile). Nothing here
raises on a model's output: a prompt that does not fit, a template that cannot render a turn or
a worker deadline fails that entry with the reason, and the run goes on. A conversation that can
no longer fit its last turn (its messages so far plus the remaining turns' user messages already
leave no room for an answer) fails at once, before more answers are spent on it.
"""

from __future__ import annotations

import random
import time
from collections import deque

from arpo.eval.bfcl.bridge import BfclWorker, RequestFailed
from arpo.eval.bfcl.calls import FC
from arpo.eval.bfcl.categories import kind
from arpo.eval.bfcl.dialogue import Dialogue
from arpo.eval.bfcl.generate import Conversations, render


def select(entries: list[dict], limit: int, seed: int) -> list[dict]:
    """`limit` entries drawn with `seed`, kept in BFCL's order (0: all)."""
    if not limit or limit >= len(entries):
        return entries
    keep = sorted(random.Random(seed).sample(range(len(entries)), limit))
    return [entries[i] for i in keep]


class CategoryRun:
    def __init__(self, engine, tokenizer, worker: BfclWorker, style: str, max_new_tokens: int, context: int):
        self.engine, self.tokenizer, self.worker = engine, tokenizer, worker
        self.style, self.max_new_tokens, self.context = style, max_new_tokens, context
        self.conversations = Conversations(engine, tokenizer, max_new_tokens)

    def run(self, category: str, entries: list[dict], at_once: int, on_done) -> list[dict]:
        """Per-entry records (transcript + verdict) in `entries`' order; `on_done(records)` whenever
        entries finish."""
        waiting, live, records = deque(entries), [], {}
        started: dict[str, float] = {}
        while waiting or live:
            while waiting and len(live) < at_once:
                dialogue = Dialogue(category, waiting.popleft(), self.style, kind(category) == "multi_turn")
                dialogue.start()
                live.append(dialogue)
                started[dialogue.id] = time.perf_counter()
            self._advance([d for d in live if not d.done])
            ended = [d for d in live if d.done]
            live = [d for d in live if not d.done]
            if ended:
                finished = [self._verdict(d, time.perf_counter() - started[d.id]) for d in ended]
                on_done(finished)
                records.update((r["id"], r) for r in finished)
        return [records[e["id"]] for e in entries]

    def _advance(self, live: list[Dialogue]) -> None:
        prompts: dict[str, list[int]] = {}
        talking = []
        for d in live:
            try:
                ids = render(self.tokenizer, d.messages, d.tools)
                failure = self._outgrown(d, ids)
            except Exception as e:  # a template that cannot render this conversation
                d.fail(f"chat template failed: {type(e).__name__}: {str(e)[:200]}")
                continue
            if failure:
                d.fail(failure)
                continue
            prompts[d.id] = ids
            talking.append(d)
        if not talking:
            return
        answers = self.conversations.complete(prompts)
        for d in talking:
            done = answers[d.id]
            output = d.decoded(done.text)
            d.record(done.text, output)
            d.log[-1].update(
                {
                    "tokens": done.tokens,
                    "finish_reason": done.finish_reason,
                    "prompt_tokens": done.prompt_tokens,
                    "kv_cache": done.cache,
                    "reused_tokens": done.reused_tokens,
                }
            )
            if d.multi_turn:
                self._execute(d, done.text, output)
            else:
                d.done = True

    def _outgrown(self, d: Dialogue, ids: list[int]) -> str:
        """Why the conversation cannot get its answers within the context ("" when it still may).
        Its last turn's prompt holds at least what it holds now plus the remaining turns' user
        messages (every answer only adds to it), so when even that leaves no room for an answer
        the entry fails now, as it would at its last turn."""
        if len(ids) + self.max_new_tokens > self.context:
            return f"prompt of {len(ids)} tokens + {self.max_new_tokens} new exceeds context {self.context}"
        ahead = d.remaining_turns()
        if not ahead:
            return ""
        messages = d.messages + [m for turn in ahead for m in turn["messages"]]
        tools = d.tools + [t for turn in ahead for t in turn["tools"]]
        try:
            least = len(render(self.tokenizer, messages, tools))
        except Exception:  # e.g. a template that wants answers between user turns: no early bound
            return ""
        if least + self.max_new_tokens <= self.context:
            return ""
        return (
            f"the last turn's prompt will hold at least {least} tokens (the remaining turns' messages "
            f"added); + {self.max_new_tokens} new exceeds context {self.context}"
        )

    def _execute(self, d: Dialogue, text: str, output) -> None:
        style = "decoded" if self.style == FC else "prompt"
        try:
            if d.worker_epoch != self.worker.starts:  # the worker restarted: rebuild this entry's state
                self.worker.request("reset", id=d.id)
                for step in [s for turn in d.outputs for s in turn][:-1]:
                    self.worker.request("execute", category=d.category, id=d.id, style=style, output=step)
                d.worker_epoch = self.worker.starts
            ran = self.worker.request("execute", category=d.category, id=d.id, style=style, output=output)
        except RequestFailed as e:
            d.fail(f"executing the calls failed: {e}")
            return
        if "error" in ran:
            d.answer_without_calls(text, output, ran["error"])
        else:
            d.answer_with_results(text, output, ran["calls"], ran["results"])

    def _verdict(self, d: Dialogue, wall_s: float) -> dict:
        style = "decoded" if self.style == FC else "prompt"
        self.conversations.close(d.id)
        if d.multi_turn:
            self._forget(d)
        if d.failure:
            verdict = {"valid": False, "error": d.failure, "error_type": "arpo:entry_failed"}
        else:
            try:
                verdict = self.worker.request(
                    "check", category=d.category, id=d.id, style=style, output=d.checker_output()
                )
            except RequestFailed as e:
                verdict = {
                    "valid": False,
                    "error": f"the checker failed: {e}",
                    "error_type": "arpo:checker_failed",
                }
        return {
            "id": d.id,
            "category": d.category,
            "call_format": self.style,
            "messages": d.messages,  # the conversation as the model saw it (system prompt, results)
            "tools": [t["function"]["name"] for t in d.tools],
            "steps": d.log,
            **verdict,
            "calls": _calls(d, verdict),
            "invalid_format": _invalid_format(d, verdict),
            "wall_s": wall_s,
        }

    def _forget(self, d: Dialogue) -> None:
        try:
            self.worker.request("reset", id=d.id)
        except RequestFailed:
            pass  # a restarted worker holds no state for it anyway


def _calls(d: Dialogue, verdict: dict) -> int:
    if d.multi_turn:
        return sum(len(step.get("calls", [])) for step in d.log)
    return len(verdict.get("calls", []))


DECODER_FAILURES = ("ast_decoder:", "relevance_error:decoder_failed")


def _invalid_format(d: Dialogue, verdict: dict) -> bool | None:
    """Single-turn: whether an answer that should call could not be decoded into calls.
    Multi-turn: whether no answer of the whole conversation decoded into a call. None where
    no call is expected (irrelevance), so those entries do not count."""
    if d.multi_turn:
        return not any("calls" in step for step in d.log)
    if "irrelevance" in d.category:
        return None
    return verdict.get("error_type", "").startswith(DECODER_FAILURES)
