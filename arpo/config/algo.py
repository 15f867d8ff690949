"""`algo`: advantages (GRPO normalisation, soft/hard attribution over the tree) and the clipped loss."""

from dataclasses import dataclass, field


@dataclass
class AlgoConfig:
    attribution: str = field(default="soft", metadata={"choices": ("soft", "hard")})
    norm_by_std: bool = True
    adv_eps: float = 1e-6  # GRPO: (R - mean) / (std + adv_eps)
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float = 3.0
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    # Log-probs the PPO ratio is taken against: the trainer's forward before the first update
    # (recompute, safe when engine and trainer differ: vLLM, bf16) or the rollout engine's own
    # (rollout: no extra forward pass).
    old_logprobs: str = field(default="recompute", metadata={"choices": ("recompute", "rollout")})
    # Token budget of one packed micro-batch.
    micro_batch_tokens: int = 4096
    # tree: each shared prefix forwarded once (fused loss); flat: linearised trajectories (reference)
    loss_impl: str = field(default="tree", metadata={"choices": ("tree", "flat")})
