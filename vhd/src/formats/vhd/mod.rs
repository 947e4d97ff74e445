//! VHD images: fixed, dynamic and differencing (Virtual Hard Disk format
//! specification 1.0).
//!
//! Layout of what this module reads and writes:
//! - fixed: the disk's bytes, then the 512-byte footer;
//! - dynamic and differencing: a copy of the footer at offset 0, the dynamic
//!   header (`cxsparse`), the block allocation table (BAT, `0xFFFFFFFF` =
//!   unallocated), parent locator data (differencing), then blocks (each a
//!   sector bitmap, MSB first, padded to 512 bytes, followed by the data),
//!   then the footer.
//!
//! The disk size follows the rule real producers expect: the CHS geometry's
//! size for disks made by Virtual PC (`vpc `) and old QEMU (`qemu`) unless
//! the geometry is the maximum, the footer's current size for everyone else
//! (Hyper-V `win `, Disk2vhd `d2v `, QEMU `qem2`, Azure `wa\0\0`, ...),
//! as QEMU 10 does. Disks over 2040 GiB are not created. Block sizes are
//! powers of two from 512 bytes to 256 MiB (default 2 MiB).
//!
//! Images created here carry the creator application `vmim` and a current
//! size equal to the requested size rounded up to 512 bytes; QEMU 10 reads
//! them at that size (it uses the geometry only for `vpc ` and `qemu`),
//! older QEMU versions at the size of the CHS geometry, which can be
//! smaller.
//!
//! Sector bitmaps: a dynamic disk's new block gets every bit set (what is
//! not written reads as zeros from the file), so its bitmap never changes
//! again. A differencing disk marks sectors present in 4 KiB grains (whole
//! bitmap bytes), merging the parent's data into partly written grains.
//! Bitmaps written by others are honoured sector by sector.
//!
//! Concurrency: reads and writes to allocated blocks look the block up in
//! an in-memory BAT of atomic words, taking no lock (partly present blocks
//! take a read lock on their bitmap map). Allocation and bitmap changes
//! take one mutex. Crash safety of allocation: the new block's data, bitmap
//! and the footer moved to the new end are written at once; its BAT entry
//! is written by the next flush, after a first fdatasync has made them
//! durable, so that no durable entry ever points at a block that is not
//! (or past the end of the file, which QEMU refuses). The entries of one
//! flush go in one write, so a power cut keeps all of them or none: it
//! leaks at most the blocks allocated since the last flush, at the end of
//! the file, where `check --repair` reclaims them. Bits set in an existing
//! block's bitmap are likewise written at the next flush, after the data
//! they cover is durable. Dropping the image flushes what is pending.

mod bat;
mod check;
mod create;
mod footer;
mod geometry;
mod header;
mod io;
mod locator;
mod parent;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use self::bat::{Entry, Extent as FileExtent};
use self::footer::{DiskType, FOOTER_COOKIE, FOOTER_SIZE, Footer};
use self::header::{DynamicHeader, HEADER_SIZE};
use crate::file::ImageFile;
use crate::image::check_range;
use crate::{
    ChainContext, CheckReport, CreateOptions, DiskImage, Error, Extent, Format, Image, ImageInfo,
    ImageType, Result,
};

pub use self::footer::MAX_SIZE;

/// A VHD image (fixed, dynamic or differencing).
#[derive(Debug)]
pub struct VhdImage {
    file: ImageFile,
    read_only: bool,
    size: AtomicU64,
    footer: RwLock<Footer>,
    layout: Layout,
}

#[derive(Debug)]
enum Layout {
    Fixed,
    Sparse(Box<Sparse>),
}

/// The state of a dynamic or differencing disk.
#[derive(Debug)]
struct Sparse {
    header: DynamicHeader,
    block_size: u64,
    bitmap_size: u64,
    map: bat::Table,
    alloc: Mutex<AllocState>,
    flush_lock: Mutex<()>,
    parent: Option<Box<Image>>,
}

