//! VHDX behaviour beyond the conformance suite: session GUIDs and header
//! alternation, block states chosen by write_zeroes and discard, resize,
//! parent chains and locators, block status through a chain, parallel
//! readers while a writer allocates.
#![allow(clippy::cast_possible_truncation)]

mod vhdx_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vhd::{
    Allocation, CreateOptions, DiskImage, ErrorKind, Format, ImageType, OpenOptions, map_range,
};
use vhdx_support::{MIB, assert_same, pattern, qemu_img, read_all};

/// Sequence number, FileWriteGuid, DataWriteGuid and LogGuid of a header.
type HeaderFields = (u64, [u8; 16], [u8; 16], [u8; 16]);

/// The fields of both headers.
fn headers(path: &Path) -> [HeaderFields; 2] {
    let f = std::fs::read(path).unwrap();
    let h = |at: usize| {
        let b = &f[at..at + 4096];
        (
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
            b[16..32].try_into().unwrap(),
            b[32..48].try_into().unwrap(),
            b[48..64].try_into().unwrap(),
        )
    };
    [h(64 << 10), h(128 << 10)]
}

fn current(path: &Path) -> HeaderFields {
    let [a, b] = headers(path);
    if a.0 >= b.0 { a } else { b }
}

/// Raw BAT entry of payload block `block` in an image made by `create`
/// (BAT at 3 MiB).
fn bat_entry(path: &Path, block: u64, chunk_ratio: u64) -> u64 {
    let f = std::fs::read(path).unwrap();
    let at = (3 * MIB + (block + block / chunk_ratio) * 8) as usize;
    u64::from_le_bytes(f[at..at + 8].try_into().unwrap())
}

fn dynamic(path: &Path, size: u64, block: u64) -> vhd::Image {
    let mut o = CreateOptions::new(Format::Vhdx, ImageType::Dynamic, size);
    o.block_size = Some(block);
    vhd::create(path, &o).unwrap()
}

#[test]
fn first_write_renews_guids_and_close_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.vhdx");
    drop(dynamic(&path, 8 * MIB, MIB));
    let before = current(&path);
    assert_eq!(before.3, [0; 16], "a new image has an empty log");
    {
        let img = vhd::open(&path, &OpenOptions::default()).unwrap();
        // Opening and reading changes nothing.
        let mut b = [0u8; 512];
        img.read_at(&mut b, 0).unwrap();
        assert_eq!(current(&path), before);
        img.write_at(&[1u8; 512], 0).unwrap();
        let during = current(&path);
        assert_eq!(during.0, before.0 + 1, "one header update");
        assert_ne!(during.1, before.1, "new FileWriteGuid");
        assert_ne!(during.2, before.2, "new DataWriteGuid");
        assert_ne!(during.3, [0; 16], "a LogGuid while metadata may change");
        img.write_at(&[2u8; 512], 4 * MIB).unwrap();
        assert_eq!(current(&path).0, during.0, "only the first write updates");
        let info = img.info();
        assert_eq!(info.log_dirty, Some(false));
        let dwg = info
            .identifiers
            .iter()
            .find(|(k, _)| k == "data_write_guid")
            .unwrap();
        assert_eq!(dwg.1, uuid::Uuid::from_bytes_le(during.2).to_string());
    }
    let after = current(&path);
    assert_eq!(after.3, [0; 16], "a clean close empties the log");
    let [a, b] = headers(&path);
    assert_eq!(a.0.abs_diff(b.0), 1, "updates alternate between the copies");
    qemu_img(&["check", path.to_str().unwrap()]);
}

