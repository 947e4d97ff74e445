//! Builders for packages with delta disks (`ovf:parentRef`): layered
//! streamOptimized VMDKs written with the crate's writer from seeded data
//! (with the flattened content each layer should read as), descriptors,
//! OVAs in any member order and directory packages, and the checks run on
//! what an import wrote.
#![allow(dead_code, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ovf::import::{ImportError, ImportOptions, ImportReport, import};
use ovf::vmdk::{StreamWriter, WriterOptions};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::Digest;
use vhd::DiskImage;

#[path = "package_util.rs"]
mod util;
pub use util::Tar;

/// Grain size of the test streams.
pub const GRAIN: usize = 64 << 10;

/// What a layer does with one grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Absent from the stream: the layer below shows.
    Hole,
    /// New data.
    Data,
    /// A grain of zeros in the stream.
    Zero,
    /// A grain-table entry of 1 (zeroed grain), no grain in the stream.
    ZeroedEntry,
}

/// One layer: its stream and the content the disk should read as.
#[derive(Debug)]
pub struct Layer {
    /// The streamOptimized VMDK.
    pub stream: Vec<u8>,
    /// The flattened content: the layer below with this one over it.
    pub content: Vec<u8>,
    /// What each grain did.
    pub ops: Vec<Op>,
}

/// A layer of `size` bytes over `below` (`None` for a base disk): each
/// grain is a hole, new data, a zero grain or a zeroed entry, chosen from
/// `seed` (which also shifts a fixed pattern that makes every kind land at
/// least once over data of the layer below).
pub fn layer(seed: u64, size: usize, below: Option<&[u8]>) -> Layer {
    let mut rng = SmallRng::seed_from_u64(seed);
    let grains = size.div_ceil(GRAIN);
    let mut content = vec![0u8; size];
    if let Some(b) = below {
        let n = b.len().min(size);
        content[..n].copy_from_slice(&b[..n]);
    }
    let mut ops = Vec::with_capacity(grains);
    for g in 0..grains {
        let slot = (g + seed as usize) % 8;
        let op = match (below.is_some(), slot, rng.random_range(0..100u32)) {
            // A fixed pattern guarantees every kind; the rest is random.
            (true, 1, _) => Op::Zero,
            (true, 3, _) => Op::ZeroedEntry,
            (_, 5, _) => Op::Data,
            (_, 6, _) => Op::Hole,
            (false, _, r) if r < 65 => Op::Data,
            (false, _, r) if r < 75 => Op::Zero,
            (false, _, _) => Op::Hole,
            (true, _, r) if r < 35 => Op::Hole,
            (true, _, r) if r < 70 => Op::Data,
            (true, _, r) if r < 85 => Op::Zero,
            (true, _, _) => Op::ZeroedEntry,
        };
        ops.push(op);
    }
    let options = WriterOptions {
        zeroed_grain_gtes: below.is_some(),
        ..WriterOptions::default()
    };
    let mut w = StreamWriter::new(Vec::new(), size as u64, options).unwrap();
    let mut buf = vec![0u8; GRAIN];
    for (g, op) in ops.iter().enumerate() {
        let at = g * GRAIN;
        let len = GRAIN.min(size - at);
        let grain = &mut buf[..len];
        match op {
            Op::Hole => continue,
            Op::Data => {
                rng.fill_bytes(grain);
                // Some grains hold data in their first half only.
                if rng.random_range(0..4u32) == 0 {
                    grain[len / 2..].fill(0);
                }
                w.write_grain(at as u64, grain).unwrap();
            }
            Op::Zero => {
                grain.fill(0);
                w.write_grain(at as u64, grain).unwrap();
            }
            Op::ZeroedEntry => {
                grain.fill(0);
                w.write_zeroed_grain(at as u64).unwrap();
            }
        }
        content[at..at + len].copy_from_slice(grain);
    }
    if let Some(b) = below {
        for kind in [Op::Hole, Op::Data, Op::Zero, Op::ZeroedEntry] {
            assert!(
                ops.iter().enumerate().any(|(g, &o)| {
                    let r = g * GRAIN..((g + 1) * GRAIN).min(b.len());
                    o == kind && b.get(r).is_some_and(|x| x.iter().any(|&v| v != 0))
                }),
                "seed {seed}: no {kind:?} grain over data"
            );
        }
    }
    Layer {
        stream: w.finish().unwrap(),
        content,
        ops,
    }
}

/// A DiskSection disk.
#[derive(Debug)]
pub struct DiskDef<'a> {
    pub id: &'a str,
    pub href: Option<&'a str>,
    pub capacity: u64,
    pub parent: Option<&'a str>,
}

