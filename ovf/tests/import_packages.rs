//! The import pipeline on packages assembled by the test from parts made by
//! tools we did not write: disks from `qemu-img convert` (streamOptimized
//! VMDK, VHD, VHDX, raw), archives from GNU tar, in every member order.
#![allow(clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ovf::import::{ImportError, ImportOptions, SourceFormat, import, inspect};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sha2::Digest;
use vhd::DiskImage;

const SIZE: usize = 24 << 20;

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw disk of SIZE bytes: seeded data in a few runs, holes elsewhere.
fn source_disk(dir: &Path, seed: u64) -> (PathBuf, Vec<u8>) {
    let mut data = vec![0u8; SIZE];
    let mut rng = SmallRng::seed_from_u64(seed);
    for (off, len) in [
        (0usize, 70_000usize),
        (3 << 20, 1 << 20),
        (SIZE - 65536, 65536),
    ] {
        rng.fill_bytes(&mut data[off..off + len]);
    }
    let path = dir.join(format!("source-{seed}.raw"));
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// Converts the raw source with qemu-img into `name` of qemu format `fmt`.
fn qemu_disk(dir: &Path, raw: &Path, name: &str, fmt: &str, opts: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-f", "raw", "-O", fmt])
        .args(opts)
        .arg(raw)
        .arg(&out);
    run(&mut cmd);
    out
}

const VMDK_URI: &str = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";
const VHD_URI: &str = "http://go.microsoft.com/fwlink/?LinkId=137171";
const VHDX_URI: &str = "http://technet.microsoft.com/en-us/library/dd979539.aspx#VHDX";

struct DiskSpec<'a> {
    href: Option<&'a str>,
    format: &'a str,
    capacity: u64,
    extra_file_attrs: &'a str,
}

