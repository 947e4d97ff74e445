//! The `DiskImage` trait every format implements, and the types it speaks.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::{Error, Result};

/// An on-disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A plain file whose bytes are the disk's bytes.
    Raw,
    /// Microsoft Virtual Hard Disk (Virtual PC / Hyper-V legacy).
    Vhd,
    /// Microsoft Virtual Hard Disk v2.
    Vhdx,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
        })
    }
}

/// How an image stores its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageType {
    /// Every byte of the disk is stored, in order.
    Fixed,
    /// Blocks are allocated on first write.
    Dynamic,
    /// Blocks not written here come from a parent image.
    Differencing,
}

impl fmt::Display for ImageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageType::Fixed => "fixed",
            ImageType::Dynamic => "dynamic",
            ImageType::Differencing => "differencing",
        })
    }
}

/// What a range of the virtual disk holds, as reported by
/// [`DiskImage::block_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocation {
    /// Stored data (which may happen to be zeros).
    Data,
    /// Known to read as zeros, explicitly so (a zero state or a zeroed block).
    Zero,
    /// Not allocated anywhere in the chain: reads as zeros.
    Unallocated,
}

impl Allocation {
    /// Whether the range reads as zeros without looking at the data.
    pub fn reads_as_zero(self) -> bool {
        matches!(self, Allocation::Zero | Allocation::Unallocated)
    }
}

/// A run of the virtual disk with one allocation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// First byte of the run.
    pub offset: u64,
    /// Length of the run in bytes (never 0).
    pub length: u64,
    /// What the run holds.
    pub allocation: Allocation,
    /// Which image of the chain answers for it: 0 is this image, 1 its
    /// parent, and so on. Unallocated runs report the depth at which the
    /// search ended.
    pub depth: u32,
}

/// A description of an open image, for `info`-style reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    /// File path the image was opened from.
    pub path: PathBuf,
    /// Container format.
    pub format: Format,
    /// Storage type.
    #[serde(rename = "type")]
    pub image_type: ImageType,
    /// Size of the virtual disk in bytes.
    pub virtual_size: u64,
    /// Size of the image file in bytes.
    pub file_size: u64,
    /// Allocation unit in bytes (dynamic and differencing images).
    pub block_size: Option<u64>,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// The application that created the image, when recorded.
    pub creator: Option<String>,
    /// Identifiers recorded in the image (name, value), e.g. ("uuid", ...).
    pub identifiers: Vec<(String, String)>,
    /// Whether the image's log holds unreplayed entries (VHDX only).
    pub log_dirty: Option<bool>,
    /// The parent image, for differencing images.
    pub parent: Option<Box<ImageInfo>>,
}

/// A virtual disk: the one boundary every consumer (converter, importer,
/// virtio-blk) talks to.
///
/// All methods take `&self` and are safe to call from several threads at
/// once. Offsets and lengths are in bytes and need not be sector-aligned;
/// requests reaching past [`virtual_size`](Self::virtual_size) fail with
/// [`Error::OutOfRange`].
pub trait DiskImage: Send + Sync + fmt::Debug {
    /// Size of the virtual disk in bytes.
    fn virtual_size(&self) -> u64;

    /// Logical sector size in bytes (512 or 4096).
    fn logical_sector_size(&self) -> u32;

    /// Physical sector size in bytes (512 or 4096).
    fn physical_sector_size(&self) -> u32;

    /// Whether the image was opened read-only.
    fn read_only(&self) -> bool;

    /// Fills `buf` with the disk's bytes starting at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// Writes `buf` to the disk starting at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;

    /// Makes every completed write, and the metadata it depends on, durable.
    /// Returns only once that is so.
    fn flush(&self) -> Result<()>;

    /// Makes `len` bytes at `offset` read as zeros, deallocating where the
    /// format allows.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()>;

    /// Tells the image that `len` bytes at `offset` are no longer needed,
    /// releasing space where the format allows. Afterwards the range reads
    /// as zeros, in differencing images too.
    fn discard(&self, offset: u64, len: u64) -> Result<()>;

    /// The allocation status of the run that starts at `offset`, at most
    /// `len` bytes long (`len` > 0, inside the disk).
    fn block_status(&self, offset: u64, len: u64) -> Result<Extent>;

    /// A description of the image and its chain.
    fn info(&self) -> ImageInfo;
}

/// Checks that `[offset, offset + len)` lies inside a disk of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange { offset, len, size }),
    }
}

/// Lists every extent of `[offset, offset + len)` by calling
/// [`DiskImage::block_status`] until the range is covered, merging neighbours
/// with the same status.
pub fn map_range(image: &dyn DiskImage, offset: u64, len: u64) -> Result<Vec<Extent>> {
    check_range(offset, len, image.virtual_size())?;
    let mut out: Vec<Extent> = Vec::new();
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let e = image.block_status(pos, end - pos)?;
        if e.offset != pos || e.length == 0 || e.length > end - pos {
            return Err(Error::InvalidArgument(format!(
                "block_status returned an extent {:#x}+{:#x} for a query at {pos:#x}",
                e.offset, e.length
            )));
        }
        pos += e.length;
        match out.last_mut() {
            Some(last) if last.allocation == e.allocation && last.depth == e.depth => {
                last.length += e.length
            }
            _ => out.push(e),
        }
    }
    Ok(out)
}
