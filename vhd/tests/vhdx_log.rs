//! The log our VHDX driver writes, replayed by QEMU and by us.
//!
//! Writes that allocate blocks in a `qemu-img`-made dynamic VHDX go
//! through our driver on a recorded file. For each log entry it commits,
//! the file is rebuilt as a power cut right after the entry became durable
//! would leave it: the entry is in the log, its updates are not in place.
//! QEMU must see a log to replay (it refuses a read-only open), and then
//! `qemu-img check -r all` (QEMU's replay), our read-only open (replay in
//! memory) and our read-write open (replay on disk) must all read the same
//! disk, which holds the writes made before the entry.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::fs::OpenOptions as FsOpenOptions;
use std::process::Command;
use std::sync::{Arc, Mutex};

use vhd::{ChainContext, DiskImage, ImageFile, IoObserver, OpenOptions, VhdxImage};

const MIB: u64 = 1 << 20;

#[derive(Clone, Debug)]
enum Event {
    Write { offset: u64, data: Vec<u8> },
    Zero { offset: u64, len: u64 },
    SetLen(u64),
    Sync,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl IoObserver for Recorder {
    fn write(&self, offset: u64, data: &[u8]) {
        self.0.lock().unwrap().push(Event::Write {
            offset,
            data: data.to_vec(),
        });
    }
    fn sync(&self) {
        self.0.lock().unwrap().push(Event::Sync);
    }
    fn set_len(&self, len: u64) {
        self.0.lock().unwrap().push(Event::SetLen(len));
    }
    fn zero(&self, offset: u64, len: u64) {
        self.0.lock().unwrap().push(Event::Zero { offset, len });
    }
}

fn apply(file: &mut Vec<u8>, e: &Event) {
    let grow = |file: &mut Vec<u8>, end: usize| {
        if file.len() < end {
            file.resize(end, 0);
        }
    };
    match e {
        Event::Write { offset, data } => {
            let at = *offset as usize;
            grow(file, at + data.len());
            file[at..at + data.len()].copy_from_slice(data);
        }
        Event::Zero { offset, len } => {
            let at = *offset as usize;
            grow(file, at + *len as usize);
            file[at..at + *len as usize].fill(0);
        }
        Event::SetLen(len) => file.resize(*len as usize, 0),
        Event::Sync => {}
    }
}

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(&b[at..at + n]);
    u64::from_le_bytes(v)
}

/// LogOffset and LogLength of the header with the larger sequence number
/// (both headers of a fresh qemu-img image are valid).
fn log_region(file: &[u8]) -> (u64, u64) {
    let (a, b) = (64 << 10, 128 << 10);
    let h = if le(file, b + 8, 8) > le(file, a + 8, 8) {
        b
    } else {
        a
    };
    (le(file, h + 72, 8), le(file, h + 68, 4))
}

#[test]
fn qemu_replays_the_log_our_driver_writes() {
    common::require_tool("qemu-img", "apt-get install qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let size = 8 * MIB;
    let image = d.join("disk.vhdx");
    common::qemu_img(&[
        "create",
        "-q",
        "-f",
        "vhdx",
        "-o",
        "subformat=dynamic,block_size=1M",
        image.to_str().unwrap(),
        &size.to_string(),
    ]);
    let initial = std::fs::read(&image).unwrap();
    let (log_at, log_len) = log_region(&initial);

    // Allocating writes in four blocks, each followed by a flush.
    let recorder = Arc::new(Recorder::default());
    let f = FsOpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    let ctx = ChainContext {
        depth: 1,
        allowed_dirs: vec![d.canonicalize().unwrap()],
        options: OpenOptions::default(),
    };
    let disk = VhdxImage::open(
        ImageFile::with_observer(f, &image, recorder.clone()),
        false,
        &ctx,
    )
    .unwrap();
    let mut model = vec![0u8; size as usize];
    let mut models = Vec::new();
    for (i, block) in [1u64, 6, 3, 7].into_iter().enumerate() {
        let data = common::prng_bytes(40 + i as u64, 200 << 10);
        let at = block * MIB + 4096 * (i as u64 + 1);
        disk.write_at(&data, at).unwrap();
        model[at as usize..at as usize + data.len()].copy_from_slice(&data);
        disk.flush().unwrap();
        models.push(model.clone());
    }
    drop(disk);
    let events = recorder.0.lock().unwrap().clone();

    // Every log entry that became durable: the crash point is its sync.
    let in_log = |e: &Event| matches!(e, Event::Write { offset, .. } if *offset >= log_at && *offset < log_at + log_len);
    let crash_points: Vec<usize> = (0..events.len())
        .filter(|&i| in_log(&events[i]))
        .filter_map(|i| (i..events.len()).find(|&j| matches!(events[j], Event::Sync)))
        .collect();
    assert_eq!(crash_points.len(), 4, "one log entry per allocation");

    for (n, &point) in crash_points.iter().enumerate() {
        let what = format!("crash after log entry {n}");
        let mut bytes = initial.clone();
        for e in &events[..=point] {
            apply(&mut bytes, e);
        }
        let dirty = d.join(format!("dirty{n}.vhdx"));
        std::fs::write(&dirty, &bytes).unwrap();
        let theirs = d.join(format!("theirs{n}.vhdx"));
        let ours = d.join(format!("ours{n}.vhdx"));
        std::fs::copy(&dirty, &theirs).unwrap();
        std::fs::copy(&dirty, &ours).unwrap();

        let info = Command::new("qemu-img")
            .args(["info", dirty.to_str().unwrap()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&info.stderr);
        assert!(
            !info.status.success() && said.contains("log that needs to be replayed"),
            "{what}: qemu-img sees no log to replay: {said}"
        );
        common::qemu_img(&["check", "-q", "-r", "all", theirs.to_str().unwrap()]);

        let ro = common::open_ro(&dirty);
        assert_eq!(ro.info().log_dirty, Some(true), "{what}");
        let in_memory = common::read_all(&ro);
        drop(ro);
        let rw = common::open_rw(&ours);
        let replayed = common::read_all(&rw);
        drop(rw);
        common::assert_same(&format!("{what}: read-only"), &in_memory, &replayed);
        let raw = d.join(format!("replayed{n}.raw"));
        common::write_raw(&raw, &replayed);
        common::qemu_img(&[
            "compare",
            "-q",
            "-f",
            "vhdx",
            "-F",
            "raw",
            theirs.to_str().unwrap(),
            raw.to_str().unwrap(),
        ]);
        // Entry n carries the BAT update of the n-th allocation, whose data
        // was flushed before it: replay shows exactly the first n + 1 writes.
        common::assert_same(&format!("{what}: content"), &replayed, &models[n]);
        // Space allocated after the entry may leak; nothing may be wrong.
        let report = vhd::check(&ours, false).unwrap();
        assert_eq!(
            report.count(vhd::Severity::Error),
            0,
            "{what}: {:?}",
            report.findings
        );
    }
}
