//! The log's on-disk structures (MS-VHDX 2.3.1): the entry header, the zero
//! and data descriptors and the data sector, decoded from and encoded into
//! byte slices. Validation that needs more than one structure (sequence
//! numbers across sectors, the entry checksum) lives in `scan`.

use uuid::Uuid;

/// Every log structure is laid out in 4 KiB sectors.
pub(super) const SECTOR: u64 = 4096;
/// [`SECTOR`] as a buffer length.
pub(super) const SECTOR_LEN: usize = 4096;
/// Size of the entry header at the start of an entry's first sector.
pub(super) const HEADER_LEN: usize = 64;
/// Size of one descriptor.
pub(super) const DESCRIPTOR_LEN: usize = 32;
/// Descriptors per descriptor sector (the first one shares room with the header).
const DESCRIPTORS_PER_SECTOR: u64 = (SECTOR_LEN / DESCRIPTOR_LEN) as u64;
/// Header slots taken by the entry header in the first sector.
const HEADER_SLOTS: u64 = (HEADER_LEN / DESCRIPTOR_LEN) as u64;

const ENTRY_SIGNATURE: [u8; 4] = *b"loge";
const DATA_DESCRIPTOR_SIGNATURE: [u8; 4] = *b"desc";
const ZERO_DESCRIPTOR_SIGNATURE: [u8; 4] = *b"zero";
const DATA_SECTOR_SIGNATURE: [u8; 4] = *b"data";

/// Offset of the checksum field in the entry header.
const CHECKSUM_AT: usize = 4;

/// A log entry header as stored (no field validated but the signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EntryHeader {
    pub checksum: u32,
    pub entry_length: u32,
    pub tail: u32,
    pub sequence_number: u64,
    pub descriptor_count: u32,
    pub reserved: u32,
    pub log_guid: Uuid,
    pub flushed_file_offset: u64,
    pub last_file_offset: u64,
}

impl EntryHeader {
    /// Decodes the header at the start of `sector`; `None` unless it carries
    /// the `loge` signature.
    pub(super) fn decode(sector: &[u8; SECTOR_LEN]) -> Option<Self> {
        if sector[0..4] != ENTRY_SIGNATURE {
            return None;
        }
        Some(EntryHeader {
            checksum: le32(sector, 4),
            entry_length: le32(sector, 8),
            tail: le32(sector, 12),
            sequence_number: le64(sector, 16),
            descriptor_count: le32(sector, 24),
            reserved: le32(sector, 28),
            log_guid: guid(sector, 32),
            flushed_file_offset: le64(sector, 48),
            last_file_offset: le64(sector, 56),
        })
    }

    /// Writes the header (signature included) into the first 64 bytes of `out`.
    pub(super) fn encode(&self, out: &mut [u8; SECTOR_LEN]) {
        out[0..4].copy_from_slice(&ENTRY_SIGNATURE);
        out[4..8].copy_from_slice(&self.checksum.to_le_bytes());
        out[8..12].copy_from_slice(&self.entry_length.to_le_bytes());
        out[12..16].copy_from_slice(&self.tail.to_le_bytes());
        out[16..24].copy_from_slice(&self.sequence_number.to_le_bytes());
        out[24..28].copy_from_slice(&self.descriptor_count.to_le_bytes());
        out[28..32].copy_from_slice(&self.reserved.to_le_bytes());
        out[32..48].copy_from_slice(&self.log_guid.to_bytes_le());
        out[48..56].copy_from_slice(&self.flushed_file_offset.to_le_bytes());
        out[56..64].copy_from_slice(&self.last_file_offset.to_le_bytes());
    }
}

/// One descriptor of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Descriptor {
    /// A 4 KiB sector write whose middle 4084 bytes are in a data sector.
    Data {
        trailing_bytes: [u8; 4],
        leading_bytes: [u8; 8],
        file_offset: u64,
        sequence_number: u64,
    },
    /// `length` bytes of zeros.
    Zero {
        reserved: u32,
        length: u64,
        file_offset: u64,
        sequence_number: u64,
    },
}

impl Descriptor {
    /// Decodes one 32-byte descriptor; `None` for an unknown signature.
    pub(super) fn decode(raw: &[u8]) -> Option<Self> {
        let raw: &[u8; DESCRIPTOR_LEN] = raw.get(..DESCRIPTOR_LEN)?.try_into().ok()?;
        let signature: [u8; 4] = raw[0..4].try_into().ok()?;
        if signature == DATA_DESCRIPTOR_SIGNATURE {
            Some(Descriptor::Data {
                trailing_bytes: raw[4..8].try_into().ok()?,
                leading_bytes: raw[8..16].try_into().ok()?,
                file_offset: le64(raw, 16),
                sequence_number: le64(raw, 24),
            })
        } else if signature == ZERO_DESCRIPTOR_SIGNATURE {
            Some(Descriptor::Zero {
                reserved: le32(raw, 4),
                length: le64(raw, 8),
                file_offset: le64(raw, 16),
                sequence_number: le64(raw, 24),
            })
        } else {
            None
        }
    }

