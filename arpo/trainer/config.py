from dataclasses import dataclass, field


@dataclass
class TrainerConfig:
    steps: int = 20
    lr: float = 1e-6
    warmup_steps: int = 2
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ppo_epochs: int = 1
    save_every: int = 10
    keep_last: int = 2
    resume: str = field(default="auto", metadata={"choices": ("auto", "never")})
    eval_every: int = 0
    log_samples: int = 2
    wandb: str = field(default="offline", metadata={"choices": ("offline", "online", "disabled")})
    activation_checkpointing: bool = False
    mixed_precision: bool = True