#[test]
fn zeroes_and_discard_pick_block_states() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.vhdx");
    let cr = 4096; // chunk ratio of 1 MiB blocks, 512-byte sectors
    {
        let img = dynamic(&path, 8 * MIB, MIB);
        img.write_at(&vec![7u8; 8 * MIB as usize], 0).unwrap();
        img.write_zeroes(MIB, MIB).unwrap();
        img.discard(2 * MIB, MIB).unwrap();
        img.write_zeroes(3 * MIB + 512, 1024).unwrap();
        let ext = img.block_status(MIB, 2 * MIB).unwrap();
        assert_eq!(ext.allocation, Allocation::Zero);
        assert_eq!(ext.length, 2 * MIB);
        assert_eq!(
            img.block_status(0, MIB).unwrap().allocation,
            Allocation::Data
        );
    }
    assert_eq!(bat_entry(&path, 1, cr), 2, "PAYLOAD_BLOCK_ZERO, offset 0");
    assert_eq!(
        bat_entry(&path, 2, cr),
        3,
        "PAYLOAD_BLOCK_UNMAPPED, offset 0"
    );
    assert_eq!(
        bat_entry(&path, 3, cr) & 7,
        6,
        "a partial zeroing keeps the block"
    );
    let img = vhd::open(&path, &OpenOptions::read_only()).unwrap();
    let mut want = vec![7u8; 8 * MIB as usize];
    want[MIB as usize..3 * MIB as usize].fill(0);
    want[(3 * MIB + 512) as usize..(3 * MIB + 1536) as usize].fill(0);
    assert_same(&read_all(&img), &want, "after zeroing");
    let report = vhd::check(&path, false).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    qemu_img(&["check", path.to_str().unwrap()]);
    let raw = dir.path().join("z.raw");
    std::fs::write(&raw, &want).unwrap();
    qemu_img(&[
        "compare",
        "-f",
        "vhdx",
        "-F",
        "raw",
        path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
}

#[test]
fn discard_in_a_differencing_image_hides_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("p.vhdx");
    let child = dir.path().join("c.vhdx");
    {
        let p = dynamic(&parent, 4 * MIB, MIB);
        p.write_at(&vec![9u8; 4 * MIB as usize], 0).unwrap();
    }
    let mut o = CreateOptions::differencing(Format::Vhdx, &parent);
    o.block_size = Some(MIB);
    let c = vhd::create(&child, &o).unwrap();
    c.discard(MIB, MIB).unwrap();
    c.discard(2 * MIB + 4096, 8192).unwrap();
    let mut want = vec![9u8; 4 * MIB as usize];
    want[MIB as usize..2 * MIB as usize].fill(0);
    want[(2 * MIB + 4096) as usize..(2 * MIB + 12288) as usize].fill(0);
    assert_same(&read_all(&c), &want, "discarded child");
    let map = map_range(&c, 0, 4 * MIB).unwrap();
    assert_eq!((map[0].allocation, map[0].depth), (Allocation::Data, 1));
    assert_eq!((map[1].allocation, map[1].depth), (Allocation::Zero, 0));
    drop(c);
    assert_eq!(bat_entry(&child, 1, 4096), 2, "ZERO keeps reads as zeros");
}

#[test]
fn resize_grows_dynamic_and_fixed_images() {
    let dir = tempfile::tempdir().unwrap();
    for t in [ImageType::Dynamic, ImageType::Fixed] {
        let path = dir.path().join(format!("r-{t}.vhdx"));
        let data = pattern(5, 3 * MIB);
        {
            let mut o = CreateOptions::new(Format::Vhdx, t, 3 * MIB);
            o.block_size = Some(MIB);
            let img = vhd::create(&path, &o).unwrap();
            img.write_at(&data, 0).unwrap();
            img.resize(10 * MIB + 512).unwrap();
            assert_eq!(img.virtual_size(), 10 * MIB + 512);
            img.write_at(&[5u8; 1024], 10 * MIB - 512).unwrap();
            assert!(matches!(img.resize(MIB), Err(e) if e.kind() == ErrorKind::Unsupported));
        }
        let img = vhd::open(&path, &OpenOptions::read_only()).unwrap();
        assert_eq!(img.virtual_size(), 10 * MIB + 512);
        let mut want = data.clone();
        want.resize((10 * MIB + 512) as usize, 0);
        want[(10 * MIB - 512) as usize..(10 * MIB + 512) as usize].fill(5);
        assert_same(&read_all(&img), &want, "grown");
        let out = qemu_img(&["info", "--output=json", path.to_str().unwrap()]);
        assert!(
            out.contains(&format!("\"virtual-size\": {}", 10 * MIB + 512)),
            "{out}"
        );
        qemu_img(&["check", path.to_str().unwrap()]);
        let report = vhd::check(&path, false).unwrap();
        assert!(report.is_clean(), "{t}: {:?}", report.findings);
    }
}

