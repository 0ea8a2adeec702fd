#!/usr/bin/env bash
# Crash safety of kdist::save and kdist::AsyncSaver (src/checkpoint/save.cpp, async_save.cpp): a rank killed while writing its
# shard, or process 0 killed just before publishing, leaves the previous checkpoint complete
# and loadable and the new one unpublished. usage: fault_test.sh KDIST MP_TESTS
set -uo pipefail
kdist=$1 mp_tests=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KDIST_TEST_CHECKPOINT_DIR=$work
fail() { echo "FAIL: $*"; cat "$work/out" 2>/dev/null | tail -30; exit 1; }
run() {  # run FILTER SEED: the mp tests on 2 ranks
  KDIST_TEST_SEED=$2 "$kdist" launch --grace 2 -n 2 -- "$mp_tests" --gtest_filter="CheckpointFault.$1" >"$work/out" 2>&1
}

run SaveModelOfSeed 1 || fail "the first save failed"
# kdist::save, then AsyncSaver, whose "writing" fault fires in its writer thread.
for saver in SaveModelOfSeed AsyncSaveModelOfSeed; do
  for fault in 1:writing 0:writing 0:publishing; do
    KDIST_CHECKPOINT_FAULT=$fault run $saver 2
    rc=$?
    [ $rc != 0 ] || fail "$saver with fault $fault succeeded"
    grep -q "rank ${fault%%:*} exited with code 9" "$work/out" || fail "rank ${fault%%:*} was not killed ($saver, $fault)"
    [ -d "$work/fault.partial" ] || fail "no unpublished partial checkpoint after $saver, $fault"
    run LoadsModelOfSeed 1 || fail "the previous checkpoint does not load after $saver, $fault"
    echo "$saver, fault $fault: previous checkpoint intact"
  done
done
# A save that completes replaces the checkpoint (exchange with the existing directory).
run SaveModelOfSeed 2 || fail "the replacing save failed"
[ ! -e "$work/fault.partial" ] || fail "a partial directory is left after a complete save"
run LoadsModelOfSeed 2 || fail "the replacing checkpoint does not load"
run AsyncSaveModelOfSeed 3 || fail "the replacing async save failed"
[ ! -e "$work/fault.partial" ] || fail "a partial directory is left after a complete async save"
run LoadsModelOfSeed 3 || fail "the checkpoint of the async save does not load"
echo "fault test: ok"
