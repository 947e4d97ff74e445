//! Queue handling: interrupt suppression with EVENT_IDX, coalescing,
//! several queues served in parallel, activation checks.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use virtio_blk::config::F_EVENT_IDX;
use virtio_blk::{Block, BlockOptions, Error, Interrupt};
use virtio_queue::QueueT;

const DISK: u64 = 16 << 20;

/// Submits a write of `data` at `sector` on driver `d` without processing.
fn submit_write(d: &mut Driver, sector: u64, data: &[u8]) -> (u16, u64) {
    let h = d.place_header(T_OUT, sector);
    let buf = d.alloc(data.len() as u64);
    d.write(buf, data);
    let s = d.place_status();
    (
        d.submit(&[Buf::r(h, 16), Buf::r(buf, data.len() as u32), Buf::w(s, 1)]),
        s,
    )
}

fn submit_read(d: &mut Driver, sector: u64, len: u32) -> (u16, u64, u64) {
    let h = d.place_header(T_IN, sector);
    let buf = d.alloc(u64::from(len));
    let s = d.place_status();
    (
        d.submit(&[Buf::r(h, 16), Buf::w(buf, len), Buf::w(s, 1)]),
        s,
        buf,
    )
}

fn irqs(rig: &Rig) -> u32 {
    rig.irq.count.load(Ordering::SeqCst)
}

#[test]
fn event_idx_suppresses_and_coalesces_interrupts() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::with_image(raw_image(dir.path(), DISK));
    assert_ne!(rig.dev.negotiated_features() & F_EVENT_IDX, 0);
    // used_event 0: the first completion interrupts.
    submit_write(rig.d(), 0, &[1u8; 512]);
    rig.dev.process_queue(0).unwrap();
    assert_eq!(irqs(&rig), 1);
    assert_eq!(rig.d().avail_event(), 1, "the device publishes avail_event");
    // The driver asks not to be interrupted before used index 10.
    rig.d().set_used_event(10);
    for i in 0..3 {
        submit_write(rig.d(), i, &[2u8; 512]);
        rig.dev.process_queue(0).unwrap();
    }
    assert_eq!(rig.d().used_idx(), 4);
    assert_eq!(irqs(&rig), 1, "suppressed");
    // Crossing used_event interrupts once for the whole batch.
    rig.d().set_used_event(5);
    for i in 0..3 {
        submit_write(rig.d(), i, &[3u8; 512]);
    }
    rig.dev.process_queue(0).unwrap();
    assert_eq!(rig.d().used_idx(), 7);
    assert_eq!(irqs(&rig), 2);
    assert_eq!(rig.d().avail_event(), 7);
    while rig.d().pop_used().is_some() {}
}

#[test]
fn without_event_idx_one_interrupt_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let image = raw_image(dir.path(), DISK);
    let all = Rig::with_image(image.clone()).dev.features();
    let mut rig = Rig::new(image, &BlockOptions::default(), Some(all & !F_EVENT_IDX));
    for i in 0..5 {
        submit_write(rig.d(), i, &[4u8; 512]);
    }
    rig.dev.process_queue(0).unwrap();
    assert_eq!(rig.d().used_idx(), 5);
    assert_eq!(irqs(&rig), 1);
    // Nothing new: no interrupt.
    rig.dev.process_queue(0).unwrap();
    assert_eq!(irqs(&rig), 1);
    // The device asked for no kicks while busy, and asks again once idle.
    let used = rig.d().used;
    let used_flags = rig.d().read(used, 2)[0];
    assert_eq!(used_flags & 1, 0, "notifications enabled when idle");
    // VRING_AVAIL_F_NO_INTERRUPT: completions without an interrupt.
    let avail = rig.d().avail;
    rig.d().write(avail, &1u16.to_le_bytes());
    submit_write(rig.d(), 0, &[4u8; 512]);
    rig.dev.process_queue(0).unwrap();
    assert_eq!(rig.d().used_idx(), 6);
    assert_eq!(irqs(&rig), 1, "driver suppressed the interrupt");
    rig.d().write(avail, &0u16.to_le_bytes());
    submit_write(rig.d(), 0, &[4u8; 512]);
    rig.dev.process_queue(0).unwrap();
    assert_eq!(irqs(&rig), 2);
}

