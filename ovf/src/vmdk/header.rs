//! The sparse extent header (`KDMV`), decoded then validated.

use super::error::{Result, VmdkError};

/// Sector size of VMDK structures.
pub const SECTOR: u64 = 512;
/// `KDMV` read as a little-endian u32.
pub const MAGIC: u32 = 0x564d_444b;
/// `gdOffset` meaning "grain directory in the footer".
pub const GD_AT_END: u64 = u64::MAX;
/// Flag: newline-detection characters are valid.
pub const FLAG_NEWLINE_CHECK: u32 = 1;
/// Flag: a grain-table entry of 1 marks a zeroed grain (reads as zeros,
/// even in a delta over a parent).
pub const FLAG_ZEROED_GTE: u32 = 1 << 2;
/// Grain-table entry value of a zeroed grain (with [`FLAG_ZEROED_GTE`]).
pub const GTE_ZEROED: u32 = 1;
/// Flag: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag: grains and metadata carry markers.
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `compressAlgorithm` value for deflate.
pub const COMPRESS_DEFLATE: u16 = 1;
/// Grain-table entries per grain table (the only value accepted).
pub const GTES_PER_GT: u32 = 512;
/// Largest grain accepted, in sectors (8 MiB).
pub const MAX_GRAIN_SECTORS: u64 = 16384;
/// Largest capacity accepted, in sectors (256 TiB).
pub const MAX_CAPACITY_SECTORS: u64 = 1 << 39;
/// Largest embedded descriptor accepted, in sectors (1 MiB).
pub const MAX_DESCRIPTOR_SECTORS: u64 = 2048;

/// The header fields as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// Magic number.
    pub magic: u32,
    /// Format version.
    pub version: u32,
    /// Flags.
    pub flags: u32,
    /// Capacity in sectors.
    pub capacity: u64,
    /// Grain size in sectors.
    pub grain_size: u64,
    /// Embedded descriptor offset in sectors.
    pub descriptor_offset: u64,
    /// Embedded descriptor size in sectors.
    pub descriptor_size: u64,
    /// Entries per grain table.
    pub num_gtes_per_gt: u32,
    /// Redundant grain directory offset in sectors.
    pub rgd_offset: u64,
    /// Grain directory offset in sectors ([`GD_AT_END`]: in the footer).
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    /// Unclean-shutdown flag.
    pub unclean_shutdown: u8,
    /// Newline-detection characters `\n`, ` `, `\r`, `\n`.
    pub newline_chars: [u8; 4],
    /// Compression algorithm.
    pub compress_algorithm: u16,
}

fn u32_at(b: &[u8; 512], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; 512], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl RawHeader {
    /// Decodes a header sector.
    pub fn decode(b: &[u8; 512]) -> RawHeader {
        RawHeader {
            magic: u32_at(b, 0),
            version: u32_at(b, 4),
            flags: u32_at(b, 8),
            capacity: u64_at(b, 12),
            grain_size: u64_at(b, 20),
            descriptor_offset: u64_at(b, 28),
            descriptor_size: u64_at(b, 36),
            num_gtes_per_gt: u32_at(b, 44),
            rgd_offset: u64_at(b, 48),
            gd_offset: u64_at(b, 56),
            overhead: u64_at(b, 64),
            unclean_shutdown: b[72],
            newline_chars: [b[73], b[74], b[75], b[76]],
            compress_algorithm: u16::from_le_bytes([b[77], b[78]]),
        }
    }

    /// Encodes a header sector.
    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_size.to_le_bytes());
        b[28..36].copy_from_slice(&self.descriptor_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.descriptor_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.num_gtes_per_gt.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[72] = self.unclean_shutdown;
        b[73..77].copy_from_slice(&self.newline_chars);
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }
}

/// A validated streamOptimized header: every later computation can rely
/// on these bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    /// Format version (1 to 3).
    pub version: u32,
    /// Capacity in sectors (at most [`MAX_CAPACITY_SECTORS`]).
    pub capacity_sectors: u64,
    /// Grain size in sectors: a power of two, at most [`MAX_GRAIN_SECTORS`].
    pub grain_sectors: u64,
    /// Embedded descriptor offset in sectors (0 if none).
    pub descriptor_offset: u64,
    /// Embedded descriptor size in sectors (at most [`MAX_DESCRIPTOR_SECTORS`]).
    pub descriptor_size: u64,
    /// Grain directory offset ([`GD_AT_END`] when in the footer).
    pub gd_offset: u64,
    /// Sectors before the first grain.
    pub overhead: u64,
    /// Grain-table entries of 1 mark zeroed grains ([`FLAG_ZEROED_GTE`]).
    pub zeroed_grain_gtes: bool,
}

