"""The agent: the one path from dataset examples to scored trajectory groups, used by `arpo train`
and `arpo eval` alike. Examples become chat prompts, the rollout engine samples trajectories that
call tools through the parser and executor, and the reward scores each trajectory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from arpo.agent.prompts import prompt_ids
from arpo.config.rollout import RolloutConfig
from arpo.data import Example
from arpo.rollout.arpo_rollout import rollout_groups
from arpo.rollout.interface import RolloutEngine
from arpo.rollout.tree import Group, Trajectory
from arpo.tools.executor import ToolExecutor


@dataclass
class Agent:
    tokenizer: Any
    engine: RolloutEngine
    parser: Any  # reads tool calls out of generated text and renders their results
    executor: ToolExecutor
    reward_fn: Any  # (text, ground_truth, extra) -> {"score": float, ...}
    result_max_tokens: int = 0  # tokens of one tool result the model reads (0: no bound)

    def generate(
        self, examples: list[Example], rollout: RolloutConfig, seed: int, group_ids: list[int]
    ) -> list[Group]:
        """Trajectory groups of `examples`; seeds derive from (seed, group id), so a group's rollout
        does not depend on which rank or batch it ran in."""
        prompts = [prompt_ids(self.tokenizer, ex, self.parser) for ex in examples]
        return rollout_groups(
            self.engine,
            self.tokenizer,
            self.parser,
            self.executor,
            prompts,
            rollout,
            seed,
            group_ids=group_ids,
            result_max_tokens=self.result_max_tokens,
        )

    def score(self, groups: list[Group], examples: list[Example]) -> None:
        """Set every trajectory's reward (and the reward's details) from its example's ground truth."""
        for group, ex in zip(groups, examples):
            group.ground_truth, group.extra = ex.ground_truth, {**ex.extra, "data_source": ex.data_source}
            for traj in group.trajectories:
                extra = {
                    **ex.extra,
                    "data_source": ex.data_source,
                    "prompt": ex.prompt_messages,
                    "tools_used": [call.name for call in traj.tool_calls],
                }
                out = self.reward_fn(traj.text, ex.ground_truth, extra)
                traj.reward, traj.reward_info = out["score"], out

    def run(
        self, examples: list[Example], rollout: RolloutConfig, seed: int, group_ids: list[int]
    ) -> list[Group]:
        """Scored trajectory groups of `examples`."""
        groups = self.generate(examples, rollout, seed, group_ids)
        self.score(groups, examples)
        return groups


def accuracy_of(traj: Trajectory) -> float:
    """The reward's `acc` (exact match, F1 or math equivalence, as the example requires); a reward
    without one counts a positive score as correct. The one accuracy rule of train and eval."""
    return float(traj.reward_info.get("acc", traj.reward > 0))


def accuracy_metric(traj: Trajectory) -> str:
    """What `accuracy_of` measured for `traj`, as reports name it."""
    return traj.reward_info.get("acc_metric", "acc" if "acc" in traj.reward_info else "positive reward")


def sampled(rollout: RolloutConfig, temperature: float, samples: int) -> RolloutConfig:
    """`samples` independent trajectories per prompt at `temperature` (0: greedy), no branching."""
    return dataclasses.replace(rollout, M=samples, N=samples, temperature=temperature, top_p=1.0, top_k=0)


def greedy(rollout: RolloutConfig) -> RolloutConfig:
    """One greedy trajectory per prompt, no branching."""
    return sampled(rollout, temperature=0.0, samples=1)
