#!/usr/bin/env bash
# `kdist train` end to end (tools/train/train_command.cpp): short runs on real processes whose
# --verify compares the distributed losses with one process, and the command-line errors.
# usage: train_test.sh KDIST CASE
set -uo pipefail
kdist=$1 case=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$work/out" 2>/dev/null; echo "--- stderr"; cat "$work/err" 2>/dev/null; exit 1; }
launch() { local n=$1; shift; "$kdist" launch --grace 2 -n "$n" -- "$kdist" train "$@" >"$work/out" 2>"$work/err"; }

# A run passes when it exits 0, --verify matched one process, and the loss fell.
expect_verified() {
  local rc=$1
  [ "$rc" = 0 ] || fail "exit code $rc, expected 0"
  grep -Eq "verify: [0-9]+ steps, largest relative loss difference from one process .*: OK" "$work/out" \
    || fail "no passing verify line"
  local line first last
  line=$(grep -E "trained [0-9]+ steps on [0-9]+ process" "$work/out") || fail "no summary line"
  first=$(sed -E 's/.*loss ([0-9.]+) -> ([0-9.]+).*/\1/' <<<"$line")
  last=$(sed -E 's/.*loss ([0-9.]+) -> ([0-9.]+).*/\2/' <<<"$line")
  python3 -c "import sys; sys.exit(0 if $last < 0.9 * $first else 1)" || fail "loss did not fall: $first -> $last"
}

# A bad option: exit code 2, one error line (from one rank only), naming the problem.
expect_error() {
  local rc=$1 pattern=$2
  [ "$rc" = 2 ] || fail "exit code $rc, expected 2"
  [ "$(grep -c "kdist train: " "$work/err")" = 1 ] || fail "expected exactly one error line"
  grep -q -- "$pattern" "$work/err" || fail "error does not say: $pattern"
  ! grep -q "^\(\[rank [0-9]\] \)\?step " "$work/out" || fail "training started"
}

case $case in
mlp_data_n2)  # DataParallel on a 1-D mesh of 2
  launch 2 --model mlp --steps 30 --verify; expect_verified $?
  grep -q "distribution: DataParallel" "$work/out" || fail "not DataParallel"
  grep -q "gradient sync: 1 bucket averaged over 'batch', through shared memory" "$work/out" \
    || fail "gradients not averaged through shared memory"
  ;;
mlp_model_2x2)  # ModelParallel over (batch, model), SGD
  launch 4 --model mlp --mesh batch=2,model=2 --steps 30 --optimizer sgd --lr 0.05 --verify; expect_verified $?
  grep -Eq "fc1.weight +\(256, 32\) +\(model, None\) +\[R, S\(0\)\] +\(128, 32\) +column" "$work/out" \
    || fail "fc1 not column parallel with a (128, 32) shard"
  ;;
mlp_model_batch_2x2)  # the batch axis second: ranks 0..3 read shards 0, 1, 0, 1
  launch 4 --model mlp --mesh model=2,batch=2 --steps 20 --optimizer sgd --lr 0.05 --verify; expect_verified $?
  grep -q "batch:        32 global, 16 per data shard (2 shards" "$work/out" || fail "not 2 data shards"
  ;;
gpt_model_n2)  # tensor parallel only: default mesh (batch=1, model=2), AdamW
  launch 2 --model gpt --distribution model --steps 20 --optimizer adamw --verify; expect_verified $?
  grep -q "DeviceMesh(shape=(1, 2), axis_names=(batch, model)" "$work/out" || fail "not a (1, 2) mesh"
  ;;
gpt_data_n2)  # data parallel gpt from --devices
  launch 2 --model gpt --devices 2 --steps 20 --verify; expect_verified $?
  ;;
