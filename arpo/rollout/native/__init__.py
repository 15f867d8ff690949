"""The native paged sampler: `NativeEngine` (continuous batching, copy-on-write forks) over a block
manager, a model runner with paged attention, RoPE and KV block ops, and a sampler."""

from arpo.rollout.native.engine import NativeEngine

__all__ = ["NativeEngine"]