#[test]
fn chains_through_raw_and_vhdx_parents() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("base.raw");
    let base = pattern(11, 6 * MIB);
    std::fs::write(&raw, &base).unwrap();
    let mid = dir.path().join("mid.vhdx");
    let top = dir.path().join("top.vhdx");
    let mut want = base.clone();
    {
        let mut o = CreateOptions::differencing(Format::Vhdx, &raw);
        o.block_size = Some(MIB);
        let m = vhd::create(&mid, &o).unwrap();
        m.write_at(&[1u8; 3000], MIB + 100).unwrap();
        want[(MIB + 100) as usize..(MIB + 3100) as usize].fill(1);
    }
    {
        let t = vhd::create(&top, &CreateOptions::differencing(Format::Vhdx, &mid)).unwrap();
        t.write_at(&[2u8; 512], 2 * MIB).unwrap();
        want[2 * MIB as usize..(2 * MIB + 512) as usize].fill(2);
        assert_same(&read_all(&t), &want, "three-level chain");
        let info = t.info();
        assert_eq!(info.image_type, ImageType::Differencing);
        let p = info.parent.as_ref().unwrap();
        assert_eq!(p.format, Format::Vhdx);
        assert_eq!(p.parent.as_ref().unwrap().format, Format::Raw);
        // Block status reports which level answers.
        let e = t.block_status(MIB + 100, 512).unwrap();
        assert_eq!((e.allocation, e.depth), (Allocation::Data, 1));
        let e = t.block_status(2 * MIB, 512).unwrap();
        assert_eq!((e.allocation, e.depth), (Allocation::Data, 0));
        let e = t.block_status(4 * MIB, 512).unwrap();
        assert_eq!(e.depth, 2);
    }
    let t = vhd::open(&top, &OpenOptions::read_only()).unwrap();
    assert_same(&read_all(&t), &want, "reopened chain");
}

/// Rewrites the relative_path locator value of a child made by `create`
/// (same length, UTF-16LE) and returns the file.
fn set_relative_path(child: &Path, old: &str, new: &str) {
    assert_eq!(old.len(), new.len());
    let mut f = std::fs::read(child).unwrap();
    let enc = |s: &str| {
        s.encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>()
    };
    let (o, n) = (enc(old), enc(new));
    let at = f.windows(o.len()).position(|w| w == o.as_slice()).unwrap();
    f[at..at + n.len()].copy_from_slice(&n);
    std::fs::write(child, f).unwrap();
}

#[test]
fn parents_are_checked_and_confined() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let parent = dir.path().join("parent.vhdx");
    drop(dynamic(&parent, 4 * MIB, MIB));
    let child: PathBuf = sub.join("child.vhdx");
    drop(vhd::create(&child, &CreateOptions::differencing(Format::Vhdx, &parent)).unwrap());

    // The parent lies outside the child's directory: refused by default.
    let err = vhd::open(&child, &OpenOptions::read_only()).unwrap_err();
    assert!(matches!(err, vhd::Error::ParentNotAllowed { .. }), "{err}");
    let allow = OpenOptions {
        allowed_parent_dirs: Some(vec![dir.path().to_path_buf()]),
        ..OpenOptions::read_only()
    };
    vhd::open(&child, &allow).unwrap();

    // Writing to the parent gives it a new DataWriteGuid: the link breaks.
    {
        let p = vhd::open(&parent, &OpenOptions::default()).unwrap();
        p.write_at(&[1u8; 512], 0).unwrap();
    }
    let err = vhd::open(&child, &allow).unwrap_err();
    assert!(matches!(err, vhd::Error::ParentMismatch { .. }), "{err}");

    // A Windows-style relative path with backslashes next to the child.
    let near = sub.join("near.vhdx");
    drop(dynamic(&near, 4 * MIB, MIB));
    let child2 = sub.join("child2.vhdx");
    drop(vhd::create(&child2, &CreateOptions::differencing(Format::Vhdx, &near)).unwrap());
    set_relative_path(&child2, ".\\near.vhdx", ".\\NEAR.vhdx");
    let err = vhd::open(&child2, &OpenOptions::read_only()).unwrap_err();
    assert!(matches!(err, vhd::Error::ParentNotFound { .. }), "{err}");
    set_relative_path(&child2, ".\\NEAR.vhdx", ".\\near.vhdx");
    vhd::open(&child2, &OpenOptions::read_only()).unwrap();
}

