#!/usr/bin/env bash
# Behaviour of `kdist launch` (tools/launch/launcher.cpp) with real processes.
# usage: launch_test.sh KDIST CASE [MP_TESTS TORCHRUN]
set -uo pipefail
kdist=$1 case=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; echo "--- output"; cat "$work/out" 2>/dev/null; exit 1; }

case $case in
env)
  "$kdist" launch -n 3 -- bash -c 'echo "rank=$RANK world=$WORLD_SIZE local=$LOCAL_RANK addr=$MASTER_ADDR"; echo to-stderr >&2' \
    >"$work/out" 2>"$work/err"
  rc=$?
  [ $rc = 0 ] || fail "exit code $rc, expected 0"
  for r in 0 1 2; do
    grep -qx "\[rank $r\] rank=$r world=3 local=$r addr=127.0.0.1" "$work/out" || fail "no line of rank $r"
    grep -qx "\[rank $r\] to-stderr" "$work/err" || fail "rank $r's stderr not on stderr"
  done
  [ "$(grep -c . "$work/out")" = 3 ] || fail "expected exactly 3 lines"
  ;;
fail_fast)
  start=$(date +%s)
  # The surviving ranks sleep under a name unique to this test, so that the check below sees
  # only them and not other programs on the machine.
  export KDIST_TEST_TAG="kdist-fail-fast-$$"
  "$kdist" launch --grace 2 -n 3 -- bash -c \
    'if [ "$RANK" = 1 ]; then sleep 1; echo boom >&2; exit 3; fi; exec -a "$KDIST_TEST_TAG" sleep 120' \
    >"$work/out" 2>&1
  rc=$? elapsed=$(( $(date +%s) - start ))
  [ $rc = 3 ] || fail "exit code $rc, expected rank 1's 3"
  [ $elapsed -lt 15 ] || fail "took ${elapsed}s to stop the other ranks"
  grep -q "^\[kdist.launch\] rank 1 exited with code 3; stopping the other ranks" "$work/out" || fail "failing rank not named"
  grep -q "^\[kdist.launch\] failed: rank 1 exited with code 3" "$work/out" || fail "no summary"
  grep -q "^\[rank 1\] boom" "$work/out" || fail "rank 1's output lost"
  ! pgrep -f "$KDIST_TEST_TAG" >/dev/null || fail "ranks left running: $(pgrep -af "$KDIST_TEST_TAG")"
  ;;
crash)
  "$kdist" launch -n 2 -- bash -c 'if [ "$RANK" = 0 ]; then kill -SEGV $$; fi; exec sleep 120' >"$work/out" 2>&1
  rc=$?
  [ $rc = 139 ] || fail "exit code $rc, expected 128+11"
  grep -q "rank 0 was killed by signal 11 (Segmentation fault)" "$work/out" || fail "signal not reported"
  ;;
signal)
  "$kdist" launch --grace 5 -n 2 -- bash -c \
    "trap 'echo got-TERM > $work/rank\$RANK; exit 0' TERM; echo ready; while true; do sleep 0.1; done" \
    >"$work/out" 2>&1 &
  launcher=$!
  for _ in $(seq 50); do [ "$(grep -c ready "$work/out")" = 2 ] && break; sleep 0.1; done
  kill -TERM $launcher
  wait $launcher
  rc=$?
  [ $rc = 143 ] || fail "exit code $rc, expected 128+15"
  for r in 0 1; do grep -q got-TERM "$work/rank$r" 2>/dev/null || fail "rank $r did not get SIGTERM"; done
  grep -q "forwarding it to every rank" "$work/out" || fail "forwarding not reported"
  ;;
