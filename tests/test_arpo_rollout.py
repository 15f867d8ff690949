"""ARPO rollout against a scripted fake engine (exact trees), then end to end on a tiny model.

The fake engine speaks one character per token. A sequence's response is a list of *turns*: turn i
is what it writes after its i-th tool result; each character of turn i has entropy `entropies[i]`,
and after the last turn's text it emits EOS. So the branching inputs (H_init, H_t) and the trees
they must produce are known exactly.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from concurrent.futures import Future

import pytest

from arpo.config.rollout import RolloutConfig
from arpo.errors import ConfigError
from arpo.rollout.arpo_rollout import rollout_groups
from arpo.rollout.branching import decision_rng
from arpo.rollout.interface import TokenEvent
from arpo.rollout.stats import rollout_stats
from arpo.tools.base import ToolCall, ToolResult
from arpo.tools.budget import SPENT

EOS = 3
V = 256


class CharTokenizer:
    eos_token_id = EOS

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(
            "" if i == EOS and skip_special_tokens else "<eos>" if i == EOS else chr(i) for i in ids
        )

    def __len__(self):
        return V


TOK = CharTokenizer()


class ScriptedEngine:
    """The RolloutEngine protocol over scripted turns; asserts the orchestrator's obligations
    (resume only paused sequences, never fork a released or finished one)."""

    vocab_size = V

    def __init__(self, turns, entropies):
        self.turns, self.entropies = turns, entropies
        self.seqs: dict[int, dict] = {}
        self.batches: list[list[int]] = []  # seq ids advanced by each step
        self.on_step = []  # callbacks run after every step (a fake tool clock)
        self.forks: list[tuple[int, int, int]] = []  # (parent seq, n, num_tokens)
        self.fork_seeds: list[int] = []

    def _new(self, tokens, prompt_len, params, turn_starts):
        sid = len(self.seqs)
        self.seqs[sid] = dict(
            tokens=list(tokens),
            prompt_len=prompt_len,
            params=params,
            turn_starts=list(turn_starts),
            status="running",
            generated=0,
        )
        return sid

    def add(self, prompt_ids, params):
        return self._new(prompt_ids, len(prompt_ids), params, [len(prompt_ids)])

    def step(self):
        events = []
        runnable = [i for i, s in self.seqs.items() if s["status"] == "running"]
        for sid in runnable:
            s = self.seqs[sid]
            turn = len(s["turn_starts"]) - 1
            turns = (
                self.turns[s["tokens"][s["prompt_len"] - 1]] if isinstance(self.turns, dict) else self.turns
            )
            text = turns[turn]
            pos = len(s["tokens"]) - s["turn_starts"][-1]
            token = ord(text[pos]) if pos < len(text) else EOS
            ent = self.entropies[turn]
            s["tokens"].append(token)
            s["generated"] += 1
            p = s["params"]
            resp = TOK.decode(s["tokens"][s["prompt_len"] :])
            status, reason = "running", None
            if token in p.stop_token_ids or any(resp.endswith(x) for x in p.stop):
                status, reason = "paused", "stop"
            elif token in p.eos_token_ids:
                status, reason = "finished", "eos"
            elif s["generated"] >= p.max_new_tokens:
                status, reason = "finished", "length"
            s["status"] = status
            events.append(TokenEvent(sid, token, -ent / 2, ent, status, reason))
        self.batches.append(runnable)
        for f in self.on_step:
            f()
        return events

    def resume(self, seq_id, token_ids, params=None):
        s = self.seqs[seq_id]
        assert s["status"] == "paused", f"resume of {s['status']} sequence {seq_id}"
        if token_ids:
            s["tokens"].extend(token_ids)
            s["turn_starts"].append(len(s["tokens"]))
        s["status"] = "running"

    def fork(self, seq_id, n, num_tokens=None, seeds=None):
        s = self.seqs[seq_id]
        assert s["status"] in ("running", "paused"), f"fork of {s['status']} sequence {seq_id}"
        assert seeds is not None and len(seeds) == n
        self.forks.append((seq_id, n, num_tokens))
        self.fork_seeds.extend(seeds)
        starts = [x for x in s["turn_starts"] if x <= num_tokens]
        return [
            self._new(
                s["tokens"][:num_tokens], s["prompt_len"], dataclasses.replace(s["params"], seed=seed), starts
            )
            for seed in seeds
        ]

    def branch_forks(self):
        """Forks after a tool result (the others start a prompt's global samples)."""
        return [f for f in self.forks if f[2] > self.seqs[f[0]]["prompt_len"]]

    def release(self, seq_id):
        assert self.seqs[seq_id]["status"] != "released"
        self.seqs[seq_id]["status"] = "released"

    def has_runnable(self):
        return any(s["status"] == "running" for s in self.seqs.values())

    def token_ids(self, seq_id):
        return list(self.seqs[seq_id]["tokens"])


class TagParser:
    """`<call>arg</call>` runs a tool; `<call>BAD</call>` is malformed; `<answer>..</answer>` ends."""

    def stop_strings(self):
        return ["</call>"]  # the rollout adds "</answer>" itself

    def parse(self, text):
        m = re.search(r"<call>(.*?)</call>$", text, re.S)
        if m is None:
            return None
        if m.group(1) == "BAD":
            return ToolCall("echo", {}, raw=m.group(0), error="malformed call")
        return ToolCall("echo", {"x": m.group(1)}, raw=m.group(0))

    def format_result(self, text):
        return f"<r>{text}</r>"

    def final_answer(self, text):
        m = re.search(r"<answer>(.*?)</answer>", text, re.S)
        return None if m is None else m.group(1)


class StepExecutor:
    """Echoes the argument; a call's future completes `delay` engine steps after submission."""

    def __init__(self, engine, delay=0, error_on=()):
        self.delay, self.error_on = delay, set(error_on)
        self.submitted: list[ToolCall] = []
        self.waiting: list[tuple[int, Future, ToolCall]] = []
        self.clock = 0
        engine.on_step.append(self._tick)

    def submit(self, call):
        self.submitted.append(call)
        f = Future()
        self.waiting.append((self.clock + self.delay, f, call))
        if self.delay == 0:
            self._tick(advance=False)
        return f

    def _tick(self, advance=True):
        self.clock += advance
        for item in [w for w in self.waiting if w[0] <= self.clock]:
            self.waiting.remove(item)
            call = item[2]
            if call.error:  # as the real executor answers a malformed call
                item[1].set_result(ToolResult(text=f"Error: {call.error}", error=call.error))
                continue
            x = call.arguments["x"]
            err = "boom" if x in self.error_on else None
            item[1].set_result(ToolResult(text=x * 2, error=err, latency_s=0.5))


def run(turns, entropies, prompts=1, seed=0, **cfg_kw):
    cfg = RolloutConfig(**{"M": 4, "N": 2, "Z": 2, "k": 2, "max_response_tokens": 200, **cfg_kw})
    engine = ScriptedEngine(turns, entropies)
    executor = StepExecutor(engine)
    groups = rollout_groups(
        engine, TOK, TagParser(), executor, [[ord("P"), 40 + g] for g in range(prompts)], cfg, seed
    )
    return groups, engine, executor


def tree(group):
    return [(t.id, t.parent, t.fork_pos, t.finish_reason) for t in group.trajectories]


def check_masks(group):
    check_masks_with(group, TagParser())


def check_masks_with(group, parser):
    """Loss mask 0 exactly on inserted tool-result tokens, which equal the formatted result."""
    for t in group.trajectories:
        expect = [1] * len(t)
        for c in t.tool_calls:
            expect[c.start : c.end] = [0] * (c.end - c.start)
            assert t.tokens[c.start : c.end] == TOK.encode(parser.format_result(c.result))[: c.end - c.start]
        assert t.loss_mask == expect
        assert all(lp == 0.0 and h == 0.0 for m, lp, h in zip(t.loss_mask, t.logprobs, t.entropies) if m == 0)


def dh(h_t, h_init):
    return (h_t - h_init) / math.log(V)


T0 = "a<call>1</call>"  # 15 chars
R1 = "<r>11</r>"  # 9 chars: the echo result
F1 = len(T0) + len(R1)


def test_threshold_branch_fills_budget_exactly():
    # Both roots call a tool at the same step; entropy rises after the result, so P > tau. Root 0
    # decides first and forks Z=2 (budget M=4 now full); root 1's decision finds no room.
    groups, engine, _ = run([T0, "bb<answer>x</answer>"], [1.0, 2.0])
    (g,) = groups
    assert tree(g) == [
        (0, None, 0, "answer"),
        (1, None, 0, "answer"),
        (2, 0, F1, "answer"),
        (3, 0, F1, "answer"),
    ]
    assert g.stats["branches"] == 2 and g.stats["branch_events"] == 1 and g.stats["topups"] == 0
    assert g.stats["dH"] == pytest.approx([dh(2.0, 1.0)] * 2, rel=1e-12)
    assert engine.forks[0] == (0, 1, 2)  # root 1 shares root 0's prompt
    assert engine.branch_forks() == [(0, 2, 2 + F1)]  # prompt (2 tokens) + response right after the result
    assert g.stats["tool_calls_per_traj"] == [1, 1, 1, 1]
    for t in g.trajectories:
        assert t.text == T0 + R1 + "bb<answer>x</answer>"
        assert t.logprobs[-1] == -1.0 and t.entropies[0] == 1.0
        assert t.tool_calls[0].dH == pytest.approx(dh(2.0, 1.0))
    g.check()
    check_masks(g)
    # Children do not re-decide at the inherited call; branches keep the inherited record.
    assert [t.tool_calls[0].branches for t in g.trajectories] == [2, 0, 2, 2]


def test_nested_branches_respect_budget_and_z():
    # One root, two calls. After call 1 it forks 2 (count 3); after call 2 only 1 slot is left, so
    # it forks 1. The first two branches reach their call 2 later and find no room.
    t1 = "bb<call>2</call>"
    groups, engine, _ = run([T0, t1, "c<answer>z</answer>"], [1.0, 3.0, 3.0], M=4, N=1)
    (g,) = groups
    f2 = F1 + len(t1) + len("<r>22</r>")
    assert tree(g) == [
        (0, None, 0, "answer"),
        (1, 0, F1, "answer"),
        (2, 0, F1, "answer"),
        (3, 0, f2, "answer"),
    ]
    assert engine.branch_forks() == [(0, 2, 2 + F1), (0, 1, 2 + f2)]
    # dH at: root call 1, root call 2, branch 1 call 2, branch 2 call 2 (branch 3 makes no call).
    assert g.stats["dH"] == pytest.approx([dh(3.0, 1.0)] * 4, rel=1e-12)
    assert g.stats["branches"] == 3 and g.stats["branch_events"] == 2
    assert g.stats["tool_calls_per_traj"] == [2, 2, 2, 2]
    g.check()
    check_masks(g)


def test_low_entropy_never_branches_and_tops_up_together():
    groups, engine, _ = run([T0, "b<answer>x</answer>"], [2.0, 0.5], M=5, N=2)
    (g,) = groups
    assert tree(g) == [(i, None, 0, "answer") for i in range(5)]
    assert g.stats == {
        "branches": 0,
        "branch_events": 0,
        "dH": pytest.approx([dh(0.5, 2.0)] * 5),
        "topups": 3,
        "tool_calls_per_traj": [1] * 5,
    }
    # The three top-ups start in the same step.
    first_steps = [next(i for i, b in enumerate(engine.batches) if s in b) for s in range(5)]
    assert first_steps[2] == first_steps[3] == first_steps[4] > first_steps[0]


def test_n_equals_m_never_branches():
    groups, engine, _ = run(
        [T0, "bb<call>2</call>", "<answer>x</answer>"], [0.0, 5.0, 5.0], M=3, N=3, prompts=2
    )
    for g in groups:
        assert tree(g) == [(i, None, 0, "answer") for i in range(3)]
        assert g.stats["branches"] == 0 and g.stats["topups"] == 0 and len(g.stats["dH"]) == 6
    assert engine.branch_forks() == []


def test_sample_rule_follows_seeded_draws():
    # alpha=0.5, beta=0: P = 0.5 at every decision; Z=1, M=2: trajectory 1 is a branch iff root 0's
    # draw (seeded by (seed, group, trajectory, call)) says so, else a top-up.
    kw = dict(M=2, N=1, Z=1, rule="sample", alpha=0.5, beta=0.0, prompts=40, seed=11)
    groups, _, _ = run([T0, "b<answer>x</answer>"], [1.0, 1.0], **kw)
    expect = [decision_rng(11, g, 0, 0).random() < 0.5 for g in range(40)]
    assert [g.trajectories[1].parent == 0 for g in groups] == expect
    assert 5 < sum(expect) < 35
    again, _, _ = run([T0, "b<answer>x</answer>"], [1.0, 1.0], **kw)
    assert [tree(g) for g in again] == [tree(g) for g in groups]
    always, _, _ = run([T0, "b<answer>x</answer>"], [1.0, 1.0], **{**kw, "alpha": 1.0})
    assert all(g.trajectories[1].parent == 0 for g in always)


def test_group_ids_key_the_random_streams():
    engine = ScriptedEngine([T0, "b<answer>x</answer>"], [1.0, 1.0])
    cfg = RolloutConfig(M=4, N=1, Z=1, k=2, rule="sample", alpha=0.5, beta=0.0)

    def trees(prompts, ids):
        ex = StepExecutor(engine)
        return {
            g.group_id: tree(g)
            for g in rollout_groups(engine, TOK, TagParser(), ex, prompts, cfg, 3, group_ids=ids)
        }

    together = trees([[1], [2], [3]], [10, 11, 12])
    assert set(together) == {10, 11, 12} and len({str(t) for t in together.values()}) > 1
    for pid, gid in ((1, 10), (2, 11), (3, 12)):
        assert trees([[pid]], [gid]) == {gid: together[gid]}
    with pytest.raises(ValueError, match="group id"):
        trees([[1], [2]], [5, 5])


def test_tool_limit_allows_an_answer_after_the_last_call():
    turns = [T0, "bb<call>2</call>", "<answer>x</answer>"]
    groups, _, ex = run(turns, [1.0, 0.0, 0.0], M=1, N=1, max_tool_calls=1)
    (t,) = groups[0].trajectories
    assert t.finish_reason == "tool_limit" and len(t.tool_calls) == 1 and len(ex.submitted) == 1
    assert t.text == T0 + R1 + "bb<call>2</call>"  # the refused call stays, unexecuted
    groups, _, _ = run([T0, "<answer>x</answer>"], [1.0, 0.0], M=1, N=1, max_tool_calls=1)
    assert groups[0].trajectories[0].finish_reason == "answer"
    groups, _, ex = run([T0, "x"], [1.0, 0.0], M=1, N=1, max_tool_calls=0)
    assert groups[0].trajectories[0].finish_reason == "tool_limit" and ex.submitted == []


def test_eos_and_length_endings_and_truncated_results():
    groups, _, _ = run(["abc"], [1.0], M=1, N=1)
    t = groups[0].trajectories[0]
    assert (t.finish_reason, t.tokens) == ("eos", [97, 98, 99, EOS]) and t.text == "abc"
    groups, _, _ = run(["abcdefghij"], [1.0], M=1, N=1, max_response_tokens=7)
    assert groups[0].trajectories[0].finish_reason == "length" and len(groups[0].trajectories[0]) == 7
    # The result (9 tokens) would overflow a budget of 20: it is cut to the 5 tokens left.
    groups, _, _ = run([T0, "b"], [1.0, 1.0], M=1, N=1, max_response_tokens=20)
    t = groups[0].trajectories[0]
    assert t.finish_reason == "length" and len(t) == 20
    assert (t.tool_calls[0].start, t.tool_calls[0].end) == (15, 20) and t.tool_calls[0].dH is None
    check_masks(groups[0])


def test_branch_inside_window_that_ends_at_eos():
    # The result is followed by one token and EOS (fewer than k=3): the decision uses those two
    # tokens and forks from the paused (not yet released) sequence.
    groups, engine, _ = run([T0, "b"], [1.0, 4.0], M=3, N=1, k=3)
    (g,) = groups
    assert tree(g) == [(0, None, 0, "eos"), (1, 0, F1, "eos"), (2, 0, F1, "eos")]
    assert g.stats["dH"] == [pytest.approx(dh(4.0, 1.0))]
    g.check()


def test_h_init_uses_tokens_before_the_first_call_when_fewer_than_k():
    # 15 tokens before the first call with entropy 1.0; k=40 cannot wait for more.
    groups, _, _ = run([T0, "bbbb<answer>x</answer>"], [1.0, 2.0], M=1, N=1, k=40)
    assert groups[0].stats["dH"] == [pytest.approx(dh(2.0, 1.0))]


def test_decision_is_taken_before_the_next_call_runs():
    # k=100 never fills: the window after call 1 closes when call 2 is closed, so H_t is turn 1's
    # entropy alone (not call 2's result or turn 2); call 2's window closes at the answer.
    turns = [T0, "b<call>2</call>", "<answer>x</answer>"]
    groups, _, _ = run(turns, [1.0, 2.0, 5.0], M=1, N=1, k=100)
    (t,) = groups[0].trajectories
    assert [c.dH for c in t.tool_calls] == pytest.approx([dh(2.0, 1.0), dh(5.0, 1.0)], rel=1e-12)
    assert groups[0].stats["dH"] == [c.dH for c in t.tool_calls]


def test_malformed_call_gives_an_error_result_and_rollout_continues():
    groups, _, ex = run(["<call>BAD</call>", "<answer>y</answer>"], [1.0, 1.0], M=1, N=1)
    (t,) = groups[0].trajectories
    assert t.finish_reason == "answer" and len(ex.submitted) == 1
    assert t.tool_calls[0].error == "malformed call" and t.tool_calls[0].result == "Error: malformed call"
    assert t.text == "<call>BAD</call><r>Error: malformed call</r><answer>y</answer>"
    check_masks(groups[0])


def test_waiting_sequence_leaves_the_batch_while_others_decode():
    # Prompt 0 calls a slow tool; prompt 1 writes a long answer meanwhile.
    engine = ScriptedEngine({1: [T0, "<answer>x</answer>"], 2: ["a" * 30 + "<answer>y</answer>"]}, [1.0, 0.0])
    ex = StepExecutor(engine, delay=6)
    cfg = RolloutConfig(M=1, N=1, k=2, max_response_tokens=200)
    groups = rollout_groups(engine, TOK, TagParser(), ex, [[1], [2]], cfg, seed=0)
    assert [g.trajectories[0].finish_reason for g in groups] == ["answer", "answer"]
    call_step = len(T0) - 1
    for b in engine.batches[call_step + 1 : call_step + 6]:
        assert b == [1]  # sequence 0 waits on its tool, sequence 1 keeps decoding


def test_blocks_on_futures_only_when_nothing_can_run():
    class ThreadExecutor:
        def submit(self, call):
            f = Future()
            threading.Timer(0.05, f.set_result, [ToolResult(text="ok", latency_s=0.05)]).start()
            return f

    engine = ScriptedEngine([T0, "<answer>x</answer>"], [1.0, 0.0])
    cfg = RolloutConfig(M=1, N=1, k=2, max_response_tokens=200)
    t0 = time.monotonic()
    groups = rollout_groups(engine, TOK, TagParser(), ThreadExecutor(), [[1]], cfg, seed=0)
    assert 0.05 <= time.monotonic() - t0 < 5
    assert groups[0].trajectories[0].finish_reason == "answer"
    assert len(engine.batches) == len(T0) + len("<answer>x</answer>")  # no idle steps while waiting


def test_tool_errors_and_stats():
    engine = ScriptedEngine([T0, "bb<call>2</call>", "<answer>x</answer>"], [1.0, 1.0, 1.0])
    ex = StepExecutor(engine, error_on={"2"})
    cfg = RolloutConfig(M=2, N=2, k=2, max_response_tokens=200)
    groups = rollout_groups(engine, TOK, TagParser(), ex, [[1], [2]], cfg, seed=0)
    for g in groups:
        for t in g.trajectories:
            assert [c.error for c in t.tool_calls] == [None, "boom"]
    s = rollout_stats(groups)
    n = len(T0 + R1 + "bb<call>2</call><r>22</r><answer>x</answer>")
    assert s == {
        "arpo/branches_per_prompt": 0.0,
        "arpo/branch_events_per_prompt": 0.0,
        "arpo/topups_per_prompt": 0.0,
        "tools/calls_per_traj": 2.0,
        "tools/calls_executed": 8.0,
        "rollout/sampled_tokens": 4.0 * sum(groups[0].trajectories[0].loss_mask),
        "tools/error_rate": 0.5,
        "tools/latency_s": 0.5,
        "tools/timeout_rate": 0.0,
        "response_length/mean": n,
        "response_length/max": n,
        "response_length/min": n,
        "arpo/dH/mean": 0.0,
        "arpo/dH/min": 0.0,
        "arpo/dH/max": 0.0,
        "tools/result_tokens/mean": 2.0,  # "11" and "22"
        "tools/result_tokens/max": 2.0,
        "tools/truncated_rate": 0.0,
        "context/tool_token_share": len(R1 + "<r>22</r>") / n,
    }


def test_result_and_trajectory_token_budgets():
    long_call = "a<call>" + "y" * 50 + "</call>"  # its echo is 100 tokens (one per character)
    engine = ScriptedEngine([long_call, long_call, "<answer>x</answer>"], [1.0, 1.0, 1.0])
    cfg = RolloutConfig(M=1, N=1, k=2, max_response_tokens=400, max_tool_tokens=60)
    (g,) = rollout_groups(engine, TOK, TagParser(), StepExecutor(engine), [[1]], cfg, 0, result_max_tokens=40)
    first, second = g.trajectories[0].tool_calls
    assert first.truncated and first.result_tokens == 100 and len(first.result) <= 40
    assert first.result.startswith("yy") and first.result.endswith("yy") and "tokens cut" in first.result
    # 47 result tokens used (40 + the wrapper): the 13 left are too few, the notice goes in instead
    assert second.truncated and second.result == SPENT.format(budget=60) and second.result_tokens == 100
    check_masks(g)
    assert rollout_stats([g])["tools/truncated_rate"] == 1.0


def test_stats_count_branch_calls_once():
    groups, _, _ = run([T0, "bb<answer>x</answer>"], [1.0, 2.0], prompts=2)
    s = rollout_stats(groups)
    assert s["arpo/branches_per_prompt"] == 2.0 and s["arpo/topups_per_prompt"] == 0.0
    assert s["tools/calls_per_traj"] == 1.0  # linearised: each branch carries its inherited call
    assert s["tools/calls_executed"] == 4.0  # run once: by the two roots of each prompt
    trajs = [t for g in groups for t in g.trajectories]
    shared = sum(sum(t.loss_mask[: t.fork_pos]) for t in trajs)
    assert shared > 0 and s["rollout/sampled_tokens"] == sum(sum(t.loss_mask) for t in trajs) - shared
    assert s["arpo/dH/max"] == pytest.approx(dh(2.0, 1.0))
    assert rollout_stats([]) == {}


@pytest.mark.parametrize(
    "kw", [dict(N=5, M=4), dict(N=0), dict(k=0), dict(Z=0), dict(rule="coin"), dict(max_response_tokens=0)]
)
def test_bad_config_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        run(["a"], [1.0], **kw)


def test_every_sequence_gets_its_own_reproducible_seed():
    def seeds(seed):
        _, engine, _ = run([T0, "bb<answer>x</answer>"], [1.0, 2.0], seed=seed)
        return [engine.seqs[0]["params"].seed, *engine.fork_seeds]

    a = seeds(0)
    assert len(a) == 4 and len(set(a)) == 4 and all(isinstance(x, int) for x in a)
    assert seeds(0) == a and set(seeds(1)).isdisjoint(a)


def test_an_executor_exception_becomes_an_error_result():
    class Crashing:
        def submit(self, call):
            f = Future()
            f.set_exception(RuntimeError("worker died"))
            return f

    engine = ScriptedEngine([T0, "<answer>x</answer>"], [1.0, 0.0])
    cfg = RolloutConfig(M=1, N=1, k=2, max_response_tokens=200)
    (g,) = rollout_groups(engine, TOK, TagParser(), Crashing(), [[1]], cfg, seed=0)
    (t,) = g.trajectories
    assert t.finish_reason == "answer"
    assert t.tool_calls[0].error == "tool echo failed: RuntimeError: worker died"


# -- end to end: tiny model, native engine, real python sandbox ---------------------------------


class VowelCallParser:
    """A random tiny model never writes `<python>`: here any generated text ending in a vowel
    "closes" a call whose code is fixed, so tool calls, pauses, results and forks happen often.
    Results and answers use the real ARPO tag format."""

    CODE = "print(6 * 7)"

    def __init__(self, real):
        self.real = real

    def stop_strings(self):
        return list("aeiou")

    def parse(self, text):
        return ToolCall("python", {"code": self.CODE}, raw=text) if text[-1:] in "aeiou" else None

    def format_result(self, text):
        return self.real.format_result(text)

    def final_answer(self, text):
        return self.real.final_answer(text)


class InstantPython:
    """Answers every call at once with what `print(6 * 7)` prints (no sandbox: the fast variant)."""

    def submit(self, call):
        f = Future()
        f.set_result(ToolResult(text="42\n", latency_s=1e-6))
        return f


def tiny_rollout(family, executor, make_engine=None, **cfg_kw):
    """Tiny model + engine (`make_engine(model, tok)`, default the native sampler) + the vowel parser
    over the real ARPO tag format; checks the trees, masks and tool records, and the rollout's
    log-probs / entropies against the model."""
    import torch

    from arpo.config.rollout import SamplerConfig
    from arpo.config.tools import PythonToolConfig
    from arpo.models.tiny import tiny_model
    from arpo.rollout.native.engine import NativeEngine
    from arpo.tools.parsers import TagParser as RealTagParser
    from arpo.tools.python_tool import PythonTool
    from arpo.tools.registry import ToolRegistry

    model, tok = tiny_model(family, seed=3)
    if make_engine is None:
        engine = NativeEngine(model, tok, SamplerConfig(block_size=4, kv_cache_tokens=4096, device="cpu"))
    else:
        engine = make_engine(model, tok)
    parser = VowelCallParser(RealTagParser(ToolRegistry([PythonTool(PythonToolConfig())])))
    # alpha = 1 makes P > tau at every decision: every tool step with room left branches.
    cfg = RolloutConfig(**{"M": 5, "N": 2, "Z": 2, "k": 3, "alpha": 1.0, "max_response_tokens": 40,
                           "max_tool_calls": 2, **cfg_kw})  # fmt: skip
    chats = [[{"role": "user", "content": q}] for q in ("What is 6 times 7?", "Compute 17 * 23.")]
    prompts = [
        tok.encode(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)) for c in chats
    ]
    groups = rollout_groups(engine, tok, parser, executor, prompts, cfg, seed=5)
    assert engine.sequences == {}  # every sequence released
    for g, prompt in zip(groups, prompts):
        g.check()  # every child's prefix equals its parent's tokens up to the fork
        assert len(g.trajectories) == cfg.M
        assert g.stats["branches"] + g.stats["topups"] == cfg.M - cfg.N
        assert len([t for t in g.trajectories if t.parent is not None]) == g.stats["branches"]
        for t in g.trajectories:
            assert t.finish_reason in ("eos", "answer", "length", "tool_limit")
            assert len(t) <= cfg.max_response_tokens and len(t.tool_calls) <= cfg.max_tool_calls
            for c in t.tool_calls:
                assert c.error is None and c.result.strip() == "42" and c.latency_s > 0
                assert (
                    t.tokens[c.start : c.end] == tok.encode(parser.format_result(c.result))[: c.end - c.start]
                )
            assert sum(t.loss_mask) == len(t) - sum(c.end - c.start for c in t.tool_calls)
            # The rollout's log-probs and entropies are the model's on the exact tokens (fp64
            # reference, 1e-4): shared KV and forks conditioned every branch on its true prefix.
            with torch.no_grad():
                logits = model(torch.tensor([prompt + t.tokens])).logits[0, len(prompt) - 1 : -1].double()
            logp = torch.log_softmax(logits, -1)
            own = torch.tensor(t.loss_mask, dtype=torch.bool)
            ref_lp = logp.gather(-1, torch.tensor(t.tokens)[:, None])[:, 0][own]
            ref_h = -(logp.exp() * logp).sum(-1)[own]
            assert torch.allclose(torch.tensor(t.logprobs).double()[own], ref_lp, atol=1e-4)
            assert torch.allclose(torch.tensor(t.entropies).double()[own], ref_h, atol=1e-4)
    assert engine.stats.get("recomputed_tokens", 0) == 0
    return groups


