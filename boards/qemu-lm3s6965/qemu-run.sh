#!/bin/sh
# `cargo run --release` runner: boots the firmware ELF ($1) in QEMU's lm3s6965evb with the
# console on this terminal, the heartbeat link on /tmp/rg-link.sock, and target/sd.img as the
# SD card (a blank 2 MiB image is created if missing; `rearguard disk init` it for a disk medium).
set -eu
img=${RG_SD_IMAGE:-target/sd.img}
[ -e "$img" ] || truncate -s 2M "$img"
exec qemu-system-arm -machine lm3s6965evb -display none -monitor none \
  -serial stdio -serial unix:/tmp/rg-link.sock,server=on,wait=off \
  -drive if=sd,format=raw,file="$img" -kernel "$1"