/// A descriptor in VirtualBox's OVF 1.0 style.
fn descriptor(disks: &[DiskSpec]) -> String {
    let mut refs = String::new();
    let mut section = String::new();
    let mut items = String::new();
    for (i, d) in disks.iter().enumerate() {
        let n = i + 1;
        let fileref = match d.href {
            Some(h) => {
                refs += &format!(
                    "    <File ovf:id=\"file{n}\" ovf:href=\"{h}\" {}/>\n",
                    d.extra_file_attrs
                );
                format!("ovf:fileRef=\"file{n}\"")
            }
            None => String::new(),
        };
        section += &format!(
            "    <Disk ovf:capacity=\"{}\" ovf:diskId=\"vmdisk{n}\" {fileref} ovf:format=\"{}\"/>\n",
            d.capacity, d.format
        );
        items += &format!(
            "      <Item><rasd:AddressOnParent>{i}</rasd:AddressOnParent><rasd:ElementName>disk{n}</rasd:ElementName>\
             <rasd:HostResource>/disk/vmdisk{n}</rasd:HostResource><rasd:InstanceID>{}</rasd:InstanceID>\
             <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>\n",
            10 + i
        );
    }
    format!(
        r#"<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
{refs}  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
{section}  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT"><Description>Logical network used by this appliance.</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="testvm">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="101"><Info>The kind of installed guest operating system</Info><Description>Linux_64</Description></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemIdentifier>testvm</vssd:VirtualSystemIdentifier><vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType></System>
      <Item><rasd:Caption>2 virtual CPU</rasd:Caption><rasd:ElementName>2 virtual CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:ElementName>512 MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>sataController0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>AHCI</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
{items}      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>NAT</rasd:Connection><rasd:ElementName>Ethernet adapter on NAT</rasd:ElementName><rasd:InstanceID>20</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

fn sha256_hex(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes the descriptor and a manifest (VirtualBox spelling) into `dir`
/// next to the disk files, and returns the manifest's name.
fn write_metadata(dir: &Path, ovf_text: &str, files: &[&str]) {
    std::fs::write(dir.join("testvm.ovf"), ovf_text).unwrap();
    let mut mf = format!(
        "SHA256(testvm.ovf)= {}\n",
        sha256_hex(&dir.join("testvm.ovf"))
    );
    for f in files {
        mf += &format!("SHA256({f})= {}\n", sha256_hex(&dir.join(f)));
    }
    std::fs::write(dir.join("testvm.mf"), mf).unwrap();
}

/// Archives `members` of `dir` in that order with GNU tar in `format`.
fn tar(dir: &Path, out: &Path, format: &str, members: &[&str]) {
    let mut cmd = Command::new("tar");
    cmd.arg("-cf")
        .arg(out)
        .arg(format!("--format={format}"))
        .arg("-C")
        .arg(dir)
        .args(members);
    run(&mut cmd);
}

fn read_image(path: &Path) -> Vec<u8> {
    let img = vhd::open(path, &vhd::OpenOptions::read_only()).unwrap();
    let mut buf = vec![0u8; img.virtual_size() as usize];
    img.read_at(&mut buf, 0).unwrap();
    buf
}

fn options(out: &Path) -> ImportOptions {
    ImportOptions {
        out_dir: out.to_path_buf(),
        disk_format: vhd::Format::Vhdx,
        no_verify: false,
        configuration: None,
    }
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at {i:#x}");
    }
}

fn vmdk_package(dir: &Path) -> Vec<u8> {
    let (raw, data) = source_disk(dir, 1);
    qemu_disk(
        dir,
        &raw,
        "disk1.vmdk",
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    let text = descriptor(&[DiskSpec {
        href: Some("disk1.vmdk"),
        format: VMDK_URI,
        capacity: SIZE as u64,
        extra_file_attrs: "",
    }]);
    write_metadata(dir, &text, &["disk1.vmdk"]);
    data
}

#[test]
fn vmdk_ova_in_every_member_order_and_tar_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = vmdk_package(dir.path());
    let orders: [&[&str]; 3] = [
        &["testvm.ovf", "testvm.mf", "disk1.vmdk"],
        &["disk1.vmdk", "testvm.ovf", "testvm.mf"],
        &["testvm.mf", "disk1.vmdk", "testvm.ovf"],
    ];
    for (i, order) in orders.iter().enumerate() {
        for format in ["ustar", "pax", "gnu"] {
            let ova = dir.path().join(format!("p{i}-{format}.ova"));
            tar(dir.path(), &ova, format, order);
            let out = dir.path().join(format!("out{i}-{format}"));
            let report = import(&ova, &options(&out), None)
                .unwrap_or_else(|e| panic!("order {order:?} {format}: {e}"));
            assert_eq!(report.appliance.vms.len(), 1);
            assert_eq!(report.appliance.vms[0].vcpus, Some(2));
            assert_eq!(report.appliance.vms[0].memory_bytes, Some(512 << 20));
            let disk = report.disk("vmdisk1").expect("disk mapped");
            assert_eq!(disk.source_format, Some(SourceFormat::VmdkStreamOptimized));
            assert_eq!(report.verification.entries_ok, 2);
            assert_eq!(report.verification.signature, "unsigned");
            assert_same(
                &format!("{order:?} {format}"),
                &read_image(&out.join(&disk.output)),
                &data,
            );
            assert!(out.join("testvm.ovf").exists(), "descriptor kept");
            let qemu = Command::new("qemu-img")
                .args(["check", "-q"])
                .arg(out.join(&disk.output))
                .status()
                .unwrap();
            assert!(qemu.success(), "qemu-img check of the imported disk");
        }
    }
}

#[test]
fn vhd_vhdx_and_raw_disks_in_one_ova() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, data) = source_disk(dir.path(), 2);
    qemu_disk(
        dir.path(),
        &raw,
        "a.vhd",
        "vpc",
        &["-o", "subformat=dynamic,force_size=on"],
    );
    qemu_disk(dir.path(), &raw, "b.vhdx", "vhdx", &[]);
    qemu_disk(
        dir.path(),
        &raw,
        "c.vhd",
        "vpc",
        &["-o", "subformat=fixed,force_size=on"],
    );
    std::fs::copy(&raw, dir.path().join("d.img")).unwrap();
    let spec = |h, f| DiskSpec {
        href: Some(h),
        format: f,
        capacity: SIZE as u64,
        extra_file_attrs: "",
    };
    let text = descriptor(&[
        spec("a.vhd", VHD_URI),
        spec("b.vhdx", VHDX_URI),
        spec("c.vhd", VHD_URI),
        spec("d.img", "http://en.wikipedia.org/wiki/Byte"),
    ]);
    let files = ["a.vhd", "b.vhdx", "c.vhd", "d.img"];
    write_metadata(dir.path(), &text, &files);
    let ova = dir.path().join("mixed.ova");
    tar(
        dir.path(),
        &ova,
        "ustar",
        &[
            "testvm.ovf",
            "testvm.mf",
            "a.vhd",
            "b.vhdx",
            "c.vhd",
            "d.img",
        ],
    );
    let out = dir.path().join("out");
    let report = import(&ova, &options(&out), None).unwrap();
    let want = [
        ("vmdisk1", SourceFormat::Vhd),
        ("vmdisk2", SourceFormat::Vhdx),
        ("vmdisk3", SourceFormat::Vhd),
        ("vmdisk4", SourceFormat::Raw),
    ];
    for (id, fmt) in want {
        let d = report.disk(id).unwrap();
        assert_eq!(d.source_format, Some(fmt), "{id}");
        assert_same(id, &read_image(&out.join(&d.output)), &data);
    }
}

#[test]
fn gzip_compressed_and_chunked_files() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, data) = source_disk(dir.path(), 3);
    qemu_disk(
        dir.path(),
        &raw,
        "disk1.vmdk",
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    run(Command::new("gzip")
        .arg("-k")
        .arg("-n")
        .arg(dir.path().join("disk1.vmdk")));
    std::fs::rename(dir.path().join("disk1.vmdk.gz"), dir.path().join("g.vmdk")).unwrap();
    // The raw disk in chunks of 10 MiB.
    let chunk = 10 << 20;
    let mut names = Vec::new();
    for (i, part) in data.chunks(chunk).enumerate() {
        let n = format!("r.img.{i:09}");
        std::fs::write(dir.path().join(&n), part).unwrap();
        names.push(n);
    }
    let text = descriptor(&[
        DiskSpec {
            href: Some("g.vmdk"),
            format: VMDK_URI,
            capacity: SIZE as u64,
            extra_file_attrs: "ovf:compression=\"gzip\"",
        },
        DiskSpec {
            href: Some("r.img"),
            format: "http://en.wikipedia.org/wiki/Byte",
            capacity: SIZE as u64,
            extra_file_attrs: &format!("ovf:chunkSize=\"{chunk}\""),
        },
    ]);
    let mut files = vec!["g.vmdk"];
    files.extend(names.iter().map(String::as_str));
    write_metadata(dir.path(), &text, &files);
    let mut members = vec!["testvm.ovf", "testvm.mf"];
    members.extend(files.iter());
    let ova = dir.path().join("gz.ova");
    tar(dir.path(), &ova, "pax", &members);
    let out = dir.path().join("out");
    let report = import(&ova, &options(&out), None).unwrap();
    let g = report.disk("vmdisk1").unwrap();
    assert!(g.gzip);
    assert_same("gzip vmdk", &read_image(&out.join(&g.output)), &data);
    let r = report.disk("vmdisk2").unwrap();
    assert_same("chunked raw", &read_image(&out.join(&r.output)), &data);
}

