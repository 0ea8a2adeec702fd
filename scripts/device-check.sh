#!/usr/bin/env bash
# The GPU check, for a machine with one or more NVIDIA GPUs, PyTorch with CUDA in python3,
# nvcc, CMake and ninja, and no network (the device tool's machines). Debian's C++ libraries
# kdist builds with come along in deps/, packed on the CPU machine by
#   bash scripts/device-check.sh --pack deps
# and carried with the working tree. Then, on the GPU machine:
#   bash scripts/device-check.sh
# builds kdist against that PyTorch and runs the tests labelled gpu on 2 and 4 ranks sharing
# the GPUs (each rank its own NCCL_HOSTID, so that NCCL accepts two ranks on one GPU), then
# every CPU test of comm and nn, so that a CUDA build is shown to change nothing on CPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ "${1:-}" == "--pack" ]]; then
  out=${2:?--pack FOLDER}
  mkdir -p "$out/include" "$out/lib"
  cp -r /usr/include/gloo /usr/include/CLI /usr/include/nlohmann /usr/include/gtest "$out/include/"
  cp /usr/lib/x86_64-linux-gnu/libgtest.a /usr/lib/x86_64-linux-gnu/libgtest_main.a "$out/lib/"
  cp -r /usr/lib/x86_64-linux-gnu/cmake/GTest /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$out/lib/" 2>/dev/null || true
  echo "[device-check] packed $out"
  exit 0
fi
deps=${KDIST_DEPS:-$root/deps}
out=${OUT:-/tmp/device-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpus.txt"
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count())' | tee -a "$out/gpus.txt"
prefix=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
includes="-isystem $deps/include"
for d in "$site"/nvidia/*/include; do includes+=" -isystem $d"; done
cmake -S "$root" -B "$root/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTorch_DIR="$prefix/Torch" -DCMAKE_PREFIX_PATH="$deps/lib" -DCMAKE_CXX_FLAGS="$includes" \
  -DKDIST_BUILD_BENCH=OFF 2>&1 | tee "$out/configure.log" | grep "kdist:"
cmake --build "$root/build-gpu" -j"$(nproc)" 2>&1 | tail -5 | tee "$out/build.log"
cd "$root/build-gpu"
# Each test rank sets its own NCCL_HOSTID (tests/comm/mp_main.cpp).
export KDIST_TEST_NCCL_HOST_PER_RANK=1 NCCL_MULTI_RANK_GPU_ENABLE=1
ctest -L gpu --output-on-failure 2>&1 | tee "$out/gpu-tests.log"
ctest -R "^mp\.(comm|nn|fsdp|data_parallel)\." -LE gpu --output-on-failure 2>&1 | tail -30 | tee "$out/cpu-tests.log"
