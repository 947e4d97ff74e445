//! VHD (fixed, dynamic, differencing) through the conformance suite and the
//! model test.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;

use common::Made;
use vhd::{CreateOptions, DiskImage, Format, ImageType};

fn make(kind: ImageType, block_size: Option<u64>) -> impl Fn(&Path, u64) -> Made + Sync {
    move |dir: &Path, size: u64| {
        let path = dir.join("disk.vhd");
        let mut o = CreateOptions::new(Format::Vhd, kind, size);
        o.block_size = block_size;
        vhd::create(&path, &o).expect("create vhd");
        Made {
            path,
            expected: vec![0; size as usize],
        }
    }
}

/// A differencing VHD over a parent of `parent_format` that holds seeded
/// data in every other 1 MiB run.
fn make_differencing(parent_format: Format) -> impl Fn(&Path, u64) -> Made + Sync {
    move |dir: &Path, size: u64| {
        let parent = dir.join("parent.img");
        let kind = match parent_format {
            Format::Raw => ImageType::Fixed,
            _ => ImageType::Dynamic,
        };
        let mut data = common::prng_bytes(size, size as usize);
        for (i, run) in data.chunks_mut(1 << 20).enumerate() {
            if i % 2 == 1 {
                run.fill(0);
            }
        }
        {
            let p = vhd::create(&parent, &CreateOptions::new(parent_format, kind, size))
                .expect("create parent");
            for (i, run) in data.chunks(1 << 20).enumerate() {
                if i % 2 == 0 {
                    p.write_at(run, (i as u64) << 20).expect("fill parent");
                }
            }
            p.flush().expect("flush parent");
        }
        let path = dir.join("child.vhd");
        vhd::create(&path, &CreateOptions::differencing(Format::Vhd, &parent))
            .expect("create child");
        Made {
            path,
            expected: data,
        }
    }
}

#[test]
fn vhd_fixed_conforms() {
    common::conformance("vhd fixed", &make(ImageType::Fixed, None), 6 << 20);
}

#[test]
fn vhd_dynamic_conforms() {
    common::conformance("vhd dynamic", &make(ImageType::Dynamic, None), 8 << 20);
}

#[test]
fn vhd_dynamic_small_blocks_conform() {
    common::conformance(
        "vhd dynamic 64k blocks",
        &make(ImageType::Dynamic, Some(64 << 10)),
        (3 << 20) + 512,
    );
}

#[test]
fn vhd_differencing_conforms() {
    common::conformance(
        "vhd differencing over vhd",
        &make_differencing(Format::Vhd),
        8 << 20,
    );
}

#[test]
fn vhd_differencing_over_raw_conforms() {
    common::conformance(
        "vhd differencing over raw",
        &make_differencing(Format::Raw),
        (6 << 20) + 1024,
    );
}

#[test]
fn vhd_differencing_over_vhdx_conforms() {
    common::conformance(
        "vhd differencing over vhdx",
        &make_differencing(Format::Vhdx),
        4 << 20,
    );
}

#[test]
fn vhd_matches_the_model() {
    for seed in 0..2 {
        common::model(
            "vhd fixed",
            &make(ImageType::Fixed, None),
            5 << 20,
            seed,
            250,
        );
        common::model(
            "vhd dynamic",
            &make(ImageType::Dynamic, None),
            (7 << 20) + 512,
            seed,
            250,
        );
        common::model(
            "vhd dynamic 4k blocks",
            &make(ImageType::Dynamic, Some(4096)),
            1 << 20,
            seed,
            250,
        );
        common::model(
            "vhd differencing",
            &make_differencing(Format::Vhd),
            6 << 20,
            seed,
            250,
        );
    }
}

/// Writers on disjoint slices allocate blocks (some shared at slice edges)
/// while readers read and a flusher flushes; afterwards, and after a
/// reopen, every byte is what its writer put there.
#[test]
fn vhd_concurrent_allocation_with_flushes() {
    use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
    use std::sync::atomic::{AtomicBool, Ordering};
    for (name, factory) in [
        (
            "dynamic",
            Box::new(make(ImageType::Dynamic, Some(64 << 10)))
                as Box<dyn Fn(&Path, u64) -> Made + Sync>,
        ),
        ("differencing", Box::new(make_differencing(Format::Vhd))),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let size = 4u64 << 20;
        let made = factory(dir.path(), size);
        let img = common::open_rw(&made.path);
        let threads = 4u64;
        // Slices that do not start on block or grain boundaries.
        let slice = size / threads - 1000;
        let done = AtomicBool::new(false);
        let mut expected = made.expected.clone();
        let writes: Vec<Vec<(u64, Vec<u8>)>> = (0..threads)
            .map(|t| {
                let mut rng = SmallRng::seed_from_u64(t);
                (0..60)
                    .map(|_| {
                        let len = rng.random_range(1..20_000u64);
                        let off = t * slice + rng.random_range(0..slice - len);
                        let mut d = vec![0u8; len as usize];
                        rng.fill_bytes(&mut d);
                        (off, d)
                    })
                    .collect()
            })
            .collect();
        std::thread::scope(|s| {
            let img = &img;
            let done = &done;
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    img.flush().unwrap();
                }
            });
            s.spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut off = 0;
                while !done.load(Ordering::Relaxed) {
                    img.read_at(&mut buf, off).unwrap();
                    off = (off + 4096 * 7) % (size - buf.len() as u64);
                }
            });
            let writers: Vec<_> = writes
                .iter()
                .map(|w| {
                    s.spawn(move || {
                        for (off, d) in w {
                            img.write_at(d, *off).unwrap();
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        for w in &writes {
            for (off, d) in w {
                expected[*off as usize..*off as usize + d.len()].copy_from_slice(d);
            }
        }
        common::assert_same(name, &common::read_all(&img), &expected);
        img.flush().unwrap();
        drop(img);
        let img = common::open_ro(&made.path);
        common::assert_same(name, &common::read_all(&img), &expected);
        let report = vhd::check(&made.path, false).unwrap();
        assert!(report.is_clean(), "{name}: {report:?}");
    }
}
