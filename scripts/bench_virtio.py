#!/usr/bin/env python3
"""Timing and exit-counting harness for scripts/bench-virtio.sh.

Per run and VMM: boots the fixture guest with fixture.virtio.bench=0 and
=N on a fresh 64 MiB dynamic VHDX made by qemu-img, records wall time and
the VMM process's user+system CPU time (wait4), checks that the guest
reported N successful requests, and prints the medians of
(t(N) - t(0)) / N as requests per second and host CPU microseconds per
request.

It also reads KVM's per-vCPU exit counters (binary stats) at the end of
each boot: vmimport prints them with --stats; QEMU is started with a QMP
socket and -no-shutdown, so the guest's reset leaves it paused, and the
harness asks QMP `query-stats` (target vcpu, provider kvm) before `quit`.
The medians of (count(N) - count(0)) / N are printed side by side.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import time

# KVM counters always shown, in this order; any other cumulative counter
# is shown when either VMM makes at least this many per request.
MAIN = ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits"]
SHOW_OTHER = 0.01


def parse_ours(stderr):
    """KVM counters and the VMM's own exit counts from `--stats` lines."""
    counts = {}
    for line in stderr.splitlines():
        _, _, rest = line.partition(": ")
        key, _, values = rest.partition(": ")
        if key.startswith("kvm exits") or key == "other kvm counters":
            prefix = ""
        elif key == "exits to the vmm":
            prefix = "vmm:"
        else:
            continue
        for item in values.split():
            name, _, value = item.partition("=")
            if value.isdigit():
                counts[prefix + name] = int(value)
    if "exits" not in counts:
        raise SystemExit(f"vmimport --stats printed no kvm exit counters:\n{stderr}")
    return counts


