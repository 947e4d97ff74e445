//! Every request type through the device, on every backend.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;

use common::*;
use vhd::DiskImage;
use virtio_blk::config::{F_CONFIG_WCE, F_DISCARD, F_FLUSH, F_VERSION_1, F_WRITE_ZEROES};
use virtio_blk::{BlockOptions, SECTOR_SIZE};

const DISK: u64 = 8 << 20;

fn each_backend(f: impl Fn(&Backend, Arc<dyn DiskImage>)) {
    for b in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let image = make_image(dir.path(), b, DISK);
        f(b, image);
    }
}

fn disk_bytes(image: &dyn DiskImage, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    image.read_at(&mut v, offset).unwrap();
    v
}

#[test]
fn write_then_read_back() {
    each_backend(|b, image| {
        let mut rig = Rig::with_image(image.clone());
        for (i, &(sector, len)) in [
            (0u64, 512usize),
            (8, 4096),
            (1000, 65536),
            (DISK / 512 - 8, 4096),
        ]
        .iter()
        .enumerate()
        {
            let data = pattern(i as u64, len);
            let w = rig.write(sector, &data);
            assert_eq!(
                w,
                Done {
                    status: S_OK,
                    used_len: 1
                },
                "{}: write {i}",
                b.name
            );
            let (r, back) = rig.read(sector, len as u32);
            assert_eq!(r.status, S_OK, "{}: read {i}", b.name);
            assert_eq!(
                r.used_len,
                len as u32 + 1,
                "{}: used length of a read",
                b.name
            );
            assert_eq!(back, data, "{}: read {i} returns what was written", b.name);
            assert_eq!(
                disk_bytes(&*image, sector * 512, len),
                data,
                "{}: image content",
                b.name
            );
        }
    });
}

#[test]
fn any_descriptor_layout_is_accepted() {
    each_backend(|b, image| {
        let mut rig = Rig::with_image(image.clone());
        let data = pattern(9, 3 * 512);
        // Write: header split over two descriptors, header and data sharing
        // one, data split unevenly.
        let d = rig.d();
        let a = d.alloc(8);
        d.write(a, &header(T_OUT, 40)[..8]);
        let bbuf = d.alloc(8 + 700);
        d.write(bbuf, &header(T_OUT, 40)[8..]);
        d.write(bbuf + 8, &data[..700]);
        let c = d.alloc(3 * 512 - 700);
        d.write(c, &data[700..]);
        let s = d.place_status();
        let head = d.submit(&[
            Buf::r(a, 8),
            Buf::r(bbuf, 708),
            Buf::r(c, 3 * 512 - 700),
            Buf::w(s, 1),
        ]);
        assert_eq!(rig.complete(head, s).status, S_OK, "{}", b.name);
        assert_eq!(disk_bytes(&*image, 40 * 512, data.len()), data);
        // Read: the status byte shares the last descriptor with data.
        let d = rig.d();
        let h = d.place_header(T_IN, 40);
        let x = d.alloc(1000);
        let y = d.alloc(3 * 512 - 1000 + 1);
        d.write(y + 3 * 512 - 1000, &[S_UNTOUCHED]);
        let head = d.submit(&[
            Buf::r(h, 16),
            Buf::w(x, 1000),
            Buf::w(y, 3 * 512 - 1000 + 1),
        ]);
        let done = rig.complete(head, y + 3 * 512 - 1000);
        assert_eq!(
            done,
            Done {
                status: S_OK,
                used_len: 3 * 512 + 1
            }
        );
        let mut back = rig.d().read(x, 1000);
        back.extend(rig.d().read(y, 3 * 512 - 1000));
        assert_eq!(back, data, "{}", b.name);
    });
}

