#!/usr/bin/env bash
# Randomized fault schedules at length (tests/pair_chaos.rs): N seeded schedules against a
# firewall pair in network namespaces and N against cold standby on a fault-injecting FUSE
# disk. Run as root. Prints one line per failing seed and the totals; the whole log goes to
# $LOG (default /tmp/rearguard-chaos.log). Replay a seed with
#   RG_CHAOS_SEED=<seed> cargo test --release --test pair_chaos -- --nocapture
#
#   bench/chaos.sh [--schedules N] [--base SEED] [--only pair|cold]
set -euo pipefail
cd "$(dirname "$0")/.."
n=200
only=
base=$(( $(date +%s) % 1000000 ))
while (($#)); do
  case $1 in
    --schedules) n=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --only) [[ ${2:-} == pair || ${2:-} == cold ]] || { echo "--only takes pair or cold" >&2; exit 2; }
            only=$2; shift 2 ;;
    *) echo "usage: $0 [--schedules N] [--base SEED] [--only pair|cold]" >&2; exit 2 ;;
  esac
done
log=${LOG:-/tmp/rearguard-chaos.log}
case $only in
  pair) what="$n pair"; filter=pair_seeded ;;
  cold) what="$n cold-standby"; filter=cold_standby_seeded ;;
  *) what="$n pair and $n cold-standby"; filter= ;;
esac
echo "chaos: $what schedules from seed $base; log in $log"
cargo build --release --workspace --bins
status=0
RG_CHAOS_SCHEDULES=$n RG_CHAOS_BASE=$base \
  cargo test --release --test pair_chaos -- ${filter:+"$filter"} --nocapture >"$log" 2>&1 || status=$?
grep -E "chaos: (seed [0-9]+ FAILED|[0-9]+ schedules)" "$log" || true
exit $status
