#!/usr/bin/env bash
# The differential probe table: the same scapy probes (tests/probes/probes.py) against Linux
# kernel TCP over a veth pair and against `tunhost serve --no-offload` on TUN, printed as the
# markdown table of the README's "Differential probes". Needs root, python3-scapy and nftables.
#
#   sudo tests/probes/run.sh [NAME,...]     (only these probes: the names of run.py's output)
#
# Everything happens in network namespaces this script makes and deletes (thp-PID-*): the
# machine's own namespace gets no device, address or packet. Addresses: 192.0.2.0/24 only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3   # Debian's python, where python3-scapy is

fail() { echo "run.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, TUN, veth): sudo $0"
"$py" -c 'import scapy' 2>/dev/null || fail "needs scapy for $py: apt-get install python3-scapy"
command -v nft >/dev/null || fail "needs nft: apt-get install nftables"

cargo=${CARGO:-cargo}
(cd "$root" && "$cargo" build --quiet --bin tunhost) || fail "cargo build --bin tunhost failed"
tunhost=$root/target/debug/tunhost

tmp=$(mktemp -d)
cli=thp-$$-cli srv=thp-$$-srv tun=thp-$$-tun
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for ns in "$cli" "$srv" "$tun"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Wait (10 s at most) for a line starting with $2 in file $1.
ready() {
  for _ in $(seq 100); do grep -q "^$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "$3 did not start: $(tail -n 3 "$1")"
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

ours=02:00:00:00:01:01 theirs=02:00:00:00:01:02

# (b) Linux: the prober at 192.0.2.1 on veth0 (namespace cli), the kernel's TCP at 192.0.2.2 on
# veth1 (namespace srv) with echo 7 (TCP, UDP) and HTTP 80.
echo "run.sh: probing Linux $(uname -r) over a veth pair" >&2
ip netns add "$cli"
ip netns add "$srv"
in_ns "$cli" ip link add veth0 address $ours type veth peer name veth1 netns "$srv" address $theirs
in_ns "$cli" ip addr add 192.0.2.1/24 dev veth0
in_ns "$srv" ip addr add 192.0.2.2/24 dev veth1
for ns in "$cli" "$srv"; do in_ns "$ns" ip link set lo up; done
in_ns "$cli" ip link set veth0 up
in_ns "$srv" ip link set veth1 up
# The probes' other sources (192.0.2.66, .77) are reached through the prober's MAC.
for other in 192.0.2.66 192.0.2.77; do
  in_ns "$srv" ip neigh add $other lladdr $ours dev veth1 nud permanent
done
ip netns exec "$srv" "$py" "$here/servers.py" >"$tmp/servers.out" 2>&1 &
pids+=($!)
ready "$tmp/servers.out" serving "the Linux target's servers"
in_ns "$cli" "$py" "$here/run.py" probe --iface veth0 --macs $ours,$theirs ${1:+--only "$1"} >"$tmp/linux.jsonl"

# (a) tunhost: the prober at 192.0.2.1 on tun0's kernel side, tunhost at 192.0.2.2.
echo "run.sh: probing tunhost $(cd "$root" && git describe --always --dirty 2>/dev/null)" >&2
ip netns add "$tun"
in_ns "$tun" ip link set lo up
ip netns exec "$tun" "$tunhost" serve --no-offload --tun tun0 --addr 192.0.2.2/24 --peer 192.0.2.1/24 \
  --echo 7 --udp-echo 7 --http 80 2>"$tmp/tunhost.err" &
pids+=($!)
ready "$tmp/tunhost.err" serving "tunhost"
in_ns "$tun" "$py" "$here/run.py" probe --iface tun0 ${1:+--only "$1"} >"$tmp/tunhost.jsonl"

echo "Probed on $(date -u +%Y-%m-%d): Linux $(uname -r) vs tunhost" \
  "$(cd "$root" && git describe --always --dirty 2>/dev/null) (\`sudo tests/probes/run.sh\`)."
echo
"$py" "$here/run.py" table "$tmp/linux.jsonl" "$tmp/tunhost.jsonl"