def test_end_to_end_tiny_model_branches():
    groups = tiny_rollout("llama", InstantPython())
    assert rollout_stats(groups)["arpo/branches_per_prompt"] > 0


def test_end_to_end_tiny_model_grpo():
    groups = tiny_rollout("qwen3", InstantPython(), M=3, N=3)
    assert all(t.parent is None for g in groups for t in g.trajectories)
    assert rollout_stats(groups)["tools/calls_per_traj"] > 0


@pytest.mark.slow
def test_end_to_end_tiny_model_with_python_sandbox():
    from arpo.config.tools import PythonToolConfig
    from arpo.tools.executor import ToolExecutor
    from arpo.tools.python_tool import PythonTool
    from arpo.tools.registry import ToolRegistry

    registry = ToolRegistry([PythonTool(PythonToolConfig(timeout_s=10))])
    with ToolExecutor(registry, workers=2) as executor:
        groups = tiny_rollout("qwen2", executor)
    stats = rollout_stats(groups)
    assert stats["tools/error_rate"] == 0.0 and stats["arpo/branches_per_prompt"] > 0


@pytest.mark.parametrize(
    "fmt, bad_call, good_call",
    [
        ("tags", "<python>  </python>", "<python>1 + 1</python>"),
        ("hermes", '<tool_call>{"name": "python"</tool_call>', '<tool_call>{"name": "python", '
         '"arguments": {"code": "1 + 1"}}</tool_call>'),
    ],
)  # fmt: skip
def test_real_parsers_and_executor(fmt, bad_call, good_call):
    from arpo.config.tools import PythonToolConfig
    from arpo.tools.executor import ToolExecutor
    from arpo.tools.parsers import make_parser
    from arpo.tools.python_tool import PythonTool
    from arpo.tools.registry import ToolRegistry

    registry = ToolRegistry([PythonTool(PythonToolConfig(timeout_s=10))])
    parser = make_parser(fmt, registry)
    engine = ScriptedEngine([bad_call, good_call, "so <answer>2</answer> and more"], [1.0, 1.0, 1.0])
    cfg = RolloutConfig(M=1, N=1, k=2, max_response_tokens=2000)
    with ToolExecutor(registry, workers=1) as executor:
        (g,) = rollout_groups(engine, TOK, parser, executor, [[1]], cfg, seed=0)
    (t,) = g.trajectories
    bad, good = t.tool_calls
    assert bad.error and bad.result.startswith("Error") and good.error is None and good.result.strip() == "2"
    assert t.finish_reason == "answer" and t.text.endswith("<answer>2</answer>")
    assert good.result == "2\n" and good.latency_s > 0  # the last expression is printed
    expect = bad_call + parser.format_result(bad.result) + good_call + parser.format_result("2\n")
    assert t.text == expect + "so <answer>2</answer>"  # ends at the answer's closing tag
    check_masks_with(g, parser)


