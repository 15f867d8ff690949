"""A rollout engine whose every sequence writes the same scripted turns (tokenized with the run's
tokenizer), so a tiny random model can drive tool calls through the whole training and evaluation
path. Each turn ends paused, as a stop string would leave it; after the last turn comes EOS."""

from __future__ import annotations

from arpo.rollout.interface import TokenEvent


class ScriptedPolicyEngine:
    def __init__(self, tokenizer, turns: list[str]):
        self.turns = [list(tokenizer.encode(t, add_special_tokens=False)) for t in turns]
        self.eos = tokenizer.eos_token_id
        self.vocab_size = len(tokenizer)
        self.seqs: dict[int, dict] = {}
        self.stats: dict[str, int] = {}
        self._next = 0

    def _new(self, state: dict) -> int:
        self._next += 1
        self.seqs[self._next] = state
        return self._next

    def add(self, prompt_ids, params):
        return self._new({"tokens": list(prompt_ids), "turn": 0, "pos": 0, "status": "running"})

    def step(self):
        events = []
        for sid, s in self.seqs.items():
            if s["status"] != "running":
                continue
            ids = self.turns[s["turn"]] if s["turn"] < len(self.turns) else [self.eos]
            token = ids[s["pos"]]
            s["pos"] += 1
            s["tokens"].append(token)
            s["status"] = "paused" if s["pos"] == len(ids) else "running"
            events.append(
                TokenEvent(sid, token, -1.0, 1.0, s["status"], "stop" if s["pos"] == len(ids) else None)
            )
        return events

    def resume(self, seq_id, token_ids, params=None):
        s = self.seqs[seq_id]
        s["tokens"] += list(token_ids)
        if token_ids:
            s["turn"], s["pos"] = s["turn"] + 1, 0
        s["status"] = "running"

    def fork(self, seq_id, n, num_tokens=None, seeds=None):
        s = self.seqs[seq_id]
        return [self._new({**s, "tokens": list(s["tokens"]), "status": "running"}) for _ in range(n)]

    def release(self, seq_id):
        del self.seqs[seq_id]

    def has_runnable(self):
        return any(s["status"] == "running" for s in self.seqs.values())

    def token_ids(self, seq_id):
        return list(self.seqs[seq_id]["tokens"])

    def update_weights(self, named_tensors):
        for _ in named_tensors:
            pass

    def sleep(self):
        pass

    def close(self):
        pass
