#!/usr/bin/env python3
"""Timing harness for scripts/bench-virtio.sh.

Per run and VMM: boots the fixture guest with fixture.virtio.bench=0 and
=N on a fresh 64 MiB dynamic VHDX made by qemu-img, records wall time and
the VMM process's user+system CPU time (wait4), checks that the guest
reported N successful requests, and prints the medians of
(t(N) - t(0)) / N as requests per second and host CPU microseconds per
request.
"""
import argparse
import os
import statistics
import subprocess
import time


def run_once(cmd, serial, want):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    text = open(serial, "rb").read().decode(errors="replace")
    line = f"fixture: virtio-bench requests={want} ok={want}"
    if want and line not in text:
        raise SystemExit(f"{cmd[0]}: guest did not report '{line}':\n{text}\n{err.decode()}")
    if "fixture: report-end" not in text:
        raise SystemExit(f"{cmd[0]}: guest did not finish:\n{text}\n{err.decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--vmimport", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    image = os.path.join(a.dir, "bench.vhdx")
    serial = os.path.join(a.dir, "serial")

    def cmdline(n):
        return f"console=ttyS0 fixture.virtio=msix fixture.virtio.bench={n}"

    def ours(n):
        return [a.vmimport, "boot", "--kernel", os.path.join(a.guest, "fixture.bzImage"),
                "--memory", "64M", "--cmdline", cmdline(n), "--serial", f"file:{serial}",
                "--disk", image]

    def qemu(n):
        return ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "64", "-smp", "1",
                "-kernel", os.path.join(a.guest, "fixture.pvh.elf"), "-append", cmdline(n),
                "-drive", f"file={image},if=none,id=d0,format=vhdx",
                "-device", "virtio-blk-pci,drive=d0,disable-legacy=on",
                "-serial", f"file:{serial}", "-display", "none", "-no-reboot", "-nodefaults"]

    results = {"vmimport": [], "qemu": []}
    for _ in range(a.runs):
        for name, make in (("vmimport", ours), ("qemu", qemu)):
            samples = []
            for n in (0, a.requests):
                subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", image, "64M"], check=True)
                samples.append(run_once(make(n), serial, n))
            wall = (samples[1][0] - samples[0][0]) / a.requests
            cpu = (samples[1][1] - samples[0][1]) / a.requests
            results[name].append((wall, cpu))
    print(f"{a.requests} sequential 4 KiB reads per boot, {a.runs} runs, medians:")
    print(f"{'vmm':10} {'requests/s':>12} {'host CPU us/request':>20}")
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        rate = 1 / wall if wall > 0 else float("inf")
        print(f"{name:10} {rate:12.0f} {cpu * 1e6:20.1f}")


if __name__ == "__main__":
    main()
