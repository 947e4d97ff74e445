//! streamOptimized VMDK: the disk format OVA packages carry.
//!
//! [`StreamReader`] reads one in a single forward pass from any `Read`
//! (inside a tar, after gzip) and hands out grains with their disk offset;
//! [`copy_vmdk_stream_to`] writes them into any [`vhd::DiskImage`],
//! skipping holes, or leaving them to a differencing target's parent when
//! the stream is a delta disk. [`StreamWriter`] and [`write_vmdk_stream_from`] produce
//! streams that qemu-img and VMware tools read.
//!
//! Layout (little-endian): a 512-byte header (`KDMV`, version, flags,
//! capacity, grain size, descriptor, grain directory offset, overhead,
//! compression), the embedded descriptor, then grain markers
//! `{lba: u64, size: u32, zlib data}` padded to sectors, metadata markers
//! `{sectors: u64, 0: u32, type: u32}` for grain tables, the grain
//! directory, the footer (a header copy holding the real directory offset)
//! and the end of the stream.

mod copy;
mod describe;
mod error;
mod header;
mod reader;
mod writer;
mod zeroed;

pub use copy::{
    CopyOptions, CopyStats, compare_vmdk_file, convert_vmdk_file, copy_vmdk_delta_to,
    copy_vmdk_stream_covering, copy_vmdk_stream_to, write_vmdk_stream_from,
};
pub use describe::{VmdkCheck, VmdkInfo, check_vmdk_file, describe_vmdk_file, is_sparse_extent};
pub use error::{Result, VmdkError};
pub use header::{
    FLAG_ZEROED_GTE, GD_AT_END, GTE_ZEROED, MAGIC, MAX_CAPACITY_SECTORS, MAX_DESCRIPTOR_SECTORS,
    MAX_GRAIN_SECTORS, RawHeader, SECTOR, StreamHeader,
};
pub use reader::{Grain, MARKER_EOS, MARKER_FOOTER, MARKER_GD, MARKER_GT, StreamReader};
pub use writer::{StreamWriter, WriterOptions};