#[test]
fn indirect_chains() {
    each_backend(|b, image| {
        let mut rig = Rig::with_image(image);
        let data = pattern(3, 8192);
        let d = rig.d();
        let h = d.place_header(T_OUT, 64);
        let p1 = d.alloc(4096);
        let p2 = d.alloc(4096);
        d.write(p1, &data[..4096]);
        d.write(p2, &data[4096..]);
        let s = d.place_status();
        let head = d.submit_indirect(&[
            Buf::r(h, 16),
            Buf::r(p1, 4096),
            Buf::r(p2, 4096),
            Buf::w(s, 1),
        ]);
        assert_eq!(rig.complete(head, s).status, S_OK, "{}", b.name);
        let d = rig.d();
        let h = d.place_header(T_IN, 64);
        let q = d.alloc(8192);
        let s = d.place_status();
        let head = d.submit_indirect(&[Buf::r(h, 16), Buf::w(q, 8192), Buf::w(s, 1)]);
        assert_eq!(
            rig.complete(head, s),
            Done {
                status: S_OK,
                used_len: 8193
            }
        );
        assert_eq!(rig.d().read(q, 8192), data, "{}", b.name);
    });
}

#[test]
fn flush_reaches_the_image_after_the_writes() {
    each_backend(|b, image| {
        let spy = Spy::new(image);
        let mut rig = Rig::with_image(spy.clone());
        rig.write(0, &[1u8; 512]);
        assert_eq!(rig.bare(T_FLUSH, 0).status, S_OK, "{}", b.name);
        assert_eq!(
            spy.take(),
            vec![Op::Write(0, 512), Op::Flush],
            "{}: writeback cache",
            b.name
        );
    });
}

#[test]
fn writethrough_when_flush_not_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let dev_features = Rig::with_image(spy.clone()).dev.features();
    let mut rig = Rig::new(
        spy.clone(),
        &BlockOptions::default(),
        Some(dev_features & !(F_FLUSH | F_CONFIG_WCE)),
    );
    spy.take();
    rig.write(3, &[2u8; 1024]);
    assert_eq!(
        spy.take(),
        vec![Op::Write(1536, 1024), Op::Flush],
        "stable before completion"
    );
}

#[test]
fn writeback_field_switches_cache_mode() {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let mut rig = Rig::with_image(spy.clone());
    let mut wb = [9u8];
    rig.dev.read_config(32, &mut wb);
    assert_eq!(wb, [1], "writeback by default with FLUSH");
    rig.dev.write_config(32, &[0]);
    rig.dev.read_config(32, &mut wb);
    assert_eq!(wb, [0]);
    rig.write(0, &[3u8; 512]);
    assert_eq!(
        spy.take(),
        vec![Op::Write(0, 512), Op::Flush],
        "writethrough"
    );
    rig.dev.write_config(32, &[1]);
    rig.write(0, &[3u8; 512]);
    assert_eq!(spy.take(), vec![Op::Write(0, 512)], "writeback");
}

#[test]
fn config_writes_other_than_writeback_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::with_image(raw_image(dir.path(), DISK));
    let mut before = vec![0u8; rig.dev.config_len()];
    rig.dev.read_config(0, &mut before);
    rig.dev.write_config(0, &[0xff; 8]);
    rig.dev.write_config(20, &[0xff; 4]);
    rig.dev.write_config(31, &[0, 0]);
    rig.dev.write_config(u64::MAX, &[0]);
    let mut after = vec![0u8; rig.dev.config_len()];
    rig.dev.read_config(0, &mut after);
    assert_eq!(before, after);
    assert_eq!(
        u64::from_le_bytes(after[0..8].try_into().unwrap()),
        DISK / 512
    );
}

#[test]
fn get_id_returns_the_serial() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockOptions {
        serial: "disk-0001".into(),
        ..Default::default()
    };
    let mut rig = Rig::new(raw_image(dir.path(), DISK), &opts, None);
    let d = rig.d();
    let h = d.place_header(T_GET_ID, 0);
    let buf = d.alloc(20);
    d.write(buf, &[0xff; 20]);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(h, 16), Buf::w(buf, 20), Buf::w(s, 1)]);
    assert_eq!(
        rig.complete(head, s),
        Done {
            status: S_OK,
            used_len: 21
        }
    );
    let mut want = b"disk-0001".to_vec();
    want.resize(20, 0);
    assert_eq!(rig.d().read(buf, 20), want);
    // A full 20-character serial has no terminator.
    let opts = BlockOptions {
        serial: "ABCDEFGHIJKLMNOPQRST".into(),
        ..Default::default()
    };
    let mut rig = Rig::new(
        raw_image(tempfile::tempdir().unwrap().path(), DISK),
        &opts,
        None,
    );
    let d = rig.d();
    let h = d.place_header(T_GET_ID, 0);
    let buf = d.alloc(512);
    let s = d.place_status();
    let head = d.submit(&[Buf::r(h, 16), Buf::w(buf, 512), Buf::w(s, 1)]);
    assert_eq!(
        rig.complete(head, s),
        Done {
            status: S_OK,
            used_len: 20
        }
    );
    assert_eq!(rig.d().read(buf, 20), b"ABCDEFGHIJKLMNOPQRST");
}

