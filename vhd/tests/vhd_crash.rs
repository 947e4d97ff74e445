//! Crash consistency of dynamic and differencing VHD: every write and sync a
//! workload makes is recorded through `IoObserver`; the file is rebuilt as a
//! power cut after every prefix of that sequence would leave it (at each
//! sync point and at every torn point between them); each rebuilt file must
//! open, every write covered by a completed flush must read back, and every
//! other byte must hold either its durable value or a value a later write
//! put there (never stale or foreign data). The check's repair must leave a
//! clean image with the same content.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use vhd::{
    ChainContext, CreateOptions, DiskImage, Format, ImageFile, ImageType, IoObserver, OpenOptions,
    VhdImage,
};

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Sync,
    SetLen(u64),
    Zero(u64, u64),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Op>>);

impl Recorder {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl IoObserver for Recorder {
    fn write(&self, offset: u64, data: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push(Op::Write(offset, data.to_vec()));
    }
    fn sync(&self) {
        self.0.lock().unwrap().push(Op::Sync);
    }
    fn set_len(&self, len: u64) {
        self.0.lock().unwrap().push(Op::SetLen(len));
    }
    fn zero(&self, offset: u64, len: u64) {
        self.0.lock().unwrap().push(Op::Zero(offset, len));
    }
}

fn apply(file: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(off, data) => {
            let (o, end) = (*off as usize, *off as usize + data.len());
            if file.len() < end {
                file.resize(end, 0);
            }
            file[o..end].copy_from_slice(data);
        }
        Op::Sync => {}
        Op::SetLen(l) => file.resize(*l as usize, 0),
        Op::Zero(off, len) => {
            let o = (*off as usize).min(file.len());
            let end = ((off + len) as usize).min(file.len());
            file[o..end].fill(0);
        }
    }
}

/// A write the workload issued: where the recorded log stood when it
/// began, and what it put on the disk.
struct Issued {
    log_at: usize,
    offset: usize,
    data: Vec<u8>,
}

fn run(name: &str, dir: &Path, image_path: &Path, initial_content: Vec<u8>, seed: u64) {
    let initial_file = std::fs::read(image_path).unwrap();
    let size = initial_content.len();
    let recorder = Arc::new(Recorder::default());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image_path)
        .unwrap();
    let file = ImageFile::with_observer(f, image_path, recorder.clone());
    let ctx = ChainContext {
        depth: 1,
        allowed_dirs: vec![dir.canonicalize().unwrap()],
        options: OpenOptions::default(),
    };
    let img = VhdImage::open(file, false, &ctx).unwrap();
    let mut model = initial_content.clone();
    let mut durable: Vec<(usize, Vec<u8>)> = vec![(0, initial_content)];
    let mut issued: Vec<Issued> = Vec::new();
    let mut rng = SmallRng::seed_from_u64(seed);
    for _ in 0..60 {
        let len = match rng.random_range(0..3) {
            0 => rng.random_range(1..1500),
            1 => 4096,
            _ => rng.random_range(1..40_000),
        }
        .min(size);
        let mut off = rng.random_range(0..=size - len);
        if rng.random_bool(0.3) {
            off -= off % 4096;
        }
        let log_at = recorder.len();
        let data = match rng.random_range(0..10) {
            0 => {
                img.write_zeroes(off as u64, len as u64).unwrap();
                vec![0; len]
            }
            1 => {
                img.discard(off as u64, len as u64).unwrap();
                vec![0; len]
            }
            _ => {
                let mut d = vec![0u8; len];
                rng.fill_bytes(&mut d);
                img.write_at(&d, off as u64).unwrap();
                d
            }
        };
        model[off..off + len].copy_from_slice(&data);
        issued.push(Issued {
            log_at,
            offset: off,
            data,
        });
        if rng.random_range(0..4) == 0 {
            img.flush().unwrap();
            durable.push((recorder.len(), model.clone()));
        }
    }
    img.flush().unwrap();
    durable.push((recorder.len(), model.clone()));
    drop(img);
    let log = recorder.0.lock().unwrap().clone();
    let rebuilt = dir.join("rebuilt.vhd");
    let check = |file: &[u8], cut: usize, at: &str| {
        std::fs::write(&rebuilt, file).unwrap();
        let img = vhd::open(&rebuilt, &OpenOptions::read_only())
            .unwrap_or_else(|e| panic!("{at}: does not open: {e}"));
        assert_eq!(img.virtual_size() as usize, size, "{at}");
        let mut got = vec![0u8; size];
        img.read_at(&mut got, 0).unwrap();
        drop(img);
        let (durable_at, want) = durable.iter().rev().find(|(i, _)| *i <= cut).unwrap();
        for (b, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
            if g == w {
                continue;
            }
            let later = issued.iter().any(|w| {
                w.log_at >= *durable_at
                    && w.log_at < cut
                    && (w.offset..w.offset + w.data.len()).contains(&b)
                    && w.data[b - w.offset] == g
            });
            assert!(
                later,
                "{at}: byte {b:#x} reads {g:#04x}, durable value {w:#04x}, and no later write put it there"
            );
        }
        // The repair leaves a clean image with the same content.
        let report = vhd::check(&rebuilt, true).unwrap();
        let after = vhd::check(&rebuilt, false).unwrap();
        assert!(
            after.is_clean(),
            "{at}: after repair {after:?} (repair said {report:?})"
        );
        let img = vhd::open(&rebuilt, &OpenOptions::read_only()).unwrap();
        let mut again = vec![0u8; size];
        img.read_at(&mut again, 0).unwrap();
        assert!(again == got, "{at}: repair changed the content");
    };
    let mut file = initial_file.clone();
    // The file as of the last sync, and how many operations that covers.
    let mut synced = (initial_file, 0usize);
    let mut syncs = 0;
    for cut in 0..=log.len() {
        if cut > 0 {
            let op = &log[cut - 1];
            apply(&mut file, op);
            if matches!(op, Op::Sync) {
                syncs += 1;
                synced = (file.clone(), cut);
            } else if matches!(op, Op::Write(..)) && synced.1 < cut - 1 {
                // Torn the other way: the disk kept this write and lost the
                // ones before it since the last sync.
                let mut reordered = synced.0.clone();
                apply(&mut reordered, op);
                let at = format!(
                    "{name}: only operation {cut} after the sync at {}",
                    synced.1
                );
                check(&reordered, cut, &at);
            }
        }
        let at = format!("{name}: cut after {cut} of {} operations", log.len());
        check(&file, cut, &at);
    }
    assert!(syncs > 10, "{name}: the workload synced {syncs} times");
}

