//! The block allocation table: geometry (chunk ratio, entry counts), entry
//! states, and a lazily loaded, lock-free readable copy in memory.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::MIB;

/// Payload block states (bits 0-2 of an entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayloadState {
    /// 0: not in this file (the parent's, or undefined without one).
    NotPresent,
    /// 1: contents undefined.
    Undefined,
    /// 2: reads as zeros.
    Zero,
    /// 3 (and 5 from the v0.95 draft): unmapped.
    Unmapped,
    /// 6: every sector is in this file.
    FullyPresent,
    /// 7: the sector bitmap says which sectors are in this file.
    PartiallyPresent,
}

/// Sector bitmap entry state: present.
pub(crate) const SB_PRESENT: u64 = 6;

impl PayloadState {
    /// Decodes the state bits; `None` for reserved values.
    pub fn from_bits(bits: u64) -> Option<Self> {
        Some(match bits & 7 {
            0 => PayloadState::NotPresent,
            1 => PayloadState::Undefined,
            2 => PayloadState::Zero,
            3 | 5 => PayloadState::Unmapped,
            6 => PayloadState::FullyPresent,
            7 => PayloadState::PartiallyPresent,
            _ => return None,
        })
    }

    /// The on-disk value.
    pub fn bits(self) -> u64 {
        match self {
            PayloadState::NotPresent => 0,
            PayloadState::Undefined => 1,
            PayloadState::Zero => 2,
            PayloadState::Unmapped => 3,
            PayloadState::FullyPresent => 6,
            PayloadState::PartiallyPresent => 7,
        }
    }

    /// Whether the entry points at space in the file.
    pub fn has_data(self) -> bool {
        matches!(
            self,
            PayloadState::FullyPresent | PayloadState::PartiallyPresent
        )
    }
}

/// The file offset an entry names (bits 20-63, in MiB).
pub(crate) fn entry_offset(entry: u64) -> u64 {
    entry & !(MIB - 1)
}

/// Builds an entry.
pub(crate) fn make_entry(state_bits: u64, offset: u64) -> u64 {
    (offset & !(MIB - 1)) | (state_bits & 7)
}

/// The shape of the BAT for a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub block_size: u64,
    pub logical_sector_size: u64,
    pub virtual_size: u64,
    pub has_parent: bool,
    /// Payload blocks per sector bitmap block.
    pub chunk_ratio: u64,
}

impl Geometry {
    /// Builds the geometry; the inputs are validated metadata (block size a
    /// power of two from 1 to 256 MiB, sector 512 or 4096, size at most
    /// 64 TiB), so nothing here overflows.
    pub fn new(
        block_size: u64,
        logical_sector_size: u64,
        virtual_size: u64,
        has_parent: bool,
    ) -> Self {
        Geometry {
            block_size,
            logical_sector_size,
            virtual_size,
            has_parent,
            chunk_ratio: (1u64 << 23) * logical_sector_size / block_size,
        }
    }

    /// Number of payload blocks.
    pub fn payload_blocks(&self) -> u64 {
        self.virtual_size.div_ceil(self.block_size)
    }

    /// Number of sector bitmap blocks.
    pub fn bitmap_blocks(&self) -> u64 {
        self.payload_blocks().div_ceil(self.chunk_ratio)
    }

    /// Number of BAT entries the disk needs.
    pub fn total_entries(&self) -> u64 {
        let n = self.payload_blocks();
        if self.has_parent {
            self.bitmap_blocks() * (self.chunk_ratio + 1)
        } else if n == 0 {
            0
        } else {
            n + (n - 1) / self.chunk_ratio
        }
    }

    /// BAT index of payload block `block`. The chunk ratio is a power of
    /// two (2^23 x sector size / block size, both powers of two), so the
    /// division is a shift, as on every read.
    #[inline]
    pub fn payload_index(&self, block: u64) -> u64 {
        block + (block >> self.chunk_ratio.trailing_zeros())
    }

    /// BAT index of the sector bitmap entry of the chunk holding `block`.
    pub fn bitmap_index(&self, block: u64) -> u64 {
        (block / self.chunk_ratio) * (self.chunk_ratio + 1) + self.chunk_ratio
    }

    /// Logical sectors per payload block.
    pub fn sectors_per_block(&self) -> u64 {
        self.block_size / self.logical_sector_size
    }

    /// Bit number, inside its sector bitmap block, of the first sector of
    /// `block`.
    pub fn bitmap_bit(&self, block: u64) -> u64 {
        (block % self.chunk_ratio) * self.sectors_per_block()
    }
}

const PAGE_ENTRIES: usize = 512;

/// Entries per 4 KiB BAT page.
pub(crate) const ENTRIES_PER_PAGE: u64 = PAGE_ENTRIES as u64;

type Page = Box<[AtomicU64]>;

/// The BAT in memory, loaded a 4 KiB page at a time on first use. Entries
/// are atomics: readers need no lock; writers change them only while
/// holding the image's allocation lock, after the change is durable.
#[derive(Debug)]
pub(crate) struct BatCache {
    pub region_offset: u64,
    pub region_length: u64,
    pub entries: u64,
    pages: Vec<OnceLock<Page>>,
}

