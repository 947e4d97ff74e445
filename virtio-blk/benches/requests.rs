//! Requests per second and MB/s through the device, next to plain
//! pread/pwrite of the same offsets on the same file, in the same run.
//!
//! Run with `cargo bench -p virtio-blk` (optionally
//! `-- --seconds 2 --disk-mib 512 --dir /dev/shm --filter "randread 64"`). Single-threaded: the figures are per
//! core. Each case runs the methods in rotation, a batch at a time, and
//! reports the median batch, so that load from other processes does not
//! favour one method. The image is written in full first, so reads and writes hit a warm
//! page cache; only the device's work (`process_queue`) is timed, not the
//! driver-side filling of the rings.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::OpenOptions as FsOpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{CreateOptions, DiskImage, Format, ImageType};

/// Requests in flight per batch (one `process_queue` call).
const BATCH: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Read => "randread",
            Dir::Write => "randwrite",
        }
    }
}

struct Args {
    seconds: f64,
    disk: u64,
    filter: Option<String>,
    dir: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 1.0,
        disk: 256 << 20,
        filter: None,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.seconds),
            "--disk-mib" => {
                a.disk = it
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(a.disk, |m| m << 20)
            }
            "--filter" => a.filter = it.next(),
            "--dir" => a.dir = it.next().map(Into::into),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// Offsets of `bs`-byte requests, uniformly random and `bs`-aligned.
fn offsets(disk: u64, bs: u64, n: usize, seed: u64) -> Vec<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.random_range(0..disk / bs) * bs)
        .collect()
}

/// One round: `BATCH` requests, returns the time the measured part took.
type Round<'a> = Box<dyn FnMut() -> Duration + 'a>;

/// `BATCH` page-aligned buffers of `bs` bytes (guest buffers are
/// page-aligned too: alignment changes the kernel's copy speed).
fn aligned_buffers(bs: usize) -> AlignedBuf {
    let stride = bs.next_multiple_of(4096);
    let mut v = vec![0u8; stride * BATCH + 4096];
    let skip = v.as_ptr().align_offset(4096);
    for (i, b) in v.iter_mut().enumerate() {
        *b = i as u8;
    }
    AlignedBuf {
        v,
        skip,
        len: stride * BATCH,
    }
}

struct AlignedBuf {
    v: Vec<u8>,
    skip: usize,
    len: usize,
}

impl AlignedBuf {
    fn chunks_mut(&mut self, n: usize) -> std::slice::ChunksMut<'_, u8> {
        self.v[self.skip..self.skip + self.len].chunks_mut(n)
    }
}

/// Plain positional I/O on the file, `BATCH` buffers in rotation.
fn plain<'a>(path: &Path, dir: Dir, bs: usize, offs: &'a [u64]) -> Round<'a> {
    let file = FsOpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut bufs = aligned_buffers(bs);
    let mut at = 0usize;
    Box::new(move || {
        let start = Instant::now();
        for buf in bufs.chunks_mut(bs.next_multiple_of(4096)) {
            let buf = &mut buf[..bs];
            let off = offs[at % offs.len()];
            at += 1;
            match dir {
                Dir::Read => file.read_exact_at(buf, off).unwrap(),
                Dir::Write => file.write_all_at(buf, off).unwrap(),
            }
        }
        start.elapsed()
    })
}

/// The image's own read_at/write_at, without the device.
fn direct<'a>(image: Arc<dyn DiskImage>, dir: Dir, bs: usize, offs: &'a [u64]) -> Round<'a> {
    let mut bufs = aligned_buffers(bs);
    let mut at = 0usize;
    Box::new(move || {
        let start = Instant::now();
        for buf in bufs.chunks_mut(bs.next_multiple_of(4096)) {
            let buf = &mut buf[..bs];
            let off = offs[at % offs.len()];
            at += 1;
            match dir {
                Dir::Read => image.read_at(buf, off).unwrap(),
                Dir::Write => image.write_at(buf, off).unwrap(),
            }
        }
        start.elapsed()
    })
}

