//! The dynamic disk header (`cxsparse`), with its parent locator entries.

use super::footer::checksum;
use super::{be32, be64, put_be32, put_be64};
use crate::{Error, Format, Result};

/// Size of the dynamic header on disk.
pub const HEADER_SIZE: usize = 1024;
/// The header's cookie.
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
/// Smallest block size accepted: one sector.
pub const MIN_BLOCK_SIZE: u64 = 512;
/// Largest block size accepted: 256 MiB (Hyper-V and QEMU use 2 MiB,
/// Virtual PC 512 KiB; bigger blocks have no known producer).
pub const MAX_BLOCK_SIZE: u64 = 256 << 20;
/// Number of parent locator entries.
pub const LOCATORS: usize = 8;

/// One parent locator entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocatorEntry {
    /// Platform code (`W2ku`, `W2ru`, `Wi2k`, `Wi2r`, `Mac `, `MacX`, or 0).
    pub code: [u8; 4],
    /// Space reserved for the data: sectors per the specification, bytes in
    /// what Windows 10 writes.
    pub data_space: u32,
    /// Length of the data in bytes.
    pub data_length: u32,
    /// File offset of the data.
    pub data_offset: u64,
}

impl LocatorEntry {
    /// Whether the entry is in use.
    pub fn is_used(&self) -> bool {
        self.code != [0; 4]
    }
}

/// A decoded and validated dynamic header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    /// File offset of the block allocation table.
    pub table_offset: u64,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Block size in bytes (a power of two).
    pub block_size: u64,
    /// Unique id of the parent (differencing disks).
    pub parent_uuid: [u8; 16],
    /// Parent's time stamp (0: not recorded).
    pub parent_timestamp: u32,
    /// Parent's name, UTF-16BE as stored.
    pub parent_name: [u8; 512],
    /// Parent locators.
    pub locators: [LocatorEntry; LOCATORS],
}

