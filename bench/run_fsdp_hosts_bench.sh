#!/usr/bin/env bash
# kdist's FSDP step with and without prefetch across two hosts made on this machine
# (tests/multihost/hosts.sh: network namespaces, a veth pair), one rank per host, so the batch
# group spans the hosts and its gathers go through Gloo over the veth. Needs root.
#   bash bench/run_fsdp_hosts_bench.sh [ROUNDS] [REPEATS]
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-20} repeats=${2:-5}
source "$root/tests/multihost/hosts.sh"
make_hosts
export OMP_NUM_THREADS=1
kdist="$root/build/tools/kdist"
runs=()
for i in $(seq "$repeats"); do
  launch() { launch_node "$1" "$((port + i))" 1 "$root/build/bench/fsdp_bench" --rounds "$rounds"; }
  launch 1 >"$work/out1" 2>&1 &
  launch 0 >"$work/out0" 2>&1 || fail "run $i failed"
  wait
  runs+=("$(sed -n 's/^\[rank 0\] \(fsdp .*\)/\1/p' "$work/out0")")
done
"$root/.venv/bin/python" - "$rounds" <<PY
import statistics, sys
runs = [l.split() for l in """$(printf '%s\n' "${runs[@]}")""".splitlines() if l.strip()]
runs = [{w[i]: float(w[i + 1]) for i in range(0, len(w) - 1, 2)} for w in runs]
med = lambda key: statistics.median(r[key] for r in runs)
print(f"2 hosts x 1 rank (Gloo over a veth pair): MLP 1024 -> 4096 -> 1024, batch 64 per rank, SGD; "
      f"median of {sys.argv[1]} steps, median of {len(runs)} runs")
print(f"  kdist FSDP step              {med('fsdp'):8.2f} ms")
print(f"  kdist FSDP, prefetch         {med('fsdp_prefetch'):8.2f} ms   (prefetch / none {med('fsdp_prefetch') / med('fsdp'):.2f})")
print(f"  kdist FSDP, weights kept     {med('fsdp_keep'):8.2f} ms")
print(f"  kdist data-parallel step     {med('dp'):8.2f} ms")
PY
