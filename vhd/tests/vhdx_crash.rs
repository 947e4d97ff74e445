//! Crash consistency: what a power cut at any moment of a workload leaves.
//!
//! An image is opened on an [`ImageFile`] whose [`IoObserver`] records every
//! write, zeroing, length change and flush of the file, in order, and a
//! seeded random workload runs on it (allocating writes, write_zeroes,
//! discard, flushes, a resize). Then, for every interval between two file
//! flushes, files are rebuilt from the initial bytes plus everything before
//! the interval and part of it: a prefix, random subsets (writes not yet
//! flushed may reach the disk in any order) and writes torn at 4 KiB, log
//! entries first. Each rebuilt file must open (replaying its log), pass
//! `vhd::check` without errors, read the same opened read-only (log
//! replayed in memory) and read-write, and hold every write that a
//! completed flush covered: a sector no operation touched since the last
//! completed flush reads as it was then, a sector touched since reads as
//! one of the values it has had since.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions as FsOpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{
    ChainContext, CreateOptions, DiskImage, Format, Image, ImageFile, ImageType, IoObserver,
    OpenOptions, RawImage, Severity, VhdxImage,
};

const SECTOR: u64 = 512;

/// One thing that happened to the file, or a marker the workload left.
#[derive(Clone, Debug)]
enum Event {
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    SetLen(u64),
    Sync,
    /// The workload started guest operation `n` (index into the op list).
    OpStarted(usize),
    /// The workload's flush number `n` returned.
    FlushReturned(usize),
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }
}

impl IoObserver for Recorder {
    fn write(&self, offset: u64, data: &[u8]) {
        self.push(Event::Write {
            offset,
            data: data.to_vec(),
        });
    }
    fn sync(&self) {
        self.push(Event::Sync);
    }
    fn set_len(&self, len: u64) {
        self.push(Event::SetLen(len));
    }
    fn zero(&self, offset: u64, len: u64) {
        self.push(Event::Zero { offset, len });
    }
}

/// A format under test: how to make an image and open it on an observed file.
trait Subject {
    fn name(&self) -> &'static str;
    /// Creates the image in `dir` and returns its path and the content it
    /// reads as (zeros, or its parent's).
    fn create(&self, dir: &Path, size: u64) -> (PathBuf, Vec<u8>);
    /// Opens the image read-write on `file`.
    fn open_on(&self, file: ImageFile, path: &Path) -> Image;
    /// Where the log lives in the file, for formats that have one.
    fn log_region(&self, _initial: &[u8]) -> Option<(u64, u64)> {
        None
    }
}

struct Raw;

impl Subject for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }
    fn create(&self, dir: &Path, size: u64) -> (PathBuf, Vec<u8>) {
        let path = dir.join("disk.img");
        vhd::create(
            &path,
            &CreateOptions::new(Format::Raw, ImageType::Dynamic, size),
        )
        .unwrap();
        (path, vec![0; size as usize])
    }
    fn open_on(&self, file: ImageFile, _path: &Path) -> Image {
        Image::Raw(RawImage::from_file(file, false).unwrap())
    }
}

/// VHDX with 1 MiB blocks, so that a small disk has many blocks; the
/// differencing one over a parent holding seeded data in half its blocks.
struct Vhdx {
    differencing: bool,
}

