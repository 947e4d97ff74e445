//! Images written through the device are read by a tool we did not write:
//! qemu-img checks them and finds the same content as a raw image given the
//! same requests.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{CreateOptions, DiskImage, Format, ImageType};

const DISK: u64 = 8 << 20;

/// Runs qemu-img, failing (never skipping) when it is missing.
fn qemu_img(args: &[&str]) -> Output {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs qemu-img (apt-get install qemu-utils, or scripts/setup.sh): {e}"
            )
        });
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The same seeded writes, discards and zeroings through a device on
/// `image`.
fn drive(image: Arc<dyn DiskImage>) {
    let mut rig = Rig::with_image(image);
    let mut rng = SmallRng::seed_from_u64(7);
    for op in 0..120u64 {
        let sectors = rng.random_range(1..=256u64);
        let sector = rng.random_range(0..=DISK / 512 - sectors);
        match rng.random_range(0..10) {
            0 => {
                let r = range(sector, sectors as u32, 0);
                assert_eq!(rig.ranges(T_DISCARD, &[r]).status, S_OK);
            }
            1 => {
                let r = range(sector, sectors as u32, rng.random_range(0..2));
                assert_eq!(rig.ranges(T_WRITE_ZEROES, &[r]).status, S_OK);
            }
            _ => {
                let data = pattern(op, (sectors * 512) as usize);
                assert_eq!(rig.write(sector, &data).status, S_OK);
            }
        }
    }
    assert_eq!(rig.bare(T_FLUSH, 0).status, S_OK);
    rig.dev.reset();
}

fn create(path: &Path, format: Format) -> Arc<dyn DiskImage> {
    Arc::new(vhd::create(path, &CreateOptions::new(format, ImageType::Dynamic, DISK)).unwrap())
}

#[test]
fn qemu_img_reads_what_the_device_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("reference.raw");
    drive(create(&raw, Format::Raw));
    for (format, name, qemu_format) in [
        (Format::Vhd, "disk.vhd", "vpc"),
        (Format::Vhdx, "disk.vhdx", "vhdx"),
    ] {
        let path = dir.path().join(name);
        // The image is closed (the device and every handle dropped) before
        // qemu-img opens it.
        drive(create(&path, format));
        let p = path.to_str().unwrap();
        if format == Format::Vhdx {
            // qemu-img has no consistency check for VHD.
            qemu_img(&["check", "-f", qemu_format, p]);
        }
        qemu_img(&[
            "compare",
            "-f",
            qemu_format,
            "-F",
            "raw",
            p,
            raw.to_str().unwrap(),
        ]);
    }
}
