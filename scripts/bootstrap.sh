#!/usr/bin/env bash
# Installs everything kdist needs on a fresh Debian 12 machine with Python 3.11,
# and does nothing but checks when it has already run.
#   - Debian packages: Gloo headers (types only; LibTorch carries its own Gloo),
#     GoogleTest, Google Benchmark, ccache, CLI11, nlohmann-json, zlib, CMake, Ninja, and
#     iproute2 and util-linux for the multi-host tests (ip netns, unshare), clang-format for
#     the style test.
#   - LibTorch 2.13 from the pinned CPU wheel torch==2.13.0 in .venv/ inside the
#     checkout. Never an unpinned torch: that pulls several GB of CUDA packages.
# Prints which LibTorch, BLAS/oneDNN and collective backends it found, and writes
# build/torch-prefix.txt for CMake.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

TORCH_PIN="torch==2.13.0"
DEBIAN_PACKAGES=(libgloo-dev libgtest-dev libgmock-dev libbenchmark-dev ccache
                 libcli11-dev nlohmann-json3-dev zlib1g-dev cmake ninja-build g++ python3-venv
                 iproute2 util-linux  # the multi-host tests' namespaces
                 clang-format)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[bootstrap] apt-get install ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$root/.venv"
py="$venv/bin/python"
if ! "$py" -c 'import torch, sys; sys.exit(0 if torch.__version__.split("+")[0] == "2.13.0" else 1)' 2>/dev/null; then
  echo "[bootstrap] creating $venv with $TORCH_PIN"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$TORCH_PIN" numpy 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  "$py" -c 'import torch' || { echo "[bootstrap] torch did not install" >&2; exit 1; }
fi
# Python's reader of the safetensors kdist export writes (tests/checkpoint/safetensors_test.py).
if ! "$py" -c 'import safetensors' 2>/dev/null; then
  echo "[bootstrap] pip install safetensors"
  "$venv/bin/pip" install -q --disable-pip-version-check "safetensors==0.7.0" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
fi

mkdir -p build
"$py" - <<'PY'
import re, torch, torch.distributed as dist
cfg = torch.__config__.show()
blas = re.search(r"BLAS_INFO=(\w+)", cfg)
dnnl = re.search(r"MKL-DNN (v[\d.]+)", cfg)
backends = [n for n, ok in (("gloo", dist.is_gloo_available()), ("nccl", dist.is_nccl_available()),
                            ("mpi", dist.is_mpi_available())) if ok]
print(f"[bootstrap] LibTorch {torch.__version__} at {torch.utils.cmake_prefix_path}")
print(f"[bootstrap] BLAS {blas.group(1) if blas else 'unknown'}, oneDNN {dnnl.group(1) if dnnl else 'none'}, "
      f"CUDA {'yes' if torch.cuda.is_available() else 'no'}, collective backends: {', '.join(backends) or 'none'}")
open("build/torch-prefix.txt", "w").write(torch.utils.cmake_prefix_path + "\n")
PY
test -f /usr/include/gloo/config.h && echo "[bootstrap] Gloo headers: /usr/include/gloo (types only)"
