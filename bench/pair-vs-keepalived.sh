#!/usr/bin/env bash
# Client-seen outage of a firewall pair: Rearguard vs keepalived (VRRPv3), same topology.
#
# For each implementation, heartbeat interval (100, 50, 10 ms) and scenario (node death,
# uplink failure, planned switchover), RUNS times: build the namespaces, start both daemons,
# wait until node A holds the VIP and the client reaches it, start `ping -i 0.01` from the
# client to the VIP, trigger the event, and take the longest run of lost echoes × 10 ms as
# the outage. Prints medians and the ratio Rearguard / keepalived. Run as root; nothing
# leaves the namespaces it creates. Usage:
#
#   sudo bench/pair-vs-keepalived.sh [--runs N] [--intervals "100 50 10"] [--soak SECONDS]
#
# Topology (per run):  A.lan ─┐                 ┌─ B.lan     A.side ─── B.side (direct veth)
#                             └─ br0 (ns br) ───┤
#                                    client.lan ┘
# Scenarios:
#   death      A's LAN port at the switch and its side link go down at once
#   uplink     A's LAN port at the switch goes down; the side link stays up
#   switchover rearguard: `rearguard switchover` on A; keepalived: SIGTERM to A's keepalived
#              (it sends priority-0 adverts and drops the VIP: its planned handover)
# Both use the side link for heartbeats; keepalived tracks the LAN interface
# (track_interface), Rearguard has a carrier check on it (5 ms) and also advertises on the LAN.
# Detection: keepalived master-down = 3 × advert_int + skew; Rearguard dead_count = 3.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=5
INTERVALS="100 50 10"
ONLY_IMPL="rearguard keepalived"
ONLY_SC="death uplink switchover"
SOAK=0
while (($#)); do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --intervals) INTERVALS=$2; shift 2 ;;
    --soak) SOAK=$2; shift 2 ;;
    --impl) ONLY_IMPL=$2; shift 2 ;;
    --scenarios) ONLY_SC=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--intervals \"100 50 10\"] [--soak SECONDS]" >&2; exit 2 ;;
  esac
done

[[ $(id -u) -eq 0 ]] || { echo "run as root (network namespaces); run scripts/setup.sh first" >&2; exit 1; }
for t in ip ping keepalived python3; do
  command -v "$t" >/dev/null || { echo "$t missing: run scripts/setup.sh as root" >&2; exit 1; }
done
cargo build --release --bin rearguard -q
RG=${REARGUARD_BIN:-$PWD/target/release/rearguard}
VIP=10.200.0.100
KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
P=rgbench$$
WORK=$(mktemp -d /tmp/rgbench.XXXXXX)
RESULTS=$PWD/target/pair-vs-keepalived.csv
echo "impl,interval_ms,scenario,run,outage_ms,dups" >"$RESULTS"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true; done
  PIDS=()
  for n in br a b c; do ip netns del "$P$n" 2>/dev/null || true; done
}
trap 'cleanup; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT

topology() {
  for n in br a b c; do ip netns add "$P$n"; ip -n "$P$n" link set lo up; done
  ip -n "${P}br" link add br0 type bridge
  ip -n "${P}br" link set br0 up
  local n addr
  for n in a b c; do
    case $n in a) addr=10.200.0.1/24 ;; b) addr=10.200.0.2/24 ;; c) addr=10.200.0.10/24 ;; esac
    ip link add lan netns "$P$n" type veth peer name "p$n" netns "${P}br"
    ip -n "${P}br" link set "p$n" master br0
    ip -n "${P}br" link set "p$n" up
    ip -n "$P$n" addr add $addr dev lan
    ip -n "$P$n" link set lan up
  done
  ip link add side netns "${P}a" type veth peer name side netns "${P}b"
  ip -n "${P}a" addr add 10.201.0.1/24 dev side
  ip -n "${P}b" addr add 10.201.0.2/24 dev side
  ip -n "${P}a" link set side up
  ip -n "${P}b" link set side up
}