/// What allocation and flushing change, under one mutex.
#[derive(Debug)]
struct AllocState {
    /// Where the next block goes: the footer's position.
    next_free: u64,
    /// Blocks whose in-memory bitmap has bits the file lacks.
    dirty: Vec<usize>,
    /// Blocks allocated since the last flush, whose table entry the file
    /// lacks: it is written by the next flush, once their bitmap and data
    /// are durable, so no entry ever points at a block that is not.
    unlinked: Vec<usize>,
    /// Entries the header declares now (resize can add some).
    table_entries: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
pub(crate) fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
pub(crate) fn be64(b: &[u8], o: usize) -> u64 {
    (u64::from(be32(b, o)) << 32) | u64::from(be32(b, o + 4))
}
pub(crate) fn put_be16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_be32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_be64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_be_bytes());
}

/// Where the footer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FooterAt {
    /// At this offset at the end of the file.
    End(u64),
    /// Only the copy at offset 0 is valid.
    CopyOnly,
}

/// Reads the footer: the one at the end of the file (512 bytes, or 511 as
/// Windows before Virtual PC 2004 wrote), else, for dynamic and
/// differencing disks, the copy at offset 0.
fn read_footer(file: &ImageFile, file_len: u64) -> Result<(Footer, FooterAt)> {
    if file_len < FOOTER_SIZE as u64 {
        return Err(Error::corrupt(
            Format::Vhd,
            "footer",
            0,
            format!("the file of {file_len} bytes is shorter than a footer"),
        ));
    }
    let mut tail = [0u8; FOOTER_SIZE];
    let mut at = file_len - FOOTER_SIZE as u64;
    file.read_exact_at(&mut tail, at)?;
    if &tail[..8] != FOOTER_COOKIE && &tail[1..9] == FOOTER_COOKIE {
        at += 1;
        tail.copy_within(1.., 0);
        tail[FOOTER_SIZE - 1] = 0;
    }
    let end = Footer::decode(&tail, at);
    if let Ok(f) = end {
        return Ok((f, FooterAt::End(at)));
    }
    let mut head = [0u8; FOOTER_SIZE];
    file.read_exact_at(&mut head, 0)?;
    match Footer::decode(&head, 0) {
        Ok(f) if f.disk_type != DiskType::Fixed => Ok((f, FooterAt::CopyOnly)),
        Ok(_) => end.map(|f| (f, FooterAt::End(at))),
        Err(copy_err) => {
            if &tail[..8] == FOOTER_COOKIE {
                end.map(|f| (f, FooterAt::End(at)))
            } else {
                Err(copy_err)
            }
        }
    }
}

impl Drop for VhdImage {
    fn drop(&mut self) {
        // Blocks allocated since the last flush are linked into the table
        // now (data first), as closing a file keeps what was written to it.
        // Errors cannot be reported from here: a caller that must know
        // flushes first.
        if let Layout::Sparse(s) = &self.layout
            && !self.read_only
            && s.has_pending()
        {
            let _ = s.flush(&self.file);
        }
    }
}

impl VhdImage {
    /// Marks the image as staging: being filled before anything can open
    /// it, like a conversion's output under a temporary name that is
    /// renamed into place only after its final [`flush`](DiskImage::flush).
    /// Bulk write-behind (see
    /// [`ImageFile::set_write_behind`](crate::ImageFile::set_write_behind))
    /// is on while staging.
    pub fn set_staging(&self, staging: bool) {
        self.file.set_write_behind(staging);
    }

    /// Opens a VHD image from an open file. Differencing parents are found
    /// through the locators inside the directories `ctx` allows.
    pub fn open(file: ImageFile, read_only: bool, ctx: &ChainContext) -> Result<Self> {
        let file_len = file.len()?;
        let (footer, at) = read_footer(&file, file_len)?;
        let size = footer.virtual_size();
        let footer_offset = match at {
            FooterAt::End(o) => o,
            FooterAt::CopyOnly => file_len,
        };
        let layout = match footer.disk_type {
            DiskType::Fixed => {
                if size > footer_offset {
                    return Err(Error::corrupt(
                        Format::Vhd,
                        "footer current size",
                        footer_offset + 48,
                        format!(
                            "the disk of {size} bytes needs more than the {footer_offset} bytes \
                             of data the file holds"
                        ),
                    ));
                }
                Layout::Fixed
            }
            DiskType::Dynamic | DiskType::Differencing => Layout::Sparse(Box::new(
                Self::open_sparse(&file, &footer, at, file_len, ctx)?,
            )),
        };
        Ok(VhdImage {
            file,
            read_only,
            size: AtomicU64::new(size),
            footer: RwLock::new(footer),
            layout,
        })
    }