gpt_2x2)  # the demo's shape, with its outputs
  launch 4 --model gpt --width 64 --mesh batch=2,model=2 --steps 30 --log-every 10 --verify \
    --metrics "$work/metrics.jsonl" --plot "$work/loss.svg"
  expect_verified $?
  grep -Eq "blocks.1.attn.q.weight +\(64, 64\) +\(model, None\) +\[R, S\(0\)\] +\(32, 64\) +column" "$work/out" \
    || fail "attention not sharded over the model axis"
  grep -q "^\[rank 0\] step 10/30  loss" "$work/out" || fail "no progress line at step 10"
  grep -A1 "^\[rank 0\] sample:" "$work/out" | grep -q "^\[rank 0\] ." || fail "no sample text"
  ! grep -q "^\[rank [123]\] " "$work/out" || fail "ranks other than 0 printed"
  python3 - "$work/metrics.jsonl" "$work/loss.svg" "$work/out" <<'PY' || fail "metrics or plot wrong"
import json, re, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["step"] for l in lines] == list(range(1, 31)), "one line per step"
assert all(l["loss"] > 0 and l["seconds"] > 0 and l["tokens_per_s"] > 0 for l in lines)
out = open(sys.argv[3]).read()
last = float(re.search(r"loss [0-9.]+ -> ([0-9.]+)", out).group(1))
assert abs(lines[-1]["loss"] - last) < 1e-4, "metrics agree with the summary"
svg = open(sys.argv[2]).read()
assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
points = re.search(r'<polyline[^>]*points="([^"]*)"', svg).group(1).split()
assert len(points) == 30, len(points)
PY
  ;;
config)  # a JSON config file; the command line wins over it
  cat >"$work/config.json" <<'JSON'
{"model": "mlp", "mesh": "batch=1,model=2", "steps": 5, "batch_size": 16,
 "layout": {"fc1.weight": ["model", null], "fc2/kernel": ["model", null]},
 "no-default-layout": true, "optimizer": "sgd", "lr": 0.05}
JSON
  launch 2 --config "$work/config.json" --steps 8 --verify; expect_verified $?
  grep -q "step 8/8" "$work/out" || fail "--steps 8 did not override the file's 5"
  grep -Eq "fc1.weight .* \[R, S\(0\)\] .* column" "$work/out" || fail "fc1 not column parallel by its torch name"
  grep -Eq "fc2.weight .* \[R, S\(1\)\] .* row" "$work/out" || fail "fc2 not row parallel by its Keras name"
  grep -q "layout_map keys=\['fc1.weight', 'fc2/kernel'\]" "$work/out" || fail "default layout used despite no-default-layout"
  grep -q "batch:        16 global" "$work/out" || fail "batch_size from the file not used"
  ;;
resume)  # stop after 4 steps (a rank killed while saving step 6), resume: the same losses
  common=(--model gpt --width 64 --layers 2 --mesh batch=2,model=2 --log-every 1)
  launch 4 "${common[@]}" --steps 8 --metrics "$work/straight.jsonl" || fail "uninterrupted run failed"
  KDIST_CHECKPOINT_FAULT=1:writing launch 4 "${common[@]}" --steps 8 --checkpoint-dir "$work/ck" --checkpoint-every 2 \
    --metrics "$work/crashed.jsonl"
  [ $? != 0 ] || fail "the run with a fault did not fail"
  mv "$work/out" "$work/crashed.out"
  # The fault kills rank 1 in its first save (step 2): resume has nothing, start over with
  # saves every 2 steps, and stop the job at step 4 by asking for 4 steps.
  launch 4 "${common[@]}" --steps 4 --checkpoint-dir "$work/ck" --checkpoint-every 2 --resume || fail "run to step 4 failed"
  grep -q "no checkpoint in $work/ck: starting at step 1" "$work/out" || fail "the crashed save was taken for a checkpoint"
  [ -f "$work/ck/step-4/metadata.json" ] && [ -f "$work/ck/step-2/metadata.json" ] || fail "checkpoints missing"
  launch 4 "${common[@]}" --steps 8 --checkpoint-dir "$work/ck" --checkpoint-every 2 --resume \
    --metrics "$work/resumed.jsonl" || fail "resumed run failed"
  grep -q "resumed from $work/ck/step-4" "$work/out" || fail "did not resume from step 4"
  grep -q "^\[rank 0\] step 5/8" "$work/out" || fail "did not continue at step 5"
  [ ! -e "$work/ck/step-2" ] && [ -f "$work/ck/step-8/metadata.json" ] || fail "not the two newest checkpoints kept"
  python3 - "$work/straight.jsonl" "$work/resumed.jsonl" <<'PY' || fail "resumed losses differ"
