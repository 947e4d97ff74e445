#!/usr/bin/env python3
"""Timing harness for scripts/bench-boot.sh: boots the fixture guest with
vmimport and with QEMU, alternating, and prints per-configuration medians.

Per run: ms from spawn to the first byte of serial output on stdout, ms to
process exit, peak RSS (wait4 ru_maxrss). vmimport also reports the guest
memory resident at exit (--stats), so its own overhead is RSS minus that.
"""
import argparse
import os
import statistics
import subprocess
import time


def run_once(cmd):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = None
    out = b""
    while True:
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        if first is None:
            first = time.monotonic()
        out += chunk
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    end = time.monotonic()
    p.returncode = os.waitstatus_to_exitcode(status)
    guest = None
    for line in err.decode(errors="replace").splitlines():
        if "guest memory resident:" in line:
            guest = int(line.split(":")[-1].split()[0])
    ok = b"fixture: report-end" in out and b"fixture: error" not in out
    return {
        "first_ms": (first - t0) * 1000 if first else float("nan"),
        "exit_ms": (end - t0) * 1000,
        "rss_kib": usage.ru_maxrss,
        "guest_kib": guest // 1024 if guest is not None else None,
        "ok": ok,
        "status": p.returncode,
        "stderr": err.decode(errors="replace")[-400:],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--vmimport", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    a = ap.parse_args()
    bz = os.path.join(a.fixture, "fixture.bzImage")
    pvh = os.path.join(a.fixture, "fixture.pvh.elf")
    mem, cmdline = "128M", "console=ttyS0"
    vmi = [a.vmimport, "boot", "--memory", mem, "--cmdline", cmdline, "--stats"]
    qemu = [a.qemu, "-m", mem, "-smp", "1", "-append", cmdline, "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"]
    configs = {
        "vmimport bzImage": vmi + ["--kernel", bz],
        "vmimport pvh": vmi + ["--kernel", pvh],
        "qemu microvm pvh": qemu + ["-M", "microvm,accel=kvm", "-kernel", pvh],
        "qemu pc pvh": qemu + ["-M", "pc,accel=kvm", "-kernel", pvh],
    }
    results = {name: [] for name in configs}
    for _ in range(a.runs):
        for name, cmd in configs.items():
            results[name].append(run_once(cmd))

    guest_kib = [r["guest_kib"] for r in results["vmimport pvh"] if r["guest_kib"] is not None]
    guest_est = statistics.median(guest_kib) if guest_kib else 0
    print(f"{a.runs} runs each, alternating; medians (min-max). Guest: fixture, {mem}, 1 vCPU.")
    print(f"{'configuration':<20} {'ok':>5} {'first output ms':>20} {'exit ms':>20} "
          f"{'peak RSS MiB':>13} {'guest MiB':>10} {'RSS-guest MiB':>14}")
    for name, rs in results.items():
        ok = sum(1 for r in rs if r["ok"])
        def col(key):
            v = [r[key] for r in rs]
            return f"{statistics.median(v):7.1f} ({min(v):.1f}-{max(v):.1f})"
        rss = statistics.median(r["rss_kib"] for r in rs) / 1024
        g = [r["guest_kib"] for r in rs if r["guest_kib"] is not None]
        guest = statistics.median(g) / 1024 if g else guest_est / 1024
        mark = "" if g else "*"
        print(f"{name:<20} {ok:>2}/{len(rs):<2} {col('first_ms'):>20} {col('exit_ms'):>20} "
              f"{rss:13.1f} {guest:9.1f}{mark:1} {rss - guest:14.1f}")
        if ok < len(rs):
            bad = next(r for r in rs if not r["ok"])
            print(f"    failed run: status {bad['status']}: {bad['stderr'].strip()}")
    print("* QEMU cannot report guest pages touched; vmimport's figure for the same guest is used.")


if __name__ == "__main__":
    main()
