//! The device: features, configuration space, activation, queue processing
//! and reset, as a transport (virtio-pci or virtio-mmio) drives them.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};

use vhd::{DiskImage, Format, ImageType};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::chain::{ChainBuffers, walk};
use crate::config::{
    CONFIG_SPACE_SIZE, ConfigSource, F_BLK_SIZE, F_CONFIG_WCE, F_DISCARD, F_EVENT_IDX, F_FLUSH,
    F_INDIRECT_DESC, F_MQ, F_RO, F_SEG_MAX, F_SIZE_MAX, F_TOPOLOGY, F_VERSION_1, F_WRITE_ZEROES,
    ID_BYTES, Limits, SECTOR_SIZE, WRITEBACK_OFFSET, read_bytes,
};
use crate::request::{Completion, Context, handle};
use crate::{Error, Result};

/// virtio device ID of a block device.
pub const DEVICE_TYPE_BLOCK: u32 = 2;

/// `VRING_AVAIL_F_NO_INTERRUPT`.
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Largest queue size the split ring allows.
const MAX_QUEUE_SIZE: u16 = 32768;

/// How the transport tells the guest that a queue has used buffers (an
/// MSI-X vector through an irqfd, or an INTx line).
pub trait Interrupt: Send + Sync {
    /// Signals that queue `queue_index` has new used buffers.
    fn signal_used_queue(&self, queue_index: u16);
}

/// How to build a [`Block`] device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOptions {
    /// Request queues the device offers (more than 1 offers
    /// `VIRTIO_BLK_F_MQ`).
    pub num_queues: u16,
    /// Largest queue size the driver may configure (a power of two).
    pub queue_size: u16,
    /// Device ID returned by `VIRTIO_BLK_T_GET_ID`: at most 20 ASCII bytes.
    pub serial: String,
    /// Expose the disk read-only even if the image is writable.
    pub read_only: bool,
}

impl Default for BlockOptions {
    fn default() -> Self {
        BlockOptions {
            num_queues: 1,
            queue_size: 256,
            serial: String::new(),
            read_only: false,
        }
    }
}

/// State shared by the device and its queue workers.
struct Shared {
    image: Arc<dyn DiskImage>,
    read_only: bool,
    limits: Limits,
    id: [u8; ID_BYTES],
    num_queues: u16,
    queue_size: u16,
    offered: u64,
    write_zeroes_may_unmap: bool,
    acked: AtomicU64,
    negotiated: AtomicBool,
    writeback: AtomicU8,
    stopping: AtomicBool,
}

impl Shared {
    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Whether writes must be durable before they complete (virtio 1.2,
    /// 5.2.6.2: FLUSH offered but not negotiated, or CONFIG_WCE negotiated
    /// with `writeback` 0).
    fn writethrough(&self) -> bool {
        let acked = self.acked();
        if acked & F_CONFIG_WCE != 0 {
            self.writeback.load(Ordering::Acquire) == 0
        } else {
            acked & F_FLUSH == 0
        }
    }
}

/// One active queue, served by one thread at a time.
struct Worker<M> {
    index: u16,
    queue: Queue,
    mem: Arc<M>,
    interrupt: Arc<dyn Interrupt>,
    bufs: ChainBuffers,
    /// Heads taken from the available ring, served in order (at most a
    /// queue's worth: virtio-queue refuses an index further ahead).
    heads: Vec<u16>,
}

impl<M> fmt::Debug for Worker<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// A virtio block device serving a [`DiskImage`].
///
/// Every method takes `&self`: the transport may call
/// [`process_queue`](Self::process_queue) for different queues from
/// different threads at once (each queue has its own lock; the image is
/// shared without one), and configuration accesses from a vCPU thread.
pub struct Block<M> {
    shared: Arc<Shared>,
    queues: Box<[Mutex<Option<Worker<M>>>]>,
}

impl<M> fmt::Debug for Block<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("image", &self.shared.image)
            .field("features", &format_args!("{:#x}", self.shared.offered))
            .field("acked", &format_args!("{:#x}", self.shared.acked()))
            .field("num_queues", &self.shared.num_queues)
            .finish_non_exhaustive()
    }
}

