//! A hostile guest: malformed chains and requests are answered (or returned
//! unanswered where no status byte can be trusted), never panic the device,
//! never stall the queue, never touch the image; well-formed requests after
//! them are served.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use virtio_blk::BlockOptions;
use virtio_blk::config::F_INDIRECT_DESC;

const DISK: u64 = 4 << 20;

fn rig() -> (Rig, Arc<Spy>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let rig = Rig::with_image(spy.clone());
    (rig, spy, dir)
}

/// Processes the queue and expects the chain at `head` back unanswered
/// (used length 0, the status sentinel untouched).
#[track_caller]
fn expect_dropped(rig: &mut Rig, head: u16, status: Option<u64>) {
    rig.dev.process_queue(0).expect("the queue survives");
    assert_eq!(
        rig.d().pop_used(),
        Some((u32::from(head), 0)),
        "returned with length 0"
    );
    if let Some(s) = status {
        assert_eq!(rig.d().byte(s), S_UNTOUCHED, "no status written");
    }
}

#[test]
fn short_header() {
    let (mut rig, spy, _dir) = rig();
    spy.take();
    for len in [0u32, 1, 8, 15] {
        let d = rig.d();
        let h = d.place_header(T_OUT, 0);
        let data = d.alloc(512);
        let s = d.place_status();
        let head = if len == 0 {
            d.submit(&[Buf::w(data, 512), Buf::w(s, 1)])
        } else {
            d.submit(&[Buf::r(h, len), Buf::w(s, 1)])
        };
        assert_eq!(
            rig.complete(head, s).status,
            S_IOERR,
            "header of {len} bytes"
        );
    }
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn status_not_device_writable() {
    let (mut rig, spy, _dir) = rig();
    spy.take();
    // FLUSH whose status descriptor is device-readable.
    let d = rig.d();
    let h = d.place_header(T_FLUSH, 0);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(h, 16), Buf::r(s, 1)]);
    expect_dropped(&mut rig, head, Some(s));
    // Read whose data is writable but whose last descriptor is readable.
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let data = d.alloc(512);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(h, 16), Buf::w(data, 512), Buf::r(s, 1)]);
    expect_dropped(&mut rig, head, Some(s));
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn data_of_the_wrong_direction() {
    let (mut rig, spy, _dir) = rig();
    spy.take();
    let d = rig.d();
    // A read whose data buffer is device-readable.
    let h = d.place_header(T_IN, 0);
    let data = d.alloc(512);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(h, 16), Buf::r(data, 512), Buf::w(s, 1)]);
    assert_eq!(
        rig.complete(head, s),
        Done {
            status: S_IOERR,
            used_len: 1
        }
    );
    // A write whose data buffer is device-writable.
    let d = rig.d();
    let h = d.place_header(T_OUT, 0);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(h, 16), Buf::w(data, 512), Buf::w(s, 1)]);
    assert_eq!(rig.complete(head, s).status, S_IOERR);
    // Flush and discard with device-writable data, GET_ID with readable data.
    for (kind, write) in [
        (T_FLUSH, true),
        (T_FLUSH, false),
        (T_DISCARD, true),
        (T_GET_ID, false),
    ] {
        let d = rig.d();
        let h = d.place_header(kind, 0);
        let s = d.place_status();
        let buf = Buf {
            addr: data,
            len: 32,
            write,
        };
        let head = d.submit(&[Buf::r(h, 16), buf, Buf::w(s, 1)]);
        assert_eq!(
            rig.complete(head, s).status,
            S_IOERR,
            "type {kind}, writable data {write}"
        );
    }
    // GET_ID with no buffer for the ID.
    assert_eq!(rig.bare(T_GET_ID, 0).status, S_IOERR);
    // A readable buffer after a writable one: the chain is refused.
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let s = d.place_status();
    let head = d.submit(&[
        Buf::r(h, 16),
        Buf::w(data, 512),
        Buf::r(data, 512),
        Buf::w(s, 1),
    ]);
    expect_dropped(&mut rig, head, Some(s));
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn chains_that_loop() {
    let (mut rig, spy, _dir) = rig();
    spy.take();
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let data = d.alloc(512);
    // Self loop.
    let i = d.take_descs(1)[0];
    d.put_desc(d.desc_table, i, h, 16, F_NEXT, i);
    d.push_avail(i);
    expect_dropped(&mut rig, i, None);
    // A longer loop back to the head, through writable buffers.
    let d = rig.d();
    let idx = d.take_descs(3);
    d.put_desc(d.desc_table, idx[0], h, 16, F_NEXT, idx[1]);
    d.put_desc(d.desc_table, idx[1], data, 512, F_NEXT | F_WRITE, idx[2]);
    d.put_desc(d.desc_table, idx[2], data, 512, F_NEXT | F_WRITE, idx[0]);
    d.push_avail(idx[0]);
    expect_dropped(&mut rig, idx[0], None);
    // A loop inside an indirect table.
    let d = rig.d();
    let table = d.alloc(64);
    d.put_desc(table, 0, h, 16, F_NEXT, 1);
    d.put_desc(table, 1, data, 512, F_NEXT | F_WRITE, 0);
    let head = d.take_descs(1)[0];
    d.put_desc(d.desc_table, head, table, 32, F_INDIRECT, 0);
    d.push_avail(head);
    expect_dropped(&mut rig, head, None);
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn next_index_outside_the_table() {
    let (mut rig, _spy, _dir) = rig();
    let d = rig.d();
    let h = d.place_header(T_FLUSH, 0);
    let i = d.take_descs(1)[0];
    d.put_desc(d.desc_table, i, h, 16, F_NEXT, 256);
    d.push_avail(i);
    expect_dropped(&mut rig, i, None);
    let d = rig.d();
    let table = d.alloc(32);
    d.put_desc(table, 0, h, 16, F_NEXT, 2);
    let head = d.take_descs(1)[0];
    d.put_desc(d.desc_table, head, table, 32, F_INDIRECT, 0);
    d.push_avail(head);
    expect_dropped(&mut rig, head, None);
    rig.assert_healthy();
}

#[test]
fn chain_longer_than_the_queue() {
    let opts = BlockOptions {
        queue_size: 16,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::new(raw_image(dir.path(), DISK), &opts, None);
    // 17 descriptors in an indirect table of a 16-entry queue.
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let data = d.alloc(512 * 16);
    let s = d.place_status();
    let mut bufs = vec![Buf::r(h, 16)];
    bufs.extend((0..15).map(|k| Buf::w(data + 512 * k, 512)));
    bufs.push(Buf::w(s, 1));
    let head = d.submit_indirect(&bufs);
    expect_dropped(&mut rig, head, Some(s));
    // Exactly 16: accepted, but 15 data segments exceed seg_max (14).
    let d = rig.d();
    let s2 = d.alloc(1);
    let mut bufs = vec![Buf::r(h, 16)];
    bufs.extend((0..14).map(|k| Buf::w(data + 512 * k, 512)));
    bufs.push(Buf::w(s2, 513));
    d.write(s2 + 512, &[S_UNTOUCHED]);
    let head = d.submit_indirect(&bufs);
    assert_eq!(
        rig.complete(head, s2 + 512).status,
        S_IOERR,
        "seg_max enforced"
    );
    rig.assert_healthy();
}

#[test]
fn indirect_tables_malformed() {
    let (mut rig, spy, _dir) = rig();
    spy.take();
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let data = d.alloc(512);
    let s = d.place_status();
    let inner = d.alloc(48);
    d.put_desc(inner, 0, h, 16, F_NEXT, 1);
    d.put_desc(inner, 1, data, 512, F_NEXT | F_WRITE, 2);
    d.put_desc(inner, 2, s, 1, F_WRITE, 0);
    // Nested: a table whose entry points at another table.
    let outer = d.alloc(16);
    d.put_desc(outer, 0, inner, 48, F_INDIRECT, 0);
    let cases: Vec<(u64, u32, u16)> = vec![
        (outer, 16, F_INDIRECT),          // nested
        (inner, 0, F_INDIRECT),           // empty table
        (inner, 40, F_INDIRECT),          // not a multiple of 16
        (inner, 16 * 257, F_INDIRECT),    // more entries than the queue
        (inner, 16 * 65536, F_INDIRECT),  // more than any table
        (inner, 48, F_INDIRECT | F_NEXT), // indirect with next
        (MEM_END + 4096, 48, F_INDIRECT), // table outside memory
        (REGION - 16, 48, F_INDIRECT),    // table across regions
    ];
    for (addr, len, flags) in cases {
        let d = rig.d();
        d.write(s, &[S_UNTOUCHED]);
        let head = d.take_descs(2)[0];
        d.put_desc(d.desc_table, head, addr, len, flags, head + 1);
        d.put_desc(d.desc_table, head + 1, s, 1, F_WRITE, 0);
        d.push_avail(head);
        expect_dropped(&mut rig, head, Some(s));
    }
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn indirect_table_across_regions_is_served() {
    // Legal: the table is contiguous in guest-physical memory, only the
    // host mappings differ.
    let (mut rig, _spy, _dir) = rig();
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let data = d.alloc(512);
    let s = d.place_status();
    let table = REGION - 16;
    d.put_desc(table, 0, h, 16, F_NEXT, 1);
    d.put_desc(table, 1, data, 512, F_NEXT | F_WRITE, 2);
    d.put_desc(table, 2, s, 1, F_WRITE, 0);
    let head = d.take_descs(1)[0];
    d.put_desc(d.desc_table, head, table, 48, F_INDIRECT, 0);
    d.push_avail(head);
    assert_eq!(
        rig.complete(head, s),
        Done {
            status: S_OK,
            used_len: 513
        }
    );
}

#[test]
fn indirect_without_negotiation() {
    let dir = tempfile::tempdir().unwrap();
    let image = raw_image(dir.path(), DISK);
    let all = Rig::with_image(image.clone()).dev.features();
    let mut rig = Rig::new(
        image,
        &BlockOptions::default(),
        Some(all & !F_INDIRECT_DESC),
    );
    let d = rig.d();
    let h = d.place_header(T_FLUSH, 0);
    let s = d.place_status();
    let head = d.submit_indirect(&[Buf::r(h, 16), Buf::w(s, 1)]);
    expect_dropped(&mut rig, head, Some(s));
    rig.assert_healthy();
}

#[test]
fn buffers_outside_guest_memory() {
    let (mut rig, spy, _dir) = rig();
    spy.take();
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let s = d.place_status();
    for (addr, len) in [
        (MEM_END, 512u32),
        (MEM_END - 256, 512),
        (REGION - 256, 512), // spans the two regions
        (u64::MAX - 255, 512),
        (u64::MAX, 1),
    ] {
        let d = rig.d();
        let head = d.submit(&[Buf::r(h, 16), Buf::w(addr, len), Buf::w(s, 1)]);
        expect_dropped(&mut rig, head, Some(s));
    }
    // Header or status outside memory.
    let d = rig.d();
    let head = d.submit(&[Buf::r(MEM_END + 64, 16), Buf::w(s, 1)]);
    expect_dropped(&mut rig, head, Some(s));
    let d = rig.d();
    let head = d.submit(&[Buf::r(h, 16), Buf::w(MEM_END + 64, 1)]);
    expect_dropped(&mut rig, head, None);
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn oversized_segments_and_ranges() {
    let (mut rig, spy, _dir) = rig();
    spy.take();
    let limits = rig.dev.limits();
    // One data segment larger than size_max.
    let d = rig.d();
    let h = d.place_header(T_IN, 0);
    let big = 2 << 20;
    assert!(big > limits.size_max);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(h, 16), Buf::w(4 << 20, big), Buf::w(s, 1)]);
    assert_eq!(rig.complete(head, s).status, S_IOERR);
    // Too many discard ranges; a range too long; ranges not whole.
    let many: Vec<[u8; 16]> = (0..=limits.max_discard_seg)
        .map(|i| range(u64::from(i) * 8, 8, 0))
        .collect();
    assert_eq!(rig.ranges(T_DISCARD, &many).status, S_IOERR);
    let long = range(0, limits.max_write_zeroes_sectors + 1, 0);
    assert_eq!(rig.ranges(T_WRITE_ZEROES, &[long]).status, S_IOERR);
    let d = rig.d();
    let hd = d.place_header(T_DISCARD, 0);
    let data = d.alloc(24);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(hd, 16), Buf::r(data, 24), Buf::w(s, 1)]);
    assert_eq!(rig.complete(head, s).status, S_IOERR, "24 bytes of ranges");
    assert_eq!(rig.bare(T_DISCARD, 0).status, S_IOERR, "no ranges");
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn chain_of_more_than_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let dev = virtio_blk::Block::new(spy.clone(), &BlockOptions::default()).unwrap();
    dev.negotiate(dev.features()).unwrap();
    // A sparse 3 GiB region above the rings: buffers that exist, adding up
    // to more than 2^32 bytes (never touched).
    let mem = Arc::new(
        vm_memory::GuestMemoryMmap::<()>::from_ranges(&[
            (vm_memory::GuestAddress(0), REGION as usize),
            (vm_memory::GuestAddress(1 << 32), 3 << 30),
        ])
        .unwrap(),
    );
    let (mut d, q) = Driver::new(mem.clone(), 0, 256);
    let irq = Arc::new(Irq::default());
    dev.activate(mem, vec![q], irq).unwrap();
    let h = d.place_header(T_IN, 0);
    let s = d.place_status();
    let gib = 1u64 << 30;
    let head = d.submit(&[
        Buf::r(h, 16),
        Buf::w(1 << 32, (3 * gib - 512) as u32),
        Buf::w(1 << 32, (3 * gib - 512) as u32),
        Buf::w(s, 1),
    ]);
    dev.process_queue(0).unwrap();
    assert_eq!(d.pop_used(), Some((u32::from(head), 0)));
    assert_eq!(d.byte(s), S_UNTOUCHED);
    assert_eq!(spy.take(), vec![]);
}

