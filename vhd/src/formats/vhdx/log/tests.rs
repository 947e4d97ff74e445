//! Unit tests of the log: structures, the writer, the search for the active
//! sequence and every reason an entry or a log is refused.
#![allow(clippy::cast_possible_truncation)]

use std::fs::OpenOptions;

use uuid::Uuid;

use super::format::{
    Descriptor, EntryHeader, SECTOR_LEN, checksum_first_sector, data_sector_sequence,
    descriptor_sectors, join_page, set_checksum, split_page,
};
use super::writer::encode;
use super::*;
use crate::ErrorKind;

pub(super) const LOG_AT: u64 = 1 << 20;
pub(super) const LOG_LEN: u32 = 1 << 20;
pub(super) const FILE_LEN: u64 = 4 << 20;

pub(super) fn guid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

pub(super) fn region() -> LogRegion {
    LogRegion {
        offset: LOG_AT,
        length: LOG_LEN,
    }
}

/// A temporary file of `len` bytes, every byte 0xEE (so that zeroing shows).
pub(super) fn scratch(len: u64) -> (tempfile::TempDir, ImageFile) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.vhdx");
    std::fs::write(&path, vec![0xEEu8; usize::try_from(len).unwrap()]).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    (dir, ImageFile::new(f, &path))
}

pub(super) fn page(seed: u8) -> Box<[u8; 4096]> {
    let mut p = Box::new([0u8; 4096]);
    for (i, b) in p.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add((i % 251) as u8);
    }
    p
}

pub(super) fn read(file: &ImageFile, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    file.read_at_zero_fill(&mut v, offset).unwrap();
    v
}

pub(super) fn header(seq: u64, tail: u32, count: u32, length: u32, log_guid: Uuid) -> EntryHeader {
    EntryHeader {
        checksum: 0,
        entry_length: length,
        tail,
        sequence_number: seq,
        descriptor_count: count,
        reserved: 0,
        log_guid,
        flushed_file_offset: FILE_LEN,
        last_file_offset: FILE_LEN,
    }
}

/// An entry holding `updates`, as the writer lays it out.
pub(super) fn entry(updates: &[LogUpdate], seq: u64, tail: u32, log_guid: Uuid) -> Vec<u8> {
    let data = updates
        .iter()
        .filter(|u| matches!(u, LogUpdate::Page { .. }))
        .count() as u64;
    let count = updates.len() as u32;
    let length = ((descriptor_sectors(count) + data) * 4096) as u32;
    encode(updates, header(seq, tail, count, length, log_guid)).bytes
}

/// Recomputes the checksum of an entry after it was altered.
pub(super) fn reseal(bytes: &mut [u8]) {
    let mut first = [0u8; SECTOR_LEN];
    first.copy_from_slice(&bytes[..SECTOR_LEN]);
    let crc = crc32c::crc32c_append(checksum_first_sector(&first), &bytes[SECTOR_LEN..]);
    set_checksum(bytes, crc);
}

pub(super) fn put(file: &ImageFile, pos: u64, bytes: &[u8]) {
    file.write_all_at(bytes, LOG_AT + pos).unwrap();
}

pub(super) fn replay(file: &ImageFile, g: Uuid) -> Option<Replay> {
    read_log(file, region(), g).unwrap()
}

pub(super) fn two_updates() -> Vec<LogUpdate> {
    vec![
        LogUpdate::Page {
            offset: 3 << 20,
            data: page(1),
        },
        LogUpdate::Zero {
            offset: (3 << 20) + 8192,
            length: 8192,
        },
    ]
}

