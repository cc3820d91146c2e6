#!/usr/bin/env bash
# Builds the Debian package: target/debian/rearguard_<version>-1_<arch>.deb (the path is the
# last line printed). Usage: scripts/package.sh [--profile dist|release]
#
# The binary is built with the `dist` profile (Cargo.toml: fat LTO, opt-level s, abort on
# panic, stripped), which is what ships; `--profile release` packages the release build the
# tests already have (tests/package_systemd.rs uses it, to spare the suite a fat-LTO build).
# Man pages and completions come from the binary's own clap definitions (`rearguard-docs`,
# built from the same command tree, not shipped); /etc/rearguard/*.toml are the examples with the pair's example key taken
# out, so that no node runs with a published key. Needs cargo-deb (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=dist
while (($#)); do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    *) echo "usage: $0 [--profile dist|release]" >&2; exit 2 ;;
  esac
done
command -v cargo-deb >/dev/null || { echo "cargo-deb missing: run scripts/setup.sh" >&2; exit 1; }
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --profile "$profile" --bin rearguard --bin rearguard-docs
# cargo-deb reads the assets' target/release/ prefix as "this profile's directory".
out=$target/$profile
docs=$out/package-docs
rm -rf "$docs"
"$out/rearguard-docs" "$docs"
# Debian wants man pages gzipped (-n: no timestamp, so the package is reproducible);
# cargo-deb compresses only what it did not find under target/.
gzip -9n "$docs"/man/*.1
mkdir -p "$docs/etc"
cp examples/agent.toml examples/listener.toml "$docs/etc/"
sed 's|^key = .*|# key = "..."   # REQUIRED: your own, the same on both nodes: `openssl rand -hex 32`|' \
  examples/pair.toml >"$docs/etc/pair.toml"
grep -q '^# key = "..."' "$docs/etc/pair.toml" || { echo "package: the example key line of examples/pair.toml moved" >&2; exit 1; }
# cargo-deb prints the package's path last on stdout (warnings go to stderr).
deb=$(cargo deb --no-build --profile "$profile" -p rearguard | tail -1)
[[ -f $deb ]] || { echo "package: cargo deb did not say where the package is ($deb)" >&2; exit 1; }
echo "$deb"