/// Through the device: `BATCH` chains (header, one data buffer, status)
/// prepared once; each round rewrites the headers' sectors, offers the
/// chains and times `process_queue` alone.
fn device<'a>(image: Arc<dyn DiskImage>, dir: Dir, bs: usize, offs: &'a [u64]) -> Round<'a> {
    let mut rig = Rig::with_image(image);
    let kind = match dir {
        Dir::Read => T_IN,
        Dir::Write => T_OUT,
    };
    let mut chains = Vec::new();
    {
        let d = rig.d();
        for i in 0..BATCH {
            let h = d.place_header(kind, 0);
            let data = bench_buffer(i, bs);
            // Touch the buffer: untouched guest pages would all map the
            // kernel's shared zero page, which copies faster than real data.
            d.write(data, &vec![i as u8 | 1; bs]);
            let s = d.place_status();
            let idx = d.take_descs(3);
            let data_flags = if dir == Dir::Read { F_WRITE } else { 0 };
            d.put_desc(d.desc_table, idx[0], h, 16, F_NEXT, idx[1]);
            d.put_desc(
                d.desc_table,
                idx[1],
                data,
                bs as u32,
                F_NEXT | data_flags,
                idx[2],
            );
            d.put_desc(d.desc_table, idx[2], s, 1, F_WRITE, 0);
            chains.push((idx[0], h, s));
        }
    }
    let mut at = 0usize;
    Box::new(move || {
        let d = rig.d();
        for &(head, h, s) in &chains {
            let off = offs[at % offs.len()];
            at += 1;
            d.write(h, &header(kind, off / 512));
            d.write(s, &[S_UNTOUCHED]);
            d.push_avail(head);
        }
        let start = Instant::now();
        rig.dev.process_queue(0).unwrap();
        let time = start.elapsed();
        let d = rig.d();
        while d.pop_used().is_some() {}
        for &(_, _, s) in &chains {
            assert_eq!(d.byte(s), S_OK, "every request succeeds");
        }
        time
    })
}

