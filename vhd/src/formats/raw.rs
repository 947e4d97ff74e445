//! Raw images: the file's bytes are the disk's bytes.

use std::fs::OpenOptions as FsOpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::file::ImageFile;
use crate::image::check_range;
use crate::{
    Allocation, DiskImage, Error, Extent, Format, ImageInfo, ImageType, OpenOptions, Result,
};

/// A raw disk image.
#[derive(Debug)]
pub struct RawImage {
    file: ImageFile,
    size: AtomicU64,
    read_only: bool,
}

impl RawImage {
    /// The file the image lives in.
    pub(crate) fn image_file(&self) -> &ImageFile {
        &self.file
    }

    /// Wraps an already opened file as a raw image of the file's size.
    pub fn from_file(file: ImageFile, read_only: bool) -> Result<Self> {
        let size = file.len()?;
        Ok(RawImage {
            file,
            size: AtomicU64::new(size),
            read_only,
        })
    }

    /// Opens `path` as a raw image.
    pub fn open(path: &Path, options: &OpenOptions) -> Result<Self> {
        let file = crate::open_file(path, options.read_only)?;
        Self::from_file(file, options.read_only)
    }

    /// Creates a raw image of `size` bytes: sparse for `Dynamic`,
    /// preallocated for `Fixed`.
    pub fn create(path: &Path, size: u64, image_type: ImageType) -> Result<Self> {
        let f = FsOpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("creating", path, e))?;
        let file = ImageFile::new(f, path);
        match image_type {
            ImageType::Dynamic => file.set_len(size)?,
            ImageType::Fixed => {
                if size > 0 {
                    file.allocate(0, size)?
                }
            }
            ImageType::Differencing => {
                return Err(Error::unsupported(
                    Format::Raw,
                    "raw images cannot be differencing images",
                ));
            }
        }
        file.sync_data()?;
        Ok(RawImage {
            file,
            size: AtomicU64::new(size),
            read_only: false,
        })
    }

    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }
}

impl DiskImage for RawImage {
    fn virtual_size(&self) -> u64 {
        self.size()
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
        check_range(offset, buf.len() as u64, self.size())?;
        // The file may have been truncated under us; what is missing reads as zeros.
        self.file.read_at_zero_fill(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_writable()?;
        check_range(offset, buf.len() as u64, self.size())?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable()?;
        check_range(offset, len, self.size())?;
        if len == 0 {
            return Ok(());
        }
        self.file.punch_hole(offset, len)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.write_zeroes(offset, len)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        check_range(offset, len, self.size())?;
        if len == 0 {
            return Err(Error::InvalidArgument(
                "block_status of an empty range".into(),
            ));
        }
        let end = offset + len;
        let (allocation, run_end) = match self.file.next_data(offset)? {
            None => (Allocation::Unallocated, end),
            Some((data, _)) if data > offset => (Allocation::Unallocated, data.min(end)),
            Some((_, hole)) => (Allocation::Data, hole.min(end)),
        };
        Ok(Extent {
            offset,
            length: run_end - offset,
            allocation,
            depth: 0,
        })
    }

    fn info(&self) -> ImageInfo {
        ImageInfo {
            path: self.file.path().to_path_buf(),
            format: Format::Raw,
            image_type: ImageType::Fixed,
            virtual_size: self.size(),
            file_size: self.file.len().unwrap_or(self.size()),
            block_size: None,
            logical_sector_size: 512,
            physical_sector_size: 512,
            creator: None,
            identifiers: Vec::new(),
            log_dirty: None,
            parent: None,
        }
    }
}

impl RawImage {
    /// Changes the size of the disk (and file) to `new_size` bytes.
    pub fn resize(&self, new_size: u64) -> Result<()> {
        self.check_writable()?;
        self.file.set_len(new_size)?;
        self.file.sync_data()?;
        self.size.store(new_size, Ordering::Release);
        Ok(())
    }
}
