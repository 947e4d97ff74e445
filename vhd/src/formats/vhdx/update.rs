//! Metadata changes: the session header, block allocation (data durable
//! before the BAT entry that points at it), sector bitmaps, zero and unmap
//! states, resize. Every BAT, bitmap and metadata page goes through the log.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use super::bat::{BatCache, ENTRIES_PER_PAGE, Geometry, PayloadState, SB_PRESENT, make_entry};
use super::format::{
    HEADER_OFFSETS, MAX_VIRTUAL_SIZE, MIB, REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, corrupt,
    round_up, unsupported, us,
};
use super::io::{self, lookup};
use super::log::{LogUpdate, LogWriter};
use super::region::{self, Region};
use super::{Layout, VhdxImage, Writer, lock, read_lock, write_lock};
use crate::{Error, Result};

/// Pages per log commit when many pages change at once.
const PAGES_PER_COMMIT: usize = 32;

/// Writes this session's header (new FileWriteGuid, DataWriteGuid and
/// LogGuid) and flushes it, once, before the first change.
pub(super) fn start_session(img: &VhdxImage) -> Result<()> {
    if img.session.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut w = lock(&img.writer);
    if img.session.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut h = w.header.next()?;
    h.file_write_guid = Uuid::new_v4();
    h.data_write_guid = Uuid::new_v4();
    h.log_guid = Uuid::new_v4();
    h.log_version = 0;
    let slot = 1 - w.slot;
    img.file
        .write_all_at(&h.encode()[..], HEADER_OFFSETS[slot])?;
    img.file.sync_data()?;
    w.header = h;
    w.slot = slot;
    w.log = Some(LogWriter::new(img.log_region, h.log_guid, 1));
    img.session.store(true, Ordering::Release);
    Ok(())
}

/// Marks the log empty on a clean close: flush, then a header with a zero
/// LogGuid.
pub(super) fn close_session(img: &VhdxImage) -> Result<()> {
    let mut w = lock(&img.writer);
    if w.failed {
        return Ok(());
    }
    commit(img, &mut w, &read_lock(&img.layout), Vec::new())?;
    img.file.sync_data()?;
    let mut h = w.header.next()?;
    h.log_guid = Uuid::nil();
    let slot = 1 - w.slot;
    img.file
        .write_all_at(&h.encode()[..], HEADER_OFFSETS[slot])?;
    img.file.sync_data()?;
    w.header = h;
    w.slot = slot;
    Ok(())
}

/// Most BAT pages allocations may leave pending before they are logged.
const MAX_PENDING_PAGES: usize = 32;

/// Commits `updates` through the log, together with the BAT pages of every
/// pending allocation, whose data is flushed first.
fn commit(
    img: &VhdxImage,
    w: &mut Writer,
    layout: &Layout,
    mut updates: Vec<LogUpdate>,
) -> Result<()> {
    if !w.pending.is_empty() {
        img.file.sync_data()?;
        for &page in &w.pending {
            let offset = layout.bat.page_offset(page);
            let listed = updates
                .iter()
                .any(|u| matches!(u, LogUpdate::Page { offset: o, .. } if *o == offset));
            if !listed {
                let data = layout
                    .bat
                    .page_bytes(page, |off, buf| img.read_file(buf, off))?;
                updates.push(LogUpdate::Page { offset, data });
            }
        }
    }
    if updates.is_empty() {
        return Ok(());
    }
    let end = img.file.len()?;
    let log = w
        .log
        .as_mut()
        .ok_or_else(|| Error::InvalidArgument("metadata update outside a session".into()))?;
    let r = log.commit(&img.file, &updates, end, end);
    if r.is_err() {
        w.failed = true;
    } else {
        w.pending.clear();
    }
    r
}

/// Points BAT entry `index` at a new block whose data is written (not yet
/// flushed): readers see it at once; the log records it at the next flush
/// or metadata commit, after the data is durable.
fn defer(img: &VhdxImage, w: &mut Writer, layout: &Layout, index: u64, value: u64) -> Result<()> {
    layout.bat.set(index, value);
    w.pending.insert(index / ENTRIES_PER_PAGE);
    if w.pending.len() >= MAX_PENDING_PAGES {
        commit(img, w, layout, Vec::new())?;
    }
    Ok(())
}

