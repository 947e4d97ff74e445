#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust, on Debian: the second
# VHD/VHDX oracle (libvhdi's Python binding), the C toolchain that builds the
# fixture guest, the tools the tests drive, and the fuzzing toolchain. Safe
# to run again: it installs only what is missing.
set -euo pipefail

need=()
for pkg in python3-libvhdi gcc binutils make openssl tar gzip; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-upgrade "${need[@]}"
fi

# The fuzz smoke run: libFuzzer needs the nightly toolchain and cargo-fuzz.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

command -v qemu-img >/dev/null || { echo "setup: qemu-img is missing (apt-get install qemu-utils)"; exit 1; }
/usr/bin/python3 -c 'import pyvhdi' || { echo "setup: python3-libvhdi did not install"; exit 1; }
echo "setup: ok ($(qemu-img --version | head -n1))"