#[test]
fn discard_and_write_zeroes() {
    each_backend(|b, image| {
        let spy = Spy::new(image);
        let mut rig = Rig::with_image(spy.clone());
        let data = pattern(11, 16384);
        rig.write(100, &data);
        spy.take();
        // Discard two ranges; both read as zeros afterwards.
        let done = rig.ranges(T_DISCARD, &[range(100, 8, 0), range(116, 8, 0)]);
        assert_eq!(done.status, S_OK, "{}: discard", b.name);
        assert_eq!(
            spy.take(),
            vec![Op::Discard(100 * 512, 4096), Op::Discard(116 * 512, 4096)]
        );
        let (_, back) = rig.read(100, 16384);
        assert_eq!(&back[..4096], &[0u8; 4096][..], "{}", b.name);
        assert_eq!(&back[4096..8192], &data[4096..8192], "{}", b.name);
        assert_eq!(&back[8192..12288], &[0u8; 4096][..], "{}", b.name);
        spy.take();
        // Write zeroes with UNMAP may deallocate; without it, real zeros.
        let done = rig.ranges(T_WRITE_ZEROES, &[range(108, 8, 1)]);
        assert_eq!(done.status, S_OK);
        assert_eq!(
            spy.take(),
            vec![Op::WriteZeroes(108 * 512, 4096)],
            "{}",
            b.name
        );
        let done = rig.ranges(T_WRITE_ZEROES, &[range(124, 8, 0)]);
        assert_eq!(done.status, S_OK);
        assert_eq!(
            spy.take(),
            vec![Op::Write(124 * 512, 4096)],
            "{}: NOUNMAP keeps allocation",
            b.name
        );
        let (_, back) = rig.read(100, 16384);
        assert_eq!(back, vec![0u8; 16384], "{}", b.name);
    });
}

#[test]
fn discard_and_write_zeroes_flags() {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let mut rig = Rig::with_image(spy.clone());
    spy.take();
    assert_eq!(
        rig.ranges(T_DISCARD, &[range(0, 8, 1)]).status,
        S_UNSUPP,
        "unmap on discard"
    );
    assert_eq!(rig.ranges(T_DISCARD, &[range(0, 8, 4)]).status, S_UNSUPP);
    assert_eq!(
        rig.ranges(T_WRITE_ZEROES, &[range(0, 8, 2)]).status,
        S_UNSUPP
    );
    assert_eq!(
        rig.ranges(T_WRITE_ZEROES, &[range(0, 8, 1), range(8, 8, 0x8000_0000)])
            .status,
        S_UNSUPP,
        "one bad range fails the whole request"
    );
    assert_eq!(spy.take(), vec![], "nothing reached the image");
}

#[test]
fn discard_not_negotiated_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let image = raw_image(dir.path(), DISK);
    let all = Rig::with_image(image.clone()).dev.features();
    let mut rig = Rig::new(
        image,
        &BlockOptions::default(),
        Some(all & !(F_DISCARD | F_WRITE_ZEROES)),
    );
    assert_eq!(rig.ranges(T_DISCARD, &[range(0, 8, 0)]).status, S_UNSUPP);
    assert_eq!(
        rig.ranges(T_WRITE_ZEROES, &[range(0, 8, 0)]).status,
        S_UNSUPP
    );
}

#[test]
fn unknown_types_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let mut rig = Rig::with_image(spy.clone());
    spy.take();
    for kind in [2u32, 3, 5, 10, 14, 15, 16, 26, 0x8000_0000, u32::MAX] {
        assert_eq!(rig.bare(kind, 0).status, S_UNSUPP, "type {kind}");
    }
    assert_eq!(spy.take(), vec![]);
    rig.assert_healthy();
}