#[test]
fn header_descriptor_and_data_sector_round_trip() {
    let h = header(0x0123_4567_89AB_CDEF, 0x3000, 7, 0x5000, guid(9));
    let mut sector = [0u8; SECTOR_LEN];
    h.encode(&mut sector);
    assert_eq!(&sector[0..4], b"loge");
    assert_eq!(EntryHeader::decode(&sector), Some(h));
    sector[0] = b'L';
    assert_eq!(EntryHeader::decode(&sector), None);

    let zero = Descriptor::Zero {
        reserved: 0,
        length: 0x2000,
        file_offset: 0x30_0000,
        sequence_number: 5,
    };
    let mut raw = [0u8; 32];
    zero.encode(&mut raw);
    assert_eq!(&raw[0..4], b"zero");
    assert_eq!(Descriptor::decode(&raw), Some(zero));
    raw[0..4].copy_from_slice(b"junk");
    assert_eq!(Descriptor::decode(&raw), None);

    let p = page(3);
    let seq = 0xAABB_CCDD_1122_3344;
    let (desc, data) = split_page(&p, 0x40_0000, seq);
    let mut raw = [0u8; 32];
    desc.encode(&mut raw);
    assert_eq!(&raw[0..4], b"desc");
    let Some(Descriptor::Data {
        leading_bytes,
        trailing_bytes,
        file_offset,
        sequence_number,
    }) = Descriptor::decode(&raw)
    else {
        panic!("data descriptor did not decode")
    };
    assert_eq!((file_offset, sequence_number), (0x40_0000, seq));
    assert_eq!(leading_bytes[..], p[..8]);
    assert_eq!(trailing_bytes[..], p[4092..]);
    assert_eq!(&data[0..4], b"data");
    assert_eq!(&data[4..8], &0xAABB_CCDDu32.to_le_bytes());
    assert_eq!(&data[4092..], &0x1122_3344u32.to_le_bytes());
    assert_eq!(data_sector_sequence(&data), Some(seq));
    assert_eq!(join_page(&data, &leading_bytes, &trailing_bytes), p);
}

#[test]
fn descriptor_sectors_hold_126_then_128() {
    assert_eq!(descriptor_sectors(0), 1);
    assert_eq!(descriptor_sectors(126), 1);
    assert_eq!(descriptor_sectors(127), 2);
    assert_eq!(descriptor_sectors(254), 2);
    assert_eq!(descriptor_sectors(255), 3);
    assert_eq!(
        descriptor_sectors(u32::MAX),
        (u64::from(u32::MAX) + 2).div_ceil(128)
    );
}

#[test]
fn entry_checksum_is_crc32c_of_the_entry_with_the_field_zeroed() {
    let bytes = entry(&two_updates(), 1, 0, guid(1));
    let mut zeroed = bytes.clone();
    zeroed[4..8].fill(0);
    let stored = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    assert_eq!(stored, crc32c::crc32c(&zeroed));
    assert_eq!(
        bytes.len(),
        2 * 4096,
        "one descriptor sector and one data sector"
    );
}

#[test]
fn written_entry_replays_to_the_same_updates() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    let updates = two_updates();
    w.write_entry_only(&file, &updates, FILE_LEN, FILE_LEN)
        .unwrap();
    let r = replay(&file, guid(1)).expect("an entry to replay");
    assert_eq!(r.updates, updates);
    assert_eq!(r.last_sequence_number, 1);
    assert_eq!(
        (r.flushed_file_offset, r.last_file_offset),
        (FILE_LEN, FILE_LEN)
    );
    // Nothing was applied yet.
    assert_eq!(read(&file, 3 << 20, 4096), vec![0xEE; 4096]);
    r.apply(&file).unwrap();
    assert_eq!(read(&file, 3 << 20, 4096), page(1).to_vec());
    assert_eq!(read(&file, (3 << 20) + 8192, 8192), vec![0; 8192]);
    assert_eq!(read(&file, (3 << 20) + 4096, 4096), vec![0xEE; 4096]);
}

#[test]
fn overlay_matches_apply() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    let mut updates = two_updates();
    updates.push(LogUpdate::Page {
        offset: (3 << 20) + 8192,
        data: page(7),
    });
    w.write_entry_only(&file, &updates, FILE_LEN, FILE_LEN)
        .unwrap();
    let r = replay(&file, guid(1)).unwrap();
    let (at, len) = ((3 << 20) - 1000, 20_000);
    let mut overlaid = read(&file, at, len);
    r.overlay(at, &mut overlaid);
    r.apply(&file).unwrap();
    assert_eq!(overlaid, read(&file, at, len));
}

#[test]
fn many_descriptors_span_several_descriptor_sectors() {
    let (_d, file) = scratch(FILE_LEN);
    let mut updates: Vec<LogUpdate> = (0..300u64)
        .map(|i| LogUpdate::Zero {
            offset: (2 << 20) + i * 8192,
            length: 4096,
        })
        .collect();
    updates.insert(
        130,
        LogUpdate::Page {
            offset: (2 << 20) + 4096,
            data: page(2),
        },
    );
    let mut w = LogWriter::new(region(), guid(1), 9);
    w.write_entry_only(&file, &updates, FILE_LEN, FILE_LEN)
        .unwrap();
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.updates, updates);
    assert_eq!(r.last_sequence_number, 9);
}

