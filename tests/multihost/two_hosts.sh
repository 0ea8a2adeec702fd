#!/usr/bin/env bash
# A job across two hosts made on this machine (tests/multihost/hosts.sh), 2 ranks per host, 4
# in all. Needs root.
# usage: two_hosts.sh KDIST CASE [MP_TESTS]
#   CASE: train | hierarchical | missing_host | killed_host | rank_fails | lost_host | lost_store_host
#   (hierarchical and rank_fails need MP_TESTS, tests/kdist_mp_tests)
set -uo pipefail
kdist=$1 case=$2 mp_tests=${3:-}
source "$(dirname "${BASH_SOURCE[0]}")/hosts.sh"

launch_on() {  # HOST ARGS... : node HOST of a 2-node job of 2 ranks each
  local h=$1; shift
  launch_node "$h" "$port" 2 "$@"
}

# The same command on both hosts, host 1's in the background; sets rc0 and rc1.
run_on_both() {
  launch_on 1 "$@" >"$work/out1" 2>&1 &
  local node1=$!
  launch_on 0 "$@" >"$work/out0" 2>&1
  rc0=$?
  wait $node1
  rc1=$?
}

make_hosts
export KERAS_DISTRIBUTION_DEBUG=1 OMP_NUM_THREADS=1

# An elastic job (--nnodes 1:2, --mesh batch=*,model=2) on both hosts, host LOST killed with
# its launcher once a checkpoint exists: the other host finishes alone from the newest
# checkpoint, resharded onto (batch=1, model=2), its losses those of an uninterrupted run.
lose_host() {  # LOST
  local lost=$1 kept=$(( 1 - $1 ))
  local args=(train --model gpt --width 64 --layers 2 --mesh 'batch=*,model=2' --steps 300 --log-every 1
              --checkpoint-every 10)
  "$kdist" launch -n 4 -- "$kdist" "${args[@]}" --metrics "$work/reference.jsonl" >"$work/out_reference" 2>&1 ||
    fail "the uninterrupted run failed"
  elastic_node() {  # HOST: node HOST of an elastic job of 1 to 2 nodes
    on_host "$1" "$kdist" launch --nnodes 1:2 --node-rank "$1" --master-addr "$addr0" --master-port "$port" \
      --job-token "lost-host-$tag" --max-restarts 1 --join-timeout 3 -n 2 --grace 2 -- \
      "$kdist" "${args[@]}" --checkpoint-dir "$work/ck" --resume --metrics "$work/run.jsonl"
  }
  elastic_node 1 >"$work/out1" 2>&1 &
  local node1=$!
  elastic_node 0 >"$work/out0" 2>&1 &
  local node0=$!
  for _ in $(seq 1200); do [ -f "$work/ck/step-20/metadata.json" ] && break; sleep 0.05; done
  [ -f "$work/ck/step-20/metadata.json" ] || fail "no checkpoint at step 20"
  kill -9 $(ip netns pids "${tag}h$lost")
  local survivor=$node0
  [ "$kept" = 1 ] && survivor=$node1
  wait $survivor
  local rc=$? out="$work/out$kept"
  [ $rc = 0 ] || fail "host $kept's launcher exited $rc, expected 0 after going on alone"
  grep -q "^\[kdist.launch\] attempt 1 runs on nodes 0, 1 of 2: 4 ranks, this node as node $kept" "$out" ||
    fail "the first attempt did not run on both hosts"
  grep -q "^\[kdist.launch\] restart 1 of 1 after " "$out" || fail "no restart line"
  grep -q "^\[kdist.launch\] attempt 2 runs on node $kept of 2 (node $lost did not join): 2 ranks, this node as node 0" \
    "$out" || fail "the restart did not go on without host $lost"
  grep -q "^\[rank 0\] distribution: .*DeviceMesh(shape=(1, 2), axis_names=(batch, model)" "$out" ||
    fail "the mesh did not shrink to (1, 2)"
  grep -q "^\[rank 0\] batch: *32 global, 32 per data shard" "$out" || fail "the global batch was not kept"
  resumed=$(sed -n 's/^\[rank 0\] resumed from .*step-\([0-9]*\).*/\1/p' "$out")
  [ -n "$resumed" ] && [ "$resumed" -ge 20 ] || fail "did not resume from step 20 or later"
  grep -q "^\[rank 0\] trained [0-9]* steps on 2 processes" "$out" || fail "did not finish on 2 processes"
  python3 - "$work/reference.jsonl" "$work/run.jsonl" "$resumed" "$kept" <<'PY' || fail "the losses after the restart differ"
import json, sys
reference = {l["step"]: l["loss"] for l in map(json.loads, open(sys.argv[1]))}
resumed = {l["step"]: l["loss"] for l in map(json.loads, open(sys.argv[2]))}
assert sorted(resumed) == list(range(int(sys.argv[3]) + 1, 301)), (min(resumed), max(resumed))
worst = max(abs(loss - reference[step]) / reference[step] for step, loss in resumed.items())
# Half as many data shards sum the gradient in another order: equal up to rounding.
assert worst < 1e-3, worst
print(f"steps {min(resumed)}-300 on host {sys.argv[4]} alone match the uninterrupted run: "
      f"largest relative difference {worst:.1e}")
PY
  grep -q "^\[kdist.launch\] attempt 2 resumed after step $resumed: " "$out" || fail "no resume line"
  grep -q "^\[kdist.launch\] 2 attempts: 1 failed (.*), 2 succeeded; [0-9]* steps\? run again$" "$out" ||
    fail "no summary with the steps run again"
  grep "^\[kdist.launch\]" "$out"
}


