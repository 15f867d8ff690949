"""Ahead-of-time compilation of the Triton kernels for a CUDA target, on any machine (no GPU).

    stats = compile_stats("forward", torch.bfloat16, config, capability=90)
    # {"kernel", "dtype", "config", "target", "registers", "spill_stores", "spill_loads",
    #  "stack_bytes", "shared_bytes", "seconds"}
    stats = row_kernel_stats(capability=90)   # the per-row kernels of `_from_logits_triton.py`

Triton lowers the kernel to PTX and runs the `ptxas` that ships in the triton wheel (capability 90
compiles for sm_90a); the figures come from ptxas' own report. Argument types and alignment follow what
the launches specialise on (16-byte aligned pointers, H and row strides multiples of 16).
`ptxas_available()` is False where the wheel has no ptxas: callers skip then.

The fused linear kernels compile in their pinned configs (`PINNED`: the forward, the forward that keeps
its logit tiles, dz); the row kernels, which have one fixed tile each, in the dtype pairs they run with
(`ROW_KERNELS`): row statistics of bf16 logits (the sampler), dz from bf16 logits into bf16, and dz
from tile-relative fp16 logits into bf16 over the same bytes (the tree loss's gradient-in-forward path).
"""

import contextlib
import io
import os
import re
import tempfile
import time

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import _from_logits_triton as row
from ._config import PINNED, TileConfig
from ._linear_triton import KEPT_LOGITS_DTYPE, KERNELS, VARIANTS, precision

_TYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
_INPUTS = ("h_ptr", "w_ptr", "bias_ptr", "dz_ptr")
_ALIGNED = ("H", "stride_h", "stride_w", "stride_dz", "stride", "stride_d", "stride_logits")
# (kernel name, pointer types that differ from fp32, constexprs) with the launch's defaults: 4 warps,
# 3 stages. dz from plain logits, and from tile-relative fp16 logits with one offset per 64 columns.
_PLAIN = {"BLOCK_V": 1024, "HAS_OFFSETS": False, "TILE_COLS": 1}
_KEPT = {"BLOCK_V": 1024, "HAS_OFFSETS": True, "TILE_COLS": 64}
ROW_KERNELS = [
    ("row stats", row._forward_kernel, {"logits_ptr": torch.bfloat16}, {"BLOCK_V": 4096}),
    ("row dz", row._backward_kernel, {"logits_ptr": torch.bfloat16, "dlogits_ptr": torch.bfloat16}, _PLAIN),
    ("row dz", row._backward_kernel, {"logits_ptr": torch.float16, "dlogits_ptr": torch.bfloat16}, _KEPT),
]
H100_SHARED_BYTES = 227 * 1024  # opt-in shared memory per block on H100 / H200 (sm_90)


def ptxas_available() -> bool:
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _source(fn, pointer_dtypes: dict, constexprs: dict) -> ASTSource:
    """`fn` with pointers of `pointer_dtypes` (labels int64, the rest fp32) and these constexprs."""
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            dtype = pointer_dtypes.get(name)
            signature[name] = "*" + (_TYPES[dtype] if dtype else "i64" if name == "y_ptr" else "fp32")
        else:
            signature[name] = "fp32" if name in ("inv_temp", "softcap") else "i32"
    aligned = [i for i, name in enumerate(fn.arg_names) if name.endswith("_ptr") or name in _ALIGNED]
    return ASTSource(fn, signature, constexprs, {(i,): [["tt.divisibility", 16]] for i in aligned})


def _linear_source(kernel: str, dtype: torch.dtype, config: TileConfig) -> ASTSource:
    constexprs = {"PRECISION": precision(dtype), "BLOCK_N": config.block_n}
    constexprs |= {"HAS_BIAS": False, "HAS_SOFTCAP": False}
    constexprs |= {"BLOCK_V": config.block_v, "BLOCK_H": config.block_h} | VARIANTS[kernel]
    pointers = dict.fromkeys(_INPUTS, dtype) | {"logits_ptr": KEPT_LOGITS_DTYPE[dtype]}
    return _source(KERNELS[kernel], pointers, constexprs)


def _parse_ptxas(log: str) -> dict:
    number = lambda pattern: int(m.group(1)) if (m := re.search(pattern, log)) else 0
    return {
        "registers": number(r"Used (\d+) registers"),
        "spill_stores": number(r"(\d+) bytes spill stores"),
        "spill_loads": number(r"(\d+) bytes spill loads"),
        "stack_bytes": number(r"(\d+) bytes stack frame"),
    }


def compile_stats(kernel: str, dtype: torch.dtype, config: TileConfig, capability: int = 90) -> dict:
    """Compile `kernel` ("forward" or "dz") for `dtype` and `config`; ptxas' resource figures."""
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    source = _linear_source(kernel, dtype, config)
    return _compile(source, options, capability, kernel=kernel, dtype=_TYPES[dtype], config=str(config))


def row_kernel_stats(capability: int = 90) -> list[dict]:
    """`compile_stats`' figures for each of `ROW_KERNELS`."""
    stats = []
    for name, fn, pointers, constexprs in ROW_KERNELS:
        dtypes = "->".join(_TYPES[t] for t in pointers.values())
        source = _source(fn, pointers, constexprs)
        options = {"num_warps": 4, "num_stages": 3}
        config = ",".join(f"{k}={v}" for k, v in constexprs.items()) + ",num_warps=4,num_stages=3"
        stats.append(_compile(source, options, capability, kernel=name, dtype=dtypes, config=config))
    return stats


def _compile(source: ASTSource, options: dict, capability: int, **labels) -> dict:
    target = GPUTarget("cuda", capability, 32)
    log = io.StringIO()
    start = time.perf_counter()
    # A private cache: a cached binary would skip ptxas, and with it the report.
    with tempfile.TemporaryDirectory() as cache, contextlib.redirect_stdout(log):
        with triton.knobs.cache.scope(), triton.knobs.nvidia.scope():
            triton.knobs.cache.dir = cache
            triton.knobs.nvidia.dump_ptxas_log = True
            binary = triton.compile(source, target=target, options=options)
    return {
        **labels,
        "target": f"sm_{capability}" + ("a" if capability == 90 else ""),
        **_parse_ptxas(log.getvalue()),
        "shared_bytes": binary.metadata.shared,
        "seconds": round(time.perf_counter() - start, 1),
    }


def pinned_stats(capability: int = 90) -> list[dict]:
    """`compile_stats` of every kernel and dtype in its pinned config."""
    return [compile_stats(kernel, dtype, config, capability) for (kernel, dtype), config in PINNED.items()]


if __name__ == "__main__":  # one JSON line per pinned config (run without TRITON_INTERPRET)
    import json

    for stats in pinned_stats() + row_kernel_stats():
        print(json.dumps(stats), flush=True)
