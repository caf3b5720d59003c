#!/usr/bin/env bash
# The device checks, as one prepared script (a lent H100/H200; numbers go to docs/extract.md,
# docs/scaling.md and docs/reliability.md). Runs from the repo root without installing:
# PYTHONPATH=. with the machine's own torch (cvxpy is not needed on these paths).
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh [extract] [solve]     # default: both parts
# Every step has its own timeout, so a slow step cannot starve the others; logs go to $OUT.
set -u
OUT="${OUT:-/tmp/direct_opt_gpu}"; mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PARTS="${*:-extract solve}"
step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  echo "=== $name (limit ${secs}s)"; local t0=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1; local rc=$?
  tail -n 30 "$OUT/$name.log"; echo "=== $name rc=$rc in $((SECONDS - t0))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, numpy, scipy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
if [[ " $PARTS " == *" extract "* ]]; then
  # CPU vs CUDA agreement of extraction + solvers: asserted tolerances, then the measured numbers
  step cuda_tolerance 80 bash -c "python3 -m pytest tests/reliability/test_reproducibility.py -k cuda -q -p no:cacheprovider && python3 tests/reliability/cuda_tolerance_report.py"
  # Extraction throughput, GPT-2-small-sized model (124 M params, seq 128, k 2048): target >= 400 samples/s
  step extract_fp32 100 python3 benchmarks/extract.py --gpt2 --device cuda --samples 1024 --max-seconds 12 --cache-mib 8192 --json "$OUT/extract_gpu_fp32.json"
  step extract_bf16 75 python3 benchmarks/extract.py --gpt2 --device cuda --dtype bfloat16 --modes paper,kronecker --samples 1024 --max-seconds 12 --json "$OUT/extract_gpu_bf16.json"
fi
if [[ " $PARTS " == *" solve "* ]]; then
  # sca-exact on the GPU: N = 1e6, r = 2048, full solve incl. rounding (target <= 2 s); GPU/CPU ratio at N = 1e5
  step solve_scale 210 python3 benchmarks/solvers.py --scale --device cuda --compare cpu --r 2048 --sizes 100000,1000000 --timeout 170 --json "$OUT/scale_gpu.json"
  step solve_backends 50 python3 benchmarks/solvers.py --scale --device cuda --compare cpu --r 256 --sizes 10000 --backends frank-wolfe,fw-block,greedy
fi
