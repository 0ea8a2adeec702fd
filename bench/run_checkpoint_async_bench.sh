#!/usr/bin/env bash
# The cost of checkpointing every 5 steps, synchronous and asynchronous, against the same
# training loop without checkpoints in the same run: kdist (kdist::save, kdist::AsyncSaver)
# and PyTorch (dcp.save, dcp.async_save) on 2 ranks, REPEATS alternating runs of ROUNDS rounds
# each; medians.
#   bash bench/run_checkpoint_async_bench.sh [ROUNDS] [REPEATS] [DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-5} repeats=${2:-3} dir=${3:-$root/build/bench/checkpoint-async-data}
export OMP_NUM_THREADS=1
mkdir -p "$dir"
log=$(mktemp)
trap 'rm -f "$log"; rm -rf "$dir"' EXIT
runs=()
for _ in $(seq "$repeats"); do
  ours=$("$root/build/tools/kdist" launch -n 2 -- "$root/build/bench/checkpoint_async_bench" "$dir" \
           --rounds "$rounds" | sed -n 's/^\[rank 0\] //p' | tr '\n' ' ')
  theirs=$(cd "$root/bench" && "$root/.venv/bin/torchrun" --standalone --nproc-per-node 2 checkpoint_async_torch.py \
             "$dir" --rounds "$rounds" 2>"$log") || { echo "torchrun failed:"; cat "$log"; exit 1; }
  runs+=("$ours $theirs")
done
"$root/.venv/bin/python" - "$rounds" <<PY
import statistics, sys
def fields(line):
    words = line.split()
    return {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
runs = [fields(l) for l in """$(printf '%s\n' "${runs[@]}")""".splitlines()]
med = lambda key: statistics.median(r[key] for r in runs)
print(f"4 x Linear(2048, 2048) + Adam, column/row parallel over 2 ranks (96 MiB of state per rank), "
      f"a checkpoint every 5 steps; median of {sys.argv[1]} rounds, median of {len(runs)} alternating runs")
print(f"{'':36}{'ms/step':>9}{'vs none':>9}")
for prefix, title in (("", "kdist"), ("dcp_", "torch DCP")):
    none = med(prefix + "none_step_ms")
    for label, key in (("no checkpoints", "none"), ("synchronous", "sync"), ("asynchronous", "async")):
        ms = med(prefix + key + "_step_ms")
        print(f"{title + ', ' + label:36}{ms:9.1f}{(ms / none - 1) * 100:+8.1f}%")
print(f"kdist / DCP step time: none {med('none_step_ms') / med('dcp_none_step_ms'):.2f}, "
      f"async {med('async_step_ms') / med('dcp_async_step_ms'):.2f}")
PY
