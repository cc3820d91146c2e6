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
#        [--impl "rearguard keepalived"] [--scenarios "death uplink switchover conntrack"]
#
# Topology (per run):  A.lan ─┐                 ┌─ B.lan     A.side ─── B.side (direct veth)
#                             └─ br0 (ns br) ───┤
#                                    client.lan ┘
# Scenarios:
#   death      A's LAN port at the switch and its side link go down at once
#   uplink     A's LAN port at the switch goes down; the side link stays up
#   switchover rearguard: `rearguard switchover` on A; keepalived: SIGTERM to A's keepalived
#              (it sends priority-0 adverts and drops the VIP: its planned handover)
#   conntrack  a stateful firewall pair (below): a TCP stream through it while node A dies
# Both use the side link for heartbeats; keepalived tracks the LAN interface
# (track_interface), Rearguard has a carrier check on it (5 ms) and also advertises on the LAN.
# Detection: keepalived master-down = 3 × advert_int + skew; Rearguard dead_count = 3.
#
# The conntrack scenario (tests/pair_conntrack.rs's topology): a WAN segment behind the pair
# with a server (ns s), a VIP on each side as the gateways, nftables stateful forwarding
# (established/related accepted, new only from the LAN, invalid dropped, tcp_loose = 0) and
# conntrackd (FTFW over the side link) in each node. Rearguard drives conntrackd through
# [pair.conntrack]; keepalived through notify_master/backup/fault running conntrackd's
# primary-backup.sh (its documented sequence, transcribed below). A client sends 8 bytes every
# 10 ms to the server, which echoes them; once node B's conntrackd holds the connection, node A
# dies (all its cables cut, then its daemon and its conntrackd SIGKILLed). Reported per run:
# whether the stream survived (no error, every echo in order, echoes flowing at the end), its
# longest stall between two echoes, and the RSS of node B's daemon after the takeover
# (keepalived: its parent and VRRP processes together).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=5
INTERVALS="100 50 10"
ONLY_IMPL="rearguard keepalived"
ONLY_SC="death uplink switchover conntrack"
SOAK=0
while (($#)); do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --intervals) INTERVALS=$2; shift 2 ;;
    --soak) SOAK=$2; shift 2 ;;
    --impl) ONLY_IMPL=$2; shift 2 ;;
    --scenarios) ONLY_SC=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--intervals \"100 50 10\"] [--soak SECONDS] [--impl \"rearguard keepalived\"] [--scenarios \"death uplink switchover conntrack\"]" >&2; exit 2 ;;
  esac
done

[[ $(id -u) -eq 0 ]] || { echo "run as root (network namespaces); run scripts/setup.sh first" >&2; exit 1; }
for t in ip ping keepalived python3 nft conntrackd; do
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
CT_RESULTS=$PWD/target/pair-vs-keepalived-conntrack.csv
echo "impl,interval_ms,run,survived,stall_ms,takeover_ms,resumed_ms,echoes,new_connection,rss_kb,error" >"$CT_RESULTS"
PIDS=()