/// Makes every completed write durable: data, then the pending BAT pages
/// through the log.
pub(super) fn flush(img: &VhdxImage) -> Result<()> {
    if img.session.load(Ordering::Acquire) {
        let mut w = lock(&img.writer);
        if !w.pending.is_empty() {
            let layout = read_lock(&img.layout);
            return commit(img, &mut w, &layout, Vec::new());
        }
    }
    img.file.sync_data()
}

/// Log updates for BAT entries `changes` (index, value), one per page.
fn bat_updates(img: &VhdxImage, layout: &Layout, changes: &[(u64, u64)]) -> Result<Vec<LogUpdate>> {
    let mut pages: Vec<u64> = changes.iter().map(|(i, _)| i / ENTRIES_PER_PAGE).collect();
    pages.sort_unstable();
    pages.dedup();
    let mut out = Vec::with_capacity(pages.len());
    for page in pages {
        let mut data = layout
            .bat
            .page_bytes(page, |off, buf| img.read_file(buf, off))?;
        for &(i, v) in changes {
            if i / ENTRIES_PER_PAGE == page {
                let at = us((i % ENTRIES_PER_PAGE) * 8);
                data[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        out.push(LogUpdate::Page {
            offset: layout.bat.page_offset(page),
            data,
        });
    }
    Ok(out)
}

/// Commits BAT changes (and `extra` pages before them), then shows them to
/// readers.
fn commit_bat(
    img: &VhdxImage,
    w: &mut Writer,
    layout: &Layout,
    changes: &[(u64, u64)],
    extra: Vec<LogUpdate>,
) -> Result<()> {
    let mut updates = extra;
    updates.extend(bat_updates(img, layout, changes)?);
    commit(img, w, layout, updates)?;
    for &(i, v) in changes {
        layout.bat.set(i, v);
    }
    Ok(())
}

/// Appends `len` bytes (a multiple of 1 MiB) of zeroed space to the file.
fn append(img: &VhdxImage, w: &mut Writer, len: u64) -> Result<u64> {
    let off = w.alloc_end;
    let end = off
        .checked_add(len)
        .ok_or_else(|| Error::InvalidArgument("the image file would pass 2^64 bytes".into()))?;
    if img.file.len()? < end {
        img.file.set_len(end)?;
    }
    w.alloc_end = end;
    img.file_end.fetch_max(end, Ordering::AcqRel);
    Ok(off)
}

/// Log updates setting bits `[first, end)` of the sector bitmap block at
/// `sb` (`fresh`: the block is newly allocated and all zeros).
fn bitmap_updates(
    img: &VhdxImage,
    sb: u64,
    first: u64,
    end: u64,
    fresh: bool,
) -> Result<Vec<LogUpdate>> {
    let mut out = Vec::new();
    let (p0, p1) = (first / 8 / 4096, (end - 1) / 8 / 4096);
    for page in p0..=p1 {
        let offset = sb + page * 4096;
        let mut data = Box::new([0u8; 4096]);
        if !fresh {
            img.read_file(&mut data[..], offset)?;
        }
        let base = page * 4096 * 8;
        for bit in first.max(base)..end.min(base + 4096 * 8) {
            let b = bit - base;
            data[us(b / 8)] |= 1 << (b % 8);
        }
        out.push(LogUpdate::Page { offset, data });
    }
    Ok(out)
}

/// `data` widened to whole logical sectors at `[s0, s1)` of the block, the
/// edges filled from what the disk reads there now.
fn widen<'a>(
    img: &VhdxImage,
    block: u64,
    in_off: u64,
    data: &'a [u8],
    lss: u64,
) -> Result<(u64, Cow<'a, [u8]>)> {
    let s0 = in_off / lss * lss;
    let end = in_off + data.len() as u64;
    let s1 = end.div_ceil(lss) * lss;
    if s0 == in_off && s1 == end {
        return Ok((s0, Cow::Borrowed(data)));
    }
    let mut tmp = vec![0u8; us(s1 - s0)];
    let l = us(lss);
    if s0 != in_off {
        io::read_in_block(img, block, s0, &mut tmp[..l])?;
    }
    if s1 != end {
        let n = tmp.len();
        io::read_in_block(img, block, s1 - lss, &mut tmp[n - l..])?;
    }
    let at = us(in_off - s0);
    tmp[at..at + data.len()].copy_from_slice(data);
    Ok((s0, Cow::Owned(tmp)))
}

/// Writes into a block that is not fully present: allocates it, or fills
/// in sectors of a partially present block.
pub(super) fn write_slow(img: &VhdxImage, block: u64, in_off: u64, data: &[u8]) -> Result<()> {
    let lss = u64::from(img.meta.logical_sector_size);
    let bs = u64::from(img.meta.block_size);
    let mut w = lock(&img.writer);
    let state = {
        let layout = read_lock(&img.layout);
        lookup(img, &layout, block)?.state
    };
    let differencing = img.parent.is_some();
    let needs_sectors = differencing
        && matches!(
            state,
            PayloadState::NotPresent | PayloadState::PartiallyPresent
        );
    // Reads of the current contents happen before the layout is locked
    // again below.
    let (s0, sectors) = if needs_sectors {
        widen(img, block, in_off, data, lss)?
    } else {
        (in_off, Cow::Borrowed(data))
    };
    let layout = read_lock(&img.layout);
    let b = lookup(img, &layout, block)?;
    let block_start = block * bs;
    let block_len = bs.min(layout.geometry.virtual_size - block_start);
    let whole = in_off == 0 && data.len() as u64 == block_len;
    match b.state {
        PayloadState::FullyPresent => img.file.write_all_at(data, b.offset + in_off),
        PayloadState::PartiallyPresent => {
            img.file.write_all_at(&sectors, b.offset + s0)?;
            let count = sectors.len() as u64 / lss;
            let bits = io::read_bits(img, &layout, block, s0 / lss, count)?;
            if (0..count).all(|i| bits.get(i)) {
                return Ok(());
            }
            let Some((sb, bit0)) = io::bitmap_location(img, &layout, block)? else {
                return Err(Error::InvalidArgument("sector bitmap vanished".into()));
            };
            img.file.sync_data()?;
            let first = bit0 + s0 / lss;
            let updates = bitmap_updates(img, sb, first, first + count, false)?;
            commit(img, &mut w, &layout, updates)
        }
        PayloadState::NotPresent if differencing && !whole => {
            let sb_index = layout.geometry.bitmap_index(block);
            let (sb, fresh) = match io::bitmap_location(img, &layout, block)? {
                Some((sb, _)) => (sb, false),
                None => (append(img, &mut w, MIB)?, true),
            };
            let off = append(img, &mut w, bs)?;
            img.file.write_all_at(&sectors, off + s0)?;
            img.file.sync_data()?;
            let first = layout.geometry.bitmap_bit(block) + s0 / lss;
            let count = sectors.len() as u64 / lss;
            let extra = bitmap_updates(img, sb, first, first + count, fresh)?;
            let mut changes = vec![(
                b.index,
                make_entry(PayloadState::PartiallyPresent.bits(), off),
            )];
            if fresh {
                changes.push((sb_index, make_entry(SB_PRESENT, sb)));
            }
            commit_bat(img, &mut w, &layout, &changes, extra)
        }
        _ => {
            // Every other state reads as zeros (or, not present in a
            // differencing image, is overwritten whole): a new block of
            // zeros holding the data.
            let off = append(img, &mut w, bs)?;
            img.file.write_all_at(data, off + in_off)?;
            let entry = make_entry(PayloadState::FullyPresent.bits(), off);
            defer(img, &mut w, &layout, b.index, entry)
        }
    }
}

/// Allocates fresh blocks for several pieces at once (each a block, an
/// offset in it and the data). A piece whose block changed state meanwhile
/// goes through [`write_slow`].
pub(super) fn allocate_many(img: &VhdxImage, pieces: &[(u64, u64, &[u8])]) -> Result<()> {
    let bs = u64::from(img.meta.block_size);
    let mut later = Vec::new();
    {
        let mut w = lock(&img.writer);
        let layout = read_lock(&img.layout);
        for &(block, in_off, data) in pieces {
            let b = lookup(img, &layout, block)?;
            let whole = in_off == 0 && data.len() as u64 == bs;
            match b.state {
                PayloadState::FullyPresent => img.file.write_all_at(data, b.offset + in_off)?,
                PayloadState::PartiallyPresent => later.push((block, in_off, data)),
                PayloadState::NotPresent if img.parent.is_some() && !whole => {
                    later.push((block, in_off, data))
                }
                _ => {
                    let off = append(img, &mut w, bs)?;
                    img.file.write_all_at(data, off + in_off)?;
                    let entry = make_entry(PayloadState::FullyPresent.bits(), off);
                    defer(img, &mut w, &layout, b.index, entry)?;
                }
            }
        }
    }
    for (block, in_off, data) in later {
        write_slow(img, block, in_off, data)?;
    }
    Ok(())
}

/// Makes `[offset, offset + len)` read as zeros: whole blocks by state
/// (UNMAPPED for a discard without a parent, ZERO otherwise), partial
/// blocks by writing zeros where they do not already read as zeros.
pub(super) fn zero_range(img: &VhdxImage, offset: u64, len: u64, discard: bool) -> Result<()> {
    let bs = u64::from(img.meta.block_size);
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let block = pos / bs;
        let block_start = block * bs;
        let vsize = img.size();
        let block_end = (block_start + bs).min(vsize);
        let piece_end = end.min(block_end);
        if pos == block_start && piece_end == block_end {
            zero_block(img, block, discard)?;
        } else {
            zero_partial(img, block, pos - block_start, piece_end - pos)?;
        }
        pos = piece_end;
    }
    Ok(())
}

fn reads_as_zero(img: &VhdxImage, state: PayloadState) -> bool {
    match state {
        PayloadState::NotPresent => img.parent.is_none(),
        PayloadState::Zero | PayloadState::Unmapped | PayloadState::Undefined => true,
        PayloadState::FullyPresent | PayloadState::PartiallyPresent => false,
    }
}

fn zero_block(img: &VhdxImage, block: u64, discard: bool) -> Result<()> {
    let bs = u64::from(img.meta.block_size);
    let mut w = lock(&img.writer);
    let layout = read_lock(&img.layout);
    let b = lookup(img, &layout, block)?;
    if reads_as_zero(img, b.state) {
        return Ok(());
    }
    if img.meta.leave_block_allocated && img.parent.is_none() {
        // A fixed image keeps its blocks allocated.
        if b.state == PayloadState::FullyPresent {
            return img.file.zero_range(b.offset, bs);
        }
    }
    let target = if discard && img.parent.is_none() {
        PayloadState::Unmapped
    } else {
        PayloadState::Zero
    };
    commit_bat(
        img,
        &mut w,
        &layout,
        &[(b.index, make_entry(target.bits(), 0))],
        Vec::new(),
    )?;
    if b.state.has_data() {
        // The space is no longer referenced: give it back to the host. It
        // is not reused in this session, since a reader may still hold the
        // old entry.
        img.file.punch_hole(b.offset, bs)?;
    }
    Ok(())
}

fn zero_partial(img: &VhdxImage, block: u64, in_off: u64, len: u64) -> Result<()> {
    let b = {
        let layout = read_lock(&img.layout);
        lookup(img, &layout, block)?
    };
    if reads_as_zero(img, b.state) {
        return Ok(());
    }
    if b.state == PayloadState::FullyPresent {
        return img.file.zero_range(b.offset + in_off, len);
    }
    const CHUNK: u64 = MIB;
    let zeros = vec![0u8; us(CHUNK.min(len))];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done);
        io::write_in_block(img, block, in_off + done, &zeros[..us(n)])?;
        done += n;
    }
    Ok(())
}