bad_usage)
  "$kdist" launch -n 0 -- true >"$work/out" 2>&1 && fail "-n 0 accepted"
  "$kdist" launch -n 2 --nnodes 2 -- true >"$work/out" 2>&1 && fail "--nnodes without --master-port accepted"
  grep -q "needs --master-port" "$work/out" || fail "no message for --nnodes without --master-port"
  "$kdist" launch -n 1 --nnodes 3:2 --master-port 1 -- true >"$work/out" 2>&1 && fail "--nnodes 3:2 accepted"
  grep -q "expected N or MIN:MAX with 1 <= MIN <= MAX, got '3:2'" "$work/out" || fail "no message for --nnodes 3:2"
  "$kdist" launch -n 1 -- /nonexistent/program >"$work/out" 2>&1
  rc=$?
  [ $rc = 127 ] || fail "exit code $rc for a missing program, expected 127"
  grep -q "cannot run '/nonexistent/program'" "$work/out" || fail "missing program not reported"
  ;;
nnodes)  # two "nodes" on this host: two launchers, one rank each, one job of 2 ranks
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  node() { "$kdist" launch --nnodes 2 --node-rank "$1" --master-addr 127.0.0.1 --master-port "$port" -n 1 -- \
             "$kdist" train --model mlp --devices 2 --steps 5; }
  node 1 >"$work/out1" 2>&1 &
  node 0 >"$work/out" 2>&1
  rc0=$? ; wait $!; rc1=$?
  [ $rc0 = 0 ] && [ $rc1 = 0 ] || { cat "$work/out1"; fail "exit codes $rc0 and $rc1, expected 0"; }
  grep -q "^\[rank 0\] trained 5 steps on 2 processes" "$work/out" || fail "node 0 did not train with 2 processes"
  grep -q "^\[rank 0\] batch:        32 global, 16 per data shard (2 shards" "$work/out" || fail "not 2 data shards"
  ;;
elastic_members)  # --nnodes MIN:MAX on this host: who joins an attempt, and who is too late
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  node() {  # NODE MIN:MAX PROGRAM...
    local n=$1 nodes=$2; shift 2
    "$kdist" launch --nnodes "$nodes" --node-rank "$n" --master-addr 127.0.0.1 --master-port "$port" \
      --join-timeout 1 -n 1 -- "$@"
  }
  # Node 1 never comes: after MIN = 1 joined and 1 s more, node 0 runs alone, WORLD_SIZE 1.
  node 0 1:2 sh -c 'echo "world $WORLD_SIZE rank $RANK"; sleep 4' >"$work/out" 2>&1 &
  node0=$!
  sleep 2.5
  node 1 1:2 true >"$work/out1" 2>&1
  rc1=$?
  wait $node0 || { cat "$work/out"; fail "node 0 alone failed"; }
  grep -qx "\[kdist.launch\] attempt 1 runs on node 0 of 2 (node 1 did not join): 1 ranks, this node as node 0" \
    "$work/out" || { cat "$work/out"; fail "no members line on node 0"; }
  grep -qx "\[rank 0\] world 1 rank 0" "$work/out" || fail "node 0's rank did not get WORLD_SIZE 1"
  [ $rc1 = 1 ] || fail "the late node exited $rc1, expected 1"
  grep -q "node 1 joined after node 0 had settled this attempt's members (node 0 of 2 (node 1 did not join))" \
    "$work/out1" || { cat "$work/out1"; fail "the late node was not told"; }
  # Both come: node 1 is node 1 of a world of 2.
  node 1 1:2 sh -c 'echo "world $WORLD_SIZE rank $RANK"' >"$work/out1" 2>&1 &
  node 0 1:2 sh -c 'echo "world $WORLD_SIZE rank $RANK"' >"$work/out" 2>&1 || fail "two nodes failed"
  wait $! || fail "node 1 of two failed"
  grep -qx "\[rank 1\] world 2 rank 1" "$work/out1" || { cat "$work/out1"; fail "node 1's rank is not rank 1 of 2"; }
  # Fewer than MIN: node 0 gives up after KDIST_TIMEOUT_S and says how many came.
  KDIST_TIMEOUT_S=2 node 0 2:3 true >"$work/out" 2>&1 && fail "ran with 1 of at least 2 nodes"
  grep -q "only node 0 of 3 joined within 2 s; --nnodes needs at least 2" "$work/out" || { cat "$work/out"; fail "no message"; }
  ;;
