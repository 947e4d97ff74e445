//! Whole-image operations (convert, compare, bench) on raw images; the
//! format test files run them on their own formats.
#![allow(clippy::cast_possible_truncation)]

mod common;

use vhd::ops::{self, BenchOptions, BenchPattern, ConvertOptions, Difference};
use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

fn raw_with_holes(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("src.img");
    let size = 24usize << 20;
    let image = vhd::create(
        &path,
        &CreateOptions::new(Format::Raw, ImageType::Dynamic, size as u64),
    )
    .unwrap();
    let mut expected = vec![0u8; size];
    for (i, off) in [0usize, 5 << 20, (13 << 20) + 4096, size - 70_000]
        .iter()
        .enumerate()
    {
        let data = common::prng_bytes(i as u64, 70_000);
        image.write_at(&data, *off as u64).unwrap();
        expected[*off..*off + data.len()].copy_from_slice(&data);
    }
    image.flush().unwrap();
    (path, expected)
}

#[test]
fn convert_copies_only_data_and_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (src, expected) = raw_with_holes(dir.path());
    let source = common::open_ro(&src);
    let dest = dir.path().join("out.img");
    let opts = ConvertOptions {
        create: CreateOptions::new(Format::Raw, ImageType::Dynamic, 0),
    };
    let stats = ops::convert(&source, &dest, &opts, None).unwrap();
    assert_eq!(stats.virtual_size, expected.len() as u64);
    assert!(stats.bytes_read < 16 << 20, "holes were read: {stats:?}");
    assert!(
        stats.bytes_written <= 4 * 70_000 + 4 * (64 << 10),
        "{stats:?}"
    );
    let out = common::open_ro(&dest);
    common::assert_same("converted", &common::read_all(&out), &expected);
    assert_eq!(ops::compare(&source, &out).unwrap(), None);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn convert_refuses_to_write_onto_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let (src, expected) = raw_with_holes(dir.path());
    let source = common::open_ro(&src);
    let opts = ConvertOptions {
        create: CreateOptions::new(Format::Raw, ImageType::Dynamic, 0),
    };
    // Through another name for the same file, too.
    let link = dir.path().join("link.img");
    std::fs::hard_link(&src, &link).unwrap();
    for dest in [&src, &link] {
        let err = ops::convert(&source, dest, &opts, None).unwrap_err();
        assert!(err.to_string().contains("onto the input"), "{err}");
    }
    common::assert_same("input untouched", &std::fs::read(&src).unwrap(), &expected);
}

#[test]
fn compare_reports_the_first_difference_and_size_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = raw_with_holes(dir.path());
    let copy = dir.path().join("copy.img");
    std::fs::copy(&src, &copy).unwrap();
    let a = common::open_ro(&src);
    {
        let b = common::open_rw(&copy);
        b.write_at(&[0x5a], (7 << 20) + 3).unwrap();
        b.flush().unwrap();
    }
    let b = common::open_ro(&copy);
    assert_eq!(
        ops::compare(&a, &b).unwrap(),
        Some(Difference::Content {
            offset: (7 << 20) + 3
        })
    );
    let small = dir.path().join("small.img");
    vhd::create(
        &small,
        &CreateOptions::new(Format::Raw, ImageType::Dynamic, 1 << 20),
    )
    .unwrap();
    let s = common::open_ro(&small);
    let e = common::open_ro(&dir.path().join("small.img"));
    assert_eq!(ops::compare(&s, &e).unwrap(), None);
    let big = dir.path().join("big.img");
    vhd::create(
        &big,
        &CreateOptions::new(Format::Raw, ImageType::Dynamic, 2 << 20),
    )
    .unwrap();
    assert_eq!(
        ops::compare(&s, &common::open_ro(&big)).unwrap(),
        Some(Difference::Size {
            a: 1 << 20,
            b: 2 << 20
        })
    );
}

#[test]
fn bench_writes_a_verifiable_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.img");
    let image = vhd::create(
        &path,
        &CreateOptions::new(Format::Raw, ImageType::Dynamic, 4 << 20),
    )
    .unwrap();
    for pattern in [BenchPattern::Sequential, BenchPattern::Random] {
        let r = ops::bench(
            &image,
            &BenchOptions {
                write: true,
                pattern,
                block_size: 4096,
                count: 300,
                step: None,
                offset: 0,
                threads: 2,
                flush_every: Some(50),
            },
        )
        .unwrap();
        assert_eq!(r.ops, 300);
        assert_eq!(r.bytes, 300 * 4096);
    }
    // Every block written holds its own offsets; unwritten ones are zero.
    let data = common::read_all(&image);
    let mut written = 0;
    for (i, block) in data.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            written += 1;
            assert_eq!(
                ops::check_pattern(block, i as u64 * 4096),
                None,
                "block {i}"
            );
        }
    }
    assert!(written >= 300, "sequential part wrote {written} blocks");
    let ro = vhd::open(&path, &OpenOptions::read_only()).unwrap();
    let err = ops::bench(
        &ro,
        &BenchOptions {
            write: true,
            pattern: BenchPattern::Sequential,
            block_size: 4096,
            count: 1,
            step: None,
            offset: 0,
            threads: 1,
            flush_every: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, vhd::Error::ReadOnly));
}
