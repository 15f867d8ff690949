"""The root of the config tree: one section per component, each defined in its own module here."""

from __future__ import annotations

from dataclasses import dataclass, field

from arpo.config.algo import AlgoConfig
from arpo.config.data import DataConfig
from arpo.config.eval import EvalConfig
from arpo.config.model import ModelConfig
from arpo.config.reward import RewardConfig
from arpo.config.rollout import RolloutConfig
from arpo.config.tools import ToolsConfig
from arpo.config.trainer import TrainerConfig
from arpo.errors import ConfigError


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    run_dir: str = "runs/default"

    def validate(self) -> None:
        """Rules that join two sections (each section has checked itself already)."""
        mini, batch = self.trainer.ppo_mini_batch, self.data.prompts_per_step
        if mini < 0 or (mini and batch % mini):
            raise ConfigError(
                f"trainer.ppo_mini_batch={mini} must divide data.prompts_per_step={batch} "
                "(0: the whole batch)"
            )
        if not self.eval.greedy and self.eval.k > 1 and self.rollout.temperature <= 0:
            raise ConfigError("eval.k > 1 needs rollout.temperature > 0 (temperature 0 repeats one answer)")
