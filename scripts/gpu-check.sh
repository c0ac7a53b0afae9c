#!/bin/bash
# The GPU host's one check: the CUDA tests of tests/Weft.GpuRuntime.Tests (skipped here without a GPU), CUDA kernels
# against the cpu backend at two shapes, then the decode benchmark on a 1B-shaped model.
#   here:          bash scripts/gpu-pack.sh               (packs .gpu/: the weft build, the GPU tests, the .NET runtime)
#   on the host:   bash scripts/gpu-check.sh              (carry .gpu; results go to $OUT, or ./gpu-out)
# Exit code: non-zero if a test or a parity check failed (the benchmark's figures are read, not judged).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
weft() { bash "$root/.gpu/run.sh" weft.dll "$@"; }
[[ -f $root/.gpu/run.sh ]] || { echo "gpu-check: $root/.gpu is missing; run scripts/gpu-pack.sh first and carry .gpu" >&2; exit 2; }
[[ -f $root/.gpu/tests.tar.xz ]] || { echo "gpu-check: .gpu has no GPU tests; pack with scripts/gpu-pack.sh" >&2; exit 2; }
mkdir -p "$root/.gpu/app/tests" && tar -C "$root/.gpu/app/tests" -xJf "$root/.gpu/tests.tar.xz"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"

# 0. the CUDA tests, through xunit's own runner in the test assembly (the code `dotnet test` runs); on a GPU host a
# skip means CUDA was not found, so skips fail
timeout 300 bash "$root/.gpu/run.sh" tests/Weft.GpuRuntime.Tests.dll -trait "Device=cuda" -noColor -failSkips 2>&1 | tee "$out/gpu-tests.txt"
test_status=${PIPESTATUS[0]}

# 1. parity: every kernel path (tiled prefill, batched decode, device sampling, penalties) against the cpu backend
weft gpu-check --engine cuda --preset small --tokens 48 2>&1 | tee "$out/gpu-check.txt"
status=${PIPESTATUS[0]}
# ... and at a real model's shape (head dim 64, four query heads per KV head, 1024 wide)
timeout 240 bash "$root/.gpu/run.sh" weft.dll gpu-check --engine cuda --preset 300m --tokens 16 2>&1 | tee -a "$out/gpu-check.txt"
shape_status=${PIPESTATUS[0]}
(( status == 0 )) && status=$shape_status
(( status == 0 )) && status=$test_status

# 2. the 1B model (TinyLlama's shape, f16), generated here: nothing can be downloaded on the host
model=/tmp/weft-1b-f16.gguf
[[ -f $model ]] || weft model create --preset 1b --type f16 --out "$model" 2>&1 | tee "$out/model.txt"
# the roofline at the H200's HBM datasheet rate (4.8 TB/s), as the issue defines it; then a short run against the
# device copy rate measured there
timeout 360 bash "$root/.gpu/run.sh" weft.dll bench engine --engine cuda --model "$model" --batch 1,8,32,64,128,256 --gen 32 \
  --prefill 512 --bandwidth 4800 --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
timeout 60 bash "$root/.gpu/run.sh" weft.dll bench engine --engine cuda --model "$model" --batch 1 --gen 8 --prefill 0 2>&1 | tee "$out/bench-measured-bw.txt"
exit "$status"
