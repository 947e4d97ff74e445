//! `vmimport PACKAGE`, `vmimport import` and `vmimport inspect` through the
//! real binary, on an appliance assembled from the committed sample
//! descriptor, a qemu-img streamOptimized disk and GNU tar; and the VM
//! definition an import writes, booted by `vmimport run`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sha2::Digest;

use common::{run, s, stream_optimized, vmimport};

/// The sample appliance: 64 MiB disk with 1 MiB of data at 8 MiB.
fn sample(dir: &Path) -> (PathBuf, Vec<u8>) {
    sample_with(dir, |d| d)
}

/// The sample appliance with its descriptor changed by `edit`.
fn sample_with(dir: &Path, edit: impl Fn(String) -> String) -> (PathBuf, Vec<u8>) {
    let mut disk = vec![0u8; 64 << 20];
    SmallRng::seed_from_u64(9).fill_bytes(&mut disk[8 << 20..9 << 20]);
    let raw = dir.join("disk.raw");
    std::fs::write(&raw, &disk).unwrap();
    stream_optimized(&raw, &dir.join("sample-disk1.vmdk"));
    let ovf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/appliance/sample.ovf");
    let text = std::fs::read_to_string(ovf).unwrap();
    std::fs::write(dir.join("sample.ovf"), edit(text)).unwrap();
    let mut mf = String::new();
    for f in ["sample.ovf", "sample-disk1.vmdk"] {
        let d = sha2::Sha256::digest(std::fs::read(dir.join(f)).unwrap());
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        mf += &format!("SHA256({f})= {hex}\n");
    }
    std::fs::write(dir.join("sample.mf"), mf).unwrap();
    let ova = dir.join("sample.ova");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&ova)
        .args(["--format=ustar", "-C"])
        .arg(dir)
        .args(["sample.ovf", "sample.mf", "sample-disk1.vmdk"]));
    (ova, disk)
}

