//! A driver-side harness: guest memory with a split virtqueue laid out by
//! virtio-queue's `MockSplitQueue`, helpers that place descriptors, buffers
//! and requests the way a guest driver would (or the way a hostile one
//! would), a spy image that records what reaches the disk, and backends to
//! run the same suite on.
#![allow(dead_code, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use vhd::{CreateOptions, DiskImage, Extent, Format, ImageInfo, ImageType};
use virtio_blk::{Block, BlockOptions, Interrupt};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;

pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;
/// What the harness leaves in a status byte before submitting.
pub const S_UNTOUCHED: u8 = 0xee;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// Guest memory: two adjacent 16 MiB regions (a buffer crossing 16 MiB spans
/// two regions), nothing above 32 MiB.
pub const REGION: u64 = 16 << 20;
pub const MEM_END: u64 = 2 * REGION;
/// Where the harness places buffers: 3 MiB per queue from 1 MiB.
const HEAP_START: u64 = 1 << 20;
const HEAP_SIZE: u64 = 3 << 20;
/// Where the harness places indirect tables: 64 KiB per queue from 14 MiB.
const INDIRECT_START: u64 = 14 << 20;
const INDIRECT_SIZE: u64 = 64 << 10;

pub type Mem = GuestMemoryMmap<()>;

/// Counts interrupts.
#[derive(Debug, Default)]
pub struct Irq {
    pub count: AtomicU32,
}

impl Interrupt for Irq {
    fn signal_used_queue(&self, _queue_index: u16) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// A buffer of a request: guest address, length, device-writable or not.
#[derive(Debug, Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

impl Buf {
    pub fn r(addr: u64, len: u32) -> Buf {
        Buf {
            addr,
            len,
            write: false,
        }
    }
    pub fn w(addr: u64, len: u32) -> Buf {
        Buf {
            addr,
            len,
            write: true,
        }
    }
}

/// One queue seen from the driver.
#[derive(Debug)]
pub struct Driver {
    pub mem: Arc<Mem>,
    pub index: u16,
    pub size: u16,
    pub desc_table: u64,
    pub avail: u64,
    pub used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
    heap: u64,
    heap_end: u64,
    indirect_next: u64,
    indirect_base: u64,
}

/// The 16-byte request header.
pub fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

/// One discard / write-zeroes range.
pub fn range(sector: u64, num_sectors: u32, flags: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[0..8].copy_from_slice(&sector.to_le_bytes());
    r[8..12].copy_from_slice(&num_sectors.to_le_bytes());
    r[12..16].copy_from_slice(&flags.to_le_bytes());
    r
}

impl Driver {
    /// Lays out queue `index` of `size` entries at a fixed place per queue
    /// and returns it with the device-side `Queue`, configured as a
    /// transport would.
    ///
    /// The rings are placed here rather than by `MockSplitQueue::create`,
    /// whose layout puts the used ring inside the available ring (it takes
    /// the available ring's length in entries for its length in bytes).
    pub fn new(mem: Arc<Mem>, index: u16, size: u16) -> (Driver, Queue) {
        let base = u64::from(index) * 0x4_0000;
        let desc_table = base;
        let avail = desc_table + 16 * u64::from(size);
        // flags, idx, ring, used_event.
        let avail_end = avail + 6 + 2 * u64::from(size);
        let used = avail_end.next_multiple_of(4);
        let used_end = used + 6 + 8 * u64::from(size);
        assert!(used_end <= base + 0x4_0000, "queue {index} fits its slot");
        let zeros = vec![0u8; (used_end - base) as usize];
        mem.write_slice(&zeros, GuestAddress(base)).unwrap();
        let mut queue = Queue::new(size).expect("queue size");
        queue.set_size(size);
        queue.set_desc_table_address(Some(desc_table as u32), Some((desc_table >> 32) as u32));
        queue.set_avail_ring_address(Some(avail as u32), Some((avail >> 32) as u32));
        queue.set_used_ring_address(Some(used as u32), Some((used >> 32) as u32));
        queue.set_ready(true);
        // Each queue gets its own slice of the heap so that queues served
        // in parallel never share buffers.
        let heap = HEAP_START + u64::from(index) * HEAP_SIZE;
        let indirect_base = INDIRECT_START + u64::from(index) * INDIRECT_SIZE;
        let d = Driver {
            desc_table,
            avail,
            used,
            mem,
            index,
            size,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
            heap,
            heap_end: heap + HEAP_SIZE,
            indirect_next: indirect_base,
            indirect_base,
        };
        (d, queue)
    }

    /// A queue laid out by `MockSplitQueue` (small queues only: see
    /// [`Driver::new`]), to check that the device accepts what
    /// virtio-queue's own mock driver builds.
    pub fn mock_queue(mem: &Mem, size: u16) -> (MockSplitQueue<'_, Mem>, Queue) {
        let mock = MockSplitQueue::create(mem, GuestAddress(0), size);
        let queue: Queue = mock.create_queue().expect("mock queue");
        (mock, queue)
    }

