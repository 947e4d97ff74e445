//! Vhdx images (being written; opening one reports it as unsupported).

use std::path::Path;

#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod log;

use crate::file::ImageFile;
use crate::{
    ChainContext, CheckReport, CreateOptions, DiskImage, Error, Extent, Format, ImageInfo, Result,
};

/// A Vhdx image.
#[derive(Debug)]
pub struct VhdxImage {
    never: std::convert::Infallible,
}

impl VhdxImage {
    /// Opens a Vhdx image from an open file.
    pub fn open(_file: ImageFile, _read_only: bool, _ctx: &ChainContext) -> Result<Self> {
        Err(Error::unsupported(
            Format::Vhdx,
            "this build does not read Vhdx images yet",
        ))
    }

    /// Creates a Vhdx image.
    pub fn create(_path: &Path, _options: &CreateOptions) -> Result<Self> {
        Err(Error::unsupported(
            Format::Vhdx,
            "this build does not create Vhdx images yet",
        ))
    }

    /// Changes the virtual size to `new_size` bytes.
    pub fn resize(&self, _new_size: u64) -> Result<()> {
        match self.never {}
    }

    /// Checks the structure of the image file at `path`, repairing what is
    /// safe to repair when `repair` is set. Works on files too damaged to open.
    pub fn check_file(_path: &Path, _repair: bool) -> Result<CheckReport> {
        Err(Error::unsupported(
            Format::Vhdx,
            "this build does not check Vhdx images yet",
        ))
    }
}

impl DiskImage for VhdxImage {
    fn virtual_size(&self) -> u64 {
        match self.never {}
    }
    fn logical_sector_size(&self) -> u32 {
        match self.never {}
    }
    fn physical_sector_size(&self) -> u32 {
        match self.never {}
    }
    fn read_only(&self) -> bool {
        match self.never {}
    }
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> Result<()> {
        match self.never {}
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        match self.never {}
    }
    fn flush(&self) -> Result<()> {
        match self.never {}
    }
    fn write_zeroes(&self, _offset: u64, _len: u64) -> Result<()> {
        match self.never {}
    }
    fn discard(&self, _offset: u64, _len: u64) -> Result<()> {
        match self.never {}
    }
    fn block_status(&self, _offset: u64, _len: u64) -> Result<Extent> {
        match self.never {}
    }
    fn info(&self) -> ImageInfo {
        match self.never {}
    }
}