impl StreamHeader {
    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_sectors * SECTOR
    }

    /// Grain size in bytes.
    pub fn grain_bytes(&self) -> u64 {
        self.grain_sectors * SECTOR
    }

    /// Number of grains covering the capacity.
    pub fn grain_count(&self) -> u64 {
        self.capacity_sectors.div_ceil(self.grain_sectors)
    }

    /// Sectors one grain directory takes.
    pub fn gd_sectors(&self) -> u64 {
        let tables = self.grain_count().div_ceil(u64::from(GTES_PER_GT));
        (tables * 4).div_ceil(SECTOR)
    }

    /// Validates a decoded header found at `offset` in the stream.
    pub fn validate(raw: &RawHeader, offset: u64) -> Result<StreamHeader> {
        let bad = |field, reason: String| Err(VmdkError::corrupt(field, offset, reason));
        if raw.magic != MAGIC {
            return bad("header magic", format!("{:#010x} is not KDMV", raw.magic));
        }
        if !(1..=3).contains(&raw.version) {
            return Err(VmdkError::Unsupported {
                what: format!("sparse extent version {}", raw.version),
            });
        }
        if raw.flags & FLAG_COMPRESSED == 0 || raw.flags & FLAG_MARKERS == 0 {
            return Err(VmdkError::Unsupported {
                what: format!(
                    "sparse extent without compressed grains and markers (flags {:#x}): only \
                     streamOptimized can be read as a stream",
                    raw.flags
                ),
            });
        }
        if raw.compress_algorithm != COMPRESS_DEFLATE {
            return Err(VmdkError::Unsupported {
                what: format!("compression algorithm {}", raw.compress_algorithm),
            });
        }
        if raw.flags & FLAG_NEWLINE_CHECK != 0 && raw.newline_chars != *b"\n \r\n" {
            return bad(
                "newline-detection bytes",
                "altered (the file went through a text-mode transfer)".into(),
            );
        }
        let g = raw.grain_size;
        if g == 0 || !g.is_power_of_two() || g > MAX_GRAIN_SECTORS {
            return bad(
                "grain size",
                format!("{g} sectors is not a power of two between 1 and {MAX_GRAIN_SECTORS}"),
            );
        }
        if raw.capacity > MAX_CAPACITY_SECTORS {
            return bad(
                "capacity",
                format!(
                    "{} sectors exceeds the {MAX_CAPACITY_SECTORS}-sector limit",
                    raw.capacity
                ),
            );
        }
        if raw.num_gtes_per_gt != GTES_PER_GT {
            return bad(
                "grain table entries",
                format!("{} per table, expected {GTES_PER_GT}", raw.num_gtes_per_gt),
            );
        }
        if raw.descriptor_size > MAX_DESCRIPTOR_SECTORS {
            return bad(
                "descriptor size",
                format!(
                    "{} sectors exceeds {MAX_DESCRIPTOR_SECTORS}",
                    raw.descriptor_size
                ),
            );
        }
        if raw.descriptor_size > 0 && raw.descriptor_offset == 0 {
            return bad("descriptor offset", "0 with a non-empty descriptor".into());
        }
        let desc_end = raw
            .descriptor_offset
            .checked_add(raw.descriptor_size)
            .filter(|&e| e <= 1 << 32)
            .ok_or_else(|| VmdkError::corrupt("descriptor offset", offset, "out of range"))?;
        let header = StreamHeader {
            version: raw.version,
            capacity_sectors: raw.capacity,
            grain_sectors: g,
            descriptor_offset: raw.descriptor_offset,
            descriptor_size: raw.descriptor_size,
            gd_offset: raw.gd_offset,
            overhead: raw.overhead,
            zeroed_grain_gtes: raw.flags & FLAG_ZEROED_GTE != 0,
        };
        // The overhead may hold the descriptor and, in the layout that
        // reserves them up front, one grain directory and every grain table.
        let tables = header.grain_count().div_ceil(u64::from(GTES_PER_GT));
        let limit = desc_end + 2 * (header.gd_sectors() + tables * 4) + 4096 + g;
        if raw.overhead < desc_end.max(1) || raw.overhead > limit {
            return bad(
                "overhead",
                format!(
                    "{} sectors is outside the {}..={limit} the descriptor and tables need",
                    raw.overhead,
                    desc_end.max(1)
                ),
            );
        }
        Ok(header)
    }
}
