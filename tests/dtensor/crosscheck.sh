#!/usr/bin/env bash
# kdist's DTensor against PyTorch's on N ranks: usage crosscheck.sh KDIST WRITER TORCHRUN SCRIPT N
set -euo pipefail
kdist=$1 writer=$2 torchrun=$3 script=$4 n=$5
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$kdist" launch -n "$n" -- "$writer" "$out"
"$torchrun" --standalone --nproc-per-node "$n" "$script" "$out" 2>&1 | grep -v "^W1\|OMP_NUM_THREADS\|^\*\*\*\*"
