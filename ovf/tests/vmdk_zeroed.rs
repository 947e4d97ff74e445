//! Zeroed grain-table entries (the header's zeroed-grain flag, a
//! grain-table entry of 1): found by the one-pass reader in both stream
//! layouts, read by qemu-img as zeros, and written as zeros over a parent
//! where holes leave the parent's data.
#![allow(clippy::cast_possible_truncation)]

use std::io::Write;
use std::process::Command;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use ovf::vmdk::{
    FLAG_ZEROED_GTE, GD_AT_END, RawHeader, StreamReader, StreamWriter, VmdkError, WriterOptions,
    copy_vmdk_delta_to,
};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use vhd::DiskImage;

const GRAIN: usize = 64 << 10;

/// Grain kinds: 'd' data, '0' zero grain, 'z' zeroed entry, '.' hole.
fn stream(pattern: &str, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let size = pattern.len() * GRAIN;
    let options = WriterOptions {
        zeroed_grain_gtes: true,
        ..WriterOptions::default()
    };
    let mut w = StreamWriter::new(Vec::new(), size as u64, options).unwrap();
    let mut content = vec![0u8; size];
    let mut rng = SmallRng::seed_from_u64(seed);
    for (g, c) in pattern.chars().enumerate() {
        let at = (g * GRAIN) as u64;
        match c {
            'd' => {
                let grain = &mut content[g * GRAIN..(g + 1) * GRAIN];
                rng.fill_bytes(grain);
                w.write_grain(at, grain).unwrap();
            }
            '0' => w.write_grain(at, &[0u8; GRAIN]).unwrap(),
            'z' => w.write_zeroed_grain(at).unwrap(),
            _ => {}
        }
    }
    (w.finish().unwrap(), content)
}

