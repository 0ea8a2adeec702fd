#!/usr/bin/env bash
# Compiles kdist's CUDA path (comm's NCCL transport, transports/nccl.cpp) against a CUDA
# LibTorch, so that it does not rot between runs on a GPU machine. Never the project's .venv:
# give a separate virtual environment holding a CUDA build of torch, and a CUDA toolkit.
#
#   python3 -m venv /work/cuda-venv && /work/cuda-venv/bin/pip install torch==2.14.1
#   bash scripts/cuda-compile-check.sh /work/cuda-venv [build folder] [target]
#
# The target defaults to kdist_comm (the only layer whose sources differ in a CUDA build);
# `kdist` builds the whole library, `all` everything. No GPU is needed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:?usage: cuda-compile-check.sh VENV_WITH_CUDA_TORCH [BUILD_DIR] [TARGET]}
build=${2:-$root/build-cuda}
target=${3:-kdist_comm}
cuda=${CUDA_HOME:-/usr/local/cuda}
prefix=$("$venv/bin/python" -c 'import torch, torch.utils; print(torch.utils.cmake_prefix_path)')
"$venv/bin/python" -c 'import torch; assert torch.version.cuda, "torch in this venv has no CUDA"; print("[cuda-check] torch", torch.__version__, "CUDA", torch.version.cuda)'
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The CUDA libraries' headers LibTorch's include (cuSPARSE, cuBLAS, NCCL) come with the nvidia
# wheels where the toolkit lacks them; LibTorch 2.14 and later need C++20.
extra_includes=""
for d in "$site"/nvidia/*/include; do extra_includes+=" -isystem $d"; done
standard=$("$venv/bin/python" -c 'import torch; v = tuple(map(int, torch.__version__.split(".")[:2])); print(20 if v >= (2, 14) else 17)')
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKDIST_WERROR=ON \
  -DCMAKE_CXX_STANDARD="$standard" -DCMAKE_CXX_FLAGS="$extra_includes" \
  -DTorch_DIR="$prefix/Torch" -DCUDAToolkit_ROOT="$cuda" -DCUDA_TOOLKIT_ROOT_DIR="$cuda" -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc" \
  -DKDIST_BUILD_TESTS=OFF -DKDIST_BUILD_BENCH=OFF >"$build.configure.log" 2>&1 \
  || { tail -40 "$build.configure.log"; exit 1; }
grep -E "kdist: (LibTorch|CUDA)" "$build.configure.log"
grep -q "kdist: CUDA and NCCL ON" "$build.configure.log" || { echo "[cuda-check] CMake found no CUDA in that LibTorch"; exit 1; }
cmake --build "$build" -j2 --target "$target"
echo "[cuda-check] $target compiled against the CUDA LibTorch of $venv"