impl DynamicHeader {
    /// Decodes a header read at file offset `offset` of a file of `file_len`
    /// bytes, validating every field a reader relies on.
    pub fn decode(b: &[u8; HEADER_SIZE], offset: u64, file_len: u64) -> Result<Self> {
        let corrupt = |field, at: u64, reason: String| {
            Error::corrupt(Format::Vhd, field, offset + at, reason)
        };
        if &b[0..8] != HEADER_COOKIE {
            return Err(corrupt(
                "dynamic header cookie",
                0,
                "not \"cxsparse\"".into(),
            ));
        }
        let stored = be32(b, 36);
        let mut copy = *b;
        copy[36..40].fill(0);
        let computed = checksum(&copy);
        if stored != computed {
            return Err(corrupt(
                "dynamic header checksum",
                36,
                format!("stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        let version = be32(b, 24);
        if version >> 16 != 1 {
            return Err(Error::unsupported(
                Format::Vhd,
                format!("dynamic header version {version:#010x} (only 1.x is known)"),
            ));
        }
        let block_size = u64::from(be32(b, 32));
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(corrupt(
                "dynamic header block size",
                32,
                format!(
                    "{block_size} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
                ),
            ));
        }
        let table_offset = be64(b, 16);
        let max_table_entries = be32(b, 28);
        let table_end = u64::from(max_table_entries)
            .checked_mul(4)
            .and_then(|n| table_offset.checked_add(n));
        match table_end {
            Some(end) if end <= file_len && table_offset >= 512 => {}
            _ => {
                return Err(corrupt(
                    "dynamic header table offset",
                    16,
                    format!(
                        "a table of {max_table_entries} entries at {table_offset:#x} does not fit \
                         in the file of {file_len} bytes (or is misplaced)"
                    ),
                ));
            }
        }
        let mut parent_uuid = [0u8; 16];
        parent_uuid.copy_from_slice(&b[40..56]);
        let mut parent_name = [0u8; 512];
        parent_name.copy_from_slice(&b[64..576]);
        let mut locators = [LocatorEntry::default(); LOCATORS];
        for (i, l) in locators.iter_mut().enumerate() {
            let o = 576 + 24 * i;
            let mut code = [0u8; 4];
            code.copy_from_slice(&b[o..o + 4]);
            *l = LocatorEntry {
                code,
                data_space: be32(b, o + 4),
                data_length: be32(b, o + 8),
                data_offset: be64(b, o + 16),
            };
        }
        Ok(DynamicHeader {
            table_offset,
            max_table_entries,
            block_size,
            parent_uuid,
            parent_timestamp: be32(b, 56),
            parent_name,
            locators,
        })
    }

    /// Encodes the header with its checksum.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(HEADER_COOKIE);
        // All 64 bits set: what Microsoft's tools expect (the specification
        // text says 0xFFFFFFFF).
        put_be64(&mut b, 8, u64::MAX);
        put_be64(&mut b, 16, self.table_offset);
        put_be32(&mut b, 24, 0x0001_0000);
        put_be32(&mut b, 28, self.max_table_entries);
        // Block sizes are bounded by MAX_BLOCK_SIZE.
        put_be32(
            &mut b,
            32,
            u32::try_from(self.block_size).unwrap_or(u32::MAX),
        );
        b[40..56].copy_from_slice(&self.parent_uuid);
        put_be32(&mut b, 56, self.parent_timestamp);
        b[64..576].copy_from_slice(&self.parent_name);
        for (i, l) in self.locators.iter().enumerate() {
            let o = 576 + 24 * i;
            b[o..o + 4].copy_from_slice(&l.code);
            put_be32(&mut b, o + 4, l.data_space);
            put_be32(&mut b, o + 8, l.data_length);
            put_be64(&mut b, o + 16, l.data_offset);
        }
        let sum = checksum(&b);
        put_be32(&mut b, 36, sum);
        b
    }

    /// The parent's name decoded from UTF-16BE (unpaired surrogates become
    /// U+FFFD), up to the first NUL.
    pub fn parent_name(&self) -> String {
        let units: Vec<u16> = self
            .parent_name
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        String::from_utf16_lossy(&units)
    }

    /// Stores `name` as the parent's name (UTF-16BE, truncated to 255 units).
    pub fn set_parent_name(&mut self, name: &str) {
        self.parent_name = [0; 512];
        for (i, u) in name.encode_utf16().take(255).enumerate() {
            self.parent_name[2 * i..2 * i + 2].copy_from_slice(&u.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> DynamicHeader {
        DynamicHeader {
            table_offset: 1536,
            max_table_entries: 10,
            block_size: 2 << 20,
            parent_uuid: [7; 16],
            parent_timestamp: 99,
            parent_name: [0; 512],
            locators: [LocatorEntry::default(); LOCATORS],
        }
    }

    #[test]
    fn round_trip() {
        let mut h = header();
        h.set_parent_name("p\u{e9}re.vhd");
        h.locators[0] = LocatorEntry {
            code: *b"W2ku",
            data_space: 1,
            data_length: 20,
            data_offset: 4096,
        };
        let b = h.encode();
        let d = DynamicHeader::decode(&b, 512, 1 << 20).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.parent_name(), "p\u{e9}re.vhd");
    }

    #[test]
    fn unpaired_surrogate_is_lossy() {
        let mut h = header();
        h.parent_name[0..2].copy_from_slice(&0xD800u16.to_be_bytes());
        h.parent_name[2..4].copy_from_slice(&0x0041u16.to_be_bytes());
        assert_eq!(h.parent_name(), "\u{fffd}A");
    }

    #[test]
    fn bad_block_sizes() {
        for bs in [0u64, 0x8000_0000, 3 << 20, 256] {
            let mut h = header();
            h.block_size = bs;
            let mut b = h.encode();
            // encode clamps nothing below u32; write the raw value.
            b[32..36].copy_from_slice(&u32::try_from(bs).unwrap().to_be_bytes());
            b[36..40].fill(0);
            let sum = checksum(&b);
            b[36..40].copy_from_slice(&sum.to_be_bytes());
            let e = DynamicHeader::decode(&b, 512, 1 << 20).unwrap_err();
            assert!(e.to_string().contains("block size"), "{e}");
        }
    }

    #[test]
    fn table_must_fit() {
        let mut h = header();
        h.max_table_entries = u32::MAX;
        let e = DynamicHeader::decode(&h.encode(), 512, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("table offset"), "{e}");
    }
}