impl Subject for Vhdx {
    fn name(&self) -> &'static str {
        if self.differencing {
            "vhdx differencing"
        } else {
            "vhdx dynamic"
        }
    }

    fn create(&self, dir: &Path, size: u64) -> (PathBuf, Vec<u8>) {
        let mut options = CreateOptions::new(Format::Vhdx, ImageType::Dynamic, size);
        options.block_size = Some(1 << 20);
        if !self.differencing {
            let path = dir.join("disk.vhdx");
            drop(vhd::create(&path, &options).unwrap());
            return (path, vec![0; size as usize]);
        }
        let parent = dir.join("parent.vhdx");
        let image = vhd::create(&parent, &options).unwrap();
        let mut content = vec![0u8; size as usize];
        for block in (0..size >> 20).step_by(2) {
            let data = common::prng_bytes(block, 1 << 20);
            let at = (block << 20) as usize;
            image
                .write_at(&data[..(1 << 20) - 4096], at as u64)
                .unwrap();
            content[at..at + (1 << 20) - 4096].copy_from_slice(&data[..(1 << 20) - 4096]);
        }
        image.flush().unwrap();
        drop(image);
        let path = dir.join("disk.vhdx");
        let mut child = CreateOptions::differencing(Format::Vhdx, &parent);
        child.block_size = Some(1 << 20);
        drop(vhd::create(&path, &child).unwrap());
        (path, content)
    }

    fn open_on(&self, file: ImageFile, path: &Path) -> Image {
        let dir = path.parent().unwrap().canonicalize().unwrap();
        let ctx = ChainContext {
            depth: 1,
            allowed_dirs: vec![dir],
            options: OpenOptions::default(),
        };
        Image::Vhdx(VhdxImage::open(file, false, &ctx).unwrap())
    }

    fn log_region(&self, initial: &[u8]) -> Option<(u64, u64)> {
        // The current header (MS-VHDX 2.2.2): valid, larger sequence number.
        let le = |at: usize, n: usize| {
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&initial[at..at + n]);
            u64::from_le_bytes(v)
        };
        let valid = |at: usize| {
            let mut h = initial[at..at + 4096].to_vec();
            h[4..8].fill(0);
            &initial[at..at + 4] == b"head" && le(at + 4, 4) == u64::from(crc32c(&h))
        };
        let h = match (valid(64 << 10), valid(128 << 10)) {
            (true, true) if le((128 << 10) + 8, 8) > le((64 << 10) + 8, 8) => 128 << 10,
            (true, _) => 64 << 10,
            _ => 128 << 10,
        };
        Some((le(h + 72, 8), le(h + 68, 4)))
    }
}

/// CRC-32C (Castagnoli), bit by bit: the tests' own, independent of the crate's.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A guest-visible operation of the workload.
#[derive(Clone, Debug)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    WriteZeroes { offset: u64, len: u64 },
    Discard { offset: u64, len: u64 },
    Flush,
    Grow(u64),
}

fn workload(seed: u64, size: u64, count: usize) -> Vec<Op> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut ops = Vec::new();
    let mut size = size;
    for i in 0..count {
        let roll = rng.random_range(0..100);
        let sectors = size / SECTOR;
        let start = rng.random_range(0..sectors);
        let n = rng.random_range(1..=(sectors - start).min(160));
        let (offset, len) = (start * SECTOR, n * SECTOR);
        ops.push(match roll {
            _ if i == count / 2 => Op::Grow(size + (2 << 20)),
            0..=54 => {
                let mut data = vec![0u8; len as usize];
                rng.fill(&mut data[..]);
                Op::Write { offset, data }
            }
            55..=64 => Op::WriteZeroes { offset, len },
            65..=72 => Op::Discard { offset, len },
            _ => Op::Flush,
        });
        if let Op::Grow(s) = ops[ops.len() - 1] {
            size = s;
        }
    }
    ops.push(Op::Flush);
    ops
}

/// The disk's content as the ops leave it (grown disks read zeros at the end).
fn apply_op(model: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, data } => {
            model[*offset as usize..*offset as usize + data.len()].copy_from_slice(data)
        }
        Op::WriteZeroes { offset, len } | Op::Discard { offset, len } => {
            model[*offset as usize..(*offset + *len) as usize].fill(0)
        }
        Op::Grow(size) => model.resize(*size as usize, 0),
        Op::Flush => {}
    }
}

/// Runs `ops` on an observed image and returns what the file saw.
fn record(subject: &dyn Subject, path: &Path, ops: &[Op]) -> Vec<Event> {
    let recorder = Arc::new(Recorder::default());
    let f = FsOpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let file = ImageFile::with_observer(f, path, recorder.clone());
    let image = subject.open_on(file, path);
    let mut flushes = 0;
    for (i, op) in ops.iter().enumerate() {
        recorder.push(Event::OpStarted(i));
        match op {
            Op::Write { offset, data } => image.write_at(data, *offset).unwrap(),
            Op::WriteZeroes { offset, len } => image.write_zeroes(*offset, *len).unwrap(),
            Op::Discard { offset, len } => image.discard(*offset, *len).unwrap(),
            Op::Grow(size) => image.resize(*size).unwrap(),
            Op::Flush => {
                image.flush().unwrap();
                recorder.push(Event::FlushReturned(flushes));
                flushes += 1;
            }
        }
    }
    drop(image);
    recorder.events.lock().unwrap().clone()
}

