//! VHDX images (MS-VHDX 1.0): fixed, dynamic and differencing, 512- and
//! 4096-byte logical sectors, every block state, metadata updates through
//! the log.
//!
//! Structure: `format` (constants, field helpers), `header`, `region`,
//! `metadata` and `bat` decode and encode the on-disk structures; `log`
//! writes and replays the log; `io` is the data path; `update` makes
//! metadata changes (session header, block allocation, state changes,
//! resize); `parent` resolves differencing parents; `create` and `check`
//! build and verify files.
//!
//! Concurrency: the BAT lives in memory as atomics behind an `RwLock` that
//! only a resize takes for writing, so reads and writes to allocated blocks
//! run in parallel. Allocation and every metadata change take one mutex.
//!
//! Log lifecycle: the first change in a session writes a header with a new
//! FileWriteGuid, DataWriteGuid and LogGuid (and flushes) before anything
//! else; metadata changes then go through the log. A clean close (drop)
//! writes a header with a zero LogGuid, marking the log empty; `flush`
//! leaves the log in place, since its entries are already applied.
//!
//! Allocation: a new block is appended, its data written and its BAT entry
//! set in memory at once (readers see it); the BAT page is logged at the
//! next `flush` (or metadata commit, or when 32 pages are pending), after a
//! flush of the data. So the data is always durable before the entry that
//! points at it, and a power cut loses only allocations no flush covered.
//! Sector bitmap updates, state changes and resizes are logged at once.

mod bat;
mod check;
mod create;
mod format;
mod header;
mod io;
mod log;
mod metadata;
mod parent;
mod region;
mod update;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use self::bat::{BatCache, Geometry};
use self::format::{
    HEADER_OFFSETS, METADATA_TABLE_SIZE, MIB, REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, corrupt,
    round_up,
};
use self::header::Header;
use self::log::{LogRegion, LogWriter, Replay};
use self::metadata::Metadata;
use self::region::{Region, RegionTable};
use crate::file::ImageFile;
use crate::image::check_range;
use crate::{
    ChainContext, CheckReport, CreateOptions, DiskImage, Error, Extent, Format, Image, ImageInfo,
    ImageType, Result,
};

/// A VHDX image.
#[derive(Debug)]
pub struct VhdxImage {
    file: ImageFile,
    read_only: bool,
    creator: Option<String>,
    meta: Box<Metadata>,
    log_region: LogRegion,
    metadata_region: Region,
    layout: Box<RwLock<Layout>>,
    writer: Box<Mutex<Writer>>,
    /// Set once this session's header (new GUIDs) is durable.
    session: AtomicBool,
    /// The virtual size, readable without the layout lock (a resize stores
    /// it after the layout has changed).
    virtual_size: AtomicU64,
    /// One past the last byte a block may occupy (the file's extent).
    file_end: AtomicU64,
    /// Unapplied log of a dirty image opened read-only.
    replay: Option<Replay>,
    parent: Option<Box<Image>>,
}

/// The parts of the layout a resize changes.
#[derive(Debug)]
struct Layout {
    geometry: Geometry,
    bat: BatCache,
}