cleanup() {
  # keepalived's VRRP child is not in PIDS: killed by its pid file, so none outlives its run.
  for f in "$WORK"/ka-*-vrrp.pid; do
    [[ -f $f ]] && { kill -9 "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
  done
  for pid in "${PIDS[@]:-}"; do [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true; done
  PIDS=()
  for n in br a b c s; do ip netns del "$P$n" 2>/dev/null || true; done
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

start_rearguard() { # interval_ms [fw: the conntrack scenario's firewall]
  local iv=$1 fw=${2:-} node id prio peer
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
    if [[ -n $fw ]]; then
      cat >>"$WORK/$node.toml" <<EOF
[[pair.vip]]
address = "$WAN_VIP/24"
interface = "wan"
[[pair.check]]
kind = "carrier"
interface = "wan"
interval_ms = 5
[pair.conntrack]
config = "$WORK/conntrackd-$node.conf"
EOF
    fi
    REARGUARD_LOG=warn ip netns exec "$P$node" "$RG" agent --config "$WORK/$node.toml" >>"$WORK/$node.log" 2>&1 &
    PIDS+=($!)
  done
}

start_keepalived() { # interval_ms [fw: the conntrack scenario's firewall]
  local iv=$1 fw=${2:-} node prio src peer adv extra_track="" extra_vip="" notify=""
  adv=$(python3 -c "print($iv/1000)")
  for node in a b; do
    if [[ $node == a ]]; then prio=200; src=10.201.0.1; peer=10.201.0.2; else prio=100; src=10.201.0.2; peer=10.201.0.1; fi
    if [[ -n $fw ]]; then
      extra_track="wan"
      extra_vip="$WAN_VIP/24 dev wan"
      notify="notify_master \"$WORK/primary-backup-$node.sh primary\"
  notify_backup \"$WORK/primary-backup-$node.sh backup\"
  notify_fault \"$WORK/primary-backup-$node.sh fault\""
    fi
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
    $extra_track
  }
  virtual_ipaddress {
    $VIP/24 dev lan
    $extra_vip
  }
  $notify
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

# ---- the conntrack scenario ------------------------------------------------------------
WAN_VIP=10.202.0.100
SERVER=10.202.0.20

firewall() { # the WAN segment, the server, nftables and conntrackd on both nodes
  ip netns add "${P}s"
  ip -n "${P}s" link set lo up
  ip -n "${P}br" link add br1 type bridge
  ip -n "${P}br" link set br1 up
  local n addr me peer
  for n in a b s; do
    case $n in a) addr=10.202.0.1/24 ;; b) addr=10.202.0.2/24 ;; s) addr=$SERVER/24 ;; esac
    ip link add wan netns "$P$n" type veth peer name "w$n" netns "${P}br"
    ip -n "${P}br" link set "w$n" master br1
    ip -n "${P}br" link set "w$n" up
    ip -n "$P$n" addr add $addr dev wan
    ip -n "$P$n" link set wan up
  done
  ip -n "${P}c" route add default via $VIP
  ip -n "${P}s" route add default via $WAN_VIP
  cat >"$WORK/fw.nft" <<'EOF'
table inet fw {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname "lan" ct state new accept
  }
}
EOF
  for n in a b; do
    if [[ $n == a ]]; then me=1; peer=2; else me=2; peer=1; fi
    ip netns exec "$P$n" nft -f "$WORK/fw.nft"
    ip netns exec "$P$n" sysctl -qw net.ipv4.ip_forward=1
    # A packet of a connection the kernel does not know is invalid, not picked up mid-stream:
    # without it any node would forward the stream, synced or not.
    ip netns exec "$P$n" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
    cat >"$WORK/conntrackd-$n.conf" <<EOF
Sync {
    Mode FTFW {
    }
    UDP {
        IPv4_address 10.201.0.$me
        IPv4_Destination_Address 10.201.0.$peer
        Port 3780
        Interface side
        Checksum on
    }
}
General {
    HashSize 8192
    HashLimit 65536
    Syslog off
    LogFile $WORK/conntrackd-$n.log
    LockFile $WORK/conntrackd-$n.lock
    UNIX {
        Path $WORK/conntrackd-$n.ctl
    }
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {
        Protocol Accept {
            TCP
        }
        Address Ignore {
            IPv4_address 127.0.0.1
            IPv4_address 10.201.0.$me
            IPv4_address 10.200.0.$me
            IPv4_address 10.202.0.$me
            IPv4_address $VIP
            IPv4_address $WAN_VIP
        }
    }
}
EOF
    # conntrackd's primary-backup.sh (examples/sync/ of the conntrackd package), transcribed
    # with this node's paths and echo for logger: what keepalived's users run from
    # notify_master / notify_backup / notify_fault.
    cat >"$WORK/primary-backup-$n.sh" <<EOF
#!/bin/sh
CONNTRACKD_BIN=conntrackd
CONNTRACKD_LOCK=$WORK/conntrackd-$n.lock
CONNTRACKD_CONFIG=$WORK/conntrackd-$n.conf
echo "\$(date +%s.%N) \$1" >>$WORK/notify-$n.log
case "\$1" in
  primary)
    \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -c || echo "ERROR: failed to invoke conntrackd -c"
    \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -f || echo "ERROR: failed to invoke conntrackd -f"
    \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -R || echo "ERROR: failed to invoke conntrackd -R"
    \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -B || echo "ERROR: failed to invoke conntrackd -B"
    ;;
  backup)
    if ! \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -s >/dev/null; then
      rm -f \$CONNTRACKD_LOCK
      \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -d || { echo "ERROR: cannot launch conntrackd"; exit 1; }
    fi
    \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -t || echo "ERROR: failed to invoke conntrackd -t"
    \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -n || echo "ERROR: failed to invoke conntrackd -n"
    ;;
  fault)
    \$CONNTRACKD_BIN -C \$CONNTRACKD_CONFIG -t || echo "ERROR: failed to invoke conntrackd -t"
    ;;