#[test]
fn read_only_device_refuses_writes_without_touching_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.raw");
    vhd::create(
        &path,
        &vhd::CreateOptions::new(vhd::Format::Raw, vhd::ImageType::Dynamic, DISK),
    )
    .unwrap();
    let image = vhd::open(&path, &vhd::OpenOptions::read_only()).unwrap();
    let spy = Spy::new(Arc::new(image));
    let mut rig = Rig::with_image(spy.clone());
    let f = rig.dev.features();
    assert_ne!(f & virtio_blk::config::F_RO, 0, "RO offered");
    assert_eq!(f & (F_DISCARD | F_WRITE_ZEROES | F_CONFIG_WCE), 0);
    assert_eq!(rig.write(0, &[1u8; 512]).status, S_IOERR);
    assert_eq!(spy.take(), vec![], "no write reached the image");
    let (r, back) = rig.read(0, 512);
    assert_eq!(r.status, S_OK);
    assert_eq!(back, vec![0u8; 512]);
    assert_eq!(
        rig.bare(T_FLUSH, 0).status,
        S_OK,
        "flushing a read-only disk is a no-op"
    );
    for kind in [T_DISCARD, T_WRITE_ZEROES] {
        assert_eq!(
            rig.ranges(kind, &[range(0, 8, 0)]).status,
            S_UNSUPP,
            "not offered"
        );
    }
    spy.take();
    // The read-only option on a writable image.
    let opts = BlockOptions {
        read_only: true,
        ..Default::default()
    };
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let mut rig = Rig::new(spy.clone(), &opts, None);
    assert_eq!(rig.write(0, &[1u8; 512]).status, S_IOERR);
    assert_eq!(spy.take(), vec![]);
}

#[test]
fn sectors_at_and_past_the_end() {
    each_backend(|b, image| {
        let spy = Spy::new(image);
        let mut rig = Rig::with_image(spy.clone());
        let last = DISK / SECTOR_SIZE - 1;
        assert_eq!(
            rig.write(last, &[7u8; 512]).status,
            S_OK,
            "{}: last sector",
            b.name
        );
        assert_eq!(rig.read(last, 512).1, vec![7u8; 512]);
        spy.take();
        for (sector, len) in [
            (last, 1024u32),
            (last + 1, 512),
            (DISK, 512),
            (u64::MAX / 512, 512),
            (u64::MAX, 512),
        ] {
            assert_eq!(
                rig.read(sector, len).0.status,
                S_IOERR,
                "{}: read {sector}+{len}",
                b.name
            );
            assert_eq!(rig.write(sector, &vec![1u8; len as usize]).status, S_IOERR);
            assert_eq!(
                rig.ranges(T_DISCARD, &[range(sector, len / 512, 0)]).status,
                S_IOERR
            );
            assert_eq!(
                rig.ranges(T_WRITE_ZEROES, &[range(sector, len / 512, 0)])
                    .status,
                S_IOERR
            );
        }
        assert_eq!(
            spy.take(),
            vec![],
            "{}: nothing out of range reached the image",
            b.name
        );
        // A read failing with data before the status reports 0 bytes used.
        assert_eq!(
            rig.read(last + 1, 512).0,
            Done {
                status: S_IOERR,
                used_len: 0
            }
        );
    });
}

#[test]
fn lengths_not_multiple_of_512() {
    let dir = tempfile::tempdir().unwrap();
    let spy = Spy::new(raw_image(dir.path(), DISK));
    let mut rig = Rig::with_image(spy.clone());
    spy.take();
    for len in [1u32, 100, 511, 513, 4095] {
        assert_eq!(rig.read(0, len).0.status, S_IOERR, "read of {len}");
        assert_eq!(
            rig.write(0, &vec![0u8; len as usize]).status,
            S_IOERR,
            "write of {len}"
        );
    }
    assert_eq!(spy.take(), vec![]);
}

