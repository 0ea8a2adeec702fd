#!/usr/bin/env bash
# kdist's redistribute against PyTorch DTensor and the raw Gloo collective, back to back.
#   bash bench/run_redistribute_bench.sh [RANKS] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ranks=${1:-2} rounds=${2:-20}
export OMP_NUM_THREADS=1
kdist_out=$("$root/build/tools/kdist" launch -n "$ranks" -- "$root/build/bench/redistribute_bench" \
            --rounds "$rounds" | sed -n 's/^\[rank 0\] //p')
log=$(mktemp)
trap 'rm -f "$log"' EXIT
torch_out=$("$root/.venv/bin/torchrun" --standalone --nproc-per-node "$ranks" \
            "$root/bench/redistribute_torch.py" --rounds "$rounds" 2>"$log") \
  || { echo "torchrun failed:"; cat "$log"; exit 1; }
"$root/.venv/bin/python" - "$ranks" "$rounds" <<PY
import sys
kdist = {tuple(l.split()[:2]): l.split()[2:] for l in """$kdist_out""".splitlines() if l.strip()}
torch = {tuple(l.split()[:2]): float(l.split()[2]) for l in """$torch_out""".splitlines() if l.strip()}
print(f"redistribute on a 1-D mesh of {sys.argv[1]} ranks (kdist: the transport comm picks, shared memory here; PyTorch: Gloo), float32, median of {sys.argv[2]} "
      "interleaved rounds, slowest rank")
print(f"{'transition':12} {'shape':>10} {'kdist ms':>9} {'torch ms':>9} {'raw ms':>8} "
      f"{'kdist/torch':>11} {'kdist/raw':>9}")
for key, (ms, raw) in kdist.items():
    ms = float(ms)
    t = torch.get(key)
    raw_text = raw if raw == "-" else f"{float(raw):.2f}"
    ratio_raw = "-" if raw == "-" else f"{ms / float(raw):.2f}"
    print(f"{key[0]:12} {key[1]:>10} {ms:9.2f} {t:9.2f} {raw_text:>8} {ms / t:11.2f} {ratio_raw:>9}")
PY
