"""ARPO rollout (docs/design.md, "Rollout rules"): every prompt's trajectories generate concurrently
in one engine; a trajectory that closes a tool call leaves the decode batch until its result arrives; entropy
after a tool result decides whether to fork branches that share the prefix's KV cache.

Choices where the design is silent (each keeps the design's intent, none is from the official code):

- `H_init` is the mean entropy of a root's first `k` generated tokens, or of all tokens before its
  first tool call when that comes sooner (the first decision needs `H_init`, so it cannot wait for
  tokens after a result). Branches inherit it: they share the root's first tokens.
- `H_t` is the mean entropy of the first `k` tokens after a tool result, or of fewer when the
  trajectory closes its next tool call or ends sooner: the decision is always taken before the next
  tool call runs (the official code decides one call late) and before the trajectory is released.
  A result that fills the response budget leaves no tokens to measure, so no decision is taken.
- The tool-call limit counts every call the model closes, malformed ones included. The model may
  still answer after its last allowed call (that result is inserted); closing one more call ends
  the trajectory with `tool_limit`, and the unexecuted call stays in its tokens.
- EOS is given to the engine as a *stop* token (pause), not a finish token, and the engine's own
  length limit sits one token beyond the response budget, so a trajectory that ends inside its
  `k`-token window keeps its KV cache until its branching decision has forked from it.
- A tool result first meets the token budgets (`tools.result_max_tokens` per result, head and
  tail kept; `rollout.max_tool_tokens` per trajectory, counting inherited results); one that
  would still overflow the response budget is cut to the room left; a trajectory with no room
  left ends with `length`.
- Every sequence samples from its own seeded stream, keyed by (seed, group, trajectory), and every
  `sample`-rule decision from one keyed by (seed, group, trajectory, call): a rollout repeats
  exactly for the same seed and the same order of tool completions, whatever the batching.
- A prompt's global samples (and its top-ups) start as one sequence plus forks at the prompt's
  end, so the prompt is prefilled once.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass

from arpo.config.loader import validate
from arpo.config.rollout import RolloutConfig
from arpo.rollout.branching import (
    branch_score,
    decision_rng,
    derived_seed,
    entropy_delta,
    mean_entropy,
    should_branch,
)
from arpo.rollout.interface import RolloutEngine, SamplingParams, TokenEvent
from arpo.rollout.tree import Group, ToolCallRecord, Trajectory
from arpo.tools.budget import ResultBudget

# Every format's final answer closes with this tag; pausing there ends the trajectory at its answer
# instead of sampling on to EOS (as the paper's rollout does).
ANSWER_STOP = "</answer>"


@dataclass
class _GroupState:
    group: Group
    active: int = 0  # trajectories generating or waiting on a tool


@dataclass
class _Live:
    """A trajectory still held by the engine."""

    traj: Trajectory
    state: _GroupState
    seq: int
    segment_start: int  # response index after the last tool result: the parser reads from here
    window_start: int | None = None  # response index after the last tool result while H_t is measured


class _Rollout:
    def __init__(self, engine, tokenizer, parser, executor, cfg, seed, vocab_size, eos_token_ids, budget):
        self.engine: RolloutEngine = engine
        self.budget: ResultBudget = budget
        self.tokenizer = tokenizer
        self.parser = parser
        self.executor = executor
        self.cfg: RolloutConfig = cfg
        self.seed = seed
        self.vocab_size = vocab_size
        self.eos = set(eos_token_ids)
        self.live: dict[int, _Live] = {}
        self.pending: dict[Future, tuple[_Live, object]] = {}
        self.params = SamplingParams(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            max_new_tokens=cfg.max_response_tokens + 1,
            stop_token_ids=sorted(self.eos),
            stop=list(dict.fromkeys([*parser.stop_strings(), ANSWER_STOP])),
            eos_token_ids=[],
        )

    # -- driving the engine -------------------------------------------------------------------

    def run(self, prompts: list[list[int]], group_ids: list[int]) -> list[Group]:
        states = []
        for g, prompt in zip(group_ids, prompts, strict=True):
            state = _GroupState(Group(group_id=g, prompt_ids=list(prompt), trajectories=[]))
            state.group.stats = {"branches": 0, "branch_events": 0, "dH": [], "topups": 0}
            states.append(state)
            self._start_roots(state, self.cfg.N)
        while self.live:
            if self.engine.has_runnable():
                for event in self.engine.step():
                    self._on_token(event)
            elif self.pending:
                wait(list(self.pending), return_when=FIRST_COMPLETED)
            else:
                raise RuntimeError(
                    f"rollout stalled: sequences {sorted(self.live)} are neither runnable nor waiting"
                )
            self._collect_tool_results()
        for state in states:
            state.group.stats["tool_calls_per_traj"] = [
                len(traj.tool_calls) for traj in state.group.trajectories
            ]
            state.group.check()
        return [s.group for s in states]

    def _start_roots(self, state: _GroupState, n: int) -> None:
        """`n` global samples of the prompt, started together: one is added and the others fork
        from it at the prompt's end, so the prompt is prefilled once and its KV shared."""
        group = state.group
        ids = [len(group.trajectories) + i for i in range(n)]
        seeds = [derived_seed(self.seed, group.group_id, i) for i in ids]
        first = self.engine.add(list(group.prompt_ids), dataclasses.replace(self.params, seed=seeds[0]))
        seqs = [first]
        if n > 1:
            seqs += self.engine.fork(first, n - 1, num_tokens=len(group.prompt_ids), seeds=seeds[1:])
        for tid, seq in zip(ids, seqs, strict=True):
            traj = Trajectory(id=tid)
            group.trajectories.append(traj)
            self._track(_Live(traj, state, seq, segment_start=0))

    def _track(self, live: _Live) -> None:
        self.live[live.seq] = live
        live.state.active += 1

    def _on_token(self, event: TokenEvent) -> None:
        live = self.live[event.seq_id]
        traj = live.traj
        traj.tokens.append(event.token_id)
        traj.loss_mask.append(1)
        traj.logprobs.append(event.logprob)
        traj.entropies.append(event.entropy)
        if live.window_start is not None and len(traj.tokens) - live.window_start >= self.cfg.k:
            self._decide(live)
        if event.status == "finished":  # engine-side end (its own limits): EOS or length
            self._end(live, "eos" if event.finish_reason == "eos" else "length")
        elif event.status == "paused":
            self._on_pause(live, event.token_id)
        elif len(traj.tokens) >= self.cfg.max_response_tokens:
            self._end(live, "length")

    def _on_pause(self, live: _Live, token_id: int) -> None:
        traj = live.traj
        if token_id in self.eos:
            return self._end(live, "eos")
        segment = self.tokenizer.decode(traj.tokens[live.segment_start :], skip_special_tokens=False)
        if self.parser.final_answer(segment) is not None:
            return self._end(live, "answer")
        call = self.parser.parse(segment)
        full = len(traj.tokens) >= self.cfg.max_response_tokens
        if call is None:  # a stop string that closed no call: keep generating
            return self._end(live, "length") if full else self.engine.resume(live.seq, [])
        if len(traj.tool_calls) >= self.cfg.max_tool_calls:
            return self._end(live, "tool_limit")
        if full:
            return self._end(live, "length")
        if live.window_start is not None:
            self._decide(live)
        # Malformed calls go to the executor too: it answers them with an error result.
        self.pending[self.executor.submit(call)] = (live, call)

    def _collect_tool_results(self) -> None:
        for future in [f for f in self.pending if f.done()]:
            live, call = self.pending.pop(future)
            try:
                r = future.result()
            except Exception as exc:  # a crashing executor must not kill the other trajectories
                msg = f"tool {call.name} failed: {type(exc).__name__}: {exc}"
                self._insert_result(live, call, msg, msg, 0.0, False)
            else:
                self._insert_result(live, call, r.text, r.error, r.latency_s, r.timed_out)

    def _insert_result(self, live: _Live, call, text: str, error, latency_s: float, timed_out: bool) -> None:
        traj = live.traj
        shown = self.budget.bound(text, used=len(traj.loss_mask) - sum(traj.loss_mask))
        ids = self.tokenizer.encode(self.parser.format_result(shown.text), add_special_tokens=False)
        ids = list(ids[: self.cfg.max_response_tokens - len(traj.tokens)])
        start = len(traj.tokens)
        traj.tokens.extend(ids)
        traj.loss_mask.extend([0] * len(ids))
        traj.logprobs.extend([0.0] * len(ids))
        traj.entropies.extend([0.0] * len(ids))
        traj.tool_calls.append(
            ToolCallRecord(
                name=call.name,
                arguments=call.arguments,
                result=shown.text,
                error=error or None,
                latency_s=latency_s,
                start=start,
                end=len(traj.tokens),
                timed_out=timed_out,
                result_tokens=shown.tokens,
                truncated=shown.truncated,
            )
        )
        live.segment_start = len(traj.tokens)
        if len(traj.tokens) >= self.cfg.max_response_tokens:
            return self._end(live, "length")
        self.engine.resume(live.seq, ids)
        live.window_start = len(traj.tokens)

    # -- branching ----------------------------------------------------------------------------

    def _decide(self, live: _Live) -> None:
        """Close the H_t window opened by the last tool result and fork if the rule says so."""
        traj, cfg, group = live.traj, self.cfg, live.state.group
        fork_pos, live.window_start = live.window_start, None
        after = traj.entropies[fork_pos : fork_pos + cfg.k]
        if not after:
            return
        h_init = mean_entropy(traj.entropies[: min(cfg.k, traj.tool_calls[0].start)])
        dh = entropy_delta(mean_entropy(after), h_init, self.vocab_size)
        record = traj.tool_calls[-1]
        record.dH = dh
        group.stats["dH"].append(dh)
        room = cfg.M - len(group.trajectories)
        if room <= 0:
            return
        p = branch_score(dh, cfg.alpha, cfg.beta)
        rng = decision_rng(self.seed, group.group_id, traj.id, len(traj.tool_calls) - 1)
        if not should_branch(p, cfg.rule, cfg.tau, rng):
            return
        z = min(cfg.Z, room)
        record.branches = z
        ids = [len(group.trajectories) + i for i in range(z)]
        seeds = [derived_seed(self.seed, group.group_id, i) for i in ids]
        children = self.engine.fork(live.seq, z, num_tokens=len(group.prompt_ids) + fork_pos, seeds=seeds)
        for tid, seq in zip(ids, children, strict=True):
            child = Trajectory(
                id=tid,
                parent=traj.id,
                fork_pos=fork_pos,
                tokens=traj.tokens[:fork_pos],
                loss_mask=traj.loss_mask[:fork_pos],
                logprobs=traj.logprobs[:fork_pos],
                entropies=traj.entropies[:fork_pos],
                tool_calls=[dataclasses.replace(c) for c in traj.tool_calls],
            )
            group.trajectories.append(child)
            self._track(_Live(child, live.state, seq, segment_start=fork_pos))
        group.stats["branches"] += z
        group.stats["branch_events"] += 1

    # -- endings ------------------------------------------------------------------------------

    def _end(self, live: _Live, reason: str) -> None:
        if live.window_start is not None:
            self._decide(live)  # before release: children fork from this sequence's KV
        traj = live.traj
        traj.finish_reason = reason
        traj.text = self.tokenizer.decode(traj.tokens, skip_special_tokens=True)
        self.engine.release(live.seq)
        del self.live[live.seq]
        state = live.state
        state.active -= 1
        missing = self.cfg.M - len(state.group.trajectories)
        if state.active == 0 and missing > 0:  # top up once, all together (docs/design.md)
            state.group.stats["topups"] += missing
            self._start_roots(state, missing)