esac
exit 0
EOF
    chmod +x "$WORK/primary-backup-$n.sh"
    # The last run's daemon was SIGKILLed: its lock and socket would refuse this one.
    rm -f "$WORK/conntrackd-$n.lock" "$WORK/conntrackd-$n.ctl" "$WORK/notify-$n.log"
    ip netns exec "$P$n" conntrackd -C "$WORK/conntrackd-$n.conf" >>"$WORK/conntrackd-$n.out" 2>&1 &
    PIDS+=($!)
    echo $! >"$WORK/conntrackd-$n.pid"
  done
  local deadline=$((SECONDS + 10))
  until conntrackd -C "$WORK/conntrackd-a.conf" -s >/dev/null 2>&1 && conntrackd -C "$WORK/conntrackd-b.conf" -s >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "conntrackd did not start; logs in $WORK" >&2; return 1; }
    sleep 0.05
  done
}

# The TCP stream: `serve` echoes; `client` sends 8 bytes every 10 ms for DURATION seconds,
# then prints one JSON line (survived, longest stall, echoes, whether a new connection works).
cat >"$WORK/stream.py" <<'EOF'
import json, socket, struct, sys, threading, time
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(16)
    def echo(c):
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    return
                c.sendall(d)
        except OSError:
            return
    while True:
        c, _ = srv.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
duration = float(sys.argv[4])
s = socket.create_connection((host, port), timeout=2)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(None)
echoes, error, done = [], [], [False]
def read():
    buf = b""
    while True:
        try:
            d = s.recv(4096)
        except OSError as e:
            error.append(f"read: {e}")
            return
        if not d:
            if not done[0]:
                error.append("read: connection closed")
            return
        buf += d
        while len(buf) >= 8:
            echoes.append((struct.unpack(">Q", buf[:8])[0], time.time()))
            buf = buf[8:]
threading.Thread(target=read, daemon=True).start()
start = time.time()
end, seq, nxt = start + duration, 0, start
while time.time() < end and not error:
    try:
        s.sendall(struct.pack(">Q", seq))
    except OSError as e:
        error.append(f"write: {e}")
        break
    seq += 1
    nxt += 0.01
    time.sleep(max(0.0, nxt - time.time()))
time.sleep(0.2)
done[0] = True
stop = time.time()
got = list(echoes)
in_order = all(q == i for i, (q, _) in enumerate(got))
flowing = bool(got) and stop - got[-1][1] < 0.5
# The quiet 0.2 s after the last message is no stall; a stream that never came back stalled
# until the end.
times = [start] + [t for _, t in got] + ([] if flowing else [stop])
stall, resumed = max((b - a, b) for a, b in zip(times, times[1:]))
try:
    c = socket.create_connection((host, port), timeout=2)
    c.settimeout(2)
    c.sendall(b"12345678")
    new_conn = c.recv(8) == b"12345678"
except OSError:
    new_conn = False
print(json.dumps({"survived": not error and in_order and flowing, "stall_ms": round(stall * 1000), "resumed_at": resumed,
                  "echoes": len(got), "new_connection": new_conn,
                  "error": error[0] if error else ("" if in_order else "echoes out of order")}))
EOF

rss_kb() { # pid...: the sum of their VmRSS in kB
  local kb=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    kb=$((kb + ${v:-0}))
  done
  echo $kb
}

