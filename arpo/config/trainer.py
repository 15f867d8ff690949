"""`trainer`: steps, optimizer, checkpoints, resume, held-out evaluation during training, logging."""

from dataclasses import dataclass, field

from arpo.errors import ConfigError


@dataclass
class TrainerConfig:
    # Defaults: the embedded default (SmolLM2-135M on `arith`, ~10 minutes on 2 CPU cores).
    steps: int = 16
    lr: float = 1e-5
    warmup_steps: int = 2
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # PPO: prompts per optimizer step (0: the whole batch, one update per rollout batch); the
    # batch's groups are shuffled into mini-batches of this many prompts, `ppo_epochs` times.
    ppo_mini_batch: int = 0
    ppo_epochs: int = 1
    save_every: int = 8
    keep_last: int = 2
    resume: str = field(default="auto", metadata={"choices": ("auto", "never")})
    eval_every: int = 0  # held-out evaluation every N steps (0: only before and after training)
    # Held-out protocol: samples per question at this temperature (0: one greedy answer). The
    # default samples the policy as it is trained (T=1), the distribution RL sharpens.
    eval_temperature: float = 1.0
    eval_samples: int = 2
    # Trajectories per step written to samples.jsonl (and the trackers' generations table), drawn
    # at random with the step's seed: failures as likely as successes.
    log_samples: int = 4
    # Trackers beside metrics.jsonl: wandb and/or tensorboard (`pip install tensorboard`).
    loggers: list[str] = field(default_factory=lambda: ["wandb"])
    # Trajectories per step written with their per-token entropies to trajectories.jsonl (drawn
    # with the seed), for `arpo analyze`.
    log_trajectories: int = 8
    wandb: str = field(default="offline", metadata={"choices": ("offline", "online", "disabled")})
    activation_checkpointing: bool = False
    mixed_precision: bool = True

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"trainer.steps must be >= 1, got {self.steps}")
        unknown = sorted(set(self.loggers) - {"wandb", "tensorboard"})
        if unknown:
            raise ConfigError(f"trainer.loggers: unknown {unknown}; choose from wandb, tensorboard")
        if self.save_every < 0 or self.keep_last < 1:
            raise ConfigError("trainer.save_every must be >= 0 and trainer.keep_last >= 1")
        if self.ppo_epochs < 1:
            raise ConfigError(f"trainer.ppo_epochs must be >= 1, got {self.ppo_epochs}")
