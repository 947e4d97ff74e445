#!/usr/bin/env bash
# Side-by-side import benchmark: `vmimport PACKAGE` against the pipeline a
# user would otherwise run, `tar x` then `qemu-img convert -O vhdx`, on the
# same OVA in the same run, alternating the two. The appliance holds a 2 GiB
# streamOptimized disk (made by qemu-img): 1 GiB of pseudo-random data in
# 16 MiB runs, the rest holes. Wall time and peak RSS from /usr/bin/time.
#
# Usage: scripts/bench-import.sh [RUNS] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=${2:-$(mktemp -d /var/tmp/vmimport-bench-import.XXXXXX)}
mkdir -p "$work"
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }
cargo build --release -q -p vmimport
vmimport=${CARGO_TARGET_DIR:-$PWD/target}/release/vmimport

if [ ! -f "$work/bench.ova" ]; then
    truncate -s 2G "$work/disk.raw"
    for i in $(seq 0 2 127); do
        { openssl enc -aes-128-ctr -nosalt -pass "pass:bench-$i" -pbkdf2 -iter 1 \
            < /dev/zero 2>/dev/null || true; } | head -c 16M |
            dd of="$work/disk.raw" bs=16M seek="$i" conv=notrunc iflag=fullblock status=none
    done
    qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$work/disk.raw" "$work/sample-disk1.vmdk"
    sed 's/ovf:capacity="64"/ovf:capacity="2048"/' fixtures/appliance/sample.ovf > "$work/sample.ovf"
    (
        cd "$work"
        for f in sample.ovf sample-disk1.vmdk; do
            echo "SHA256($f)= $(sha256sum "$f" | cut -d' ' -f1)"
        done > sample.mf
        tar --format=ustar -cf bench.ova sample.ovf sample.mf sample-disk1.vmdk
    )
    rm -f "$work/disk.raw" "$work/sample-disk1.vmdk"
fi

measure() { # prints "seconds maxrss_kib"
    sync
    /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >/dev/null 2>&1
    tail -n1 "$work/time.out"
}
pipeline() { # the two-step baseline, with the manifest check a careful user would do
    rm -rf "$work/x" && mkdir "$work/x"
    tar -xf "$work/bench.ova" -C "$work/x"
    (cd "$work/x" && sha256sum --quiet -c <(sed -E 's/^SHA256\((.*)\)= (.*)$/\2  \1/' sample.mf))
    qemu-img convert -f vmdk -O vhdx -o subformat=dynamic "$work/x/sample-disk1.vmdk" "$work/x/out.vhdx"
}
export -f pipeline
export work

ours=(); theirs=(); rss_ours=0; rss_theirs=0
for r in $(seq 1 "$runs"); do
    rm -rf "$work/out"
    read -r t m < <(measure "$vmimport" "$work/bench.ova" -o "$work/out")
    ours+=("$t"); [ "$m" -gt "$rss_ours" ] && rss_ours=$m
    read -r t m < <(measure bash -c pipeline)
    theirs+=("$t"); [ "$m" -gt "$rss_theirs" ] && rss_theirs=$m
done
qemu-img compare -q "$work/out/sample-disk1.vhdx" "$work/x/out.vhdx" || { echo "outputs differ"; exit 1; }
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(med "${ours[@]}"); mt=$(med "${theirs[@]}")
echo "| import of a 2 GiB appliance (1 GiB data) | seconds (median of $runs) | peak RSS MiB |"
echo "|---|---|---|"
echo "| vmimport | $mo | $((rss_ours / 1024)) |"
echo "| tar x + sha256sum -c + qemu-img convert -O vhdx | $mt | $((rss_theirs / 1024)) (largest step) |"
awk -v a="$mt" -v b="$mo" 'BEGIN { printf "speed-up: %.2fx\n", (b > 0 ? a / b : 0) }'
rm -rf "$work/x" "$work/out"
echo "files in $work"
