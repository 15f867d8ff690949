"""The vLLM rollout engine: `VllmEngine` (an in-process vLLM per rank) and its exact-entropy logits
processor. vLLM itself is imported only when an engine starts."""

from arpo.rollout.vllm.engine import VllmEngine, require_vllm

__all__ = ["VllmEngine", "require_vllm"]
