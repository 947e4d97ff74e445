//! Test support shared by every format's tests: the `DiskImage`
//! conformance suite, the model test against an in-memory reference, seeded
//! data and helpers for external tools.
//!
//! A format's test file declares `mod common;` and calls [`conformance`] and
//! [`model`] with a factory that creates an image of a given size in a
//! directory.
#![allow(dead_code, clippy::cast_possible_truncation, clippy::type_complexity)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use vhd::{DiskImage, Error, Image, OpenOptions};

/// What a factory made: the image's path and the bytes it reads as when new
/// (zeros, or a parent's content for a differencing image).
pub struct Made {
    /// Path of the new image, opened read-write by the suite.
    pub path: PathBuf,
    /// The content the fresh image must read as.
    pub expected: Vec<u8>,
}

/// Creates an image of the given virtual size in the given directory.
pub type Factory<'a> = &'a (dyn Fn(&Path, u64) -> Made + Sync);

/// Seeded pseudo-random bytes.
pub fn prng_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Opens an image read-write with default options.
pub fn open_rw(path: &Path) -> Image {
    vhd::open(path, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// Opens an image read-only with default options.
pub fn open_ro(path: &Path) -> Image {
    vhd::open(path, &OpenOptions::read_only())
        .unwrap_or_else(|e| panic!("opening {} read-only: {e}", path.display()))
}

/// Reads the whole virtual disk.
pub fn read_all(image: &dyn DiskImage) -> Vec<u8> {
    let size = usize::try_from(image.virtual_size()).expect("test disk fits in memory");
    let mut buf = vec![0u8; size];
    image.read_at(&mut buf, 0).expect("reading the whole disk");
    buf
}

/// Asserts that two byte strings are equal, reporting the first difference
/// instead of dumping megabytes.
#[track_caller]
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i:#x}: got {:#04x}, want {:#04x}",
            got[i], want[i]
        );
    }
}

