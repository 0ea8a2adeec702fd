#!/usr/bin/env bash
# `kdist plan` (tools/plan_command.cpp): plans for meshes larger than the machine, without
# processes. usage: plan_test.sh KDIST CASE
set -uo pipefail
kdist=$1 case=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$work/out"; echo "--- stderr"; cat "$work/err"; exit 1; }

case $case in
gpt_8x8)
  "$kdist" plan --model gpt --width 64 --layers 2 --mesh batch=8,model=8 --heads 8 --batch-size 64 >"$work/out" 2>"$work/err" \
    || fail "exit code $?"
  # q's (64, 64) weight in eight (8, 64) row blocks; up's (256, 64) in (32, 64).
  grep -Eq "^blocks.0.attn.q.weight +\(64, 64\) +\(model, None\) +\[R, S\(0\)\] +\(8, 64\) +column$" "$work/out" || fail "q shard"
  grep -Eq "^blocks.1.mlp.up.weight +\(256, 64\) +\(model, None\) +\[R, S\(0\)\] +\(32, 64\) +column$" "$work/out" || fail "up shard"
  grep -Eq "^tok.weight +\(62, 64\) +\(None, None\) +\[R, R\] +\(62, 64\) +replicated$" "$work/out" || fail "tok replicated"
  grep -q "per device: parameters .*adam state" "$work/out" || fail "no bytes per device"
  # 8 rows per device x 64 characters = 512 rows; o's all_reduce: 512 x 64 x 4 bytes = 128 KiB.
  grep -q "collectives per training step on rank 0 (512 rows of activations;" "$work/out" || fail "rows"
  grep -Eq "^forward +all_reduce +model \(8\) +blocks.0.attn.o \(partial sums\) +128.00 KiB$" "$work/out" || fail "o's all_reduce"
  grep -Eq "^backward +all_reduce +batch \(8\) +gradients" "$work/out" || fail "gradient sync"
  grep -Eq "^total per step: .* in 14 collectives$" "$work/out" || fail "total"
  ;;
gemma_8x8)  # keras-hub's 2-D pattern: FSDP over batch and tensor parallelism over model
  "$kdist" plan --model gpt --width 64 --layers 2 --mesh batch=8,model=8 --heads 8 --batch-size 64 --layout gemma \
    >"$work/out" 2>"$work/err" || fail "exit code $?"
  # q's (64, 64) weight in 64 blocks of (8, 8); the token embedding's (62, 64) likewise.
  grep -Eq "^blocks.0.attn.q.weight +\(64, 64\) +\(model, batch\) +\[S\(1\), S\(0\)\] +\(8, 8\) +column\+fsdp$" "$work/out" || fail "q shard"
  grep -Eq "^tok.weight +\(62, 64\) +\(model, batch\) +\[S\(1\), S\(0\)\] +\(8, 8\) +vocab\+fsdp$" "$work/out" || fail "tok shard"
  # The shard (8 x 8 x 4 bytes) is gathered forward and again backward; the gathered gradient
  # (8 x 64 x 4) is reduce-scattered.
  grep -Eq "^forward +all_gather +batch \(8\) +blocks.0.attn.q.weight +256 B$" "$work/out" || fail "q's all_gather"
  grep -Eq "^backward +all_gather +batch \(8\) +blocks.0.attn.q.weight \(again\) +256 B$" "$work/out" || fail "q's second all_gather"
  grep -Eq "^backward +reduce_scatter +batch \(8\) +blocks.0.attn.q.weight \(gradient, averaged\) +2.00 KiB$" "$work/out" \
    || fail "q's reduce_scatter"
  ! grep -Eq "reduce_scatter +batch \(8\) +tok.weight.*again" "$work/out" || fail "an Embedding needs no second gather"
  grep -q "one process would hold 1.71 MiB" "$work/out" || fail "whole-model bytes"
  ;;
