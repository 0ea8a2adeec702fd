#!/usr/bin/env bash
# kdist's collectives against PyTorch's Gloo collectives (same wheel), 1 thread per rank.
#   bash bench/run_collectives_bench.sh [RANKS...]   (default: 2 4; ROUNDS=20 REPEATS=5)
# Runs kdist (bench/collectives_bench.cpp) and PyTorch (bench/collectives_torch.py)
# alternately REPEATS times per rank count; each figure is the median over the runs of the
# per-run median, and every ratio is kdist's time over PyTorch's for the same bytes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-20} repeats=${REPEATS:-5}
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(2 4)
export OMP_NUM_THREADS=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for k in "${ranks[@]}"; do
  lines=""
  for _ in $(seq "$repeats"); do
    lines+="$("$root/build/tools/kdist" launch -n "$k" -- "$root/build/bench/collectives_bench" --rounds "$rounds" |
              sed -n 's/^\[rank 0\] //p')"$'\n'
    lines+="$(cd "$root/bench" && "$root/.venv/bin/torchrun" --standalone --nproc-per-node "$k" collectives_torch.py \
              --rounds "$rounds" 2>"$log")"$'\n' || { echo "torchrun failed:"; cat "$log"; exit 1; }
  done
  "$root/.venv/bin/python" - "$k" "$repeats" <<PY
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in """$lines""".splitlines():
    words = line.split()
    if len(words) == 5:
        runs[(words[0] + " " + words[1], words[2], int(words[3]))].append(float(words[4]))
med = {key: statistics.median(v) for key, v in runs.items()}
kdist = sorted({who for who, _, _ in med if who.startswith("kdist") and who != "kdist gloo"})
print(f"collectives on {sys.argv[1]} ranks, float32, median of {sys.argv[2]} alternating runs (each the median "
      f"of interleaved rounds, slowest rank); ratios: time / PyTorch Gloo's")
print(f"{'operation':24s} {'MB':>4s} {'torch ms':>9s} " + " ".join(f"{w[6:] + ' ms':>17s} {'ratio':>6s}" for w in kdist)
      + f" {'kdist gloo ms':>14s} {'ratio':>6s} {'raw gloo ms':>12s}")
for op in ("all_reduce", "all_gather", "all_gather_uneven", "reduce_scatter", "reduce_scatter_uneven"):
    for mb in (1, 8, 32):
        torch = med[("torch gloo", op.replace("_uneven", ""), mb)]
        cells = " ".join(f"{med[(w, op, mb)]:17.2f} {med[(w, op, mb)] / torch:6.2f}" for w in kdist)
        gloo = med[("kdist gloo", op, mb)]
        raw = med.get(("raw gloo", op.replace("_uneven", ""), mb))
        raw_text = f"{raw:12.2f}" if raw is not None and "uneven" not in op else f"{'-':>12s}"
        print(f"{op:24s} {mb:4d} {torch:9.2f} {cells} {gloo:14.2f} {gloo / torch:6.2f} {raw_text}")
PY
done
