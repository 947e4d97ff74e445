//! Walking a split-virtqueue descriptor chain into readable and writable
//! buffers, checking every structural rule of virtio 1.2 section 2.7.5:
//! indices inside the table, no loops (the chain is bounded by the queue
//! size), indirect tables well formed and not nested, device-writable
//! buffers after device-readable ones, total length under 2^32 bytes, and
//! each buffer inside one region of guest memory.

use thiserror::Error;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use vm_memory::bitmap::MS;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestUsize, VolatileSlice,
};

/// Size of one descriptor in a table.
const DESC_SIZE: u64 = 16;

/// One guest buffer: a guest-physical range that lies inside one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// Why a descriptor chain was refused. The device cannot trust any part of
/// such a chain, so it writes no status and returns the chain with a used
/// length of 0.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChainError {
    /// The head index is not inside the descriptor table.
    #[error("chain head {head} is outside a queue of {size} entries")]
    HeadOutOfRange {
        /// The head index.
        head: u16,
        /// The queue size.
        size: u16,
    },
    /// A descriptor could not be read from guest memory.
    #[error("descriptor {index} of the table at {table:#x} is outside guest memory")]
    TableUnreadable {
        /// Guest address of the table.
        table: u64,
        /// Index in the table.
        index: u16,
    },
    /// A `next` field points outside the table.
    #[error("descriptor next index {next} is outside a table of {size} entries")]
    NextOutOfRange {
        /// The index.
        next: u16,
        /// The table size.
        size: u16,
    },
    /// More descriptors than the queue holds: a loop, or an oversized chain.
    #[error("chain longer than {limit} descriptors (a loop?)")]
    TooLong {
        /// The limit (the queue size).
        limit: u16,
    },
    /// An indirect descriptor inside an indirect table.
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    /// An indirect descriptor that also has the NEXT flag.
    #[error("indirect descriptor with the next flag set")]
    IndirectWithNext,
    /// An indirect table whose length is 0 or not a multiple of 16 bytes.
    #[error("indirect table length {len} is not a positive multiple of 16")]
    IndirectBadLength {
        /// Its length in bytes.
        len: u32,
    },
    /// An indirect table with more entries than the chain may have.
    #[error("indirect table of {entries} entries exceeds the limit of {limit}")]
    IndirectTooLarge {
        /// Entries in the table.
        entries: u64,
        /// The limit.
        limit: u16,
    },
    /// An indirect descriptor when the driver did not negotiate indirect
    /// descriptors.
    #[error("indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC")]
    IndirectNotNegotiated,
    /// A device-readable buffer after a device-writable one.
    #[error("device-readable buffer after a device-writable one")]
    ReadableAfterWritable,
    /// A buffer is not inside guest memory, or spans two regions.
    #[error("buffer of {len} bytes at {addr:#x} is not inside one region of guest memory")]
    BadBuffer {
        /// Guest address.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// The buffers add up to 2^32 bytes or more.
    #[error("chain buffers add up to more than 2^32 - 1 bytes")]
    TooManyBytes,
}

/// The buffers of one chain, reused from request to request so that the
/// device does not allocate per request.
#[derive(Debug, Default)]
pub(crate) struct ChainBuffers {
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
}

impl ChainBuffers {
    fn clear(&mut self) {
        self.readable.clear();
        self.writable.clear();
    }
}

/// The table being walked.
#[derive(Debug, Clone, Copy)]
struct Table {
    addr: GuestAddress,
    size: u16,
    indirect: bool,
}

/// Reads descriptors of one table: through a slice of the whole table when
/// it lies in one region (one lookup per table instead of one per
/// descriptor), else one guest memory access per descriptor.
struct TableReader<'a, M: GuestMemoryBackend> {
    mem: &'a M,
    table: Table,
    slice: Option<VolatileSlice<'a, MS<'a, M>>>,
}

impl<'a, M: GuestMemoryBackend> TableReader<'a, M> {
    fn new(mem: &'a M, table: Table) -> Self {
        let slice = mem
            .get_slice(
                table.addr,
                usize::from(table.size) * size_of::<RawDescriptor>(),
            )
            .ok();
        TableReader { mem, table, slice }
    }

    fn read(&self, index: u16) -> Result<Descriptor, ChainError> {
        let unreadable = || ChainError::TableUnreadable {
            table: self.table.addr.raw_value(),
            index,
        };
        let offset = u64::from(index) * DESC_SIZE;
        let raw: RawDescriptor = match &self.slice {
            Some(slice) => slice
                .read_obj(usize::try_from(offset).map_err(|_| unreadable())?)
                .map_err(|_| unreadable())?,
            None => {
                let addr = self.table.addr.checked_add(offset).ok_or_else(unreadable)?;
                self.mem.read_obj(addr).map_err(|_| unreadable())?
            }
        };
        Ok(Descriptor::from(raw))
    }
}

