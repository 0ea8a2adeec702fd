#!/usr/bin/env bash
# The built-in gpt on (batch=2, model=2), 4 ranks x 1 thread, Adam: keras-hub's 2-D layout
# (--layout gemma) against the tensor-parallel map (--layout tp), alternating runs; training
# state per process measured by `kdist train` off its tensors, one process's by --verify.
#   bash bench/run_gpt_layout_bench.sh [STEPS] [REPEATS] [extra kdist train options...]
# Each step time is the median over REPEATS runs of the run's median step (first step left out).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
steps=${1:-20} repeats=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
export OMP_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq "$repeats"); do
  for layout in tp gemma; do
    verify=()
    [ "$i" = 1 ] && verify=(--verify)  # one process's state, once
    "$root/build/tools/kdist" launch -n 4 -- "$root/build/tools/kdist" train --model gpt \
      --mesh batch=2,model=2 --layout "$layout" --optimizer adam --steps "$steps" \
      --metrics "$work/$layout-$i.jsonl" "${verify[@]}" "$@" >"$work/$layout-$i.out" 2>&1 \
      || { echo "kdist train --layout $layout failed:"; tail -20 "$work/$layout-$i.out"; exit 1; }
  done
done
"$root/.venv/bin/python" - "$work" "$repeats" "$steps" <<'PY'
import json, re, statistics, sys
work, repeats, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def run_median(path):
    seconds = [json.loads(line)["seconds"] for line in open(path)][1:]
    return statistics.median(seconds) * 1e3
def state(layout):
    text = open(f"{work}/{layout}-1.out").read()
    largest = re.search(r"largest over processes ([\d.]+) MiB", text).group(1)
    whole = re.search(r"one process holds ([\d.]+) MiB", text).group(1)
    ok = "OK" if "): OK" in text else "FAILED"
    return float(largest), float(whole), ok
step = {l: statistics.median(run_median(f"{work}/{l}-{i}.jsonl") for i in range(1, repeats + 1))
        for l in ("tp", "gemma")}
print(f"gpt on (batch=2, model=2), 4 ranks x 1 thread, Adam; median of {steps} steps, "
      f"median of {repeats} alternating runs")
for layout in ("tp", "gemma"):
    largest, whole, ok = state(layout)
    print(f"  --layout {layout:5}  step {step[layout]:7.2f} ms   state per process {largest:6.2f} MiB of "
          f"{whole:.2f} MiB: {largest / whole:.3f}   verify {ok}")
print(f"  gemma / tp step   {step['gemma'] / step['tp']:.2f}")
print(f"  gemma state target: <= 1/4 + 5% = 0.300 of one process's")
PY
