#!/usr/bin/env bash
# The whole GPU check in one short session:   bash benchmarks/gpu_check.sh OUT_DIR
#                          on any machine:    bash benchmarks/gpu_check.sh --dry-run OUT_DIR
#
# For a bare CUDA machine with torch, triton, transformers and pytest (no venv, no downloads, no make
# needed): the checkout goes on PYTHONPATH. At most 7 files go to OUT_DIR, and everything written there
# is also printed, so a run cut off early still reports. Each step has its own time limit (seconds,
# below), 350 s in all, and one step failing or timing out does not stop the next:
#   environment    20  environment.txt     GPU, versions, which packages are missing
#   tests-gpu     150  tests-gpu.log/.xml  tests/test_kernels_gpu.py on CUDA (pinned tile configs, so a
#                                          cold Triton cache compiles one variant per kernel and dtype)
#   bench-kernels 140  bench-kernels.log,  the tree loss (gradient made in its forward) and the fused
#                      kernels.json        kernel vs bf16 eager, torch.compile and the three-GEMM cuBLAS
#                                          floor at 8192 and 16384 x 4096 x 152064 bf16, with both
#                                          correctness checks at the first shape (json after every case)
#   smoke          40  smoke.log           native sampler + one tree-loss step, tiny bf16 model
# plus summary.txt (one line per step: exit code and seconds).
#
# --dry-run (no GPU needed) fakes nothing: it runs the environment step for real, asks each Python
# entry point for its plan (which imports it on this interpreter), skips the CUDA-only steps, and
# prints the flow, the files a real run writes and each step's budget.
set -u
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:?usage: bash benchmarks/gpu_check.sh [--dry-run] OUT_DIR}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ARPO_TRITON_CONFIG=pinned TRITON_DEFAULT_FP_FUSION=1
PY=${PYTHON:-python3}
SHAPES=8192x4096x152064,16384x4096x152064
status=0
total=0

if [ $DRY = 0 ] && ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu-check: no CUDA device visible to $PY (bash benchmarks/gpu_check.sh --dry-run OUT shows the flow)" >&2
  exit 1
fi

# step NAME BUDGET_S CUDA_ONLY FILES COMMAND...: run one part with a time limit, print and keep its log.
step() {
  local name=$1 limit=$2 cuda_only=$3 files=$4; shift 4
  total=$((total + limit))
  echo "=== $name (budget $limit s, writes $files)" | tee -a "$OUT/summary.txt"
  if [ $DRY = 1 ] && [ "$cuda_only" = 1 ]; then
    echo "=== $name: skipped in --dry-run (needs CUDA): $*" | tee -a "$OUT/summary.txt"
    return
  fi
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || status=1
}

step environment 20 0 environment.txt $PY -c '
import datetime, importlib, platform, torch
print("date", datetime.datetime.now().isoformat(timespec="seconds"))
print("host", platform.node(), platform.machine())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability())
else:
    print("gpu none visible")
for name in ("torch", "triton", "transformers", "pytest", "liger_kernel", "cut_cross_entropy"):
    try:
        print(f"{name:18s} {importlib.import_module(name).__version__}")
    except Exception as exc:
        print(f"{name:18s} MISSING ({type(exc).__name__})")
'
mv "$OUT/environment.log" "$OUT/environment.txt"

if [ $DRY = 1 ]; then  # each entry point prints its plan: proves it imports here, runs nothing heavy
  $PY -m pytest --collect-only -q -p no:cacheprovider tests/test_kernels_gpu.py | tail -n 3
  $PY -m benchmarks.kernels --plan --device cuda --shapes "$SHAPES" --reps 5 --check
  $PY -m benchmarks.gpu_smoke --plan
fi
step tests-gpu 150 1 "tests-gpu.log tests-gpu.xml" \
  $PY -m pytest -q -p no:cacheprovider --junitxml="$OUT/tests-gpu.xml" tests/test_kernels_gpu.py
step bench-kernels 140 1 "bench-kernels.log kernels.json" \
  $PY -m benchmarks.kernels --device cuda --shapes "$SHAPES" --reps 5 --check --out "$OUT" --no-append
step smoke 40 1 smoke.log $PY -m benchmarks.gpu_smoke

echo "=== total budget $total s; files in $OUT/:" | tee -a "$OUT/summary.txt"
ls -1 "$OUT"
exit $status
