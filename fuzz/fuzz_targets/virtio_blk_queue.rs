//! A hostile guest driving virtio-blk: guest memory, the descriptor table,
//! the available ring, request headers and negotiated features all come
//! from the input; the device serves the queue over a raw image.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use vhd::{CreateOptions, DiskImage, Format, ImageType};
use virtio_blk::{Block, BlockOptions, Interrupt};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory: two adjacent regions of 512 KiB (a buffer may cross from
/// one to the other); addresses up to 64 KiB past the end are also drawn.
const REGION: u64 = 512 << 10;
const MEM_END: u64 = 2 * REGION;
const DESC_TABLE: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const QUEUE_MAX: u16 = 64;
const DISK: u64 = 1 << 20;
/// Request types the device knows, and one it does not.
const KINDS: [u32; 7] = [0, 1, 4, 8, 11, 13, 0x7fff_0001];

#[derive(Debug, Arbitrary)]
struct Input {
    features: u64,
    read_only: bool,
    size_log2: u8,
    descriptors: Vec<Desc>,
    avail_flags: u16,
    ring: Vec<u16>,
    /// How far the driver moves the available index each round (0 moves it
    /// by the ring's length).
    avail_steps: Vec<u16>,
    used_event: u16,
    /// Other bytes the guest leaves in memory.
    pokes: Vec<(u32, Vec<u8>)>,
}

#[derive(Debug, Arbitrary)]
struct Desc {
    addr: u32,
    len: u32,
    big: bool,
    flags: u16,
    next: u16,
    /// A request header at `addr`: type (index into KINDS) and sector.
    header: Option<(u8, u64)>,
    /// Discard / write-zeroes segments after the header.
    segments: Vec<(u64, u32, u32)>,
}

struct Irq;

impl Interrupt for Irq {
    fn signal_used_queue(&self, _queue_index: u16) {}
}

fn addr(a: u32) -> u64 {
    u64::from(a) % (MEM_END + (64 << 10))
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let Ok(dir) = tempfile::tempdir_in(scratch()) else {
        return;
    };
    let options = CreateOptions::new(Format::Raw, ImageType::Fixed, DISK);
    let Ok(image) = vhd::create(&dir.path().join("disk.raw"), &options) else {
        return;
    };
    let image: Arc<dyn DiskImage> = Arc::new(image);
    let block_options = BlockOptions {
        num_queues: 1,
        queue_size: QUEUE_MAX,
        serial: "fuzz".into(),
        read_only: input.read_only,
    };
    let Ok(dev) = Block::<GuestMemoryMmap<()>>::new(image, &block_options) else {
        return;
    };
    if dev.negotiate(input.features & dev.features()).is_err() {
        return;
    }
    let mem = Arc::new(
        GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), REGION as usize),
            (GuestAddress(REGION), REGION as usize),
        ])
        .expect("guest memory"),
    );

    for (at, bytes) in input.pokes.iter().take(16) {
        let at = addr(*at);
        let n = bytes
            .len()
            .min(usize::try_from(MEM_END.saturating_sub(at)).unwrap_or(0));
        let _ = mem.write_slice(&bytes[..n], GuestAddress(at));
    }
    let size = 1u16 << (input.size_log2 % 7);
    for (i, d) in input.descriptors.iter().take(usize::from(size)).enumerate() {
        let a = addr(d.addr);
        let len = if d.big { d.len } else { d.len & 0xffff };
        if let Some((kind, sector)) = d.header {
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&KINDS[usize::from(kind) % KINDS.len()].to_le_bytes());
            h[8..16].copy_from_slice(&(sector % (DISK / 256)).to_le_bytes());
            let _ = mem.write_slice(&h, GuestAddress(a));
            for (j, (s, n, f)) in d.segments.iter().take(8).enumerate() {
                let mut r = [0u8; 16];
                r[0..8].copy_from_slice(&s.to_le_bytes());
                r[8..12].copy_from_slice(&n.to_le_bytes());
                r[12..16].copy_from_slice(&f.to_le_bytes());
                let _ = mem.write_slice(&r, GuestAddress(a + 16 + 16 * j as u64));
            }
        }
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&a.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&(d.flags & 0x7).to_le_bytes());
        raw[14..16].copy_from_slice(&d.next.to_le_bytes());
        let _ = mem.write_slice(&raw, GuestAddress(DESC_TABLE + 16 * i as u64));
    }
    // Available ring: flags, idx (set per round), ring, used_event.
    let _ = mem.write_obj(input.avail_flags, GuestAddress(AVAIL));
    for (i, head) in input.ring.iter().take(usize::from(size)).enumerate() {
        let _ = mem.write_obj(*head, GuestAddress(AVAIL + 4 + 2 * i as u64));
    }
    let _ = mem.write_obj(
        input.used_event,
        GuestAddress(AVAIL + 4 + 2 * u64::from(size)),
    );

    let Ok(mut queue) = Queue::new(QUEUE_MAX) else {
        return;
    };
    queue.set_size(size);
    queue.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_ready(true);
    if dev
        .activate(Arc::clone(&mem), vec![queue], Arc::new(Irq))
        .is_err()
    {
        return;
    }
    let mut idx = 0u16;
    let default_step = input.ring.len().min(usize::from(size)) as u16;
    let steps: Vec<u16> = if input.avail_steps.is_empty() {
        vec![default_step]
    } else {
        input.avail_steps.iter().take(4).copied().collect()
    };
    for step in steps {
        idx = idx.wrapping_add(if step == 0 { default_step } else { step });
        let _ = mem.write_obj(idx, GuestAddress(AVAIL + 2));
        if dev.process_queue(0).is_err() {
            break;
        }
    }
    dev.reset();
});

fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
