"""Tile configs of the fused linear kernels: which one runs, and how many of its programs fit on an SM.

A config is (BLOCK_N, BLOCK_V, BLOCK_H, num_warps, num_stages). The environment variable
`ARPO_TRITON_CONFIG` chooses it:

- unset or `pinned`: the pinned config of each kernel and input dtype (`PINNED`), the one the CPU-side
  compile check verifies for sm_90 (no register spills, shared memory within the H100/H200 limit).
  Every rank runs the same config and a fresh machine compiles one variant per kernel, not a sweep.
- `autotune`: on first use per (kernel, dtype, H, token bucket) each of `CANDIDATES` is compiled;
  configs that spill registers or need more shared memory than the device has are dropped, the rest
  are timed on the call's own buffers (the kernels never accumulate into their outputs) and the
  fastest is kept for the process.
- `BLOCK_N=64,BLOCK_V=128,BLOCK_H=64,num_warps=4,num_stages=4`: that config for every kernel and dtype.

Under the Triton interpreter the default is `INTERPRETER` (large tiles: the interpreter's cost grows
with the number of programs) and the device is modelled as `INTERPRETER_SMS` SMs of one program each.
"""

import dataclasses
import functools
import os

import torch

from ._common import KernelInputError, interpreting

ENV = "ARPO_TRITON_CONFIG"
INTERPRETER_SMS = 2
INTERPRETER_L2_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class TileConfig:
    block_n: int
    block_v: int
    block_h: int
    num_warps: int
    num_stages: int

    def launch_kwargs(self) -> dict:
        return {
            "BLOCK_N": self.block_n,
            "BLOCK_V": self.block_v,
            "BLOCK_H": self.block_h,
            "num_warps": self.num_warps,
            "num_stages": self.num_stages,
        }

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.launch_kwargs().items())


CANDIDATES = [
    TileConfig(128, 128, 64, 8, 2),
    TileConfig(128, 128, 64, 8, 3),
    TileConfig(64, 128, 64, 8, 3),
    TileConfig(64, 128, 64, 8, 4),
    TileConfig(128, 64, 64, 8, 3),
    TileConfig(64, 64, 32, 4, 2),
    TileConfig(32, 64, 32, 4, 2),
]
# Chosen from sm_90a compiles (benchmarks/RESULTS.md): the largest tiles that do not spill. The forward
# keeps z and exp(z) tiles beside the accumulator, so it affords two pipeline stages at 128 x 128 (the
# variant that also stores its logit tiles spills there and at 64 x 128: 64 x 64 with 4 warps);
# fp32 products are exact (`ieee`, no tensor cores), whose accumulators only fit small tiles.
PINNED = {
    ("forward", torch.bfloat16): TileConfig(128, 128, 64, 8, 2),
    ("forward", torch.float16): TileConfig(128, 128, 64, 8, 2),
    ("forward", torch.float32): TileConfig(32, 64, 32, 4, 2),
    ("forward-logits", torch.bfloat16): TileConfig(64, 64, 64, 4, 2),
    ("forward-logits", torch.float16): TileConfig(64, 64, 64, 4, 2),
    ("forward-logits", torch.float32): TileConfig(32, 64, 32, 4, 2),
    ("dz", torch.bfloat16): TileConfig(128, 128, 64, 8, 3),
    ("dz", torch.float16): TileConfig(128, 128, 64, 8, 3),
    ("dz", torch.float32): TileConfig(32, 64, 32, 4, 2),
}
INTERPRETER = TileConfig(64, 128, 64, 4, 1)
_FIELDS = ("BLOCK_N", "BLOCK_V", "BLOCK_H", "num_warps", "num_stages")


def parse(text: str) -> TileConfig:
    """`BLOCK_N=..,BLOCK_V=..,BLOCK_H=..,num_warps=..,num_stages=..` (all five, any order)."""
    try:
        pairs = (part.split("=") for part in text.split(","))
        values = {key.strip(): int(value) for key, value in pairs}
    except ValueError:
        values = {}
    if sorted(values) != sorted(_FIELDS) or min(values.values()) < 1:
        raise KernelInputError(
            f"{ENV} must be 'pinned', 'autotune' or {'=..,'.join(_FIELDS)}=.. with positive integers,"
            f" got {text!r}"
        )
    return TileConfig(*(values[field] for field in _FIELDS))


