//! The data path: BAT lookups, reads (through sector bitmaps and the
//! parent), the lock-free write to allocated blocks, and block status.

use super::bat::{PayloadState, SB_PRESENT, entry_offset};
use super::format::{MIB, corrupt, us};
use super::{Layout, VhdxImage, read_lock, update};
use crate::{Allocation, DiskImage, Extent, Result};

/// Where a payload block is and what state it is in.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlockRef {
    pub state: PayloadState,
    /// File offset of the block (0 unless the state has data).
    pub offset: u64,
    /// BAT index of the block's entry.
    pub index: u64,
}

/// Looks up payload block `block` (which must be inside the disk).
pub(super) fn lookup(img: &VhdxImage, layout: &Layout, block: u64) -> Result<BlockRef> {
    let index = layout.geometry.payload_index(block);
    let at = layout.bat.region_offset + index * 8;
    let e = layout.bat.get(index, |off, buf| img.read_file(buf, off))?;
    let state = PayloadState::from_bits(e).ok_or_else(|| {
        corrupt(
            "BAT entry",
            at,
            format!("payload block {block} has reserved state {}", e & 7),
        )
    })?;
    let mut offset = 0;
    if state.has_data() {
        offset = entry_offset(e);
        check_extent(img, layout, offset, layout.geometry.block_size, at)?;
    }
    if state == PayloadState::PartiallyPresent && img.parent.is_none() {
        return Err(corrupt(
            "BAT entry",
            at,
            format!("payload block {block} is partially present in an image without a parent"),
        ));
    }
    Ok(BlockRef {
        state,
        offset,
        index,
    })
}