import json, sys
straight = {l["step"]: l["loss"] for l in map(json.loads, open(sys.argv[1]))}
resumed = {l["step"]: l["loss"] for l in map(json.loads, open(sys.argv[2]))}
assert sorted(resumed) == [5, 6, 7, 8], sorted(resumed)
for step, loss in resumed.items():
    assert loss == straight[step], (step, loss, straight[step])  # bit for bit
print("steps 5-8 identical to the uninterrupted run")
PY
  ;;
restart_after_kill)  # rank 1 killed by SIGKILL at a random step; --max-restarts resumes it
  common=(--model gpt --width 64 --layers 2 --mesh batch=2,model=2 --log-every 1 --steps 8)
  launch 4 "${common[@]}" --metrics "$work/straight.jsonl" || fail "uninterrupted run failed"
  kill_at=$(( 2 + RANDOM % 5 ))  # rank 0 has logged this many steps (2..6)
  cat >"$work/kill.sh" <<EOF
#!/usr/bin/env bash
if [ "\$RANK" = 1 ] && [ "\$KDIST_RESTART_COUNT" = 0 ]; then
  ( while [ "\$(cat "$work/run.jsonl" 2>/dev/null | wc -l)" -lt $kill_at ]; do sleep 0.02; done; kill -9 \$\$ ) &
fi
exec "\$@"
EOF
  chmod +x "$work/kill.sh"
  "$kdist" launch --grace 2 --max-restarts 2 -n 4 -- "$work/kill.sh" "$kdist" train "${common[@]}" \
    --checkpoint-dir "$work/ck" --checkpoint-every 2 --resume --metrics "$work/run.jsonl" >"$work/out" 2>"$work/err"
  rc=$?
  [ $rc = 0 ] || fail "exit code $rc after a restart, expected 0 (killed once rank 0 logged $kill_at steps)"
  grep -qx "\[kdist.launch\] restart 1 of 2 after rank 1 was killed by signal 9 (Killed)" "$work/err" \
    || fail "no restart line"
  summary=$(grep -x "\[kdist.launch\] 2 attempts: 1 failed (rank 1 was killed by signal 9 (Killed)), 2 succeeded; [0-9]* steps\? run again" "$work/err") \
    || fail "no summary of the attempts"
  # What the failure cost: the steps after the checkpoint that attempt 1 had run.
  resumed=$(sed -n 's/^\[rank 0\] resumed from .*step-\([0-9]*\)$/\1/p' "$work/out")
  [ -n "$resumed" ] || resumed=0
  lost=$(sed -E 's/.*; ([0-9]+) steps? run again/\1/' <<<"$summary")
  if [ "$lost" = 0 ]; then
    grep -qx "\[kdist.launch\] attempt 2 resumed after step $resumed: no step lost" "$work/err" || fail "no resume line (0 lost)"
  elif [ "$lost" = 1 ]; then
    grep -qx "\[kdist.launch\] attempt 2 resumed after step $resumed: step $((resumed + 1)) of attempt 1 run again" \
      "$work/err" || fail "no resume line naming the step run again after step $resumed"
  else
    grep -qx "\[kdist.launch\] attempt 2 resumed after step $resumed: steps $((resumed + 1))-$((resumed + lost)) of attempt 1 run again" \
      "$work/err" || fail "no resume line naming the $lost steps run again after step $resumed"
  fi
  grep "^\[kdist.launch\] \(attempt\|2 attempts\)" "$work/err"
  python3 - "$work/straight.jsonl" "$work/run.jsonl" <<'PY' || fail "the restarted job's losses differ"