def setting() -> str | TileConfig:
    """'pinned', 'autotune' or the config named in the environment."""
    text = os.environ.get(ENV, "pinned").strip()
    return text if text in ("pinned", "autotune") else parse(text)


def pinned(kernel: str, dtype: torch.dtype) -> TileConfig:
    return INTERPRETER if interpreting() else PINNED[kernel, dtype]


_tuned: dict[tuple, TileConfig] = {}


def choose(kernel: str, dtype: torch.dtype, trial=None, key=()) -> TileConfig:
    """The config to run; under `autotune`, `trial(config)` launches one config on the call's buffers."""
    mode = setting()
    if isinstance(mode, TileConfig):
        return mode
    if mode == "pinned" or trial is None or interpreting():
        return pinned(kernel, dtype)
    full_key = (kernel, dtype, *key)
    if full_key not in _tuned:
        _tuned[full_key] = _autotune(trial)
    return _tuned[full_key]


def _autotune(trial) -> TileConfig:
    import triton.testing

    times = {}
    for config in CANDIDATES:
        try:
            times[config] = triton.testing.do_bench(lambda config=config: trial(config), warmup=5, rep=20)
        except _Unfit:
            continue
    if not times:
        raise KernelInputError(f"{ENV}=autotune: no candidate config fits this device")
    return min(times, key=times.get)


class _Unfit(Exception):
    """A config that spills registers or does not fit the device (autotuning skips it)."""


def launch(kernel, grid, args, config: TileConfig, constexprs: dict):
    """`kernel[grid](*args)` with the config's tiles and the kernel's other compile-time constants."""
    if setting() == "autotune" and not interpreting():
        compiled(kernel, args, config, constexprs)  # raises _Unfit for a spilling or oversized config
    kernel[grid](*args, **constexprs, **config.launch_kwargs())


def compiled(kernel, args, config: TileConfig, constexprs: dict):
    """The loaded CompiledKernel of this launch (compiling it if needed; CUDA only)."""
    from triton.runtime.errors import OutOfResources

    try:
        binary = kernel.warmup(*args, grid=(1,), **constexprs, **config.launch_kwargs())
        binary._init_handles()
    except OutOfResources as exc:
        raise _Unfit(str(exc)) from exc
    if binary.n_spills and setting() == "autotune":
        raise _Unfit(f"{config} spills {binary.n_spills} registers")
    return binary


@functools.cache
def _device_limits(index: int) -> tuple[int, int, int, int, int]:
    props = torch.cuda.get_device_properties(index)
    return (
        props.multi_processor_count,
        props.regs_per_multiprocessor,
        props.max_threads_per_multi_processor,
        props.shared_memory_per_multiprocessor,
        props.L2_cache_size,
    )


def programs_per_sm(regs: int, shared: int, num_warps: int, limits) -> int:
    """Resident CTAs per SM from a compiled kernel's registers per thread and shared memory (bytes)."""
    _, regs_per_sm, threads_per_sm, smem_per_sm, _ = limits
    regs_per_warp = -(-regs * 32 // 256) * 256  # registers are allocated per warp in units of 256
    by_regs = regs_per_sm // max(1, regs_per_warp * num_warps)
    by_threads = threads_per_sm // (32 * num_warps)
    by_smem = smem_per_sm // (shared + 1024)  # the driver reserves 1 KiB per CTA
    return max(1, min(by_regs, by_threads, by_smem, 32))


def resident_programs(kernel, args, config: TileConfig, constexprs: dict, device: torch.device) -> int:
    """Programs of this launch resident on the whole device at once."""
    if interpreting():
        return INTERPRETER_SMS
    binary = compiled(kernel, args, config, constexprs)
    limits = _device_limits(device.index if device.index is not None else torch.cuda.current_device())
    return limits[0] * programs_per_sm(binary.n_regs, binary.metadata.shared, config.num_warps, limits)


def l2_bytes(device: torch.device) -> int:
    if interpreting():
        return INTERPRETER_L2_BYTES
    return _device_limits(device.index if device.index is not None else torch.cuda.current_device())[4]
