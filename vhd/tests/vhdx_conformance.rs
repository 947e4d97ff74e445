//! VHDX through the shared conformance suite and the model test: every
//! image type, both logical sector sizes, small blocks so that requests
//! cross block and chunk boundaries.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;

use common::Made;
use vhd::{CreateOptions, DiskImage, Format, ImageType};

const MIB: u64 = 1 << 20;

fn make(kind: ImageType, lss: u32) -> impl Fn(&Path, u64) -> Made + Sync {
    move |dir: &Path, size: u64| {
        let path = dir.join("disk.vhdx");
        let mut o = CreateOptions::new(Format::Vhdx, kind, size);
        o.block_size = Some(MIB);
        o.logical_sector_size = lss;
        vhd::create(&path, &o).expect("create vhdx");
        Made {
            path,
            expected: vec![0; size as usize],
        }
    }
}

/// A differencing image over a dynamic parent holding seeded data (with
/// holes), so that reads must merge the two.
fn make_differencing(lss: u32) -> impl Fn(&Path, u64) -> Made + Sync {
    move |dir: &Path, size: u64| {
        let parent = dir.join("parent.vhdx");
        let mut o = CreateOptions::new(Format::Vhdx, ImageType::Dynamic, size);
        o.block_size = Some(MIB);
        o.logical_sector_size = lss;
        let mut expected = common::prng_bytes(u64::from(lss), size as usize);
        expected[..(size / 4) as usize].fill(0);
        {
            let p = vhd::create(&parent, &o).expect("create parent");
            p.write_at(&expected[(size / 4) as usize..], size / 4)
                .expect("fill parent");
        }
        let path = dir.join("child.vhdx");
        let mut d = CreateOptions::differencing(Format::Vhdx, &parent);
        d.block_size = Some(MIB);
        d.logical_sector_size = lss;
        vhd::create(&path, &d).expect("create child");
        Made { path, expected }
    }
}

#[test]
fn vhdx_dynamic_conforms() {
    for lss in [512, 4096] {
        common::conformance(
            &format!("vhdx dynamic {lss}"),
            &make(ImageType::Dynamic, lss),
            8 * MIB,
        );
    }
}

#[test]
fn vhdx_fixed_conforms() {
    for lss in [512, 4096] {
        common::conformance(
            &format!("vhdx fixed {lss}"),
            &make(ImageType::Fixed, lss),
            6 * MIB,
        );
    }
}

#[test]
fn vhdx_differencing_conforms() {
    for lss in [512, 4096] {
        common::conformance(
            &format!("vhdx differencing {lss}"),
            &make_differencing(lss),
            8 * MIB,
        );
    }
}

#[test]
fn vhdx_matches_the_model() {
    for (i, lss) in [512u32, 4096].into_iter().enumerate() {
        let seed = i as u64;
        common::model(
            "vhdx dynamic",
            &make(ImageType::Dynamic, lss),
            6 * MIB,
            seed,
            200,
        );
        common::model(
            "vhdx fixed",
            &make(ImageType::Fixed, lss),
            4 * MIB,
            seed,
            100,
        );
        common::model(
            "vhdx differencing",
            &make_differencing(lss),
            6 * MIB,
            seed,
            200,
        );
    }
}