/// Walks the chain starting at `head` of the table at `desc_table` with
/// `queue_size` entries into `out`. At most `queue_size` buffers are
/// accepted in total, whether direct or in an indirect table.
pub(crate) fn walk<M: GuestMemoryBackend>(
    mem: &M,
    desc_table: GuestAddress,
    queue_size: u16,
    head: u16,
    indirect_allowed: bool,
    out: &mut ChainBuffers,
) -> Result<(), ChainError> {
    out.clear();
    if head >= queue_size {
        return Err(ChainError::HeadOutOfRange {
            head,
            size: queue_size,
        });
    }
    let limit = queue_size;
    let mut table = Table {
        addr: desc_table,
        size: queue_size,
        indirect: false,
    };
    let mut reader = TableReader::new(mem, table);
    let mut index = head;
    // Buffer descriptors read so far: bounds the walk whatever the guest
    // wrote (at most one descriptor names an indirect table, since nesting
    // is refused).
    let mut count: u32 = 0;
    let mut total: u32 = 0;
    loop {
        let desc = reader.read(index)?;
        let flags = u32::from(desc.flags());
        if flags & VRING_DESC_F_INDIRECT != 0 {
            if !indirect_allowed {
                return Err(ChainError::IndirectNotNegotiated);
            }
            if table.indirect {
                return Err(ChainError::NestedIndirect);
            }
            if flags & VRING_DESC_F_NEXT != 0 {
                return Err(ChainError::IndirectWithNext);
            }
            let len = desc.len();
            if len == 0 || !u64::from(len).is_multiple_of(DESC_SIZE) {
                return Err(ChainError::IndirectBadLength { len });
            }
            let entries = u64::from(len) / DESC_SIZE;
            // The descriptors before the indirect one count against the
            // same limit as the table's entries.
            let room = u32::from(limit).saturating_sub(count);
            let size = match u16::try_from(entries) {
                Ok(n) if u32::from(n) <= room => n,
                _ => return Err(ChainError::IndirectTooLarge { entries, limit }),
            };
            table = Table {
                addr: desc.addr(),
                size,
                indirect: true,
            };
            reader = TableReader::new(mem, table);
            index = 0;
            continue;
        }
        count += 1;
        if count > u32::from(limit) {
            return Err(ChainError::TooLong { limit });
        }
        let len = desc.len();
        if len > 0 {
            check_buffer(mem, desc.addr(), len)?;
            total = total.checked_add(len).ok_or(ChainError::TooManyBytes)?;
            let seg = Segment {
                addr: desc.addr(),
                len,
            };
            if flags & VRING_DESC_F_WRITE != 0 {
                out.writable.push(seg);
            } else {
                if !out.writable.is_empty() {
                    return Err(ChainError::ReadableAfterWritable);
                }
                out.readable.push(seg);
            }
        } else if flags & VRING_DESC_F_WRITE == 0 && !out.writable.is_empty() {
            return Err(ChainError::ReadableAfterWritable);
        }
        if flags & VRING_DESC_F_NEXT == 0 {
            return Ok(());
        }
        let next = desc.next();
        if next >= table.size {
            return Err(ChainError::NextOutOfRange {
                next,
                size: table.size,
            });
        }
        index = next;
    }
}

