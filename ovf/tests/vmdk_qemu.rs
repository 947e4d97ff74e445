//! streamOptimized VMDK against qemu-img: images qemu-img makes read back
//! byte for byte, and images this crate writes convert back with qemu-img.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;
use std::process::Command;

use ovf::vmdk::{
    CopyOptions, StreamReader, StreamWriter, VmdkError, WriterOptions, convert_vmdk_file,
    copy_vmdk_stream_to, describe_vmdk_file,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{CreateOptions, DiskImage, Format, ImageType, RawImage};

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

/// Converts the raw disk `raw` into a streamOptimized VMDK at `vmdk` with
/// qemu-img.
fn stream_optimized(raw: &Path, vmdk: &Path) {
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
        stream_optimized(&raw, &vmdk);
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
            ..WriterOptions::default()
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

/// A disk image written out with `write_vmdk_stream_from` converts back
/// identically with qemu-img.
#[test]
fn image_to_stream_reads_in_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let size = (5 << 20) + 512;
    let data = disk_data(5, size);
    let src_path = dir.path().join("src.raw");
    let src = RawImage::create(&src_path, size as u64, ImageType::Dynamic).unwrap();
    src.write_at(&data, 0).unwrap();
    let vmdk = dir.path().join("img.vmdk");
    let out = std::fs::File::create(&vmdk).unwrap();
    ovf::vmdk::write_vmdk_stream_from(&src, out, WriterOptions::default()).unwrap();
    let raw = dir.path().join("back.raw");
    qemu_img(&[
        "convert",
        "-f",
        "vmdk",
        "-O",
        "raw",
        vmdk.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&raw).unwrap() == data);
}

/// CPU seconds used so far by this process and by its waited-for
/// children, from /proc/self/stat (the machine may be shared, so CPU time
/// is a steadier figure than wall time).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14-17 of stat (utime, stime, cutime, cstime), in clock ticks
    // of 1/100 s; `rest` starts at field 3.
    ((f[11] + f[12]) / 100.0, (f[13] + f[14]) / 100.0)
}

/// Side-by-side timing, not part of the normal suite:
/// `cargo test -p ovf --release --test vmdk_qemu -- --ignored --nocapture`.
/// Converts one qemu-made streamOptimized image (256 MiB, half data, half
/// holes) to raw with `qemu-img convert` and with `copy_vmdk_stream_to`,
/// five times each (neither syncing its output), and prints the best wall
/// and CPU times and their ratios.
#[test]
#[ignore = "benchmark; run explicitly"]
fn bench_stream_to_raw_against_qemu_img() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let size = 256usize << 20;
    let mut data = vec![0u8; size];
    let mut rng = SmallRng::seed_from_u64(42);
    for chunk in data.chunks_mut(1 << 20).step_by(2) {
        rng.fill(&mut chunk[..]);
    }
    let raw = dir.path().join("in.raw");
    std::fs::write(&raw, &data).unwrap();
    drop(data);
    let vmdk = dir.path().join("in.vmdk");
    stream_optimized(&raw, &vmdk);
    let out = dir.path().join("out.raw");
    let (mut wall_qemu, mut wall_ours) = (f64::MAX, f64::MAX);
    let (mut cpu_qemu, mut cpu_ours) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let _ = std::fs::remove_file(&out);
        let (_, c0) = cpu_seconds();
        let t = Instant::now();
        qemu_img(&[
            "convert",
            "-f",
            "vmdk",
            "-O",
            "raw",
            vmdk.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        wall_qemu = wall_qemu.min(t.elapsed().as_secs_f64());
        cpu_qemu = cpu_qemu.min(cpu_seconds().1 - c0);
        let _ = std::fs::remove_file(&out);
        let (s0, _) = cpu_seconds();
        let t = Instant::now();
        let target = RawImage::create(&out, size as u64, ImageType::Dynamic).unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&vmdk).unwrap());
        // qemu-img convert does not sync its output; neither does this run.
        let opts = CopyOptions {
            flush: false,
            ..Default::default()
        };
        copy_vmdk_stream_to(file, &target, &opts).unwrap();
        wall_ours = wall_ours.min(t.elapsed().as_secs_f64());
        cpu_ours = cpu_ours.min(cpu_seconds().0 - s0);
    }
    println!(
        "streamOptimized 256 MiB -> raw, best of 5: wall qemu-img {wall_qemu:.3} s, ovf \
         {wall_ours:.3} s (qemu/ovf {:.2}); cpu qemu-img {cpu_qemu:.2} s, ovf {cpu_ours:.2} s \
         (qemu/ovf {:.2})",
        wall_qemu / wall_ours,
        cpu_qemu / cpu_ours
    );
}