start_rearguard() { # interval_ms
  local iv=$1 node id prio peer
  for node in a b; do
    if [[ $node == a ]]; then id=1; prio=200; peer=10.201.0.2; else id=2; prio=100; peer=10.201.0.1; fi
    cat >"$WORK/$node.toml" <<EOF
[cluster]
id = 0xBE1C
node_id = $id
key = "$KEY"
[pair]
priority = $prio
interval_ms = $iv
dead_count = 3
announce_count = 3
announce_interval_ms = 20
control_socket = "$WORK/$node.sock"
state_dir = "$WORK/state-$node"
[[pair.vip]]
address = "$VIP/24"
interface = "lan"
[[pair.medium]]
interface = "side"
peer = "$peer"
[[pair.medium]]
interface = "lan"
[[pair.check]]
kind = "carrier"
interface = "lan"
interval_ms = 5
EOF
    REARGUARD_LOG=warn ip netns exec "$P$node" "$RG" agent --config "$WORK/$node.toml" >>"$WORK/$node.log" 2>&1 &
    PIDS+=($!)
  done
}

start_keepalived() { # interval_ms
  local iv=$1 node prio src peer adv
  adv=$(python3 -c "print($iv/1000)")
  for node in a b; do
    if [[ $node == a ]]; then prio=200; src=10.201.0.1; peer=10.201.0.2; else prio=100; src=10.201.0.2; peer=10.201.0.1; fi
    cat >"$WORK/ka-$node.conf" <<EOF
global_defs {
  router_id rgbench_$node
  vrrp_version 3
  vrrp_garp_master_repeat 3
  vrrp_garp_master_refresh 0
  vrrp_garp_interval 0.02
  vrrp_gna_interval 0.02
}
vrrp_instance VI_BENCH {
  state BACKUP
  interface side
  virtual_router_id 51
  priority $prio
  advert_int $adv
  unicast_src_ip $src
  unicast_peer {
    $peer
  }
  # VRRP on the side link like Rearguard's resign path; a dying peer takes the side
  # link's carrier with it, which must not put the survivor into FAULT.
  dont_track_primary
  track_interface {
    lan
  }
  virtual_ipaddress {
    $VIP/24 dev lan
  }
}
EOF
    ip netns exec "$P$node" keepalived -n -l -P -f "$WORK/ka-$node.conf" \
      -p "$WORK/ka-$node.pid" -r "$WORK/ka-$node-vrrp.pid" >>"$WORK/ka-$node.log" 2>&1 &
    PIDS+=($!)
  done
}

holds_vip() { ip -n "$P$1" -o addr show dev lan | grep -q " $VIP/"; }

wait_ready() { # until A holds the VIP, B does not, and the client reaches it
  local deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    if holds_vip a && ! holds_vip b && ip netns exec "${P}c" ping -c1 -W0.2 -q $VIP >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  echo "setup did not converge (A holding the VIP); logs in $WORK" >&2
  return 1
}

