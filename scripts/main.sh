#!/usr/bin/env bash
# The README's main job: a real multi-process training run on CPU. Builds and installs kdist,
# then trains the character-level gpt on 4 processes over a 2x2 (batch, model) mesh:
# attention heads and MLP sharded over "model", the batch over "batch". --verify retrains
# in one process and fails the job unless the losses match.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/build.sh"
cd "$root"
out=build/main-job
prefix=$out/prefix
mkdir -p "$out"
cmake --install build --prefix "$prefix" >/dev/null
"$prefix/bin/kdist" info
echo
"$prefix/bin/kdist" launch -n 4 -- "$prefix/bin/kdist" train --model gpt --mesh batch=2,model=2 \
  --verify --metrics "$out/metrics.jsonl" --plot "$out/loss.svg" "$@"
echo
echo "per-step metrics: $out/metrics.jsonl; loss curve: $out/loss.svg"