    /// Writes the descriptor into the 32 bytes of `out`.
    pub(super) fn encode(&self, out: &mut [u8]) {
        match *self {
            Descriptor::Data {
                trailing_bytes,
                leading_bytes,
                file_offset,
                sequence_number,
            } => {
                out[0..4].copy_from_slice(&DATA_DESCRIPTOR_SIGNATURE);
                out[4..8].copy_from_slice(&trailing_bytes);
                out[8..16].copy_from_slice(&leading_bytes);
                out[16..24].copy_from_slice(&file_offset.to_le_bytes());
                out[24..32].copy_from_slice(&sequence_number.to_le_bytes());
            }
            Descriptor::Zero {
                reserved,
                length,
                file_offset,
                sequence_number,
            } => {
                out[0..4].copy_from_slice(&ZERO_DESCRIPTOR_SIGNATURE);
                out[4..8].copy_from_slice(&reserved.to_le_bytes());
                out[8..16].copy_from_slice(&length.to_le_bytes());
                out[16..24].copy_from_slice(&file_offset.to_le_bytes());
                out[24..32].copy_from_slice(&sequence_number.to_le_bytes());
            }
        }
    }

    pub(super) fn sequence_number(&self) -> u64 {
        match *self {
            Descriptor::Data {
                sequence_number, ..
            }
            | Descriptor::Zero {
                sequence_number, ..
            } => sequence_number,
        }
    }

    pub(super) fn file_offset(&self) -> u64 {
        match *self {
            Descriptor::Data { file_offset, .. } | Descriptor::Zero { file_offset, .. } => {
                file_offset
            }
        }
    }
}

/// The sequence number a data sector carries (SequenceHigh and
/// SequenceLow), or `None` without the `data` signature.
pub(super) fn data_sector_sequence(sector: &[u8; SECTOR_LEN]) -> Option<u64> {
    if sector[0..4] != DATA_SECTOR_SIGNATURE {
        return None;
    }
    let high = u64::from(le32(sector, 4));
    let low = u64::from(le32(sector, SECTOR_LEN - 4));
    Some((high << 32) | low)
}

/// Splits a 4 KiB update into its data sector and the descriptor that
/// keeps its first 8 and last 4 bytes.
pub(super) fn split_page(
    page: &[u8; SECTOR_LEN],
    file_offset: u64,
    sequence_number: u64,
) -> (Descriptor, [u8; SECTOR_LEN]) {
    let mut sector = [0u8; SECTOR_LEN];
    sector[0..4].copy_from_slice(&DATA_SECTOR_SIGNATURE);
    sector[4..8].copy_from_slice(&high32(sequence_number).to_le_bytes());
    sector[8..SECTOR_LEN - 4].copy_from_slice(&page[8..SECTOR_LEN - 4]);
    sector[SECTOR_LEN - 4..].copy_from_slice(&low32(sequence_number).to_le_bytes());
    let mut leading_bytes = [0u8; 8];
    leading_bytes.copy_from_slice(&page[0..8]);
    let mut trailing_bytes = [0u8; 4];
    trailing_bytes.copy_from_slice(&page[SECTOR_LEN - 4..]);
    let descriptor = Descriptor::Data {
        trailing_bytes,
        leading_bytes,
        file_offset,
        sequence_number,
    };
    (descriptor, sector)
}

/// Rebuilds the 4 KiB update from a data sector and its descriptor's kept bytes.
pub(super) fn join_page(
    sector: &[u8; SECTOR_LEN],
    leading_bytes: &[u8; 8],
    trailing_bytes: &[u8; 4],
) -> Box<[u8; SECTOR_LEN]> {
    let mut page = Box::new([0u8; SECTOR_LEN]);
    page[0..8].copy_from_slice(leading_bytes);
    page[8..SECTOR_LEN - 4].copy_from_slice(&sector[8..SECTOR_LEN - 4]);
    page[SECTOR_LEN - 4..].copy_from_slice(trailing_bytes);
    page
}

/// Number of descriptor sectors an entry with `count` descriptors has: the
/// first holds the header and 126 descriptors, each further one 128.
pub(super) fn descriptor_sectors(count: u32) -> u64 {
    (u64::from(count) + HEADER_SLOTS).div_ceil(DESCRIPTORS_PER_SECTOR)
}

/// Byte range, inside a descriptor sector, of descriptor `index` of the
/// entry, and which descriptor sector (0-based) holds it.
pub(super) fn descriptor_slot(index: u64) -> (u64, usize) {
    let slot = index + HEADER_SLOTS;
    let sector = slot / DESCRIPTORS_PER_SECTOR;
    // The remainder is below 128, so the byte offset is below 4096.
    let within = usize::try_from(slot % DESCRIPTORS_PER_SECTOR).unwrap_or(0) * DESCRIPTOR_LEN;
    (sector, within)
}

/// Starts the CRC-32C of an entry with its first sector, the checksum field
/// taken as zero.
pub(super) fn checksum_first_sector(sector: &[u8; SECTOR_LEN]) -> u32 {
    let crc = crc32c::crc32c(&sector[..CHECKSUM_AT]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &sector[CHECKSUM_AT + 4..])
}

/// Stores `checksum` in the header of an entry's first sector.
pub(super) fn set_checksum(sector: &mut [u8], checksum: u32) {
    sector[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&checksum.to_le_bytes());
}

fn high32(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(u32::MAX)
}

fn low32(v: u64) -> u32 {
    u32::try_from(v & u64::from(u32::MAX)).unwrap_or(u32::MAX)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn guid(b: &[u8], at: usize) -> Uuid {
    let mut v = [0u8; 16];
    v.copy_from_slice(&b[at..at + 16]);
    Uuid::from_bytes_le(v)
}
