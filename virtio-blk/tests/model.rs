//! Random sequences of well-formed requests, in random descriptor layouts,
//! checked against an in-memory model of the disk; and image failures
//! reported as I/O errors without breaking the queue.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{DiskImage, Extent, ImageInfo};

const DISK: u64 = 1 << 20;
const SECTORS: u64 = DISK / 512;

/// Splits `len` bytes at `addr` into 1 to 4 buffers of random sizes.
fn split(rng: &mut SmallRng, addr: u64, len: u32, write: bool) -> Vec<Buf> {
    let mut cuts: Vec<u32> = (0..rng.random_range(0..4))
        .map(|_| rng.random_range(0..=len))
        .collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| Buf {
            addr: addr + u64::from(w[0]),
            len: w[1] - w[0],
            write,
        })
        .collect()
}

/// Submits header + data + status in a random layout; returns head and
/// status address.
fn submit(
    rng: &mut SmallRng,
    d: &mut Driver,
    kind: u32,
    sector: u64,
    data: Option<(u64, u32, bool)>,
) -> (u16, u64) {
    let h = d.place_header(kind, sector);
    let s = d.place_status();
    let mut bufs = split(rng, h, 16, false);
    if let Some((addr, len, write)) = data {
        bufs.extend(split(rng, addr, len, write));
    }
    bufs.push(Buf::w(s, 1));
    let head = if rng.random_bool(0.3) {
        d.submit_indirect(&bufs)
    } else {
        d.submit(&bufs)
    };
    (head, s)
}

#[test]
fn random_requests_match_a_model() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let image = make_image(dir.path(), backend, DISK);
        let mut rig = Rig::with_image(image.clone());
        let mut model = vec![0u8; DISK as usize];
        let mut rng = SmallRng::seed_from_u64(42);
        for op in 0..400 {
            let sectors = rng.random_range(1..=32u64);
            let sector = rng.random_range(0..=SECTORS - sectors);
            let len = (sectors * 512) as u32;
            let at = (sector * 512) as usize..(sector * 512) as usize + len as usize;
            let choice = rng.random_range(0..10);
            let d = rig.d();
            let (head, s, check) = match choice {
                0..=3 => {
                    let buf = d.alloc(u64::from(len));
                    d.write(buf, &vec![0xcc; len as usize]);
                    let (head, s) = submit(&mut rng, d, T_IN, sector, Some((buf, len, true)));
                    (head, s, Some(buf))
                }
                4..=7 => {
                    let data = pattern(op, len as usize);
                    let buf = d.alloc(u64::from(len));
                    d.write(buf, &data);
                    let (head, s) = submit(&mut rng, d, T_OUT, sector, Some((buf, len, false)));
                    model[at.clone()].copy_from_slice(&data);
                    (head, s, None)
                }
                8 => {
                    let kind = if rng.random_bool(0.5) {
                        T_DISCARD
                    } else {
                        T_WRITE_ZEROES
                    };
                    let flags = if kind == T_WRITE_ZEROES {
                        rng.random_range(0..2)
                    } else {
                        0
                    };
                    let buf = d.alloc(16);
                    d.write(buf, &range(sector, sectors as u32, flags));
                    let (head, s) = submit(&mut rng, d, kind, 0, Some((buf, 16, false)));
                    model[at.clone()].fill(0);
                    (head, s, None)
                }
                _ => {
                    let (head, s) = submit(&mut rng, d, T_FLUSH, 0, None);
                    (head, s, None)
                }
            };
            rig.dev.process_queue(0).unwrap();
            let (id, _) = rig.d().pop_used().expect("completion");
            assert_eq!(id, u32::from(head));
            assert_eq!(
                rig.d().byte(s),
                S_OK,
                "{}: op {op} ({choice})",
                backend.name
            );
            if let Some(buf) = check {
                let got = rig.d().read(buf, len as usize);
                assert!(
                    got == model[at],
                    "{}: op {op}: read of {sectors} sectors at {sector}",
                    backend.name
                );
            }
        }
        let mut all = vec![0u8; DISK as usize];
        image.read_at(&mut all, 0).unwrap();
        assert!(all == model, "{}: final image content", backend.name);
    }
}

/// An image whose operations fail while `fail` is set.
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn DiskImage>,
    fail: AtomicBool,
    fail_flush: AtomicBool,
}

impl Flaky {
    fn check(&self) -> vhd::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            Err(vhd::Error::InvalidArgument("injected failure".into()))
        } else {
            Ok(())
        }
    }
}

impl DiskImage for Flaky {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }
    fn logical_sector_size(&self) -> u32 {
        512
    }
    fn physical_sector_size(&self) -> u32 {
        512
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> vhd::Result<()> {
        self.check()?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> vhd::Result<()> {
        self.check()?;
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> vhd::Result<()> {
        self.check()?;
        if self.fail_flush.load(Ordering::SeqCst) {
            return Err(vhd::Error::InvalidArgument("injected flush failure".into()));
        }
        self.inner.flush()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.check()?;
        self.inner.write_zeroes(offset, len)
    }
    fn discard(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.check()?;
        self.inner.discard(offset, len)
    }
    fn block_status(&self, offset: u64, len: u64) -> vhd::Result<Extent> {
        self.inner.block_status(offset, len)
    }
    fn info(&self) -> ImageInfo {
        self.inner.info()
    }
}

#[test]
fn image_failures_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky {
        inner: raw_image(dir.path(), DISK),
        fail: AtomicBool::new(true),
        fail_flush: AtomicBool::new(false),
    });
    let mut rig = Rig::with_image(flaky.clone());
    assert_eq!(
        rig.bare(T_FLUSH, 0).status,
        S_IOERR,
        "a failed flush is not acknowledged"
    );
    assert_eq!(rig.write(0, &[1u8; 512]).status, S_IOERR);
    assert_eq!(
        rig.read(0, 512).0,
        Done {
            status: S_IOERR,
            used_len: 0
        }
    );
    assert_eq!(rig.ranges(T_DISCARD, &[range(0, 8, 0)]).status, S_IOERR);
    assert_eq!(
        rig.ranges(T_WRITE_ZEROES, &[range(0, 8, 1)]).status,
        S_IOERR
    );
    flaky.fail.store(false, Ordering::SeqCst);
    rig.assert_healthy();
    // Writethrough: a write whose flush fails is not acknowledged.
    rig.dev.write_config(32, &[0]);
    flaky.fail_flush.store(true, Ordering::SeqCst);
    assert_eq!(rig.write(0, &[2u8; 512]).status, S_IOERR);
    // Writeback: the same write completes; the FLUSH reports the failure.
    rig.dev.write_config(32, &[1]);
    assert_eq!(rig.write(0, &[2u8; 512]).status, S_OK);
    assert_eq!(rig.bare(T_FLUSH, 0).status, S_IOERR);
    flaky.fail_flush.store(false, Ordering::SeqCst);
    assert_eq!(rig.bare(T_FLUSH, 0).status, S_OK);
}
