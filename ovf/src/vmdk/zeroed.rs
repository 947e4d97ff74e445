//! Zeroed grains: with the header's zeroed-grain flag set, a grain-table
//! entry of 1 says "this grain reads as zeros" without a grain in the
//! stream. On a standalone disk that is the same as a hole, but in a delta
//! disk a hole reads from the parent while a zeroed grain does not, so the
//! reader finds them.
//!
//! A grain table does not say which part of the disk it covers; the grain
//! directory does. With the directory at the end of the stream, tables
//! come first (after the grains they describe) and are matched to the
//! directory's entries when it arrives; with the directory reserved up
//! front, the directory comes first and names the tables that follow it.
//! Memory stays proportional to the tables actually read that hold zeroed
//! entries (64 bytes each), never to the disk's declared size.

use std::collections::HashMap;
use std::ops::Range;

use super::error::{Result, VmdkError};
use super::header::{GTE_ZEROED, GTES_PER_GT};

/// One bit per entry of a grain table.
type EntryBits = [u64; (GTES_PER_GT / 64) as usize];

/// Collects zeroed-grain entries while a stream is read.
#[derive(Debug, Default)]
pub(crate) struct ZeroedGrains {
    /// Tables with zeroed entries not yet placed, by the stream sector
    /// where their entries start.
    unplaced: HashMap<u64, EntryBits>,
    /// Zeroed grain indices found, as runs (not yet sorted).
    runs: Vec<Range<u64>>,
    /// Runs of grain indices that came as grain markers, in order.
    data: Vec<Range<u64>>,
}

/// The zeroed entries of one table's bytes (`None` when there are none).
fn zeroed_entries(table: &[u8]) -> Option<EntryBits> {
    let mut bits = EntryBits::default();
    let mut any = false;
    for (i, e) in table.chunks_exact(4).take(GTES_PER_GT as usize).enumerate() {
        if u32::from_le_bytes([e[0], e[1], e[2], e[3]]) == GTE_ZEROED {
            bits[i / 64] |= 1 << (i % 64);
            any = true;
        }
    }
    any.then_some(bits)
}

impl ZeroedGrains {
    /// Records that the grain with index `grain` came in the stream.
    pub(crate) fn data_grain(&mut self, grain: u64) {
        match self.data.last_mut() {
            Some(last) if last.end == grain => last.end = grain + 1,
            _ => self.data.push(grain..grain + 1),
        }
    }

    /// A grain table whose entries start at stream sector `sector`, not
    /// yet matched to its place in the directory.
    pub(crate) fn table_at(&mut self, sector: u64, table: &[u8]) {
        if let Some(bits) = zeroed_entries(table) {
            self.unplaced.insert(sector, bits);
        }
    }

    /// A grain table known to be table `index` of the directory.
    pub(crate) fn table_with_index(&mut self, index: u64, table: &[u8]) {
        if let Some(bits) = zeroed_entries(table) {
            self.place(index, &bits);
        }
    }

    /// Directory entries `first..` (sector of each table, 0 for none):
    /// places the tables read earlier.
    pub(crate) fn directory_entries(&mut self, first: u64, entries: &[u8]) {
        if self.unplaced.is_empty() {
            return;
        }
        for (i, e) in entries.chunks_exact(4).enumerate() {
            let sector = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
            if sector == 0 {
                continue;
            }
            if let Some(bits) = self.unplaced.remove(&sector) {
                self.place(first + i as u64, &bits);
            }
        }
    }

    fn place(&mut self, table: u64, bits: &EntryBits) {
        let base = table * u64::from(GTES_PER_GT);
        for i in 0..u64::from(GTES_PER_GT) {
            let word = bits[usize::try_from(i / 64).unwrap_or(0)];
            if word & (1 << (i % 64)) != 0 {
                let g = base + i;
                match self.runs.last_mut() {
                    Some(last) if last.end == g => last.end = g + 1,
                    _ => self.runs.push(g..g + 1),
                }
            }
        }
    }

    /// The zeroed grains as sorted, merged runs of grain indices, cut at
    /// `grain_count`, once the stream has ended. `at` is the stream offset
    /// for errors.
    pub(crate) fn finish(&mut self, grain_count: u64, at: u64) -> Result<Vec<Range<u64>>> {
        if !self.unplaced.is_empty() {
            return Err(VmdkError::corrupt(
                "grain table",
                at,
                format!(
                    "{} grain tables with zeroed-grain entries are not listed in the grain \
                     directory",
                    self.unplaced.len()
                ),
            ));
        }
        let mut runs = std::mem::take(&mut self.runs);
        runs.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(runs.len());
        // Entries past the capacity (the end of the last table) cover
        // nothing.
        for r in runs {
            let r = r.start..r.end.min(grain_count);
            if r.is_empty() {
                continue;
            }
            match merged.last_mut() {
                Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        // A grain both stored and marked zeroed contradicts itself.
        let mut d = self.data.iter().peekable();
        for z in &merged {
            while d.peek().is_some_and(|x| x.end <= z.start) {
                d.next();
            }
            if let Some(x) = d.peek()
                && x.start < z.end
            {
                return Err(VmdkError::corrupt(
                    "grain table",
                    at,
                    format!(
                        "grain {} is stored in the stream and marked zeroed",
                        x.start.max(z.start)
                    ),
                ));
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(zeroed: &[usize], data: &[(usize, u32)]) -> Vec<u8> {
        let mut t = vec![0u8; 2048];
        for &i in zeroed {
            t[i * 4..i * 4 + 4].copy_from_slice(&GTE_ZEROED.to_le_bytes());
        }
        for &(i, v) in data {
            t[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        t
    }

    #[test]
    fn tables_before_the_directory_are_placed_by_it() {
        let mut z = ZeroedGrains::default();
        z.data_grain(512);
        z.table_at(100, &table(&[], &[(0, 60)]));
        z.table_at(200, &table(&[1, 2, 3, 511], &[(0, 90)]));
        z.table_at(300, &table(&[0], &[]));
        let mut gd = Vec::new();
        for s in [100u32, 200, 0, 300] {
            gd.extend_from_slice(&s.to_le_bytes());
        }
        z.directory_entries(0, &gd);
        let runs = z.finish(4 * 512, 0).unwrap();
        assert_eq!(runs, vec![513..516, 1023..1024, 1536..1537]);
    }

    #[test]
    fn an_unplaced_table_is_an_error() {
        let mut z = ZeroedGrains::default();
        z.table_at(200, &table(&[7], &[]));
        z.directory_entries(0, &100u32.to_le_bytes());
        assert!(matches!(z.finish(512, 0), Err(VmdkError::Corrupt { .. })));
    }

    #[test]
    fn a_stored_grain_marked_zeroed_is_an_error() {
        let mut z = ZeroedGrains::default();
        z.data_grain(5);
        z.table_with_index(0, &table(&[5], &[]));
        assert!(matches!(z.finish(512, 0), Err(VmdkError::Corrupt { .. })));
    }

    #[test]
    fn entries_past_the_capacity_cover_nothing() {
        let mut z = ZeroedGrains::default();
        z.table_with_index(1, &table(&[0], &[]));
        assert_eq!(z.finish(512, 0).unwrap(), vec![]);
        let mut z = ZeroedGrains::default();
        z.table_with_index(0, &table(&[10, 11], &[]));
        assert_eq!(z.finish(11, 0).unwrap(), vec![10..11]);
    }
}
