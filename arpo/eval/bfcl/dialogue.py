"""One BFCL entry's conversation with the model, following BFCL's turn rules.

Single-turn categories: one answer, checked as it is. Multi-turn: the user messages of each turn
are appended in order (a turn that releases held-out functions instead says so and adds their
docs); within a turn the model answers, its calls run on BFCL's simulated APIs and the results
come back as `tool` messages, until an answer holds no call; more than `MAX_STEPS` answers in
one turn force-quit the whole entry (BFCL then fails it as force-terminated).

Function-calling style: the question's messages plus `tools=`; prompt style: BFCL's system prompt
(merged into the question's own system message when it has one), results as `tool` messages
named by the call they answer, as BFCL's open-model prompting handler sends them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from arpo.eval.bfcl.calls import FC, assistant_message, decode_fc, schema_name

MAX_STEPS = 20  # BFCL's limit on model answers within one turn


@dataclass
class Dialogue:
    category: str
    entry: dict  # from the worker: id, question, function, tools, system_prompt, holdouts, ...
    style: str  # calls.FC or calls.PROMPT
    multi_turn: bool
    messages: list[dict] = field(default_factory=list)
    tools: list[dict] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # schema name -> BFCL's function name
    turn: int = -1
    steps_in_turn: int = 0
    outputs: list[list] = field(default_factory=list)  # per turn, per step: what the checker reads
    log: list[dict] = field(default_factory=list)  # per step: turn, raw text, calls, results
    done: bool = False
    failure: str = ""  # an entry-level failure (prompt too long, worker deadline, template error)
    worker_epoch: int = 0

    @property
    def id(self) -> str:
        return self.entry["id"]

    def start(self) -> None:
        if self.style == FC:
            self.tools = list(self.entry["tools"])
            self.names = {schema_name(f["name"]): f["name"] for f in self.entry["function"]}
        self.next_turn()

    def next_turn(self) -> None:
        """Append the next turn's user messages, or end the conversation after the last one."""
        self.turn += 1
        self.steps_in_turn = 0
        if self.turn >= len(self.entry["question"]) or (not self.multi_turn and self.turn > 0):
            self.done = True
            return
        self.outputs.append([])
        turn = self._turn(self.turn)
        self.tools += turn["tools"]
        self.names.update({schema_name(t["function"]["name"]): t["function"]["name"] for t in turn["tools"]})
        self.messages += turn["messages"]

    def remaining_turns(self) -> list[dict]:
        """The turns after the current one, as `_turn` gives them (none for a single-turn entry)."""
        if not self.multi_turn:
            return []
        return [self._turn(t) for t in range(self.turn + 1, len(self.entry["question"]))]

    def _turn(self, turn: int) -> dict:
        """Turn `turn`'s user messages and the tools it adds (a turn that releases held-out functions
        has no user text of its own: it says so, and in function-calling style adds their docs)."""
        messages, tools = copy.deepcopy(self.entry["question"][turn]), []
        holdout = self.entry["holdouts"].get(str(turn))
        if holdout:
            messages = [
                {"role": "user", "content": holdout["fc_message" if self.style == FC else "prompt_message"]}
            ]
            tools = holdout["tools"] if self.style == FC else []
        if turn == 0 and self.style != FC:
            messages = _with_system_prompt(messages, self.entry["system_prompt"])
        return {"messages": messages, "tools": tools}

    def decoded(self, text: str):
        """What the checker and executor read for one answer: BFCL decodes prompt-style text
        itself; function-calling output is decoded here."""
        return decode_fc(text, self.names) if self.style == FC else text

    def record(self, text: str, output) -> None:
        self.outputs[-1].append(output)
        self.steps_in_turn += 1
        self.log.append({"turn": self.turn, "output": text})
        if self.style == FC:
            self.log[-1]["decoded"] = output

    def answer_without_calls(self, text: str, output, reason: str) -> None:
        """The answer held no call (or an undecodable one): BFCL ends the turn."""
        self.messages.append({"role": "assistant", "content": text})
        self.log[-1]["turn_end"] = reason
        self.next_turn()

    def answer_with_results(self, text: str, output, calls: list[str], results: list[str]) -> None:
        if self.style == FC:
            self.messages.append(assistant_message(text, output, self.names))
            tool_names = [schema_name(c["name"]) for c in output["calls"]]
        else:
            self.messages.append({"role": "assistant", "content": text})
            tool_names = calls
        self.messages += [{"role": "tool", "name": n, "content": r} for n, r in zip(tool_names, results)]
        self.log[-1].update({"calls": calls, "results": results})
        if self.steps_in_turn > MAX_STEPS:
            self.log[-1]["turn_end"] = f"force-quit after {MAX_STEPS} steps"
            self.done = True

    def fail(self, reason: str) -> None:
        self.failure, self.done = reason, True

    def checker_output(self):
        return (
            self.outputs
            if self.multi_turn
            else (self.outputs[0][0] if self.outputs and self.outputs[0] else "")
        )


def _with_system_prompt(messages: list[dict], system_prompt: str) -> list[dict]:
    """BFCL's prompt: the worker's system prompt already holds the question's own system text."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": system_prompt}, *messages[1:]]
    return [{"role": "system", "content": system_prompt}, *messages]
