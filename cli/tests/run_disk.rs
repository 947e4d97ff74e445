//! `vmimport run` and `vmimport boot --disk` end to end: the fixture guest
//! (fixtures/guest) boots from a VM definition naming a VHDX disk, reads
//! and writes it through virtio-pci, and the image holds its writes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{console_report, fixture_guest};
use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

fn pattern_at_8k(path: &Path, slot: u32) -> bool {
    let image = vhd::open(
        path,
        &OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    image.read_at(&mut buf, 8192).unwrap();
    buf.iter()
        .enumerate()
        .all(|(i, b)| u32::from(*b) == (u32::try_from(i).unwrap() * 13 + slot * 7 + 1) & 0xff)
}

#[test]
fn run_definition_with_vhdx_disk_and_boot_with_disk_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let kernel = fixture_guest(&tmp.path().join("guest"));
    let vm_dir = tmp.path().join("vm");
    std::fs::create_dir(&vm_dir).unwrap();
    let disk = vm_dir.join("disk1.vhdx");
    drop(
        vhd::create(
            &disk,
            &CreateOptions::new(Format::Vhdx, ImageType::Dynamic, 1 << 20),
        )
        .unwrap(),
    );
    let def = vm_dir.join("vm.toml");
    std::fs::write(
        &def,
        "name = \"fixture\"\nmemory = 67108864\n\n[[disk]]\npath = \"disk1.vhdx\"\n\
         format = \"vhdx\"\nbus = \"sata\"\nserial = \"from-definition\"\n\n\
         [[nic]]\nnetwork = \"VM Network\"\nmodel = \"e1000\"\n",
    )
    .unwrap();
    let console = tmp.path().join("console");
    let serial = format!("file:{}", console.display());
    let out = Command::new(env!("CARGO_BIN_EXE_vmimport"))
        .arg("run")
        .arg(&def)
        .arg("--kernel")
        .arg(&kernel)
        .args(["--cmdline", "console=ttyS0 fixture.virtio=msix"])
        .args(["--serial", &serial])
        .output()
        .unwrap();
    let r = console_report(&console);
    assert!(out.status.success(), "{out:?}\n{r:#?}");
    assert!(
        r.iter()
            .any(|l| l == "virtio-blk slot=1 capacity=2048 ro=0 id-status=0 id=from-definition"),
        "{r:#?}"
    );
    assert!(r.iter().any(|l| l.ends_with("readback=match")), "{r:#?}");
    assert!(pattern_at_8k(&disk, 1));

    // Without a kernel anywhere, run says so.
    let out = Command::new(env!("CARGO_BIN_EXE_vmimport"))
        .arg("run")
        .arg(&def)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no kernel"));

    // boot --disk, read-only: writes are refused.
    let out = Command::new(env!("CARGO_BIN_EXE_vmimport"))
        .arg("boot")
        .arg("--kernel")
        .arg(&kernel)
        .args(["--memory", "64M", "--cmdline", "fixture.virtio=intx"])
        .args(["--serial", &serial])
        .arg("--disk")
        .arg(format!("{},readonly,serial=ro", disk.display()))
        .output()
        .unwrap();
    let r = console_report(&console);
    assert!(out.status.success(), "{out:?}\n{r:#?}");
    assert!(
        r.iter()
            .any(|l| l.contains("write-status=1") && l.ends_with("readback=match")),
        "{r:#?}"
    );
}
