#!/usr/bin/env bash
# Fuzzes every decoder, the console and every config parser. Needs cargo-fuzz; installs it if
# missing. The machine's toolchain is stable, so nightly-only flags are unlocked with
# RUSTC_BOOTSTRAP=1 (only for this fuzz build). Crashes land in fuzz/artifacts/<target>/; the
# corpus grows in fuzz/corpus/<target>/ (not committed), so a second run starts deeper.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]          each target for SECONDS (default 60)
#        scripts/fuzz.sh --runs N [TARGET...]           each target for N executions
# Each target ends with one line: its executions, coverage (edges) and features.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
limit=(-max_total_time=60); what="60 s"
if [[ ${1:-} == --runs ]]; then
  [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh --runs N [target...]" >&2; exit 2; }
  limit=(-runs="$2"); what="$2 runs"; shift 2
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
  limit=(-max_total_time="$1"); what="$1 s"; shift
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
status=0
for t in "${targets[@]}"; do
  echo "== $t ($what)"
  mkdir -p "corpus/$t"
  log=$(mktemp)
  start=$SECONDS
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- "${limit[@]}" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || status=1
  grep -E "^(==[0-9]+==|SUMMARY|.*panicked|artifact_prefix|Test unit written)" "$log" || true
  # libFuzzer's last status line ("#N DONE cov: C ft: F ...") and its final stats.
  done_line=$(grep -E "^#[0-9]+" "$log" | tail -1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "$t: ${runs:-?} executions in $((SECONDS - start)) s | ${done_line:-no status line (see $log)}"
  [[ $status == 0 ]] && rm -f "$log"
done
exit $status
