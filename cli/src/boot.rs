//! `vmimport boot`: boot a kernel directly on the built-in KVM VMM.
//!
//! Exit status: 0 when the guest resets or powers off (or writes 0 to the
//! debug-exit port), the byte written to the debug-exit port otherwise,
//! 1 when the VM could not be built or failed, 2 when the guest crashed
//! (triple fault, halt with nothing to wake it), 130 on Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vmm::{DiskConfig, ExitStats, SerialConfig, Vm, VmConfig, VmExit};

use crate::output::{error_chain, parse_size};

/// Arguments of `vmimport boot`.
#[derive(Debug, Args)]
pub struct BootArgs {
    /// Kernel: a bzImage, or an ELF vmlinux with a PVH entry note.
    #[arg(long)]
    kernel: PathBuf,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "console=ttyS0 reboot=k panic=1")]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Guest memory size (suffixes K, M, G, T).
    #[arg(long, default_value = "128M", value_parser = parse_size)]
    memory: u64,
    /// Serial console: stdio, file:PATH or null.
    #[arg(long, default_value = "stdio", value_parser = parse_serial)]
    serial: SerialConfig,
    /// A disk served as virtio-blk on its own PCI slot:
    /// PATH[,readonly][,serial=S] (raw, VHD or VHDX; repeatable).
    #[arg(long = "disk", value_name = "PATH[,readonly][,serial=S]", value_parser = parse_disk)]
    disks: Vec<DiskConfig>,
    /// After the VM ends, print to standard error when the vCPUs started
    /// (CLOCK_MONOTONIC), the guest memory resident in host RAM, and the
    /// VM exits summed over the vCPUs (KVM's counters and the exits the VMM
    /// handled), for measuring the VMM's own start-up time, memory overhead
    /// and exit cost.
    #[arg(long)]
    stats: bool,
}

/// Parses `PATH[,readonly][,serial=S]`.
pub(crate) fn parse_disk(s: &str) -> Result<DiskConfig, String> {
    let mut parts = s.split(',');
    let path = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("'{s}' names no disk image (PATH[,readonly][,serial=S])"))?;
    let mut disk = DiskConfig::new(path);
    for opt in parts {
        match opt.split_once('=') {
            None if opt == "readonly" => disk.readonly = true,
            Some(("serial", v)) => disk.serial = Some(v.to_string()),
            _ => {
                return Err(format!("unknown disk option '{opt}' (readonly, serial=S)"));
            }
        }
    }
    Ok(disk)
}

fn parse_serial(s: &str) -> Result<SerialConfig, String> {
    match s {
        "stdio" => Ok(SerialConfig::Stdio),
        "null" => Ok(SerialConfig::Null),
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(SerialConfig::File(PathBuf::from(p))),
            _ => Err(format!(
                "'{s}' is not a serial destination (stdio, file:PATH, null)"
            )),
        },
    }
}

fn exit_status(exit: VmExit) -> u8 {
    match exit {
        VmExit::Reset | VmExit::PowerOff => 0,
        VmExit::DebugExit(code) => code,
        VmExit::TripleFault | VmExit::Halted => 2,
        VmExit::Interrupted => 130,
    }
}

/// Runs `vmimport boot`.
pub fn run(args: BootArgs) -> ExitCode {
    let mut config = VmConfig::new(args.kernel);
    config.boot.initrd = args.initrd;
    config.boot.cmdline = args.cmdline;
    config.cpus = args.cpus;
    config.memory = args.memory;
    config.serial = args.serial;
    config.disks = args.disks;
    run_config(&config, args.stats, "boot")
}

