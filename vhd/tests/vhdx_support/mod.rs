//! Helpers shared by the VHDX test files: seeded data, the external tools
//! (qemu-img, libvhdi) used as oracles, whole-disk reads.
#![allow(dead_code, clippy::cast_possible_truncation)]

use std::path::Path;
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::DiskImage;

pub const MIB: u64 = 1 << 20;

/// Disk content of `len` bytes from `seed`: 64 KiB runs, about 40% of them
/// zero (holes), the rest pseudo-random.
pub fn pattern(seed: u64, len: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = vec![0u8; len as usize];
    for chunk in out.chunks_mut(64 * 1024) {
        if rng.random_range(0..10) >= 4 {
            rng.fill(chunk);
        }
    }
    out
}

/// Runs qemu-img and returns its stdout; panics with its stderr on failure.
pub fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is needed for this test: install qemu-utils (qemu-img 10)");
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads a whole VHDX image through libvhdi (with its parent, if given) and
/// returns its content.
pub fn libvhdi_read(image: &Path, parent: Option<&Path>) -> Vec<u8> {
    let out = image.with_extension("libvhdi.raw");
    let script = r#"
import sys, pyvhdi
f = pyvhdi.file()
f.open(sys.argv[1])
if len(sys.argv) > 3:
    p = pyvhdi.file()
    p.open(sys.argv[3])
    f.set_parent(p)
size = f.get_media_size()
with open(sys.argv[2], "wb") as o:
    off = 0
    while off < size:
        n = min(1 << 20, size - off)
        o.write(f.read_buffer_at_offset(n, off))
        off += n
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(script).arg(image).arg(&out);
    if let Some(p) = parent {
        cmd.arg(p);
    }
    let res = cmd
        .output()
        .expect("/usr/bin/python3 is needed for this test: install python3 and python3-libvhdi");
    assert!(
        res.status.success(),
        "libvhdi could not read {}: {} (install python3-libvhdi if pyvhdi is missing)",
        image.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    let data = std::fs::read(&out).expect("libvhdi output");
    std::fs::remove_file(&out).ok();
    data
}

/// Reads the whole disk.
pub fn read_all(img: &dyn DiskImage) -> Vec<u8> {
    let mut buf = vec![0u8; img.virtual_size() as usize];
    img.read_at(&mut buf, 0).expect("read whole disk");
    buf
}

/// Writes the non-zero 64 KiB runs of `data` at their offsets.
pub fn write_non_zero(img: &dyn DiskImage, data: &[u8]) {
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            img.write_at(chunk, i as u64 * 64 * 1024).expect("write");
        }
    }
}

/// Asserts two buffers are equal, naming the first differing offset.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i:#x}: got {:#04x}, want {:#04x}",
            got[i], want[i]
        );
    }
}
