"""`benchmarks/gpu_check.sh --dry-run` and the CUDA smoke test's CPU twin: the GPU session's script
must show its whole flow, its files and budgets on a machine without a GPU, and its Python parts must
run against the current code (an API change breaks them here, not on the scarce GPU)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_SECONDS = 360
MAX_FILES = 8


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    return proc, out


def test_dry_run_shows_every_step_with_its_budget_and_files(dry_run):
    proc, out = dry_run
    steps = re.findall(r"^=== (\S+) \(budget (\d+) s, writes ([^)]*)\)$", proc.stdout, re.M)
    assert [name for name, _, _ in steps] == ["environment", "tests-gpu", "bench-kernels", "smoke"], (
        proc.stdout
    )
    assert sum(int(budget) for _, budget, _ in steps) <= MAX_SECONDS
    files = {f for _, _, written in steps for f in written.split()} | {"summary.txt"}
    assert len(files) <= MAX_FILES, files
    for name in ("tests-gpu", "bench-kernels", "smoke"):
        assert f"=== {name}: skipped in --dry-run (needs CUDA)" in proc.stdout
    assert "plan: correctness check at 8192x4096x152064: True" in proc.stdout
    methods = re.search(r"^plan: device cuda, .* methods (.*)$", proc.stdout, re.M).group(1).split(", ")
    assert {"fused-tree-loss", "fused", "eager-bf16", "compiled", "cublas-floor"} <= set(methods), methods
    assert "linear_tree_loss)" in proc.stdout
    assert "smoke plan:" in proc.stdout and "tests collected" in proc.stdout
    assert (out / "environment.txt").read_text().startswith("date ")
    assert (out / "summary.txt").read_text().count("===") >= 8


def test_without_cuda_the_real_run_refuses_in_one_line(tmp_path):
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("gpu-check: no CUDA device") and proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_smoke_test_runs_on_cpu():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_smoke", "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS") == 2
