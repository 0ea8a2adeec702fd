#!/usr/bin/env bash
# The README's main job. Today: what this build can do (kdist info), and the sharding plan
# of an MLP under a Keras-style LayoutMap on a 2x2 (batch, model) mesh, built against the
# installed kdist package. It becomes `kdist launch -n 4 -- kdist train` when training lands.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/build.sh"
cd "$root"
prefix=build/main-job/prefix
cmake --install build --prefix "$prefix" >/dev/null
cmake -S examples/layout_plan -B build/main-job/layout_plan -G Ninja -DCMAKE_PREFIX_PATH="$PWD/$prefix" >/dev/null
cmake --build build/main-job/layout_plan -j2 >/dev/null
"$prefix/bin/kdist" info
echo
build/main-job/layout_plan/layout_plan