conntrack_run() { # impl interval run
  local impl=$1 iv=$2 run=$3 daemon_a pids_b deadline line rss client killed
  topology
  if ! firewall; then cleanup; echo "$impl,$iv,$run,NA,NA,0,NA,0,setup" >>"$CT_RESULTS"; return; fi
  if [[ $impl == rearguard ]]; then
    start_rearguard "$iv" fw
    daemon_a=${PIDS[-2]}
    pids_b=${PIDS[-1]}
  else
    start_keepalived "$iv" fw
  fi
  if ! wait_ready; then cleanup; echo "$impl,$iv,$run,NA,NA,0,NA,0,setup" >>"$CT_RESULTS"; return; fi
  if [[ $impl == keepalived ]]; then
    daemon_a="$(cat "$WORK/ka-a-vrrp.pid") $(cat "$WORK/ka-a.pid")"
    pids_b="$(cat "$WORK/ka-b.pid") $(cat "$WORK/ka-b-vrrp.pid")"
  fi
  ip netns exec "${P}s" python3 "$WORK/stream.py" serve $SERVER 7000 &
  PIDS+=($!)
  sleep 0.3
  ip netns exec "${P}c" python3 "$WORK/stream.py" client $SERVER 7000 7 >"$WORK/stream.json" 2>"$WORK/stream.err" &
  client=$!
  # Node B's conntrackd holds the connection (its external cache) before A dies.
  deadline=$((SECONDS + 5))
  until conntrackd -C "$WORK/conntrackd-b.conf" -e 2>/dev/null | grep -q "src=10.200.0.10 "; do
    ((SECONDS < deadline)) || { echo "node B's conntrackd never got the connection; logs in $WORK" >&2; break; }
    sleep 0.05
  done
  # When node B puts the WAN VIP up: the takeover, by the kernel's clock.
  ip -n "${P}b" -ts monitor address >"$WORK/monitor-b.txt" &
  PIDS+=($!)
  sleep 1
  # A dies: every cable cut first (no goodbye gets out), then its daemon and conntrackd.
  killed=$(date +%s.%N)
  ip -n "${P}a" link set side down
  ip -n "${P}br" link set pa down
  ip -n "${P}br" link set wa down
  # shellcheck disable=SC2086
  kill -9 $daemon_a "$(cat "$WORK/conntrackd-a.pid")" 2>/dev/null || true
  wait $client 2>/dev/null || true
  # shellcheck disable=SC2086
  rss=$(rss_kb $pids_b)
  line=$(cat "$WORK/stream.json")
  [[ -n $line ]] || line='{"survived": false, "stall_ms": null, "echoes": 0, "new_connection": false, "error": "client failed"}'
  python3 - "$impl" "$iv" "$run" "$rss" "$line" "$killed" "$WORK/monitor-b.txt" >>"$CT_RESULTS" <<'EOF'
import datetime, json, sys
impl, iv, run, rss, line, killed, monitor = sys.argv[1:]
r, killed = json.loads(line), float(killed)
takeover = "NA"
for l in open(monitor):
    if " 10.202.0.100/" in l and l.startswith("["):
        t = datetime.datetime.fromisoformat(l[1:l.index("]")]).timestamp()
        if t > killed:
            takeover = round((t - killed) * 1000)
            break
resumed = round((r["resumed_at"] - killed) * 1000) if r.get("resumed_at") else "NA"
print(f'{impl},{iv},{run},{r["survived"]},{r["stall_ms"]},{takeover},{resumed},{r["echoes"]},{r["new_connection"]},{rss},"{r["error"]}"')
EOF
  tail -1 "$CT_RESULTS" | awk -F, '{printf "%-10s %4s ms  conntrack  run %d: survived %s, longest stall %5s ms (WAN VIP up on B %s ms after the kill, stream resumed at %s ms), new connection %s, node B daemon RSS %s kB %s\n", $1, $2, $3, $4, $5, $6, $7, $9, $10, $11}'
  if [[ -n ${KEEP:-} ]]; then rm -rf "$PWD/target/pair-bench-conntrack-last"; cp -r "$WORK" "$PWD/target/pair-bench-conntrack-last"; fi
  cleanup
}

for iv in $INTERVALS; do
  for sc in $ONLY_SC; do
    for run in $(seq 1 "$RUNS"); do
      for impl in $ONLY_IMPL; do
        if [[ $sc == conntrack ]]; then conntrack_run $impl "$iv" "$run"; else one_run $impl "$iv" $sc "$run"; fi
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
python3 - "$CT_RESULTS" <<'EOF'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["survived"] != "NA"]
if rows:
    print()
    print("TCP stream through the firewall at node death (conntrackd), medians:")
    print("| interval | Rearguard survived | Rearguard stall ms | keepalived survived | keepalived stall ms | agent RSS kB | keepalived RSS kB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for iv in sorted({r["interval_ms"] for r in rows}, key=lambda x: -int(x)):
        cells = []
        for impl in ["rearguard", "keepalived"]:
            v = [r for r in rows if (r["impl"], r["interval_ms"]) == (impl, iv)]
            ok = sum(r["survived"] == "True" for r in v)
            stall = statistics.median(int(r["stall_ms"]) for r in v) if v else None
            rss = statistics.median(int(r["rss_kb"]) for r in v) if v else None
            cells.append((f"{ok}/{len(v)}", stall, rss))
        (rs, rst, rr), (ks, kst, kr) = cells
        print(f"| {iv} ms | {rs} | {rst} | {ks} | {kst} | {rr} | {kr} |")
        for impl in ["rearguard", "keepalived"]:
            v = [r["stall_ms"] for r in rows if (r["impl"], r["interval_ms"]) == (impl, iv)]
            print(f"  {impl} {iv} ms, stalls of each run: {' '.join(v)}")
EOF
echo "raw results: $RESULTS $CT_RESULTS"
