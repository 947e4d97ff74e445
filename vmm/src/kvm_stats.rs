//! KVM's binary statistics of a vCPU (`KVM_GET_STATS_FD`, Linux 5.14+):
//! how many times the vCPU left the guest, and why.
//!
//! The stats file holds a header, an id string, one descriptor per
//! statistic (flags, item count, offset into the data block, then a
//! NUL-terminated name in a slot of the header's `name_size` bytes) and the
//! data block of `u64` items. The layout is read once and checked (sizes
//! bounded, offsets computed with checked arithmetic, names UTF-8 and
//! terminated); values are then read with `pread` as often as wanted.
//!
//! ```no_run
//! # fn f(vcpu: &kvm_ioctls::VcpuFd) -> Result<(), vmm::kvm_stats::StatsError> {
//! let stats = vmm::kvm_stats::KvmStats::open(vcpu)?;
//! let now = stats.snapshot()?;
//! println!("exits: {:?}", now.get("exits"));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use kvm_bindings::{
    KVM_STATS_TYPE_CUMULATIVE, KVM_STATS_TYPE_INSTANT, KVM_STATS_TYPE_MASK, KVM_STATS_TYPE_PEAK,
};
use kvm_ioctls::VcpuFd;

/// Size of the stats header.
const HEADER_LEN: usize = 24;
/// Size of a descriptor before its name.
const DESC_FIXED_LEN: u64 = 16;
/// Longest name slot accepted (the kernel uses 48 bytes).
const MAX_NAME_SIZE: u32 = 256;
/// Most descriptors accepted (a vCPU has about 50).
const MAX_DESCRIPTORS: u32 = 4096;
/// Largest descriptor or data block read (a vCPU's are a few KiB).
const MAX_BLOCK: u64 = 1 << 20;

mod ioctl {
    vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);
}

/// Why the statistics cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// `KVM_GET_STATS_FD` failed (kernels before 5.14 do not have it).
    #[error("kvm cannot open the binary stats of the vcpu (KVM_GET_STATS_FD)")]
    Open(#[source] std::io::Error),
    /// Reading the stats file failed or ended early.
    #[error("cannot read {len} bytes of the kvm stats {what} at offset {offset}")]
    Read {
        /// Which part.
        what: &'static str,
        /// Where.
        offset: u64,
        /// How much.
        len: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The header's name size is outside 1..=256 bytes.
    #[error("kvm stats header gives a name size of {0} bytes (accepted: 1 to 256)")]
    NameSize(u32),
    /// The header declares more descriptors than accepted.
    #[error("kvm stats header declares {0} descriptors (at most 4096 accepted)")]
    TooManyDescriptors(u32),
    /// A block's size or end does not fit, or exceeds the accepted size.
    #[error("kvm stats {what} at offset {offset} is {len} bytes long (at most 1 MiB accepted)")]
    BlockSize {
        /// Which block.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// Its size.
        len: u64,
    },
    /// A descriptor's name is not NUL-terminated inside its slot.
    #[error("kvm stats descriptor {index} has a name that is not terminated within its slot")]
    UnterminatedName {
        /// The descriptor.
        index: u32,
    },
    /// A descriptor's name is not UTF-8.
    #[error("kvm stats descriptor {index} has a name that is not utf-8")]
    NameNotUtf8 {
        /// The descriptor.
        index: u32,
    },
    /// A descriptor's data lies outside what offsets can address.
    #[error("kvm stats descriptor {index} ({name}) has data at offset {offset} that overflows")]
    DataOffset {
        /// The descriptor.
        index: u32,
        /// Its name.
        name: String,
        /// Its offset in the data block.
        offset: u32,
    },
}

/// How a statistic's value behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    /// Only grows (event counts such as `exits`).
    Cumulative,
    /// A current value.
    Instant,
    /// The highest value seen.
    Peak,
    /// A histogram (several items); not read by [`Snapshot`].
    Histogram,
}

/// One statistic of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatDescriptor {
    /// Name, e.g. `exits`.
    pub name: String,
    /// How the value behaves.
    pub kind: StatKind,
    /// Number of `u64` items.
    pub items: u16,
    /// Byte offset of the first item in the data block.
    pub offset: u32,
}

