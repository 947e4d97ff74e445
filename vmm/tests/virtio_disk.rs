//! End-to-end: the fixture guest's virtio-pci driver reads and writes
//! raw, VHD and VHDX images served by the VMM's virtio-blk devices under
//! KVM, with MSI-X and with INTx. After each VM the images pass
//! `vhd::check` (and `qemu-img check` / `qemu-img compare` where qemu-img
//! reads the format, libvhdi where it does not) and hold exactly the
//! guest's writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};
use vmm::{DiskConfig, SerialConfig, Vm, VmConfig, VmExit};

const DISK: u64 = 4 << 20;
const MEM: u64 = 64 << 20;

/// The first 4 KiB the test writes before boot (xorshift).
fn seed_bytes(seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..4096)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s.to_le_bytes()[2]
        })
        .collect()
}

/// What the guest writes at byte 8192 of the disk in PCI slot `slot`.
fn guest_pattern(slot: u32) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i.wrapping_mul(13).wrapping_add(slot * 7 + 1) & 0xff) as u8)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    VhdFixed,
    VhdDynamic,
    VhdxDynamic,
    VhdxDynamic4k,
    VhdxDiff,
    VhdxDiff4k,
}

struct Disk {
    kind: Kind,
    path: PathBuf,
    seed: Vec<u8>,
    readonly: bool,
    serial: String,
}

/// Creates an image of `kind` in `dir` holding `seed` at offset 0 (for a
/// differencing image, in its parent).
fn make(dir: &Path, name: &str, kind: Kind, seed: u64) -> Disk {
    let data = seed_bytes(seed);
    let create = |path: &Path, format, ty, sector| {
        let mut o = CreateOptions::new(format, ty, DISK);
        o.logical_sector_size = sector;
        vhd::create(path, &o).unwrap()
    };
    let path = dir.join(name);
    let image = match kind {
        Kind::Raw => create(&path, Format::Raw, ImageType::Fixed, 512),
        Kind::VhdFixed => create(&path, Format::Vhd, ImageType::Fixed, 512),
        Kind::VhdDynamic => create(&path, Format::Vhd, ImageType::Dynamic, 512),
        Kind::VhdxDynamic => create(&path, Format::Vhdx, ImageType::Dynamic, 512),
        Kind::VhdxDynamic4k => create(&path, Format::Vhdx, ImageType::Dynamic, 4096),
        Kind::VhdxDiff | Kind::VhdxDiff4k => {
            let sector = if kind == Kind::VhdxDiff { 512 } else { 4096 };
            let parent = dir.join(format!("{name}.parent.vhdx"));
            let p = create(&parent, Format::Vhdx, ImageType::Dynamic, sector);
            p.write_at(&data, 0).unwrap();
            p.flush().unwrap();
            drop(p);
            let mut o = CreateOptions::differencing(Format::Vhdx, &parent);
            o.logical_sector_size = sector;
            vhd::create(&path, &o).unwrap()
        }
    };
    if !matches!(kind, Kind::VhdxDiff | Kind::VhdxDiff4k) {
        image.write_at(&data, 0).unwrap();
    }
    image.flush().unwrap();
    Disk {
        kind,
        path,
        seed: data,
        readonly: false,
        serial: format!("vmimport-disk-{seed}"),
    }
}

struct Run {
    report: Vec<String>,
}

impl Run {
    fn line(&self, prefix: &str) -> &str {
        self.report
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in {:#?}", self.report))
    }
}

fn boot(disks: &[Disk], mode: &str) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let console = tmp.path().join("console");
    let mut config = VmConfig::new(common::fixture_bzimage());
    config.memory = MEM;
    config.boot.cmdline = format!("console=ttyS0 fixture.virtio={mode}");
    config.serial = SerialConfig::File(console.clone());
    config.disks = disks
        .iter()
        .map(|d| DiskConfig {
            readonly: d.readonly,
            serial: Some(d.serial.clone()),
            ..DiskConfig::new(&d.path)
        })
        .collect();
    let exit = {
        let mut vm = Vm::build(&config).unwrap_or_else(|e| panic!("building the vm: {e:?}"));
        vm.run().unwrap_or_else(|e| panic!("running the vm: {e:?}"))
        // The VM, its devices and the images are closed here.
    };
    let text = std::fs::read_to_string(&console).unwrap();
    let report: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("fixture: "))
        .map(str::to_string)
        .collect();
    assert_eq!(exit, VmExit::Reset, "{report:#?}");
    assert!(
        !report.iter().any(|l| l.starts_with("error")),
        "guest found errors: {report:#?}"
    );
    assert_eq!(
        report.last().map(String::as_str),
        Some("report-end"),
        "{report:#?}"
    );
    Run { report }
}