#[test]
fn head_index_outside_the_queue() {
    let (mut rig, _spy, _dir) = rig();
    rig.d().push_avail(300);
    rig.d().push_avail(u16::MAX);
    rig.dev.process_queue(0).expect("the queue survives");
    assert_eq!(rig.d().pop_used(), None, "nothing can name such a chain");
    rig.assert_healthy();
}

#[test]
fn available_index_far_ahead_is_a_broken_queue() {
    let (mut rig, _spy, _dir) = rig();
    rig.d().set_avail_idx(1000);
    assert!(matches!(
        rig.dev.process_queue(0),
        Err(virtio_blk::Error::Queue { index: 0, .. })
    ));
    // The transport resets the device; it works again afterwards.
    rig.dev.reset();
    rig.dev.negotiate(rig.dev.features()).unwrap();
    let (d, q) = Driver::new(rig.mem.clone(), 0, 256);
    rig.drivers[0] = d;
    rig.dev
        .activate(rig.mem.clone(), vec![q], rig.irq.clone())
        .unwrap();
    rig.assert_healthy();
}

/// Random descriptor tables, available rings and headers: the device must
/// neither panic nor hang, and must answer every chain it can name.
#[test]
fn random_garbage_never_breaks_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let opts = BlockOptions {
        queue_size: 32,
        ..Default::default()
    };
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut rig = Rig::new(spy.clone(), &opts, None);
    let interesting = [
        0u64,
        16,
        REGION - 8,
        REGION,
        MEM_END - 16,
        MEM_END,
        u64::MAX - 8,
    ];
    for round in 0..300 {
        let d = rig.d();
        let base = d.alloc(4096);
        // Garbage headers and range lists in the buffer area.
        let junk: Vec<u8> = (0..4096)
            .map(|i| match i % 16 {
                0 => rng.random_range(0..16u8),
                _ => rng.random(),
            })
            .collect();
        d.write(base, &junk);
        for i in 0..32u16 {
            let addr = if rng.random_bool(0.8) {
                base + rng.random_range(0..4096)
            } else {
                interesting[rng.random_range(0..interesting.len())]
            };
            let len = match rng.random_range(0..4) {
                0 => 16,
                1 => rng.random_range(0..64),
                2 => rng.random_range(0..8192),
                _ => rng.random(),
            };
            let flags = rng.random_range(0..8u16);
            let next = if rng.random_bool(0.9) {
                rng.random_range(0..32)
            } else {
                rng.random()
            };
            d.put_desc(d.desc_table, i, addr, len, flags, next);
        }
        let n = rng.random_range(1..8);
        for _ in 0..n {
            let head = if rng.random_bool(0.95) {
                rng.random_range(0..32)
            } else {
                rng.random()
            };
            d.push_avail(head);
        }
        rig.dev
            .process_queue(0)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        while rig.d().pop_used().is_some() {}
        // Reset the table allocator so healthy requests use fresh entries.
        if round % 50 == 49 {
            rig.assert_healthy();
        }
    }
    rig.assert_healthy();
    // Whatever reached the image stayed inside it.
    for op in spy.take() {
        if let Op::Read(o, l) | Op::Write(o, l) | Op::WriteZeroes(o, l) | Op::Discard(o, l) = op {
            assert!(o + l <= DISK, "{op:?}");
        }
    }
}
