#!/usr/bin/env bash
# `make gpu-check`: every GPU test and benchmark, on a CUDA machine, in under 10 minutes, with the
# figures in one folder. Uses the machine's own python3 and packages (no venv, no downloads):
# the checkout goes on PYTHONPATH. Whatever is missing is skipped, loudly.
set -u
OUT=${1:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
status=0

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu-check: no CUDA device visible to $PY; nothing to do" >&2
  exit 1
fi

$PY - <<'PY' | tee "$OUT/environment.txt"
import importlib, platform, torch
print("date", __import__("datetime").datetime.now().isoformat(timespec="seconds"))
print("host", platform.node(), platform.machine())
print("gpu", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability())
for name in ("torch", "triton", "transformers", "vllm", "flash_attn", "liger_kernel", "cut_cross_entropy",
             "omegaconf", "pytest"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:18s} {getattr(mod, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{name:18s} MISSING ({type(e).__name__}): its tests and benchmarks are skipped")
PY

step() {  # step NAME TIMEOUT_S COMMAND...: run one part, keep going when it fails
  local name=$1 limit=$2; shift 2
  echo "=== $name" | tee -a "$OUT/summary.txt"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "=== $name: exit $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || status=1
}

if $PY -c "import pytest" 2>/dev/null; then
  # Only the GPU test files: the rest import packages (omegaconf, bm25s, ...) a bare GPU image lacks.
  step tests-gpu 150 $PY -m pytest -q -p no:cacheprovider --junitxml="$OUT/tests-gpu.xml" tests/test_*_gpu.py
else
  echo "gpu-check: pytest MISSING: GPU tests skipped" | tee -a "$OUT/summary.txt"; status=1
fi
# The headline shape runs first and kernels.json is rewritten after every case, so a timeout keeps it.
step bench-kernels 300 $PY -m benchmarks.kernels --out "$OUT"

echo "figures and logs in $OUT/"
exit $status