#[test]
fn zero_length_read_and_write_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::with_image(raw_image(dir.path(), DISK));
    assert_eq!(
        rig.bare(T_IN, 5),
        Done {
            status: S_OK,
            used_len: 1
        }
    );
    assert_eq!(rig.bare(T_OUT, 5).status, S_OK);
    assert_eq!(
        rig.bare(T_IN, DISK / 512 + 1).status,
        S_IOERR,
        "still range-checked"
    );
}

#[test]
fn features_and_negotiation() {
    let dir = tempfile::tempdir().unwrap();
    let dev: virtio_blk::Block<Mem> =
        virtio_blk::Block::new(raw_image(dir.path(), DISK), &BlockOptions::default()).unwrap();
    let f = dev.features();
    for bit in [32u32, 28, 29, 1, 2, 6, 9, 10, 11, 13, 14] {
        assert_ne!(f & (1 << bit), 0, "feature bit {bit} offered");
    }
    assert_eq!(f & (1 << 12), 0, "no MQ with one queue");
    assert_eq!(f & (1 << 5), 0, "not read-only");
    assert!(matches!(
        dev.negotiate(f & !F_VERSION_1),
        Err(virtio_blk::Error::LegacyDriver { .. })
    ));
    assert!(matches!(
        dev.negotiate(f | 1 << 40),
        Err(virtio_blk::Error::FeaturesNotOffered { bits }) if bits == 1 << 40
    ));
    let (_, q) = Driver::new(guest_memory(), 0, 256);
    assert!(matches!(
        dev.activate(guest_memory(), vec![q], Arc::new(Irq::default())),
        Err(virtio_blk::Error::NotNegotiated)
    ));
    assert_eq!(dev.negotiate(F_VERSION_1).unwrap(), F_VERSION_1);
    let mq: virtio_blk::Block<Mem> = virtio_blk::Block::new(
        raw_image(tempfile::tempdir().unwrap().path(), DISK),
        &BlockOptions {
            num_queues: 4,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(mq.features() & (1 << 12), 0, "MQ offered");
    let mut nq = [0u8; 2];
    mq.read_config(34, &mut nq);
    assert_eq!(u16::from_le_bytes(nq), 4);
}

#[test]
fn options_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let image = raw_image(dir.path(), DISK);
    for opts in [
        BlockOptions {
            num_queues: 0,
            ..Default::default()
        },
        BlockOptions {
            queue_size: 0,
            ..Default::default()
        },
        BlockOptions {
            queue_size: 100,
            ..Default::default()
        },
        BlockOptions {
            queue_size: u16::MAX,
            ..Default::default()
        },
        BlockOptions {
            serial: "x".repeat(21),
            ..Default::default()
        },
        BlockOptions {
            serial: "é".into(),
            ..Default::default()
        },
    ] {
        assert!(
            matches!(
                virtio_blk::Block::<Mem>::new(image.clone(), &opts),
                Err(virtio_blk::Error::InvalidOptions(_))
            ),
            "{opts:?}"
        );
    }
}

#[test]
fn reset_stops_the_queues_and_allows_reactivation() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::with_image(raw_image(dir.path(), DISK));
    rig.assert_healthy();
    assert!(matches!(
        rig.dev.negotiate(rig.dev.features()),
        Err(virtio_blk::Error::AlreadyActive)
    ));
    rig.dev.reset();
    assert!(!rig.dev.is_active());
    assert_eq!(rig.dev.negotiated_features(), 0);
    assert!(matches!(
        rig.dev.process_queue(0),
        Err(virtio_blk::Error::NotActive { index: 0 })
    ));
    assert!(matches!(
        rig.dev.process_queue(7),
        Err(virtio_blk::Error::NotActive { index: 7 })
    ));
    rig.dev.negotiate(rig.dev.features()).unwrap();
    let (d, q) = Driver::new(rig.mem.clone(), 0, 256);
    rig.drivers[0] = d;
    rig.dev
        .activate(rig.mem.clone(), vec![q], rig.irq.clone())
        .unwrap();
    rig.assert_healthy();
}