/// Applies one file event to the bytes of a rebuilt file.
fn replay_event(file: &mut Vec<u8>, e: &Event) {
    match e {
        Event::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if file.len() < end {
                file.resize(end, 0);
            }
            file[*offset as usize..end].copy_from_slice(data);
        }
        Event::Zero { offset, len } => {
            let end = (*offset + *len) as usize;
            if file.len() < end {
                file.resize(end, 0);
            }
            file[*offset as usize..end].fill(0);
        }
        Event::SetLen(len) => file.resize(*len as usize, 0),
        Event::Sync | Event::OpStarted(_) | Event::FlushReturned(_) => {}
    }
}

/// A file as a power cut could leave it, and what it must read as.
struct CrashState {
    what: String,
    bytes: Vec<u8>,
    /// Index in the event list of the next flush (the interval's end).
    interval_end: usize,
}

/// What each sector may read as for crash states of one interval.
struct Expectation {
    /// The disk at the last completed flush.
    durable: Vec<u8>,
    /// Sizes the disk may have.
    sizes: Vec<u64>,
    /// For sectors touched since that flush, every value they had since.
    touched: HashMap<u64, Vec<Vec<u8>>>,
}

fn expectation(initial: &[u8], ops: &[Op], events: &[Event], interval_end: usize) -> Expectation {
    // Completed flushes: those that returned before the interval's end flush.
    let last_flush = events[..interval_end].iter().rev().find_map(|e| match e {
        Event::FlushReturned(n) => Some(*n),
        _ => None,
    });
    let started = events[..interval_end]
        .iter()
        .filter_map(|e| match e {
            Event::OpStarted(i) => Some(*i),
            _ => None,
        })
        .max()
        .map_or(0, |i| i + 1);
    // Op index right after the last completed flush.
    let mut flushes = 0;
    let mut from = 0;
    if let Some(last) = last_flush {
        for (i, op) in ops.iter().enumerate() {
            if matches!(op, Op::Flush) {
                if flushes == last {
                    from = i + 1;
                    break;
                }
                flushes += 1;
            }
        }
    }
    let mut model = initial.to_vec();
    for op in &ops[..from] {
        apply_op(&mut model, op);
    }
    let durable = model.clone();
    let mut sizes = vec![durable.len() as u64];
    let mut touched: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    for op in &ops[from..started.max(from)] {
        apply_op(&mut model, op);
        let range = match op {
            Op::Write { offset, data } => Some((*offset, data.len() as u64)),
            Op::WriteZeroes { offset, len } | Op::Discard { offset, len } => Some((*offset, *len)),
            Op::Grow(size) => {
                sizes.push(*size);
                None
            }
            Op::Flush => None,
        };
        if let Some((offset, len)) = range {
            for s in (offset / SECTOR)..(offset + len).div_ceil(SECTOR) {
                let at = (s * SECTOR) as usize;
                touched
                    .entry(s)
                    .or_default()
                    .push(model[at..at + SECTOR as usize].to_vec());
            }
        }
    }
    Expectation {
        durable,
        sizes,
        touched,
    }
}

fn verify(exp: &Expectation, got: &[u8], what: &str) {
    assert!(
        exp.sizes.contains(&(got.len() as u64)),
        "{what}: disk of {} bytes, expected one of {:?}",
        got.len(),
        exp.sizes
    );
    let zeros = [0u8; SECTOR as usize];
    for (s, sector) in got.chunks(SECTOR as usize).enumerate() {
        let s = s as u64;
        let at = (s * SECTOR) as usize;
        let old = exp.durable.get(at..at + SECTOR as usize).unwrap_or(&zeros);
        if sector == old {
            continue;
        }
        let later = exp.touched.get(&s);
        assert!(
            later.is_some_and(|v| v.iter().any(|x| x.as_slice() == sector)),
            "{what}: sector {s} ({:#x}) holds data it never had since the last completed flush{}",
            s * SECTOR,
            if later.is_some() {
                " (it was written since)"
            } else {
                " (not written since: a flushed write was lost)"
            }
        );
    }
}

/// A crash state to build: a name, the events of the interval applied,
/// and a write applied only in the 4 KiB pieces marked true.
type Variant = (String, Vec<usize>, Option<(usize, Vec<bool>)>);

