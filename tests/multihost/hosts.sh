# Two hosts made on this machine, for tests/multihost/two_hosts.sh and the cross-host
# benchmarks: two network namespaces joined by a veth pair, each with its own hostname (which
# resolves to 127.0.0.1 there, as in most containers) and its own /dev/shm (unshare --mount and
# a tmpfs). Needs root. Only the addresses of these two namespaces are ever contacted.
# Source it; it defines work, tag, addr0, addr1, port, fail, make_hosts, on_host and
# launch_node, and removes the namespaces on exit.
work=$(mktemp -d)
tag="kd$$"
net="10.233.$(( $$ % 250 ))"
addr0="$net.1" addr1="$net.2"
port=$(( 20000 + $$ % 20000 ))
fail() {
  echo "FAIL: $*"
  for f in "$work"/out*; do [ -f "$f" ] && { echo "--- $(basename "$f")"; tail -n 60 "$f"; }; done
  exit 1
}
cleanup() {
  for h in 0 1; do
    pids=$(ip netns pids "${tag}h$h" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del "${tag}h$h" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM  # a ctest timeout still removes the namespaces

make_hosts() {
  { ip netns add "${tag}h0" && ip netns add "${tag}h1" &&
    ip link add "${tag}v0" type veth peer name "${tag}v1" &&
    ip link set "${tag}v0" netns "${tag}h0" && ip link set "${tag}v1" netns "${tag}h1" &&
    ip -n "${tag}h0" addr add "$addr0/24" dev "${tag}v0" &&
    ip -n "${tag}h1" addr add "$addr1/24" dev "${tag}v1" &&
    for h in 0 1; do ip -n "${tag}h$h" link set lo up && ip -n "${tag}h$h" link set "${tag}v$h" up || exit 1; done
  } 2>"$work/netns.err" ||
    fail "cannot make the two hosts (network namespaces and a veth pair need root and iproute2): $(cat "$work/netns.err")"
}

# Runs a command on host H: its network namespace, its hostname, its /etc/hosts, its /dev/shm.
on_host() {
  local h=$1; shift
  printf '127.0.0.1 localhost kdist-host-%s\n' "$h" >"$work/hosts$h"
  ip netns exec "${tag}h$h" unshare --mount --uts bash -c '
    h=$1 hosts=$2; shift 2
    hostname "kdist-host-$h" && mount --bind "$hosts" /etc/hosts && mount -t tmpfs -o size=512m tmpfs /dev/shm || exit 97
    exec "$@"' on_host "$h" "$work/hosts$h" "$@"
}

# kdist launch of node HOST of a 2-node job, RANKS per node, coordinator on host 0's PORT;
# $kdist is the kdist command.
launch_node() {  # HOST PORT RANKS COMMAND...
  local h=$1 p=$2 n=$3; shift 3
  on_host "$h" "$kdist" launch --nnodes 2 --node-rank "$h" --master-addr "$addr0" --master-port "$p" \
    -n "$n" --grace 2 -- "$@"
}