import json, sys
straight = {l["step"]: l["loss"] for l in map(json.loads, open(sys.argv[1]))}
resumed = {l["step"]: l["loss"] for l in map(json.loads, open(sys.argv[2]))}
assert max(resumed) == 8, sorted(resumed)
for step, loss in resumed.items():
    assert loss == straight[step], (step, loss, straight[step])  # bit for bit
print("steps", min(resumed), "to 8 after the restart identical to the uninterrupted run")
PY
  ;;
checkpoint_async)  # --checkpoint-async: the same checkpoints byte for byte, the same losses
  common=(--model gpt --width 64 --layers 2 --mesh batch=2,model=2 --log-every 1 --checkpoint-every 2)
  launch 4 "${common[@]}" --steps 8 --metrics "$work/straight.jsonl" || fail "uninterrupted run failed"
  launch 4 "${common[@]}" --steps 6 --checkpoint-dir "$work/sync" || fail "synchronous run failed"
  launch 4 "${common[@]}" --steps 6 --checkpoint-dir "$work/async" --checkpoint-async \
    --metrics "$work/async.jsonl" || fail "asynchronous run failed"
  [ "$(ls "$work/async")" = "$(printf 'step-4\nstep-6')" ] || fail "not the two newest kept: $(ls "$work/async")"
  for file in "$work"/sync/step-6/*; do
    cmp -s "$file" "$work/async/step-6/$(basename "$file")" || fail "$(basename "$file") differs from the synchronous save"
  done
  launch 4 "${common[@]}" --steps 8 --checkpoint-dir "$work/async" --checkpoint-async --resume \
    --metrics "$work/resumed.jsonl" || fail "resumed run failed"
  grep -q "resumed from $work/async/step-6" "$work/out" || fail "did not resume from step 6"
  [ -f "$work/async/step-8/metadata.json" ] && [ ! -e "$work/async/step-4" ] || fail "step-8 not published or step-4 kept"
  python3 - "$work/straight.jsonl" "$work/async.jsonl" "$work/resumed.jsonl" <<'PY' || fail "losses differ"
import json, sys
straight, saved, resumed = ({l["step"]: l["loss"] for l in map(json.loads, open(f))} for f in sys.argv[1:])
assert sorted(saved) == list(range(1, 7)) and sorted(resumed) == [7, 8], (sorted(saved), sorted(resumed))
for step, loss in {**saved, **resumed}.items():
    assert loss == straight[step], (step, loss, straight[step])  # bit for bit
print("steps 1-8 identical to the run without checkpoints")
PY
  ;;
error_checkpoint_async)
  "$kdist" train --model mlp --checkpoint-async >"$work/out" 2>"$work/err"
  expect_error $? "checkpoint-async needs --checkpoint-dir"
  ;;
mesh_fill_n4)  # an axis of size '*' takes the processes the others leave
  launch 4 --model mlp --mesh batch=*,model=2 --steps 20 --optimizer sgd --lr 0.05 --verify; expect_verified $?
  grep -q "DeviceMesh(shape=(2, 2), axis_names=(batch, model)" "$work/out" || fail "not a (2, 2) mesh"
  launch 3 --model mlp --mesh batch=*,model=2 --steps 2
  expect_error $? "mesh batch=\*,model=2: the job's 3 processes do not divide by the other axes' 2, so 'batch=\*' has no size"
  "$kdist" train --model mlp --mesh 'batch=*,model=*' >"$work/out" 2>"$work/err"
  [ $? != 0 ] || fail "two '*' axes accepted"  # CLI11's validator: its own exit code
  grep -q -- "--mesh 'batch=\*,model=\*' has more than one axis of size '\*': give all but one" "$work/err" \
    || fail "two '*' axes not named"
  ;;
error_resume)
  "$kdist" train --model mlp --resume >"$work/out" 2>"$work/err"
  expect_error $? "resume needs --checkpoint-dir"
  ;;
column_into_replicated)  # a sharded output fed to a replicated layer: named, not a shape error
  launch 2 --model mlp --distribution model --no-default-layout --layout 'fc1/kernel=null,model' --steps 2
  rc=$?
  [ $rc = 1 ] || fail "exit code $rc, expected 1"
  grep -q "replicated Linear(256, 8) got inputs of last dimension 128 (a 1/2 shard?), expected 256: if the layer before it is column parallel, make this one row parallel" "$work/err" \
    || fail "error does not explain the column -> replicated mismatch"
  ! grep -q "frame #" "$work/err" || fail "a C++ backtrace was printed"
  ;;
terminal)  # on a terminal the progress line is rewritten in place
  script -qec "$kdist train --model mlp --steps 5" /dev/null >"$work/out" 2>&1 || fail "run failed"
  grep -q $'\r\e\[Kstep 5/5' "$work/out" || fail "no in-place progress line"
  ;;
error_unknown_axis)
  "$kdist" train --model mlp --mesh batch=1,model=1 --layout 'fc1/kernel=null,modle' >"$work/out" 2>"$work/err"
  expect_error $? "axis 'modle' of layout (None, modle) is not in mesh axes (batch, model)"
  ;;
error_mesh_size)
  "$kdist" train --mesh batch=2,model=2 >"$work/out" 2>"$work/err"
  expect_error $? "mesh batch=2,model=2 has 4 devices but the job has 1 process"
  ;;
error_unmatched_key)
  launch 2 --model mlp --distribution model --layout 'encoder/kernel=null,model'
  expect_error $? "LayoutMap keys \['encoder/kernel'\] match no parameter"
  ;;
error_missing_data)
  "$kdist" train --data "$work/none.txt" >"$work/out" 2>"$work/err"
  expect_error $? "cannot read data file '$work/none.txt'"
  ;;
error_batch_size)
  launch 2 --model mlp --batch-size 33
  expect_error $? "batch-size 33 does not divide into the 2 data shards of mesh axis 'batch'"
  ;;
error_heads)
  launch 2 --model gpt --heads 3 --width 48 --distribution model
  expect_error $? "gpt's 3 attention heads do not split over a model axis of size 2"
  ;;
error_layout_on_both)  # one dimension over the batch axis and the model axis
  "$kdist" train --model mlp --mesh batch=1,model=1 --no-default-layout --layout 'fc1/kernel=batch+model,null' \
    >"$work/out" 2>"$work/err"
  expect_error $? "its dimension 1 is sharded over both 'batch' (the batch axis) and 'model'"
  ;;
fsdp_n4)  # --layout fsdp: every weight over the batch axis, 4 processes
  launch 4 --model gpt --width 64 --layout fsdp --steps 12 --verify; expect_verified $?
  grep -Eq "blocks.0.mlp.up.weight +\(256, 64\) +\(batch, None\) +\[S\(0\)\] +\(64, 64\) +fsdp" "$work/out" \
    || fail "up.weight not FSDP over batch on its larger dimension"
  ;;
plan_is_what_runs)  # `kdist plan`'s collectives by kind are what every rank of `kdist train` sends
  check() {  # N, then the options train and plan share
    local n=$1; shift
    launch "$n" "$@" --steps 2 --count-collectives || fail "train exit code $? ($*)"
    for ((r = 0; r < n; r++)); do
      "$kdist" plan "$@" --rank $r >"$work/plan" 2>"$work/err" || fail "plan exit code $? ($*)"
      local want got
      want=$(sed -n 's/^by kind: //p' "$work/plan")
      [ -n "$want" ] || fail "no 'by kind' line in the plan ($*)"
      for step in 1 2; do
        got=$(sed -n "s/^\(\[rank $r\] \)\{0,1\}collectives of step $step on rank $r: //p" "$work/out")
        [ "$got" = "$want" ] || { cat "$work/plan"; fail "rank $r, step $step ($*): train sent '$got', plan says '$want'"; }
      done
    done
    echo "matched: $*"
  }
  check 4 --model gpt --width 64 --layers 2 --mesh batch=2,model=2
  check 4 --model gpt --width 64 --layers 2 --mesh batch=2,model=2 --layout gemma --accumulate 2 --grad-clip 1
  check 4 --model gpt --width 64 --layers 2 --mesh batch=1,model=4 --sequence-parallel --loss-parallel --context 30
  check 4 --model gpt --width 64 --layers 1 --mesh model=2,batch=2 --layout fsdp --precision bf16
  check 2 --model mlp --devices 2 --optimizer sgd
  ;;
gemma_2x2)  # keras-hub's 2-D pattern on the gpt, FSDP x TP
  launch 4 --model gpt --width 64 --mesh batch=2,model=2 --layout gemma --steps 12 --optimizer adam --verify
  expect_verified $?
  grep -Eq "blocks.0.attn.q.weight +\(64, 64\) +\(model, batch\) +\[S\(1\), S\(0\)\] +\(32, 32\) +column\+fsdp" "$work/out" \
    || fail "q not column parallel and FSDP"
  grep -Eq "^\[rank 0\] tok.weight .* vocab\+fsdp" "$work/out" || fail "token embedding not (model, batch)"
  grep -Eq "verify: one process holds [0-9.]+ MiB of training state; the largest distributed process [0-9.]+ MiB \(0\.2[0-9]+ of it\)" \
    "$work/out" || fail "state per process not about a quarter of one process's"
  ;;
clip_accumulate_2x2)  # --grad-clip over a 2-D layout (the global norm counts every element
  # once) after two micro-batches, the first under no_sync: one process on the whole batch
  launch 4 --model gpt --width 64 --mesh batch=2,model=2 --layout gemma --grad-clip 0.5 --accumulate 2 \
    --steps 8 --optimizer adam --verify
  expect_verified $?
  grep -q "batch:        32 global, 16 per data shard (2 shards over 'batch'), 2 micro-batches of 8 (--accumulate)" \
    "$work/out" || fail "no micro-batches"
  ;;
accumulate_dp_n2)  # --accumulate 4 under DataParallel with SGD
  launch 2 --model mlp --accumulate 4 --steps 20 --optimizer sgd --lr 0.05 --verify; expect_verified $?
  ;;
sp_lp_1x4)  # --sequence-parallel --loss-parallel: residual stream on sequence pieces, logits sharded
  launch 4 --model gpt --width 64 --mesh batch=1,model=4 --sequence-parallel --loss-parallel --steps 10 --verify
  expect_verified $?
  grep -Eq "^\[rank 0\] head.weight +\(62, 64\) +\(model, None\) +\[R, S\(0\)\] +\(16, 64\) +column$" "$work/out" \
    || fail "head not column parallel"
  grep -q "sample:" "$work/out" || fail "no sample"
  ;;
error_loss_parallel)
  launch 2 --model gpt --devices 2 --loss-parallel
  expect_error $? "loss-parallel needs the head column parallel over 'model'"
  ;;
export_init_2x2)  # a tensor-parallel checkpoint exported whole, then --init-from onto FSDP x TP
  launch 2 --model gpt --width 64 --mesh batch=1,model=2 --steps 30 --checkpoint-dir "$work/ckpt"
  [ $? = 0 ] || fail "the first run failed"
  "$kdist" export "$work/ckpt/step-30" --out "$work/gpt.safetensors" >"$work/out" 2>"$work/err" || fail "export failed"
  grep -q "^wrote $work/gpt.safetensors (.* MiB) from $work/ckpt/step-30$" "$work/out" || fail "no export line"
  launch 4 --model gpt --width 64 --mesh batch=2,model=2 --layout gemma --init-from "$work/gpt.safetensors" \
    --steps 5 --verify
  rc=$?
  [ $rc = 0 ] || fail "exit code $rc, expected 0"
  grep -q "initialised from $work/gpt.safetensors" "$work/out" || fail "not initialised from the file"
  grep -Eq "verify: 5 steps, largest relative loss difference from one process .*: OK" "$work/out" || fail "no passing verify"
  # A fresh gpt starts near ln(62) = 4.13; 30 trained steps are well below it.
  first=$(sed -nE 's/.*trained [0-9]+ steps .*: loss ([0-9.]+) -> .*/\1/p' "$work/out")
  python3 -c "import sys; sys.exit(0 if $first < 3.9 else 1)" || fail "first loss $first: the weights were not loaded"
  ;;