impl<M: GuestMemoryBackend + Send + Sync> Block<M> {
    /// A device over `image` with `options`.
    pub fn new(image: Arc<dyn DiskImage>, options: &BlockOptions) -> Result<Self> {
        if options.num_queues == 0 {
            return Err(Error::InvalidOptions("at least one queue is needed"));
        }
        let qs = options.queue_size;
        if !(2..=MAX_QUEUE_SIZE).contains(&qs) || !qs.is_power_of_two() {
            return Err(Error::InvalidOptions(
                "queue size must be a power of two from 2 to 32768",
            ));
        }
        let serial = options.serial.as_bytes();
        if serial.len() > ID_BYTES || !options.serial.is_ascii() {
            return Err(Error::InvalidOptions(
                "serial must be at most 20 ASCII characters",
            ));
        }
        let mut id = [0u8; ID_BYTES];
        id[..serial.len()].copy_from_slice(serial);
        let read_only = options.read_only || image.read_only();
        let info = image.info();
        // A fixed VHD stores every block: write zeroes never deallocates.
        let write_zeroes_may_unmap =
            !(info.format == Format::Vhd && info.image_type == ImageType::Fixed);
        let mut offered = F_VERSION_1
            | F_INDIRECT_DESC
            | F_EVENT_IDX
            | F_SIZE_MAX
            | F_SEG_MAX
            | F_BLK_SIZE
            | F_TOPOLOGY
            | F_FLUSH;
        if read_only {
            offered |= F_RO;
        } else {
            offered |= F_CONFIG_WCE | F_DISCARD | F_WRITE_ZEROES;
        }
        if options.num_queues > 1 {
            offered |= F_MQ;
        }
        let shared = Shared {
            image,
            read_only,
            limits: Limits::for_queue_size(qs),
            id,
            num_queues: options.num_queues,
            queue_size: qs,
            offered,
            write_zeroes_may_unmap,
            acked: AtomicU64::new(0),
            negotiated: AtomicBool::new(false),
            writeback: AtomicU8::new(1),
            stopping: AtomicBool::new(false),
        };
        let queues = (0..options.num_queues).map(|_| Mutex::new(None)).collect();
        Ok(Block {
            shared: Arc::new(shared),
            queues,
        })
    }

    /// The virtio device type (2, block).
    pub fn device_type(&self) -> u32 {
        DEVICE_TYPE_BLOCK
    }

    /// Number of request queues the device has.
    pub fn num_queues(&self) -> u16 {
        self.shared.num_queues
    }

    /// Largest size of each queue.
    pub fn queue_max_size(&self) -> u16 {
        self.shared.queue_size
    }

    /// The limits the device advertises and enforces.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// The feature bits the device offers.
    pub fn features(&self) -> u64 {
        self.shared.offered
    }

    /// The feature bits negotiated (0 before negotiation).
    pub fn negotiated_features(&self) -> u64 {
        self.shared.acked()
    }

    /// Accepts the driver's features when it sets FEATURES_OK. Refuses
    /// (the transport then leaves FEATURES_OK clear) legacy drivers and bits
    /// the device did not offer.
    pub fn negotiate(&self, driver_features: u64) -> Result<u64> {
        if self.is_active() {
            return Err(Error::AlreadyActive);
        }
        if driver_features & F_VERSION_1 == 0 {
            return Err(Error::LegacyDriver {
                features: driver_features,
            });
        }
        let extra = driver_features & !self.shared.offered;
        if extra != 0 {
            return Err(Error::FeaturesNotOffered { bits: extra });
        }
        // Writeback is the default cache mode when the driver can flush;
        // without FLUSH it must start at writethrough (5.2.5.1).
        let writeback = u8::from(driver_features & F_FLUSH != 0);
        self.shared.writeback.store(writeback, Ordering::Release);
        self.shared.acked.store(driver_features, Ordering::Release);
        self.shared.negotiated.store(true, Ordering::Release);
        Ok(driver_features)
    }

    /// Length of the configuration space in bytes.
    pub fn config_len(&self) -> usize {
        CONFIG_SPACE_SIZE
    }

    fn config_bytes(&self) -> [u8; CONFIG_SPACE_SIZE] {
        ConfigSource {
            capacity_sectors: self.capacity(),
            logical_sector_size: self.shared.image.logical_sector_size(),
            physical_sector_size: self.shared.image.physical_sector_size(),
            writeback: self.shared.writeback.load(Ordering::Acquire),
            num_queues: self.shared.num_queues,
            limits: self.shared.limits,
            write_zeroes_may_unmap: self.shared.write_zeroes_may_unmap,
        }
        .bytes()
    }

    /// Capacity in 512-byte sectors (a partial last sector is not exposed).
    pub fn capacity(&self) -> u64 {
        self.shared.image.virtual_size() / SECTOR_SIZE
    }