class Qmp:
    """A QMP client on a unix socket (one command at a time; events are
    kept until waited for)."""

    def __init__(self, path, proc):
        deadline = time.monotonic() + 30
        self.sock = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"cannot connect to QEMU's QMP socket {path}")
                time.sleep(0.01)
        self.file = self.sock.makefile("rw")
        self.events = []
        self.read()  # greeting
        self.execute("qmp_capabilities")

    def read(self):
        line = self.file.readline()
        if not line:
            raise SystemExit("QEMU closed its QMP socket")
        return json.loads(line)

    def execute(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            reply = self.read()
            if "event" in reply:
                self.events.append(reply["event"])
            elif "error" in reply:
                raise SystemExit(f"QMP {command}: {reply['error']}")
            else:
                return reply.get("return")

    def wait_event(self, name):
        while name not in self.events:
            reply = self.read()
            if "event" in reply:
                self.events.append(reply["event"])

    def close(self):
        self.file.close()
        self.sock.close()


def qemu_exit_counts(qmp):
    """Waits for the guest's reset (QEMU then pauses), reads the vCPUs'
    KVM counters, summed, and quits."""
    qmp.wait_event("SHUTDOWN")
    reply = qmp.execute("query-stats", target="vcpu", providers=[{"provider": "kvm"}])
    counts = {}
    for vcpu in reply:
        for stat in vcpu.get("stats", []):
            value = stat.get("value")
            if isinstance(value, int) and not isinstance(value, bool):
                counts[stat["name"]] = counts.get(stat["name"], 0) + value
    if "exits" not in counts:
        raise SystemExit(f"QMP query-stats gave no kvm exit counters: {reply}")
    qmp.execute("quit")
    qmp.close()
    return counts


def run_once(cmd, serial, want, label, qmp_path=None):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    counts = None
    if qmp_path:
        counts = qemu_exit_counts(Qmp(qmp_path, p))
    err = p.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    text = open(serial, "rb").read().decode(errors="replace")
    line = f"fixture: virtio-bench requests={want} ok={want}"
    if want and line not in text:
        raise SystemExit(f"{label}: guest did not report '{line}':\n{text}\n{err}")
    if "fixture: report-end" not in text:
        raise SystemExit(f"{label}: guest did not finish:\n{text}\n{err}")
    if counts is None:
        counts = parse_ours(err)
    return wall, usage.ru_utime + usage.ru_stime, counts


def per_request(counts0, counts1, n):
    names = set(counts0) | set(counts1)
    return {k: (counts1.get(k, 0) - counts0.get(k, 0)) / n for k in names}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--vmimport", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cpus", default="",
                    help="run both VMMs under `taskset -c CPUS` (e.g. 0: vCPU and device "
                         "threads share one core)")
    a = ap.parse_args()
    pin = ["taskset", "-c", a.cpus] if a.cpus else []
    image = os.path.join(a.dir, "bench.vhdx")
    serial = os.path.join(a.dir, "serial")
    qmp = os.path.join(a.dir, "qmp.sock")

    def cmdline(n):
        return f"console=ttyS0 fixture.virtio=msix fixture.virtio.bench={n}"

    def ours(n):
        return [a.vmimport, "boot", "--kernel", os.path.join(a.guest, "fixture.bzImage"),
                "--memory", "64M", "--cmdline", cmdline(n), "--serial", f"file:{serial}",
                "--disk", image, "--stats"]

    def qemu(n):
        # -no-shutdown: the guest's reset (turned into a shutdown by
        # -no-reboot) pauses QEMU, so QMP can read the vCPU counters.
        # wait=on: the guest starts once the harness is connected.
        return ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "64", "-smp", "1",
                "-kernel", os.path.join(a.guest, "fixture.pvh.elf"), "-append", cmdline(n),
                "-drive", f"file={image},if=none,id=d0,format=vhdx",
                "-device", "virtio-blk-pci,drive=d0,disable-legacy=on",
                "-serial", f"file:{serial}", "-display", "none", "-no-reboot", "-no-shutdown",
                "-nodefaults", "-qmp", f"unix:{qmp},server=on,wait=on"]

    load_before = os.getloadavg()[0]
    results = {"vmimport": [], "qemu": []}
    for _ in range(a.runs):
        for name, make in (("vmimport", ours), ("qemu", qemu)):
            samples = []
            for n in (0, a.requests):
                subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", image, "64M"], check=True)
                if os.path.exists(qmp):
                    os.unlink(qmp)
                qmp_path = qmp if name == "qemu" else None
                samples.append(run_once(pin + make(n), serial, n, name, qmp_path))
            wall = (samples[1][0] - samples[0][0]) / a.requests
            cpu = (samples[1][1] - samples[0][1]) / a.requests
            exits = per_request(samples[0][2], samples[1][2], a.requests)
            results[name].append((wall, cpu, exits))

    where = f", both pinned to CPUs {a.cpus}" if a.cpus else ""
    print(f"{a.requests} sequential 4 KiB reads per boot, {a.runs} runs{where}, medians "
          f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after):")
    print(f"{'vmm':10} {'requests/s':>12} {'host CPU us/request':>20}")
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        rate = 1 / wall if wall > 0 else float("inf")
        print(f"{name:10} {rate:12.0f} {cpu * 1e6:20.1f}")

    def median(name, counter):
        return statistics.median(r[2].get(counter, 0) for r in results[name])

    names = set()
    for rows in results.values():
        for r in rows:
            names |= set(r[2])
    other = sorted(
        k for k in names
        if k not in MAIN and not k.startswith("vmm:")
        and max(median("vmimport", k), median("qemu", k)) >= SHOW_OTHER
    )
    print()
    print("KVM vCPU counters per request (medians of (count(N) - count(0)) / N):")
    print(f"{'counter':24} {'vmimport':>10} {'qemu':>10}")
    for k in MAIN + other:
        print(f"{k:24} {median('vmimport', k):10.2f} {median('qemu', k):10.2f}")
    for k in ("vmm:total", "vmm:pio", "vmm:mmio"):
        label = "KVM_RUN returns" if k == "vmm:total" else f"  of which {k[4:]}"
        print(f"{label:24} {median('vmimport', k):10.2f} {'':>10}")


if __name__ == "__main__":
    main()
