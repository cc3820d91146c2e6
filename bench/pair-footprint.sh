#!/usr/bin/env bash
# Resident memory and CPU of the firewall-pair agent beside keepalived's, measured in the same
# run on the same topology: two namespaces joined by one veth, both nodes running, heartbeats
# every INTERVAL ms; the active node (priority 200) is measured for SECONDS after it settled.
# keepalived's figure is the sum of its parent and VRRP child. Run as root.
#   sudo bench/pair-footprint.sh [interval_ms] [seconds] [runs]
# REARGUARD_BIN picks the binary (default target/release/rearguard).
set -euo pipefail
cd "$(dirname "$0")/.."
interval=${1:-100}; secs=${2:-20}; runs=${3:-3}
RG=${REARGUARD_BIN:-$PWD/target/release/rearguard}
[[ -x $RG ]] || cargo build --release --bin rearguard -q
KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
P=rgfoot$$
WORK=$(mktemp -d /tmp/rgfoot.XXXXXX)
hz=$(getconf CLK_TCK)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [[ -n $pid ]] && { kill -9 "$pid"; wait "$pid"; } 2>/dev/null || true; done
  PIDS=()
  for n in a b; do ip netns del "$P$n" 2>/dev/null || true; done
}
trap 'cleanup; rm -rf "$WORK"' EXIT

topology() {
  for n in a b; do ip netns add "$P$n"; ip -n "$P$n" link set lo up; done
  ip link add lan netns "${P}a" type veth peer name lan netns "${P}b"
  ip -n "${P}a" addr add 10.202.0.1/24 dev lan
  ip -n "${P}b" addr add 10.202.0.2/24 dev lan
  for n in a b; do ip -n "$P$n" link set lan up; done
}

# Sum of VmRSS (KiB) and of utime+stime (ticks) over the given pids.
rss_of() { local s=0 p; for p in "$@"; do s=$((s + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $s; }
ticks_of() { local s=0 p; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
measure() { # pids...: sets RES to "RSS CPU%"
  local t0 t1
  t0=$(ticks_of "$@"); sleep "$secs"; t1=$(ticks_of "$@")
  RES="$(rss_of "$@") $(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$secs" 'BEGIN{printf "%.3f", 100*(b-a)/hz/s}')"
}

run_rearguard() {
  local node id prio
  for node in a b; do
    if [[ $node == a ]]; then id=1; prio=200; else id=2; prio=100; fi
    cat >"$WORK/$node.toml" <<EOF
[cluster]
id = 0xF007
node_id = $id
key = "$KEY"
[pair]
priority = $prio
interval_ms = $interval
control_socket = "$WORK/$node.sock"
state_dir = "$WORK/state-$node"
[[pair.vip]]
address = "10.202.0.100/24"
interface = "lan"
[[pair.check]]
kind = "carrier"
interface = "lan"
EOF
    REARGUARD_LOG=warn ip netns exec "$P$node" "$RG" agent --config "$WORK/$node.toml" >>"$WORK/$node.log" 2>&1 &
    PIDS+=($!)
  done
  sleep 3
  measure "${PIDS[0]}"
}

run_keepalived() {
  local node prio pids
  for node in a b; do
    if [[ $node == a ]]; then prio=200; else prio=100; fi
    cat >"$WORK/ka-$node.conf" <<EOF
global_defs {
  router_id rgfoot_$node
  vrrp_version 3
}
vrrp_instance VI_FOOT {
  state BACKUP
  interface lan
  virtual_router_id 52
  priority $prio
  advert_int $(awk -v i="$interval" 'BEGIN{print i/1000}')
  track_interface {
    lan
  }
  virtual_ipaddress {
    10.202.0.100/24 dev lan
  }
}
EOF
    ip netns exec "$P$node" keepalived -n -l -P -f "$WORK/ka-$node.conf" \
      -p "$WORK/ka-$node.pid" -r "$WORK/ka-$node-vrrp.pid" >>"$WORK/ka-$node.log" 2>&1 &
    PIDS+=($!)
  done
  sleep 3
  pids=("${PIDS[0]}" "$(cat "$WORK/ka-a-vrrp.pid")")
  measure "${pids[@]}"
}

rg_rss=(); rg_cpu=(); ka_rss=(); ka_cpu=()
for r in $(seq 1 "$runs"); do
  topology; run_rearguard; cleanup; read -r rss cpu <<<"$RES"
  rg_rss+=("$rss"); rg_cpu+=("$cpu")
  topology; run_keepalived; cleanup; read -r kr kc <<<"$RES"
  ka_rss+=("$kr"); ka_cpu+=("$kc")
  echo "run $r: rearguard RSS $rss KiB CPU $cpu%; keepalived RSS $kr KiB CPU $kc% (interval $interval ms, $secs s)"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
echo "median over $runs runs: rearguard RSS $(med "${rg_rss[@]}") KiB CPU $(med "${rg_cpu[@]}")%;" \
  "keepalived RSS $(med "${ka_rss[@]}") KiB CPU $(med "${ka_cpu[@]}")% ($RG, $(stat -c %s "$RG") bytes)"
