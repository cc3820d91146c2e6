#!/usr/bin/env bash
# Installs everything Rearguard's tests need on a fresh Debian machine: apt packages and
# rustup targets. Idempotent; run as root (or through sudo).
set -euo pipefail

# Debian packages the tests start for real.
APT_PACKAGES=(
  qemu-system-arm   # the emulated Cortex-M controller (boards/qemu-lm3s6965)
  iproute2          # ip netns / veth for firewall-pair tests
  nftables          # packet loss and filtering in pair tests
  iputils-ping      # the pair tests' client pings the VIP
  socat             # a pty pair as the serial cable between pair nodes (tests/pair_serial.rs)
  keepalived        # bench/pair-vs-keepalived.sh compares against it (not needed by tests)
  conntrackd        # pair tests: connection states synced between the nodes (tests/pair_conntrack.rs)
  conntrack         # inspecting a node's conntrack table by hand (conntrack -L) next to conntrackd
  util-linux        # losetup, fsfreeze for block-device tests
  e2fsprogs         # mkfs.ext4 for the hung-write (frozen filesystem) test
  debootstrap       # tests/package_systemd.rs: the Debian root the package is installed in
  systemd-container # systemd-nspawn boots that root with a real systemd
  lintian           # tests/package_systemd.rs: the .deb must have no lintian errors
  fuse3             # fusermount3 and the fuse module's userspace side: the fault-injecting
                    # FUSE disk of tests/disk_faults.rs (mounted directly as root; fusermount3
                    # is fuser's fallback)
)
RUST_TARGETS=(thumbv7m-none-eabi)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install: ${missing[*]} (re-run with sudo)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for t in "${RUST_TARGETS[@]}"; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

# Builds the Debian package (scripts/package.sh, tests/package_systemd.rs).
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb

# Reads the firmware's defmt logs (boards/qemu-lm3s6965/README.md); no test needs it, so CI
# (CI=true) skips the few minutes it takes to build.
if [[ -z "${CI:-}" ]] && ! command -v defmt-print >/dev/null; then
  cargo install defmt-print --locked
fi
echo "setup: ok"