#[test]
fn dynamic_vhd_survives_a_power_cut_anywhere() {
    for seed in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.vhd");
        let size = 2 << 20;
        let mut o = CreateOptions::new(Format::Vhd, ImageType::Dynamic, size);
        o.block_size = Some(64 << 10);
        drop(vhd::create(&p, &o).unwrap());
        run("dynamic", dir.path(), &p, vec![0; size as usize], seed);
    }
}

#[test]
fn differencing_vhd_survives_a_power_cut_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("parent.vhd");
    let size = (2 << 20) + 1536;
    let mut content = vec![0u8; size];
    SmallRng::seed_from_u64(5).fill_bytes(&mut content);
    {
        let img = vhd::create(
            &parent,
            &CreateOptions::new(Format::Vhd, ImageType::Dynamic, size as u64),
        )
        .unwrap();
        img.write_at(&content, 0).unwrap();
        img.flush().unwrap();
    }
    let child = dir.path().join("child.vhd");
    let mut o = CreateOptions::differencing(Format::Vhd, &parent);
    o.block_size = Some(64 << 10);
    drop(vhd::create(&child, &o).unwrap());
    run("differencing", dir.path(), &child, content, 11);
}

/// The table entry of a new block reaches the file only when a flush has
/// made the block's data durable (nothing then points at a block a power
/// cut could lose), and dropping the image without a flush still links it.
#[test]
fn new_blocks_are_linked_by_flush_and_by_drop() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("disk.vhd");
    let o = CreateOptions::new(Format::Vhd, ImageType::Dynamic, 8 << 20);
    drop(vhd::create(&p, &o).unwrap());
    let allocated = |path: &Path| {
        vhd::check(path, false)
            .unwrap_or_else(|e| panic!("check: {e}"))
            .allocated_blocks
    };
    let data = vec![0x5Au8; 4096];

    let img = vhd::open(&p, &OpenOptions::default()).unwrap();
    img.write_at(&data, 3 << 20).unwrap();
    let mut got = vec![0u8; 4096];
    img.read_at(&mut got, 3 << 20).unwrap();
    assert_eq!(got, data, "the new block reads back before any flush");
    assert_eq!(allocated(&p), 0, "no table entry before the flush");
    img.flush().unwrap();
    assert_eq!(allocated(&p), 1, "the flush links the block");

    img.write_at(&data, 5 << 20).unwrap();
    assert_eq!(allocated(&p), 1);
    drop(img);
    assert_eq!(allocated(&p), 2, "dropping the image links the block");
    let img = vhd::open(&p, &OpenOptions::read_only()).unwrap();
    img.read_at(&mut got, 5 << 20).unwrap();
    assert_eq!(got, data);
}