#[test]
fn directory_package_and_descriptor_path_and_blank_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, data) = source_disk(dir.path(), 4);
    qemu_disk(
        dir.path(),
        &raw,
        "disk1.vmdk",
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    let text = descriptor(&[
        DiskSpec {
            href: Some("disk1.vmdk"),
            format: VMDK_URI,
            capacity: SIZE as u64,
            extra_file_attrs: "",
        },
        DiskSpec {
            href: None,
            format: VMDK_URI,
            capacity: 8 << 20,
            extra_file_attrs: "",
        },
    ]);
    write_metadata(dir.path(), &text, &["disk1.vmdk"]);
    for (i, pkg) in [dir.path().to_path_buf(), dir.path().join("testvm.ovf")]
        .iter()
        .enumerate()
    {
        let out = dir.path().join(format!("out{i}"));
        let report = import(pkg, &options(&out), None).unwrap();
        let d = report.disk("vmdisk1").unwrap();
        assert_same("directory", &read_image(&out.join(&d.output)), &data);
        let blank = report.disk("vmdisk2").unwrap();
        assert_eq!(blank.href, None);
        let b = read_image(&out.join(&blank.output));
        assert_eq!(b.len(), 8 << 20);
        assert!(b.iter().all(|&x| x == 0));
    }
}