error_init_from)  # weights of another model: named before training
  launch 2 --model gpt --width 32 --heads 2 --steps 1 --checkpoint-dir "$work/ckpt"
  [ $? = 0 ] || fail "the first run failed"
  "$kdist" export "$work/ckpt/step-1" --out "$work/small.safetensors" >/dev/null || fail "export failed"
  launch 2 --model gpt --width 64 --init-from "$work/small.safetensors"
  expect_error $? "safetensors file '$work/small.safetensors' does not match the module; different shape or dtype: .'tok.weight (62, 32) float32 in the file, (62, 64) float32 here'"
  grep -q " float32 here', ... and 21 more\]" "$work/err" \
    || fail "the list of differences is not abridged"
  ;;
error_export)
  "$kdist" export "$work/nowhere" --out "$work/x.safetensors" >"$work/out" 2>"$work/err"
  rc=$?
  [ $rc = 2 ] || fail "exit code $rc, expected 2"
  grep -q "kdist export: " "$work/err" || fail "no error line"
  grep -q "$work/nowhere/metadata.json" "$work/err" || fail "the missing metadata not named"
  ;;
bf16_2x2)  # --precision bf16 over FSDP x TP, verified against one process under the same policy
  launch 4 --model gpt --width 64 --mesh batch=2,model=2 --layout gemma --precision bf16 --steps 12 --verify
  expect_verified $?
  grep -q "precision:    bf16 compute" "$work/out" || fail "no precision line"
  grep -Eq "verify: 12 steps, .*\(tolerance 2e-03\): OK" "$work/out" || fail "not bf16's tolerance"
  ;;