    fn open_sparse(
        file: &ImageFile,
        footer: &Footer,
        at: FooterAt,
        file_len: u64,
        ctx: &ChainContext,
    ) -> Result<Sparse> {
        let size = footer.virtual_size();
        let hdr_at = footer.data_offset;
        if hdr_at < FOOTER_SIZE as u64
            || hdr_at
                .checked_add(HEADER_SIZE as u64)
                .is_none_or(|e| e > file_len)
        {
            return Err(Error::corrupt(
                Format::Vhd,
                "footer data offset",
                16,
                format!("the dynamic header at {hdr_at:#x} is not inside the file"),
            ));
        }
        let mut hb = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut hb, hdr_at)?;
        let header = DynamicHeader::decode(&hb, hdr_at, file_len)?;
        let block_size = header.block_size;
        let capacity = u64::from(header.max_table_entries) * block_size;
        if capacity < size {
            return Err(Error::corrupt(
                Format::Vhd,
                "dynamic header max table entries",
                hdr_at + 28,
                format!(
                    "{} blocks of {block_size} bytes cover less than the disk's {size} bytes",
                    header.max_table_entries
                ),
            ));
        }
        let bitmap_size = bat::bitmap_size(block_size);
        let span = bitmap_size + block_size;
        let mut meta = vec![
            FileExtent {
                start: 0,
                end: FOOTER_SIZE as u64,
                what: "footer copy",
            },
            FileExtent {
                start: hdr_at,
                end: hdr_at + HEADER_SIZE as u64,
                what: "dynamic header",
            },
            FileExtent {
                start: header.table_offset,
                end: header.table_offset + u64::from(header.max_table_entries) * 4,
                what: "block allocation table",
            },
        ];
        for l in header.locators.iter().filter(|l| l.is_used()) {
            if let Some(end) = l.data_offset.checked_add(u64::from(l.data_length)) {
                meta.push(FileExtent {
                    start: l.data_offset,
                    end,
                    what: "parent locator data",
                });
            }
        }
        if let FooterAt::End(o) = at {
            meta.push(FileExtent {
                start: o,
                end: file_len,
                what: "footer",
            });
        }
        let map = bat::read_table(
            file,
            header.table_offset,
            header.max_table_entries,
            span,
            file_len,
            &meta,
        )?;
        let mut next_free = match at {
            FooterAt::End(o) => o,
            FooterAt::CopyOnly => file_len,
        };
        for m in &meta {
            if m.what != "footer" {
                next_free = next_free.max(m.end);
            }
        }
        for e in &map {
            if let Entry::Present { sector, .. } = e {
                next_free = next_free.max(u64::from(*sector) * 512 + span);
            }
        }
        let next_free = next_free.next_multiple_of(512);
        let table_entries = header.max_table_entries;
        // Room for growth within the table's padding (see resize).
        let capacity =
            usize::try_from((u64::from(header.max_table_entries) * 4).next_multiple_of(512) / 4)
                .unwrap_or(usize::MAX);
        let parent = if footer.disk_type == DiskType::Differencing {
            let candidates = locator::candidates(file, &header, file_len)?;
            let p = crate::open_parent(file.path(), &candidates, ctx)?;
            parent::check_identity(file.path(), &header, &p)?;
            Some(Box::new(p))
        } else {
            None
        };
        Ok(Sparse {
            header,
            block_size,
            bitmap_size,
            map: bat::Table::new(map, capacity),
            alloc: Mutex::new(AllocState {
                next_free,
                dirty: Vec::new(),
                unlinked: Vec::new(),
                table_entries,
            }),
            flush_lock: Mutex::new(()),
            parent,
        })
    }

    /// Creates a VHD image: fixed (data then footer), dynamic, or
    /// differencing over `options.parent` (any format). Block size defaults
    /// to 2 MiB and may be any power of two from 512 bytes to 256 MiB; the
    /// size is rounded up to 512 bytes and may not exceed 2040 GiB.
    pub fn create(path: &Path, options: &CreateOptions) -> Result<Self> {
        create::create(path, options)
    }

    /// Changes the virtual size to `new_size` bytes (rounded up to 512).
    /// Fixed disks grow or shrink; dynamic and differencing disks change
    /// within the capacity of their block allocation table.
    pub fn resize(&self, new_size: u64) -> Result<()> {
        create::resize(self, new_size)
    }

    /// Checks the structure of the image file at `path`, repairing what is
    /// safe to repair when `repair` is set. Works on files too damaged to open.
    pub fn check_file(path: &Path, repair: bool) -> Result<CheckReport> {
        check::check_file(path, repair)
    }

    /// The unique id recorded in the footer.
    pub fn uuid(&self) -> Uuid {
        Uuid::from_bytes(read(&self.footer).uuid)
    }

    /// The footer's time stamp (seconds since 2000-01-01 UTC).
    pub fn timestamp(&self) -> u32 {
        read(&self.footer).timestamp
    }

    /// The parent image of a differencing disk.
    pub fn parent(&self) -> Option<&Image> {
        match &self.layout {
            Layout::Sparse(s) => s.parent.as_deref(),
            Layout::Fixed => None,
        }
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}

