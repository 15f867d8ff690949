"""Rollout: the ARPO rollout (entropy-based branching after tool calls, tree records), the engine
protocol it drives (interface.py) with the bookkeeping both engines share, and the engines
themselves in their own packages: `native/` (paged sampler) and `vllm/`."""