class SearchTagParser(TagParser):
    """`<call>q</call>` searches for q."""

    def parse(self, text):
        call = super().parse(text)
        return call and ToolCall("search", {"query": call.arguments.get("x", "")}, raw=call.raw)


def test_a_hanging_search_api_costs_one_deadline_per_call_and_the_rollout_goes_on(tmp_path):
    from arpo.config.tools import SearchToolConfig
    from arpo.tools.executor import ToolExecutor
    from arpo.tools.registry import ToolRegistry
    from arpo.tools.search_tool import SearchTool
    from tests.test_tools_search import _hang, _raw_server

    url, stop, listener = _raw_server(_hang)
    search = SearchToolConfig(backend="http", url=url, cache=str(tmp_path / "c.sqlite"), http_timeout_s=0.5)
    engine = ScriptedEngine([T0, "bb<call>2</call>", "<answer>x</answer>"], [1.0, 1.0, 1.0])
    cfg = RolloutConfig(M=2, N=2, k=2, max_response_tokens=400)
    try:
        with ToolExecutor(ToolRegistry([SearchTool(search)]), workers=4) as executor:
            groups = rollout_groups(engine, TOK, SearchTagParser(), executor, [[1], [2]], cfg, seed=0)
    finally:
        stop.set()
        listener.close()
    calls = [c for g in groups for t in g.trajectories for c in t.tool_calls]
    assert len(calls) == 8 and all(0.5 <= c.latency_s < 3.0 for c in calls), [c.latency_s for c in calls]
    assert all(t.finish_reason == "answer" for g in groups for t in g.trajectories)
    assert rollout_stats(groups)["tools/timeout_rate"] == 1.0
