from dataclasses import dataclass, field


@dataclass
class SamplerConfig:
    """The native paged sampler (issue: native sampler)."""

    block_size: int = 16
    # KV cache capacity in blocks; 0 sizes it from max_batch_tokens.
    num_blocks: int = 0
    max_batch_seqs: int = 64
    max_prefill_tokens: int = 4096
    device: str = "auto"


@dataclass
class RolloutConfig:
    """ARPO rollout (design section 2); N == M is plain GRPO."""

    engine: str = field(default="native", metadata={"choices": ("native", "vllm")})
    M: int = 8  # trajectories per prompt (group size)
    N: int = 4  # global samples started per prompt; the rest are branches
    k: int = 20  # tokens whose mean entropy measures H_init and H_t
    alpha: float = 0.5
    beta: float = 0.2
    tau: float = 0.5
    rule: str = field(default="threshold", metadata={"choices": ("threshold", "sample")})
    Z: int = 2  # branches forked per branching decision
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_response_tokens: int = 256  # includes tool-result tokens
    max_tool_calls: int = 3
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