/// Checks the guest's report for the disk in `slot` and the image after
/// the VM ended.
fn verify(run: &Run, disk: &Disk, slot: u32, mode: &str) {
    let p = format!("virtio-blk slot={slot} ");
    let id = run.line(&format!("{p}capacity="));
    assert_eq!(
        id,
        format!(
            "{p}capacity={} ro={} id-status=0 id={}",
            DISK / 512,
            u8::from(disk.readonly),
            disk.serial
        )
    );
    assert_eq!(
        run.line(&format!("{p}pci-cfg ")),
        format!("{p}pci-cfg num-queues=1")
    );
    let irq = run.line(&format!("{p}irq="));
    match mode {
        "msix" => assert_eq!(irq, format!("{p}irq=msix delivered=1")),
        _ => assert_eq!(irq, format!("{p}irq=intx delivered=1 isr=1")),
    }
    let io = run.line(&format!("{p}read-status="));
    let (write, flush, readback) = if disk.readonly {
        (1, 0, "differs")
    } else {
        (0, 0, "match")
    };
    assert_eq!(
        io,
        format!(
            "{p}read-status=0 read-fnv1a={:#x} write-status={write} flush-status={flush} \
             readback-status=0 readback={readback}",
            common::fnv1a32(&disk.seed)
        )
    );

    // The image: consistent, and holding exactly the guest's writes.
    let report = vhd::check(&disk.path, false).unwrap();
    assert!(report.is_clean(), "{}: {report:?}", disk.path.display());
    let image = vhd::open(
        &disk.path,
        &OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut all = vec![0u8; usize::try_from(DISK).unwrap()];
    image.read_at(&mut all, 0).unwrap();
    let mut expected = vec![0u8; all.len()];
    expected[..4096].copy_from_slice(&disk.seed);
    if !disk.readonly {
        expected[8192..12288].copy_from_slice(&guest_pattern(slot));
    }
    assert!(all == expected, "{}: content differs", disk.path.display());
    drop(image);
    oracle(disk, &expected);
}

/// Checks the image with a tool we did not write.
fn oracle(disk: &Disk, expected: &[u8]) {
    let dir = disk.path.parent().unwrap();
    match disk.kind {
        Kind::Raw => assert!(std::fs::read(&disk.path).unwrap() == expected),
        Kind::VhdFixed | Kind::VhdDynamic | Kind::VhdxDynamic => {
            let format = if disk.kind == Kind::VhdxDynamic {
                "vhdx"
            } else {
                "vpc"
            };
            if format == "vhdx" {
                let out = qemu_img(&["check", "-f", "vhdx", path_str(&disk.path)]);
                assert!(out.status.success(), "qemu-img check: {out:?}");
            }
            let raw = dir.join("expected.raw");
            std::fs::write(&raw, expected).unwrap();
            let out = qemu_img(&[
                "compare",
                "-f",
                format,
                "-F",
                "raw",
                path_str(&disk.path),
                path_str(&raw),
            ]);
            assert!(out.status.success(), "qemu-img compare: {out:?}");
        }
        Kind::VhdxDynamic4k | Kind::VhdxDiff | Kind::VhdxDiff4k => {
            // qemu-img reads neither differencing VHDX nor 4 KiB sectors.
            let script = "import pyvhdi,sys,hashlib\n\
                f=pyvhdi.file()\nf.open(sys.argv[1])\n\
                if len(sys.argv)>2:\n p=pyvhdi.file()\n p.open(sys.argv[2])\n f.set_parent(p)\n\
                print(hashlib.sha256(f.read_buffer(f.get_media_size())).hexdigest())\n";
            let mut cmd = Command::new("/usr/bin/python3");
            cmd.arg("-c").arg(script).arg(&disk.path);
            if disk.kind != Kind::VhdxDynamic4k {
                let name = disk.path.file_name().unwrap().to_str().unwrap();
                cmd.arg(dir.join(format!("{name}.parent.vhdx")));
            }
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("cannot run /usr/bin/python3 ({e}); install python3"));
            assert!(
                out.status.success(),
                "libvhdi failed (install python3-libvhdi): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let want = sha256_hex(expected);
            assert_eq!(got, want, "libvhdi reads different content");
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) is needed");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run qemu-img ({e}); install qemu-utils"))
}

