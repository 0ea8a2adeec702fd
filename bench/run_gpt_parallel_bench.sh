#!/usr/bin/env bash
# Loss parallel and sequence parallel against plain tensor parallelism on 2 ranks, 1 thread
# each: a vocabulary-heavy GPT (vocabulary 32000, context 512, width 128) and a wide one
# (vocabulary 8000, width 1024), where the residual stream weighs more.
#   bash bench/run_gpt_parallel_bench.sh [ROUNDS]
# Within a run the four configurations alternate, ROUNDS steps each (medians of the slowest
# rank); peak resident growth is one step's, per configuration, on rank 0.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-5}
export OMP_NUM_THREADS=1
for shape in "--vocab 32000 --width 128 --heads 4" "--vocab 8000 --width 1024 --heads 8"; do
  # shellcheck disable=SC2086
  line=$("$root/build/tools/kdist" launch -n 2 -- "$root/build/bench/gpt_parallel_bench" --rounds "$rounds" \
           --context 512 --batch 2 $shape | sed -n 's/^\[rank 0\] //p')
  "$root/.venv/bin/python" - "$shape" "$line" <<'PY'
import sys
words = sys.argv[2].split()
f = {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
mib = lambda b: b / 2**20
print(f"2 ranks x 1 thread, TinyGpt {sys.argv[1]}, context 512, batch 2, Adam; "
      f"whole logits {mib(f['whole_logits_bytes']):.1f} MiB, one residual tensor {mib(f['residual_bytes']):.1f} MiB")
print(f"  {'':22s} {'step ms':>9s} {'RSS growth MiB':>15s} {'tensors MiB':>12s} {'step / tp':>10s} "
      f"{'RSS / tp':>9s} {'tensors / tp':>13s}")
for name, label in [("tp", "tensor parallel"), ("lp", "+ loss parallel"), ("sp", "+ sequence parallel"),
                    ("sp_lp", "+ both")]:
    print(f"  {label:22s} {f[name]:9.1f} {mib(f[name + '_peak']):15.1f} {mib(f[name + '_tensors']):12.1f} "
          f"{f[name] / f['tp']:10.2f} {f[name + '_peak'] / f['tp_peak']:9.2f} {f[name + '_tensors'] / f['tp_tensors']:13.2f}")
PY
done