#[test]
fn import_writes_disks_definition_and_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let (ova, disk) = sample(dir.path());
    let out = dir.path().join("out");
    let o = vmimport(&[s(&ova), "-o", s(&out), "--output", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verification"]["entries_ok"], 2);
    assert_eq!(v["verification"]["signature"], "unsigned");
    let vm = &v["appliance"]["vms"][0];
    assert_eq!(vm["name"], "sample");
    assert_eq!(vm["vcpus"], 2);
    assert_eq!(vm["memory_bytes"], 256 << 20);
    assert_eq!(v["disks"][0]["source_format"], "vmdk-streamOptimized");
    assert_eq!(v["definitions"][0], "vm.toml");
    // The definition names the converted disk, which holds the data.
    let def: toml::Value =
        toml::from_str(&std::fs::read_to_string(out.join("vm.toml")).unwrap()).unwrap();
    assert_eq!(def["cpus"].as_integer(), Some(2));
    assert_eq!(def["memory"].as_integer(), Some(256 << 20));
    let path = def["disk"][0]["path"].as_str().unwrap();
    assert_eq!(def["disk"][0]["format"].as_str(), Some("vhdx"));
    assert_eq!(def["nic"][0]["network"].as_str(), Some("NAT"));
    let img = out.join(path);
    let raw = dir.path().join("disk.raw");
    let cmp = vmimport(&["disk", "compare", s(&img), s(&raw)]);
    assert_eq!(
        cmp.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), disk.len() as u64);
    assert!(out.join("sample.ovf").exists());
    // The same command again refuses the now non-empty directory.
    let again = vmimport(&["import", s(&ova), "-o", s(&out)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

#[test]
fn import_defaults_to_the_package_name_and_vhd_output_works() {
    let dir = tempfile::tempdir().unwrap();
    let (ova, _) = sample(dir.path());
    let o = Command::new(env!("CARGO_BIN_EXE_vmimport"))
        .current_dir(dir.path())
        .args(["import", "sample.ova", "--disk-format", "vhd"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let human = String::from_utf8_lossy(&o.stdout);
    assert!(human.contains("not mapped: sound"), "{human}");
    let out = dir.path().join("sample");
    assert!(out.join("sample-disk1.vhd").exists());
    // qemu-img has no check for VHD; it must read the same disk.
    let q = Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", "raw"])
        .arg(out.join("sample-disk1.vhd"))
        .arg(dir.path().join("disk.raw"))
        .output()
        .unwrap();
    assert!(
        q.status.success(),
        "qemu-img compare: {}{}",
        String::from_utf8_lossy(&q.stdout),
        String::from_utf8_lossy(&q.stderr)
    );
    let _ = ova;
}

#[test]
fn inspect_describes_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (ova, _) = sample(dir.path());
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let o = vmimport(&["inspect", s(&ova), "--output", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["appliance"]["disks"][0]["capacity_bytes"], 64 << 20);
    assert_eq!(v["files"][0]["name"], "sample-disk1.vmdk");
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len());
    let missing = vmimport(&["inspect", "/nonexistent.ova"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn imported_definition_boots_with_run_vhdx() {
    let dir = tempfile::tempdir().unwrap();
    let (ova, disk) = sample(dir.path());
    let out = dir.path().join("out");
    let o = vmimport(&[s(&ova), "-o", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let kernel = common::fixture_guest(&dir.path().join("guest"));
    let console = dir.path().join("console");
    // The definition names no kernel: the flags give it, as README says.
    let o = vmimport(&[
        "run",
        s(&out.join("vm.toml")),
        "--kernel",
        s(&kernel),
        "--cmdline",
        "console=ttyS0 fixture.virtio=msix",
        "--serial",
        &format!("file:{}", console.display()),
    ]);
    let r = common::console_report(&console);
    assert!(o.status.success(), "{o:?}\n{r:#?}");
    assert!(r.iter().any(|l| l == "cpus-up=2"), "{r:#?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("virtio-blk slot=1 capacity=131072 ro=0")),
        "{r:#?}"
    );
    assert!(r.iter().any(|l| l.ends_with("readback=match")), "{r:#?}");
    // The guest's write landed and the imported data is untouched.
    let img = out.join("sample-disk1.vhdx");
    let check = vmimport(&["disk", "check", s(&img)]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    let q = Command::new("qemu-img")
        .args(["check", "-f", "vhdx"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(q.status.success(), "qemu-img check: {q:?}");
    let image = vhd::open(
        &img,
        &vhd::OpenOptions {
            read_only: true,
            ..vhd::OpenOptions::default()
        },
    )
    .unwrap();
    let mut data = vec![0u8; 1 << 20];
    vhd::DiskImage::read_at(&image, &mut data, 8 << 20).unwrap();
    assert!(data == disk[8 << 20..9 << 20]);
    let mut written = vec![0u8; 4096];
    vhd::DiskImage::read_at(&image, &mut written, 8192).unwrap();
    assert!(
        written.iter().any(|b| *b != 0),
        "the guest's write is missing"
    );
}

#[test]
fn definition_brings_declared_resources_into_the_vmm_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (ova, _) = sample_with(dir.path(), |d| {
        d.replace(
            "<rasd:VirtualQuantity>2</rasd:VirtualQuantity>",
            "<rasd:VirtualQuantity>300</rasd:VirtualQuantity>",
        )
        .replace(
            "<rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>",
            "<rasd:AllocationUnits>byte</rasd:AllocationUnits>",
        )
        .replace(
            "<rasd:VirtualQuantity>256</rasd:VirtualQuantity>",
            "<rasd:VirtualQuantity>100000001</rasd:VirtualQuantity>",
        )
    });
    let out = dir.path().join("out");
    let o = vmimport(&[s(&ova), "-o", s(&out), "--output", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("300 vCPUs declared"), "{warnings}");
    assert!(warnings.contains("100000001 bytes of memory"), "{warnings}");
    let text = std::fs::read_to_string(out.join("vm.toml")).unwrap();
    let def = vmm::VmConfig::parse_toml(&text).unwrap();
    assert_eq!(def.cpus, 254);
    assert_eq!(def.memory, 100_003_840);
    assert_eq!(def.name.as_deref(), Some("sample"));
    assert_eq!(def.disks[0].format, Some(vmm::config::DiskFormat::Vhdx));
    assert_eq!(def.disks[0].bus.as_deref(), Some("sata"));
}
