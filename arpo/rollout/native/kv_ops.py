"""Paged KV cache block ops: the `csrc/` extension (`torch.ops.arpo.*`) when available, torch otherwise.

The extension is `arpo._C` when `setup.py` built it; with `ARPO_BUILD_EXT=1` it is compiled at
first use instead (`torch.utils.cpp_extension.load`); otherwise the torch fallback runs.

Layouts: `kv_cache` is `[num_layers, 2, num_blocks, block_size, kv_heads, head_dim]` (K then V);
a layer's `k_cache`/`v_cache` are its `[num_blocks, block_size, kv_heads, head_dim]` views, and
`slots[t] = block * block_size + offset`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parents[3] / "csrc"


def _import_built() -> bool:
    """Whether the ops are registered, importing the `setup.py`-built `arpo._C` if needed."""
    try:
        import arpo._C  # noqa: F401  (registers the ops)
    except ImportError:
        pass
    return hasattr(torch.ops, "arpo") and hasattr(torch.ops.arpo, "copy_blocks")


def build_extension(build_dir: str | None = None, verbose: bool = False):
    """JIT-compile the `csrc/` block ops (and the CUDA ones when CUDA is available): `torch.ops.arpo`."""
    if not _import_built():
        from torch.utils.cpp_extension import load

        sources = [str(CSRC / "block_ops.cpp"), str(CSRC / "paged_attention.cpp")]
        if torch.cuda.is_available():
            sources.append(str(CSRC / "block_ops_cuda.cu"))
        if build_dir is not None:
            os.makedirs(build_dir, exist_ok=True)
        load(
            name="arpo_block_ops",
            sources=sources,
            build_directory=build_dir,
            is_python_module=False,
            extra_cflags=["-O3"],
            verbose=verbose,
        )
    return torch.ops.arpo


@functools.cache
def extension():
    """`torch.ops.arpo` when the compiled block ops are available, else None (torch fallback)."""
    if _import_built():
        return torch.ops.arpo
    if os.environ.get("ARPO_BUILD_EXT") == "1":
        return build_extension()
    return None


def copy_blocks_torch(kv_cache: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> None:
    kv_cache[:, :, dst] = kv_cache[:, :, src]


def write_kv_torch(k_cache, v_cache, key, value, slots) -> None:
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, key)
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, value)


def copy_blocks(kv_cache: torch.Tensor, pairs: list[tuple[int, int]]) -> None:
    """Copy block src -> dst in every layer and in both K and V, for each (src, dst) pair."""
    if not pairs:
        return
    src, dst = (torch.tensor(ids, dtype=torch.long, device=kv_cache.device) for ids in zip(*pairs))
    ops = extension()
    (ops.copy_blocks if ops is not None else copy_blocks_torch)(kv_cache, src, dst)


def write_kv(k_cache, v_cache, key: torch.Tensor, value: torch.Tensor, slots: torch.Tensor) -> None:
    """Write each token's `[kv_heads, head_dim]` key/value rows into its slot of the layer's cache."""
    ops = extension()
    (ops.write_kv if ops is not None else write_kv_torch)(k_cache, v_cache, key, value, slots)