#[test]
fn replay_extends_the_file_and_zeroes_past_its_end() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    let updates = vec![LogUpdate::Zero {
        offset: FILE_LEN - 4096,
        length: 3 << 20,
    }];
    w.write_entry_only(&file, &updates, FILE_LEN, FILE_LEN + (4 << 20))
        .unwrap();
    let r = replay(&file, guid(1)).unwrap();
    r.apply(&file).unwrap();
    assert_eq!(file.len().unwrap(), FILE_LEN + (4 << 20));
    assert_eq!(read(&file, FILE_LEN - 8192, 4096), vec![0xEE; 4096]);
    assert_eq!(read(&file, FILE_LEN - 4096, 4096), vec![0; 4096]);
}

#[test]
fn replay_starts_at_the_tail_the_head_names() {
    let (_d, file) = scratch(FILE_LEN);
    let a = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(1),
    }];
    let b = vec![LogUpdate::Page {
        offset: (3 << 20) + 4096,
        data: page(2),
    }];
    // Entry 5 was applied; entry 6 names itself as the tail.
    put(&file, 0, &entry(&a, 5, 0, guid(1)));
    put(&file, 8192, &entry(&b, 6, 8192, guid(1)));
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.updates, b);
    // With entry 6 naming entry 5 as its tail, both are replayed.
    put(&file, 8192, &entry(&b, 6, 0, guid(1)));
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.updates, [a, b].concat());
}

#[test]
fn sequence_whose_tail_is_outside_it_is_not_valid() {
    let (_d, file) = scratch(FILE_LEN);
    let a = two_updates();
    // Entry 3 names a tail where no entry of its sequence starts.
    put(&file, 0, &entry(&a, 3, 0x8000, guid(1)));
    assert!(replay(&file, guid(1)).is_none());
}

#[test]
fn bad_checksum_makes_the_entry_invalid() {
    let (_d, file) = scratch(FILE_LEN);
    let mut bytes = entry(&two_updates(), 1, 0, guid(1));
    bytes[5000] ^= 1;
    put(&file, 0, &bytes);
    assert!(replay(&file, guid(1)).is_none());
}

#[test]
fn entry_of_another_log_guid_is_ignored() {
    let (_d, file) = scratch(FILE_LEN);
    put(&file, 0, &entry(&two_updates(), 1, 0, guid(2)));
    assert!(replay(&file, guid(1)).is_none());
    assert!(replay(&file, guid(2)).is_some());
    // A nil GUID means an empty log, whatever the region holds.
    assert!(read_log(&file, region(), Uuid::nil()).unwrap().is_none());
}

#[test]
fn out_of_sequence_entry_ends_the_sequence() {
    let (_d, file) = scratch(FILE_LEN);
    let a = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(1),
    }];
    let b = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(2),
    }];
    // Entry 4 follows entry 1 physically and names it as its tail, but 4
    // is not 1 + 1: it is no part of 1's sequence, and alone its tail is
    // outside it. Only entry 1 remains valid.
    put(&file, 0, &entry(&a, 1, 0, guid(1)));
    put(&file, 8192, &entry(&b, 4, 0, guid(1)));
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!((r.last_sequence_number, r.updates), (1, a));
}

#[test]
fn highest_sequence_wins_among_valid_sequences() {
    let (_d, file) = scratch(FILE_LEN);
    let a = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(1),
    }];
    let b = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(2),
    }];
    put(&file, 0x10000, &entry(&a, 7, 0x10000, guid(1)));
    put(&file, 0x40000, &entry(&b, 12, 0x40000, guid(1)));
    put(&file, 0x80000, &entry(&a, 9, 0x80000, guid(1)));
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!((r.last_sequence_number, r.updates), (12, b));
}

#[test]
fn data_sector_with_a_wrong_sequence_number_is_refused() {
    // Entry layout: one descriptor sector, then the data sectors of the
    // two pages; flip SequenceHigh, then SequenceLow, then the signature.
    for at in [4096 + 4, 4096 + 4092, 2 * 4096 + 7, 2 * 4096] {
        let (_d, file) = scratch(FILE_LEN);
        let mut updates = two_updates();
        updates.push(LogUpdate::Page {
            offset: 2 << 20,
            data: page(5),
        });
        let mut bytes = entry(&updates, 0x0000_0002_0000_0003, 0, guid(1));
        assert_eq!(&bytes[4096..4100], b"data");
        assert_eq!(&bytes[8192..8196], b"data");
        bytes[at] ^= 0x01;
        reseal(&mut bytes);
        put(&file, 0, &bytes);
        assert!(replay(&file, guid(1)).is_none(), "altered at {at}");
    }
}

