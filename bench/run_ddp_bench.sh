#!/usr/bin/env bash
# kdist's data parallelism against PyTorch DDP, 2 ranks, 1 thread each, back to back.
#   bash bench/run_ddp_bench.sh [ROUNDS] [REPEATS]
# Each figure is the median over REPEATS alternating runs of the median step.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-20} repeats=${2:-3}
export OMP_NUM_THREADS=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ours=() theirs=()
for _ in $(seq "$repeats"); do
  ours+=("$("$root/build/tools/kdist" launch -n 2 -- "$root/build/bench/ddp_bench" --rounds "$rounds" | sed -n 's/^\[rank 0\] //p')")
  theirs+=("$("$root/.venv/bin/torchrun" --standalone --nproc-per-node 2 "$root/bench/ddp_torch.py" \
             --rounds "$rounds" 2>"$log")") || { echo "torchrun failed:"; cat "$log"; exit 1; }
done
"$root/.venv/bin/python" - "$rounds" <<PY
import statistics, sys
def fields(line):
    words = line.split()
    return {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
ours = [fields(l) for l in """$(printf '%s\n' "${ours[@]}")""".splitlines() if l.strip()]
theirs = [fields(l) for l in """$(printf '%s\n' "${theirs[@]}")""".splitlines() if l.strip()]
med = lambda runs, key: statistics.median(r[key] for r in runs)
step, gloo_step, compute = med(ours, "step"), med(ours, "gloo_step"), med(ours, "compute")
comm, shm_buckets, gloo_buckets = med(ours, "comm"), med(ours, "shm_buckets"), med(ours, "gloo_buckets")
raw, ddp = med(ours, "raw"), med(theirs, "step")
hidden = lambda synced, sync: max(0.0, 1 - (synced - compute) / sync)
mb = ours[0]["bytes"] / 1e6
print(f"MLP 1024 -> 4096 -> 1024, batch 64 per rank, SGD, 2 ranks x 1 thread; "
      f"median of {sys.argv[1]} steps, median of {len(ours)} alternating runs")
print(f"kdist step                 {step:8.2f} ms   (default: shared-memory sync)")
print(f"kdist step, Gloo sync      {gloo_step:8.2f} ms   (batch group on Gloo)")
print(f"PyTorch DDP step (Gloo)    {ddp:8.2f} ms")
print(f"kdist / DDP                {step / ddp:8.2f}   (target <= 0.75)")
print(f"kdist Gloo sync / DDP      {gloo_step / ddp:8.2f}")
print(f"compute alone              {compute:8.2f} ms   (no_sync step)")
print(f"all_reduce of grads        {comm:8.2f} ms   ({mb:.1f} MB, one blocking Gloo call through kdist)")
print(f"bucketed sync, shm         {shm_buckets:8.2f} ms   ({int(ours[0]['nbuckets'])} buckets)")
print(f"bucketed sync, Gloo        {gloo_buckets:8.2f} ms")
print(f"raw all_reduce             {raw:8.2f} ms   (one raw Gloo call, same bytes)")
print(f"sync bandwidth / raw: shm  {raw / shm_buckets:8.2f}   Gloo {raw / gloo_buckets:.2f}   (target >= 0.95)")
print(f"communication hidden: shm  {100 * hidden(step, shm_buckets):7.0f} %   "
      f"Gloo {100 * hidden(gloo_step, gloo_buckets):.0f} %   (1 - (step - compute) / bucketed sync)")
PY
