//! Crafted bad VHDX images: each gives a typed error, never a panic, a hang
//! or an allocation the size of a lie.
#![allow(clippy::cast_possible_truncation)]

mod vhdx_support;

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{CreateOptions, DiskImage, ErrorKind, Format, ImageType, OpenOptions};
use vhdx_support::MIB;

const HEADER: [u64; 2] = [64 << 10, 128 << 10];
const REGIONS: [u64; 2] = [192 << 10, 256 << 10];
/// Where `create` puts things.
const METADATA: u64 = 2 * MIB;
const ITEMS: u64 = METADATA + (64 << 10);
const BAT: u64 = 3 * MIB;

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut o = CreateOptions::new(Format::Vhdx, ImageType::Dynamic, 8 * MIB);
    o.block_size = Some(MIB);
    let img = vhd::create(&path, &o).unwrap();
    img.write_at(&[0x5Au8; 4096], 0).unwrap();
    drop(img);
    path
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let mut f = std::fs::read(path).unwrap();
    f[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, f).unwrap();
}

/// Recomputes the CRC-32C of the structure of `len` bytes at `at`.
fn reseal(path: &Path, at: u64, len: usize) {
    let mut f = std::fs::read(path).unwrap();
    let s = &mut f[at as usize..at as usize + len];
    s[4..8].fill(0);
    let c = crc32c::crc32c(s);
    s[4..8].copy_from_slice(&c.to_le_bytes());
    std::fs::write(path, f).unwrap();
}

fn read_u64(path: &Path, at: u64) -> u64 {
    let f = std::fs::read(path).unwrap();
    u64::from_le_bytes(f[at as usize..at as usize + 8].try_into().unwrap())
}

/// The current header's slot.
fn current_slot(path: &Path) -> usize {
    let (a, b) = (read_u64(path, HEADER[0] + 8), read_u64(path, HEADER[1] + 8));
    if a >= b { 0 } else { 1 }
}

fn open_err(path: &Path) -> vhd::Error {
    match vhd::open(path, &OpenOptions::read_only()) {
        Ok(i) => panic!("{} opened: {:?}", path.display(), i.info()),
        Err(e) => e,
    }
}

#[test]
fn bad_block_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bs in [0u32, 3 << 20, 0x8000_0000, 512 << 20, 4096] {
        let p = fresh(dir.path(), &format!("bs{bs}.vhdx"));
        patch(&p, ITEMS, &bs.to_le_bytes());
        let e = open_err(&p);
        assert_eq!(e.kind(), ErrorKind::Corrupt, "block size {bs}: {e}");
        assert!(!vhd::check(&p, false).unwrap().is_clean());
    }
}

#[test]
fn bad_sector_sizes_and_disk_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (at, v)) in [
        (ITEMS + 0x20, 1024u64),
        (ITEMS + 0x20, 0),
        (ITEMS + 0x24, 8192),
    ]
    .into_iter()
    .enumerate()
    {
        let p = fresh(dir.path(), &format!("ss{i}.vhdx"));
        patch(&p, at, &(v as u32).to_le_bytes());
        assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt, "case {i}");
    }
    for (i, size) in [0u64, 8 * MIB + 100, 65 << 40, 64 << 40]
        .into_iter()
        .enumerate()
    {
        let p = fresh(dir.path(), &format!("vs{i}.vhdx"));
        patch(&p, ITEMS + 8, &size.to_le_bytes());
        // The last one is a valid size, but the 1 MiB BAT cannot hold it.
        assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt, "size {size}");
    }
}

#[test]
fn bat_entries_outside_the_data_area_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (i, entry) in [
        6u64,                 // fully present at offset 0: the header section
        6 | (1 << 20),        // the log
        6 | (2 << 20),        // the metadata region
        6 | (3 << 20),        // the BAT
        6 | (5000 << 20),     // past the end of the file
        7 | (8 << 20),        // partially present without a parent
        4,                    // a reserved state
        6 | (u64::MAX << 20), // offset overflows
    ]
    .into_iter()
    .enumerate()
    {
        let p = fresh(dir.path(), &format!("bat{i}.vhdx"));
        patch(&p, BAT + 8, &entry.to_le_bytes());
        let img = vhd::open(&p, &OpenOptions::default()).unwrap();
        let mut buf = vec![0u8; 4096];
        let e = img.read_at(&mut buf, MIB).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "entry {entry:#x}: {e}");
        let e = img.write_at(&buf, MIB).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "entry {entry:#x}: {e}");
        assert!(img.block_status(MIB, 4096).is_err());
        // Block 0 is still fine.
        img.read_at(&mut buf, 0).unwrap();
        assert!(buf.iter().all(|&b| b == 0x5A));
        drop(img);
        let report = vhd::check(&p, false).unwrap();
        assert!(!report.is_clean(), "check misses entry {entry:#x}");
    }
}

