#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer), one target at a time.
#
#   bash scripts/fuzz.sh smoke [SECONDS]          every target for SECONDS (default 30)
#   bash scripts/fuzz.sh long SECONDS [TARGET...]   the named targets (default all) for SECONDS each
#   bash scripts/fuzz.sh build                     build the targets only
#   bash scripts/fuzz.sh replay                    run fixtures/hostile inputs once each
#
# Each run starts from a temporary copy of the committed corpus
# (fuzz/corpus/TARGET), with the target's dictionary (fuzz/dicts) when it
# has one. A long run merges what it found back into fuzz/corpus/TARGET as
# libFuzzer's hash-named files (ignored by git; keep a find by renaming it
# seed-*). Crash, hang (-timeout) and out-of-memory (-rss_limit_mb)
# reproducers land in fuzz/artifacts/TARGET/; any of them makes this script
# exit non-zero. One libFuzzer process at a time. Builds go to
# $CARGO_TARGET_DIR (default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

TARGETS=(vhd_open_io vhdx_open_io vhdx_log vmdk_stream ovf_descriptor ova_package virtio_blk_queue)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/fuzz/target}"
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
BIN="$CARGO_TARGET_DIR/$TRIPLE/release"
# Release code with debug assertions: integer overflow panics, as it must
# never happen on any input.
BUILD_FLAGS=(-O -a)

dict_for() {
    case "$1" in
        vhd_open_io) echo fuzz/dicts/vhd.dict ;;
        vhdx_open_io) echo fuzz/dicts/vhdx.dict ;;
        vmdk_stream) echo fuzz/dicts/vmdk.dict ;;
        ovf_descriptor) echo fuzz/dicts/ovf.dict ;;
        ova_package) echo fuzz/dicts/ova.dict ;;
        *) ;;
    esac
}

# Largest input libFuzzer makes (its own guess stops at 1 MiB): qemu-img
# puts a VHDX's metadata and block table past the first MiB.
max_len_for() {
    case "$1" in
        vhdx_open_io) echo 4194304 ;;
        *) echo 1048576 ;;
    esac
}

build() {
    command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing (cargo install cargo-fuzz --locked)"; exit 1; }
    rustup toolchain list | grep -q '^nightly' || { echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)"; exit 1; }
    (cd fuzz && cargo +nightly fuzz build "${BUILD_FLAGS[@]}" "$@")
}

# replay TARGET: runs every kept hostile input of the target once (crash,
# hang and out-of-memory reproducers, and inputs that reach error paths);
# any failure fails the run. Part of the smoke run, so of the test command.
replay() {
    local target=$1
    local dir="fixtures/hostile/$target"
    [ -d "$dir" ] || return 0
    local files=("$dir"/*)
    [ -e "${files[0]}" ] || return 0
    local log
    log=$(mktemp)
    if "$BIN/$target" -rss_limit_mb=2048 -timeout=10 "${files[@]}" >"$log" 2>&1; then
        echo "fuzz: $target replayed ${#files[@]} kept inputs"
        rm -f "$log"
    else
        echo "fuzz: $target FAILED on a kept input in $dir; log follows"
        tail -n 60 "$log"
        rm -f "$log"
        return 1
    fi
}

# run TARGET SECONDS MERGE
run() {
    local target=$1 seconds=$2 merge=$3
    local work
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$target" "$work/corpus"
    mkdir -p "fuzz/artifacts/$target"
    local args=(
        "$work/corpus"
        -max_total_time="$seconds"
        -rss_limit_mb=2048
        -timeout=10
        -print_final_stats=1
        -max_len="$(max_len_for "$target")"
        -artifact_prefix="$root/fuzz/artifacts/$target/"
    )
    local dict
    dict=$(dict_for "$target")
    [ -n "$dict" ] && args+=(-dict="$root/$dict")
    echo "fuzz: $target for ${seconds}s"
    local status=0
    local log="$work/log"
    (cd "$work" && "$BIN/$target" "${args[@]}") 2>"$log" || status=$?
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^Done [0-9]+ runs' "$log" | sed "s/^/fuzz: $target /" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $target FAILED (exit $status); log follows"
        tail -n 60 "$log"
        rm -rf "$work"
        return 1
    fi
    if [ "$merge" = yes ]; then
        "$BIN/$target" -merge=1 "fuzz/corpus/$target" "$work/corpus" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}

mode=${1:-smoke}
case "$mode" in
    build)
        build
        ;;
    replay)
        build
        failed=0
        for t in "${TARGETS[@]}"; do replay "$t" || failed=1; done
        [ "$failed" -eq 0 ] || exit 1
        ;;
    smoke)
        seconds=${2:-${FUZZ_SMOKE_SECONDS:-30}}
        build
        failed=0
        for t in "${TARGETS[@]}"; do
            replay "$t" || failed=1
            run "$t" "$seconds" no || failed=1
        done
        [ "$failed" -eq 0 ] || { echo "fuzz: smoke run found crashes (see above and fuzz/artifacts)"; exit 1; }
        echo "fuzz: smoke ok (${#TARGETS[@]} targets, ${seconds}s each)"
        ;;
    long)
        seconds=${2:?usage: fuzz.sh long SECONDS [TARGET...]}
        shift 2
        targets=("$@")
        [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
        build
        failed=0
        for t in "${targets[@]}"; do run "$t" "$seconds" yes || failed=1; done
        [ "$failed" -eq 0 ] || { echo "fuzz: found crashes (see fuzz/artifacts)"; exit 1; }
        ;;
    *)
        echo "usage: fuzz.sh smoke [SECONDS] | long SECONDS [TARGET...] | build | replay" >&2
        exit 2
        ;;
esac