/// Runs the rounds in rotation for `seconds` and returns each one's median
/// round time: interleaving keeps a noisy neighbour from favouring one.
fn measure(rounds: &mut [Round<'_>], seconds: f64) -> Vec<Duration> {
    for r in rounds.iter_mut() {
        r(); // warm-up
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); rounds.len()];
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut turn = 0usize;
    while Instant::now() < deadline || times[0].len() < 5 {
        let n = rounds.len();
        for k in 0..n {
            let i = (turn + k) % n;
            times[i].push(rounds[i]());
        }
        turn += 1;
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect()
}

/// Guest address of data buffer `i` (distinct, page-aligned, in the first
/// region, clear of the rings).
fn bench_buffer(i: usize, bs: usize) -> u64 {
    (4 << 20) + (i * bs.next_multiple_of(4096)) as u64
}

/// An image that does no I/O: what the device costs by itself.
#[derive(Debug)]
struct NullImage(u64);

impl DiskImage for NullImage {
    fn virtual_size(&self) -> u64 {
        self.0
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
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> vhd::Result<()> {
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> vhd::Result<()> {
        Ok(())
    }
    fn flush(&self) -> vhd::Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _offset: u64, _len: u64) -> vhd::Result<()> {
        Ok(())
    }
    fn discard(&self, _offset: u64, _len: u64) -> vhd::Result<()> {
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> vhd::Result<vhd::Extent> {
        Ok(vhd::Extent {
            offset,
            length: len,
            allocation: vhd::Allocation::Data,
            depth: 0,
        })
    }
    fn info(&self) -> vhd::ImageInfo {
        vhd::ImageInfo {
            path: "null".into(),
            format: Format::Raw,
            image_type: ImageType::Fixed,
            virtual_size: self.0,
            file_size: 0,
            block_size: None,
            logical_sector_size: 512,
            physical_sector_size: 512,
            creator: None,
            identifiers: Vec::new(),
            log_dirty: None,
            parent: None,
        }
    }
}

fn make(
    dir: &Path,
    name: &str,
    format: Format,
    lss: u32,
    size: u64,
) -> Result<(Arc<dyn DiskImage>, std::path::PathBuf), vhd::Error> {
    let path = dir.join(name);
    let mut opts = CreateOptions::new(format, ImageType::Dynamic, size);
    opts.logical_sector_size = lss;
    let image = vhd::create(&path, &opts)?;
    // Fill it, so that every block is allocated and in the page cache.
    let chunk = vec![0x5au8; 1 << 20];
    let mut off = 0;
    while off < size {
        image.write_at(&chunk, off)?;
        off += chunk.len() as u64;
    }
    Ok((Arc::new(image), path))
}

fn line(label: &str, round: Duration, bs: usize, base: Option<Duration>) {
    let per_req = round.as_secs_f64() / BATCH as f64;
    let rps = 1.0 / per_req;
    let mbs = rps * bs as f64 / 1e6;
    let over = base.map_or(String::new(), |b| {
        format!(
            "{:+7.1}%",
            (round.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0
        )
    });
    println!(
        "  {label:<22} {rps:>10.0} req/s/core {mbs:>8.1} MB/s {:>8.2} us/req {over}",
        per_req * 1e6
    );
}

fn main() {
    let a = args();
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    println!(
        "virtio-blk request benchmark: {} MiB disk in {}, batches of {BATCH}, {:.1} s per case, one thread",
        a.disk >> 20,
        tmp.path().display(),
        a.seconds
    );
    let (raw, raw_path) = make(tmp.path(), "bench.raw", Format::Raw, 512, a.disk).unwrap();
    let mut backends: Vec<(&str, Arc<dyn DiskImage>)> = vec![("raw", raw)];
    for (name, format, lss) in [
        ("vhdx", Format::Vhdx, 512u32),
        ("vhdx-4k", Format::Vhdx, 4096),
    ] {
        match make(tmp.path(), name, format, lss, a.disk) {
            Ok((img, _)) => backends.push((name, img)),
            Err(e) => println!("{name}: not measured, the image cannot be created here: {e}"),
        }
    }
    for dir in [Dir::Read, Dir::Write] {
        for bs in [4096usize, 65536] {
            let case = format!("{} {} KiB", dir.name(), bs / 1024);
            if a.filter
                .as_ref()
                .is_some_and(|f| !case.contains(f.as_str()))
            {
                continue;
            }
            // Each method gets its own random offsets: none finds data in
            // the CPU caches because another method just read it.
            let offs: Vec<Vec<u64>> = (0..8u64)
                .map(|m| offsets(a.disk, bs as u64, 4096, bs as u64 * 16 + m))
                .collect();
            println!("{case}");
            let mut labels = vec!["pread/pwrite raw file".to_string()];
            let mut rounds: Vec<Round<'_>> = vec![plain(&raw_path, dir, bs, &offs[0])];
            for (name, img) in &backends {
                let m = rounds.len();
                labels.push(format!("{name} DiskImage"));
                rounds.push(direct(Arc::clone(img), dir, bs, &offs[m % 8]));
                labels.push(format!("{name} virtio-blk"));
                rounds.push(device(Arc::clone(img), dir, bs, &offs[(m + 1) % 8]));
            }
            labels.push("device alone (no I/O)".to_string());
            rounds.push(device(Arc::new(NullImage(a.disk)), dir, bs, &offs[7]));
            let budget = a.seconds * rounds.len() as f64;
            let medians = measure(&mut rounds, budget);
            for (i, (label, m)) in labels.iter().zip(&medians).enumerate() {
                line(label, *m, bs, (i > 0).then_some(medians[0]));
            }
        }
    }
}