    /// Allocates `len` bytes of buffer space (a bump allocator that wraps).
    pub fn alloc(&mut self, len: u64) -> u64 {
        let len = len.max(1).next_multiple_of(64);
        if self.heap + len > self.heap_end {
            self.heap = self.heap_end - HEAP_SIZE;
        }
        let a = self.heap;
        self.heap += len;
        a
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    pub fn byte(&self, addr: u64) -> u8 {
        self.mem.read_obj(GuestAddress(addr)).unwrap()
    }

    /// Writes descriptor `index` of the table at `table`.
    pub fn put_desc(&self, table: u64, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = RawDescriptor::from(Descriptor::new(addr, len, flags, next));
        self.mem
            .write_obj(d, GuestAddress(table + 16 * u64::from(index)))
            .unwrap();
    }

    /// Takes `n` consecutive free descriptor indices (wrapping).
    pub fn take_descs(&mut self, n: u16) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let i = self.next_desc;
                self.next_desc = (self.next_desc + 1) % self.size;
                i
            })
            .collect()
    }

    /// Offers the chain at `head` in the available ring.
    pub fn push_avail(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.mem
            .write_obj(head, GuestAddress(self.avail + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Sets the available index directly (a hostile driver).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.mem
            .write_obj(idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Sets `used_event` (EVENT_IDX): the driver wants an interrupt once the
    /// used index passes it.
    pub fn set_used_event(&self, v: u16) {
        let addr = self.avail + 4 + 2 * u64::from(self.size);
        self.mem.write_obj(v, GuestAddress(addr)).unwrap();
    }

    /// The device's `avail_event`.
    pub fn avail_event(&self) -> u16 {
        let addr = self.used + 4 + 8 * u64::from(self.size);
        self.mem.read_obj(GuestAddress(addr)).unwrap()
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// The next used element (id, len) not yet seen.
    pub fn pop_used(&mut self) -> Option<(u32, u32)> {
        if self.used_idx() == self.used_seen {
            return None;
        }
        let slot = u64::from(self.used_seen % self.size);
        let at = GuestAddress(self.used + 4 + 8 * slot);
        let id: u32 = self.mem.read_obj(at).unwrap();
        let len: u32 = self.mem.read_obj(at.unchecked_add(4)).unwrap();
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((id, len))
    }

    /// Submits `bufs` as a direct chain; returns the head.
    pub fn submit(&mut self, bufs: &[Buf]) -> u16 {
        let idx = self.take_descs(bufs.len() as u16);
        for (k, b) in bufs.iter().enumerate() {
            let last = k + 1 == bufs.len();
            let mut flags = if b.write { F_WRITE } else { 0 };
            let next = if last { 0 } else { idx[k + 1] };
            if !last {
                flags |= F_NEXT;
            }
            self.put_desc(self.desc_table, idx[k], b.addr, b.len, flags, next);
        }
        self.push_avail(idx[0]);
        idx[0]
    }

    /// Submits `bufs` through one indirect table; returns the head.
    pub fn submit_indirect(&mut self, bufs: &[Buf]) -> u16 {
        let need = 16 * bufs.len() as u64 + 64;
        if self.indirect_next + need > self.indirect_base + INDIRECT_SIZE {
            self.indirect_next = self.indirect_base;
        }
        let table = self.indirect_next;
        self.indirect_next += need;
        for (k, b) in bufs.iter().enumerate() {
            let last = k + 1 == bufs.len();
            let mut flags = if b.write { F_WRITE } else { 0 };
            if !last {
                flags |= F_NEXT;
            }
            self.put_desc(table, k as u16, b.addr, b.len, flags, (k + 1) as u16);
        }
        let head = self.take_descs(1)[0];
        self.put_desc(
            self.desc_table,
            head,
            table,
            16 * bufs.len() as u32,
            F_INDIRECT,
            0,
        );
        self.push_avail(head);
        head
    }

    /// Places a header, returns its address.
    pub fn place_header(&mut self, kind: u32, sector: u64) -> u64 {
        let a = self.alloc(16);
        self.write(a, &header(kind, sector));
        a
    }

    /// Places a status byte set to [`S_UNTOUCHED`], returns its address.
    pub fn place_status(&mut self) -> u64 {
        let a = self.alloc(1);
        self.write(a, &[S_UNTOUCHED]);
        a
    }
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub status: u8,
    pub used_len: u32,
}

/// A device with one driver per queue over fresh guest memory.
pub struct Rig {
    pub dev: Block<Mem>,
    pub drivers: Vec<Driver>,
    pub irq: Arc<Irq>,
    pub mem: Arc<Mem>,
}

pub fn guest_memory() -> Arc<Mem> {
    Arc::new(
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), REGION as usize),
            (GuestAddress(REGION), REGION as usize),
        ])
        .unwrap(),
    )
}

