//! The block allocation table and the sector bitmaps of dynamic and
//! differencing disks, as held in memory.

use std::sync::Arc;

use super::be32;
use crate::file::ImageFile;
use crate::{Error, Format, Result};

/// A BAT entry meaning "not allocated" (also the value of the padding).
pub const UNALLOCATED: u32 = 0xFFFF_FFFF;

/// What is known of an allocated block's sector bitmap.
#[derive(Debug, Clone)]
pub enum Bits {
    /// Not read yet.
    Unknown,
    /// Every sector of the block is present.
    Full,
    /// Some sectors are present: the bitmap as stored (MSB first).
    Partial(Arc<[u8]>),
}

/// One block of the disk.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Not allocated: reads as zeros (dynamic) or from the parent.
    Unallocated,
    /// Allocated: the bitmap sits at `sector * 512`, the data after it.
    Present {
        /// File sector of the block's bitmap.
        sector: u32,
        /// The block's bitmap.
        bits: Bits,
    },
}

/// Bytes of the sector bitmap of a block of `block_size` bytes: one bit per
/// sector, padded to a whole sector.
pub fn bitmap_size(block_size: u64) -> u64 {
    (block_size / 512).div_ceil(8).next_multiple_of(512)
}

/// Whether sector `i`'s bit is set (MSB first).
pub fn bit(map: &[u8], i: u64) -> bool {
    usize::try_from(i / 8)
        .ok()
        .and_then(|b| map.get(b))
        .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0)
}

/// Sets the bits of sectors `from..to`.
pub fn set_bits(map: &mut [u8], from: u64, to: u64) {
    for i in from..to {
        if let Some(byte) = usize::try_from(i / 8).ok().and_then(|b| map.get_mut(b)) {
            *byte |= 0x80 >> (i % 8);
        }
    }
}

/// Whether every bit of sectors `from..to` is set.
pub fn all_set(map: &[u8], from: u64, to: u64) -> bool {
    (from..to).all(|i| bit(map, i))
}

/// Classifies a bitmap read from the file for a block of `sectors` sectors.
pub fn classify(map: Vec<u8>, sectors: u64) -> Bits {
    if all_set(&map, 0, sectors) {
        Bits::Full
    } else {
        Bits::Partial(map.into())
    }
}

/// A file byte range used by a structure, for overlap checks.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// What it is, for messages.
    pub what: &'static str,
}

/// Reads and validates the BAT: `entries` big-endian entries at
/// `table_offset`. Every allocated block (bitmap and data) must start inside
/// the file and overlap neither another block nor any of `metadata`.
pub fn read_table(
    file: &ImageFile,
    table_offset: u64,
    entries: u32,
    block_span: u64,
    file_len: u64,
    metadata: &[Extent],
) -> Result<Vec<Entry>> {
    // The header check guaranteed that the table lies inside the file, so
    // this allocation is backed by file content.
    let len = usize::try_from(u64::from(entries) * 4)
        .map_err(|_| Error::unsupported(Format::Vhd, "a BAT larger than the address space"))?;
    let mut raw = vec![0u8; len];
    file.read_exact_at(&mut raw, table_offset)?;
    let mut out = Vec::with_capacity(entries as usize);
    let mut used: Vec<(u64, u64, u64)> = Vec::new();
    for (i, c) in raw.chunks_exact(4).enumerate() {
        let v = be32(c, 0);
        if v == UNALLOCATED {
            out.push(Entry::Unallocated);
            continue;
        }
        let at = table_offset + 4 * i as u64;
        let start = u64::from(v) * 512;
        let end = start + block_span;
        if start >= file_len {
            return Err(Error::corrupt(
                Format::Vhd,
                "block allocation table entry",
                at,
                format!("block {i} at {start:#x} lies beyond the end of the file ({file_len:#x})"),
            ));
        }
        if let Some(m) = metadata.iter().find(|m| start < m.end && m.start < end) {
            return Err(Error::corrupt(
                Format::Vhd,
                "block allocation table entry",
                at,
                format!("block {i} at {start:#x} overlaps the {}", m.what),
            ));
        }
        used.push((start, end, at));
        out.push(Entry::Present {
            sector: v,
            bits: Bits::Unknown,
        });
    }
    used.sort_unstable();
    for w in used.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(Error::corrupt(
                Format::Vhd,
                "block allocation table entry",
                w[1].2,
                format!("block at {:#x} overlaps the block at {:#x}", w[1].0, w[0].0),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_geometry() {
        assert_eq!(bitmap_size(2 << 20), 512);
        assert_eq!(bitmap_size(512), 512);
        assert_eq!(bitmap_size(32 << 20), 8192);
        let mut m = vec![0u8; 512];
        set_bits(&mut m, 3, 10);
        assert_eq!(&m[..2], &[0b0001_1111, 0b1100_0000]);
        assert!(all_set(&m, 3, 10));
        assert!(!all_set(&m, 2, 10));
        assert!(bit(&m, 9) && !bit(&m, 10));
        assert!(matches!(classify(vec![0xFF; 512], 4096), Bits::Full));
        assert!(matches!(classify(m, 4096), Bits::Partial(_)));
    }
}
