#!/usr/bin/env bash
# kdist's collectives across two hosts made on this machine (tests/multihost/hosts.sh: network
# namespaces, a veth pair, a private /dev/shm each), 2 ranks per host: the world group is
# hierarchical, and bench/collectives_bench.cpp times it beside flat Gloo over the same 4
# ranks in the same run. Needs root.
#   bash bench/run_collectives_hosts_bench.sh [ROUNDS] [REPEATS]
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-10} repeats=${2:-5}
source "$root/tests/multihost/hosts.sh"
make_hosts
export OMP_NUM_THREADS=1
kdist="$root/build/tools/kdist"
lines=""
for i in $(seq "$repeats"); do
  launch() { launch_node "$1" "$((port + i))" 2 "$root/build/bench/collectives_bench" --rounds "$rounds"; }
  launch 1 >"$work/out1" 2>&1 &
  launch 0 >"$work/out0" 2>&1 || fail "run $i failed"
  wait
  lines+="$(sed -n 's/^\[rank 0\] //p' "$work/out0")"$'\n'
done
"$root/.venv/bin/python" - "$repeats" <<PY
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in """$lines""".splitlines():
    w = line.split()
    if len(w) == 5:
        runs[(w[0] + " " + w[1], w[2], int(w[3]))].append(float(w[4]))
med = {key: statistics.median(v) for key, v in runs.items()}
print(f"2 hosts x 2 ranks (veth pair between network namespaces), float32, median of {sys.argv[1]} runs "
      f"(each the median of interleaved rounds, slowest rank)")
print(f"{'operation':24s} {'MB':>4s} {'hierarchical ms':>16s} {'flat gloo ms':>13s} {'speed-up':>9s}")
for op in ("all_reduce", "all_gather", "all_gather_uneven", "reduce_scatter", "reduce_scatter_uneven"):
    for mb in (1, 8, 32):
        h, g = med[("kdist hierarchical", op, mb)], med[("kdist gloo", op, mb)]
        print(f"{op:24s} {mb:4d} {h:16.2f} {g:13.2f} {g / h:9.2f}")
PY