impl Rig {
    /// Builds, negotiates (`features`, or everything offered) and activates.
    pub fn new(image: Arc<dyn DiskImage>, options: &BlockOptions, features: Option<u64>) -> Rig {
        let dev = Block::new(image, options).expect("device");
        let feats = features.unwrap_or_else(|| dev.features());
        dev.negotiate(feats).expect("negotiation");
        let mem = guest_memory();
        let mut drivers = Vec::new();
        let mut queues = Vec::new();
        for i in 0..options.num_queues {
            let (d, q) = Driver::new(Arc::clone(&mem), i, options.queue_size);
            drivers.push(d);
            queues.push(q);
        }
        let irq = Arc::new(Irq::default());
        dev.activate(Arc::clone(&mem), queues, irq.clone() as Arc<dyn Interrupt>)
            .expect("activation");
        Rig {
            dev,
            drivers,
            irq,
            mem,
        }
    }

    pub fn with_image(image: Arc<dyn DiskImage>) -> Rig {
        Rig::new(image, &BlockOptions::default(), None)
    }

    pub fn d(&mut self) -> &mut Driver {
        &mut self.drivers[0]
    }

    /// Processes queue 0 and returns the one completion expected, reading
    /// the status byte at `status`.
    pub fn complete(&mut self, head: u16, status: u64) -> Done {
        self.dev.process_queue(0).expect("queue processing");
        let (id, len) = self.d().pop_used().expect("a used element");
        assert_eq!(id, u32::from(head), "used element for the submitted chain");
        assert!(self.d().pop_used().is_none(), "exactly one used element");
        Done {
            status: self.d().byte(status),
            used_len: len,
        }
    }

    /// A read of `len` bytes at `sector` in a single data buffer.
    pub fn read(&mut self, sector: u64, len: u32) -> (Done, Vec<u8>) {
        let d = self.d();
        let h = d.place_header(T_IN, sector);
        let data = d.alloc(u64::from(len));
        d.write(data, &vec![0xa5; len as usize]);
        let s = d.place_status();
        let head = d.submit(&[Buf::r(h, 16), Buf::w(data, len), Buf::w(s, 1)]);
        let done = self.complete(head, s);
        let bytes = self.d().read(data, len as usize);
        (done, bytes)
    }

    /// A write of `bytes` at `sector` in a single data buffer.
    pub fn write(&mut self, sector: u64, bytes: &[u8]) -> Done {
        let d = self.d();
        let h = d.place_header(T_OUT, sector);
        let data = d.alloc(bytes.len() as u64);
        d.write(data, bytes);
        let s = d.place_status();
        let head = d.submit(&[
            Buf::r(h, 16),
            Buf::r(data, bytes.len() as u32),
            Buf::w(s, 1),
        ]);
        self.complete(head, s)
    }

    /// A request with no data (flush, or any type with no payload).
    pub fn bare(&mut self, kind: u32, sector: u64) -> Done {
        let d = self.d();
        let h = d.place_header(kind, sector);
        let s = d.place_status();
        let head = d.submit(&[Buf::r(h, 16), Buf::w(s, 1)]);
        self.complete(head, s)
    }

    /// A discard or write-zeroes request with `ranges`.
    pub fn ranges(&mut self, kind: u32, ranges: &[[u8; 16]]) -> Done {
        let d = self.d();
        let h = d.place_header(kind, 0);
        let data = d.alloc(16 * ranges.len() as u64);
        let flat: Vec<u8> = ranges.iter().flatten().copied().collect();
        d.write(data, &flat);
        let s = d.place_status();
        let head = d.submit(&[Buf::r(h, 16), Buf::r(data, flat.len() as u32), Buf::w(s, 1)]);
        self.complete(head, s)
    }

    /// Checks that the device still serves a well-formed write and read.
    pub fn assert_healthy(&mut self) {
        let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
        let w = self.write(2, &pattern);
        assert_eq!(w.status, S_OK, "a well-formed write after hostile input");
        let (r, bytes) = self.read(2, 1024);
        assert_eq!(r.status, S_OK, "a well-formed read after hostile input");
        assert_eq!(bytes, pattern);
    }
}

/// Seeded pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::SmallRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// What reached the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Read(u64, u64),
    Write(u64, u64),
    Flush,
    WriteZeroes(u64, u64),
    Discard(u64, u64),
}

/// An image that records every operation before passing it on.
#[derive(Debug)]
pub struct Spy {
    pub inner: Arc<dyn DiskImage>,
    pub ops: Mutex<Vec<Op>>,
}

