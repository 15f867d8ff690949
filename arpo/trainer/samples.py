"""The rows of `samples.jsonl` (and the wandb generations table): a seeded random sample of a step's
trajectories, failures as likely as successes, each with what it takes to judge it by eye: the
prompt, the response, the ground truth, the reward and its details, the advantage it trained with
and its tool calls."""

from __future__ import annotations

import random

from arpo.rollout.tree import Group, ToolCallRecord

RESULT_CHARS = 500  # a tool result is cut to this many characters in the sample (the run keeps tokens)


def _call_row(call: ToolCallRecord) -> dict:
    """A tool call as logged: what was asked, what the model read, and what the budgets cut."""
    return {
        "name": call.name,
        "arguments": call.arguments,
        "result": call.result[:RESULT_CHARS],
        "error": call.error,
        "result_tokens": call.result_tokens,
        "truncated": call.truncated,
    }


def sample_rows(
    tokenizer, groups: list[Group], advantages: list[list[float]], n: int, seed: int
) -> list[dict]:
    """`n` trajectories drawn uniformly from all of the step's (seeded by the step), in draw order."""
    pairs = [(gi, i) for gi, g in enumerate(groups) for i in range(len(g.trajectories))]
    chosen = random.Random(seed).sample(pairs, min(n, len(pairs)))
    rows = []
    for gi, i in chosen:
        group, traj = groups[gi], groups[gi].trajectories[i]
        info = {k: v for k, v in traj.reward_info.items() if k != "score"}
        rows.append(
            {
                "group": group.group_id,
                "trajectory": traj.id,
                "prompt": tokenizer.decode(group.prompt_ids),
                "response": traj.text,
                "ground_truth": group.ground_truth,
                "reward": traj.reward,
                "reward_info": info,
                "advantage": advantages[gi][i],
                "finish_reason": traj.finish_reason,
                "calls": [_call_row(call) for call in traj.tool_calls],
                "branches": group.stats.get("branches", 0),
            }
        )
    return rows
