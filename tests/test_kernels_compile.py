"""Ahead-of-time compile check for sm_90a (H100/H200): every fused linear kernel in its pinned config and
every per-row kernel (row statistics, dz) in the dtypes it runs with.

No GPU is needed: Triton compiles to PTX and the `ptxas` in the triton wheel reports registers, spills
and shared memory (`arpo.kernels._aot`). The compile runs in a subprocess without TRITON_INTERPRET (the
interpreter suites set it for this process). Each pinned config must compile without a register spill
(a spill is a local-memory round trip inside the inner loop) and within the shared memory one block may
use on sm_90. Skipped where triton or its bundled ptxas is missing.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


@pytest.fixture(scope="module")
def pinned_stats():
    from arpo.kernels import _aot

    if not _aot.ptxas_available():
        pytest.skip("the triton wheel has no ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, "-m", "arpo.kernels._aot"], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_every_pinned_config_compiled(pinned_stats):
    from arpo.kernels._aot import ROW_KERNELS
    from arpo.kernels._config import PINNED

    assert len(pinned_stats) == len(PINNED) + len(ROW_KERNELS)
    assert {s["target"] for s in pinned_stats} == {"sm_90a"}


def test_pinned_configs_do_not_spill_and_fit_shared_memory(pinned_stats):
    from arpo.kernels._aot import H100_SHARED_BYTES

    for stats in pinned_stats:
        what = f"{stats['kernel']} {stats['dtype']} [{stats['config']}]"
        assert 0 < stats["registers"] <= 255, what  # 0: ptxas' report was not read
        assert stats["spill_stores"] == 0 and stats["spill_loads"] == 0, f"{what} spills: {stats}"
        assert stats["shared_bytes"] <= H100_SHARED_BYTES, f"{what} needs {stats['shared_bytes']} B"
