"""Ahead-of-time compilation of the fused linear kernels for a CUDA target, on any machine (no GPU).

    stats = compile_stats("forward", torch.bfloat16, config, capability=90)
    # {"kernel", "dtype", "config", "target", "registers", "spill_stores", "spill_loads",
    #  "stack_bytes", "shared_bytes", "seconds"}

Triton lowers the kernel to PTX and runs the `ptxas` that ships in the triton wheel (capability 90
compiles for sm_90a); the figures come from ptxas' own report. Argument types and alignment follow what
the launch in `_linear_triton.py` specialises on (16-byte aligned pointers, H and row strides multiples
of 16). `ptxas_available()` is False where the wheel has no ptxas: callers skip then.
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

from ._config import PINNED, TileConfig
from ._linear_triton import KERNELS, precision

_TYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
_INPUTS = ("h_ptr", "w_ptr", "bias_ptr", "dz_ptr")
_CONSTEXPRS = ("PRECISION", "BLOCK_N", "BLOCK_V", "BLOCK_H", "HAS_BIAS", "HAS_SOFTCAP")
_ALIGNED = ("H", "stride_h", "stride_w", "stride_dz")
H100_SHARED_BYTES = 227 * 1024  # opt-in shared memory per block on H100 / H200 (sm_90)


def ptxas_available() -> bool:
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _source(kernel: str, dtype: torch.dtype, config: TileConfig) -> ASTSource:
    fn = KERNELS[kernel]
    signature = {}
    for name in fn.arg_names:
        if name in _CONSTEXPRS:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*" + (
                _TYPES[dtype] if name in _INPUTS else "i64" if name == "y_ptr" else "fp32"
            )
        else:
            signature[name] = "fp32" if name in ("inv_temp", "softcap") else "i32"
    constexprs = {"PRECISION": precision(dtype), "BLOCK_N": config.block_n}
    constexprs |= {"HAS_BIAS": False, "HAS_SOFTCAP": False}
    constexprs |= {"BLOCK_V": config.block_v, "BLOCK_H": config.block_h}
    aligned = [i for i, name in enumerate(fn.arg_names) if name.endswith("_ptr") or name in _ALIGNED]
    return ASTSource(fn, signature, constexprs, {(i,): [["tt.divisibility", 16]] for i in aligned})


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
    target = GPUTarget("cuda", capability, 32)
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    log = io.StringIO()
    start = time.perf_counter()
    # A private cache: a cached binary would skip ptxas, and with it the report.
    with tempfile.TemporaryDirectory() as cache, contextlib.redirect_stdout(log):
        with triton.knobs.cache.scope(), triton.knobs.nvidia.scope():
            triton.knobs.cache.dir = cache
            triton.knobs.nvidia.dump_ptxas_log = True
            binary = triton.compile(_source(kernel, dtype, config), target=target, options=options)
    return {
        "kernel": kernel,
        "dtype": _TYPES[dtype],
        "config": str(config),
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

    for stats in pinned_stats():
        print(json.dumps(stats), flush=True)