/// Moves the BAT to a larger region at the end of the file: the copy is
/// written and flushed while nothing refers to it, then both region tables
/// switch to it through the log, then the old region's space is released.
fn relocate_bat(img: &VhdxImage, w: &mut Writer, layout: &mut Layout, entries: u64) -> Result<()> {
    let len = round_up(entries * 8, MIB)
        .and_then(|l| u32::try_from(l).ok())
        .ok_or_else(|| Error::InvalidArgument("the BAT would exceed 4 GiB".into()))?;
    let old_offset = layout.bat.region_offset;
    let old_len = layout.bat.region_length;
    let mut table = vec![0u8; REGION_TABLE_SIZE];
    let mut intact = None;
    for at in REGION_TABLE_OFFSETS {
        img.read_file(&mut table, at)?;
        if region::is_intact(&table) {
            intact = Some(table.clone());
            break;
        }
    }
    let table =
        intact.ok_or_else(|| corrupt("region table", REGION_TABLE_OFFSETS[0], "no intact copy"))?;
    let new_offset = append(img, w, u64::from(len))?;
    let pages = layout.bat.entries.div_ceil(ENTRIES_PER_PAGE);
    for page in 0..pages {
        let data = layout
            .bat
            .page_bytes(page, |off, buf| img.read_file(buf, off))?;
        img.file.write_all_at(&data[..], new_offset + page * 4096)?;
    }
    img.file.sync_data()?;
    let new_table = region::with_bat(
        &table,
        Region {
            offset: new_offset,
            length: len,
        },
    )
    .ok_or_else(|| corrupt("region table", REGION_TABLE_OFFSETS[0], "no BAT entry"))?;
    let mut updates = Vec::new();
    for at in REGION_TABLE_OFFSETS {
        for (k, chunk) in new_table.chunks_exact(4096).enumerate() {
            let mut data = Box::new([0u8; 4096]);
            data.copy_from_slice(chunk);
            updates.push(LogUpdate::Page {
                offset: at + k as u64 * 4096,
                data,
            });
        }
    }
    commit(img, w, layout, updates)?;
    layout.bat = BatCache::new(new_offset, u64::from(len), layout.bat.entries);
    img.file.punch_hole(old_offset, old_len)?;
    Ok(())
}

