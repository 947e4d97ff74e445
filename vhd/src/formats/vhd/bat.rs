//! The block allocation table and the sector bitmaps of dynamic and
//! differencing disks, as held in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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

/// The in-memory BAT. Each block is one atomic word (file sector and what is
/// known of its bitmap), so looking up an allocated block takes no lock and
/// writes no shared memory; the bitmaps of partly present blocks sit in a
/// map beside it, changed only under that map's write lock.
#[derive(Debug)]
pub struct Table {
    slots: Vec<AtomicU64>,
    partial: RwLock<HashMap<usize, Arc<[u8]>>>,
}

const FREE: u64 = u64::MAX;
const UNKNOWN: u64 = 0;
const FULL: u64 = 1;
const PARTIAL: u64 = 2;

fn encode(sector: u32, state: u64) -> u64 {
    (state << 32) | u64::from(sector)
}

impl Table {
    /// A table of `capacity` slots (at least `entries.len()`), the ones past
    /// `entries` unallocated.
    pub fn new(entries: Vec<Entry>, capacity: usize) -> Self {
        let mut slots: Vec<AtomicU64> = Vec::with_capacity(capacity.max(entries.len()));
        let mut partial = HashMap::new();
        for (i, e) in entries.into_iter().enumerate() {
            slots.push(AtomicU64::new(match e {
                Entry::Unallocated => FREE,
                Entry::Present { sector, bits } => match bits {
                    Bits::Unknown => encode(sector, UNKNOWN),
                    Bits::Full => encode(sector, FULL),
                    Bits::Partial(m) => {
                        partial.insert(i, m);
                        encode(sector, PARTIAL)
                    }
                },
            }));
        }
        while slots.len() < capacity {
            slots.push(AtomicU64::new(FREE));
        }
        Table {
            slots,
            partial: RwLock::new(partial),
        }
    }

    /// Block `i`, or `None` past the table.
    pub fn get(&self, i: usize) -> Option<Entry> {
        let slot = self.slots.get(i)?;
        loop {
            let v = slot.load(Ordering::Acquire);
            if v == FREE {
                return Some(Entry::Unallocated);
            }
            // The low half is the sector by construction.
            let sector = u32::try_from(v & 0xFFFF_FFFF).unwrap_or(UNALLOCATED);
            let bits = match v >> 32 {
                FULL => Bits::Full,
                PARTIAL => {
                    let map = self.partial.read().unwrap_or_else(|e| e.into_inner());
                    match map.get(&i) {
                        Some(m) => Bits::Partial(m.clone()),
                        // Became full meanwhile: look again.
                        None => continue,
                    }
                }
                _ => Bits::Unknown,
            };
            return Some(Entry::Present { sector, bits });
        }
    }

    /// Records block `i` at `sector` with `bits`. Callers serialize changes
    /// to one block (the allocation mutex).
    pub fn set(&self, i: usize, sector: u32, bits: Bits) {
        let mut map = self.partial.write().unwrap_or_else(|e| e.into_inner());
        self.store(&mut map, i, sector, bits);
    }

    /// Records the bitmap read for block `i` at `sector`, unless the block
    /// changed meanwhile.
    pub fn resolve(&self, i: usize, sector: u32, bits: Bits) {
        let mut map = self.partial.write().unwrap_or_else(|e| e.into_inner());
        if self.slots.get(i).map(|s| s.load(Ordering::Acquire)) == Some(encode(sector, UNKNOWN)) {
            self.store(&mut map, i, sector, bits);
        }
    }

    fn store(&self, map: &mut HashMap<usize, Arc<[u8]>>, i: usize, sector: u32, bits: Bits) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        match bits {
            Bits::Partial(m) => {
                map.insert(i, m);
                slot.store(encode(sector, PARTIAL), Ordering::Release);
            }
            Bits::Full => {
                slot.store(encode(sector, FULL), Ordering::Release);
                map.remove(&i);
            }
            Bits::Unknown => slot.store(encode(sector, UNKNOWN), Ordering::Release),
        }
    }
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
    fn table_states() {
        let t = Table::new(
            vec![
                Entry::Unallocated,
                Entry::Present {
                    sector: 7,
                    bits: Bits::Unknown,
                },
            ],
            4,
        );
        assert!(matches!(t.get(0), Some(Entry::Unallocated)));
        assert!(matches!(t.get(3), Some(Entry::Unallocated)));
        assert!(t.get(4).is_none());
        t.resolve(1, 7, Bits::Partial(vec![0x80; 512].into()));
        assert!(matches!(
            t.get(1),
            Some(Entry::Present {
                sector: 7,
                bits: Bits::Partial(_)
            })
        ));
        // A stale resolution does not overwrite what is known.
        t.resolve(1, 7, Bits::Full);
        assert!(matches!(
            t.get(1),
            Some(Entry::Present {
                bits: Bits::Partial(_),
                ..
            })
        ));
        t.set(1, 7, Bits::Full);
        assert!(matches!(
            t.get(1),
            Some(Entry::Present {
                sector: 7,
                bits: Bits::Full
            })
        ));
        t.set(2, 9, Bits::Full);
        assert!(matches!(
            t.get(2),
            Some(Entry::Present {
                sector: 9,
                bits: Bits::Full
            })
        ));
    }

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