fn ranges_of(pattern: &str, kind: char) -> Vec<std::ops::Range<u64>> {
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for (g, c) in pattern.chars().enumerate() {
        if c != kind {
            continue;
        }
        let r = (g * GRAIN) as u64..((g + 1) * GRAIN) as u64;
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// Reads every grain; returns the reader at the end of the stream.
fn drain(bytes: &[u8]) -> Result<StreamReader<&[u8]>, VmdkError> {
    let mut r = StreamReader::new(bytes)?;
    while r.next_grain()?.is_some() {}
    Ok(r)
}

// Spans two grain tables (512 grains each) so that entries are placed by
// the directory at the end of the stream.
fn long_pattern() -> String {
    let mut p = String::new();
    for i in 0..700 {
        p.push(match i % 7 {
            0 | 3 => 'd',
            1 => 'z',
            2 => '.',
            4 => '0',
            5 => 'z',
            _ => '.',
        });
    }
    p.push_str("zz");
    p
}

#[test]
fn the_reader_finds_zeroed_entries_with_the_directory_at_the_end() {
    let pattern = long_pattern();
    let (bytes, _) = stream(&pattern, 1);
    let r = drain(&bytes).unwrap();
    assert_eq!(r.zeroed_grains(), ranges_of(&pattern, 'z').as_slice());
    // Without the flag the same tables are skipped and nothing is reported.
    let mut w = StreamWriter::new(Vec::new(), 4 * GRAIN as u64, WriterOptions::default()).unwrap();
    w.write_grain(0, &[1u8; GRAIN]).unwrap();
    assert!(w.write_zeroed_grain(GRAIN as u64).is_err());
    let plain = w.finish().unwrap();
    assert!(drain(&plain).unwrap().zeroed_grains().is_empty());
}

#[test]
fn qemu_img_reads_zeroed_entries_as_zeros() {
    let pattern = long_pattern();
    let (bytes, content) = stream(&pattern, 2);
    let dir = tempfile::tempdir().unwrap();
    let vmdk = dir.path().join("zeroed.vmdk");
    let raw = dir.path().join("expected.raw");
    std::fs::write(&vmdk, &bytes).unwrap();
    std::fs::write(&raw, &content).unwrap();
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(&vmdk)
        .arg(&raw)
        .output()
        .expect("running qemu-img (is it installed?)");
    assert!(
        out.status.success(),
        "qemu-img compare: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn over_a_parent_holes_keep_its_data_and_zeros_hide_it() {
    let pattern = "d0z.dz..0d";
    let (bytes, content) = stream(pattern, 3);
    let dir = tempfile::tempdir().unwrap();
    let size = (pattern.len() * GRAIN) as u64;
    let target = vhd::create(
        &dir.path().join("t.raw"),
        &vhd::CreateOptions::new(vhd::Format::Raw, vhd::ImageType::Fixed, size),
    )
    .unwrap();
    // The "parent's" data everywhere.
    target.write_at(&vec![0xAAu8; size as usize], 0).unwrap();
    let (stats, covered) = copy_vmdk_delta_to(&bytes[..], &target, true).unwrap();
    assert_eq!(stats.zeroed_entry_bytes, 2 * GRAIN as u64);
    let mut got = vec![0u8; size as usize];
    target.read_at(&mut got, 0).unwrap();
    for (g, c) in pattern.chars().enumerate() {
        let grain = &got[g * GRAIN..(g + 1) * GRAIN];
        let want: Vec<u8> = match c {
            '.' => vec![0xAA; GRAIN],
            _ => content[g * GRAIN..(g + 1) * GRAIN].to_vec(),
        };
        assert!(grain == want.as_slice(), "grain {g} ({c})");
    }
    // Everything but the holes is defined by the stream.
    let mut want_covered: Vec<std::ops::Range<u64>> = Vec::new();
    for (g, c) in pattern.chars().enumerate() {
        let (start, end) = ((g * GRAIN) as u64, ((g + 1) * GRAIN) as u64);
        match want_covered.last_mut() {
            _ if c == '.' => {}
            Some(last) if last.end == start => last.end = end,
            _ => want_covered.push(start..end),
        }
    }
    assert_eq!(covered, want_covered);
}

/// A stream in the layout that reserves the grain directory and tables
/// in the header area (no footer): header, directory at sector 1, one
/// table at `gt_sector`, then grain 0 holding data at sector 8 unless
/// `entries[0]` is not 8.
fn upfront(entries: [u32; 4], gd_entry: u32, gt_sector: u64) -> Vec<u8> {
    let raw = RawHeader {
        magic: ovf::vmdk::MAGIC,
        version: 3,
        flags: 1 | FLAG_ZEROED_GTE | (1 << 16) | (1 << 17),
        capacity: 4 * 128,
        grain_size: 128,
        descriptor_offset: 0,
        descriptor_size: 0,
        num_gtes_per_gt: 512,
        rgd_offset: 0,
        gd_offset: 1,
        overhead: 8,
        unclean_shutdown: 0,
        newline_chars: *b"\n \r\n",
        compress_algorithm: 1,
    };
    assert_ne!(raw.gd_offset, GD_AT_END);
    let mut out = raw.encode().to_vec();
    out.resize(8 * 512, 0);
    out[512..516].copy_from_slice(&gd_entry.to_le_bytes());
    let gt = gt_sector as usize * 512;
    for (i, e) in entries.iter().enumerate() {
        out[gt + i * 4..gt + i * 4 + 4].copy_from_slice(&e.to_le_bytes());
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
    z.write_all(&[7u8; GRAIN]).unwrap();
    let data = z.finish().unwrap();
    let mut marker = Vec::new();
    marker.extend_from_slice(&0u64.to_le_bytes());
    marker.extend_from_slice(&(data.len() as u32).to_le_bytes());
    marker.extend_from_slice(&data);
    marker.resize(marker.len().next_multiple_of(512), 0);
    out.extend_from_slice(&marker);
    out
}

#[test]
fn the_reader_finds_zeroed_entries_reserved_up_front() {
    let bytes = upfront([8, 1, 0, 1], 2, 2);
    let r = drain(&bytes).unwrap();
    let g = GRAIN as u64;
    assert_eq!(r.zeroed_grains(), &[g..2 * g, 3 * g..4 * g]);
}

#[test]
fn contradictory_or_unreachable_zeroed_entries_are_errors() {
    // Grain 0 is stored and marked zeroed.
    assert!(matches!(
        drain(&upfront([1, 0, 0, 0], 2, 2)),
        Err(VmdkError::Corrupt { .. })
    ));
    // The table lies before the directory: a forward-only reader has
    // passed it.
    assert!(matches!(
        drain(&upfront([8, 1, 0, 0], 1, 2)),
        Err(VmdkError::Unsupported { .. })
    ));
    // A directory naming no table: nothing is zeroed.
    assert!(
        drain(&upfront([8, 1, 0, 0], 0, 2))
            .unwrap()
            .zeroed_grains()
            .is_empty()
    );
    // The table lies among the grains.
    assert!(matches!(
        drain(&upfront([8, 1, 0, 0], 9, 2)),
        Err(VmdkError::Unsupported { .. })
    ));
}
