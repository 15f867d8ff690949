"""How BFCL entries go through the engine (arpo/eval/bfcl/runner.py), with fakes for the engine and
BFCL's worker: an entry starts as soon as another ends, and a conversation whose last turn can no
longer fit the context fails before any more answers are spent on it."""

import pytest

from arpo.eval.bfcl.calls import PROMPT
from arpo.eval.bfcl.dialogue import Dialogue
from arpo.eval.bfcl.generate import Completion, render
from arpo.eval.bfcl.runner import CategoryRun
from arpo.models.tiny import tiny_model

MAX_NEW = 8


class Worker:
    """BFCL's worker, as the runner uses it: every answer holds no call, every entry fails."""

    starts = 1  # never restarted

    def request(self, op, timeout_s=None, **fields):
        return {
            "execute": {"error": "no function call"},
            "check": {
                "valid": False,
                "error": "no calls",
                "error_type": "multi_turn:empty_turn_model_response",
            },
        }.get(op, {})


class Answers:
    """Stands for the conversations on the engine: answers every prompt with text, records who talked."""

    def __init__(self):
        self.calls = []

    def complete(self, prompts):
        self.calls.append(sorted(prompts))
        return {
            key: Completion("no call here", 3, "eos", prompt_tokens=len(ids)) for key, ids in prompts.items()
        }

    def close(self, key):
        pass


def entry(name: str, turns: int, words: int = 1) -> dict:
    return {
        "id": name,
        "question": [
            [{"role": "user", "content": f"{name} turn {t} " + "word " * words}] for t in range(turns)
        ],
        "function": [{"name": "ls"}],
        "tools": [],
        "system_prompt": "SYSTEM",
        "holdouts": {},
    }


def category_run(context: int) -> tuple[CategoryRun, Answers]:
    _, tokenizer = tiny_model("qwen2")
    run = CategoryRun(None, tokenizer, Worker(), PROMPT, MAX_NEW, context)
    run.conversations = Answers()
    return run, run.conversations


def test_an_entry_starts_as_soon_as_another_ends():
    run, answers = category_run(context=4096)
    entries = [entry("a", 1), entry("b", 3), entry("c", 1), entry("d", 1)]
    records = run.run("multi_turn_base", entries, 2, on_done=lambda records: None)
    assert answers.calls == [["a", "b"], ["b", "c"], ["b", "d"]]
    assert [r["id"] for r in records] == ["a", "b", "c", "d"]
    assert [len(r["steps"]) for r in records] == [1, 3, 1, 1]


def prompt_tokens(run: CategoryRun, item: dict) -> tuple[int, int]:
    """Tokens of the first prompt, and of the conversation with every turn's user messages."""
    dialogue = Dialogue("multi_turn_base", item, PROMPT, True)
    dialogue.start()
    later = [m for turn in dialogue.remaining_turns() for m in turn["messages"]]
    return tuple(len(render(run.tokenizer, m, [])) for m in (dialogue.messages, dialogue.messages + later))


@pytest.mark.parametrize("room, fails_at_once", [(0, False), (-1, True)])
def test_a_conversation_that_cannot_fit_its_last_turn_fails_at_once(room, fails_at_once):
    item = entry("long", 3, words=200)
    probe, _ = category_run(context=1)
    first, least = prompt_tokens(probe, item)
    run, answers = category_run(context=least + MAX_NEW + room)
    assert first + MAX_NEW < run.context  # the first prompt alone would fit
    (record,) = run.run("multi_turn_base", [item], 1, on_done=lambda records: None)
    # Just fitting, it gets its first answer; that answer leaves no room for the last turn.
    assert answers.calls == ([] if fails_at_once else [["long"]])
    assert len(record["steps"]) == (0 if fails_at_once else 1)
    assert record["error_type"] == "arpo:entry_failed" and "the last turn's prompt" in record["error"]
    if fails_at_once:
        assert f"at least {least} tokens" in record["error"]
