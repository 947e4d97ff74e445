//! Structure-aware log replay: log entries built from the input (data and
//! zero descriptors, with right or slightly wrong checksums, sequence
//! numbers, GUIDs, tails and offsets) are written into the log region of a
//! qemu-img-made VHDX whose headers name the log's GUID; the image is then
//! opened (replaying the log), read, written, flushed, reopened and checked.
#![no_main]

use std::io::Read;
use std::sync::OnceLock;

use arbitrary::Arbitrary;

#[path = "../common/disk.rs"]
mod disk;

/// `qemu-img create -f vhdx -o block_size=1M,log_size=1M base.vhdx 8M`,
/// trimmed of its trailing zeros and gzipped (see make-seeds.sh).
const BASE_GZ: &[u8] = include_bytes!("../base/log-base.vhdx.gz");
const SECTOR: usize = 4096;
const HEADERS: [usize; 2] = [64 << 10, 128 << 10];

#[derive(Debug, Arbitrary)]
struct Input {
    log_guid: [u8; 16],
    first_sequence: u64,
    /// Where the first entry starts, in sectors from the log's start.
    start: u8,
    /// Which headers carry the log GUID (bit 0: first, bit 1: second).
    headers: u8,
    entries: Vec<Entry>,
}

#[derive(Debug, Arbitrary)]
struct Entry {
    /// 0 keeps the sequence number consecutive.
    sequence_skip: u8,
    wrong_guid: bool,
    wrong_checksum: bool,
    /// 0: the first entry of the sequence; otherwise that many sectors back.
    tail: u8,
    /// 0: the file's length; otherwise that many MiB.
    flushed_mib: u8,
    last_mib: u8,
    /// Extra sectors declared in the entry length.
    extra_sectors: u8,
    reserved: u32,
    descriptors: Vec<Desc>,
}

#[derive(Debug, Arbitrary)]
struct Desc {
    zero: bool,
    /// Target in 4 KiB pages from the start of the file.
    page: u16,
    /// Misaligns the target by this many bytes when non-zero.
    misalign: u8,
    /// Zero descriptors: length in pages (0 gives a zero length).
    pages: u8,
    wrong_sequence: bool,
    /// Data descriptors: the data sector's sequence is wrong.
    wrong_data_sequence: bool,
    fill: u8,
}

fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(BASE_GZ)
            .read_to_end(&mut v)
            .expect("base image");
        v
    })
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn build(input: &Input) -> Vec<u8> {
    let mut image = base().to_vec();
    let file_len = image.len() as u64;
    let h0 = HEADERS[0];
    let log_len = le32(&image, h0 + 68) as usize;
    let log_off = usize::try_from(le64(&image, h0 + 72)).expect("log offset");
    assert!(
        log_len >= SECTOR && log_off + log_len <= image.len(),
        "base log region"
    );

    for (i, &at) in HEADERS.iter().enumerate() {
        if input.headers & (1 << i) != 0 {
            image[at + 48..at + 64].copy_from_slice(&input.log_guid);
        }
        put32(&mut image, at + 4, 0);
        let crc = crc32c::crc32c(&image[at..at + SECTOR]);
        put32(&mut image, at + 4, crc);
    }

    let sectors = log_len / SECTOR;
    let mut log = vec![0u8; log_len];
    let mut pos = usize::from(input.start) % sectors;
    let first_pos = pos;
    let mut sequence = input.first_sequence;
    for entry in input.entries.iter().take(6) {
        sequence = sequence.wrapping_add(1 + u64::from(entry.sequence_skip % 4 == 3));
        let descs: Vec<&Desc> = entry.descriptors.iter().take(40).collect();
        let data_count = descs.iter().filter(|d| !d.zero).count();
        let mut bytes = vec![0u8; SECTOR * (1 + data_count)];
        bytes[0..4].copy_from_slice(b"loge");
        let len_sectors = 1 + data_count + usize::from(entry.extra_sectors % 3);
        put32(&mut bytes, 8, (len_sectors * SECTOR) as u32);
        let tail = if entry.tail == 0 {
            first_pos
        } else {
            (pos + sectors - usize::from(entry.tail) % sectors) % sectors
        };
        put32(&mut bytes, 12, (tail * SECTOR) as u32);
        put64(&mut bytes, 16, sequence);
        put32(&mut bytes, 24, descs.len() as u32);
        put32(&mut bytes, 28, entry.reserved & 1);
        let mut guid = input.log_guid;
        if entry.wrong_guid {
            guid[0] ^= 1;
        }
        bytes[32..48].copy_from_slice(&guid);
        let mib = |m: u8| if m == 0 { file_len } else { u64::from(m) << 20 };
        put64(&mut bytes, 48, mib(entry.flushed_mib));
        put64(&mut bytes, 56, mib(entry.last_mib));
        let mut data_at = SECTOR;
        for (i, d) in descs.iter().enumerate() {
            let slot = 64 + 32 * i;
            let offset = u64::from(d.page) * SECTOR as u64
                + u64::from(d.misalign % 8) * 512 * u64::from(d.misalign > 200);
            let dseq = if d.wrong_sequence {
                sequence ^ 1
            } else {
                sequence
            };
            if d.zero {
                bytes[slot..slot + 4].copy_from_slice(b"zero");
                put64(&mut bytes, slot + 8, u64::from(d.pages) * SECTOR as u64);
            } else {
                bytes[slot..slot + 4].copy_from_slice(b"desc");
                bytes[slot + 4..slot + 16].fill(d.fill ^ 0x5a);
                let sector = &mut bytes[data_at..data_at + SECTOR];
                sector.fill(d.fill);
                sector[0..4].copy_from_slice(b"data");
                let sseq = if d.wrong_data_sequence {
                    dseq.wrapping_add(1)
                } else {
                    dseq
                };
                put32(sector, 4, (sseq >> 32) as u32);
                put32(sector, SECTOR - 4, sseq as u32);
                data_at += SECTOR;
            }
            put64(&mut bytes, slot + 16, offset);
            put64(&mut bytes, slot + 24, dseq);
        }
        // The checksum covers the whole entry as declared, zero-padded.
        let declared = len_sectors * SECTOR;
        let mut covered = bytes.clone();
        covered.resize(declared, 0);
        let mut crc = crc32c::crc32c(&covered);
        if entry.wrong_checksum {
            crc ^= 1;
        }
        put32(&mut bytes, 4, crc);
        bytes.resize(declared, 0);
        for chunk in bytes.chunks(SECTOR) {
            log[pos * SECTOR..(pos + 1) * SECTOR].copy_from_slice(chunk);
            pos = (pos + 1) % sectors;
        }
    }
    image[log_off..log_off + log_len].copy_from_slice(&log);
    image
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let image = build(&input);
    disk::exercise(vhd::Format::Vhdx, &image);
});