#[test]
fn overlapping_and_wrapping_regions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Entry 0 is the BAT: its offset is at byte 16 + 16 of the table.
    for (i, offset) in [METADATA, 0xFFFF_FFFF_FFF0_0000, 0, 4096 + MIB]
        .into_iter()
        .enumerate()
    {
        let p = fresh(dir.path(), &format!("rg{i}.vhdx"));
        for t in REGIONS {
            patch(&p, t + 32, &offset.to_le_bytes());
            reseal(&p, t, 64 << 10);
        }
        assert_eq!(
            open_err(&p).kind(),
            ErrorKind::Corrupt,
            "offset {offset:#x}"
        );
    }
    // Too many entries.
    let p = fresh(dir.path(), "count.vhdx");
    for t in REGIONS {
        patch(&p, t + 8, &2048u32.to_le_bytes());
        reseal(&p, t, 64 << 10);
    }
    assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt);
    // Both copies damaged.
    let p = fresh(dir.path(), "both.vhdx");
    patch(&p, REGIONS[0] + 40, &[1]);
    patch(&p, REGIONS[1] + 40, &[1]);
    assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt);
    // Only the first copy damaged: the second one serves.
    let p = fresh(dir.path(), "first.vhdx");
    patch(&p, REGIONS[0] + 40, &[1]);
    vhd::open(&p, &OpenOptions::read_only()).unwrap();
}

#[test]
fn unknown_required_structures_are_refused_optional_ones_ignored() {
    let dir = tempfile::tempdir().unwrap();
    for required in [false, true] {
        // A third region.
        let p = fresh(dir.path(), &format!("region{required}.vhdx"));
        for t in REGIONS {
            patch(&p, t + 8, &3u32.to_le_bytes());
            let e = t + 16 + 2 * 32;
            patch(&p, e, &[0x42; 16]);
            patch(&p, e + 16, &(64 * MIB).to_le_bytes());
            patch(&p, e + 24, &(1u32 << 20).to_le_bytes());
            patch(&p, e + 28, &u32::from(required).to_le_bytes());
            reseal(&p, t, 64 << 10);
        }
        match vhd::open(&p, &OpenOptions::read_only()) {
            Ok(_) => assert!(!required),
            Err(e) => {
                assert!(required, "{e}");
                assert_eq!(e.kind(), ErrorKind::Unsupported);
                assert!(e.to_string().contains("required"), "{e}");
            }
        }
        // A sixth metadata item.
        let p = fresh(dir.path(), &format!("item{required}.vhdx"));
        patch(&p, METADATA + 10, &6u16.to_le_bytes());
        let e = METADATA + 32 + 5 * 32;
        patch(&p, e, &[0x43; 16]);
        patch(&p, e + 16, &0x20000u32.to_le_bytes());
        patch(&p, e + 20, &8u32.to_le_bytes());
        patch(&p, e + 24, &(if required { 4u32 } else { 0 }).to_le_bytes());
        match vhd::open(&p, &OpenOptions::read_only()) {
            Ok(_) => assert!(!required),
            Err(e) => {
                assert!(required, "{e}");
                assert_eq!(e.kind(), ErrorKind::Unsupported);
            }
        }
    }
}

#[test]
fn overlapping_and_duplicate_metadata_items_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = fresh(dir.path(), "overlap.vhdx");
    // Item 1 (virtual disk size) moved onto item 0 (file parameters).
    patch(&p, METADATA + 32 + 32 + 16, &0x10004u32.to_le_bytes());
    assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt);
    let p = fresh(dir.path(), "dup.vhdx");
    let f = std::fs::read(&p).unwrap();
    let id0 = f[(METADATA + 32) as usize..(METADATA + 48) as usize].to_vec();
    patch(&p, METADATA + 64, &id0);
    assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt);
    let p = fresh(dir.path(), "past.vhdx");
    patch(&p, METADATA + 32 + 16, &0xFFFF_FFF0u32.to_le_bytes());
    assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt);
}