store_intruder)  # a process without the job's token writes, adds to and reads every key it can name
  python=$3
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  node() { "$kdist" launch --nnodes 2 --node-rank "$1" --master-addr 127.0.0.1 --master-port "$port" \
             --job-token "job-$$-secret" -n 1 -- "$kdist" train --model mlp --devices 2 --steps 8000; }
  node 1 >"$work/out1" 2>&1 &
  node1=$!
  node 0 >"$work/out" 2>&1 &
  node0=$!
  "$python" - "$port" >"$work/intruder" 2>&1 <<'PY' || { cat "$work/intruder"; fail "the intruder could not reach the store"; }
import sys, time, datetime
from torch.distributed import TCPStore
store = TCPStore("127.0.0.1", int(sys.argv[1]), is_master=False, timeout=datetime.timedelta(seconds=20))
names = ["kdist/launch/failures", "attempt-0/kdist/launch/failures", "kdist/launch/done/0", "kdist/launch/done/1",
         "attempt-0/kdist/launch/done/1"] + [p + "kdist/rendezvous/%d" % r for p in ("", "attempt-0/") for r in (0, 1)]
done = 0
deadline = time.time() + 3
while time.time() < deadline:
  try:
    for name in names:  # counters are added to, other keys overwritten; reads of each
        counter = name.endswith("failures")
        store.add(name, 1) if counter else store.set(name, "x")
        store.check([name]) and store.get(name)
        done += 1
  except Exception:  # the job finished and its store went away
    break
  time.sleep(0.05)
assert done > 0, "no operation reached the store"
print(done, "operations on the store")
PY
  wait $node0; rc0=$?; wait $node1; rc1=$?
  [ $rc0 = 0 ] && [ $rc1 = 0 ] || { cat "$work/out1"; fail "exit codes $rc0 and $rc1 with an intruder, expected 0"; }
  grep -q "^\[rank 0\] trained 8000 steps on 2 processes" "$work/out" || fail "the job did not finish its 8000 steps"
  ;;
job_token_syntax)
  "$kdist" launch -n 1 --job-token a/b -- true >"$work/out" 2>&1
  rc=$?
  [ $rc != 0 ] || fail "a token with a slash was accepted"
  grep -q "job-token holds a '/'" "$work/out" || fail "no error naming the token"
  ;;
root_cause)  # rank 2 leaves while the others wait in a collective: rank 2 is to blame
  mp_tests=$3
  for round in 1 2 3; do
    "$kdist" launch --grace 2 -n 4 -- "$mp_tests" --gtest_filter='LaunchRootCause.*' >"$work/out" 2>&1
    rc=$?
    [ $rc = 3 ] || fail "round $round: exit code $rc, expected rank 2's 3"
    grep -qx "\[kdist.launch\] failed: rank 2 exited with code 3" "$work/out" || fail "round $round: rank 2 not blamed"
    for r in 0 1 3; do
      grep -Eqx "\[kdist.launch\]   then rank $r (exited|was) .*, after rank 2 failed" "$work/out" ||
        fail "round $round: rank $r not listed as a consequence"
    done
  done
  ;;
launcher_killed)  # SIGKILL to the launcher: every rank ends within 2 s, a wrapped one too
  # Rank 0: kdist directly; rank 1: a program that is not kdist; rank 2: kdist under a shell,
  # a grandchild of the launcher. Ranks 0 and 2 wait in the rendezvous for rank 1 meanwhile.
  tag="kdist-orphan-$$"
  "$kdist" launch --grace 2 -n 3 -- bash -c '
    case $RANK in
      0) exec "$0" train --model mlp --steps 1000000 --seed 919190 ;;
      1) exec -a "$1-direct" sleep 300 ;;
      *) "$0" train --model mlp --steps 1000000 --seed 919191; true ;;
    esac' "$kdist" "$tag" >"$work/out" 2>&1 &
  launcher=$!
  alive() { pgrep -f "$tag-direct" >/dev/null || pgrep -f "seed 91919[01]" >/dev/null; }
  for _ in $(seq 100); do
    pgrep -f "$tag-direct" >/dev/null && [ "$(pgrep -cf "seed 91919[01]")" -ge 2 ] && break
    sleep 0.1
  done
  [ "$(pgrep -cf "seed 91919[01]")" -ge 2 ] || fail "the kdist ranks did not start"
  sleep 1.5  # into initialize, which starts the watch
  kill -KILL $launcher
  start=$(date +%s.%N)
  for _ in $(seq 40); do alive || break; sleep 0.1; done
  elapsed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  ! pgrep -f "$tag-direct" >/dev/null || fail "the direct child outlived its launcher: $(pgrep -af "$tag-direct")"
  ! pgrep -f "seed 91919[01]" >/dev/null || fail "a kdist rank outlived its launcher by ${elapsed} s: $(pgrep -af "seed 91919")"
  python3 -c "import sys; sys.exit(0 if $elapsed < 2.0 else 1)" || fail "ranks took ${elapsed} s to end"
  ;;
