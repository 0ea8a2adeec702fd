#!/usr/bin/env bash
# kdist's FSDP against PyTorch's FSDP2 and kdist's own data parallelism, on 2 and 4 ranks,
# 1 thread each, alternating runs; kdist again through Gloo (KDIST_TRANSPORT=gloo), where its
# prefetch can overlap a gather with computation.
#   bash bench/run_fsdp_bench.sh [ROUNDS] [REPEATS]
# Each figure is the median over REPEATS alternating runs of the median step.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-20} repeats=${2:-5}
export OMP_NUM_THREADS=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# PyTorch's FSDP2 run; once in a while a rank aborts at exit in Gloo's teardown ("terminate
# called without an active exception") after printing its figures: that run is repeated once.
torch_fsdp() {
  local n=$1; shift
  for attempt in 1 2; do
    if env "$@" "$root/.venv/bin/torchrun" --standalone --nproc-per-node "$n" "$root/bench/fsdp_torch.py" \
         --rounds "$rounds" 2>"$log"; then return 0; fi
  done
  echo "torchrun failed:" >&2; cat "$log" >&2; return 1
}
for n in 2 4; do
  ours=() ours_gloo=() theirs=() theirs_heap=()
  for _ in $(seq "$repeats"); do
    ours+=("$("$root/build/tools/kdist" launch -n "$n" -- "$root/build/bench/fsdp_bench" --rounds "$rounds" | sed -n 's/^\[rank 0\] //p')")
    ours_gloo+=("$(KDIST_TRANSPORT=gloo "$root/build/tools/kdist" launch -n "$n" -- "$root/build/bench/fsdp_bench" --rounds "$rounds" | sed -n 's/^\[rank 0\] //p')")
    theirs+=("$(torch_fsdp "$n")")
    # PyTorch again with the heap settings kdist launch gives its ranks (tools/launcher.cpp).
    theirs_heap+=("$(torch_fsdp "$n" MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824)")
  done
  "$root/.venv/bin/python" - "$rounds" "$n" <<PY
import statistics, sys
def fields(line):
    words = line.split()
    return {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
ours = [fields(l) for l in """$(printf '%s\n' "${ours[@]}")""".splitlines() if l.strip()]
ours_gloo = [fields(l) for l in """$(printf '%s\n' "${ours_gloo[@]}")""".splitlines() if l.strip()]
theirs = [fields(l) for l in """$(printf '%s\n' "${theirs[@]}")""".splitlines() if l.strip()]
theirs_heap = [fields(l) for l in """$(printf '%s\n' "${theirs_heap[@]}")""".splitlines() if l.strip()]
med = lambda runs, key: statistics.median(r[key] for r in runs)
n = int(sys.argv[2])
fsdp, keep, dp, torch_fsdp = med(ours, "fsdp"), med(ours, "fsdp_keep"), med(ours, "dp"), med(theirs, "step")
torch_heap = med(theirs_heap, "step")
state, whole = ours[0]["state_bytes"], ours[0]["one_process_state_bytes"]
growth, unit = med(ours, "peak_rss_growth"), ours[0]["largest_unit_bytes"]
tensor_growth = [r["peak_tensor_growth"] for r in ours]
print(f"{n} ranks x 1 thread: MLP 1024 -> 4096 -> 1024, batch 64 per rank, SGD (momentum); "
      f"median of {sys.argv[1]} steps, median of {len(ours)} alternating runs")
print(f"  kdist FSDP step              {fsdp:8.2f} ms")
print(f"  kdist FSDP, weights kept     {keep:8.2f} ms   (reshard_after_forward = false)")
print(f"  kdist FSDP, prefetch         {med(ours, 'fsdp_prefetch'):8.2f} ms   (shared memory: starts nothing)")
print(f"  kdist data-parallel step     {dp:8.2f} ms")
gloo, gloo_prefetch = med(ours_gloo, "fsdp"), med(ours_gloo, "fsdp_prefetch")
print(f"  through Gloo: FSDP step      {gloo:8.2f} ms, with prefetch {gloo_prefetch:8.2f} ms: "
      f"prefetch / none {gloo_prefetch / gloo:.2f}, prefetch on Gloo / shared memory {gloo_prefetch / fsdp:.2f}")
print(f"  PyTorch FSDP2 step (Gloo)    {torch_fsdp:8.2f} ms")
print(f"  PyTorch FSDP2, kdist's heap  {torch_heap:8.2f} ms   (MALLOC_* as kdist launch sets them)")
print(f"  kdist FSDP / FSDP2           {fsdp / torch_fsdp:8.2f}   (target <= 0.5)")
print(f"  kdist FSDP / FSDP2 same heap {fsdp / torch_heap:8.2f}")
print(f"  kdist FSDP / kdist DP        {fsdp / dp:8.2f}   (target <= 1.3)")
print(f"  state per process            {state / 2**20:8.2f} MiB of {whole / 2**20:.2f} MiB: "
      f"{state / whole:.3f} (target <= 1/{n} + 5% = {1 / n + 0.05:.3f})")
print(f"  peak RSS growth in a step    {growth / 2**20:8.2f} MiB; two largest units' full weights "
      f"{2 * unit / 2**20:.2f} MiB (target: growth <= that + 10%, the state already resident)")
print(f"  peak tensor bytes in a step  {statistics.median(tensor_growth) / 2**20:8.2f} MiB over the state "
      f"(min {min(tensor_growth) / 2**20:.2f}, max {max(tensor_growth) / 2**20:.2f}: live tensors, whatever the heap keeps)")
PY
done