#[test]
fn header_sequence_rules() {
    let dir = tempfile::tempdir().unwrap();
    // Equal sequence numbers, different contents.
    let p = fresh(dir.path(), "eq.vhdx");
    let seq = read_u64(&p, HEADER[current_slot(&p)] + 8);
    for h in HEADER {
        patch(&p, h + 8, &seq.to_le_bytes());
        reseal(&p, h, 4096);
    }
    assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt);
    // Equal and byte-identical (as Disk2VHD writes them): valid.
    let f = std::fs::read(&p).unwrap();
    let h0 = f[HEADER[0] as usize..HEADER[0] as usize + 4096].to_vec();
    patch(&p, HEADER[1], &h0);
    vhd::open(&p, &OpenOptions::read_only()).unwrap();
    // Sequence number at the maximum: readable, but no update can follow.
    let p = fresh(dir.path(), "max.vhdx");
    let slot = current_slot(&p);
    patch(&p, HEADER[slot] + 8, &u64::MAX.to_le_bytes());
    reseal(&p, HEADER[slot], 4096);
    let img = vhd::open(&p, &OpenOptions::default()).unwrap();
    let mut buf = [0u8; 512];
    img.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0x5A; 512]);
    let e = img.write_at(&buf, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    drop(img);
    // Both headers damaged.
    let p = fresh(dir.path(), "nohead.vhdx");
    patch(&p, HEADER[0] + 100, &[1]);
    patch(&p, HEADER[1] + 100, &[1]);
    assert_eq!(open_err(&p).kind(), ErrorKind::Corrupt);
    // A header version this implementation does not know.
    let p = fresh(dir.path(), "version.vhdx");
    let slot = current_slot(&p);
    patch(&p, HEADER[slot] + 66, &2u16.to_le_bytes());
    reseal(&p, HEADER[slot], 4096);
    assert_eq!(open_err(&p).kind(), ErrorKind::Unsupported);
}

#[test]
fn huge_declared_disks_open_without_allocating_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.vhdx");
    let mut o = CreateOptions::new(Format::Vhdx, ImageType::Dynamic, 64 << 40);
    o.block_size = Some(MIB);
    drop(vhd::create(&path, &o).unwrap());
    {
        let img = vhd::open(&path, &OpenOptions::default()).unwrap();
        assert_eq!(img.virtual_size(), 64 << 40);
        let mut buf = [0u8; 4096];
        img.read_at(&mut buf, (64 << 40) - 4096).unwrap();
        img.write_at(&[3u8; 4096], (40 << 40) + 512).unwrap();
        img.read_at(&mut buf, (40 << 40) + 512).unwrap();
        assert_eq!(buf, [3u8; 4096]);
    }
    // Cut below the BAT: the BAT reads as empty; reads give zeros.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(3 * MIB + 4096).unwrap();
    let img = vhd::open(&path, &OpenOptions::read_only()).unwrap();
    let mut buf = [1u8; 4096];
    img.read_at(&mut buf, 40 << 40).unwrap();
    assert_eq!(buf, [0u8; 4096]);
    drop(img);
    // Under 1 MiB: the metadata region is gone.
    f.set_len(900 << 10).unwrap();
    assert_eq!(open_err(&path).kind(), ErrorKind::Corrupt);
}

#[test]
fn random_damage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let clean = std::fs::read(fresh(dir.path(), "clean.vhdx")).unwrap();
    let path = dir.path().join("damaged.vhdx");
    let mut rng = SmallRng::seed_from_u64(7);
    // The places that matter: headers, region tables, metadata table and
    // items, the first BAT page.
    let spots: [(u64, u64); 6] = [
        (HEADER[0], 128),
        (HEADER[1], 128),
        (REGIONS[0], 128),
        (METADATA, 256),
        (ITEMS, 64),
        (BAT, 64),
    ];
    for round in 0..300 {
        let mut f = clean.clone();
        let (at, len) = spots[round % spots.len()];
        for _ in 0..rng.random_range(1..4) {
            let i = (at + rng.random_range(0..len)) as usize;
            f[i] = rng.random();
        }
        // Keep checksums right half of the time so that the fields
        // themselves are exercised.
        if round % 2 == 0 {
            for (s, l) in [
                (HEADER[0], 4096usize),
                (HEADER[1], 4096),
                (REGIONS[0], 65536),
            ] {
                let s = s as usize;
                f[s + 4..s + 8].fill(0);
                let c = crc32c::crc32c(&f[s..s + l]);
                f[s + 4..s + 8].copy_from_slice(&c.to_le_bytes());
            }
        }
        std::fs::write(&path, &f).unwrap();
        if let Ok(img) = vhd::open(&path, &OpenOptions::read_only()) {
            let size = img.virtual_size().min(16 * MIB);
            let mut buf = vec![0u8; 64 << 10];
            let mut off = 0;
            while off + buf.len() as u64 <= size {
                let _ = img.read_at(&mut buf, off);
                off += 1 << 20;
            }
            let _ = img.block_status(0, size.max(1));
        }
        let _ = vhd::check(&path, false);
    }
}
