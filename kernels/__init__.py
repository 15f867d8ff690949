"""Fused kernels for RL training of LLMs, importable on their own as `arpo.kernels`.

Importing this package loads torch only (triton loads on the first Triton call; never transformers or
the trainer). Public API, each documented in its module:

- `linear_logprob_entropy(hidden, weight, labels, temperature=1.0, ignore_index=-100, impl="auto", *,
  shift=False, softcap=None, bias=None)` (`linear.py`): per-token log-prob of the label and
  full-vocabulary entropy of `softmax(cap(hidden @ weight.T + bias) / T)` for `[..., H]` hidden states
  without materialising the logits; forward and backward.
- `logprob_entropy_from_logits(logits, labels, temperature=1.0, ignore_index=-100, impl="auto")`
  (`from_logits.py`): the same from logits that already exist (the sampler, every decode step).
- `linear_tree_loss(hidden, weight, labels, old_logprob, s_plus, s_minus, w, ref_logprob=None, *, ...)`
  (`tree_loss.py`): the ARPO tree-packed PPO loss (docs/design.md) on top of the fused pass.

`impl` is "auto" (Triton on CUDA tensors, chunked torch on CPU), "triton", "torch" or "reference"
(plain torch on materialised logits, for tests). Bad input raises `KernelInputError`, a `ValueError`.
Triton tile configs: `_config.py` (`ARPO_TRITON_CONFIG` pins one or autotunes).
"""

from ._common import KernelInputError
from .from_logits import logprob_entropy_from_logits, reference_logprob_entropy_from_logits
from .linear import linear_logprob_entropy, reference_linear_logprob_entropy
from .tree_loss import linear_tree_loss, reference_linear_tree_loss, tree_loss_from_logprob

__all__ = [
    "KernelInputError",
    "linear_logprob_entropy",
    "linear_tree_loss",
    "logprob_entropy_from_logits",
    "reference_linear_logprob_entropy",
    "reference_linear_tree_loss",
    "reference_logprob_entropy_from_logits",
    "tree_loss_from_logprob",
]