error_accumulate)
  launch 2 --model mlp --batch-size 32 --accumulate 3
  expect_error $? "accumulate 3 does not divide the 16 rows of each data shard (--batch-size 32 over 2 shards)"
  ;;
model_mesh_n4)  # --mesh model=4: the batch axis is "model", the tensor-parallel map becomes FSDP
  launch 4 --model mlp --mesh model=4 --steps 20 --optimizer sgd --lr 0.05 --verify; expect_verified $?
  grep -q "batch:        32 global, 8 per data shard (4 shards over 'model')" "$work/out" || fail "not 4 data shards"
  grep -Eq "fc1.weight .* fsdp" "$work/out" || fail "fc1 not FSDP"
  ;;
error_config)
  echo '{"model": "mlp", "stpes": 3}' >"$work/bad.json"
  "$kdist" train --config "$work/bad.json" >"$work/out" 2>"$work/err"
  expect_error $? "config file '$work/bad.json' has unknown key 'stpes'"
  ;;
error_layout_syntax)
  "$kdist" train --model mlp --layout 'fc1/kernel' >"$work/out" 2>"$work/err"
  expect_error $? "layout 'fc1/kernel' is not REGEX=AXES"
  ;;
checkpoint_dir_reused)  # another run's checkpoints: refused before any step, and left as they were
  small=(--model gpt --width 32 --heads 2 --layers 1 --mesh batch=2 --checkpoint-every 2)
  launch 2 "${small[@]}" --steps 4 --checkpoint-dir "$work/ck" || fail "run A failed"
  launch 2 "${small[@]}" --steps 2 --seed 5 --checkpoint-dir "$work/ck"
  expect_error $? "checkpoint-dir '$work/ck' holds checkpoints of an earlier run (step-2, step-4): pass --resume to continue it, or give this run a directory of its own"
  [ -f "$work/ck/step-4/metadata.json" ] && [ -f "$work/ck/step-2/metadata.json" ] || fail "run A's checkpoints were touched"
  "$kdist" export "$work/ck" --out "$work/a.safetensors" >"$work/out" 2>"$work/err" || fail "export of the directory failed"
  grep -q "^wrote $work/a.safetensors (.* MiB) from $work/ck/step-4 (the newest checkpoint in $work/ck)$" "$work/out" \
    || fail "export did not take the directory's newest checkpoint"
  ;;
