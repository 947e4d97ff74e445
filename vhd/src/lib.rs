//! Disk images behind one trait.
//!
//! This crate is the ground floor of the workspace: it reads, writes and
//! creates raw, VHD (fixed, dynamic, differencing) and VHDX images, and
//! exposes all of them through [`DiskImage`], the one boundary that the
//! converter, the importer and the virtio-blk device talk to.
//!
//! [`open`] detects the format from the content (never the file name);
//! [`create`] makes a new image of any format.
//!
//! ```no_run
//! use vhd::{DiskImage, OpenOptions};
//! # fn main() -> vhd::Result<()> {
//! let image = vhd::open("disk.vhdx".as_ref(), &OpenOptions::read_only())?;
//! let mut sector = vec![0u8; 512];
//! image.read_at(&mut sector, 0)?;
//! println!("{} bytes, {}", image.virtual_size(), image.info().format);
//! # Ok(()) }
//! ```
//!
//! Parsing is safe Rust and separated from I/O: on-disk structures are
//! decoded from byte slices with checked arithmetic into validated types.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod check;
mod error;
mod file;
pub mod formats;
pub mod guard;
mod image;
mod open;
pub mod ops;

pub use check::{CheckReport, Finding, Severity};
pub use error::{Error, ErrorKind, Result};
pub use file::{ImageFile, IoObserver};
pub use formats::raw::RawImage;
pub use formats::vhd::VhdImage;
pub use formats::vhdx::VhdxImage;
pub use guard::SignatureGuard;
pub use image::{
    Allocation, DiskImage, Extent, Format, ImageInfo, ImageType, check_range, map_range,
};
pub(crate) use open::open_file;
pub use open::{
    ChainContext, CreateOptions, DEFAULT_MAX_CHAIN_DEPTH, Image, OpenOptions, check, create,
    detect, open, open_parent, open_window,
};