def rollout_groups(
    engine: RolloutEngine,
    tokenizer,
    parser,
    executor,
    prompts: list[list[int]],
    cfg: RolloutConfig,
    seed: int,
    *,
    group_ids: list[int] | None = None,
    vocab_size: int | None = None,
    eos_token_ids: list[int] | None = None,
    result_max_tokens: int = 0,
) -> list[Group]:
    """Roll out one group of `cfg.M` trajectories per prompt (token ids), ARPO branching included.

    `group_ids` (default 0, 1, ...) name the groups and key their random streams, which therefore
    do not depend on the batch a prompt runs in. `vocab_size` is the model's (the entropies'
    support); default: `engine.vocab_size`, else the tokenizer's length. `eos_token_ids` default to
    the tokenizer's EOS. `result_max_tokens` bounds each tool result (0: no bound).
    """
    validate(cfg, "rollout.")  # callers of the library may pass a config the loader never saw
    if group_ids is None:
        group_ids = list(range(len(prompts)))
    if len(group_ids) != len(prompts) or len(set(group_ids)) != len(group_ids):
        raise ValueError(f"need one distinct group id per prompt, got {len(group_ids)} for {len(prompts)}")
    if vocab_size is None:
        vocab_size = getattr(engine, "vocab_size", None) or len(tokenizer)
    if eos_token_ids is None:
        eos_token_ids = [tokenizer.eos_token_id]
    budget = ResultBudget(tokenizer, result_max_tokens, cfg.max_tool_tokens)
    rollout = _Rollout(engine, tokenizer, parser, executor, cfg, seed, vocab_size, eos_token_ids, budget)
    return rollout.run(prompts, group_ids)
