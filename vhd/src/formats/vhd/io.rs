//! Reads, writes, allocation, flush and allocation queries of dynamic and
//! differencing disks.

use std::sync::{Arc, RwLock};

use super::bat::{self, Bits, Entry};
use super::footer::Footer;
use super::{AllocState, Sparse, lock, read};
use crate::file::ImageFile;
use crate::{Allocation, DiskImage, Error, Extent, Format, Result};

/// What a write puts on the disk.
#[derive(Debug, Clone, Copy)]
pub enum Src<'a> {
    /// These bytes.
    Data(&'a [u8]),
    /// This many zero bytes.
    Zeros(u64),
}

impl<'a> Src<'a> {
    fn len(&self) -> u64 {
        match self {
            Src::Data(d) => d.len() as u64,
            Src::Zeros(n) => *n,
        }
    }

    /// The part `[from, to)` of the source.
    fn part(&self, from: u64, to: u64) -> Src<'a> {
        match self {
            // Callers pass bounds inside the source, whose length fits usize.
            Src::Data(d) => Src::Data(&d[idx(from)..idx(to)]),
            Src::Zeros(_) => Src::Zeros(to - from),
        }
    }

    /// Copies the part starting at `from` over `dst`.
    fn copy_to(&self, from: u64, dst: &mut [u8]) {
        match self {
            Src::Data(d) => dst.copy_from_slice(&d[idx(from)..idx(from) + dst.len()]),
            Src::Zeros(_) => dst.fill(0),
        }
    }
}

