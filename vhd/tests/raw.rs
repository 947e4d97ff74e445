//! The raw format through the conformance suite and the model test.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;

use common::Made;
use vhd::{CreateOptions, DiskImage, Format, ImageType};

fn make(kind: ImageType) -> impl Fn(&Path, u64) -> Made + Sync {
    move |dir: &Path, size: u64| {
        let path = dir.join("disk.img");
        vhd::create(&path, &CreateOptions::new(Format::Raw, kind, size)).expect("create raw");
        Made {
            path,
            expected: vec![0; size as usize],
        }
    }
}

#[test]
fn raw_sparse_conforms() {
    common::conformance("raw sparse", &make(ImageType::Dynamic), 8 << 20);
}

#[test]
fn raw_preallocated_conforms() {
    common::conformance("raw preallocated", &make(ImageType::Fixed), 4 << 20);
}

#[test]
fn raw_matches_the_model() {
    for seed in 0..3 {
        common::model("raw", &make(ImageType::Dynamic), 6 << 20, seed, 300);
    }
}

#[test]
fn raw_is_detected_whatever_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("looks-like.vhdx");
    common::write_raw(&path, &common::prng_bytes(3, 1 << 20));
    let image = common::open_ro(&path);
    assert_eq!(image.format(), Format::Raw);
}

#[test]
fn raw_written_image_matches_qemu_img_compare() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.img");
    let expect = dir.path().join("expect.img");
    let data = common::prng_bytes(5, 3 << 20);
    let image = vhd::create(
        &path,
        &CreateOptions::new(Format::Raw, ImageType::Dynamic, 3 << 20),
    )
    .unwrap();

    image.write_at(&data, 0).unwrap();
    image.flush().unwrap();
    common::write_raw(&expect, &data);
    common::qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        path.to_str().unwrap(),
        expect.to_str().unwrap(),
    ]);
}

#[test]
fn raw_read_only_refuses_resize() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.img");
    vhd::create(
        &path,
        &CreateOptions::new(Format::Raw, ImageType::Dynamic, 1 << 20),
    )
    .unwrap();
    let image = common::open_ro(&path);
    assert!(matches!(image.resize(2 << 20), Err(vhd::Error::ReadOnly)));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
}

#[test]
fn an_image_inside_another_file_opens_through_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("package.bin");
    let inner = common::prng_bytes(8, 5000);
    let mut outer = vec![0xEEu8; 1000];
    outer.extend_from_slice(&inner);
    outer.extend_from_slice(&[0xEE; 700]);
    common::write_raw(&path, &outer);
    let image = vhd::open_window(&path, 1000, 5000, &vhd::OpenOptions::read_only()).unwrap();
    assert!(image.read_only());
    assert_eq!(image.virtual_size(), 5000);
    common::assert_same("window", &common::read_all(&image), &inner);
    let mut past = [0u8; 2];
    assert!(image.read_at(&mut past, 4999).is_err());
    assert!(matches!(image.write_at(&[1], 0), Err(vhd::Error::ReadOnly)));
    let e = image.block_status(0, 5000).unwrap();
    assert_eq!((e.offset, e.length), (0, 5000));
    assert!(vhd::open_window(&path, u64::MAX, 2, &vhd::OpenOptions::read_only()).is_err());
}

/// Sequential writes hand write-back to a helper thread, which holds a
/// descriptor of the file while advice waits in its queue: a closed image
/// must still reopen for writing at once, and every byte streamed through
/// write-behind must be there.
#[test]
fn streamed_image_reopens_for_writing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let size = 64u64 << 20;
    for round in 0..3u8 {
        let img = if round == 0 {
            vhd::create(
                &path,
                &CreateOptions::new(Format::Raw, ImageType::Dynamic, size),
            )
            .unwrap()
        } else {
            vhd::open(&path, &vhd::OpenOptions::default())
                .unwrap_or_else(|e| panic!("round {round}: reopening at once: {e}"))
        };
        let chunk = vec![round.wrapping_add(1); 1 << 20];
        for i in 0..size >> 20 {
            img.write_at(&chunk, i << 20).unwrap();
        }
        img.flush().unwrap();
    }
    let img = vhd::open(&path, &vhd::OpenOptions::read_only()).unwrap();
    let mut got = vec![0u8; 1 << 20];
    for i in 0..size >> 20 {
        img.read_at(&mut got, i << 20).unwrap();
        assert!(got.iter().all(|&b| b == 3), "MiB {i}");
    }
}
