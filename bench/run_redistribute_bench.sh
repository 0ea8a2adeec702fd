#!/usr/bin/env bash
# kdist's redistribute against PyTorch DTensor and the raw Gloo collective.
#   bash bench/run_redistribute_bench.sh [RANKS...]   (default: 2 4; ROUNDS=20 REPEATS=5)
# Runs kdist (bench/redistribute_bench.cpp) and PyTorch (bench/redistribute_torch.py)
# alternately REPEATS times per rank count; each figure is the median over the runs of the
# per-run median (interleaved rounds, slowest rank), and every ratio is kdist's time over
# PyTorch DTensor's for the same transition and shape.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-20} repeats=${REPEATS:-5}
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(2 4)
export OMP_NUM_THREADS=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for k in "${ranks[@]}"; do
  kdist_lines="" torch_lines=""
  for _ in $(seq "$repeats"); do
    kdist_lines+="$("$root/build/tools/kdist" launch -n "$k" -- "$root/build/bench/redistribute_bench" \
                    --rounds "$rounds" | sed -n 's/^\[rank 0\] //p')"$'\n'
    torch_lines+="$("$root/.venv/bin/torchrun" --standalone --nproc-per-node "$k" \
                    "$root/bench/redistribute_torch.py" --rounds "$rounds" 2>"$log")"$'\n' \
      || { echo "torchrun failed:"; cat "$log"; exit 1; }
  done
  "$root/.venv/bin/python" - "$k" "$rounds" "$repeats" <<PY
import collections, statistics, sys
kdist, raw, torch = (collections.defaultdict(list) for _ in range(3))
for line in """$kdist_lines""".splitlines():
    w = line.split()
    if len(w) == 4:
        kdist[(w[0], w[1])].append(float(w[2]))
        if w[3] != "-": raw[(w[0], w[1])].append(float(w[3]))
for line in """$torch_lines""".splitlines():
    w = line.split()
    if len(w) == 3: torch[(w[0], w[1])].append(float(w[2]))
print(f"redistribute on a 1-D mesh of {sys.argv[1]} ranks (kdist: the transport comm picks, shared memory here; "
      f"PyTorch: Gloo), float32, median of {sys.argv[3]} alternating runs (each the median of {sys.argv[2]} "
      "interleaved rounds, slowest rank)")
print(f"{'transition':12} {'shape':>10} {'kdist ms':>9} {'torch ms':>9} {'raw ms':>8} "
      f"{'kdist/torch':>11} {'kdist/raw':>9}")
for key, times in kdist.items():
    ms, t = statistics.median(times), statistics.median(torch[key])
    r = statistics.median(raw[key]) if raw.get(key) else None
    raw_text = "-" if r is None else f"{r:.2f}"
    ratio_raw = "-" if r is None else f"{ms / r:.2f}"
    print(f"{key[0]:12} {key[1]:>10} {ms:9.2f} {t:9.2f} {raw_text:>8} {ms / t:11.2f} {ratio_raw:>9}")
PY
done