stopped_rank)  # SIGSTOP to a rank: named first, within 10 s, under default settings
  "$kdist" launch --grace 2 -n 2 -- "$kdist" train --model mlp --steps 1000000 --log-every 1000000 --seed 828282 \
    >"$work/out" 2>&1 &
  launcher=$!
  target=""
  for _ in $(seq 100); do
    for pid in $(pgrep -f "seed 828282"); do
      tr '\0' '\n' </proc/$pid/environ 2>/dev/null | grep -qx "RANK=1" && [ "$(cat /proc/$pid/comm)" = kdist ] && target=$pid
    done
    [ -n "$target" ] && grep -q "step 1/" "$work/out" && break
    sleep 0.1
  done
  [ -n "$target" ] || fail "rank 1 did not start"
  kill -STOP "$target"
  start=$(date +%s.%N)
  wait $launcher
  rc=$?
  elapsed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  [ $rc != 0 ] || fail "the job succeeded"
  python3 -c "import sys; sys.exit(0 if $elapsed < 10.0 else 1)" || fail "took ${elapsed} s to name the stopped rank"
  grep -Eq "^\[kdist.launch\] failed: rank 1 stopped responding: no heartbeat for [5-9]\.[0-9] s \(its process is stopped \(state T: SIGSTOP\?\)\)$" "$work/out" \
    || fail "the stopped rank not named first"
  grep -q "then rank 0 was stopped by the launcher" "$work/out" || fail "rank 0 not listed as a consequence"
  ! kill -0 "$target" 2>/dev/null || fail "the stopped rank is still there"
  ;;
left_early)  # a rank that exits 0 while the others wait for it is the root cause
  mp_tests=$3
  "$kdist" launch --grace 2 -n 3 -- "$mp_tests" --gtest_filter='LaunchRootCause.RankOneLeavesQuietly' >"$work/out" 2>&1
  rc=$?
  [ $rc = 1 ] || fail "exit code $rc, expected 1"
  grep -qx "\[kdist.launch\] failed: rank 1 exited with code 0 without leaving the job (kdist::shutdown) while other ranks still ran" "$work/out" \
    || fail "rank 1 not blamed"
  grep -Eq "then rank [02] exited with code 1, after rank 1 failed" "$work/out" || fail "the others not listed after it"
  # A rank that exits 0 without shutdown at the end of a successful job is no failure.
  "$kdist" launch -n 2 -- "$mp_tests" --gtest_filter='LaunchRootCause.EveryRankLeavesQuietly' >"$work/out" 2>&1 \
    || fail "a job whose ranks all exit 0 failed"
  ;;
torchrun)
  mp_tests=$3 torchrun=$4
  "$torchrun" --standalone --nproc-per-node 2 --no-python "$mp_tests" \
    --gtest_filter='Comm1D.WorldAndAxisGroup:Comm1D.AllReduce*:Comm1D.AllGather*' >"$work/out" 2>&1
  rc=$?
  [ $rc = 0 ] || fail "torchrun exit code $rc"
  [ "$(grep -c '\[  PASSED  \] 3 tests' "$work/out")" = 2 ] || fail "expected both ranks to pass 3 tests"
  ;;
*) fail "unknown case $case" ;;
esac
echo "launch $case: ok"