impl Spy {
    pub fn new(inner: Arc<dyn DiskImage>) -> Arc<Spy> {
        Arc::new(Spy {
            inner,
            ops: Mutex::new(Vec::new()),
        })
    }
    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }
    fn log(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }
}

impl DiskImage for Spy {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
    fn physical_sector_size(&self) -> u32 {
        self.inner.physical_sector_size()
    }
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> vhd::Result<()> {
        self.log(Op::Read(offset, buf.len() as u64));
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> vhd::Result<()> {
        self.log(Op::Write(offset, buf.len() as u64));
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> vhd::Result<()> {
        self.log(Op::Flush);
        self.inner.flush()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.log(Op::WriteZeroes(offset, len));
        self.inner.write_zeroes(offset, len)
    }
    fn discard(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.log(Op::Discard(offset, len));
        self.inner.discard(offset, len)
    }
    fn block_status(&self, offset: u64, len: u64) -> vhd::Result<Extent> {
        self.inner.block_status(offset, len)
    }
    fn info(&self) -> ImageInfo {
        self.inner.info()
    }
}

/// A backend the suites run on.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub name: &'static str,
    pub format: Format,
    pub image_type: ImageType,
    pub logical_sector_size: u32,
}

/// Every backend available.
pub const BACKENDS: &[Backend] = &[
    Backend {
        name: "raw",
        format: Format::Raw,
        image_type: ImageType::Dynamic,
        logical_sector_size: 512,
    },
    Backend {
        name: "raw-fixed",
        format: Format::Raw,
        image_type: ImageType::Fixed,
        logical_sector_size: 512,
    },
    Backend {
        name: "vhd-fixed",
        format: Format::Vhd,
        image_type: ImageType::Fixed,
        logical_sector_size: 512,
    },
    Backend {
        name: "vhd-dynamic",
        format: Format::Vhd,
        image_type: ImageType::Dynamic,
        logical_sector_size: 512,
    },
    Backend {
        name: "vhdx-dynamic",
        format: Format::Vhdx,
        image_type: ImageType::Dynamic,
        logical_sector_size: 512,
    },
    Backend {
        name: "vhdx-fixed",
        format: Format::Vhdx,
        image_type: ImageType::Fixed,
        logical_sector_size: 512,
    },
    Backend {
        name: "vhdx-4k",
        format: Format::Vhdx,
        image_type: ImageType::Dynamic,
        logical_sector_size: 4096,
    },
    Backend {
        name: "vhd-differencing",
        format: Format::Vhd,
        image_type: ImageType::Differencing,
        logical_sector_size: 512,
    },
    Backend {
        name: "vhdx-differencing",
        format: Format::Vhdx,
        image_type: ImageType::Differencing,
        logical_sector_size: 512,
    },
];

/// Creates a fresh image of `size` bytes for `backend` in `dir` (a
/// differencing image over a new, empty dynamic parent).
pub fn make_image(dir: &Path, backend: &Backend, size: u64) -> Arc<dyn DiskImage> {
    let path = dir.join(format!("disk-{}", backend.name));
    let mut opts = CreateOptions::new(backend.format, backend.image_type, size);
    if backend.image_type == ImageType::Differencing {
        let parent = dir.join(format!("parent-{}", backend.name));
        let popts = CreateOptions::new(backend.format, ImageType::Dynamic, size);
        drop(vhd::create(&parent, &popts).expect("creating the parent"));
        opts = CreateOptions::differencing(backend.format, &parent);
    }
    opts.logical_sector_size = backend.logical_sector_size;
    let image = vhd::create(&path, &opts)
        .unwrap_or_else(|e| panic!("creating a {} image: {e}", backend.name));
    Arc::new(image)
}

/// A fresh raw image of `size` bytes.
pub fn raw_image(dir: &Path, size: u64) -> Arc<dyn DiskImage> {
    make_image(dir, &BACKENDS[0], size)
}

/// Puts `q` in the state a transport leaves it in (test helper for queues
/// built by hand).
pub fn ready(q: &mut Queue) {
    q.set_ready(true);
}

/// An image that reports other sector sizes than the one it wraps (a
/// stand-in for a 4 KiB-sector disk where no format offers one).
#[derive(Debug)]
pub struct Sectors {
    pub inner: Arc<dyn DiskImage>,
    pub logical: u32,
    pub physical: u32,
}

impl DiskImage for Sectors {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.logical
    }
    fn physical_sector_size(&self) -> u32 {
        self.physical
    }
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> vhd::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> vhd::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> vhd::Result<()> {
        self.inner.flush()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.inner.write_zeroes(offset, len)
    }
    fn discard(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.inner.discard(offset, len)
    }
    fn block_status(&self, offset: u64, len: u64) -> vhd::Result<Extent> {
        self.inner.block_status(offset, len)
    }
    fn info(&self) -> ImageInfo {
        self.inner.info()
    }
}