/// Builds every crash state for `events`, a bounded number per interval,
/// and hands each to `check`. Returns how many there were.
fn crash_states(
    initial: &[u8],
    events: &[Event],
    log: Option<(u64, u64)>,
    rng: &mut SmallRng,
    check: &mut dyn FnMut(&CrashState),
) -> usize {
    let syncs: Vec<usize> = (0..events.len())
        .filter(|&i| matches!(events[i], Event::Sync))
        .chain(std::iter::once(events.len()))
        .collect();
    let mut states = 0;
    let mut base = initial.to_vec();
    let mut start = 0;
    for &end in &syncs {
        // Durable so far: everything before `start`, applied to `base`.
        let interval: Vec<usize> = (start..end)
            .filter(|&i| {
                matches!(
                    events[i],
                    Event::Write { .. } | Event::Zero { .. } | Event::SetLen(_)
                )
            })
            .collect();
        let mut variants: Vec<Variant> = vec![
            ("flush point".into(), vec![], None),
            ("interval complete".into(), interval.clone(), None),
        ];
        if interval.len() > 1 {
            let cut = rng.random_range(1..interval.len());
            variants.push(("prefix".into(), interval[..cut].to_vec(), None));
            for k in 0..2 {
                let subset: Vec<usize> = interval
                    .iter()
                    .copied()
                    .filter(|_| rng.random_bool(0.5))
                    .collect();
                variants.push((format!("random subset {k}"), subset, None));
            }
        }
        // The log's writes and the others reach the disk separately: an
        // update applied before its entry is durable shows up here.
        if let Some((lo, len)) = log {
            let in_log = |i: &usize| match &events[*i] {
                Event::Write { offset, .. } => *offset >= lo && *offset < lo + len,
                _ => false,
            };
            let (logged, other): (Vec<usize>, Vec<usize>) =
                interval.iter().copied().partition(in_log);
            if !logged.is_empty() && !other.is_empty() {
                variants.push(("only the log's writes".into(), logged, None));
                variants.push(("all but the log's writes".into(), other, None));
            }
        }
        // Torn writes: log entries first, then any write of several pages.
        let mut multi: Vec<usize> = interval
            .iter()
            .copied()
            .filter(|&i| matches!(&events[i], Event::Write { data, .. } if data.len() > 4096))
            .collect();
        multi.sort_by_key(|&i| match (&events[i], log) {
            (Event::Write { offset, .. }, Some((lo, len)))
                if *offset >= lo && *offset < lo + len =>
            {
                0
            }
            _ => 1,
        });
        for &w in multi.iter().take(2) {
            let Event::Write { data, offset } = &events[w] else {
                unreachable!()
            };
            let pages = data.len().div_ceil(4096);
            let kind = match log {
                Some((lo, len)) if *offset >= lo && *offset < lo + len => "log entry",
                _ => "write",
            };
            let mut keep: Vec<bool> = (0..pages).map(|_| rng.random_bool(0.5)).collect();
            keep[rng.random_range(0..pages)] = false;
            let before: Vec<usize> = interval.iter().copied().filter(|&i| i < w).collect();
            variants.push((
                format!("torn {kind} of {pages} pages"),
                before,
                Some((w, keep)),
            ));
        }
        for (what, chosen, torn) in variants {
            let mut bytes = base.clone();
            for &i in &chosen {
                replay_event(&mut bytes, &events[i]);
            }
            if let Some((w, keep)) = &torn {
                let Event::Write { offset, data } = &events[*w] else {
                    unreachable!()
                };
                for (p, k) in keep.iter().enumerate() {
                    if *k {
                        let lo = p * 4096;
                        let hi = (lo + 4096).min(data.len());
                        replay_event(
                            &mut bytes,
                            &Event::Write {
                                offset: offset + lo as u64,
                                data: data[lo..hi].to_vec(),
                            },
                        );
                    }
                }
            }
            states += 1;
            check(&CrashState {
                what: format!("events {start}..{end}: {what}"),
                bytes,
                interval_end: end,
            });
        }
        for e in &events[start..end] {
            replay_event(&mut base, e);
        }
        start = end + 1;
    }
    states
}

/// How many crash states a run checked.
struct Checked {
    states: usize,
    torn_log_entries: usize,
    /// States whose log had a sequence to replay when opened.
    dirty_logs: usize,
}

