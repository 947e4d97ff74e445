#!/usr/bin/env python3
"""Timing harness for scripts/bench-boot.sh: boots the fixture guest with
vmimport and with QEMU, alternating, and prints per-configuration medians.

Per run:
- first output: ms from spawn to the first byte of guest serial output
  (the fixture writes "fixture: entry" as its first instructions);
- exit: ms from spawn to process exit;
- peak RSS: VmHWM of the VMM process (vmimport reports its own at exit;
  QEMU's is sampled from /proc every few ms while it runs);
- vmimport only: host ms from spawn to the start of the vCPU threads
  (CLOCK_MONOTONIC, reported with --stats), and the guest memory resident
  at exit, so that its own overhead is peak RSS minus guest memory.
"""
import argparse
import os
import statistics
import threading
import time


def hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def run_once(cmd):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
               (os.POSIX_SPAWN_CLOSE, out_r), (os.POSIX_SPAWN_CLOSE, err_r)]
    t0 = time.monotonic_ns()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=actions)
    os.close(out_w)
    os.close(err_w)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            v = hwm_kib(pid)
            if v:
                peak[0] = max(peak[0], v)
            time.sleep(0.003)

    sampler = threading.Thread(target=sample)
    sampler.start()
    err = []

    def drain():
        while True:
            chunk = os.read(err_r, 65536)
            if not chunk:
                break
            err.append(chunk)

    errt = threading.Thread(target=drain)
    errt.start()
    first, out = None, b""
    while True:
        chunk = os.read(out_r, 65536)
        if not chunk:
            break
        if first is None:
            first = time.monotonic_ns()
        out += chunk
    _, status = os.waitpid(pid, 0)
    end = time.monotonic_ns()
    done.set()
    sampler.join()
    errt.join()
    os.close(out_r)
    os.close(err_r)
    err = b"".join(err).decode(errors="replace")
    started = guest = rss = None
    for line in err.splitlines():
        if "vcpus started at monotonic" in line:
            started = (int(line.split()[-2]) - t0) / 1e6
        if "guest memory resident:" in line:
            guest = int(line.split(":")[-1].split()[0]) / 1024
        if "peak rss:" in line:
            rss = int(line.split()[-2])
    return {
        "host_ms": started,
        "first_ms": (first - t0) / 1e6 if first else float("nan"),
        "exit_ms": (end - t0) / 1e6,
        "rss_kib": rss if rss is not None else peak[0],
        "guest_kib": guest,
        "ok": b"fixture: report-end" in out and b"fixture: error" not in out,
        "status": os.waitstatus_to_exitcode(status),
        "stderr": err[-400:],
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

    def med(rs, key):
        v = [r[key] for r in rs if r[key] is not None]
        if not v:
            return "-"
        return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"

    print(f"{a.runs} runs each, alternating; median (min-max). Guest: fixture, {mem}, 1 vCPU.")
    print(f"{'configuration':<18} {'ok':>5}  {'host ms to vcpus':>18}  {'first output ms':>22}  "
          f"{'exit ms':>24}  {'peak RSS MiB':>12}  {'guest MiB':>9}  {'RSS-guest MiB':>13}")
    for name, rs in results.items():
        ok = sum(1 for r in rs if r["ok"])
        rss = statistics.median(r["rss_kib"] for r in rs) / 1024
        g = [r["guest_kib"] for r in rs if r["guest_kib"] is not None]
        guest = f"{statistics.median(g) / 1024:9.2f}" if g else f"{'-':>9}"
        over = f"{rss - statistics.median(g) / 1024:13.2f}" if g else f"{'-':>13}"
        print(f"{name:<18} {ok:>2}/{len(rs):<2}  {med(rs, 'host_ms'):>18}  {med(rs, 'first_ms'):>22}  "
              f"{med(rs, 'exit_ms'):>24}  {rss:12.2f}  {guest}  {over}")
        if ok < len(rs):
            bad = next(r for r in rs if not r["ok"])
            print(f"    failed run: status {bad['status']}: {bad['stderr'].strip()}")


if __name__ == "__main__":
    main()
