#!/usr/bin/env bash
# The whole test suite: installs what the tests need (scripts/setup.sh), then runs every
# test for real. Run as root: the firewall-pair tests create network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins
cargo test --release --workspace -- --test-threads=2
