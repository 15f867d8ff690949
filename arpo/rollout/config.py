from dataclasses import dataclass, field


@dataclass
class SamplerConfig:
    """The native paged sampler (issue: native sampler)."""

    block_size: int = 16  # tokens per KV block (flash-attn's paged path needs a multiple of 256)
    # KV cache capacity in blocks; 0 sizes it from kv_cache_tokens.
    num_blocks: int = 0
    kv_cache_tokens: int = 32768
    max_batch_seqs: int = 64  # sequences advanced per step
    max_prefill_tokens: int = 4096  # prompt / tool-result tokens computed per step (chunked prefill)
    device: str = "auto"  # "auto": the model's device
    seed: int = 0  # the engine generator, used by sequences without their own seed


@dataclass
class RolloutConfig:
    """ARPO rollout (design section 2); N == M is plain GRPO."""

    engine: str = field(default="native", metadata={"choices": ("native", "vllm")})
    M: int = 8  # trajectories per prompt (group size)
    N: int = 4  # global samples started per prompt; the rest are branches
    k: int = 20  # tokens whose mean entropy gives H_init and H_t (fewer if a call or the end comes first)
    alpha: float = 0.5
    beta: float = 0.2
    tau: float = 0.5
    # threshold: branch when P = alpha + beta * dH > tau (paper); sample: with probability clip(P, 0, 1)
    rule: str = field(default="threshold", metadata={"choices": ("threshold", "sample")})
    Z: int = 2  # branches forked per branching decision
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_response_tokens: int = 96  # includes tool-result tokens
    # Calls per trajectory (malformed ones count); the model may still answer after the last one,
    # and closing one more call ends the trajectory with finish_reason "tool_limit".
    max_tool_calls: int = 3
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