case $case in
train)
  # (batch, model): the batch groups {0, 2} and {1, 3} span the hosts, so their gradients go
  # through Gloo; (model, batch): the batch groups {0, 1} and {2, 3} are each on one host,
  # so through shared memory. Both train the gpt and match one process.
  for mesh in batch=2,model=2 model=2,batch=2; do
    args=(train --model gpt --mesh "$mesh" --steps 12 --verify --log-every 4)
    run_on_both "$kdist" "${args[@]}"
    [ $rc0 = 0 ] && [ $rc1 = 0 ] || fail "$mesh: exit codes $rc0 (host 0) and $rc1 (host 1), expected 0"
    grep -q "^\[rank 0\] verify: 12 steps, .*: OK" "$work/out0" || fail "$mesh: verify did not pass"
    grep -q "^\[rank 0\] trained 12 steps on 4 processes" "$work/out0" || fail "$mesh: not 4 processes"
    for r in 0 1; do
      grep -q "^\[rank $r\] DEBUG | \[Rank $r/4\] Gloo address $addr0 on host kdist-host-0/" "$work/out0" ||
        fail "$mesh: rank $r did not use host 0's address $addr0"
    done
    for r in 2 3; do
      grep -q "^\[rank $r\] DEBUG | \[Rank $r/4\] Gloo address $addr1 on host kdist-host-1/" "$work/out1" ||
        fail "$mesh: rank $r did not use host 1's address $addr1"
    done
    ! grep -q "Gloo address 127\." "$work/out0" "$work/out1" || fail "$mesh: a rank advertised a loopback address"
    if [ "$mesh" = batch=2,model=2 ]; then
      grep -q "^\[rank 0\] gradient sync: .* with Gloo all_reduce" "$work/out0" ||
        fail "$mesh: the batch groups span hosts, expected the Gloo sync"
    else
      grep -q "^\[rank 0\] gradient sync: .* through shared memory" "$work/out0" ||
        fail "$mesh: the batch groups are each on one host, expected shared memory"
      grep -q "^\[rank 0\] batch:.* (2 shards" "$work/out0" || fail "$mesh: not 2 data shards"
    fi
    [ -z "$(on_host 0 ls /dev/shm)" ] || fail "$mesh: left files in host 0's /dev/shm"
    echo "two hosts, $mesh: trained and verified"
  done
  ;;
hierarchical)
  # The world group spans both hosts with two ranks on each: hierarchical. comm's suites
  # (every collective against flat Gloo's) pass across the hosts, and the gpt trained
  # data-parallel over all 4 ranks, its gradients summed hierarchically, matches one process.
  export KDIST_TEST_HOSTS=0,0,1,1  # what the ranks' hosts are, for the suites' expectations
  filter='Comm1D.*:CommTransport.*'
  run_on_both "$mp_tests" --gtest_filter="$filter"
  [ $rc0 = 0 ] && [ $rc1 = 0 ] || fail "comm suites across hosts: exit codes $rc0 (host 0) and $rc1 (host 1)"
  grep -q "process group world (ranks 0,1,2,3) created (size 4, hierarchical)" "$work/out0" ||
    fail "the world group is not hierarchical"
  grep "^\[rank 0\] \[  PASSED  \]" "$work/out0"
  unset KDIST_TEST_HOSTS
  args=(train --model gpt --mesh batch=4 --steps 12 --verify --log-every 4)
  run_on_both "$kdist" "${args[@]}"
  [ $rc0 = 0 ] && [ $rc1 = 0 ] || fail "gpt batch=4: exit codes $rc0 (host 0) and $rc1 (host 1), expected 0"
  grep -q "^\[rank 0\] gradient sync: .* hierarchically" "$work/out0" || fail "the gradient sync is not hierarchical"
  grep -q "^\[rank 0\] verify: 12 steps, .*: OK" "$work/out0" || fail "gpt batch=4 across hosts: verify did not pass"
  grep "^\[rank 0\] verify" "$work/out0"
  ;;
