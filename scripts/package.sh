#!/usr/bin/env bash
# Builds the Debian package: target/debian/rearguard_<version>-1_<arch>.deb (the path is the
# last line printed). The binary is the release build; man pages and completions come from
# its own clap definitions (`rearguard generate-docs`); /etc/rearguard/*.toml are the
# examples with the pair's example key taken out, so that no node runs with a published
# key. Needs cargo-deb (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || { echo "cargo-deb missing: run scripts/setup.sh" >&2; exit 1; }
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --bin rearguard
docs=$target/release/package-docs
rm -rf "$docs"
"$target/release/rearguard" generate-docs "$docs"
# cargo-deb leaves files under target/ as they are; Debian wants man pages gzipped (-n:
# no timestamp, so the package is reproducible).
gzip -9n "$docs"/man/*.1
mkdir -p "$docs/etc"
cp examples/agent.toml examples/listener.toml "$docs/etc/"
sed 's|^key = .*|# key = "..."   # REQUIRED: your own, the same on both nodes: `openssl rand -hex 32`|' \
  examples/pair.toml >"$docs/etc/pair.toml"
grep -q '^# key = "..."' "$docs/etc/pair.toml" || { echo "package: the example key line of examples/pair.toml moved" >&2; exit 1; }
# cargo-deb prints the package's path last on stdout (warnings go to stderr).
deb=$(cargo deb --no-build -p rearguard | tail -1)
[[ -f $deb ]] || { echo "package: cargo deb did not say where the package is ($deb)" >&2; exit 1; }
echo "$deb"