accumulate_8x8)  # --accumulate 2: gathers per micro-batch, gradient reductions once a step
  "$kdist" plan --model gpt --width 64 --layers 2 --mesh batch=8,model=8 --heads 8 --batch-size 64 --layout gemma \
    --accumulate 2 >"$work/out" 2>"$work/err" || fail "exit code $?"
  grep -q "batch:        64 global, 8 per data shard (8 shards over 'batch'), 2 micro-batches of 4 (--accumulate)" \
    "$work/out" || fail "micro-batches"
  grep -q "collectives per training step on rank 0 (256 rows of activations per micro-batch, 2 micro-batches;" \
    "$work/out" || fail "rows"
  grep -Eq "^forward x2 +all_gather +batch \(8\) +blocks.0.attn.q.weight +256 B$" "$work/out" || fail "q's all_gather"
  grep -Eq "^forward x2 +all_reduce +model \(8\) +blocks.0.attn.o \(partial sums\) +64.00 KiB$" "$work/out" || fail "o's all_reduce"
  grep -Eq "^backward +reduce_scatter +batch \(8\) +blocks.0.attn.q.weight \(gradient, averaged\) +2.00 KiB$" "$work/out" \
    || fail "q's reduce_scatter not once"
  ;;
loss_parallel_8x8)  # --loss-parallel: the head column parallel, the loss's two all_reduces
  "$kdist" plan --model gpt --width 64 --layers 2 --mesh batch=8,model=8 --heads 8 --batch-size 64 --loss-parallel \
    >"$work/out" 2>"$work/err" || fail "exit code $?"
  grep -Eq "^head.weight +\(62, 64\) +\(model, None\) +\[R, S\(0\)\] +\(8, 64\) +column$" "$work/out" || fail "head"
  # 512 rows: their maxima (2 KiB), then sum of exp and target logit (4 KiB); no gather of the logits.
  grep -Eq "^forward +all_reduce +model \(8\) +loss \(max of each row's logits\) +2.00 KiB$" "$work/out" || fail "max"
  grep -Eq "^forward +all_reduce +model \(8\) +loss \(sum of exp, target logit\) +4.00 KiB$" "$work/out" || fail "sums"
  ! grep -Eq "all_gather +model \(8\) +head" "$work/out" || fail "logits gathered"
  ;;
sequence_parallel_8x8)  # --sequence-parallel: reduce_scatter and all_gather along the sequence
  "$kdist" plan --model gpt --width 64 --layers 2 --mesh batch=8,model=8 --heads 8 --batch-size 64 --sequence-parallel \
    >"$work/out" 2>"$work/err" || fail "exit code $?"
  # q, k and v share one gather of the (512, 64) sequence, once per attention; each rank hands
  # in its piece, 64 rows: 16 KiB.
  grep -Eq "^forward +all_gather +model \(8\) +blocks.0.attn.q \(the sequence\) +16.00 KiB$" "$work/out" \
    || fail "q's gather"
  ! grep -q "blocks.0.attn.k (the sequence" "$work/out" || fail "k gathers again"
  grep -Eq "^forward +reduce_scatter +model \(8\) +blocks.0.attn.o \(to pieces of the sequence\) +128.00 KiB$" "$work/out" \
    || fail "o's reduce_scatter"
  ! grep -Eq "^forward +all_reduce +model \(8\) +blocks.0.attn.o " "$work/out" || fail "o still all-reduces"
  grep -Eq "^backward +all_reduce +model \(8\) +blocks.0.ln1.weight \(gradient, summed over pieces\) +256 B$" "$work/out" \
    || fail "ln1's gradient"
  ;;
mlp_data_64)
  "$kdist" plan --model mlp --devices 64 --batch-size 128 --optimizer sgd >"$work/out" 2>"$work/err" || fail "exit code $?"
  grep -q "distribution: DataParallel" "$work/out" || fail "not DataParallel"
  grep -q "batch:        128 global, 2 per data shard (64 shards over 'batch')" "$work/out" || fail "batch split"
  grep -q "sgd state 41.03 KiB" "$work/out" || fail "sgd momentum bytes"
  # 10504 gradient elements and 4 flags, one bucket.
  grep -Eq "^backward +all_reduce +batch \(64\) +gradients, bucket 1 of 1 \(averaged\) +41.05 KiB$" "$work/out" || fail "sync"
  ;;
no_mesh)
  "$kdist" plan --model mlp >"$work/out" 2>"$work/err"; rc=$?
  [ $rc = 2 ] || fail "exit code $rc, expected 2"
  grep -q "kdist plan: \[kdist.plan\] give the mesh to plan for" "$work/err" || fail "message"
  "$kdist" plan --model mlp --mesh 'batch=*,model=2' >"$work/out" 2>"$work/err"; rc=$?
  [ $rc = 2 ] || fail "exit code $rc for a '*' axis, expected 2"
  grep -q "every axis sized: .* ('batch=\*,model=2' leaves an axis to the job's size)" "$work/err" || fail "'*' message"
  ;;
*) echo "unknown case $case"; exit 2 ;;
esac
echo "PASS $case"