#[test]
fn chains_built_by_the_virtio_queue_mock_driver() {
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor;
    use vm_memory::{Bytes, GuestAddress};

    let dir = tempfile::tempdir().unwrap();
    let image = raw_image(dir.path(), DISK);
    let data = pattern(77, 1024);
    image.write_at(&data, 4096).unwrap();
    let dev: virtio_blk::Block<Mem> =
        virtio_blk::Block::new(image, &BlockOptions::default()).unwrap();
    dev.negotiate(dev.features()).unwrap();
    let mem = guest_memory();
    let (mock, queue) = Driver::mock_queue(&mem, 16);
    mem.write_slice(&header(T_IN, 8), GuestAddress(0x10_0000))
        .unwrap();
    mem.write_obj(S_UNTOUCHED, GuestAddress(0x30_0000)).unwrap();
    let descs = [
        RawDescriptor::from(Descriptor::new(0x10_0000, 16, F_NEXT, 1)),
        RawDescriptor::from(Descriptor::new(0x20_0000, 1024, F_NEXT | F_WRITE, 2)),
        RawDescriptor::from(Descriptor::new(0x30_0000, 1, F_WRITE, 0)),
    ];
    mock.add_desc_chains(&descs, 0).unwrap();
    dev.activate(mem.clone(), vec![queue], Arc::new(Irq::default()))
        .unwrap();
    dev.process_queue(0).unwrap();
    let used = mock.used().ring().ref_at(0).unwrap().load();
    assert_eq!((used.id(), used.len()), (0, 1025));
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0x30_0000)).unwrap(), S_OK);
    let mut got = vec![0u8; 1024];
    mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(got, data);
}

fn config_u32(dev: &virtio_blk::Block<Mem>, at: u64) -> u32 {
    let mut b = [0u8; 4];
    dev.read_config(at, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn sector_sizes_reach_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_image(dir.path(), DISK);
    for (logical, physical, exp, min_io) in [
        (512u32, 512u32, 0u8, 1u16),
        (512, 4096, 3, 8),
        (4096, 4096, 0, 1),
    ] {
        let image = Arc::new(Sectors {
            inner: raw.clone(),
            logical,
            physical,
        });
        let mut rig = Rig::with_image(image);
        assert_eq!(config_u32(&rig.dev, 20), logical, "blk_size");
        let mut topo = [0u8; 4];
        rig.dev.read_config(24, &mut topo);
        assert_eq!(topo[0], exp, "physical_block_exp");
        assert_eq!(topo[1], 0, "alignment_offset");
        assert_eq!(
            u16::from_le_bytes([topo[2], topo[3]]),
            min_io,
            "min_io_size"
        );
        assert_eq!(
            config_u32(&rig.dev, 44),
            physical.max(logical) / 512,
            "discard alignment"
        );
        let mut cap = [0u8; 8];
        rig.dev.read_config(0, &mut cap);
        assert_eq!(
            u64::from_le_bytes(cap),
            DISK / 512,
            "capacity stays in 512-byte sectors"
        );
        // Sector numbers in requests stay 512-byte units.
        let data = pattern(u64::from(logical), 4096);
        assert_eq!(rig.write(8, &data).status, S_OK);
        let mut back = vec![0u8; 4096];
        raw.read_at(&mut back, 8 * 512).unwrap();
        assert_eq!(back, data);
        assert_eq!(rig.read(8, 4096).1, data);
    }
}

#[test]
fn config_reflects_each_backend() {
    each_backend(|b, image| {
        let rig = Rig::with_image(image.clone());
        assert_eq!(
            config_u32(&rig.dev, 20),
            b.logical_sector_size,
            "{}: blk_size",
            b.name
        );
        assert_eq!(config_u32(&rig.dev, 20), image.logical_sector_size());
        let mut topo = [0u8; 1];
        rig.dev.read_config(24, &mut topo);
        let ratio = image.physical_sector_size() / image.logical_sector_size();
        assert_eq!(
            1u32 << topo[0],
            ratio.max(1),
            "{}: physical_block_exp",
            b.name
        );
        let mut unmap = [9u8];
        rig.dev.read_config(56, &mut unmap);
        let fixed_vhd = b.format == vhd::Format::Vhd && b.image_type == vhd::ImageType::Fixed;
        assert_eq!(
            unmap[0],
            u8::from(!fixed_vhd),
            "{}: write_zeroes_may_unmap",
            b.name
        );
        let mut cap = [0u8; 8];
        rig.dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), DISK / 512, "{}", b.name);
    });
}