/// Builds and runs `config`; `command` names the subcommand in messages.
pub(crate) fn run_config(config: &VmConfig, stats: bool, command: &str) -> ExitCode {
    if let Err(e) = vmm::install_interrupt_handler() {
        eprintln!("vmimport {command}: {}", error_chain(&e));
    }
    let result = Vm::build(config).and_then(|mut vm| {
        let exit = vm.run()?;
        if stats {
            if let Some(t) = vm.vcpus_started_at() {
                eprintln!(
                    "vmimport {command}: vcpus started at monotonic {} ns",
                    t.as_nanos()
                );
            }
            match vm.guest_resident_bytes() {
                Ok(bytes) => eprintln!("vmimport {command}: guest memory resident: {bytes} bytes"),
                Err(e) => eprintln!("vmimport {command}: guest memory resident: unknown ({e})"),
            }
            if let Some(kib) = peak_rss_kib() {
                eprintln!("vmimport {command}: peak rss: {kib} KiB");
            }
            if let Some(exits) = vm.exit_stats() {
                for line in exit_lines(exits) {
                    eprintln!("vmimport {command}: {line}");
                }
            }
        }
        Ok(exit)
    });
    match result {
        Ok(exit) => {
            if !exit.is_clean() {
                eprintln!("vmimport {command}: guest ended: {exit:?}");
            }
            ExitCode::from(exit_status(exit))
        }
        Err(e) => {
            eprintln!("vmimport {command}: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The `--stats` lines for the run's exits: KVM's main counters, the
/// exits the VMM handled, KVM's other non-zero counters.
fn exit_lines(exits: &ExitStats) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(e) = &exits.kvm_unavailable {
        lines.push(format!(
            "kvm exit counters: unavailable ({})",
            error_chain(e)
        ));
    }
    if !exits.kvm.is_empty() {
        let main: Vec<String> = ExitStats::MAIN_KVM_COUNTERS
            .iter()
            .map(|name| match exits.kvm(name) {
                Some(v) => format!("{name}={v}"),
                None => format!("{name}=unknown"),
            })
            .collect();
        lines.push(format!(
            "kvm exits ({} vcpus): {}",
            exits.vcpus,
            main.join(" ")
        ));
    }
    let u = exits.userspace;
    lines.push(format!(
        "exits to the vmm: total={} pio={} mmio={}",
        u.total, u.pio, u.mmio
    ));
    let other: Vec<String> = exits
        .kvm
        .iter()
        .filter(|(name, v)| **v != 0 && !ExitStats::MAIN_KVM_COUNTERS.contains(&name.as_str()))
        .map(|(name, v)| format!("{name}={v}"))
        .collect();
    if !other.is_empty() {
        lines.push(format!("other kvm counters: {}", other.join(" ")));
    }
    lines
}

/// VmHWM of this process, from /proc/self/status.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_destinations() {
        assert_eq!(parse_serial("stdio"), Ok(SerialConfig::Stdio));
        assert_eq!(parse_serial("null"), Ok(SerialConfig::Null));
        assert_eq!(
            parse_serial("file:/tmp/x"),
            Ok(SerialConfig::File("/tmp/x".into()))
        );
        assert!(parse_serial("file:").is_err());
        assert!(parse_serial("tcp:1").is_err());
    }

    #[test]
    fn disk_arguments() {
        let d = parse_disk("a.vhdx").unwrap();
        assert_eq!(d, DiskConfig::new("a.vhdx"));
        let d = parse_disk("/x/b.vhd,readonly,serial=abc").unwrap();
        assert!(d.readonly);
        assert_eq!(d.serial.as_deref(), Some("abc"));
        assert!(parse_disk("").is_err());
        assert!(parse_disk("a,bogus").is_err());
        assert!(parse_disk("a,format=raw").is_err());
    }

    #[test]
    fn exit_stats_lines() {
        let mut s = ExitStats {
            vcpus: 2,
            userspace: vmm::UserspaceExits {
                total: 9,
                pio: 4,
                mmio: 0,
            },
            ..ExitStats::default()
        };
        s.kvm.insert("exits".into(), 40);
        s.kvm.insert("io_exits".into(), 4);
        s.kvm.insert("hypercalls".into(), 3);
        s.kvm.insert("nmi_injections".into(), 0);
        let lines = exit_lines(&s);
        assert_eq!(
            lines,
            [
                "kvm exits (2 vcpus): exits=40 io_exits=4 mmio_exits=unknown \
                 halt_exits=unknown irq_exits=unknown",
                "exits to the vmm: total=9 pio=4 mmio=0",
                "other kvm counters: hypercalls=3",
            ]
        );
        let lines = exit_lines(&ExitStats::default());
        assert_eq!(lines, ["exits to the vmm: total=0 pio=0 mmio=0"]);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(VmExit::Reset), 0);
        assert_eq!(exit_status(VmExit::DebugExit(7)), 7);
        assert_eq!(exit_status(VmExit::TripleFault), 2);
        assert_eq!(exit_status(VmExit::Interrupted), 130);
    }
}
