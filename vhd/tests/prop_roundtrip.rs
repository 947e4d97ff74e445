//! Property tests of the round trips the disk layer defines: create then
//! parse (every format, type and parameter an image can be created with
//! opens with exactly those parameters), and write then read (any sequence
//! of writes, zeroings and discards reads back as a byte model of the disk,
//! before and after a reopen, staging or not, through differencing children
//! too).

use std::path::Path;

use proptest::prelude::*;
use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

/// One change to the disk.
#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, len: u64, seed: u8 },
    Zero { offset: u64, len: u64 },
    Discard { offset: u64, len: u64 },
}

/// A disk of this many bytes keeps every case quick while crossing blocks
/// (1 MiB blocks where the format allows).
const SIZE: u64 = 4 << 20;

fn op(sector: u64) -> impl Strategy<Value = Op> {
    let sectors = SIZE / sector;
    let range = (0..sectors, 1..=(3 << 20) / sector).prop_map(move |(s, n)| {
        let n = n.min(sectors - s);
        (s * sector, n * sector)
    });
    prop_oneof![
        4 => (range.clone(), any::<u8>()).prop_map(|((offset, len), seed)| Op::Write { offset, len, seed }),
        1 => range.clone().prop_map(|(offset, len)| Op::Zero { offset, len }),
        1 => range.prop_map(|(offset, len)| Op::Discard { offset, len }),
    ]
}

fn pattern(len: u64, offset: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (((offset + i) % 251) as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                | 1
        })
        .collect()
}

fn apply(image: &dyn DiskImage, model: &mut [u8], op: &Op) {
    let r = |o: u64, l: u64| usize::try_from(o).unwrap()..usize::try_from(o + l).unwrap();
    match *op {
        Op::Write { offset, len, seed } => {
            let data = pattern(len, offset, seed);
            image.write_at(&data, offset).unwrap();
            model[r(offset, len)].copy_from_slice(&data);
        }
        Op::Zero { offset, len } => {
            image.write_zeroes(offset, len).unwrap();
            model[r(offset, len)].fill(0);
        }
        Op::Discard { offset, len } => {
            image.discard(offset, len).unwrap();
            model[r(offset, len)].fill(0);
        }
    }
}

fn assert_reads(image: &dyn DiskImage, model: &[u8]) -> Result<(), TestCaseError> {
    let mut got = vec![0u8; model.len()];
    image.read_at(&mut got, 0).unwrap();
    if let Some(i) = got.iter().zip(model).position(|(a, b)| a != b) {
        return Err(TestCaseError::fail(format!(
            "first difference at byte {i:#x}: read {:#04x}, expected {:#04x}",
            got[i], model[i]
        )));
    }
    Ok(())
}

fn kinds() -> impl Strategy<Value = (Format, ImageType, u32)> {
    prop_oneof![
        Just((Format::Raw, ImageType::Fixed, 512)),
        Just((Format::Vhd, ImageType::Fixed, 512)),
        Just((Format::Vhd, ImageType::Dynamic, 512)),
        Just((Format::Vhdx, ImageType::Fixed, 512)),
        Just((Format::Vhdx, ImageType::Dynamic, 512)),
        Just((Format::Vhdx, ImageType::Dynamic, 4096)),
    ]
}

fn create(path: &Path, format: Format, image_type: ImageType, sector: u32) -> vhd::Image {
    let mut o = CreateOptions::new(format, image_type, SIZE);
    o.logical_sector_size = sector;
    if format != Format::Raw && image_type == ImageType::Dynamic {
        o.block_size = Some(if format == Format::Vhd {
            512 << 10
        } else {
            1 << 20
        });
    }
    vhd::create(path, &o).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn write_then_read(
        ((format, image_type, sector), ops) in kinds().prop_flat_map(|k| {
            (Just(k), prop::collection::vec(op(u64::from(k.2)), 1..12))
        }),
        staging in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let image = create(&path, format, image_type, sector);
        // A staging image is written behind; the final flush must still
        // leave a complete, consistent image.
        image.set_staging(staging);
        let mut model = vec![0u8; usize::try_from(SIZE).unwrap()];
        for op in &ops {
            apply(&image, &mut model, op);
        }
        assert_reads(&image, &model)?;
        image.flush().unwrap();
        drop(image);
        let image = vhd::open(&path, &OpenOptions::read_only()).unwrap();
        assert_reads(&image, &model)?;
        prop_assert!(vhd::check(&path, false).unwrap().is_clean());
    }

    #[test]
    fn differencing_child_reads_parent_under_its_own_writes(
        format in prop_oneof![Just(Format::Vhd), Just(Format::Vhdx)],
        parent_ops in prop::collection::vec(op(512), 1..6),
        child_ops in prop::collection::vec(op(512), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let parent_path = dir.path().join("parent");
        let parent = create(&parent_path, format, ImageType::Dynamic, 512);
        let mut model = vec![0u8; usize::try_from(SIZE).unwrap()];
        for op in &parent_ops {
            apply(&parent, &mut model, op);
        }
        parent.flush().unwrap();
        drop(parent);
        let child_path = dir.path().join("child");
        drop(vhd::create(&child_path, &CreateOptions::differencing(format, &parent_path)).unwrap());
        let options = OpenOptions {
            allowed_parent_dirs: Some(vec![dir.path().to_path_buf()]),
            ..OpenOptions::default()
        };
        let child = vhd::open(&child_path, &options).unwrap();
        for op in &child_ops {
            apply(&child, &mut model, op);
        }
        assert_reads(&child, &model)?;
        child.flush().unwrap();
        drop(child);
        let child = vhd::open(&child_path, &options).unwrap();
        assert_reads(&child, &model)?;
    }

    #[test]
    fn create_then_parse(
        (format, image_type, sector) in kinds(),
        physical_4k in any::<bool>(),
        megabytes in 1u64..=64,
        block_shift in 20u32..=23,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let size = megabytes << 20;
        let mut o = CreateOptions::new(format, image_type, size);
        o.logical_sector_size = sector;
        if format == Format::Vhdx {
            o.physical_sector_size = Some(if physical_4k { 4096 } else { 512 });
        }
        let dynamic = format != Format::Raw && image_type == ImageType::Dynamic;
        if dynamic {
            o.block_size = Some(1 << block_shift);
        }
        drop(vhd::create(&path, &o).unwrap());
        let image = vhd::open(&path, &OpenOptions::read_only()).unwrap();
        let info = image.info();
        prop_assert_eq!(info.format, format);
        prop_assert_eq!(info.image_type, image_type);
        prop_assert_eq!(image.logical_sector_size(), sector);
        if format == Format::Vhd {
            // VHD sizes follow the footer's geometry: never smaller.
            prop_assert!(image.virtual_size() >= size);
            prop_assert_eq!(image.virtual_size() % 512, 0);
        } else {
            prop_assert_eq!(image.virtual_size(), size);
        }
        if format == Format::Vhdx {
            prop_assert_eq!(image.physical_sector_size(), if physical_4k { 4096 } else { 512 });
        }
        if dynamic {
            prop_assert_eq!(info.block_size, Some(1u64 << block_shift));
        }
        // A new image reads as zeros.
        let mut buf = vec![0xffu8; 1 << 20];
        image.read_at(&mut buf, 0).unwrap();
        prop_assert!(buf.iter().all(|b| *b == 0));
        prop_assert!(vhd::check(&path, false).unwrap().is_clean());
    }
}