#[test]
fn parallel_readers_see_correct_data_while_a_writer_allocates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("par.vhdx");
    let size = 64 * MIB;
    let img = Arc::new(dynamic(&path, size, MIB));
    // The first half is allocated and holds known data.
    let known = pattern(42, size / 2);
    img.write_at(&known, 0).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let img = Arc::clone(&img);
            let known = &known;
            let done = &done;
            s.spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    let off = (i * 7919 * 4096) % (size / 2 - buf.len() as u64);
                    img.read_at(&mut buf, off).unwrap();
                    assert!(
                        buf == known[off as usize..off as usize + buf.len()],
                        "reader {t} saw wrong data at {off:#x}"
                    );
                    // The second half reads as zeros or as the writer's byte.
                    let off2 = size / 2 + (i * 4096 * 13) % (size / 2 - 4096);
                    img.read_at(&mut buf[..4096], off2).unwrap();
                    let b0 = buf[0];
                    assert!(
                        buf[..4096].iter().all(|&b| b == b0) && (b0 == 0 || b0 == 0xEE),
                        "reader {t} saw a torn block at {off2:#x}"
                    );
                    i += 1;
                }
            });
        }
        // The writer allocates every block of the second half.
        for b in 0..size / 2 / MIB {
            img.write_at(&vec![0xEE; MIB as usize], size / 2 + b * MIB)
                .unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let all = read_all(img.as_ref());
    assert_same(&all[..(size / 2) as usize], &known, "first half");
    assert!(all[(size / 2) as usize..].iter().all(|&b| b == 0xEE));
}

#[test]
fn resize_past_the_bat_region_moves_the_bat() {
    let dir = tempfile::tempdir().unwrap();
    // One made by qemu-img (BAT sized for 8 MiB) and one of ours.
    let q = dir.path().join("q.vhdx");
    qemu_img(&[
        "create",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M",
        q.to_str().unwrap(),
        "8M",
    ]);
    let ours = dir.path().join("o.vhdx");
    drop(dynamic(&ours, 8 * MIB, MIB));
    let big = 200u64 << 30;
    for path in [q, ours] {
        let data = pattern(8, 8 * MIB);
        {
            let img = vhd::open(&path, &OpenOptions::default()).unwrap();
            img.write_at(&data, 0).unwrap();
            img.resize(big).unwrap();
            img.write_at(&[4u8; 4096], big - 4096).unwrap();
            img.write_at(&[6u8; 4096], 100 << 30).unwrap();
        }
        let img = vhd::open(&path, &OpenOptions::read_only()).unwrap();
        assert_eq!(img.virtual_size(), big);
        let mut head = vec![0u8; 8 * MIB as usize];
        img.read_at(&mut head, 0).unwrap();
        assert_same(&head, &data, "data before the move");
        let mut b = [0u8; 4096];
        img.read_at(&mut b, big - 4096).unwrap();
        assert_eq!(b, [4u8; 4096]);
        img.read_at(&mut b, 100 << 30).unwrap();
        assert_eq!(b, [6u8; 4096]);
        img.read_at(&mut b, 50 << 30).unwrap();
        assert_eq!(b, [0u8; 4096]);
        drop(img);
        let out = qemu_img(&["info", "--output=json", path.to_str().unwrap()]);
        assert!(out.contains(&format!("\"virtual-size\": {big}")), "{out}");
        qemu_img(&["check", path.to_str().unwrap()]);
        let raw = dir.path().join("tail.raw");
        qemu_img(&[
            "dd",
            "-f",
            "vhdx",
            "-O",
            "raw",
            "bs=4096",
            &format!("skip={}", (big - 4096) / 4096),
            &format!("if={}", path.display()),
            &format!("of={}", raw.display()),
        ]);
        assert_eq!(std::fs::read(&raw).unwrap(), vec![4u8; 4096]);
        let report = vhd::check(&path, false).unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
    }
}

#[test]
fn chains_through_vhd_parents() {
    let dir = tempfile::tempdir().unwrap();
    for t in [ImageType::Dynamic, ImageType::Fixed] {
        let base = dir.path().join(format!("base-{t}.vhd"));
        let mut want = {
            let b = vhd::create(&base, &CreateOptions::new(Format::Vhd, t, 6 * MIB)).unwrap();
            let data = pattern(21, b.virtual_size());
            vhdx_support::write_non_zero(&b, &data);
            data
        };
        let child = dir.path().join(format!("child-{t}.vhdx"));
        {
            let mut o = CreateOptions::differencing(Format::Vhdx, &base);
            o.block_size = Some(MIB);
            let c = vhd::create(&child, &o).unwrap();
            assert_eq!(c.virtual_size(), want.len() as u64);
            c.write_at(&[0xC1u8; 5000], MIB - 300).unwrap();
            want[(MIB - 300) as usize..(MIB + 4700) as usize].fill(0xC1);
            c.discard(3 * MIB, MIB).unwrap();
            want[3 * MIB as usize..4 * MIB as usize].fill(0);
        }
        let c = vhd::open(&child, &OpenOptions::read_only()).unwrap();
        assert_eq!(c.info().parent.as_ref().unwrap().format, Format::Vhd);
        assert_same(&read_all(&c), &want, "vhdx over vhd");
        let e = c.block_status(5 * MIB, 4096).unwrap();
        assert_eq!(e.depth, 1, "{e:?}");
    }
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<FileEvent>>);