resume_damaged)  # damaged newest checkpoint: say so, take the one before; all damaged: an error
  small=(--model gpt --width 32 --heads 2 --layers 1 --mesh batch=1,model=2 --checkpoint-every 2)
  launch 2 "${small[@]}" --steps 4 --checkpoint-dir "$work/ck" || fail "first run failed"
  # A byte of rank 1's shard: only rank 1 reads it, and rank 0 prints rank 1's own words.
  python3 - "$work/ck/step-4/shard-1.bin" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read()); data[100] ^= 0x40; open(sys.argv[1], "wb").write(data)
PY
  launch 2 "${small[@]}" --steps 6 --checkpoint-dir "$work/ck" --resume || fail "the resumed run failed"
  grep -q "^\[rank 0\] cannot resume from $work/ck/step-4: \[kdist.checkpoint\] load failed on rank 1: \[kdist.checkpoint\] checksum mismatch in tensor '" "$work/out" \
    || fail "rank 1's checksum error not printed by rank 0"
  grep -q "^\[rank 0\] resumed from $work/ck/step-2$" "$work/out" || fail "did not fall back to step-2"
  grep -q "^\[rank 0\] step 3/6" "$work/out" || fail "did not continue at step 3"
  # Now every checkpoint damaged: a flipped byte in each metadata.json.
  for m in "$work"/ck/step-*/metadata.json; do sed -i '0,/"processes": 2/s//"processes": 3/' "$m"; done
  launch 2 "${small[@]}" --steps 8 --checkpoint-dir "$work/ck" --resume
  expect_error $? "resume: no checkpoint in '$work/ck' loads ("
  grep -q "checksum mismatch in metadata '$work/ck/step-6/metadata.json'" "$work/err" || fail "the damage not named"
  ;;
checkpoint_dir_read_only)  # found before step 1, not at the first save (needs root: a read-only mount)
  mkdir -p "$work/ro"
  unshare --mount bash -c '
    mount -t tmpfs tmpfs "$1/ro" && mkdir "$1/ro/ck" && mount -o remount,ro "$1/ro" || exit 99
    "$2" launch --grace 2 -n 2 -- "$2" train --model mlp --steps 3 --checkpoint-dir "$1/ro/ck" >"$1/out" 2>"$1/err"' \
    _ "$work" "$kdist"
  rc=$?
  [ $rc != 99 ] || fail "cannot make a read-only mount (this test needs root)"
  expect_error $rc "cannot write in --checkpoint-dir '$work/ro/ck': Read-only file system"
  ;;
*) echo "unknown case $case"; exit 2 ;;
esac
echo "PASS $case"