/// Grows the disk to `new_size` bytes: BAT entries for the new blocks
/// (allocated up front in a fixed image), then the virtual disk size, all
/// through the log.
pub(super) fn resize(img: &VhdxImage, new_size: u64) -> Result<()> {
    img.check_writable()?;
    let lss = u64::from(img.meta.logical_sector_size);
    if new_size == 0 || !new_size.is_multiple_of(lss) || new_size > MAX_VIRTUAL_SIZE {
        return Err(Error::InvalidArgument(format!(
            "a VHDX disk size must be a multiple of {lss} bytes between one sector and 64 TiB, \
             not {new_size}"
        )));
    }
    let current = img.size();
    if new_size < current {
        return Err(unsupported("shrinking a VHDX image"));
    }
    if new_size == current {
        return Ok(());
    }
    start_session(img)?;
    let mut w = lock(&img.writer);
    let mut layout = write_lock(&img.layout);
    // Pending allocations are logged first: the BAT may move below.
    commit(img, &mut w, &layout, Vec::new())?;
    let old = layout.geometry;
    let geo = Geometry::new(
        old.block_size,
        old.logical_sector_size,
        new_size,
        old.has_parent,
    );
    let entries = geo.total_entries();
    if entries * 8 > layout.bat.region_length {
        relocate_bat(img, &mut w, &mut layout, entries)?;
    }
    layout.bat.grow(entries);
    let fixed = img.meta.leave_block_allocated && img.parent.is_none();
    let (old_blocks, new_blocks) = (old.payload_blocks(), geo.payload_blocks());
    let mut data_at = 0;
    if fixed && new_blocks > old_blocks {
        data_at = append(img, &mut w, (new_blocks - old_blocks) * old.block_size)?;
        img.file
            .allocate(data_at, (new_blocks - old_blocks) * old.block_size)?;
        img.file.sync_data()?;
    }
    // Every entry the old table did not cover is written out explicitly.
    let value = |index: u64| -> u64 {
        let chunk = geo.chunk_ratio + 1;
        if !fixed || index % chunk == geo.chunk_ratio {
            return 0;
        }
        let block = index - index / chunk;
        if block < old_blocks {
            return 0;
        }
        make_entry(
            PayloadState::FullyPresent.bits(),
            data_at + (block - old_blocks) * old.block_size,
        )
    };
    let first = old.total_entries();
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let mut pages = 0usize;
    let mut index = first;
    while index < entries {
        let page_end = ((index / ENTRIES_PER_PAGE + 1) * ENTRIES_PER_PAGE).min(entries);
        for i in index..page_end {
            pending.push((i, value(i)));
        }
        pages += 1;
        index = page_end;
        if pages == PAGES_PER_COMMIT || index == entries {
            commit_bat(img, &mut w, &layout, &pending, Vec::new())?;
            pending.clear();
            pages = 0;
        }
    }
    // The size item, last.
    let item = img.metadata_region.offset + u64::from(img.meta.virtual_size_item);
    let (p0, p1) = (item / 4096 * 4096, (item + 7) / 4096 * 4096);
    let pages = if p0 == p1 { vec![p0] } else { vec![p0, p1] };
    let mut updates = Vec::new();
    for page in pages {
        let mut data = Box::new([0u8; 4096]);
        img.read_file(&mut data[..], page)?;
        let bytes = new_size.to_le_bytes();
        for (k, byte) in bytes.iter().enumerate() {
            let at = item + k as u64;
            if at >= page && at < page + 4096 {
                data[us(at - page)] = *byte;
            }
        }
        updates.push(LogUpdate::Page { offset: page, data });
    }
    commit(img, &mut w, &layout, updates)?;
    layout.geometry = geo;
    img.virtual_size.store(new_size, Ordering::Release);
    Ok(())
}