/// State of the writing side, under the allocation mutex.
#[derive(Debug)]
struct Writer {
    header: Header,
    slot: usize,
    log: Option<LogWriter>,
    /// Where the next block is appended (1 MiB aligned).
    alloc_end: u64,
    /// Whether a metadata update failed half-way (the log must then stay).
    failed: bool,
    /// BAT pages holding allocations not yet logged (their data not yet
    /// known durable).
    pending: BTreeSet<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `buf` at `offset`, zero past the end of the file, with the
/// unapplied log (if any) laid over it.
#[inline]
fn read_overlaid(
    file: &ImageFile,
    replay: Option<&Replay>,
    buf: &mut [u8],
    offset: u64,
) -> Result<()> {
    file.read_at_zero_fill(buf, offset)?;
    if let Some(r) = replay {
        r.overlay(offset, buf);
    }
    Ok(())
}

/// Decodes the region table and metadata, reading through `replay`.
pub(crate) fn parse_tables(
    file: &ImageFile,
    replay: Option<&Replay>,
    header: &Header,
) -> Result<(RegionTable, Metadata, Geometry)> {
    let mut buf = vec![0u8; REGION_TABLE_SIZE];
    let mut regions = None;
    for at in REGION_TABLE_OFFSETS {
        read_overlaid(file, replay, &mut buf, at)?;
        if region::is_intact(&buf) {
            regions = Some(region::decode(&buf, at)?);
            break;
        }
    }
    let regions = regions.ok_or_else(|| {
        corrupt(
            "region table",
            REGION_TABLE_OFFSETS[0],
            "neither copy has a valid signature and checksum",
        )
    })?;
    let log_len = u64::from(header.log_length);
    for (name, r) in [("BAT", regions.bat), ("metadata", regions.metadata)] {
        if r.overlaps(header.log_offset, log_len) {
            return Err(corrupt(
                "region table",
                REGION_TABLE_OFFSETS[0],
                format!("the {name} region overlaps the log"),
            ));
        }
    }
    let md = regions.metadata;
    let mut table = vec![0u8; METADATA_TABLE_SIZE];
    read_overlaid(file, replay, &mut table, md.offset)?;
    let meta = metadata::decode(&table, md.offset, u64::from(md.length), |o, len| {
        let mut b = vec![0u8; len];
        read_overlaid(file, replay, &mut b, md.offset + u64::from(o))?;
        Ok(b)
    })?;
    let geometry = Geometry::new(
        u64::from(meta.block_size),
        u64::from(meta.logical_sector_size),
        meta.virtual_size,
        meta.has_parent,
    );
    let need = geometry.total_entries() * 8;
    if need > u64::from(regions.bat.length) {
        return Err(corrupt(
            "BAT region",
            regions.bat.offset,
            format!(
                "{} bytes cannot hold the {} entries of the disk",
                regions.bat.length,
                geometry.total_entries()
            ),
        ));
    }
    Ok((regions, meta, geometry))
}

impl VhdxImage {
    /// The file the image lives in.
    pub(crate) fn image_file(&self) -> &ImageFile {
        &self.file
    }

    /// Opens a VHDX image from an open file. A log left dirty is replayed
    /// (read-write) or laid over every read (read-only).
    pub fn open(file: ImageFile, read_only: bool, ctx: &ChainContext) -> Result<Self> {
        let creator = header::read_identifier(&file)?;
        let slots = header::read_slots(&file)?;
        let mut current = header::choose(&slots)?;
        let log_region = LogRegion {
            offset: current.header.log_offset,
            length: current.header.log_length,
        };
        let mut replay = log::read_log(&file, log_region, current.header.log_guid)?;
        if !read_only && let Some(r) = replay.take() {
            r.apply(&file)?;
            let mut h = current.header.next()?;
            h.log_guid = Uuid::nil();
            let slot = 1 - current.slot;
            file.write_all_at(&h.encode()[..], HEADER_OFFSETS[slot])?;
            file.sync_data()?;
            current = header::CurrentHeader { header: h, slot };
        }
        let (regions, meta, geometry) = parse_tables(&file, replay.as_ref(), &current.header)?;
        let parent = if meta.has_parent {
            let loc = meta
                .parent_locator
                .as_ref()
                .ok_or_else(|| corrupt("metadata", regions.metadata.offset, "no parent locator"))?;
            let p = parent::open_parent(file.path(), loc, &meta, ctx)?;
            Some(Box::new(p))
        } else {
            None
        };
        let mut file_len = file.len()?;
        if let Some(r) = &replay {
            file_len = file_len.max(r.last_file_offset);
        }
        let alloc_end = round_up(file_len, MIB)
            .ok_or_else(|| corrupt("file", 0, "the file is too large to append to"))?;
        let bat = BatCache::new(
            regions.bat.offset,
            u64::from(regions.bat.length),
            geometry.total_entries(),
        );
        Ok(VhdxImage {
            file,
            read_only,
            creator,
            meta: Box::new(meta),
            log_region,
            metadata_region: regions.metadata,
            layout: Box::new(RwLock::new(Layout { geometry, bat })),
            writer: Box::new(Mutex::new(Writer {
                header: current.header,
                slot: current.slot,
                log: None,
                alloc_end,
                failed: false,
                pending: BTreeSet::new(),
            })),
            session: AtomicBool::new(false),
            virtual_size: AtomicU64::new(geometry.virtual_size),
            file_end: AtomicU64::new(file_len),
            replay,
            parent,
        })
    }