/// Records a workload on a fresh image of `subject` and checks every crash
/// state.
fn run(subject: &dyn Subject, seed: u64, size: u64, op_count: usize) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let (path, content) = subject.create(dir.path(), size);
    let initial = std::fs::read(&path).unwrap();
    let ops = workload(seed, size, op_count);
    let events = record(subject, &path, &ops);
    let log = subject.log_region(&initial);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let crashed = dir.path().join("crashed");
    let mut expectations: HashMap<usize, Expectation> = HashMap::new();
    let mut torn_log_entries = 0;
    let mut dirty_logs = 0;
    let mut check = |state: &CrashState| {
        let what = format!("{} seed {seed}: {}", subject.name(), state.what);
        if state.what.contains("torn log entry") {
            torn_log_entries += 1;
        }
        std::fs::write(&crashed, &state.bytes).unwrap();
        let exp = expectations
            .entry(state.interval_end)
            .or_insert_with(|| expectation(&content, &ops, &events, state.interval_end));
        let ro = vhd::open(&crashed, &OpenOptions::read_only())
            .unwrap_or_else(|e| panic!("{what}: read-only open: {e}"));
        let seen_ro = common::read_all(&ro);
        if ro.info().log_dirty == Some(true) {
            dirty_logs += 1;
        }
        drop(ro);
        let rw = vhd::open(&crashed, &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{what}: open: {e}"));
        let seen = common::read_all(&rw);
        drop(rw);
        common::assert_same(
            &format!("{what}: read-only against read-write"),
            &seen_ro,
            &seen,
        );
        verify(exp, &seen, &what);
        let report = vhd::check(&crashed, false).unwrap_or_else(|e| panic!("{what}: check: {e}"));
        assert_eq!(
            report.count(Severity::Error),
            0,
            "{what}: check found errors: {:?}",
            report.findings
        );
    };
    let states = crash_states(&initial, &events, log, &mut rng, &mut check);
    eprintln!(
        "{} seed {seed}: {} ops, {} file events, {states} crash states, \
         {torn_log_entries} with a torn log entry, {dirty_logs} with a log to replay",
        subject.name(),
        ops.len(),
        events.len(),
    );
    Checked {
        states,
        torn_log_entries,
        dirty_logs,
    }
}

#[test]
fn raw_survives_a_power_cut_anywhere() {
    let mut checked = 0;
    for seed in 0..2 {
        checked += run(&Raw, seed, 4 << 20, 40).states;
    }
    assert!(checked > 30, "only {checked} crash states");
}

#[test]
fn dynamic_vhdx_survives_a_power_cut_anywhere() {
    let subject = Vhdx {
        differencing: false,
    };
    let checked = run(&subject, 10, 6 << 20, 40);
    assert!(checked.states > 20, "only {} crash states", checked.states);
    assert!(checked.torn_log_entries > 0, "no torn log entry was tried");
    assert!(checked.dirty_logs > 0, "no state had a log to replay");
}

#[test]
fn differencing_vhdx_survives_a_power_cut_anywhere() {
    let subject = Vhdx { differencing: true };
    let checked = run(&subject, 20, 6 << 20, 30);
    assert!(checked.states > 20, "only {} crash states", checked.states);
    assert!(checked.torn_log_entries > 0, "no torn log entry was tried");
    assert!(checked.dirty_logs > 0, "no state had a log to replay");
}

#[test]
fn the_harness_catches_a_lost_flushed_write() {
    // A rebuilt file that lacks a write a completed flush covered must fail
    // the check: drop the first write before the first flush returned.
    let dir = tempfile::tempdir().unwrap();
    let (path, content) = Raw.create(dir.path(), 1 << 20);
    let initial = std::fs::read(&path).unwrap();
    let ops = vec![
        Op::Write {
            offset: 4096,
            data: vec![7u8; 4096],
        },
        Op::Flush,
        Op::Write {
            offset: 8192,
            data: vec![9u8; 512],
        },
    ];
    let events = record(&Raw, &path, &ops);
    let exp = expectation(&content, &ops, &events, events.len());
    let mut lost = initial.clone();
    lost.resize(1 << 20, 0);
    let err = std::panic::catch_unwind(|| verify(&exp, &lost, "lost write")).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("a flushed write was lost"), "{msg}");
    // And the same file with the write is accepted, with or without the
    // unflushed one.
    let mut kept = lost.clone();
    kept[4096..8192].fill(7);
    verify(&exp, &kept, "kept");
    kept[8192..8704].fill(9);
    verify(&exp, &kept, "kept and more");
}