#[test]
fn a_wrong_digest_fails_and_leaves_nothing_unless_told_not_to_verify() {
    let dir = tempfile::tempdir().unwrap();
    vmdk_package(dir.path());
    let mf = std::fs::read_to_string(dir.path().join("testvm.mf")).unwrap();
    let bad: String = mf
        .lines()
        .map(|l| {
            if l.starts_with("SHA256(disk1") {
                format!("{}0000\n", &l[..l.len() - 4])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(dir.path().join("testvm.mf"), bad).unwrap();
    let ova = dir.path().join("bad.ova");
    tar(
        dir.path(),
        &ova,
        "ustar",
        &["testvm.ovf", "testvm.mf", "disk1.vmdk"],
    );
    let out = dir.path().join("out");
    let err = import(&ova, &options(&out), None).unwrap_err();
    assert!(matches!(err, ImportError::Package(_)), "{err}");
    assert!(
        !out.exists(),
        "output directory removed after a failed import"
    );
    let mut o = options(&out);
    o.no_verify = true;
    let report = import(&ova, &o, None).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("disk1.vmdk")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn hostile_hrefs_and_members_write_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = source_disk(dir.path(), 5);
    let pkg = dir.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    qemu_disk(
        &pkg,
        &raw,
        "disk1.vmdk",
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    // An href that climbs out of the package.
    let text = descriptor(&[DiskSpec {
        href: Some("../../evil.vmdk"),
        format: VMDK_URI,
        capacity: SIZE as u64,
        extra_file_attrs: "",
    }]);
    std::fs::write(pkg.join("testvm.ovf"), &text).unwrap();
    let ova = dir.path().join("evil.ova");
    tar(&pkg, &ova, "ustar", &["testvm.ovf", "disk1.vmdk"]);
    let out = dir.path().join("out");
    let start = std::time::Instant::now();
    assert!(import(&ova, &options(&out), None).is_err());
    assert!(start.elapsed().as_secs() < 5);
    assert!(!dir.path().join("evil.vmdk").exists() && !out.exists());
    // A member whose name climbs out (GNU tar keeps it with -P).
    let ova2 = dir.path().join("evil2.ova");
    std::fs::copy(pkg.join("disk1.vmdk"), dir.path().join("x.vmdk")).unwrap();
    let mut cmd = Command::new("tar");
    cmd.arg("-cPf")
        .arg(&ova2)
        .arg("--format=ustar")
        .arg("-C")
        .arg(&pkg)
        .arg("testvm.ovf")
        .arg("../x.vmdk");
    run(&mut cmd);
    let err = import(&ova2, &options(&out), None).unwrap_err();
    assert!(matches!(err, ImportError::Package(_)), "{err}");
    assert!(!out.exists());
}

#[test]
fn inspect_works_on_a_descriptor_whose_disks_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let text = descriptor(&[DiskSpec {
        href: Some("absent.vmdk"),
        format: VMDK_URI,
        capacity: 1 << 40,
        extra_file_attrs: "",
    }]);
    std::fs::write(dir.path().join("only.ovf"), text).unwrap();
    let i = inspect(&dir.path().join("only.ovf"), None).unwrap();
    assert_eq!(i.appliance.disks[0].capacity_bytes, 1 << 40);
    assert!(i.files.is_empty());
    // Importing it fails cleanly: the disk file is missing.
    let out = dir.path().join("out");
    let err = import(&dir.path().join("only.ovf"), &options(&out), None).unwrap_err();
    assert!(matches!(err, ImportError::MissingFile { .. }), "{err}");
    assert!(!out.exists());
}

/// An OVA holding `descriptor` and `disk1.vmdk` (a small real VMDK).
fn ova_with_descriptor(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let pkg = dir.join(format!("{name}.d"));
    std::fs::create_dir(&pkg).unwrap();
    let (raw, _) = source_disk(dir, 6);
    qemu_disk(
        &pkg,
        &raw,
        "disk1.vmdk",
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    std::fs::write(pkg.join("testvm.ovf"), text).unwrap();
    let ova = dir.join(format!("{name}.ova"));
    tar(&pkg, &ova, "ustar", &["testvm.ovf", "disk1.vmdk"]);
    ova
}

#[test]
fn hostile_descriptors_fail_fast_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let laughs = br#"<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&d;&d;&d;&d;&d;&d;&d;&d;&d;</Envelope>"#
        .to_vec();
    let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&x;</Envelope>"#
        .to_vec();
    let mut deep = b"<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\">".to_vec();
    deep.extend(std::iter::repeat_n(&b"<a>"[..], 100_000).flatten());
    deep.extend(std::iter::repeat_n(&b"</a>"[..], 100_000).flatten());
    deep.extend(b"</Envelope>");
    let huge = descriptor(&[DiskSpec {
        href: Some("disk1.vmdk"),
        format: VMDK_URI,
        capacity: 0,
        extra_file_attrs: "",
    }])
    .replace(
        "ovf:capacity=\"0\"",
        "ovf:capacity=\"1\" ovf:capacityAllocationUnits=\"byte * 2^70\"",
    )
    .into_bytes();
    for (name, text) in [
        ("laughs", laughs),
        ("xxe", xxe),
        ("deep", deep),
        ("huge", huge),
    ] {
        let ova = ova_with_descriptor(dir.path(), name, &text);
        let out = dir.path().join(format!("out-{name}"));
        let start = std::time::Instant::now();
        let err = import(&ova, &options(&out), None).expect_err(name);
        assert!(
            start.elapsed().as_secs() < 5,
            "{name} took {:?}",
            start.elapsed()
        );
        assert!(!out.exists(), "{name}: output left behind ({err})");
    }
}
