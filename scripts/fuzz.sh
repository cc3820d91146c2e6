#!/usr/bin/env bash
# Fuzzes every decoder for a while (default 60 s each). Needs cargo-fuzz; installs it if
# missing. The machine's toolchain is stable, so nightly-only flags are unlocked with
# RUSTC_BOOTSTRAP=1 (only for this fuzz build). Crashes land in fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}; shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
for t in "${targets[@]}"; do
  echo "== $t ($secs s)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$secs" -max_len=4096 2>&1 | grep -E "^(#[0-9]+.*DONE|Done|==[0-9]+==|SUMMARY|.*panicked)" || true
done