#[derive(Clone)]
enum FileEvent {
    Write(u64, Vec<u8>),
    Sync,
    SetLen(u64),
    Zero(u64, u64),
}

impl vhd::IoObserver for Recorder {
    fn write(&self, offset: u64, data: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push(FileEvent::Write(offset, data.to_vec()));
    }
    fn sync(&self) {
        self.0.lock().unwrap().push(FileEvent::Sync);
    }
    fn set_len(&self, len: u64) {
        self.0.lock().unwrap().push(FileEvent::SetLen(len));
    }
    fn zero(&self, offset: u64, len: u64) {
        self.0.lock().unwrap().push(FileEvent::Zero(offset, len));
    }
}

fn apply_event(f: &mut Vec<u8>, e: &FileEvent) {
    match e {
        FileEvent::Write(o, d) => {
            let end = *o as usize + d.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[*o as usize..end].copy_from_slice(d);
        }
        FileEvent::SetLen(l) => f.resize(*l as usize, 0),
        FileEvent::Zero(o, l) => {
            let end = (*o + *l) as usize;
            if f.len() < end {
                f.resize(end, 0);
            }
            f[*o as usize..end].fill(0);
        }
        FileEvent::Sync => {}
    }
}

#[test]
fn a_dirty_log_is_overlaid_read_only_and_replayed_read_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");
    drop(dynamic(&path, 8 * MIB, MIB));
    let initial = std::fs::read(&path).unwrap();
    let rec = Arc::new(Recorder::default());
    {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let file = vhd::ImageFile::with_observer(f, &path, rec.clone());
        let ctx = vhd::ChainContext {
            depth: 1,
            allowed_dirs: vec![dir.path().canonicalize().unwrap()],
            options: OpenOptions::default(),
        };
        let img = vhd::VhdxImage::open(file, false, &ctx).unwrap();
        img.write_at(&[0xABu8; 8192], 2 * MIB + 4096).unwrap();
        img.flush().unwrap();
        // Dropped without closing cleanly: the log is not marked empty.
        std::mem::forget(img);
    }
    // The file as a power cut right after the log entry became durable
    // leaves it: everything up to the first flush after a log write.
    let events = rec.0.lock().unwrap().clone();
    let log = MIB..2 * MIB;
    let entry = events
        .iter()
        .position(|e| matches!(e, FileEvent::Write(o, _) if log.contains(o)))
        .expect("a log entry was written");
    let sync = entry
        + events[entry..]
            .iter()
            .position(|e| matches!(e, FileEvent::Sync))
            .unwrap();
    let mut f = initial.clone();
    for e in &events[..=sync] {
        apply_event(&mut f, e);
    }
    let crashed = dir.path().join("crashed.vhdx");
    std::fs::write(&crashed, &f).unwrap();
    let mut want = vec![0u8; 8 * MIB as usize];
    want[(2 * MIB + 4096) as usize..(2 * MIB + 12288) as usize].fill(0xAB);

    let ro = vhd::open(&crashed, &OpenOptions::read_only()).unwrap();
    assert_eq!(ro.info().log_dirty, Some(true));
    assert_same(&read_all(&ro), &want, "read-only over the log");
    drop(ro);
    assert_eq!(
        std::fs::read(&crashed).unwrap(),
        f,
        "read-only left the file alone"
    );
    let report = vhd::check(&crashed, false).unwrap();
    assert!(report.log_was_dirty);
    let rw = vhd::open(&crashed, &OpenOptions::default()).unwrap();
    assert_eq!(rw.info().log_dirty, Some(false));
    assert_same(&read_all(&rw), &want, "replayed");
    drop(rw);
    assert!(!vhd::check(&crashed, false).unwrap().log_was_dirty);
    qemu_img(&["check", crashed.to_str().unwrap()]);

    // Repair replays too.
    let again = dir.path().join("again.vhdx");
    std::fs::write(&again, &f).unwrap();
    let report = vhd::check(&again, true).unwrap();
    assert!(
        report.log_was_dirty && report.is_clean(),
        "{:?}",
        report.findings
    );
    assert!(!vhd::check(&again, false).unwrap().log_was_dirty);
}
