#!/usr/bin/env bash
# Side-by-side conversion benchmark: `vmimport disk convert` against
# `qemu-img convert` on the same files in the same run, alternating the two
# tools, for raw->VHDX, VHDX->VHD, VHD->raw and VHDX->VHDX. qemu-img runs
# twice: with its default cache mode (which never flushes: the output may
# not be on disk when it exits) and with -t writeback, which flushes at the
# end as vmimport always does; the second is the like-for-like figure.
# The source is a 2 GiB disk, half seeded pseudo-random data, half holes
# (16 MiB runs alternating). Wall time and peak RSS come from /usr/bin/time.
# CPU time (user + system, the helper threads included) is reported beside
# wall time.
#
# A third timing is the disk's floor in the same run: writing 1 GiB of
# pseudo-random data (the data both tools write; read from the page cache,
# as the inputs are) and making it durable, the faster of two ways: dd with
# O_DIRECT in 64 MiB requests, and dd through the page cache in 8 MiB
# requests, each ending with fdatasync. No tool can make its output durable
# much faster than that, so qemu-img's time over the floor is the most any
# tool could gain over it on this disk ("bound" column).
#
# Usage: scripts/bench-convert.sh [RUNS] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=${2:-$(mktemp -d /var/tmp/vmimport-bench.XXXXXX)}
mkdir -p "$work"
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }

cargo build --release -q -p vmimport
vmimport=${CARGO_TARGET_DIR:-$PWD/target}/release/vmimport

src=$work/src.raw
if [ ! -f "$src" ]; then
    truncate -s 2G "$src"
    for i in $(seq 0 2 127); do
        { openssl enc -aes-128-ctr -nosalt -pass "pass:bench-$i" -pbkdf2 -iter 1 \
            < /dev/zero 2>/dev/null || true; } | head -c 16M |
            dd of="$src" bs=16M seek="$i" conv=notrunc iflag=fullblock status=none
    done
fi
# 1 GiB of the same kind of data for the disk's floor.
if [ ! -f "$work/floor.src" ]; then
    { openssl enc -aes-128-ctr -nosalt -pass pass:bench-floor -pbkdf2 -iter 1 \
        < /dev/zero 2>/dev/null || true; } | head -c 1G > "$work/floor.src"
fi
# Inputs for the other pairs, made by qemu-img so both tools read the same files.
[ -f "$work/src.vhdx" ] || qemu-img convert -f raw -O vhdx -o subformat=dynamic "$src" "$work/src.vhdx"
[ -f "$work/src.vhd" ] || qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$src" "$work/src.vhd"

# name, input, qemu output format/options, our output format
pairs=(
    "raw->vhdx|$src|raw|vhdx|-o subformat=dynamic|vhdx"
    "vhdx->vhd|$work/src.vhdx|vhdx|vpc|-o subformat=dynamic|vhd"
    "vhd->raw|$work/src.vhd|vpc|raw||raw"
    "vhdx->vhdx|$work/src.vhdx|vhdx|vhdx|-o subformat=dynamic|vhdx"
)

measure() { # prints "seconds maxrss_kib cpu_seconds"
    sync
    /usr/bin/time -f "%e %M %U %S" -o "$work/time.out" "$@" >/dev/null 2>&1
    tail -n1 "$work/time.out" | awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }'
}
floor() { # prints the faster of the two ways of writing floor.src durably
    local a b
    rm -f "$work/out.floor"; cat "$work/floor.src" >/dev/null
    read -r a _ < <(measure dd if="$work/floor.src" of="$work/out.floor" bs=64M oflag=direct conv=fdatasync status=none)
    rm -f "$work/out.floor"
    read -r b _ < <(measure dd if="$work/floor.src" of="$work/out.floor" bs=8M conv=fdatasync status=none)
    rm -f "$work/out.floor"
    awk -v a="$a" -v b="$b" 'BEGIN { print (a < b ? a : b) }'
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }'; }

printf "| pair | vmimport s | qemu-img -t writeback s | speed-up | disk floor s | bound: qemu-img / floor | vmimport CPU s | qemu-img CPU s | CPU ratio | qemu-img default (no flush) s | vmimport peak RSS MiB | qemu-img peak RSS MiB |\n"
printf "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
for p in "${pairs[@]}"; do
    IFS='|' read -r name input qin qout qopts ours <<<"$p"
    ts_ours=(); ts_qemu=(); ts_unsafe=(); ts_floor=(); cpu_ours=(); cpu_qemu=(); rss_ours=0; rss_qemu=0
    for r in $(seq 1 "$runs"); do
        rm -f "$work/out.ours" "$work/out.qemu"
        read -r t m c < <(measure "$vmimport" disk convert -O "$ours" "$input" "$work/out.ours")
        ts_ours+=("$t"); cpu_ours+=("$c"); [ "$m" -gt "$rss_ours" ] && rss_ours=$m
        # shellcheck disable=SC2086
        read -r t m c < <(measure qemu-img convert -t writeback -f "$qin" -O "$qout" $qopts "$input" "$work/out.qemu")
        ts_qemu+=("$t"); cpu_qemu+=("$c"); [ "$m" -gt "$rss_qemu" ] && rss_qemu=$m
        rm -f "$work/out.qemu"
        # shellcheck disable=SC2086
        read -r t _ < <(measure qemu-img convert -f "$qin" -O "$qout" $qopts "$input" "$work/out.qemu")
        ts_unsafe+=("$t"); sync
        ts_floor+=("$(floor)")
    done
    # The two outputs must hold the same disk.
    qemu-img compare -q "$work/out.ours" "$work/out.qemu" 2>/dev/null ||
        "$vmimport" disk compare "$work/out.ours" "$work/out.qemu" >/dev/null ||
        { echo "outputs differ for $name"; exit 1; }
    mo=$(med "${ts_ours[@]}"); mq=$(med "${ts_qemu[@]}"); mu=$(med "${ts_unsafe[@]}"); mf=$(med "${ts_floor[@]}")
    co=$(med "${cpu_ours[@]}"); cq=$(med "${cpu_qemu[@]}")
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n" "$name" "$mo" "$mq" \
        "$(ratio "$mq" "$mo")" "$mf" "$(ratio "$mq" "$mf")" "$co" "$cq" "$(ratio "$cq" "$co")" \
        "$mu" $((rss_ours / 1024)) $((rss_qemu / 1024))
done
rm -f "$work/out.ours" "$work/out.qemu"
echo
echo "median of $runs runs each, alternating; files in $work"
