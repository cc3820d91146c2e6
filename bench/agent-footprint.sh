#!/usr/bin/env bash
# Measures the primary agent's resident memory and CPU use while it heartbeats to a disk
# image at a given interval. Usage: bench/agent-footprint.sh [interval_ms] [seconds] [runs]
# Prints each run and the medians. Needs only a built release binary (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
interval=${1:-100}; secs=${2:-30}; runs=${3:-5}
bin=${REARGUARD_BIN:-target/release/rearguard}
[[ -x $bin ]] || cargo build --release
hz=$(getconf CLK_TCK)
rss_all=(); cpu_all=()
for r in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  $bin disk init "$dir/disk.img" --create --cluster-id 1 --interval-ms "$interval" --timeout-ms 10000 >/dev/null
  cat > "$dir/agent.toml" <<CFG
[cluster]
id = 1
node_id = 0
[disk]
device = "$dir/disk.img"
interval_ms = $interval
write_deadline_ms = 300
[fence]
method = "command"
command = ["true"]
fence_time_ms = 100
CFG
  REARGUARD_LOG=warn $bin agent --config "$dir/agent.toml" & pid=$!
  sleep 1
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  sleep "$secs"
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$secs" 'BEGIN{printf "%.3f", 100*(b-a)/hz/s}')
  echo "run $r: RSS ${rss} KiB, CPU ${cpu}% of one core (interval ${interval} ms, ${secs} s)"
  rss_all+=("$rss"); cpu_all+=("$cpu")
  rm -rf "$dir"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
echo "median over $runs runs: RSS $(med "${rss_all[@]}") KiB, CPU $(med "${cpu_all[@]}")% of one core"