/// In qemu-img's layout the grain tables are reserved up front and the
/// stream may end without an end-of-stream marker: the tables still show a
/// file or stream cut between two grains, and `describe_vmdk_file` reads
/// them.
#[test]
fn up_front_layout_cut_between_grains_is_refused() {
    const GRAIN: usize = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    // Incompressible data, so the grains fill the file and a cut in the
    // middle lands inside them.
    let mut disk = vec![0u8; 4 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in &mut disk[GRAIN..8 * GRAIN] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[3];
    }
    std::fs::write(&raw, &disk).unwrap();
    let vmdk = dir.path().join("disk.vmdk");
    stream_optimized(&raw, &vmdk);
    let info = describe_vmdk_file(&vmdk).unwrap();
    assert!(!info.tables_at_end);
    assert_eq!(info.allocated_bytes, 7 * GRAIN as u64);
    assert_eq!(info.zeroed_bytes, 0);

    let whole = std::fs::read(&vmdk).unwrap();
    let overhead = u64::from_le_bytes(whole[64..72].try_into().unwrap());
    let first_grain = usize::try_from(overhead * 512).unwrap();
    // The file cut where the first grain starts, and in the middle of the
    // grains: the one-pass reader sees a clean end, the tables do not.
    for cut in [first_grain, (first_grain + whole.len()) / 2] {
        let short = dir.path().join("short.vmdk");
        std::fs::write(&short, &whole[..cut]).unwrap();
        assert!(
            matches!(describe_vmdk_file(&short), Err(VmdkError::Truncated { .. })),
            "cut at {cut}"
        );
        // The one-pass reader alone, over the bytes.
        let mut stream = StreamReader::new(&whole[..cut]).unwrap();
        let r = loop {
            match stream.next_grain() {
                Ok(Some(_)) => {}
                other => break other.map(|_| ()),
            }
        };
        assert!(
            matches!(r, Err(VmdkError::Truncated { .. })),
            "stream cut at {cut}: {r:?}"
        );
        let out = dir.path().join("short.vhd");
        let create = CreateOptions::new(Format::Vhd, ImageType::Dynamic, 0);
        let r = convert_vmdk_file(&short, &out, &create, None);
        assert!(
            matches!(r, Err(VmdkError::Truncated { .. })),
            "cut at {cut} of {}: {r:?}",
            whole.len()
        );
        assert!(!out.exists());
    }
    let mut stream = StreamReader::new(&whole[..]).unwrap();
    let mut grains = 0;
    while stream.next_grain().unwrap().is_some() {
        grains += 1;
    }
    assert_eq!(grains, 7);
    let out = dir.path().join("whole.vhd");
    let create = CreateOptions::new(Format::Vhd, ImageType::Dynamic, 0);
    convert_vmdk_file(&vmdk, &out, &create, None).unwrap();
    let image = vhd::open(&out, &vhd::OpenOptions::read_only()).unwrap();
    let mut back = vec![0u8; disk.len()];
    image.read_at(&mut back, 0).unwrap();
    assert_eq!(back, disk);
}
