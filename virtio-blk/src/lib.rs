//! The device side of virtio block (virtio 1.2, section 5.2), serving any
//! [`vhd::DiskImage`] (raw, VHD, VHDX) to a guest, independent of the
//! transport.
//!
//! A transport (virtio-pci in the VMM, or a test harness) drives a [`Block`]:
//! it reads [`Block::features`], calls [`Block::negotiate`] when the driver
//! sets FEATURES_OK, forwards configuration space accesses to
//! [`Block::read_config`] / [`Block::write_config`], hands over guest memory
//! and the queues the driver configured with [`Block::activate`], calls
//! [`Block::process_queue`] on each queue notification (one thread per queue
//! if it likes), and [`Block::reset`] when the driver resets the device.
//!
//! ```no_run
//! use std::sync::Arc;
//! use virtio_blk::{Block, BlockOptions, Interrupt};
//! use vm_memory::GuestMemoryMmap;
//!
//! struct Irq;
//! impl Interrupt for Irq {
//!     fn signal_used_queue(&self, _queue: u16) { /* inject the MSI-X vector */ }
//! }
//!
//! # fn queues_from_transport() -> Vec<virtio_queue::Queue> { Vec::new() }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let image = vhd::open("disk.vhdx".as_ref(), &vhd::OpenOptions::default())?;
//! let dev: Block<GuestMemoryMmap> = Block::new(Arc::new(image), &BlockOptions::default())?;
//! # let driver_features = dev.features();
//! dev.negotiate(driver_features)?;
//! # let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[])?);
//! dev.activate(mem, queues_from_transport(), Arc::new(Irq))?;
//! dev.process_queue(0)?; // on every notification of queue 0
//! # Ok(()) }
//! ```
//!
//! Guest requests are untrusted: every descriptor chain is checked against
//! the rules of the specification (see `chain`), every request against the
//! device's limits and capacity, before the image is touched. A malformed
//! request is answered `VIRTIO_BLK_S_IOERR` (or `VIRTIO_BLK_S_UNSUPP`), or,
//! when the chain has no usable status byte, returned with a used length of
//! 0; the queue keeps going. Data moves between guest memory and the image
//! without a bounce buffer.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod chain;
pub mod config;
mod device;
mod error;
mod guest;
mod request;
mod zeroes;

pub use chain::ChainError;
pub use config::{Limits, SECTOR_SIZE};
pub use device::{Block, BlockOptions, DEVICE_TYPE_BLOCK, Interrupt};
pub use error::{Error, Result};
pub use request::RequestError;
