//! End-to-end: boot the fixture guest (fixtures/guest) under KVM as a
//! bzImage and as a PVH ELF, with one and two vCPUs, and check the report
//! it prints on the serial port against what the VMM handed it.

mod common;

use vmm::layout::e820_map;
use vmm::{SerialConfig, Vm, VmConfig, VmExit};

/// Deterministic initrd content (xorshift), `len` bytes.
fn initrd_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[3]
        })
        .collect()
}

struct Boot {
    exit: VmExit,
    report: Vec<String>,
}

fn boot(image: &str, cpus: u8, memory: u64, cmdline: &str, initrd: Option<&[u8]>) -> Boot {
    let tmp = tempfile::tempdir().unwrap();
    let console = tmp.path().join("console");
    let mut config = VmConfig::new(common::fixture_dir().join(image));
    config.cpus = cpus;
    config.memory = memory;
    config.boot.cmdline = cmdline.to_string();
    config.serial = SerialConfig::File(console.clone());
    if let Some(data) = initrd {
        let p = tmp.path().join("initrd");
        std::fs::write(&p, data).unwrap();
        config.boot.initrd = Some(p);
    }
    let mut vm = Vm::build(&config).unwrap_or_else(|e| panic!("building the vm: {e:?}"));
    let exit = vm.run().unwrap_or_else(|e| panic!("running the vm: {e:?}"));
    let text = std::fs::read_to_string(&console).unwrap();
    let report: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("fixture: "))
        .map(str::to_string)
        .collect();
    Boot { exit, report }
}

fn check(b: &Boot, protocol: &str, cpus: u8, memory: u64, cmdline: &str, initrd: Option<&[u8]>) {
    let r = &b.report;
    let has = |line: &str| r.iter().any(|l| l == line);
    assert_eq!(b.exit, VmExit::Reset, "report: {r:#?}");
    assert!(
        !r.iter().any(|l| l.starts_with("error")),
        "guest found errors: {r:#?}"
    );
    assert!(has(&format!("protocol={protocol}")), "{r:#?}");
    assert!(has(&format!("cmdline={cmdline}")), "{r:#?}");
    let expected: Vec<String> = e820_map(memory)
        .iter()
        .map(|e| format!("e820 {:#x} {:#x} {}", e.addr, e.size, e.kind))
        .collect();
    let got: Vec<String> = r
        .iter()
        .filter(|l| l.starts_with("e820 "))
        .cloned()
        .collect();
    assert_eq!(got, expected);
    match initrd {
        Some(data) => assert!(
            has(&format!(
                "initrd size={} fnv1a={:#x}",
                data.len(),
                common::fnv1a32(data)
            )),
            "{r:#?}"
        ),
        None => assert!(has("initrd none"), "{r:#?}"),
    }
    assert!(has(&format!("acpi ok tables=3 madt-cpus={cpus}")), "{r:#?}");
    assert!(
        has(&format!(
            "mptable ok entries={} cpus={cpus}",
            u32::from(cpus) + 28
        )),
        "{r:#?}"
    );
    assert!(has(&format!("cpus-up={cpus}")), "{r:#?}");
    assert_eq!(r.last().map(String::as_str), Some("report-end"), "{r:#?}");
}

const MEM: u64 = 64 << 20;

#[test]
fn bzimage_one_vcpu() {
    let initrd = initrd_bytes(5000, 1);
    let cmdline = "console=ttyS0 fixture.token=bz1";
    let b = boot("fixture.bzImage", 1, MEM, cmdline, Some(&initrd));
    check(&b, "bzimage64", 1, MEM, cmdline, Some(&initrd));
    assert!(
        b.report
            .iter()
            .any(|l| l == "boot-params version=0x20f loader=0xff")
    );
}

#[test]
fn bzimage_two_vcpus() {
    let cmdline = "console=ttyS0 fixture.token=bz2";
    let b = boot("fixture.bzImage", 2, MEM, cmdline, None);
    check(&b, "bzimage64", 2, MEM, cmdline, None);
}

#[test]
fn pvh_one_vcpu() {
    let cmdline = "fixture.token=pvh1";
    let b = boot("fixture.pvh.elf", 1, MEM, cmdline, None);
    check(&b, "pvh", 1, MEM, cmdline, None);
    assert!(
        b.report
            .iter()
            .any(|l| l == "start-info version=1 modules=0")
    );
}

#[test]
fn pvh_two_vcpus_with_initrd() {
    let initrd = initrd_bytes(4096 + 17, 2);
    let cmdline = "console=ttyS0 fixture.token=pvh2";
    let b = boot("fixture.pvh.elf", 2, MEM, cmdline, Some(&initrd));
    check(&b, "pvh", 2, MEM, cmdline, Some(&initrd));
    assert!(
        b.report
            .iter()
            .any(|l| l == "start-info version=1 modules=1")
    );
}

#[test]
fn memory_above_the_32bit_hole_is_in_the_map() {
    let memory = (3 << 30) + (256 << 20);
    let cmdline = "console=ttyS0";
    let b = boot("fixture.bzImage", 1, memory, cmdline, None);
    check(&b, "bzimage64", 1, memory, cmdline, None);
    assert!(
        b.report
            .iter()
            .any(|l| l == "e820 0x100000000 0x10000000 1"),
        "{:#?}",
        b.report
    );
}

#[test]
fn debug_exit_port_carries_the_guest_code() {
    let b = boot("fixture.pvh.elf", 1, MEM, "fixture.exit=debug:7", None);
    assert_eq!(b.exit, VmExit::DebugExit(7));
    assert_eq!(b.report.last().map(String::as_str), Some("report-end"));
}

#[test]
fn unknown_kernel_format_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let kernel = tmp.path().join("not-a-kernel");
    std::fs::write(&kernel, vec![0x5a; 4096]).unwrap();
    let mut config = VmConfig::new(&kernel);
    config.serial = SerialConfig::Null;
    let _ = common::fixture_dir(); // fails with a clear message when /dev/kvm is missing
    let err = Vm::build(&config).unwrap_err();
    assert!(
        matches!(
            err,
            vmm::Error::Boot(vmm::boot::BootError::UnknownFormat(_))
        ),
        "{err:?}"
    );
}

#[test]
fn initrd_larger_than_memory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let initrd = tmp.path().join("initrd");
    let f = std::fs::File::create(&initrd).unwrap();
    f.set_len(MEM).unwrap(); // sparse: no real allocation
    let mut config = VmConfig::new(common::fixture_dir().join("fixture.bzImage"));
    config.memory = MEM;
    config.boot.initrd = Some(initrd);
    config.serial = SerialConfig::Null;
    let err = Vm::build(&config).unwrap_err();
    assert!(
        matches!(
            err,
            vmm::Error::Boot(vmm::boot::BootError::TooBig { what: "initrd", .. })
        ),
        "{err:?}"
    );
}