/// An offset inside an in-memory buffer (always below its length).
fn idx(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A block as the I/O paths see it.
#[derive(Debug, Clone)]
enum Block {
    Unallocated,
    /// Every sector present; data at this file offset.
    Full(u64),
    /// Some sectors present.
    Partial(u64, Arc<[u8]>),
}

const SECTOR: u64 = 512;
/// Alignment of a new block's data in the file.
const ALIGN: u64 = 4096;

impl Sparse {
    fn diff(&self) -> bool {
        self.parent.is_some()
    }

    fn sectors_per_block(&self) -> u64 {
        self.block_size / SECTOR
    }

    /// Splits `[offset, offset + len)` at block boundaries:
    /// (block index, offset in block, length).
    fn chunks(&self, offset: u64, len: u64) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        let end = offset + len;
        let mut pos = offset;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let in_block = pos % self.block_size;
            let n = (self.block_size - in_block).min(end - pos);
            let item = (idx(pos / self.block_size), in_block, n);
            pos += n;
            Some(item)
        })
    }

    /// The block `i`, reading its bitmap the first time.
    fn block(&self, file: &ImageFile, i: usize) -> Result<Block> {
        let entry = self.map.get(i);
        let data = |sector: u32| u64::from(sector) * SECTOR + self.bitmap_size;
        match entry {
            None => Err(Error::InvalidArgument(format!(
                "block {i} is outside the table"
            ))),
            Some(Entry::Unallocated) => Ok(Block::Unallocated),
            Some(Entry::Present { sector, bits }) => match bits {
                Bits::Full => Ok(Block::Full(data(sector))),
                Bits::Partial(m) => Ok(Block::Partial(data(sector), m)),
                Bits::Unknown => {
                    let mut m = vec![0u8; idx(self.bitmap_size)];
                    file.read_at_zero_fill(&mut m, u64::from(sector) * SECTOR)?;
                    let bits = bat::classify(m, self.sectors_per_block());
                    self.map.resolve(i, sector, bits);
                    self.block(file, i)
                }
            },
        }
    }

    /// Fills `dst` with what lies under this image at virtual offset `voff`:
    /// zeros for a dynamic disk, the parent's data for a differencing one.
    fn background(&self, dst: &mut [u8], voff: u64) -> Result<()> {
        match &self.parent {
            None => dst.fill(0),
            Some(p) => {
                let psize = p.virtual_size();
                let n = psize.saturating_sub(voff).min(dst.len() as u64);
                let (head, tail) = dst.split_at_mut(idx(n));
                if n > 0 {
                    p.read_at(head, voff)?;
                }
                tail.fill(0);
            }
        }
        Ok(())
    }

    /// Whether `[voff, voff + len)` of the background reads as zeros.
    fn background_is_zero(&self, voff: u64, len: u64) -> Result<bool> {
        let Some(p) = &self.parent else {
            return Ok(true);
        };
        let end = (voff + len).min(p.virtual_size());
        let mut pos = voff;
        while pos < end {
            let e = p.block_status(pos, end - pos)?;
            if !e.allocation.reads_as_zero() {
                return Ok(false);
            }
            pos += e.length.max(1);
        }
        Ok(true)
    }

    #[inline]
    pub(super) fn read(&self, file: &ImageFile, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0u64;
        for (i, in_block, n) in self.chunks(offset, buf.len() as u64) {
            let dst = &mut buf[idx(done)..idx(done + n)];
            let voff = offset + done;
            match self.block(file, i)? {
                Block::Unallocated => self.background(dst, voff)?,
                Block::Full(data) => {
                    file.read_at_zero_fill(dst, data + in_block)?;
                }
                Block::Partial(data, map) => {
                    let mut pos = 0u64;
                    while pos < n {
                        let s = (in_block + pos) / SECTOR;
                        let present = bat::bit(&map, s);
                        let mut run_end = ((s + 1) * SECTOR - in_block).min(n);
                        while run_end < n
                            && bat::bit(&map, (in_block + run_end) / SECTOR) == present
                        {
                            run_end = (run_end + SECTOR).min(n);
                        }
                        let part = &mut dst[idx(pos)..idx(run_end)];
                        if present {
                            file.read_at_zero_fill(part, data + in_block + pos)?;
                        } else {
                            self.background(part, voff + pos)?;
                        }
                        pos = run_end;
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    pub(super) fn write(
        &self,
        file: &ImageFile,
        src: Src<'_>,
        offset: u64,
        footer: &RwLock<Footer>,
    ) -> Result<()> {
        let mut done = 0u64;
        for (i, in_block, n) in self.chunks(offset, src.len()) {
            let part = src.part(done, done + n);
            let voff = offset + done;
            let first = in_block / SECTOR;
            let last = (in_block + n - 1) / SECTOR;
            match self.block(file, i)? {
                Block::Full(data) => put(file, part, data + in_block)?,
                Block::Partial(data, map) if bat::all_set(&map, first, last + 1) => {
                    put(file, part, data + in_block)?
                }
                Block::Unallocated
                    if matches!(part, Src::Zeros(_)) && self.background_is_zero(voff, n)? => {}
                _ => {
                    let mut st = lock(&self.alloc);
                    match self.block(file, i)? {
                        Block::Unallocated => {
                            self.allocate(file, &mut st, i, in_block, part, voff, footer)?
                        }
                        Block::Full(data) => put(file, part, data + in_block)?,
                        Block::Partial(data, map) => {
                            self.fill(file, &mut st, i, data, &map, in_block, part, voff)?
                        }
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Bytes per grain: the unit in which sectors become present here
    /// (4 KiB, or the block if smaller). Whole bytes of the bitmap change
    /// together, which readers that only handle whole bytes (libvhdi)
    /// depend on, and 4 KiB requests never need a merge.
    fn grain(&self) -> u64 {
        self.block_size.min(4096)
    }

    /// Builds grain `g` of a block (whose data starts at file offset `data`
    /// and at virtual offset `block_voff`): present sectors from the file,
    /// the others from the background, overlaid with the part of `src`
    /// (which starts at `in_block`) that falls in it.
    #[allow(clippy::too_many_arguments)]
    fn merged_grain(
        &self,
        file: &ImageFile,
        data: u64,
        block_voff: u64,
        g: u64,
        in_block: u64,
        src: Src<'_>,
        present: &impl Fn(u64) -> bool,
    ) -> Result<Vec<u8>> {
        let size = self.grain();
        let start = g * size;
        let mut buf = vec![0u8; idx(size)];
        for (k, sec) in buf.chunks_mut(idx(SECTOR)).enumerate() {
            let at = start + k as u64 * SECTOR;
            if present(at / SECTOR) {
                file.read_at_zero_fill(sec, data + at)?;
            } else {
                self.background(sec, block_voff + at)?;
            }
        }
        let from = in_block.max(start);
        let to = (in_block + src.len()).min(start + size);
        src.copy_to(
            from - in_block,
            &mut buf[idx(from - start)..idx(to - start)],
        );
        Ok(buf)
    }

    /// Writes `src` at `in_block` of a block whose data starts at `data`,
    /// merging partly covered grains that are not wholly present (per
    /// `present(sector)`) with what they hold. `fresh` says the data area
    /// reads as zeros. Returns the sectors that are now present.
    #[allow(clippy::too_many_arguments)]
    fn put_merging(
        &self,
        file: &ImageFile,
        data: u64,
        in_block: u64,
        src: Src<'_>,
        voff: u64,
        fresh: bool,
        present: impl Fn(u64) -> bool,
    ) -> Result<(u64, u64)> {
        let size = self.grain();
        let per = size / SECTOR;
        let end = in_block + src.len();
        let block_voff = voff - in_block;
        let first = in_block / size;
        let last = (end - 1) / size;
        let whole = |g: u64| (g * per..(g + 1) * per).all(&present);
        let head_partial =
            !in_block.is_multiple_of(size) || (first == last && !end.is_multiple_of(size));
        let tail_partial = !end.is_multiple_of(size) && last != first;
        let mut lo = in_block;
        let mut hi = end;
        if head_partial && !whole(first) {
            let buf = self.merged_grain(file, data, block_voff, first, in_block, src, &present)?;
            file.write_all_at(&buf, data + first * size)?;
            lo = ((first + 1) * size).min(end);
        }
        if tail_partial && !whole(last) {
            let buf = self.merged_grain(file, data, block_voff, last, in_block, src, &present)?;
            file.write_all_at(&buf, data + last * size)?;
            hi = (last * size).max(lo);
        }
        // Zeros need no write where the file already reads as zeros.
        if lo < hi && !(fresh && matches!(src, Src::Zeros(_))) {
            put(file, src.part(lo - in_block, hi - in_block), data + lo)?;
        }
        Ok((first * per, (last + 1) * per))
    }

    /// Writes into a present block whose bitmap lacks some of the sectors
    /// written, then sets their bits (written to the file at the next flush).
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        file: &ImageFile,
        st: &mut AllocState,
        i: usize,
        data: u64,
        map: &Arc<[u8]>,
        in_block: u64,
        src: Src<'_>,
        voff: u64,
    ) -> Result<()> {
        let (from, to) =
            self.put_merging(file, data, in_block, src, voff, false, |s| bat::bit(map, s))?;
        let mut bits = map.to_vec();
        bat::set_bits(&mut bits, from, to);
        let new = bat::classify(bits, self.sectors_per_block());
        if let Some(Entry::Present { sector, .. }) = self.map.get(i) {
            self.map.set(i, sector, new);
        }
        if !st.dirty.contains(&i) {
            st.dirty.push(i);
        }
        Ok(())
    }

    /// Allocates block `i` at the end of the file and writes `src` into it:
    /// data, bitmap and the footer at the new end now; the table entry at
    /// the next flush, after they are durable (see `AllocState::unlinked`).
    /// Until then readers find the block through the in-memory table.
    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &self,
        file: &ImageFile,
        st: &mut AllocState,
        i: usize,
        in_block: u64,
        src: Src<'_>,
        voff: u64,
        footer: &RwLock<Footer>,
    ) -> Result<()> {
        // Blocks start so that their data is 4 KiB-aligned in the file:
        // page-aligned copies, and holes punched by discard free whole
        // pages. The padding (at most 3.5 KiB) is zeroed below.
        let block_at = (st.next_free + self.bitmap_size).next_multiple_of(ALIGN) - self.bitmap_size;
        let pad_at = st.next_free;
        let sector = u32::try_from(block_at / SECTOR)
            .ok()
            .filter(|s| *s != bat::UNALLOCATED)
            .ok_or_else(|| {
                Error::unsupported(
                    Format::Vhd,
                    format!("a block at {block_at:#x}, beyond what a BAT entry can address"),
                )
            })?;
        let data = block_at + self.bitmap_size;
        let footer_at = data + self.block_size;
        // The space is taken even if a write below fails: a later block
        // must never find this one's data in its unwritten sectors.
        st.next_free = footer_at;
        let mut bitmap = vec![0u8; idx(self.bitmap_size)];
        if self.diff() {
            // The rest of the block lies past the old end of the file and
            // reads as zeros; only partly written grains need the parent.
            let (from, to) = self.put_merging(file, data, in_block, src, voff, true, |_| false)?;
            bat::set_bits(&mut bitmap, from, to);
        } else {
            // Every sector is present: what is not written reads as zeros
            // from the file, so the bitmap never changes again.
            bitmap.fill(0xFF);
            if let Src::Data(d) = src {
                file.write_all_at(d, data + in_block)?;
            }
        }
        if block_at > pad_at {
            // The old footer sits there: leave no stale copy in the middle.
            file.write_all_at(&vec![0u8; idx(block_at - pad_at)], pad_at)?;
        }
        file.write_all_at(&bitmap, block_at)?;
        file.write_all_at(&read(footer).encode(), footer_at)?;
        let bits = bat::classify(bitmap, self.sectors_per_block());
        self.map.set(i, sector, bits);
        st.unlinked.push(i);
        Ok(())
    }

    /// Writes the table entries of `blocks` (index, sector) with one
    /// write over the span of the table they cover, patched into what the
    /// file holds: a crash keeps all of them or none, so a block is never
    /// linked while one allocated before it is lost (which would leave a
    /// hole in the middle of the file that no repair can reclaim).
    fn link(&self, file: &ImageFile, blocks: &[(usize, u32)]) -> Result<()> {
        let (Some(lo), Some(hi)) = (
            blocks.iter().map(|b| b.0).min(),
            blocks.iter().map(|b| b.0).max(),
        ) else {
            return Ok(());
        };
        let at = self.header.table_offset + 4 * lo as u64;
        let mut span = vec![0u8; 4 * (hi - lo + 1)];
        file.read_at_zero_fill(&mut span, at)?;
        for &(i, sector) in blocks {
            span[4 * (i - lo)..4 * (i - lo) + 4].copy_from_slice(&sector.to_be_bytes());
        }
        file.write_all_at(&span, at)
    }

    /// Whether blocks or bitmap bits await a flush.
    pub(super) fn has_pending(&self) -> bool {
        let st = lock(&self.alloc);
        !st.dirty.is_empty() || !st.unlinked.is_empty()
    }

    /// Makes every completed write durable: data first, then the table
    /// entries of new blocks and the bitmaps whose bits were set since the
    /// last flush, then again.
    pub(super) fn flush(&self, file: &ImageFile) -> Result<()> {
        let _serial = lock(&self.flush_lock);
        let (pending, unlinked) = {
            let mut st = lock(&self.alloc);
            let unlinked: Vec<(usize, u32)> = st
                .unlinked
                .drain(..)
                .filter_map(|i| match self.map.get(i) {
                    Some(Entry::Present { sector, .. }) => Some((i, sector)),
                    _ => None,
                })
                .collect();
            let pending: Vec<(usize, u64, Vec<u8>)> = st
                .dirty
                .drain(..)
                .filter_map(|i| match self.map.get(i) {
                    Some(Entry::Present { sector, bits }) => {
                        let bytes = match bits {
                            Bits::Partial(m) => m.to_vec(),
                            _ => vec![0xFF; idx(self.bitmap_size)],
                        };
                        Some((i, u64::from(sector) * SECTOR, bytes))
                    }
                    _ => None,
                })
                .collect();
            (pending, unlinked)
        };
        let result = (|| {
            file.sync_data()?;
            if !pending.is_empty() || !unlinked.is_empty() {
                self.link(file, &unlinked)?;
                for (_, at, bytes) in &pending {
                    file.write_all_at(bytes, *at)?;
                }
                file.sync_data()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let mut st = lock(&self.alloc);
            for (i, _, _) in pending {
                if !st.dirty.contains(&i) {
                    st.dirty.push(i);
                }
            }
            st.unlinked.extend(unlinked.into_iter().map(|(i, _)| i));
        }
        result
    }

    pub(super) fn block_status(&self, file: &ImageFile, offset: u64, len: u64) -> Result<Extent> {
        let in_block = offset % self.block_size;
        let n = (self.block_size - in_block).min(len);
        let i = idx(offset / self.block_size);
        let here = |length, allocation| Extent {
            offset,
            length,
            allocation,
            depth: 0,
        };
        match self.block(file, i)? {
            Block::Unallocated => match &self.parent {
                None => {
                    // Extend over following unallocated blocks.
                    let mut length = n;
                    let mut j = i + 1;
                    while length < len && matches!(self.map.get(j), Some(Entry::Unallocated)) {
                        length = (length + self.block_size).min(len);
                        j += 1;
                    }
                    Ok(here(length, Allocation::Unallocated))
                }
                Some(_) => self.parent_status(offset, n),
            },
            Block::Full(_) => Ok(here(n, Allocation::Data)),
            Block::Partial(_, map) => {
                let s = in_block / SECTOR;
                let present = bat::bit(&map, s);
                let mut run = ((s + 1) * SECTOR - in_block).min(n);
                while run < n && bat::bit(&map, (in_block + run) / SECTOR) == present {
                    run = (run + SECTOR).min(n);
                }
                if present {
                    Ok(here(run, Allocation::Data))
                } else if self.parent.is_some() {
                    self.parent_status(offset, run)
                } else {
                    Ok(here(run, Allocation::Unallocated))
                }
            }
        }
    }

    /// The status of `[offset, offset + len)` in the parent, one level deeper.
    fn parent_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let Some(p) = &self.parent else {
            return Err(Error::InvalidArgument("no parent".into()));
        };
        let psize = p.virtual_size();
        if offset >= psize {
            return Ok(Extent {
                offset,
                length: len,
                allocation: Allocation::Unallocated,
                depth: 1,
            });
        }
        let e = p.block_status(offset, len.min(psize - offset))?;
        Ok(Extent {
            offset,
            length: e.length.min(len),
            allocation: e.allocation,
            depth: e.depth + 1,
        })
    }
}

/// Writes `src` at file offset `at` (zeros by deallocating the range).
fn put(file: &ImageFile, src: Src<'_>, at: u64) -> Result<()> {
    match src {
        Src::Data(d) => file.write_all_at(d, at),
        Src::Zeros(n) => file.punch_hole(at, n),
    }
}