/// Checks that a block at `offset` of `len` bytes lies past the first MiB,
/// starts inside the file, and overlaps neither the log, the metadata nor
/// the BAT.
pub(super) fn check_extent(
    img: &VhdxImage,
    layout: &Layout,
    offset: u64,
    len: u64,
    at: u64,
) -> Result<()> {
    let file_end = img.file_end.load(std::sync::atomic::Ordering::Acquire);
    let reason = if offset < MIB {
        Some("lies in the first MiB of the file")
    } else if offset >= file_end || offset.checked_add(len).is_none() {
        Some("lies beyond the end of the file")
    } else if img.metadata_region.overlaps(offset, len) {
        Some("overlaps the metadata region")
    } else if overlaps(
        layout.bat.region_offset,
        layout.bat.region_length,
        offset,
        len,
    ) {
        Some("overlaps the BAT")
    } else if overlaps(
        img.log_region.offset,
        u64::from(img.log_region.length),
        offset,
        len,
    ) {
        Some("overlaps the log")
    } else {
        None
    };
    match reason {
        Some(r) => Err(corrupt(
            "BAT entry",
            at,
            format!("block at {offset:#x} {r}"),
        )),
        None => Ok(()),
    }
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

/// The file offset of the sector bitmap block of the chunk holding
/// `block`, if present.
fn bitmap_block(img: &VhdxImage, layout: &Layout, block: u64) -> Result<Option<u64>> {
    let index = layout.geometry.bitmap_index(block);
    let at = layout
        .bat
        .region_offset
        .saturating_add(index.saturating_mul(8));
    if index >= layout.bat.entries {
        return Err(corrupt(
            "BAT",
            at,
            format!("no sector bitmap entry for payload block {block}"),
        ));
    }
    let e = layout.bat.get(index, |off, buf| img.read_file(buf, off))?;
    match e & 7 {
        0 => Ok(None),
        SB_PRESENT => {
            let off = entry_offset(e);
            check_extent(img, layout, off, MIB, at)?;
            Ok(Some(off))
        }
        s => Err(corrupt(
            "BAT entry",
            at,
            format!("sector bitmap entry has reserved state {s}"),
        )),
    }
}

/// Bits of the sector bitmap for some sectors of one block.
#[derive(Debug)]
pub(super) struct Bits {
    bytes: Vec<u8>,
    shift: u64,
}

impl Bits {
    /// Whether sector `i` (counted from the first one asked for) is present.
    pub fn get(&self, i: u64) -> bool {
        let b = self.shift + i;
        self.bytes
            .get(us(b / 8))
            .is_some_and(|byte| byte >> (b % 8) & 1 == 1)
    }

    /// Length of the run of equal bits starting at `i`, at most `max`.
    pub fn run(&self, i: u64, max: u64) -> u64 {
        let v = self.get(i);
        let mut n = 1;
        while n < max && self.get(i + n) == v {
            n += 1;
        }
        n
    }
}

/// Where a sector bitmap is and which bit the first sector of `block` has.
pub(super) fn bitmap_location(
    img: &VhdxImage,
    layout: &Layout,
    block: u64,
) -> Result<Option<(u64, u64)>> {
    Ok(bitmap_block(img, layout, block)?.map(|off| (off, layout.geometry.bitmap_bit(block))))
}

/// Reads the bitmap bits of `count` sectors of `block` from sector `first`.
pub(super) fn read_bits(
    img: &VhdxImage,
    layout: &Layout,
    block: u64,
    first: u64,
    count: u64,
) -> Result<Bits> {
    let Some((sb, bit0)) = bitmap_location(img, layout, block)? else {
        return Err(corrupt(
            "BAT",
            layout.bat.region_offset,
            format!("partially present block {block} has no sector bitmap"),
        ));
    };
    let bit = bit0 + first;
    let (b0, b1) = (bit / 8, (bit + count).div_ceil(8));
    let mut bytes = vec![0u8; us(b1 - b0)];
    img.read_file(&mut bytes, sb + b0)?;
    Ok(Bits {
        bytes,
        shift: bit % 8,
    })
}

/// Reads from the parent (zeros past its end, or with no parent).
pub(super) fn read_parent(img: &VhdxImage, buf: &mut [u8], pos: u64) -> Result<()> {
    let Some(p) = &img.parent else {
        buf.fill(0);
        return Ok(());
    };
    let psize = p.virtual_size();
    let n = if pos >= psize {
        0
    } else {
        us((psize - pos).min(buf.len() as u64))
    };
    if n > 0 {
        p.read_at(&mut buf[..n], pos)?;
    }
    buf[n..].fill(0);
    Ok(())
}

/// Reads `buf` at disk offset `offset` (inside the disk).
#[inline]
pub(super) fn read(img: &VhdxImage, buf: &mut [u8], offset: u64) -> Result<()> {
    let bs = u64::from(img.meta.block_size);
    // The block size is a power of two (validated on open).
    let in_off = offset & (bs - 1);
    if in_off + buf.len() as u64 <= bs {
        return read_in_block(img, offset >> bs.trailing_zeros(), in_off, buf);
    }
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let in_off = pos % bs;
        let n = (buf.len() - done).min(us(bs - in_off));
        read_in_block(img, pos / bs, in_off, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// Reads inside one block. Inline, so that the read of a fully present
/// block (the common case) is made from the caller's frame; a partially
/// present block takes [`read_in_block_slow`], which holds the layout lock
/// across the lookup and the sector bitmap.
#[inline]
pub(super) fn read_in_block(
    img: &VhdxImage,
    block: u64,
    in_off: u64,
    buf: &mut [u8],
) -> Result<()> {
    let b = {
        let layout = read_lock(&img.layout);
        lookup(img, &layout, block)?
    };
    match b.state {
        PayloadState::FullyPresent => img.read_file(buf, b.offset + in_off),
        PayloadState::NotPresent => {
            read_parent(img, buf, block * u64::from(img.meta.block_size) + in_off)
        }
        PayloadState::Zero | PayloadState::Unmapped | PayloadState::Undefined => {
            buf.fill(0);
            Ok(())
        }
        PayloadState::PartiallyPresent => read_in_block_slow(img, block, in_off, buf),
    }
}

/// Reads inside one block, whatever its state.
#[inline(never)]
fn read_in_block_slow(img: &VhdxImage, block: u64, in_off: u64, buf: &mut [u8]) -> Result<()> {
    let bs = u64::from(img.meta.block_size);
    let pos = block * bs + in_off;
    let layout = read_lock(&img.layout);
    let b = lookup(img, &layout, block)?;
    match b.state {
        PayloadState::FullyPresent => {
            drop(layout);
            img.read_file(buf, b.offset + in_off)
        }
        PayloadState::NotPresent => {
            drop(layout);
            read_parent(img, buf, pos)
        }
        PayloadState::PartiallyPresent => {
            let lss = layout.geometry.logical_sector_size;
            let s0 = in_off / lss;
            let s1 = (in_off + buf.len() as u64).div_ceil(lss);
            let bits = read_bits(img, &layout, block, s0, s1 - s0)?;
            drop(layout);
            let mut s = s0;
            while s < s1 {
                let run = bits.run(s - s0, s1 - s);
                let lo = (s * lss).max(in_off);
                let hi = ((s + run) * lss).min(in_off + buf.len() as u64);
                let part = &mut buf[us(lo - in_off)..us(hi - in_off)];
                if bits.get(s - s0) {
                    img.read_file(part, b.offset + lo)?;
                } else {
                    read_parent(img, part, block * bs + lo)?;
                }
                s += run;
            }
            Ok(())
        }
        PayloadState::Zero | PayloadState::Unmapped | PayloadState::Undefined => {
            buf.fill(0);
            Ok(())
        }
    }
}

/// Writes `buf` at disk offset `offset` (inside the disk); the session has
/// started. Blocks that need a fresh allocation are allocated together:
/// one flush and one log commit for all of them.
pub(super) fn write(img: &VhdxImage, buf: &[u8], offset: u64) -> Result<()> {
    let bs = u64::from(img.meta.block_size);
    let mut done = 0usize;
    let mut fresh: Vec<(u64, u64, &[u8])> = Vec::new();
    while done < buf.len() {
        let pos = offset + done as u64;
        let (block, in_off) = (pos / bs, pos % bs);
        let n = (buf.len() - done).min(us(bs - in_off));
        let data = &buf[done..done + n];
        done += n;
        let state = {
            let layout = read_lock(&img.layout);
            lookup(img, &layout, block)?
        };
        match state.state {
            PayloadState::FullyPresent => {
                img.file.write_all_at(data, state.offset + in_off)?;
            }
            PayloadState::PartiallyPresent => update::write_slow(img, block, in_off, data)?,
            PayloadState::NotPresent if img.parent.is_some() && (in_off != 0 || n as u64 != bs) => {
                update::write_slow(img, block, in_off, data)?
            }
            _ => fresh.push((block, in_off, data)),
        }
    }
    match fresh.len() {
        0 => Ok(()),
        1 => update::write_slow(img, fresh[0].0, fresh[0].1, fresh[0].2),
        _ => update::allocate_many(img, &fresh),
    }
}

/// Writes inside one block: directly when it is allocated, else through
/// the allocator.
pub(super) fn write_in_block(img: &VhdxImage, block: u64, in_off: u64, data: &[u8]) -> Result<()> {
    let b = {
        let layout = read_lock(&img.layout);
        lookup(img, &layout, block)?
    };
    if b.state == PayloadState::FullyPresent {
        return img.file.write_all_at(data, b.offset + in_off);
    }
    update::write_slow(img, block, in_off, data)
}

/// The allocation status of the run at `offset`, at most `len` long.
pub(super) fn block_status(img: &VhdxImage, offset: u64, len: u64) -> Result<Extent> {
    let layout = read_lock(&img.layout);
    let bs = layout.geometry.block_size;
    let block = offset / bs;
    let in_off = offset % bs;
    let end = offset + len;
    let piece = len.min(bs - in_off);
    let b = lookup(img, &layout, block)?;
    let simple = |s: PayloadState| match s {
        PayloadState::FullyPresent => Some(Allocation::Data),
        PayloadState::Zero | PayloadState::Unmapped | PayloadState::Undefined => {
            Some(Allocation::Zero)
        }
        PayloadState::NotPresent if img.parent.is_none() => Some(Allocation::Unallocated),
        _ => None,
    };
    if let Some(allocation) = simple(b.state) {
        let mut run_end = offset + piece;
        let mut next = block + 1;
        while run_end < end {
            let nb = lookup(img, &layout, next)?;
            if simple(nb.state) != Some(allocation) {
                break;
            }
            run_end = (run_end + bs).min(end);
            next += 1;
        }
        return Ok(Extent {
            offset,
            length: run_end - offset,
            allocation,
            depth: 0,
        });
    }
    if b.state == PayloadState::NotPresent {
        drop(layout);
        return parent_status(img, offset, piece);
    }
    // Partially present: a run of sectors with the same bitmap bit.
    let lss = layout.geometry.logical_sector_size;
    let s0 = in_off / lss;
    let s1 = (in_off + piece).div_ceil(lss);
    let bits = read_bits(img, &layout, block, s0, s1 - s0)?;
    drop(layout);
    let run = bits.run(0, s1 - s0);
    let length = ((s0 + run) * lss).min(in_off + piece) - in_off;
    if bits.get(0) {
        Ok(Extent {
            offset,
            length,
            allocation: Allocation::Data,
            depth: 0,
        })
    } else {
        parent_status(img, offset, length)
    }
}

/// The parent's status for a run this image leaves to it.
fn parent_status(img: &VhdxImage, offset: u64, len: u64) -> Result<Extent> {
    let Some(p) = &img.parent else {
        return Ok(Extent {
            offset,
            length: len,
            allocation: Allocation::Unallocated,
            depth: 0,
        });
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
        depth: e.depth + 1,
        ..e
    })
}
