//! QEMU's replay as the oracle for entries this writer produces.
//!
//! A dynamic VHDX made by `qemu-img convert` gets a dirty log on purpose:
//! its header is given a log GUID and entries (a BAT page that swaps two
//! blocks and zeroes a third, a data page, a zeroed range) are written and
//! not applied. One copy is replayed by `qemu-img check -r all`, the other
//! by [`read_log`] and [`Replay::apply`]; the files must then be equal
//! outside the two headers (which QEMU rewrites with new GUIDs) and both
//! must read as the expected disk.
//!
//! Not compared: a sequence of several unapplied entries that wraps round
//! the end of the region. QEMU (block/vhdx-log.c, vhdx_log_search) ranks
//! sequences by their first entry's sequence number and never checks the
//! head's tail, so it replays only the entries after the wrap; the
//! specification ranks by the head and needs the tail inside the sequence,
//! so the whole sequence is replayed here (unit test
//! `sequence_wrapping_around_the_end_of_the_log_replays`). This writer
//! never leaves such a log behind: `commit` applies every entry.
#![allow(clippy::cast_possible_truncation)]

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Output};

use rand::{RngCore, SeedableRng};
use uuid::Uuid;

use super::*;

const MIB: u64 = 1 << 20;
const BLOCKS: u64 = 8;
const BAT_GUID: &str = "2DC27766-F623-4200-9D64-115E9BFD4A08";
/// Payload block states (MS-VHDX 2.5.1.1).
const BLOCK_ZERO: u64 = 2;

fn qemu_img(args: &[&str]) -> Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs qemu-img 10 ({e}); install it with: apt-get install qemu-utils")
        })
}

fn qemu_ok(args: &[&str]) -> Output {
    let out = qemu_img(args);
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn open(path: &Path) -> ImageFile {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    ImageFile::new(f, path)
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The current header (MS-VHDX 2.2.2): of the headers at 64 KiB and
/// 128 KiB whose signature and CRC-32C hold, the one with the larger
/// sequence number.
fn current_header(file: &[u8]) -> usize {
    let valid = |at: usize| {
        let h = &file[at..at + 4096];
        let mut zeroed = h.to_vec();
        zeroed[4..8].fill(0);
        &h[0..4] == b"head" && le32(h, 4) == crc32c::crc32c(&zeroed)
    };
    match (valid(64 << 10), valid(128 << 10)) {
        (true, true) if le64(file, (128 << 10) + 8) > le64(file, (64 << 10) + 8) => 128 << 10,
        (true, _) => 64 << 10,
        (false, true) => 128 << 10,
        (false, false) => panic!("no valid VHDX header"),
    }
}

/// Stores `guid` as the current header's LogGuid, with a correct checksum.
fn set_log_guid(path: &Path, guid: Uuid) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = current_header(&bytes);
    let h = &mut bytes[at..at + 4096];
    h[48..64].copy_from_slice(&guid.to_bytes_le());
    h[4..8].fill(0);
    let crc = crc32c::crc32c(h);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    open(path).write_all_at(h, at as u64).unwrap();
}

struct Layout {
    log: LogRegion,
    bat: u64,
    /// File offset of each payload block.
    blocks: Vec<u64>,
}

fn layout(path: &Path) -> Layout {
    let bytes = std::fs::read(path).unwrap();
    let h = current_header(&bytes);
    let log = LogRegion {
        offset: le64(&bytes, h + 72),
        length: le32(&bytes, h + 68),
    };
    let rt = 192 << 10;
    assert_eq!(&bytes[rt..rt + 4], b"regi");
    let bat_guid = Uuid::parse_str(BAT_GUID).unwrap();
    let bat = (0..le32(&bytes, rt + 8) as usize)
        .map(|i| rt + 16 + 32 * i)
        .find(|&e| Uuid::from_bytes_le(bytes[e..e + 16].try_into().unwrap()) == bat_guid)
        .map(|e| le64(&bytes, e + 16))
        .expect("a BAT region");
    // With 1 MiB blocks and 512-byte sectors the chunk ratio is 4096, so
    // the first BAT entries are the payload blocks in order.
    let blocks = (0..BLOCKS)
        .map(|i| {
            let entry = le64(&bytes, (bat + 8 * i) as usize);
            assert_eq!(entry & 7, 6, "block {i} is fully present");
            (entry >> 20) * MIB
        })
        .collect();
    Layout { log, bat, blocks }
}

fn page_of(file: &ImageFile, offset: u64) -> Box<[u8; 4096]> {
    let mut p = Box::new([0u8; 4096]);
    file.read_exact_at(&mut p[..], offset).unwrap();
    p
}

/// How the entries lie in the log region.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Two unapplied entries at the start of the region.
    Linear,
    /// The first entry, applied, ends exactly at the end of the region;
    /// the second, unapplied, starts at its beginning and names itself as
    /// the tail.
    Wrapped,
    /// One unapplied entry whose first sector is the last of the region
    /// and whose other sectors are at its beginning.
    Straddling,
}