impl BatCache {
    /// An empty cache for a BAT of `entries` entries in the given region.
    pub fn new(region_offset: u64, region_length: u64, entries: u64) -> Self {
        let n = usize::try_from(entries.div_ceil(ENTRIES_PER_PAGE)).unwrap_or(0);
        let mut pages = Vec::with_capacity(n);
        pages.resize_with(n, OnceLock::new);
        BatCache {
            region_offset,
            region_length,
            entries,
            pages,
        }
    }

    /// Makes room for `entries` entries (growing only).
    pub fn grow(&mut self, entries: u64) {
        let n = usize::try_from(entries.div_ceil(ENTRIES_PER_PAGE)).unwrap_or(0);
        if n > self.pages.len() {
            self.pages.resize_with(n, OnceLock::new);
        }
        self.entries = self.entries.max(entries);
    }

    /// File offset of page `page`.
    pub fn page_offset(&self, page: u64) -> u64 {
        self.region_offset + page * 4096
    }

    /// Entry `index`, loading its page with `load` (which fills a 4 KiB
    /// buffer with the page's bytes) when not yet cached.
    pub fn get(
        &self,
        index: u64,
        load: impl FnOnce(u64, &mut [u8]) -> crate::Result<()>,
    ) -> crate::Result<u64> {
        let page = self.page(index, load)?;
        Ok(page[(index % ENTRIES_PER_PAGE) as usize].load(Ordering::Acquire))
    }

    /// Stores entry `index` (its page must have been loaded by `get`).
    pub fn set(&self, index: u64, value: u64) {
        if let Some(p) = usize::try_from(index / ENTRIES_PER_PAGE)
            .ok()
            .and_then(|i| self.pages.get(i))
            .and_then(OnceLock::get)
        {
            p[(index % ENTRIES_PER_PAGE) as usize].store(value, Ordering::Release);
        }
    }

    /// The 4 KiB image of page `page` as it is in memory.
    pub fn page_bytes(
        &self,
        page: u64,
        load: impl FnOnce(u64, &mut [u8]) -> crate::Result<()>,
    ) -> crate::Result<Box<[u8; 4096]>> {
        let p = self.page(page * ENTRIES_PER_PAGE, load)?;
        let mut out = Box::new([0u8; 4096]);
        for (i, e) in p.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&e.load(Ordering::Acquire).to_le_bytes());
        }
        Ok(out)
    }

    fn page(
        &self,
        index: u64,
        load: impl FnOnce(u64, &mut [u8]) -> crate::Result<()>,
    ) -> crate::Result<&Page> {
        let page_no = index / ENTRIES_PER_PAGE;
        let slot = usize::try_from(page_no)
            .ok()
            .and_then(|i| self.pages.get(i))
            .ok_or_else(|| {
                crate::Error::InvalidArgument(format!("BAT index {index} past the table"))
            })?;
        if let Some(p) = slot.get() {
            return Ok(p);
        }
        let mut buf = vec![0u8; 4096];
        load(self.page_offset(page_no), &mut buf)?;
        let fresh: Page = buf
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                AtomicU64::new(u64::from_le_bytes(b))
            })
            .collect();
        // A racing loader may have won; both read the same durable bytes
        // and no one changes an entry before its page is installed.
        let _ = slot.set(fresh);
        slot.get()
            .ok_or_else(|| crate::Error::InvalidArgument("BAT page vanished after loading".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ratio_and_counts() {
        let g = Geometry::new(32 * MIB, 512, 100 * MIB, false);
        assert_eq!(g.chunk_ratio, 128);
        assert_eq!(g.payload_blocks(), 4);
        assert_eq!(g.total_entries(), 4);
        let g = Geometry::new(MIB, 512, 4096 * MIB + 1, false);
        assert_eq!(g.chunk_ratio, 4096);
        assert_eq!(g.payload_blocks(), 4097);
        assert_eq!(g.total_entries(), 4098);
        assert_eq!(g.payload_index(4096), 4097);
        let g = Geometry::new(MIB, 4096, 10 * MIB, true);
        assert_eq!(g.chunk_ratio, 32768);
        assert_eq!(g.total_entries(), 32769);
        assert_eq!(g.bitmap_index(3), 32768);
        let g = Geometry::new(256 * MIB, 512, 1 << 40, true);
        assert_eq!(g.chunk_ratio, 16);
        assert_eq!(g.bitmap_index(17), 33);
    }

    #[test]
    fn entries_keep_state_and_offset() {
        let e = make_entry(6, 5 * MIB);
        assert_eq!(entry_offset(e), 5 * MIB);
        assert_eq!(PayloadState::from_bits(e), Some(PayloadState::FullyPresent));
        assert_eq!(PayloadState::from_bits(4), None);
        assert_eq!(PayloadState::from_bits(5), Some(PayloadState::Unmapped));
    }
}
