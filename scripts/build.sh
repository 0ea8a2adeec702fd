#!/usr/bin/env bash
# Bootstraps (idempotent) and builds kdist into build/ with Ninja, two jobs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
# ccache hits across checkouts (CI builds a fresh clone in another folder): paths below the
# checkout are hashed relative to it.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${KDIST_BUILD_TYPE:-RelWithDebInfo}" -DKDIST_WERROR="${KDIST_WERROR:-ON}" >build/configure.log 2>&1 \
  || { cat build/configure.log; exit 1; }
grep -E "kdist: LibTorch" build/configure.log || true
cmake --build build -j2 "$@"