    /// Creates a VHDX image (fixed, dynamic or differencing) and returns it
    /// open for writing.
    pub fn create(path: &Path, options: &CreateOptions) -> Result<Self> {
        create::create(path, options)
    }

    /// Changes the virtual size to `new_size` bytes (growing only).
    pub fn resize(&self, new_size: u64) -> Result<()> {
        update::resize(self, new_size)
    }

    /// Checks the structure of the image file at `path`, repairing what is
    /// safe to repair when `repair` is set. Works on files too damaged to open.
    pub fn check_file(path: &Path, repair: bool) -> Result<CheckReport> {
        check::check_file(path, repair)
    }

    /// The DataWriteGuid: the identity a differencing child records.
    pub fn data_write_guid(&self) -> Uuid {
        lock(&self.writer).header.data_write_guid
    }

    fn image_type(&self) -> ImageType {
        if self.meta.has_parent {
            ImageType::Differencing
        } else if self.meta.leave_block_allocated {
            ImageType::Fixed
        } else {
            ImageType::Dynamic
        }
    }

    fn size(&self) -> u64 {
        self.virtual_size.load(Ordering::Acquire)
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Reads file bytes (metadata or data) as the image sees them.
    #[inline]
    fn read_file(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        read_overlaid(&self.file, self.replay.as_ref(), buf, offset)
    }
}

impl Drop for VhdxImage {
    fn drop(&mut self) {
        if self.session.load(Ordering::Acquire) {
            // Errors cannot be reported from here; the log stays non-empty
            // and is replayed (harmlessly) on the next open.
            let _ = update::close_session(self);
        }
    }
}

impl DiskImage for VhdxImage {
    fn virtual_size(&self) -> u64 {
        self.size()
    }

    fn logical_sector_size(&self) -> u32 {
        self.meta.logical_sector_size
    }

    fn physical_sector_size(&self) -> u32 {
        self.meta.physical_sector_size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size())?;
        io::read(self, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_writable()?;
        check_range(offset, buf.len() as u64, self.size())?;
        if buf.is_empty() {
            return Ok(());
        }
        update::start_session(self)?;
        io::write(self, buf, offset)
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        update::flush(self)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable()?;
        check_range(offset, len, self.size())?;
        if len == 0 {
            return Ok(());
        }
        update::start_session(self)?;
        update::zero_range(self, offset, len, false)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable()?;
        check_range(offset, len, self.size())?;
        if len == 0 {
            return Ok(());
        }
        update::start_session(self)?;
        update::zero_range(self, offset, len, true)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        check_range(offset, len, self.size())?;
        if len == 0 {
            return Err(Error::InvalidArgument(
                "block_status of an empty range".into(),
            ));
        }
        io::block_status(self, offset, len)
    }

    fn info(&self) -> ImageInfo {
        let header = lock(&self.writer).header;
        let (geometry_size, block_size) = {
            let l = read_lock(&self.layout);
            (l.geometry.virtual_size, l.geometry.block_size)
        };
        let mut identifiers = vec![
            (
                "file_write_guid".to_string(),
                header.file_write_guid.to_string(),
            ),
            (
                "data_write_guid".to_string(),
                header.data_write_guid.to_string(),
            ),
            ("page83".to_string(), self.meta.page83.to_string()),
        ];
        if let Some(l) = self
            .meta
            .parent_locator
            .as_ref()
            .and_then(|l| l.get("parent_linkage"))
        {
            identifiers.push(("parent_linkage".to_string(), l.to_string()));
        }
        ImageInfo {
            path: self.file.path().to_path_buf(),
            format: Format::Vhdx,
            image_type: self.image_type(),
            virtual_size: geometry_size,
            file_size: self.file.len().unwrap_or(0),
            block_size: Some(block_size),
            logical_sector_size: self.meta.logical_sector_size,
            physical_sector_size: self.meta.physical_sector_size,
            creator: self.creator.clone(),
            identifiers,
            log_dirty: Some(self.replay.is_some()),
            parent: self.parent.as_ref().map(|p| Box::new(p.info())),
        }
    }
}