/// Checks that `[addr, addr + len)` lies inside one region of `mem`.
pub(crate) fn check_buffer<M: GuestMemoryBackend>(
    mem: &M,
    addr: GuestAddress,
    len: u32,
) -> Result<(), ChainError> {
    let bad = ChainError::BadBuffer {
        addr: addr.raw_value(),
        len,
    };
    let Some(region) = mem.find_region(addr) else {
        return Err(bad);
    };
    let offset = addr.raw_value() - region.start_addr().raw_value();
    match offset.checked_add(GuestUsize::from(len)) {
        Some(end) if end <= region.len() => Ok(()),
        _ => Err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    const TABLE: u64 = 0x1000;
    const BUF: u64 = 0x10_0000;

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
    }

    fn put(
        mem: &GuestMemoryMmap<()>,
        table: u64,
        i: u16,
        addr: u64,
        len: u32,
        flags: u32,
        next: u16,
    ) {
        let d = RawDescriptor::from(Descriptor::new(
            addr,
            len,
            u16::try_from(flags).unwrap(),
            next,
        ));
        mem.write_obj(d, GuestAddress(table + 16 * u64::from(i)))
            .unwrap();
    }

    /// A direct chain of `n` readable descriptors 0 -> 1 -> ... -> n-1.
    fn direct(mem: &GuestMemoryMmap<()>, n: u16) {
        for i in 0..n {
            let flags = if i + 1 < n { VRING_DESC_F_NEXT } else { 0 };
            put(mem, TABLE, i, BUF, 16, flags, i + 1);
        }
    }

    fn run(mem: &GuestMemoryMmap<()>, size: u16) -> Result<ChainBuffers, ChainError> {
        let mut out = ChainBuffers::default();
        walk(mem, GuestAddress(TABLE), size, 0, true, &mut out).map(|()| out)
    }

    #[test]
    fn chain_of_exactly_the_queue_size_is_accepted() {
        let m = mem();
        direct(&m, 8);
        assert_eq!(run(&m, 8).unwrap().readable.len(), 8);
        // The last descriptor chaining on (to index 0) makes 9.
        put(&m, TABLE, 7, BUF, 16, VRING_DESC_F_NEXT, 0);
        assert_eq!(run(&m, 8).unwrap_err(), ChainError::TooLong { limit: 8 });
    }

    #[test]
    fn indirect_room_counts_the_direct_prefix() {
        let m = mem();
        let ind = 0x8000;
        // Two direct descriptors, then a table of 6 entries: 8 in a queue of 8.
        put(&m, TABLE, 0, BUF, 16, VRING_DESC_F_NEXT, 1);
        put(&m, TABLE, 1, BUF, 16, VRING_DESC_F_NEXT, 2);
        put(&m, TABLE, 2, ind, 6 * 16, VRING_DESC_F_INDIRECT, 0);
        for i in 0..6u16 {
            let flags = if i < 5 { VRING_DESC_F_NEXT } else { 0 };
            put(&m, ind, i, BUF, 32, flags | VRING_DESC_F_WRITE, i + 1);
        }
        let out = run(&m, 8).unwrap();
        assert_eq!((out.readable.len(), out.writable.len()), (2, 6));
        // Seven entries no longer fit.
        put(&m, TABLE, 2, ind, 7 * 16, VRING_DESC_F_INDIRECT, 0);
        assert_eq!(
            run(&m, 8).unwrap_err(),
            ChainError::IndirectTooLarge {
                entries: 7,
                limit: 8
            }
        );
    }

    #[test]
    fn zero_length_buffers_count_but_are_not_kept() {
        let m = mem();
        put(&m, TABLE, 0, BUF, 0, VRING_DESC_F_NEXT, 1);
        put(&m, TABLE, 1, BUF, 16, VRING_DESC_F_NEXT, 2);
        put(
            &m,
            TABLE,
            2,
            BUF,
            0,
            VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
            3,
        );
        put(&m, TABLE, 3, BUF, 1, VRING_DESC_F_WRITE, 0);
        let out = run(&m, 4).unwrap();
        assert_eq!(
            out.readable,
            vec![Segment {
                addr: GuestAddress(BUF),
                len: 16
            }]
        );
        assert_eq!(
            out.writable,
            vec![Segment {
                addr: GuestAddress(BUF),
                len: 1
            }]
        );
        assert_eq!(
            run(&m, 3).unwrap_err(),
            ChainError::NextOutOfRange { next: 3, size: 3 }
        );
    }

    #[test]
    fn readable_after_writable_even_when_empty() {
        let m = mem();
        put(
            &m,
            TABLE,
            0,
            BUF,
            1,
            VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
            1,
        );
        put(&m, TABLE, 1, BUF, 0, 0, 0);
        assert_eq!(run(&m, 2).unwrap_err(), ChainError::ReadableAfterWritable);
    }

    #[test]
    fn buffers_must_stay_inside_a_region() {
        let m = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 1 << 20),
            (GuestAddress(1 << 20), 1 << 20),
        ])
        .unwrap();
        assert!(check_buffer(&m, GuestAddress((1 << 20) - 16), 16).is_ok());
        assert!(check_buffer(&m, GuestAddress((1 << 20) - 16), 17).is_err());
        assert!(check_buffer(&m, GuestAddress(2 << 20), 1).is_err());
        assert!(check_buffer(&m, GuestAddress(u64::MAX), u32::MAX).is_err());
    }

    #[test]
    fn head_outside_the_table() {
        let m = mem();
        let mut out = ChainBuffers::default();
        assert_eq!(
            walk(&m, GuestAddress(TABLE), 8, 8, true, &mut out).unwrap_err(),
            ChainError::HeadOutOfRange { head: 8, size: 8 }
        );
        // A table that is not in guest memory.
        assert!(matches!(
            walk(&m, GuestAddress(64 << 20), 8, 0, true, &mut out).unwrap_err(),
            ChainError::TableUnreadable { index: 0, .. }
        ));
    }
}