#[test]
fn vhdx_dynamic_read_write_msix() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = make(tmp.path(), "disk.vhdx", Kind::VhdxDynamic, 1);
    let run = boot(std::slice::from_ref(&disk), "msix");
    assert!(run.report.iter().any(|l| l == "pci access=ecam"));
    assert!(run.report.iter().any(|l| l == "virtio-blk devices=1"));
    // The VMM placed the 64-bit BAR above RAM (4 GiB here); the guest,
    // which maps only 4 GiB, moved it below: notifications (ioeventfds)
    // and MSI-X followed it.
    assert!(
        run.report.iter().any(|l| l == "pci moved bar 0 of slot 1"),
        "{:#?}",
        run.report
    );
    verify(&run, &disk, 1, "msix");
}

#[test]
fn raw_read_write_intx() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = make(tmp.path(), "disk.raw", Kind::Raw, 2);
    let run = boot(std::slice::from_ref(&disk), "intx");
    verify(&run, &disk, 1, "intx");
}

#[test]
fn vhd_fixed_and_vhd_dynamic_two_disks_msix() {
    let tmp = tempfile::tempdir().unwrap();
    let disks = [
        make(tmp.path(), "fixed.vhd", Kind::VhdFixed, 3),
        make(tmp.path(), "dynamic.vhd", Kind::VhdDynamic, 4),
    ];
    let run = boot(&disks, "msix");
    assert!(run.report.iter().any(|l| l == "virtio-blk devices=2"));
    verify(&run, &disks[0], 1, "msix");
    verify(&run, &disks[1], 2, "msix");
}

#[test]
fn vhdx_4k_sectors_and_vhdx_differencing_msix() {
    let tmp = tempfile::tempdir().unwrap();
    let disks = [
        make(tmp.path(), "dynamic4k.vhdx", Kind::VhdxDynamic4k, 5),
        make(tmp.path(), "diff.vhdx", Kind::VhdxDiff, 6),
    ];
    let run = boot(&disks, "msix");
    verify(&run, &disks[0], 1, "msix");
    verify(&run, &disks[1], 2, "msix");
}

#[test]
fn vhdx_differencing_4k_sectors_intx() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = make(tmp.path(), "diff4k.vhdx", Kind::VhdxDiff4k, 7);
    let run = boot(std::slice::from_ref(&disk), "intx");
    verify(&run, &disk, 1, "intx");
}

#[test]
fn readonly_vhdx_refuses_writes_and_vhd_dynamic_writes_intx() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ro = make(tmp.path(), "ro.vhdx", Kind::VhdxDynamic, 8);
    ro.readonly = true;
    let disks = [ro, make(tmp.path(), "rw.vhd", Kind::VhdDynamic, 9)];
    let run = boot(&disks, "intx");
    verify(&run, &disks[0], 1, "intx");
    verify(&run, &disks[1], 2, "intx");
}

#[test]
fn vhdx_opened_writable_is_locked_against_a_second_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = make(tmp.path(), "locked.vhdx", Kind::VhdxDynamic, 10);
    let mut config = VmConfig::new(common::fixture_bzimage());
    config.memory = MEM;
    config.serial = SerialConfig::Null;
    config.disks = vec![DiskConfig::new(&disk.path)];
    let first = Vm::build(&config).unwrap();
    let second = Vm::build(&config);
    assert!(
        matches!(second, Err(vmm::Error::Disk { .. })),
        "a second writer was not refused: {second:?}"
    );
    drop(first);
    Vm::build(&config).expect("the lock is released with the first vm");
}

#[test]
fn disk_format_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = make(tmp.path(), "disk.vhd", Kind::VhdDynamic, 11);
    let mut config = VmConfig::new(common::fixture_bzimage());
    config.memory = MEM;
    config.serial = SerialConfig::Null;
    config.disks = vec![DiskConfig {
        format: Some(vmm::DiskFormat::Vhdx),
        ..DiskConfig::new(&disk.path)
    }];
    let err = Vm::build(&config).unwrap_err();
    assert!(matches!(err, vmm::Error::DiskFormat { .. }), "{err:?}");
}
