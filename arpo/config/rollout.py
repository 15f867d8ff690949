"""`rollout`: the ARPO rollout (group size, branching), sampling, and each engine's own section."""

from dataclasses import dataclass, field

from arpo.errors import ConfigError


@dataclass
class SamplerConfig:
    """The native paged sampler (`rollout.engine=native`)."""

    block_size: int = 16  # tokens per KV block (flash-attn's paged path needs a multiple of 256)
    # KV cache capacity in blocks; 0 sizes it from kv_cache_tokens.
    num_blocks: int = 0
    kv_cache_tokens: int = 32768
    max_batch_seqs: int = 64  # sequences advanced per step
    max_prefill_tokens: int = 4096  # prompt / tool-result tokens computed per step (chunked prefill)
    device: str = "auto"  # "auto": the model's device
    seed: int = 0  # the engine generator, used by sequences without their own seed
    # Weights and KV cache dtype: "auto" is the model's; "bfloat16" runs a cast copy of a float32
    # policy (faster where the CPU has bf16 matmul units; log-probs then differ from the trainer's).
    dtype: str = field(default="auto", metadata={"choices": ("auto", "bfloat16")})
    # torch.compile the decode step per power-of-two batch bucket (a compile per bucket at first use).
    compile_decode: bool = False


@dataclass
class VllmConfig:
    """The vLLM backend (`rollout.engine=vllm`): one in-process engine per rank, colocated with training."""

    tensor_parallel_size: int = 1  # under torchrun the ranks form world / tp data-parallel engines
    gpu_memory_utilization: float = 0.4  # GPU memory share for weights + KV cache; training keeps the rest
    # KV cache size in GiB; 0: vLLM sizes it from gpu_memory_utilization on GPU, 1 GiB on CPU (vLLM's
    # own CPU sizing would take almost all host memory, leaving none for training).
    kv_cache_gib: float = 0.0
    block_size: int = 0  # KV block size in tokens; 0: the platform's default (CPU attention needs 32k)
    max_model_len: int = 0  # 0: data.max_prompt_tokens + rollout.max_response_tokens
    max_num_seqs: int = 256
    enforce_eager: bool = True  # CUDA graphs / torch.compile cost start-up time; worth it for long runs
    # exact: full-vocabulary entropy from a logits processor (fused kernel); topk: approximated from
    # the top `topk_logprobs` log-probs (the rest of the mass spread evenly), log-probs after top-k/top-p.
    entropy: str = field(default="exact", metadata={"choices": ("exact", "topk")})
    topk_logprobs: int = 20
    sleep: bool = True  # free the engine's GPU memory during the update where vLLM supports sleep mode


@dataclass
class RolloutConfig:
    """ARPO rollout (the branching rules are in docs/design.md); N == M is plain GRPO."""

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
    # Tool-result tokens one trajectory may read in all; past it, results become a short notice.
    # 0: bounded only by max_response_tokens.
    max_tool_tokens: int = 0
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)

    def validate(self) -> None:
        """Numbers the rollout cannot run with, as one-line errors."""
        if self.M < 1 or not 1 <= self.N <= self.M:
            raise ConfigError(f"rollout needs 1 <= N <= M, got N={self.N}, M={self.M}")
        if self.k < 1 or self.Z < 1:
            raise ConfigError(f"rollout.k and rollout.Z must be at least 1, got k={self.k}, Z={self.Z}")
        if self.max_tool_tokens < 0:
            raise ConfigError(
                f"rollout.max_tool_tokens must be >= 0 (0: no limit), got {self.max_tool_tokens}"
            )
        if self.max_response_tokens < 1 or self.max_tool_calls < 0:
            raise ConfigError(
                f"rollout.max_response_tokens must be >= 1 and max_tool_calls >= 0, got "
                f"{self.max_response_tokens} and {self.max_tool_calls}"
            )