/// Fails (never skips) when an external tool is missing.
pub fn require_tool(tool: &str, install_hint: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{tool}`; install it with: {install_hint} (or run scripts/setup.sh)"
    );
}

/// Runs qemu-img with `args`, panicking with its output if it fails.
pub fn qemu_img(args: &[&str]) -> Output {
    require_tool("qemu-img", "apt-get install qemu-utils");
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("running qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `data` to a new raw file at `path`.
pub fn write_raw(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Block size to aim boundary tests at: the image's own, else 1 MiB.
fn boundary_unit(image: &dyn DiskImage) -> u64 {
    image.info().block_size.unwrap_or(1 << 20)
}

/// Runs every conformance check on fresh images of `size` bytes made by
/// `factory`. `size` must be a multiple of the format's logical sector size.
pub fn conformance(name: &str, factory: Factory, size: u64) {
    let checks: [(&str, fn(&str, Factory, u64)); 10] = [
        ("geometry and fresh content", check_fresh),
        ("first and last sector", check_edges),
        ("unaligned and block-crossing I/O", check_unaligned),
        ("out-of-range requests", check_out_of_range),
        ("write_zeroes", check_write_zeroes),
        ("discard", check_discard),
        ("block status agrees with data", check_block_status),
        ("flush and reopen", check_reopen),
        ("read-only refuses writes", check_read_only),
        ("parallel writers and readers", check_threads),
    ];
    for (what, check) in checks {
        eprintln!("conformance [{name}]: {what}");
        check(&format!("{name}: {what}"), factory, size);
    }
}

fn fresh(factory: Factory, size: u64) -> (tempfile::TempDir, Made, Image) {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = factory(dir.path(), size);
    assert_eq!(
        made.expected.len() as u64,
        size,
        "factory's expected content"
    );
    let image = open_rw(&made.path);
    (dir, made, image)
}

fn check_fresh(name: &str, factory: Factory, size: u64) {
    let (_d, made, image) = fresh(factory, size);
    assert_eq!(image.virtual_size(), size, "{name}: virtual size");
    let ls = image.logical_sector_size();
    let ps = image.physical_sector_size();
    assert!(ls == 512 || ls == 4096, "{name}: logical sector {ls}");
    assert!(ps == 512 || ps == 4096, "{name}: physical sector {ps}");
    assert!(!image.read_only(), "{name}: opened read-write");
    assert_same(name, &read_all(&image), &made.expected);
    let info = image.info();
    assert_eq!(info.virtual_size, size, "{name}: info virtual size");
}

fn check_edges(name: &str, factory: Factory, size: u64) {
    let (_d, mut model, image) = fresh(factory, size);
    let sector = u64::from(image.logical_sector_size());
    let first = prng_bytes(1, sector as usize);
    let last = prng_bytes(2, sector as usize);
    image.write_at(&first, 0).expect("first sector");
    image.write_at(&last, size - sector).expect("last sector");
    model.expected[..sector as usize].copy_from_slice(&first);
    let n = model.expected.len();
    model.expected[n - sector as usize..].copy_from_slice(&last);
    let mut buf = vec![0u8; sector as usize];
    image.read_at(&mut buf, size - sector).expect("read last");
    assert_same(name, &buf, &last);
    assert_same(name, &read_all(&image), &model.expected);
}

fn check_unaligned(name: &str, factory: Factory, size: u64) {
    let (_d, mut model, image) = fresh(factory, size);
    let unit = boundary_unit(&image);
    let mut cases: Vec<(u64, usize)> =
        vec![(1, 3), (511, 2), (513, 1000), (4095, 4098), (7, 70000)];
    let mut b = unit;
    while b < size && cases.len() < 16 {
        cases.push((b - 100, 300));
        cases.push((b - 4096 - 1, 3 * 4096 + 5));
        b += unit;
    }
    cases.push((size - 3, 3));
    for (i, &(off, len)) in cases.iter().enumerate() {
        if off + len as u64 > size {
            continue;
        }
        let data = prng_bytes(100 + i as u64, len);
        image
            .write_at(&data, off)
            .unwrap_or_else(|e| panic!("{name}: write {len} at {off:#x}: {e}"));
        model.expected[off as usize..off as usize + len].copy_from_slice(&data);
        let mut back = vec![0u8; len + 2];
        let start = off.saturating_sub(1);
        let rlen = (len as u64 + 2).min(size - start) as usize;
        image
            .read_at(&mut back[..rlen], start)
            .unwrap_or_else(|e| panic!("{name}: read back at {start:#x}: {e}"));
        assert_same(
            name,
            &back[..rlen],
            &model.expected[start as usize..start as usize + rlen],
        );
    }
    assert_same(name, &read_all(&image), &model.expected);
}

fn check_out_of_range(name: &str, factory: Factory, size: u64) {
    let (_d, _m, image) = fresh(factory, size);
    let mut buf = [0u8; 512];
    for (off, what) in [
        (size, "at the end"),
        (size - 1, "crossing the end"),
        (u64::MAX - 10, "overflowing"),
    ] {
        assert!(
            matches!(image.read_at(&mut buf, off), Err(Error::OutOfRange { .. })),
            "{name}: read {what}"
        );
        assert!(
            matches!(image.write_at(&buf, off), Err(Error::OutOfRange { .. })),
            "{name}: write {what}"
        );
    }
    assert!(
        image.write_zeroes(size - 512, 1024).is_err(),
        "{name}: zeroes"
    );
    assert!(image.discard(u64::MAX, 2).is_err(), "{name}: discard");
    assert!(image.block_status(size, 1).is_err(), "{name}: status");
    // A zero-length request inside the disk is fine.
    image.read_at(&mut [], 0).expect("empty read");
    image.write_at(&[], size).expect("empty write at the end");
}

/// Fills the disk with data so that zeroing has something to remove.
fn filled(name: &str, factory: Factory, size: u64) -> (tempfile::TempDir, Made, Image) {
    let (d, mut model, image) = fresh(factory, size);
    let data = prng_bytes(7, size as usize);
    image
        .write_at(&data, 0)
        .unwrap_or_else(|e| panic!("{name}: fill: {e}"));
    model.expected.copy_from_slice(&data);
    (d, model, image)
}

fn zero_cases(image: &dyn DiskImage, size: u64) -> Vec<(u64, u64)> {
    let unit = boundary_unit(image);
    let sector = u64::from(image.logical_sector_size());
    let mut v = vec![
        (0, sector),
        (sector * 3, sector * 5),
        (size - sector, sector),
    ];
    if 3 * unit <= size {
        v.push((unit, unit)); // one whole block
        v.push((unit / 2, 2 * unit)); // partial, whole, partial
    }
    v.push((1000, 5000)); // unaligned
    v
}

fn check_zeroing(name: &str, factory: Factory, size: u64, discard: bool) {
    let (_d, mut model, image) = filled(name, factory, size);
    for (off, len) in zero_cases(&image, size) {
        let r = if discard {
            image.discard(off, len)
        } else {
            image.write_zeroes(off, len)
        };
        r.unwrap_or_else(|e| panic!("{name}: {len} at {off:#x}: {e}"));
        model.expected[off as usize..(off + len) as usize].fill(0);
        assert_same(name, &read_all(&image), &model.expected);
    }
    image.flush().expect("flush");
    drop(image);
    let image = open_rw(&model.path);
    assert_same(
        &format!("{name} after reopen"),
        &read_all(&image),
        &model.expected,
    );
}

fn check_write_zeroes(name: &str, factory: Factory, size: u64) {
    check_zeroing(name, factory, size, false);
}

fn check_discard(name: &str, factory: Factory, size: u64) {
    check_zeroing(name, factory, size, true);
}

/// Every extent the image reports as reading as zero does read as zero, the
/// extents tile the disk, and data written shows up as data.
pub fn assert_block_status_consistent(name: &str, image: &dyn DiskImage) {
    let size = image.virtual_size();
    let extents = vhd::map_range(image, 0, size).unwrap_or_else(|e| panic!("{name}: map: {e}"));
    let mut pos = 0;
    for e in &extents {
        assert_eq!(e.offset, pos, "{name}: extents tile the disk");
        pos += e.length;
        if e.allocation.reads_as_zero() {
            let mut buf = vec![0u8; e.length.min(8 << 20) as usize];
            image.read_at(&mut buf, e.offset).expect("read");
            assert!(
                buf.iter().all(|&b| b == 0),
                "{name}: extent {e:?} reported as zero holds data"
            );
        }
    }
    assert_eq!(pos, size, "{name}: extents cover the disk");
}

fn check_block_status(name: &str, factory: Factory, size: u64) {
    let (_d, _m, image) = fresh(factory, size);
    assert_block_status_consistent(name, &image);
    let data = prng_bytes(9, 3 * 4096);
    let off = size / 2 / 4096 * 4096;
    image.write_at(&data, off).expect("write");
    let e = image.block_status(off, 4096).expect("status");
    assert_eq!(
        e.allocation,
        vhd::Allocation::Data,
        "{name}: written range is data"
    );
    assert_eq!(e.depth, 0, "{name}: written range is in the top image");
    assert_block_status_consistent(name, &image);
    image.write_zeroes(0, size).expect("zero everything");
    assert_block_status_consistent(name, &image);
}

fn check_reopen(name: &str, factory: Factory, size: u64) {
    let (_d, mut model, image) = fresh(factory, size);
    for i in 0..8u64 {
        let off = (size / 8 * i + 512 * i) % (size - 8192);
        let data = prng_bytes(20 + i, 8192);
        image.write_at(&data, off).expect("write");
        model.expected[off as usize..off as usize + 8192].copy_from_slice(&data);
    }
    image.flush().expect("flush");
    drop(image);
    let image = open_rw(&model.path);
    assert_same(name, &read_all(&image), &model.expected);
    drop(image);
    let image = open_ro(&model.path);
    assert!(image.read_only());
    assert_same(
        &format!("{name} read-only"),
        &read_all(&image),
        &model.expected,
    );
}

fn check_read_only(name: &str, factory: Factory, size: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = factory(dir.path(), size);
    let before = std::fs::read(&made.path).expect("read file");
    let image = open_ro(&made.path);
    let buf = [0xAAu8; 4096];
    assert!(
        matches!(image.write_at(&buf, 0), Err(Error::ReadOnly)),
        "{name}: write"
    );
    assert!(
        matches!(image.write_zeroes(0, 4096), Err(Error::ReadOnly)),
        "{name}: zeroes"
    );
    assert!(
        matches!(image.discard(0, 4096), Err(Error::ReadOnly)),
        "{name}: discard"
    );
    image
        .flush()
        .expect("flushing a read-only image is a no-op");
    drop(image);
    assert!(
        std::fs::read(&made.path).expect("read file") == before,
        "{name}: file unchanged"
    );
}

fn check_threads(name: &str, factory: Factory, size: u64) {
    let (_d, mut model, image) = fresh(factory, size);
    let image = Arc::new(image);
    let threads = 4u64;
    let slice = size / threads / 4096 * 4096;
    std::thread::scope(|s| {
        for t in 0..threads {
            let image = Arc::clone(&image);
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t);
                for i in 0..40u64 {
                    let len = rng.random_range(1..3 * 4096);
                    let off = t * slice + rng.random_range(0..slice - len as u64);
                    let data = prng_bytes(t * 1000 + i, len);
                    image.write_at(&data, off).expect("write");
                    let mut back = vec![0u8; len];
                    image.read_at(&mut back, off).expect("read");
                    assert!(back == data, "thread {t} op {i}: read back differs");
                }
            });
        }
    });
    // Replay the same operations on the model.
    for t in 0..threads {
        let mut rng = SmallRng::seed_from_u64(t);
        for i in 0..40u64 {
            let len = rng.random_range(1..3 * 4096);
            let off = t * slice + rng.random_range(0..slice - len as u64);
            let data = prng_bytes(t * 1000 + i, len);
            model.expected[off as usize..off as usize + len].copy_from_slice(&data);
        }
    }
    assert_same(name, &read_all(image.as_ref()), &model.expected);
}

/// Runs `ops` random operations (writes, reads, write_zeroes, discards,
/// flushes, reopens) on a fresh image and checks every read against an
/// in-memory model.
pub fn model(name: &str, factory: Factory, size: u64, seed: u64, ops: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Made { path, mut expected } = factory(dir.path(), size);
    let mut image = open_rw(&path);
    let unit = boundary_unit(&image);
    let mut rng = SmallRng::seed_from_u64(seed);
    for op in 0..ops {
        let max_len = (3 * unit).min(size);
        let len = match rng.random_range(0..4) {
            0 => rng.random_range(1..=512),
            1 => rng.random_range(1..=64 * 1024),
            2 => 4096 * rng.random_range(1..=16),
            _ => rng.random_range(1..=max_len),
        }
        .min(size);
        let off = if rng.random_bool(0.5) {
            rng.random_range(0..=size - len)
        } else {
            (rng.random_range(0..=(size - len) / 4096)) * 4096
        };
        let (o, l) = (off as usize, len as usize);
        let what = rng.random_range(0..100);
        let ctx = || format!("{name} seed {seed} op {op}: {len} bytes at {off:#x}");
        match what {
            0..=39 => {
                let data = prng_bytes(seed ^ (op as u64) << 20, l);
                image
                    .write_at(&data, off)
                    .unwrap_or_else(|e| panic!("{}: write: {e}", ctx()));
                expected[o..o + l].copy_from_slice(&data);
            }
            40..=69 => {
                let mut buf = vec![0u8; l];
                image
                    .read_at(&mut buf, off)
                    .unwrap_or_else(|e| panic!("{}: read: {e}", ctx()));
                assert_same(&ctx(), &buf, &expected[o..o + l]);
            }
            70..=77 => {
                image
                    .write_zeroes(off, len)
                    .unwrap_or_else(|e| panic!("{}: zeroes: {e}", ctx()));
                expected[o..o + l].fill(0);
            }
            78..=85 => {
                image
                    .discard(off, len)
                    .unwrap_or_else(|e| panic!("{}: discard: {e}", ctx()));
                expected[o..o + l].fill(0);
            }
            86..=93 => image
                .flush()
                .unwrap_or_else(|e| panic!("{}: flush: {e}", ctx())),
            _ => {
                image
                    .flush()
                    .unwrap_or_else(|e| panic!("{}: flush: {e}", ctx()));
                drop(image);
                image = open_rw(&path);
                assert_same(
                    &format!("{} after reopen", ctx()),
                    &read_all(&image),
                    &expected,
                );
            }
        }
    }
    image.flush().expect("final flush");
    assert_same(
        &format!("{name} seed {seed} at the end"),
        &read_all(&image),
        &expected,
    );
    assert_block_status_consistent(name, &image);
    drop(image);
    let image = open_ro(&path);
    assert_same(
        &format!("{name} seed {seed} reopened"),
        &read_all(&image),
        &expected,
    );
}
