//! Delta disks (`ovf:parentRef`): the image a converted file is written
//! into, and copying a child's overlay onto its parent's content.
//!
//! A child's content is its parent's with the child's data laid over it.
//! For VHD and VHDX outputs the child becomes a differencing image whose
//! parent is the parent's converted image (found by a relative locator, so
//! the output directory can move): what the child defines is written into
//! it, zeros explicitly (`write_zeroes` on a differencing image makes the
//! range read as zeros, never as the parent's data), and everything else
//! is left to the parent. For raw outputs the child is flattened: the
//! parent's data is copied into the child's own file first.

use std::ops::Range;
use std::path::{Path, PathBuf};

use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

use super::{ImportError, Result};

/// Bytes read and written at a time when copying between images.
const CHUNK: u64 = 1 << 20;

/// A parent disk's converted image.
#[derive(Debug, Clone)]
pub(crate) struct ParentImage {
    /// Its path in the output directory.
    pub path: PathBuf,
    /// Its virtual size.
    pub size: u64,
    /// The output names of the images a child over it reads through,
    /// nearest first (this one, then its own parents).
    pub chain: Vec<String>,
}

/// Where a converted file goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The image file to create.
    pub dest: &'a Path,
    /// Its format.
    pub format: Format,
    /// The parent's image, for a delta disk.
    pub parent: Option<&'a ParentImage>,
    /// The capacity the descriptor gives, when known (a delta disk is made
    /// at least this large; other disks are grown to it afterwards).
    pub capacity: Option<u64>,
}

pub(crate) fn disk_err(href: &str, e: vhd::Error) -> ImportError {
    ImportError::Disk {
        href: href.to_string(),
        source: e,
    }
}

/// Opens an image the import wrote (its format is known: detection could
/// mistake raw data for a VHD footer).
pub(crate) fn open_output(path: &Path, format: Format, read_only: bool) -> vhd::Result<vhd::Image> {
    vhd::open(
        path,
        &OpenOptions {
            read_only,
            format: Some(format),
            ..OpenOptions::default()
        },
    )
}

impl Target<'_> {
    /// The virtual size of the image for content of `content` bytes: a
    /// delta disk is as large as its content, its capacity and its parent
    /// (never cut).
    pub(crate) fn size_for(&self, content: u64) -> u64 {
        match self.parent {
            None => content,
            Some(p) => content.max(self.capacity.unwrap_or(0)).max(p.size),
        }
    }

    /// Creates the image for content of `content` bytes whose first
    /// `covered` bytes the source will define entirely. Over a parent, a
    /// VHD or VHDX target is a differencing image and a raw target gets
    /// the parent's data beyond `covered` copied in. The image is staging
    /// ([`vhd::Image::set_staging`]): an import's output is filled before
    /// anything uses it (the VM definition naming it is written only after
    /// every disk is flushed, and a failed import removes what it wrote).
    pub(crate) fn create(
        &self,
        href: &str,
        content: u64,
        covered: u64,
        physical_sector_size: Option<u32>,
    ) -> Result<vhd::Image> {
        let Some(parent) = self.parent else {
            let mut opts = CreateOptions::new(self.format, ImageType::Dynamic, content);
            if self.format == Format::Vhdx {
                opts.physical_sector_size = Some(physical_sector_size.unwrap_or(4096).max(4096));
            }
            let out = vhd::create(self.dest, &opts).map_err(|e| disk_err(href, e))?;
            out.set_staging(true);
            return Ok(out);
        };
        let size = self.size_for(content);
        match self.format {
            Format::Raw => {
                let out = vhd::create(
                    self.dest,
                    &CreateOptions::new(Format::Raw, ImageType::Dynamic, size),
                )
                .map_err(|e| disk_err(href, e))?;
                out.set_staging(true);
                let source =
                    open_output(&parent.path, Format::Raw, true).map_err(|e| disk_err(href, e))?;
                let from = covered.min(parent.size);
                copy_data(href, &source, &out, from..parent.size, false)?;
                Ok(out)
            }
            Format::Vhd | Format::Vhdx => {
                if self.format == Format::Vhd && size > parent.size {
                    return Err(ImportError::Unsupported(format!(
                        "{href} is a delta disk of {size} bytes over a parent of {} bytes: a \
                         differencing VHD keeps its parent's size (import to VHDX or raw)",
                        parent.size
                    )));
                }
                let p =
                    open_output(&parent.path, self.format, true).map_err(|e| disk_err(href, e))?;
                let mut opts = CreateOptions::differencing(self.format, &parent.path);
                opts.size = Some(size);
                if self.format == Format::Vhdx {
                    opts.logical_sector_size = p.logical_sector_size();
                    opts.physical_sector_size = Some(p.physical_sector_size().max(4096));
                }
                drop(p);
                let out = vhd::create(self.dest, &opts).map_err(|e| disk_err(href, e))?;
                out.set_staging(true);
                if size > parent.size {
                    // Past its parent's end a child reads zeros; say so
                    // in the child (zero blocks, cheap), so that no reader
                    // has to look for the parent's data beyond its end
                    // (libvhdi fails there).
                    out.write_zeroes(parent.size, size - parent.size)
                        .map_err(|e| disk_err(href, e))?;
                }
                Ok(out)
            }
        }
    }
}

/// Copies `range` of `src` into `out` at the same offsets. Runs of zeros
/// are written as zeros when `zeros_over` (the target shows a parent
/// there), else skipped (the target reads as zeros already). Returns the
/// bytes of data written.
pub(crate) fn copy_data(
    href: &str,
    src: &dyn DiskImage,
    out: &dyn DiskImage,
    range: Range<u64>,
    zeros_over: bool,
) -> Result<u64> {
    if range.is_empty() {
        return Ok(0);
    }
    let err = |e| disk_err(href, e);
    let extents = vhd::map_range(src, range.start, range.end - range.start).map_err(err)?;
    let mut buf = vec![0u8; usize::try_from(CHUNK.min(range.end - range.start)).unwrap_or(0)];
    let mut written = 0u64;
    for e in extents {
        let end = e.offset + e.length;
        if e.allocation.reads_as_zero() {
            if zeros_over {
                out.write_zeroes(e.offset, e.length).map_err(err)?;
            }
            continue;
        }
        let mut pos = e.offset;
        while pos < end {
            let n = CHUNK.min(end - pos);
            let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
            src.read_at(chunk, pos).map_err(err)?;
            if vhd::ops::is_zero(chunk) {
                if zeros_over {
                    out.write_zeroes(pos, n).map_err(err)?;
                }
            } else {
                out.write_at(chunk, pos).map_err(err)?;
                written += n;
            }
            pos += n;
        }
    }
    Ok(written)
}

/// Lays the `covered` ranges of `src` (what a child defines) over `out`,
/// which shows the parent everywhere else. Returns the bytes of data
/// written.
pub(crate) fn overlay(
    href: &str,
    src: &dyn DiskImage,
    out: &dyn DiskImage,
    covered: &[Range<u64>],
) -> Result<u64> {
    let size = src.virtual_size();
    let mut written = 0;
    for r in covered {
        let r = r.start.min(size)..r.end.min(size);
        written += copy_data(href, src, out, r, true)?;
    }
    out.flush().map_err(|e| disk_err(href, e))?;
    Ok(written)
}
