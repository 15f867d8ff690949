"""Shared plumbing of the kernels: input checks, implementation choice and lazy Triton loading.

Triton is imported only when a Triton implementation is first used, so `import arpo.kernels` works
where triton is missing and `TRITON_INTERPRET=1` may be set any time before that first use.
"""

import functools
import importlib.util
import os

import torch

from arpo.errors import ArpoError

IMPLS = ("auto", "triton", "torch", "reference")
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class KernelInputError(ArpoError, ValueError):
    """Bad input to a kernel: wrong shape, dtype, label or option (a ValueError, as elsewhere)."""


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (tests)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_module(name: str):
    """Import `arpo.kernels.<name>`, a module of `@triton.jit` kernels (this imports triton)."""
    return importlib.import_module(f"{__package__}.{name}")


def resolve_impl(impl: str, *tensors: torch.Tensor) -> str:
    """Turn `impl` into "triton", "torch" or "reference" for these tensors.

    "auto" picks Triton on CUDA tensors of a Triton dtype when triton imports, else the chunked
    torch path. "triton" on CPU tensors needs the interpreter (`TRITON_INTERPRET=1`).
    """
    if impl not in IMPLS:
        raise KernelInputError(f"impl must be one of {IMPLS}, got {impl!r}")
    on_cuda = tensors[0].is_cuda
    triton_dtype = all(t.dtype in TRITON_DTYPES for t in tensors)
    if impl == "auto":
        if on_cuda and triton_dtype and triton_available():
            return "triton"
        return "torch"
    if impl == "triton":
        if not triton_available():
            raise KernelInputError("impl='triton' needs the triton package, which is not installed")
        if not on_cuda and not interpreting():
            raise KernelInputError(
                "impl='triton' on CPU tensors needs TRITON_INTERPRET=1 set before first use"
            )
        if not triton_dtype:
            raise KernelInputError(
                f"impl='triton' supports {TRITON_DTYPES}, got {[t.dtype for t in tensors]}"
            )
    return impl


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise KernelInputError(f"temperature must be > 0, got {temperature}")


def check_labels(labels: torch.Tensor, n: int, vocab: int, ignore_index: int) -> None:
    """Labels are [n] integers in [0, vocab) or `ignore_index`; anything else is an error.

    On CUDA the range check runs on the device without a host sync (a bad label then stops the
    stream with this message at the next synchronisation); on CPU it raises here."""
    if labels.dim() != 1 or labels.shape[0] != n:
        raise KernelInputError(f"labels must have shape [{n}], got {list(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise KernelInputError(f"labels must be an integer tensor, got {labels.dtype}")
    if n == 0:
        return
    message = f"labels must lie in [0, {vocab}) or equal ignore_index={ignore_index}"
    inside = ((labels >= 0) & (labels < vocab)) | (labels == ignore_index)
    if labels.is_cuda:
        torch._assert_async(inside.all(), f"arpo.kernels: {message}")
    elif not bool(inside.all()):
        raise KernelInputError(message)
