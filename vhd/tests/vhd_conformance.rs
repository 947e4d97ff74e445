//! VHD (fixed, dynamic, differencing) through the conformance suite and the
//! model test.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;

use common::Made;
use vhd::{CreateOptions, DiskImage, Format, ImageType};

fn make(kind: ImageType, block_size: Option<u64>) -> impl Fn(&Path, u64) -> Made + Sync {
    move |dir: &Path, size: u64| {
        let path = dir.join("disk.vhd");
        let mut o = CreateOptions::new(Format::Vhd, kind, size);
        o.block_size = block_size;
        vhd::create(&path, &o).expect("create vhd");
        Made {
            path,
            expected: vec![0; size as usize],
        }
    }
}

/// A differencing VHD over a parent of `parent_format` that holds seeded
/// data in every other 1 MiB run.
fn make_differencing(parent_format: Format) -> impl Fn(&Path, u64) -> Made + Sync {
    move |dir: &Path, size: u64| {
        let parent = dir.join("parent.img");
        let kind = match parent_format {
            Format::Raw => ImageType::Fixed,
            _ => ImageType::Dynamic,
        };
        let mut data = common::prng_bytes(size, size as usize);
        for (i, run) in data.chunks_mut(1 << 20).enumerate() {
            if i % 2 == 1 {
                run.fill(0);
            }
        }
        {
            let p = vhd::create(&parent, &CreateOptions::new(parent_format, kind, size))
                .expect("create parent");
            for (i, run) in data.chunks(1 << 20).enumerate() {
                if i % 2 == 0 {
                    p.write_at(run, (i as u64) << 20).expect("fill parent");
                }
            }
            p.flush().expect("flush parent");
        }
        let path = dir.join("child.vhd");
        vhd::create(&path, &CreateOptions::differencing(Format::Vhd, &parent))
            .expect("create child");
        Made {
            path,
            expected: data,
        }
    }
}

#[test]
fn vhd_fixed_conforms() {
    common::conformance("vhd fixed", &make(ImageType::Fixed, None), 6 << 20);
}

#[test]
fn vhd_dynamic_conforms() {
    common::conformance("vhd dynamic", &make(ImageType::Dynamic, None), 8 << 20);
}

#[test]
fn vhd_dynamic_small_blocks_conform() {
    common::conformance(
        "vhd dynamic 64k blocks",
        &make(ImageType::Dynamic, Some(64 << 10)),
        (3 << 20) + 512,
    );
}

#[test]
fn vhd_differencing_conforms() {
    common::conformance(
        "vhd differencing over vhd",
        &make_differencing(Format::Vhd),
        8 << 20,
    );
}

#[test]
fn vhd_differencing_over_raw_conforms() {
    common::conformance(
        "vhd differencing over raw",
        &make_differencing(Format::Raw),
        (6 << 20) + 1024,
    );
}

#[test]
fn vhd_matches_the_model() {
    for seed in 0..2 {
        common::model(
            "vhd fixed",
            &make(ImageType::Fixed, None),
            5 << 20,
            seed,
            250,
        );
        common::model(
            "vhd dynamic",
            &make(ImageType::Dynamic, None),
            (7 << 20) + 512,
            seed,
            250,
        );
        common::model(
            "vhd dynamic 4k blocks",
            &make(ImageType::Dynamic, Some(4096)),
            1 << 20,
            seed,
            250,
        );
        common::model(
            "vhd differencing",
            &make_differencing(Format::Vhd),
            6 << 20,
            seed,
            250,
        );
    }
}
