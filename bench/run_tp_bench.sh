#!/usr/bin/env bash
# Tensor-parallel MLP step: kdist on 2 ranks against one process and PyTorch TP, back to back.
#   bash bench/run_tp_bench.sh [ROUNDS] [REPEATS]
# The three configurations run alternately REPEATS times (a noisy 2-core VM); each figure is
# the median of the repeats' medians.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-20} repeats=${2:-3}
export OMP_NUM_THREADS=1
kdist="$root/build/tools/kdist" bench="$root/build/bench/tp_mlp_bench"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
field() { sed -n "s/^\[rank 0\] //p; /^step_ms/p" | awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) print $(i + 1)}' | head -1; }
echo "MLP 1024 -> H -> 1024, batch 64, forward + backward + SGD, 1 thread per rank, median of $rounds steps, median of $repeats alternating runs"
printf "%-7s %10s %10s %10s %12s %14s %16s\n" H "1 proc ms" "kdist ms" "torch ms" "kdist/torch" "kdist/(1p/2)" "params/rank k:1p"
for hidden in 4096 16384; do
  ss=() ks=() ts=()
  for _ in $(seq "$repeats"); do
    single=$("$kdist" launch -n 1 -- "$bench" --hidden $hidden --rounds "$rounds")
    ours=$("$kdist" launch -n 2 -- "$bench" --hidden $hidden --rounds "$rounds")
    theirs=$("$root/.venv/bin/torchrun" --standalone --nproc-per-node 2 "$root/bench/tp_mlp_torch.py" \
             --hidden $hidden --rounds "$rounds" 2>"$log") || { echo "torchrun failed:"; cat "$log"; exit 1; }
    ss+=("$(field step_ms <<<"$single")") ks+=("$(field step_ms <<<"$ours")") ts+=("$(field step_ms <<<"$theirs")")
  done
  median() { printf "%s\n" "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
  s=$(median "${ss[@]}") k=$(median "${ks[@]}") t=$(median "${ts[@]}")
  sb=$(field param_bytes <<<"$single") kb=$(field param_bytes <<<"$ours")
  python3 -c "print(f'{$hidden:<7} {$s:10.2f} {$k:10.2f} {$t:10.2f} {$k/$t:12.2f} {$k/($s/2):14.2f} {$kb/$sb:16.2f}')"
done