# Client-seen outage in ms: the longest gap between two consecutive echo replies (by
# their arrival time, `ping -D`), less the usual spacing between replies. Replies, not sequence
# numbers: while the client re-resolves the VIP, the kernel queues echo requests and sends
# them late rather than dropping them, so "nothing lost" can still be an outage.
outage_ms() {
  python3 - "$1" <<'EOF'
import re, sys
times, dups = [], 0
for line in open(sys.argv[1]):
    m = re.match(r"\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", line)
    if not m:
        continue
    if line.rstrip().endswith("END"):
        if times and float(m.group(1)) - times[-1] > 0.05:
            times.append(float(m.group(1)))
        continue
    if "DUP!" in line:
        dups += 1
        continue
    times.append(float(m.group(1)))
times.sort()
gaps = sorted(b - a for a, b in zip(times, times[1:]))
# ping -i 0.01 paces at 10-20 ms on this kernel; subtract the usual spacing (median gap).
print(max(0, round((gaps[-1] - gaps[len(gaps) // 2]) * 1000)), dups)
EOF
}

one_run() { # impl interval scenario run
  local impl=$1 iv=$2 sc=$3 run=$4 count
  topology
  if [[ $impl == rearguard ]]; then start_rearguard "$iv"; else start_keepalived "$iv"; fi
  wait_ready || { cleanup; echo "$impl,$iv,$sc,$run,NA,0" >>"$RESULTS"; return; }
  sleep 0.3
  count=$(python3 -c "print(int(150 + 0.6 * $iv))")   # 1.5 s + 6 intervals of echoes, 10 ms apart
  ip netns exec "${P}c" ping -D -n -i 0.01 -W 1 -c "$count" $VIP >"$WORK/ping.txt" 2>&1 &
  local ping_pid=$!
  sleep 0.5
  case $sc in
    death)
      # Side link first: A must not get a resign out over it before its LAN goes.
      ip -n "${P}a" link set side down
      ip -n "${P}br" link set pa down ;;
    uplink)
      ip -n "${P}br" link set pa down ;;
    switchover)
      if [[ $impl == rearguard ]]; then
        "$RG" switchover --socket "$WORK/a.sock" >/dev/null
      else
        kill -TERM "$(cat "$WORK/ka-a.pid")"
      fi ;;
  esac
  wait $ping_pid 2>/dev/null || true
  # Sentinel: silence until the end of the probe run counts as outage too.
  echo "[$(date +%s.%N)] 0 bytes from end: icmp_seq=999999 END" >>"$WORK/ping.txt"
  cp "$WORK/ping.txt" "$PWD/target/pair-bench-last-ping.txt"
  read -r out dups < <(outage_ms "$WORK/ping.txt")
  echo "$impl,$iv,$sc,$run,$out,$dups" >>"$RESULTS"
  printf '%-10s %4s ms  %-10s run %d: outage %5s ms%s\n' "$impl" "$iv" "$sc" "$run" "$out" "$([[ $dups != 0 ]] && echo "  ($dups duplicate replies)")"
  cleanup
}

for iv in $INTERVALS; do
  for sc in $ONLY_SC; do
    for run in $(seq 1 "$RUNS"); do
      for impl in $ONLY_IMPL; do
        one_run $impl "$iv" $sc "$run"
      done
    done
  done
done

if ((SOAK > 0)); then
  # False takeovers at a 10 ms interval with both cores busy.
  topology
  start_rearguard 10
  wait_ready
  BUSY=()
  for _ in 1 2; do (while :; do :; done) & BUSY+=($!); done
  sleep "$SOAK"
  kill "${BUSY[@]}"
  takeovers=$("$RG" status --json --socket "$WORK/b.sock" | python3 -c "import json,sys; print(json.load(sys.stdin)['takeovers'])")
  rss=$("$RG" status --json --socket "$WORK/a.sock" | python3 -c "import json,sys; print(json.load(sys.stdin)['rss_kb'])")
  echo "soak: $SOAK s at 10 ms interval, both cores busy: standby takeovers = $takeovers; active agent RSS = $rss kB"
  cleanup
fi

python3 - "$RESULTS" <<'EOF'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["outage_ms"] != "NA"]
def med(impl, iv, sc):
    v = [int(r["outage_ms"]) for r in rows if (r["impl"], r["interval_ms"], r["scenario"]) == (impl, iv, sc)]
    return (statistics.median(v), len(v)) if v else (None, 0)
print()
print("| interval | scenario | Rearguard median ms (n) | keepalived median ms (n) | ratio |")
print("|---:|---|---:|---:|---:|")
for iv in sorted({r["interval_ms"] for r in rows}, key=lambda x: -int(x)):
    for sc in ["death", "uplink", "switchover"]:
        (r, rn), (k, kn) = med("rearguard", iv, sc), med("keepalived", iv, sc)
        ratio = "n/a" if r is None or not k else f"{r / k:.2f}"
        print(f"| {iv} ms | {sc} | {r} ({rn}) | {k} ({kn}) | {ratio} |")
EOF
echo "raw results: $RESULTS"
