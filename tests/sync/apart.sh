#!/usr/bin/env bash
# One rank of mp.data_parallel.shm_apart or mp.comm.n4.two_hosts_apart: its shared-memory
# segments in a directory no other rank looks in, as if each ran on its own host. usage: apart.sh TEST_BINARY GTEST_ARGS...
set -u
dir=$(mktemp -d /tmp/kdist-shm-apart-XXXXXX)
KDIST_SHM_DIR=$dir "$@"
rc=$?
rm -rf "$dir"
exit $rc
