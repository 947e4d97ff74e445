#!/bin/sh
# Boot benchmark: `vmimport boot` against QEMU, booting the same fixture
# guest (fixtures/guest) side by side in one run.
#
#   scripts/bench-boot.sh [RUNS]      (default 10 runs per configuration)
#
# For each run it records, per VMM: time from process start to the first
# byte of guest serial output, time to process exit, and peak RSS. For
# vmimport it also records the guest memory resident at exit (mincore), so
# that "peak RSS minus guest memory touched" is the VMM's own overhead.
#
# QEMU: qemu-system-x86 comes from bookworm-backports (the default suite's
# 7.2 would replace the installed qemu-img 10). The script adds that suite
# using the mirror already configured in apt's sources, then installs with
# -t bookworm-backports. Needs root for that step only.
set -eu

runs=${1:-10}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}

have() { command -v "$1" >/dev/null 2>&1; }

apt_mirror() {
	# deb822 sources: the URIs of the stanza whose Suites hold the release
	# itself (not -security).
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v rel="$1" '
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == rel) found = 1 }
			/^$/ { if (found && uri != "") { print uri; exit } found = 0; uri = "" }
			END { if (found && uri != "") print uri }' "$f"
	done
	# one-line sources
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v rel="$1" '$1 == "deb" && $3 == rel { print $2 }' "$f"
	done
}

install_qemu() {
	have qemu-system-x86_64 && return 0
	codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
	mirror=$(apt_mirror "$codename" | head -n 1)
	[ -n "$mirror" ] || { echo "no apt mirror for $codename found in /etc/apt" >&2; exit 1; }
	list=/etc/apt/sources.list.d/$codename-backports.list
	if ! grep -rqs "$codename-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
		echo "deb $mirror $codename-backports main" > "$list"
	fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t "$codename-backports" \
		qemu-system-x86 qemu-utils
}

install_qemu
[ "${BENCH_INSTALL_ONLY:-}" = 1 ] && exit 0

have python3 || { echo "python3 is needed for the timing harness" >&2; exit 1; }
fixture=$(mktemp -d)
trap 'rm -rf "$fixture"' EXIT
sh "$repo/fixtures/guest/build.sh" "$fixture"
(cd "$repo" && cargo build -q --release -p vmimport)

exec python3 "$repo/scripts/bench_boot.py" --runs "$runs" \
	--vmimport "$target/release/vmimport" --fixture "$fixture"