impl DiskImage for VhdImage {
    fn virtual_size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    fn logical_sector_size(&self) -> u32 {
        512
    }

    fn physical_sector_size(&self) -> u32 {
        512
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len() as u64, self.virtual_size())?;
        match &self.layout {
            Layout::Fixed => self.file.read_at_zero_fill(buf, offset).map(|_| ()),
            Layout::Sparse(s) => s.read(&self.file, buf, offset),
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.writable()?;
        check_range(offset, buf.len() as u64, self.virtual_size())?;
        match &self.layout {
            Layout::Fixed => self.file.write_all_at(buf, offset),
            Layout::Sparse(s) => s.write(&self.file, io::Src::Data(buf), offset, &self.footer),
        }
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        match &self.layout {
            Layout::Fixed => self.file.sync_data(),
            Layout::Sparse(s) => s.flush(&self.file),
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.writable()?;
        check_range(offset, len, self.virtual_size())?;
        if len == 0 {
            return Ok(());
        }
        match &self.layout {
            Layout::Fixed => self.file.zero_range(offset, len),
            Layout::Sparse(s) => s.write(&self.file, io::Src::Zeros(len), offset, &self.footer),
        }
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.writable()?;
        check_range(offset, len, self.virtual_size())?;
        if len == 0 {
            return Ok(());
        }
        match &self.layout {
            Layout::Fixed => self.file.punch_hole(offset, len),
            Layout::Sparse(s) => s.write(&self.file, io::Src::Zeros(len), offset, &self.footer),
        }
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        check_range(offset, len, self.virtual_size())?;
        if len == 0 {
            return Err(Error::InvalidArgument(
                "block_status of an empty range".into(),
            ));
        }
        match &self.layout {
            Layout::Fixed => Ok(Extent {
                offset,
                length: len,
                allocation: crate::Allocation::Data,
                depth: 0,
            }),
            Layout::Sparse(s) => s.block_status(&self.file, offset, len),
        }
    }

    fn info(&self) -> ImageInfo {
        let f = read(&self.footer).clone();
        let mut identifiers = vec![
            ("uuid".to_string(), Uuid::from_bytes(f.uuid).to_string()),
            ("timestamp".to_string(), f.timestamp.to_string()),
        ];
        let (image_type, block_size, parent) = match &self.layout {
            Layout::Fixed => (ImageType::Fixed, None, None),
            Layout::Sparse(s) => {
                let t = match s.parent {
                    Some(_) => {
                        identifiers.push((
                            "parent_uuid".to_string(),
                            Uuid::from_bytes(s.header.parent_uuid).to_string(),
                        ));
                        identifiers.push((
                            "parent_timestamp".to_string(),
                            s.header.parent_timestamp.to_string(),
                        ));
                        ImageType::Differencing
                    }
                    None => ImageType::Dynamic,
                };
                (
                    t,
                    Some(s.block_size),
                    s.parent.as_ref().map(|p| Box::new(p.info())),
                )
            }
        };
        ImageInfo {
            path: self.path(),
            format: Format::Vhd,
            image_type,
            virtual_size: self.virtual_size(),
            file_size: self.file.len().unwrap_or(0),
            block_size,
            logical_sector_size: 512,
            physical_sector_size: 512,
            creator: Some(f.creator()),
            identifiers,
            log_dirty: None,
            parent,
        }
    }
}