#[test]
fn descriptor_with_a_wrong_sequence_number_is_refused() {
    let (_d, file) = scratch(FILE_LEN);
    let mut bytes = entry(&two_updates(), 3, 0, guid(1));
    // Second descriptor (the zero one) at 64 + 32, sequence at +24.
    bytes[64 + 32 + 24] ^= 1;
    reseal(&mut bytes);
    put(&file, 0, &bytes);
    assert!(replay(&file, guid(1)).is_none());
}

#[test]
fn unaligned_or_unknown_descriptor_is_refused() {
    let cases: [(usize, u8); 3] = [
        (64 + 16, 0x01),     // data descriptor file offset not 4 KiB aligned
        (64, b'x'),          // unknown descriptor signature
        (64 + 32 + 8, 0x01), // zero length not a multiple of 4 KiB
    ];
    for (at, x) in cases {
        let (_d, file) = scratch(FILE_LEN);
        let mut bytes = entry(&two_updates(), 3, 0, guid(1));
        bytes[at] ^= x;
        reseal(&mut bytes);
        put(&file, 0, &bytes);
        assert!(replay(&file, guid(1)).is_none(), "altered at {at}");
    }
}

#[test]
fn header_field_violations_are_refused() {
    type Alter = fn(&mut EntryHeader);
    let cases: [(&str, Alter); 5] = [
        ("sequence 0", |h| h.sequence_number = 0),
        ("length not 4 KiB", |h| h.entry_length += 512),
        ("length beyond log", |h| h.entry_length = LOG_LEN + 4096),
        ("tail not 4 KiB", |h| h.tail = 100),
        ("too many descriptors", |h| h.descriptor_count = 200),
    ];
    for (what, alter) in cases {
        let (_d, file) = scratch(FILE_LEN);
        let mut bytes = entry(&two_updates(), 3, 0, guid(1));
        let mut first = [0u8; SECTOR_LEN];
        first.copy_from_slice(&bytes[..SECTOR_LEN]);
        let mut h = EntryHeader::decode(&first).unwrap();
        alter(&mut h);
        h.encode(&mut first);
        bytes[..SECTOR_LEN].copy_from_slice(&first);
        reseal(&mut bytes);
        put(&file, 0, &bytes);
        assert!(replay(&file, guid(1)).is_none(), "{what}");
    }
}

#[test]
fn truncated_entry_is_invalid() {
    let (_d, file) = scratch(FILE_LEN);
    let bytes = entry(&two_updates(), 1, 0, guid(1));
    // Only the descriptor sector reached the disk; the data sector is stale.
    put(&file, 0, &bytes[..4096]);
    assert!(replay(&file, guid(1)).is_none());
}

#[test]
fn torn_newest_entry_leaves_the_previous_one_active() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    let first = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(1),
    }];
    w.commit(&file, &first, FILE_LEN, FILE_LEN).unwrap();
    let second = entry(
        &[LogUpdate::Page {
            offset: 3 << 20,
            data: page(2),
        }],
        2,
        8192,
        guid(1),
    );
    put(&file, 8192, &second[..4096]);
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!((r.last_sequence_number, r.updates), (1, first));
}

#[test]
fn flushed_file_offset_beyond_the_file_is_corrupt() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    w.write_entry_only(&file, &two_updates(), FILE_LEN + 4096, FILE_LEN)
        .unwrap();
    let e = read_log(&file, region(), guid(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("FlushedFileOffset"), "{e}");
}

