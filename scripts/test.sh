#!/usr/bin/env bash
# The whole test suite: installs what the tests need (scripts/setup.sh), then runs every
# test for real. Run as root: the firewall-pair tests create network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins
# The emulated controller's firmware (thumbv7m, its own lock and target dir): tests/qemu_*.rs boot it.
(cd boards/qemu-lm3s6965 && cargo build --release)
cargo test --release --workspace -- --test-threads=2
# The application as the controller builds it (no arbitration between spares; see
# shared/Cargo.toml): the workspace run above unifies the feature on.
cargo test --release -p rearguard-firmware --no-default-features