    /// Reads `data.len()` bytes of the configuration space at `offset`;
    /// bytes past its end read as zero.
    pub fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_bytes(&self.config_bytes(), offset, data);
    }

    /// Writes the configuration space. Only `writeback` is writable, and
    /// only when `VIRTIO_BLK_F_CONFIG_WCE` was negotiated; other writes are
    /// ignored.
    pub fn write_config(&self, offset: u64, data: &[u8]) {
        let at = usize::try_from(offset)
            .ok()
            .and_then(|o| WRITEBACK_OFFSET.checked_sub(o))
            .and_then(|i| data.get(i));
        match at {
            Some(&v) if data.len() == 1 && self.shared.acked() & F_CONFIG_WCE != 0 => {
                self.shared
                    .writeback
                    .store(u8::from(v != 0), Ordering::Release);
            }
            _ => log::debug!(
                "virtio-blk: ignored config write of {} bytes at {offset:#x}",
                data.len()
            ),
        }
    }

    /// Starts serving `queues` (index i of the vector is queue i; queues not
    /// marked ready stay inactive) over guest memory `mem`, signalling
    /// completions through `interrupt`.
    pub fn activate(
        &self,
        mem: Arc<M>,
        queues: Vec<Queue>,
        interrupt: Arc<dyn Interrupt>,
    ) -> Result<()> {
        if !self.shared.negotiated.load(Ordering::Acquire) {
            return Err(Error::NotNegotiated);
        }
        let acked = self.shared.acked();
        let max = if acked & F_MQ != 0 {
            self.shared.num_queues
        } else {
            1
        };
        let ready: Vec<usize> = (0..queues.len()).filter(|&i| queues[i].ready()).collect();
        if ready.is_empty() {
            return Err(Error::NoQueues);
        }
        if queues.len() > usize::from(self.shared.num_queues)
            || ready.iter().any(|&i| i >= usize::from(max))
        {
            return Err(Error::TooManyQueues {
                given: queues.len(),
                max,
            });
        }
        let mut slots: Vec<MutexGuard<'_, Option<Worker<M>>>> =
            self.queues.iter().map(lock).collect();
        if slots.iter().any(|s| s.is_some()) {
            return Err(Error::AlreadyActive);
        }
        for (i, q) in queues.iter().enumerate() {
            let index = u16::try_from(i).unwrap_or(u16::MAX);
            if !q.ready() {
                continue;
            }
            if q.size() > self.shared.queue_size {
                return Err(Error::QueueTooLarge {
                    index,
                    size: q.size(),
                    max: self.shared.queue_size,
                });
            }
            if !q.is_valid(&*mem) {
                return Err(Error::QueueInvalid { index });
            }
        }
        self.shared.stopping.store(false, Ordering::Release);
        for (i, mut queue) in queues.into_iter().enumerate() {
            if !queue.ready() {
                continue;
            }
            queue.set_event_idx(acked & F_EVENT_IDX != 0);
            let index = u16::try_from(i).unwrap_or(u16::MAX);
            if let Some(slot) = slots.get_mut(i) {
                **slot = Some(Worker {
                    index,
                    queue,
                    mem: Arc::clone(&mem),
                    interrupt: Arc::clone(&interrupt),
                    bufs: ChainBuffers::default(),
                    heads: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Whether any queue is active.
    pub fn is_active(&self) -> bool {
        self.queues.iter().any(|q| lock(q).is_some())
    }

    /// Serves every available request of queue `index`, then signals the
    /// guest if it asked to be told. Call it on each notification of the
    /// queue; different queues may be processed on different threads at
    /// once. An error means the queue itself is broken (the transport should
    /// set DEVICE_NEEDS_RESET); malformed requests are answered in the queue.
    pub fn process_queue(&self, index: u16) -> Result<()> {
        let slot = self
            .queues
            .get(usize::from(index))
            .ok_or(Error::NotActive { index })?;
        let mut guard = lock(slot);
        let worker = guard.as_mut().ok_or(Error::NotActive { index })?;
        worker.process(&self.shared)
    }

    /// Resets the device: stops every queue (waiting for a batch in
    /// progress to end) and forgets the negotiated features.
    pub fn reset(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        for q in self.queues.iter() {
            *lock(q) = None;
        }
        self.shared.acked.store(0, Ordering::Release);
        self.shared.negotiated.store(false, Ordering::Release);
        self.shared.writeback.store(1, Ordering::Release);
        self.shared.stopping.store(false, Ordering::Release);
    }
}

/// Locks a queue slot; a worker that panicked leaves its queue usable
/// (its state is plain data).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<M: GuestMemoryBackend + Send + Sync> Worker<M> {
    fn queue_error(&self, source: virtio_queue::Error) -> Error {
        Error::Queue {
            index: self.index,
            source,
        }
    }

    /// Takes every available chain's head into `self.heads`.
    fn take_heads(&mut self) -> Result<()> {
        self.heads.clear();
        let mem = &*self.mem;
        match self.queue.iter(mem) {
            Ok(iter) => {
                self.heads.extend(iter.map(|chain| chain.head_index()));
                Ok(())
            }
            Err(e) => Err(Error::Queue {
                index: self.index,
                source: e,
            }),
        }
    }

    fn process(&mut self, shared: &Shared) -> Result<()> {
        let event_idx = self.queue.event_idx_enabled();
        let mut added = 0u32;
        // Rounds in a row that found nothing although the ring said there
        // was more: one is a race with the driver, two a ring that cannot
        // be read.
        let mut empty_rounds = 0u32;
        loop {
            // No kicks while the device is busy: through avail_event with
            // EVENT_IDX, the used ring's NO_NOTIFY flag without.
            let mem = &*self.mem;
            self.queue
                .disable_notification(mem)
                .map_err(|e| self.queue_error(e))?;
            let mut served = 0u32;
            loop {
                self.take_heads()?;
                if self.heads.is_empty() {
                    break;
                }
                for i in 0..self.heads.len() {
                    if shared.stopping.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let head = self.heads[i];
                    served += 1;
                    if self.serve(shared, head)? {
                        added += 1;
                    }
                }
            }
            let mem = &*self.mem;
            let more = self
                .queue
                .enable_notification(mem)
                .map_err(|e| self.queue_error(e))?;
            if !more {
                break;
            }
            if served == 0 {
                empty_rounds += 1;
                if empty_rounds >= 2 {
                    return Err(Error::QueueStuck { index: self.index });
                }
            } else {
                empty_rounds = 0;
            }
        }
        if added > 0 {
            let notify = if event_idx {
                let mem = &*self.mem;
                self.queue
                    .needs_notification(mem)
                    .map_err(|e| self.queue_error(e))?
            } else {
                !self.driver_suppressed_interrupts()?
            };
            if notify {
                self.interrupt.signal_used_queue(self.index);
            }
        }
        Ok(())
    }

    /// Without EVENT_IDX: whether the driver set VRING_AVAIL_F_NO_INTERRUPT
    /// (virtio 1.2, 2.7.10: the device should then not interrupt).
    fn driver_suppressed_interrupts(&self) -> Result<bool> {
        // The used index must be visible before the flag is read.
        fence(Ordering::SeqCst);
        let flags: u16 = self
            .mem
            .load(GuestAddress(self.queue.avail_ring()), Ordering::Acquire)
            .map_err(|e| self.queue_error(virtio_queue::Error::GuestMemory(e)))?;
        Ok(u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT != 0)
    }

    /// Serves the chain at `head`; returns whether it went to the used ring.
    fn serve(&mut self, shared: &Shared, head: u16) -> Result<bool> {
        let mem = &*self.mem;
        let size = self.queue.size();
        let table = GuestAddress(self.queue.desc_table());
        let indirect = shared.acked() & F_INDIRECT_DESC != 0;
        let used = match walk(mem, table, size, head, indirect, &mut self.bufs) {
            Ok(()) => {
                let acked = shared.acked();
                let ctx = Context {
                    image: &*shared.image,
                    capacity: shared.image.virtual_size() / SECTOR_SIZE,
                    read_only: shared.read_only,
                    limits: shared.limits,
                    id: &shared.id,
                    discard: acked & F_DISCARD != 0,
                    write_zeroes: acked & F_WRITE_ZEROES != 0,
                    writethrough: shared.writethrough(),
                };
                match handle(mem, &mut self.bufs, &ctx) {
                    Completion::Status { used, .. } => used,
                    Completion::NoStatus => 0,
                }
            }
            Err(e) => {
                log::debug!(
                    "virtio-blk: queue {}: chain {head} refused: {e}",
                    self.index
                );
                if head >= size {
                    // No used-ring entry can name it.
                    return Ok(false);
                }
                0
            }
        };
        self.queue
            .add_used(mem, head, used)
            .map_err(|e| self.queue_error(e))?;
        Ok(true)
    }
}
