#!/usr/bin/env bash
# Installs kdist from BUILD into a fresh prefix, builds examples/ against it with
# find_package(kdist) alone, runs them and checks what they print.
set -euo pipefail
build=$1 source=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/lib/cmake/kdist/kdistConfig.cmake"
test -f "$work/prefix/include/kdist/kdist.h"
test -f "$work/prefix/include/kdist/version.h"
test -x "$work/prefix/bin/kdist"
"$work/prefix/bin/kdist" info | grep -q "^LibTorch 2.13"

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$source/examples" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" \
      "${launcher[@]}" >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/consumer" -j2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
out=$("$work/consumer/layout_plan/layout_plan")
echo "$out"
# fc1 is column parallel through its Keras name, fc2 row parallel through its torch name.
grep -Eq '^fc1\.weight +fc1/kernel +\(4096, 1024\) +\(model, None\) +\[R, S\(0\)\]' <<<"$out"
grep -Eq '^fc2\.weight +fc2/kernel +\(1024, 4096\) +\(None, model\) +\[R, S\(1\)\]' <<<"$out"
grep -Eq '^fc1\.bias +fc1/bias +\(4096\) +\(model\) +\[R, S\(0\)\]' <<<"$out"
grep -Eq '^fc2\.bias +fc2/bias +\(1024\) +\(None\) +\[R, R\]' <<<"$out"
# A real multi-process training run of the installed package, checked against one process.
trained=$("$work/prefix/bin/kdist" launch -n 2 -- "$work/consumer/model_parallel_mlp/model_parallel_mlp" 60)
echo "$trained" | tail -3
grep -Eq '^\[rank 0\] 2 processes: loss .* largest relative difference from one process' <<<"$trained"
dp=$("$work/prefix/bin/kdist" launch -n 2 -- "$work/consumer/data_parallel_mlp/data_parallel_mlp" 2)
echo "$dp" | tail -3
grep -q '^\[rank 0\] epoch 1  64 steps  mean loss' <<<"$dp"
grep -q '^\[rank 0\] replicas identical: yes' <<<"$dp"
# The installed kdist train finds the corpus installed beside it.
gpt=$(KDIST_CORPUS= "$work/prefix/bin/kdist" train --model gpt --width 32 --layers 1 --steps 2)
grep -q "characters of $work/prefix/bin/../share/kdist/corpus.txt" <<<"$gpt"
echo "install test: ok"
