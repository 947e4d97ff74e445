#!/bin/sh
# virtio-blk request benchmark: the fixture guest (fixtures/guest) issues N
# 4 KiB reads, one at a time, through its virtio-pci driver (MSI-X) against
# a VHDX image, on `vmimport boot --disk` and on QEMU's virtio-blk-pci,
# alternating in one run.
#
#   scripts/bench-virtio.sh [REQUESTS] [RUNS]   (defaults 2000 and 5)
#   BENCH_CPUS=0 scripts/bench-virtio.sh ...     (both VMMs under taskset -c 0)
#
# Each VMM boots the guest twice per run, with 0 and with REQUESTS
# requests; the difference, divided by REQUESTS, is the wall time and the
# host CPU time (user + system of the VMM process) per request, so boot
# costs cancel out. The same differences of KVM's per-vCPU exit counters
# (binary stats: ours from `vmimport boot --stats`, QEMU's from QMP
# `query-stats` while -no-shutdown keeps it paused after the guest's reset)
# give the exits per request, by kind. QEMU is installed from bookworm-backports by
# scripts/bench-boot.sh (BENCH_INSTALL_ONLY=1).
set -eu

requests=${1:-2000}
runs=${2:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}

BENCH_INSTALL_ONLY=1 sh "$repo/scripts/bench-boot.sh"
command -v python3 >/dev/null 2>&1 || { echo "python3 is needed for the timing harness" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sh "$repo/fixtures/guest/build.sh" "$work/guest"
(cd "$repo" && cargo build -q --release -p vmimport)

exec python3 "$repo/scripts/bench_virtio.py" --requests "$requests" --runs "$runs" \
	--vmimport "$target/release/vmimport" --guest "$work/guest" --dir "$work" \
	--cpus "${BENCH_CPUS:-}"