#[test]
fn updates_of_the_headers_or_the_log_are_corrupt() {
    for offset in [64 << 10, LOG_AT + 8192] {
        let (_d, file) = scratch(FILE_LEN);
        let bytes = entry(
            &[LogUpdate::Zero {
                offset,
                length: 4096,
            }],
            1,
            0,
            guid(1),
        );
        put(&file, 0, &bytes);
        let e = read_log(&file, region(), guid(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    }
}

#[test]
fn log_region_must_be_aligned_and_inside_the_file() {
    let (_d, file) = scratch(FILE_LEN);
    for r in [
        LogRegion {
            offset: LOG_AT + 4096,
            length: LOG_LEN,
        },
        LogRegion {
            offset: 0,
            length: LOG_LEN,
        },
        LogRegion {
            offset: LOG_AT,
            length: LOG_LEN + 4096,
        },
        LogRegion {
            offset: FILE_LEN - (1 << 20),
            length: 2 << 20,
        },
    ] {
        let e = read_log(&file, r, guid(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{r:?}: {e}");
    }
}

#[test]
fn entry_straddling_the_end_of_the_log_is_read_circularly() {
    let (_d, file) = scratch(FILE_LEN);
    let updates = two_updates();
    let pos = u64::from(LOG_LEN) - 4096;
    let bytes = entry(&updates, 3, pos as u32, guid(1));
    put(&file, pos, &bytes[..4096]);
    put(&file, 0, &bytes[4096..]);
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.updates, updates);
}

#[test]
fn log_version_other_than_zero_is_refused_only_with_a_log() {
    assert!(check_log_version(0, guid(1)).is_ok());
    assert!(check_log_version(1, Uuid::nil()).is_ok());
    let e = check_log_version(1, guid(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[test]
fn crafted_log_of_long_invalid_entries_ends_quickly() {
    // Every 4 KiB position starts an entry as long as the log, each with a
    // wrong checksum: a naive search reads the log 256 times over.
    let mut log = vec![0u8; LOG_LEN as usize];
    for pos in (0..LOG_LEN as usize).step_by(4096) {
        let h = header(1 + pos as u64, 0, 0, LOG_LEN, guid(1));
        let mut first = [0u8; SECTOR_LEN];
        h.encode(&mut first);
        log[pos..pos + 64].copy_from_slice(&first[..64]);
    }
    let mut view = scan::LogView::memory(&log, LOG_AT);
    let start = std::time::Instant::now();
    let found = scan::find_active(&mut view, guid(1));
    // Either nothing valid or the reading budget ran out: never a hang.
    match found {
        Ok(s) => assert!(s.is_none()),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt),
    }
    assert!(start.elapsed().as_secs() < 30);
}

#[test]
fn crafted_cycle_of_valid_entries_ends() {
    // Valid one-sector entries at every position with increasing sequence
    // numbers wrapping back to the start: the sequence cannot go round twice.
    let mut log = vec![0u8; LOG_LEN as usize];
    let n = LOG_LEN as u64 / 4096;
    for i in 0..n {
        let bytes = entry(&[], 100 + i, 0, guid(1));
        let at = (i * 4096) as usize;
        log[at..at + 4096].copy_from_slice(&bytes);
    }
    let mut view = scan::LogView::memory(&log, LOG_AT);
    let s = scan::find_active(&mut view, guid(1)).unwrap().unwrap();
    assert_eq!(s.entries.len() as u64, n);
    assert_eq!(s.head().unwrap().header.sequence_number, 100 + n - 1);
}

#[test]
fn random_bytes_never_panic_or_hang() {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    for round in 0..20 {
        let mut log = vec![0u8; 1 << 20];
        rng.fill_bytes(&mut log);
        // Plant plausible headers so that the deeper checks run too.
        for pos in (0..log.len()).step_by(4096 * (1 + round % 5)) {
            let h = header(
                rng.next_u64() % 4 + 1,
                0,
                rng.next_u32() % 300,
                8192,
                guid(1),
            );
            let mut first = [0u8; SECTOR_LEN];
            h.encode(&mut first);
            log[pos..pos + 64].copy_from_slice(&first[..64]);
        }
        let mut view = scan::LogView::memory(&log, LOG_AT);
        let _ = scan::find_active(&mut view, guid(1));
    }
}

/// What the writer did to the file, in order.
#[test]
fn log_read_from_the_file_finds_what_the_memory_copy_finds() {
    // Large logs are read sector by sector from the file instead of copied.
    let (_d, file) = scratch(FILE_LEN);
    let a = two_updates();
    put(
        &file,
        u64::from(LOG_LEN) - 4096,
        &entry(&a, 7, LOG_LEN - 4096, guid(1))[..4096],
    );
    put(&file, 0, &entry(&a, 7, LOG_LEN - 4096, guid(1))[4096..]);
    let mut from_file = scan::LogView::file(&file, LOG_AT, u64::from(LOG_LEN));
    let s = scan::find_active(&mut from_file, guid(1)).unwrap().unwrap();
    let updates = scan::collect_updates(&mut from_file, &s, guid(1)).unwrap();
    assert_eq!(updates, a);
    assert_eq!(s.head().unwrap().pos, u64::from(LOG_LEN) - 4096);
}

#[test]
fn empty_region_or_nil_guid_has_nothing_to_replay() {
    let (_d, file) = scratch(FILE_LEN);
    put(&file, 0, &entry(&two_updates(), 1, 0, guid(1)));
    let empty = LogRegion {
        offset: LOG_AT,
        length: 0,
    };
    assert!(read_log(&file, empty, guid(1)).unwrap().is_none());
    assert!(read_log(&file, region(), Uuid::nil()).unwrap().is_none());
}