/// Something stats can be read from at an offset: the stats file, or a
/// byte buffer in tests.
pub trait ReadAt {
    /// Fills `buf` from `offset`; fails when the source ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let eof = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(eof)?);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

/// A vCPU's statistics: the checked layout and the file to read values
/// from.
#[derive(Debug)]
pub struct KvmStats<R = File> {
    source: R,
    data_offset: u64,
    data_len: usize,
    descriptors: Vec<StatDescriptor>,
}

impl KvmStats<File> {
    /// Opens the binary stats of `vcpu` and reads their layout.
    pub fn open(vcpu: &VcpuFd) -> Result<Self, StatsError> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and only returns a new
        // file descriptor (or -1); `vcpu` is a live vCPU file descriptor.
        let fd = unsafe { libc::ioctl(vcpu.as_raw_fd(), ioctl::KVM_GET_STATS_FD(), 0) };
        if fd < 0 {
            return Err(StatsError::Open(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by the kernel and nothing else owns
        // it; the File closes it once.
        let file = unsafe { File::from_raw_fd(fd) };
        Self::parse(file)
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut v = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        v.copy_from_slice(s);
    }
    u16::from_le_bytes(v)
}

fn read_block<R: ReadAt + ?Sized>(
    source: &R,
    what: &'static str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StatsError> {
    let too_big = || StatsError::BlockSize { what, offset, len };
    if len > MAX_BLOCK || offset.checked_add(len).is_none() {
        return Err(too_big());
    }
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| too_big())?];
    source
        .read_exact_at(&mut buf, offset)
        .map_err(|source| StatsError::Read {
            what,
            offset,
            len,
            source,
        })?;
    Ok(buf)
}

fn kind(flags: u32) -> StatKind {
    match flags & KVM_STATS_TYPE_MASK {
        KVM_STATS_TYPE_CUMULATIVE => StatKind::Cumulative,
        KVM_STATS_TYPE_INSTANT => StatKind::Instant,
        KVM_STATS_TYPE_PEAK => StatKind::Peak,
        _ => StatKind::Histogram,
    }
}

impl<R: ReadAt> KvmStats<R> {
    /// Reads and checks the header and the descriptors of `source`.
    pub fn parse(source: R) -> Result<Self, StatsError> {
        let header = read_block(&source, "header", 0, HEADER_LEN as u64)?;
        let name_size = le_u32(&header, 4);
        let count = le_u32(&header, 8);
        let desc_offset = u64::from(le_u32(&header, 16));
        let data_offset = u64::from(le_u32(&header, 20));
        if name_size == 0 || name_size > MAX_NAME_SIZE {
            return Err(StatsError::NameSize(name_size));
        }
        if count > MAX_DESCRIPTORS {
            return Err(StatsError::TooManyDescriptors(count));
        }
        let stride = DESC_FIXED_LEN + u64::from(name_size);
        // Both factors are bounded above, so the product cannot overflow.
        let block = read_block(
            &source,
            "descriptors",
            desc_offset,
            stride * u64::from(count),
        )?;
        let stride = usize::try_from(stride).unwrap_or(usize::MAX);
        let mut descriptors = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut data_end = 0u64;
        for (index, raw) in (0u32..).zip(block.chunks_exact(stride)) {
            let (fixed, name) = raw.split_at(16);
            let name = name
                .iter()
                .position(|&b| b == 0)
                .and_then(|end| name.get(..end))
                .ok_or(StatsError::UnterminatedName { index })?;
            let name = std::str::from_utf8(name)
                .map_err(|_| StatsError::NameNotUtf8 { index })?
                .to_string();
            let flags = le_u32(fixed, 0);
            let items = le_u16(fixed, 6);
            let offset = le_u32(fixed, 8);
            let end = u64::from(items)
                .checked_mul(8)
                .and_then(|n| n.checked_add(u64::from(offset)))
                .filter(|end| data_offset.checked_add(*end).is_some())
                .ok_or_else(|| StatsError::DataOffset {
                    index,
                    name: name.clone(),
                    offset,
                })?;
            data_end = data_end.max(end);
            descriptors.push(StatDescriptor {
                name,
                kind: kind(flags),
                items,
                offset,
            });
        }
        if data_end > MAX_BLOCK {
            return Err(StatsError::BlockSize {
                what: "data",
                offset: data_offset,
                len: data_end,
            });
        }
        Ok(KvmStats {
            source,
            data_offset,
            // Bounded by MAX_BLOCK just above.
            data_len: usize::try_from(data_end).unwrap_or(0),
            descriptors,
        })
    }

    /// The statistics the kernel offers.
    pub fn descriptors(&self) -> &[StatDescriptor] {
        &self.descriptors
    }

    /// Reads the current value of every single-valued statistic (one
    /// `pread` of the data block).
    pub fn snapshot(&self) -> Result<Snapshot, StatsError> {
        let data = read_block(&self.source, "data", self.data_offset, self.data_len as u64)?;
        let mut values = BTreeMap::new();
        for d in &self.descriptors {
            if d.kind == StatKind::Histogram || d.items == 0 {
                continue;
            }
            // Offsets were checked against the data length in `parse`.
            let at = usize::try_from(d.offset).unwrap_or(usize::MAX);
            let item = at
                .checked_add(8)
                .and_then(|end| data.get(at..end))
                .and_then(|s| <[u8; 8]>::try_from(s).ok());
            if let Some(bytes) = item {
                values.insert(d.name.clone(), (d.kind, u64::from_le_bytes(bytes)));
            }
        }
        Ok(Snapshot { values })
    }
}

/// The values of a vCPU's single-valued statistics at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    values: BTreeMap<String, (StatKind, u64)>,
}

impl Snapshot {
    /// The value of the statistic `name`, if the kernel has it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).map(|(_, v)| *v)
    }

    /// The cumulative counters (event counts), by name.
    pub fn cumulative(&self) -> impl Iterator<Item = (&str, u64)> {
        self.values
            .iter()
            .filter(|(_, (k, _))| *k == StatKind::Cumulative)
            .map(|(n, (_, v))| (n.as_str(), *v))
    }
}

#[cfg(test)]
#[path = "kvm_stats_tests.rs"]
mod tests;