#[test]
fn queues_are_served_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let image = raw_image(dir.path(), DISK);
    let opts = BlockOptions {
        num_queues: 4,
        ..Default::default()
    };
    let mut rig = Rig::new(image.clone(), &opts, None);
    let dev = &rig.dev;
    std::thread::scope(|scope| {
        for (q, d) in rig.drivers.iter_mut().enumerate() {
            scope.spawn(move || {
                let q16 = q as u16;
                for round in 0..100u64 {
                    let sector = q as u64 * 4096 + (round % 64) * 8;
                    let data = pattern(q as u64 * 1000 + round, 4096);
                    let (head, s) = submit_write(d, sector, &data);
                    dev.process_queue(q16).unwrap();
                    assert_eq!(d.pop_used(), Some((u32::from(head), 1)));
                    assert_eq!(d.byte(s), S_OK);
                    // Like a driver re-arming its callback: interrupt on
                    // the next completion.
                    d.set_used_event(d.used_idx());
                    let (head, s, buf) = submit_read(d, sector, 4096);
                    dev.process_queue(q16).unwrap();
                    assert_eq!(d.pop_used(), Some((u32::from(head), 4097)));
                    assert_eq!(d.byte(s), S_OK);
                    assert!(d.read(buf, 4096) == data, "queue {q} round {round}");
                    d.set_used_event(d.used_idx());
                }
            });
        }
    });
    for q in 0..4u64 {
        let sector = q * 4096 + 63 * 8;
        let mut got = vec![0u8; 4096];
        image.read_at(&mut got, sector * 512).unwrap();
        // Round 63 was the last to write that slot.
        assert!(
            got == pattern(q * 1000 + 63, 4096),
            "queue {q} data on the image"
        );
    }
    assert_eq!(irqs(&rig), 800, "every completion the drivers asked for");
    rig.dev.reset();
}

fn device(opts: &BlockOptions) -> (Block<Mem>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dev = Block::new(raw_image(dir.path(), DISK), opts).unwrap();
    dev.negotiate(dev.features()).unwrap();
    (dev, dir)
}

#[test]
fn activation_checks_the_queues() {
    let irq: Arc<dyn Interrupt> = Arc::new(Irq::default());
    let mem = guest_memory();
    let (dev, _dir) = device(&BlockOptions::default());
    // No ready queue.
    let (_, mut q) = Driver::new(mem.clone(), 0, 256);
    q.set_ready(false);
    assert!(matches!(
        dev.activate(mem.clone(), vec![q], irq.clone()),
        Err(Error::NoQueues)
    ));
    // Rings outside guest memory.
    let (_, mut q) = Driver::new(mem.clone(), 0, 256);
    q.set_desc_table_address(Some(0), Some(1));
    assert!(matches!(
        dev.activate(mem.clone(), vec![q], irq.clone()),
        Err(Error::QueueInvalid { index: 0 })
    ));
    // Larger than the device allows.
    let (dev16, _d) = device(&BlockOptions {
        queue_size: 16,
        ..Default::default()
    });
    let (_, q) = Driver::new(mem.clone(), 0, 32);
    assert!(matches!(
        dev16.activate(mem.clone(), vec![q], irq.clone()),
        Err(Error::QueueTooLarge {
            index: 0,
            size: 32,
            max: 16
        })
    ));
    // Two queues on a single-queue device.
    let (_, q0) = Driver::new(mem.clone(), 0, 256);
    let (_, q1) = Driver::new(mem.clone(), 1, 256);
    assert!(matches!(
        dev.activate(mem.clone(), vec![q0, q1], irq.clone()),
        Err(Error::TooManyQueues { .. })
    ));
    assert!(!dev.is_active());
    // Valid, then a second activation.
    let (_, q) = Driver::new(mem.clone(), 0, 256);
    dev.activate(mem.clone(), vec![q], irq.clone()).unwrap();
    let (_, q) = Driver::new(mem.clone(), 0, 256);
    assert!(matches!(
        dev.activate(mem.clone(), vec![q], irq.clone()),
        Err(Error::AlreadyActive)
    ));
}

#[test]
fn fewer_queues_than_offered() {
    let opts = BlockOptions {
        num_queues: 4,
        ..Default::default()
    };
    let (dev, _dir) = device(&opts);
    let mem = guest_memory();
    let (mut d0, q0) = Driver::new(mem.clone(), 0, 256);
    let (_, mut q1) = Driver::new(mem.clone(), 1, 256);
    q1.set_ready(false);
    dev.activate(mem, vec![q0, q1], Arc::new(Irq::default()))
        .unwrap();
    let (head, s) = submit_write(&mut d0, 0, &[5u8; 512]);
    dev.process_queue(0).unwrap();
    assert_eq!(d0.pop_used(), Some((u32::from(head), 1)));
    assert_eq!(d0.byte(s), S_OK);
    assert!(matches!(
        dev.process_queue(1),
        Err(Error::NotActive { index: 1 })
    ));
    assert!(matches!(
        dev.process_queue(3),
        Err(Error::NotActive { index: 3 })
    ));
}

#[test]
fn reset_while_a_queue_is_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::with_image(raw_image(dir.path(), DISK));
    let dev = &rig.dev;
    let d = &mut rig.drivers[0];
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let mut served = 0u32;
            loop {
                for i in 0..32 {
                    submit_write(d, i * 8, &[6u8; 4096]);
                }
                match dev.process_queue(0) {
                    Ok(()) => {
                        while d.pop_used().is_some() {
                            served += 1;
                        }
                    }
                    Err(Error::NotActive { index: 0 }) => return served,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        dev.reset();
        let served = worker.join().unwrap();
        assert!(served > 0, "requests were served before the reset");
    });
    assert!(!rig.dev.is_active());
}
