#!/usr/bin/env bash
# The README's main job: a real multi-process training run on CPU. Builds and installs kdist,
# builds examples/ against the installed package, and trains an MLP tensor-parallel on 4
# processes from a Keras-style LayoutMap, checked against the same training in one process.
# It becomes `kdist launch -n 4 -- kdist train --model gpt` when the training command lands.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/build.sh"
cd "$root"
prefix=build/main-job/prefix
cmake --install build --prefix "$prefix" >/dev/null
cmake -S examples -B build/main-job/examples -G Ninja -DCMAKE_PREFIX_PATH="$PWD/$prefix" \
  >build/main-job/configure.log 2>&1 || { cat build/main-job/configure.log; exit 1; }
cmake --build build/main-job/examples -j2 >build/main-job/build.log 2>&1 || { cat build/main-job/build.log; exit 1; }
"$prefix/bin/kdist" info
echo
OMP_NUM_THREADS=1 "$prefix/bin/kdist" launch -n 4 -- build/main-job/examples/model_parallel_mlp/model_parallel_mlp 200