missing_host)
  # Host 1 never starts: host 0's ranks give up after KDIST_TIMEOUT_S and name who is missing.
  start=$(date +%s)
  KDIST_TIMEOUT_S=6 launch_on 0 "$kdist" train --model mlp --mesh batch=4 --steps 2 >"$work/out0" 2>&1
  rc=$? elapsed=$(( $(date +%s) - start ))
  [ $rc != 0 ] || fail "host 0 succeeded without host 1"
  [ $elapsed -lt 30 ] || fail "took ${elapsed}s"
  grep -q "ranks 2, 3 of 4 did not arrive at the coordinator $addr0:$port within 6 s" "$work/out0" ||
    fail "the missing ranks are not named"
  grep -q "^\[kdist.launch\] failed: node 1 (ranks 2-3) never joined the job" "$work/out0" ||
    fail "the missing host is not named first"
  grep -q "^\[kdist.launch\]   then rank [01] (node 0) exited with code 1, after node 1 failed" "$work/out0" ||
    fail "host 0's ranks are not listed as consequences"
  grep "^\[kdist.launch\]\|did not arrive" "$work/out0" | grep -v DEBUG
  ;;
rank_fails)
  # Rank 2, on host 1, exits with code 3 while the others wait in a collective: both launchers
  # stop their ranks, name rank 2 first and exit with its code.
  run_on_both "$mp_tests" --gtest_filter='LaunchRootCause.*'
  [ $rc0 = 3 ] && [ $rc1 = 3 ] || fail "exit codes $rc0 (host 0) and $rc1 (host 1), expected rank 2's 3 on both"
  for h in 0 1; do
    grep -qx "\[kdist.launch\] failed: rank 2 (node 1) exited with code 3" "$work/out$h" ||
      fail "host $h's launcher does not blame rank 2"
    grep "^\[kdist.launch\]" "$work/out$h"
  done
  ;;
killed_host)
  # Host 1 (its launcher and ranks) is killed mid-training: host 0's launcher ends the job
  # within 10 s and names host 1.
  args=(train --model gpt --mesh batch=2,model=2 --steps 100000 --log-every 2)
  launch_on 1 "$kdist" "${args[@]}" >"$work/out1" 2>&1 &
  launch_on 0 "$kdist" "${args[@]}" >"$work/out0" 2>&1 &
  node0=$!
  for _ in $(seq 600); do grep -q "^\[rank 0\] step 4" "$work/out0" && break; sleep 0.1; done
  grep -q "^\[rank 0\] step 4" "$work/out0" || fail "training did not start"
  kill -9 $(ip netns pids "${tag}h1")
  killed=$(date +%s.%N)
  wait $node0
  rc=$?
  elapsed=$(python3 -c "import time; print(round(time.time() - $killed, 1))")
  [ $rc != 0 ] || fail "host 0's launcher exited 0"
  python3 -c "import sys; sys.exit(0 if $elapsed < 10 else 1)" || fail "host 0's launcher took ${elapsed}s"
  grep -q "^\[kdist.launch\] failed: node 1 (ranks 2-3) stopped responding" "$work/out0" ||
    fail "the verdict does not name host 1 first"
  echo "host 0's launcher ended the job ${elapsed}s after host 1 was killed:"
  grep "^\[kdist.launch\]" "$work/out0"
  ;;
lost_host)
  # --nnodes 1:2 with --mesh batch=*,model=2: host 1 (its launcher and ranks) is killed once
  # the job has a checkpoint; host 0's launcher restarts alone, its two ranks resume from the
  # newest checkpoint resharded onto (batch=1, model=2), keep the global batch (32 rows per
  # process instead of 16) and finish; their losses match an uninterrupted run's.
  lose_host 1
  ;;
lost_store_host)
  # The same with host 0 killed, whose launcher served the job's store: host 1's launcher
  # serves a new one at its own address and goes on alone.
  lose_host 0
  grep -q "^\[kdist.launch\] node 0's store is gone: node 1 serves the job's store at $addr1:$port from now on" \
    "$work/out1" || fail "host 1 did not take the store over"
  ;;
*) fail "unknown case $case" ;;
esac
echo "multihost $case: ok"
