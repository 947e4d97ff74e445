//! streamOptimized VMDK against qemu-img: images qemu-img makes read back
//! byte for byte, and images this crate writes convert back with qemu-img.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;
use std::process::Command;

use ovf::vmdk::{CopyOptions, StreamWriter, WriterOptions, copy_vmdk_stream_to};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{DiskImage, ImageType, RawImage};

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("qemu-img is needed for this test (install qemu-utils): {e}"));
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pseudo-random disk content with holes: runs of random data, zeros, and
/// never-written regions, some shorter than a grain.
fn disk_data(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut data = vec![0u8; size];
    let mut pos = 0;
    while pos < size {
        let len = rng.random_range(1..200_000).min(size - pos);
        match rng.random_range(0..4) {
            0 | 1 => rng.fill(&mut data[pos..pos + len]),
            2 => data[pos..pos + len].fill(rng.random()),
            _ => {}
        }
        pos += len;
    }
    data
}

fn read_via_copy(vmdk: &Path, dir: &Path, size: u64) -> Vec<u8> {
    let target_path = dir.join("out.raw");
    let _ = std::fs::remove_file(&target_path);
    let target = RawImage::create(&target_path, size, ImageType::Dynamic).unwrap();
    let file = std::io::BufReader::new(std::fs::File::open(vmdk).unwrap());
    let stats = copy_vmdk_stream_to(file, &target, &CopyOptions::default()).unwrap();
    assert_eq!(stats.capacity, size);
    let mut back = vec![0u8; usize::try_from(size).unwrap()];
    target.read_at(&mut back, 0).unwrap();
    back
}

#[test]
fn qemu_streamoptimized_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    // One size a multiple of the grain, one not (last grain partial).
    for (seed, size) in [(1u64, 8 << 20), (2, (3 << 20) + 512 * 7)] {
        let data = disk_data(seed, size);
        let raw = dir.path().join("in.raw");
        std::fs::write(&raw, &data).unwrap();
        let vmdk = dir.path().join("in.vmdk");
        let _ = std::fs::remove_file(&vmdk);
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            raw.to_str().unwrap(),
            vmdk.to_str().unwrap(),
        ]);
        let back = read_via_copy(&vmdk, dir.path(), size as u64);
        assert!(
            back == data,
            "seed {seed}: data differs after reading qemu's vmdk"
        );
    }
}

#[test]
fn our_stream_converts_back_with_qemu() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, size, grain) in [(3u64, 6 << 20, 64 << 10), (4, (2 << 20) + 512 * 3, 4096)] {
        let data = disk_data(seed, size);
        let vmdk = dir.path().join("ours.vmdk");
        let file = std::fs::File::create(&vmdk).unwrap();
        let opts = WriterOptions {
            grain_size: grain,
            level: 1,
        };
        let mut w = StreamWriter::new(std::io::BufWriter::new(file), size as u64, opts).unwrap();
        for (i, chunk) in data.chunks(grain as usize).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                w.write_grain(i as u64 * grain, chunk).unwrap();
            }
        }
        w.finish().unwrap();
        qemu_img(&["check", "-f", "vmdk", vmdk.to_str().unwrap()]);
        let raw = dir.path().join("back.raw");
        let _ = std::fs::remove_file(&raw);
        qemu_img(&[
            "convert",
            "-f",
            "vmdk",
            "-O",
            "raw",
            vmdk.to_str().unwrap(),
            raw.to_str().unwrap(),
        ]);
        let back = std::fs::read(&raw).unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "seed {seed}: qemu-img reads different data");
        // And our own reader agrees.
        assert!(read_via_copy(&vmdk, dir.path(), size as u64) == data);
    }
}
