#!/usr/bin/env bash
# Checkpoint save/load throughput: kdist::save/load and torch.distributed.checkpoint on
# 2 ranks (same tensors, same sharding), and torch::save/load of the same bytes in one
# process, alternating REPEATS times; medians.
#   bash bench/run_checkpoint_bench.sh [ROUNDS] [REPEATS] [DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-5} repeats=${2:-3} dir=${3:-$root/build/bench/checkpoint-data}
export OMP_NUM_THREADS=1
mkdir -p "$dir"
log=$(mktemp)
trap 'rm -f "$log"; rm -rf "$dir"' EXIT
ours=() theirs=()
for _ in $(seq "$repeats"); do
  ours+=("$("$root/build/tools/kdist" launch -n 2 -- "$root/build/bench/checkpoint_bench" "$dir" --rounds "$rounds" | sed -n 's/^\[rank 0\] //p' | tr '\n' ' ')")
  theirs+=("$(cd "$root/bench" && "$root/.venv/bin/torchrun" --standalone --nproc-per-node 2 checkpoint_torch.py "$dir" \
             --rounds "$rounds" 2>"$log")") || { echo "torchrun failed:"; cat "$log"; exit 1; }
done
"$root/.venv/bin/python" - "$rounds" <<PY
import statistics, sys
def fields(line):
    words = line.split()
    return {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
runs = [dict(fields(a), **fields(b)) for a, b in zip("""$(printf '%s\n' "${ours[@]}")""".splitlines(),
                                                     """$(printf '%s\n' "${theirs[@]}")""".splitlines())]
med = lambda key: statistics.median(r[key] for r in runs)
local, total = med("local_mib"), med("total_mib")
print(f"4 x Linear(2048, 2048) column/row sharded over 2 ranks: {total:.1f} MiB, {local:.1f} MiB per rank; "
      f"median of {sys.argv[1]} rounds, median of {len(runs)} alternating runs")
print(f"{'':28}{'save ms':>9}{'MB/s/rank':>11}{'load ms':>9}{'MB/s/rank':>11}")
for name, s, l, mb in (("kdist::save / load (2 ranks)", med("kdist_save_ms"), med("kdist_load_ms"), local),
                       ("torch DCP (2 ranks)", med("dcp_save_ms"), med("dcp_load_ms"), local),
                       ("torch::save / load (1 proc)", med("torch_save_ms"), med("torch_load_ms"), total)):
    print(f"{name:28}{s:9.1f}{mb * 1.048576 / s * 1000:11.0f}{l:9.1f}{mb * 1.048576 / l * 1000:11.0f}")
print(f"kdist / DCP time: save {med('kdist_save_ms') / med('dcp_save_ms'):.2f}, load {med('kdist_load_ms') / med('dcp_load_ms'):.2f}")
PY