const VMDK_URI: &str = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// A descriptor with `disks`, and one VM whose drives are `drives`.
pub fn descriptor(disks: &[DiskDef], drives: &[&str]) -> String {
    let mut refs = String::new();
    let mut section = String::new();
    for d in disks {
        let fileref = match d.href {
            Some(h) => {
                refs += &format!("    <File ovf:id=\"f-{}\" ovf:href=\"{h}\"/>\n", d.id);
                format!(" ovf:fileRef=\"f-{}\" ovf:format=\"{VMDK_URI}\"", d.id)
            }
            None => String::new(),
        };
        let parent = d
            .parent
            .map(|p| format!(" ovf:parentRef=\"{p}\""))
            .unwrap_or_default();
        section += &format!(
            "    <Disk ovf:capacity=\"{}\" ovf:diskId=\"{}\"{fileref}{parent}/>\n",
            d.capacity, d.id
        );
    }
    let items: String = drives
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "      <Item><rasd:AddressOnParent>{i}</rasd:AddressOnParent><rasd:ElementName>disk{i}</rasd:ElementName>\
                 <rasd:HostResource>ovf:/disk/{id}</rasd:HostResource><rasd:InstanceID>{}</rasd:InstanceID>\
                 <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>\n",
                10 + i
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
{refs}  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
{section}  </DiskSection>
  <VirtualSystem ovf:id="chain">
    <Info>A virtual machine</Info>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <Item><rasd:ElementName>1 CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:ElementName>memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>256</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>scsi</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
{items}    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The manifest over the descriptor and `files`.
pub fn manifest(ovf: &str, files: &[(&str, &[u8])]) -> String {
    let mut mf = format!("SHA256(chain.ovf)= {}\n", sha256_hex(ovf.as_bytes()));
    for (name, data) in files {
        mf += &format!("SHA256({name})= {}\n", sha256_hex(data));
    }
    mf
}

/// An OVA whose members come in `order` (names among "chain.ovf",
/// "chain.mf" and the files'), with a manifest over every file.
pub fn ova(ovf: &str, files: &[(&str, &[u8])], order: &[&str]) -> Vec<u8> {
    let mf = manifest(ovf, files);
    let mut tar = Tar::new();
    for name in order {
        let data: &[u8] = match *name {
            "chain.ovf" => ovf.as_bytes(),
            "chain.mf" => mf.as_bytes(),
            n => files
                .iter()
                .find(|(f, _)| *f == n)
                .map(|(_, d)| *d)
                .unwrap_or_else(|| panic!("no member {n}")),
        };
        tar.file(name, data);
    }
    tar.finish()
}

/// Writes a directory package (descriptor, manifest, files) into `dir`.
pub fn directory(dir: &Path, ovf: &str, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("chain.ovf"), ovf).unwrap();
    std::fs::write(dir.join("chain.mf"), manifest(ovf, files)).unwrap();
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// Imports `package` into `out` as `format`.
pub fn import_as(
    package: &Path,
    out: &Path,
    format: vhd::Format,
) -> Result<ImportReport, ImportError> {
    import(
        package,
        &ImportOptions {
            out_dir: out.to_path_buf(),
            disk_format: format,
            no_verify: false,
            configuration: None,
        },
        None,
    )
}

/// The content of the image at `path`, read through `vhd::open` (which
/// follows differencing parents).
pub fn read_image(path: &Path, format: vhd::Format) -> Vec<u8> {
    let img = vhd::open(
        path,
        &vhd::OpenOptions {
            read_only: true,
            format: Some(format),
            ..vhd::OpenOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut buf = vec![0u8; img.virtual_size() as usize];
    img.read_at(&mut buf, 0).unwrap();
    buf
}

/// Asserts `got` equals `want`, naming the first difference.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at {i:#x}");
    }
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs a command that must succeed; returns its standard output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads the differencing chain `chain` (leaf first, each image's parent
/// after it) with libvhdi, a reader we did not write, and compares it with
/// the raw file `expected`.
pub fn libvhdi_matches(chain: &[PathBuf], expected: &Path) {
    const SCRIPT: &str = r#"
import sys
try:
    import pyvhdi
except ImportError:
    sys.exit("pyvhdi is missing: apt-get install python3-libvhdi")
paths, expected = sys.argv[1:-1], sys.argv[-1]
files = []
for p in paths:
    f = pyvhdi.file()
    f.open(p)
    files.append(f)
for child, parent in reversed(list(zip(files, files[1:]))):
    child.set_parent(parent)
want = open(expected, "rb").read()
leaf = files[0]
if leaf.get_media_size() != len(want):
    sys.exit("size %d, expected %d" % (leaf.get_media_size(), len(want)))
step = 1 << 20
for at in range(0, len(want), step):
    got = leaf.read_buffer_at_offset(min(step, len(want) - at), at)
    if got != want[at:at + step]:
        i = next(k for k in range(len(got)) if got[k] != want[at + k])
        sys.exit("first difference at %#x" % (at + i))
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(SCRIPT).args(chain).arg(expected);
    run(&mut cmd);
}

/// Checks `path` with `qemu-img check`.
pub fn qemu_check(path: &Path) {
    run(Command::new("qemu-img").arg("check").arg(path));
}

/// Compares the image at `path` (qemu format `fmt`) with the raw file
/// `expected` using `qemu-img compare`.
pub fn qemu_compare(path: &Path, fmt: &str, expected: &Path) {
    run(Command::new("qemu-img")
        .args(["compare", "-f", fmt, "-F", "raw"])
        .arg(path)
        .arg(expected));
}