/// Makes a dirty copy of a fresh image at `dirty`, writes the expected
/// disk to `expected`, and returns the log GUID and region.
fn make_dirty(dir: &Path, shape: Shape) -> (Uuid, LogRegion) {
    let raw = dir.join("source.raw");
    let mut data = vec![0u8; (BLOCKS * MIB) as usize];
    rand::rngs::SmallRng::seed_from_u64(11).fill_bytes(&mut data);
    std::fs::write(&raw, &data).unwrap();
    let dirty = dir.join("dirty.vhdx");
    qemu_ok(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vhdx",
        "-o",
        "subformat=dynamic,block_size=1M",
        raw.to_str().unwrap(),
        dirty.to_str().unwrap(),
    ]);
    let lay = layout(&dirty);
    let guid = Uuid::from_bytes([0x5A; 16]);
    set_log_guid(&dirty, guid);
    let file = open(&dirty);
    let len = file.len().unwrap();

    // Entry 1: the first BAT page, blocks 0 and 1 swapped and block 2 zero.
    let mut bat = page_of(&file, lay.bat);
    let e0: [u8; 8] = bat[0..8].try_into().unwrap();
    let e1: [u8; 8] = bat[8..16].try_into().unwrap();
    bat[0..8].copy_from_slice(&e1);
    bat[8..16].copy_from_slice(&e0);
    bat[16..24].copy_from_slice(&BLOCK_ZERO.to_le_bytes());
    let first = vec![LogUpdate::Page {
        offset: lay.bat,
        data: bat,
    }];
    // Entry 2: a page of block 3 replaced, 16 KiB of block 4 zeroed.
    let mut fresh = Box::new([0u8; 4096]);
    rand::rngs::SmallRng::seed_from_u64(12).fill_bytes(&mut fresh[..]);
    let second = vec![
        LogUpdate::Page {
            offset: lay.blocks[3] + 8192,
            data: fresh.clone(),
        },
        LogUpdate::Zero {
            offset: lay.blocks[4] + (64 << 10),
            length: 16 << 10,
        },
    ];
    let log_len = u64::from(lay.log.length);
    let mut w = LogWriter::new(lay.log, guid, 1000);
    match shape {
        Shape::Linear => {
            w.write_entry_only(&file, &first, len, len).unwrap();
            w.write_entry_only(&file, &second, len, len).unwrap();
        }
        Shape::Wrapped => {
            w.start_at(log_len - 8192);
            w.commit(&file, &first, len, len).unwrap();
            w.write_entry_only(&file, &second, len, len).unwrap();
        }
        Shape::Straddling => {
            let all = [first, second].concat();
            let at = log_len - 4096;
            let header = super::format::EntryHeader {
                checksum: 0,
                entry_length: 3 * 4096,
                tail: at as u32,
                sequence_number: 1001,
                descriptor_count: 3,
                reserved: 0,
                log_guid: guid,
                flushed_file_offset: len,
                last_file_offset: len,
            };
            let bytes = super::writer::encode(&all, header).bytes;
            file.write_all_at(&bytes[..4096], lay.log.offset + at)
                .unwrap();
            file.write_all_at(&bytes[4096..], lay.log.offset).unwrap();
        }
    }

    let b = |i: u64| (i * MIB) as usize;
    let mut expect = data.clone();
    expect[b(0)..b(1)].copy_from_slice(&data[b(1)..b(2)]);
    expect[b(1)..b(2)].copy_from_slice(&data[b(0)..b(1)]);
    expect[b(2)..b(3)].fill(0);
    expect[b(3) + 8192..b(3) + 12288].copy_from_slice(&fresh[..]);
    expect[b(4) + (64 << 10)..b(4) + (80 << 10)].fill(0);
    std::fs::write(dir.join("expected.raw"), &expect).unwrap();
    (guid, lay.log)
}

fn replay_both_ways(shape: Shape) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (guid, region) = make_dirty(d, shape);
    let dirty = d.join("dirty.vhdx");
    let theirs = d.join("theirs.vhdx");
    let ours = d.join("ours.vhdx");
    std::fs::copy(&dirty, &theirs).unwrap();
    std::fs::copy(&dirty, &ours).unwrap();

    // QEMU sees a log to replay: it refuses a read-only open.
    let info = qemu_img(&["info", dirty.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&info.stderr);
    assert!(
        !info.status.success() && said.contains("log that needs to be replayed"),
        "qemu-img info on the dirty image: {said}"
    );

    qemu_ok(&["check", "-r", "all", theirs.to_str().unwrap()]);

    let file = open(&ours);
    let r = read_log(&file, region, guid)
        .unwrap()
        .expect("a log to replay");
    assert_eq!(r.last_sequence_number, 1001);
    let replayed = if shape == Shape::Wrapped { 2 } else { 3 };
    assert_eq!(r.updates.len(), replayed);
    r.apply(&file).unwrap();
    drop(file);
    set_log_guid(&ours, Uuid::nil());

    let a = std::fs::read(&theirs).unwrap();
    let b = std::fs::read(&ours).unwrap();
    assert_eq!(a.len(), b.len(), "file sizes after replay");
    let headers = (64 << 10)..(192 << 10);
    let differ = (0..a.len()).find(|&i| !headers.contains(&i) && a[i] != b[i]);
    assert_eq!(differ, None, "first byte that differs outside the headers");
    // QEMU cleared its log GUID too.
    let h = current_header(&a);
    assert_eq!(&a[h + 48..h + 64], &[0u8; 16]);

    let (t, o, e) = (
        theirs.to_str().unwrap(),
        ours.to_str().unwrap(),
        d.join("expected.raw"),
    );
    qemu_ok(&["compare", "-f", "vhdx", "-F", "vhdx", t, o]);
    qemu_ok(&["compare", "-f", "vhdx", "-F", "raw", o, e.to_str().unwrap()]);
    qemu_ok(&["check", o]);
}

#[test]
fn qemu_replays_our_entries_as_we_do() {
    replay_both_ways(Shape::Linear);
}

#[test]
fn qemu_replays_our_entry_after_the_log_wrapped_as_we_do() {
    replay_both_ways(Shape::Wrapped);
}

#[test]
fn qemu_replays_an_entry_straddling_the_end_of_the_log_as_we_do() {
    replay_both_ways(Shape::Straddling);
}
