#!/bin/bash
# Packs what scripts/gpu-check.sh runs on a GPU host without .NET: the weft tool (../shared/gpu/pack.sh) and the
# GpuRuntime test assembly, whose CUDA tests are the same code that `dotnet test` runs here (skipped without a GPU).
#   bash scripts/gpu-pack.sh      then carry .gpu to the host and run   bash scripts/gpu-check.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pack=${WEFT_GPU_PACK:-$root/../shared/gpu/pack.sh}
[[ -f $pack ]] || { echo "gpu-pack: $pack is missing (the team's shared/gpu/pack.sh)" >&2; exit 2; }
bash "$pack" src/Cli
# compressed, and without the code-coverage collector and the other platforms' test hosts, so that .gpu stays within
# the 64 MiB a device call carries (the tool and the runtime are 49 MB); gpu-check.sh unpacks it on the host
tests=$(mktemp -d)
trap 'rm -rf "$tests"' EXIT
dotnet publish tests/Weft.GpuRuntime.Tests -c Release -r linux-x64 --self-contained false -o "$tests" >/dev/null
rm -rf "$tests"/{CodeCoverage,alpine,macos,ubuntu,arm64,x64}
tar -C "$tests" -cJf .gpu/tests.tar.xz .
du -sh .gpu | awk '{print "packed .gpu with the GPU tests: " $1}'
