#!/usr/bin/env bash
# Behaviour of `kdist launch` (tools/launcher.cpp) with real processes.
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
