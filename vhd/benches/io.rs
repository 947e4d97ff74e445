//! Disk I/O benchmark: the drivers against plain pread/pwrite on a raw file
//! with the same data, and allocating writes against `qemu-img bench -w` on
//! a fresh dynamic image of the same kind, side by side in one run.
//!
//! ```text
//! cargo bench -p vhd --bench io -- --size 1G \
//!     --formats raw,vhd-fixed,vhd-dynamic,vhdx-fixed,vhdx-dynamic,vhdx-dynamic-4k \
//!     --threads 1,2,4 [--dir DIR] [--alloc-count N] [--no-qemu]
//! ```
//!
//! Measured per format (data fully written first, page cache warm for both
//! sides, best of 3 rounds of 16 alternating slices): 4 KiB and 1 MiB requests, sequential and random, reads (with each
//! thread count) and overwrites (one thread), as MB/s and ops/s of the
//! driver, the same for pread/pwrite on the raw file, and their ratio, in
//! wall time and in CPU time per request (the threads' own CPU time, which
//! load elsewhere on the machine does not inflate). For
//! dynamic formats: 4 KiB allocating writes on a fresh image, sequential
//! (as `qemu-img bench -w` does by default) and one per block (`-S` = block
//! size), against `qemu-img bench -w -t writeback` on an image qemu-img made.
//! Both sides end with a flush inside the timing (ours `flush`, qemu-img's
//! `--flush-interval` equal to the request count), so both have made every
//! write durable when the clock stops.
//! Targets: reads of allocated data within 10% of pread; allocating writes
//! at least twice as fast as qemu-img.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vhd::{CreateOptions, DiskImage, Format, Image, ImageType, OpenOptions};

/// Rounds per measurement; the best of each side counts.
const ROUNDS: usize = 3;
/// Rounds of each allocating-write measurement.
const ALLOC_ROUNDS: usize = 2;
/// Slices per round, alternating between the two sides.
const SLICES: u64 = 16;

struct Args {
    size: u64,
    formats: Vec<String>,
    threads: Vec<usize>,
    dir: Option<PathBuf>,
    alloc_count: u64,
    qemu: bool,
}

fn parse_size(s: &str) -> u64 {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().expect("a size such as 256M or 1G") * mult
}

fn parse_args() -> Args {
    let mut a = Args {
        size: 256 << 20,
        formats: "raw,vhd-fixed,vhd-dynamic,vhdx-fixed,vhdx-dynamic,vhdx-dynamic-4k"
            .split(',')
            .map(String::from)
            .collect(),
        threads: vec![1, 2, 4],
        dir: None,
        alloc_count: 16384,
        qemu: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => a.size = parse_size(&val()),
            "--formats" => a.formats = val().split(',').map(String::from).collect(),
            "--threads" => {
                a.threads = val()
                    .split(',')
                    .map(|t| t.parse().expect("thread count"))
                    .collect()
            }
            "--dir" => a.dir = Some(PathBuf::from(val())),
            "--alloc-count" => a.alloc_count = val().parse().expect("a count"),
            "--no-qemu" => a.qemu = false,
            // Passed by `cargo bench`.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a.size -= a.size % (1 << 20);
    assert!(a.size >= 16 << 20, "--size must be at least 16M");
    a
}

/// What the benchmark talks to: a driver or the raw file.
trait Target: Sync {
    fn read(&self, buf: &mut [u8], off: u64);
    fn write(&self, buf: &[u8], off: u64);
}

struct Pread(File);

impl Target for Pread {
    fn read(&self, buf: &mut [u8], off: u64) {
        self.0.read_exact_at(buf, off).expect("pread");
    }
    fn write(&self, buf: &[u8], off: u64) {
        self.0.write_all_at(buf, off).expect("pwrite");
    }
}

struct Driver(Image);

impl Target for Driver {
    fn read(&self, buf: &mut [u8], off: u64) {
        self.0.read_at(buf, off).expect("driver read");
    }
    fn write(&self, buf: &[u8], off: u64) {
        self.0.write_at(buf, off).expect("driver write");
    }
}

#[derive(Clone, Copy)]
struct Run {
    write: bool,
    random: bool,
    bs: u64,
    threads: usize,
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The request slot of request `i` (random: a stateless hash of `i`, so
/// both sides see the same offsets whatever the slicing).
fn slot(r: Run, i: u64, slots: u64) -> u64 {
    if r.random {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % slots
    } else {
        i % slots
    }
}

/// Wall and CPU seconds of a measurement.
#[derive(Clone, Copy, Default)]
struct Cost {
    wall: f64,
    /// CPU time of the threads that issued the requests (user and system),
    /// summed: what the requests cost, whatever else the machine runs.
    cpu: f64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.wall += o.wall;
        self.cpu += o.cpu;
    }
}

/// Drops a file's (clean, flushed) pages from the page cache, so that both
/// sides are cached the same way: by the warm-up reads, not by how each was
/// written (the image's small metadata writes between blocks leave its
/// data in smaller page-cache folios than the raw file's large writes).
fn evict(file: &File) {
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
}

fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Runs requests `from..to` split over the threads.
fn measure(t: &dyn Target, r: Run, from: u64, to: u64, size: u64) -> Cost {
    let slots = size / r.bs;
    let start = Instant::now();
    let cpu: f64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..r.threads as u64)
            .map(|th| {
                s.spawn(move || {
                    let cpu0 = thread_cpu_seconds();
                    let mut buf = vec![0x5Au8; usize::try_from(r.bs).expect("request size")];
                    let mut i = from + th;
                    while i < to {
                        let off = slot(r, i, slots) * r.bs;
                        if r.write {
                            t.write(&buf, off);
                        } else {
                            t.read(&mut buf, off);
                        }
                        i += r.threads as u64;
                    }
                    thread_cpu_seconds() - cpu0
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    Cost {
        wall: start.elapsed().as_secs_f64(),
        cpu,
    }
}

/// Measures `ops` requests on both sides in alternating slices, so that
/// load from elsewhere on the machine hits both alike; the best of
/// [`ROUNDS`] rounds counts for each side and each measure. Returns
/// (driver, pread).
fn side_by_side(ours: &dyn Target, raw: &dyn Target, r: Run, ops: u64, size: u64) -> (Cost, Cost) {
    let best = |a: Cost, b: Cost| Cost {
        wall: a.wall.min(b.wall),
        cpu: a.cpu.min(b.cpu),
    };
    let worst = Cost {
        wall: f64::MAX,
        cpu: f64::MAX,
    };
    let (mut best_ours, mut best_raw) = (worst, worst);
    for _ in 0..ROUNDS {
        let (mut o, mut b) = (Cost::default(), Cost::default());
        for k in 0..SLICES {
            let (from, to) = (ops * k / SLICES, ops * (k + 1) / SLICES);
            if k % 2 == 0 {
                o += measure(ours, r, from, to, size);
                b += measure(raw, r, from, to, size);
            } else {
                b += measure(raw, r, from, to, size);
                o += measure(ours, r, from, to, size);
            }
        }
        best_ours = best(best_ours, o);
        best_raw = best(best_raw, b);
    }
    (best_ours, best_raw)
}

fn kind(name: &str) -> Option<(Format, ImageType, u32)> {
    Some(match name {
        "raw" => (Format::Raw, ImageType::Fixed, 512),
        "vhd-fixed" => (Format::Vhd, ImageType::Fixed, 512),
        "vhd-dynamic" => (Format::Vhd, ImageType::Dynamic, 512),
        "vhdx-fixed" => (Format::Vhdx, ImageType::Fixed, 512),
        "vhdx-dynamic" => (Format::Vhdx, ImageType::Dynamic, 512),
        "vhdx-dynamic-4k" => (Format::Vhdx, ImageType::Dynamic, 4096),
        _ => return None,
    })
}

fn create(path: &Path, name: &str, size: u64) -> Result<Image, String> {
    let (format, ty, lss) = kind(name).ok_or_else(|| format!("unknown format name {name}"))?;
    let mut o = CreateOptions::new(format, ty, size);
    o.logical_sector_size = lss;
    let _ = std::fs::remove_file(path);
    vhd::create(path, &o).map_err(|e| e.to_string())
}

/// Fills `t` with the benchmark's data, 1 MiB at a time.
fn fill(write: impl Fn(&[u8], u64), size: u64) {
    let mut buf = vec![0u8; 1 << 20];
    let mut s = 0x1234_5678u64;
    for off in (0..size).step_by(1 << 20) {
        for w in buf.chunks_mut(8) {
            w.copy_from_slice(&xorshift(&mut s).to_le_bytes());
        }
        write(&buf, off);
    }
}

fn mb(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// Runs `qemu-img bench -w`, flushing once after the last request, and
/// returns its reported seconds.
fn qemu_bench(fmt: &str, path: &Path, size: u64, count: u64, step: u64) -> Result<f64, String> {
    let _ = std::fs::remove_file(path);
    let p = path.to_str().ok_or("path")?;
    let mut create = Command::new("qemu-img");
    create.args(["create", "-q", "-f", fmt]);
    if fmt == "vpc" {
        create.args(["-o", "subformat=dynamic"]);
    }
    let out = create
        .args([p, &size.to_string()])
        .output()
        .map_err(|e| format!("qemu-img missing ({e}): install qemu-utils"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let out = Command::new("qemu-img")
        .args(["bench", "-w", "-f", fmt, "-t", "writeback", "-s", "4096"])
        .args(["-c", &count.to_string(), "-S", &step.to_string()])
        // qemu-img refuses a flush interval under its queue depth (64).
        .args(["-d", &count.clamp(1, 64).to_string()])
        .arg(format!("--flush-interval={count}"))
        .arg(p)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Run completed in "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "qemu-img bench said: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn main() {
    let a = parse_args();
    let tmp = tempfile::tempdir_in(a.dir.clone().unwrap_or_else(std::env::temp_dir))
        .expect("temporary directory");
    let dir = tmp.path();
    println!(
        "# vhd I/O benchmark: size {} MiB, formats {}, reader threads {:?}",
        a.size >> 20,
        a.formats.join(","),
        a.threads
    );
    // The raw file with the same data, read and written with pread/pwrite.
    let raw_path = dir.join("baseline.raw");
    let raw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&raw_path)
        .expect("raw file");
    fill(|b, o| raw.write_all_at(b, o).expect("fill raw"), a.size);
    raw.sync_all().expect("sync raw");
    evict(&raw);
    let raw = Pread(raw);

    let mut runs = Vec::new();
    for bs in [4096u64, 1 << 20] {
        for random in [false, true] {
            for &threads in &a.threads {
                runs.push(Run {
                    write: false,
                    random,
                    bs,
                    threads,
                });
            }
            runs.push(Run {
                write: true,
                random,
                bs,
                threads: 1,
            });
        }
    }
    let mut read_ratios: Vec<(String, f64, f64)> = Vec::new();
    // Reader ops/s by format and request pattern, per thread count.
    let mut scaling: Vec<(String, usize, f64)> = Vec::new();
    println!(
        "\n{:<16} {:<22} {:>10} {:>10} {:>10} {:>10} {:>7} {:>8} {:>8} {:>7}",
        "format",
        "test",
        "MB/s",
        "ops/s",
        "pread MB/s",
        "pread op/s",
        "ratio",
        "cpu us",
        "pread us",
        "cpu r."
    );
    for name in &a.formats {
        let path = dir.join(format!("{name}.img"));
        let img = match create(&path, name, a.size) {
            Ok(i) => i,
            Err(e) => {
                println!("{name:<16} skipped: {e}");
                continue;
            }
        };
        fill(|b, o| img.write_at(b, o).expect("fill image"), a.size);
        img.flush().expect("flush");
        drop(img);
        evict(&File::open(&path).expect("image file"));
        let img = Driver(vhd::open(&path, &OpenOptions::default()).expect("reopen"));
        // Warm both page caches.
        measure(
            &img,
            Run {
                write: false,
                random: false,
                bs: 1 << 20,
                threads: 1,
            },
            0,
            a.size >> 20,
            a.size,
        );
        measure(
            &raw,
            Run {
                write: false,
                random: false,
                bs: 1 << 20,
                threads: 1,
            },
            0,
            a.size >> 20,
            a.size,
        );
        for &r in &runs {
            let ops = if r.bs == 4096 {
                (a.size / 4096).min(65536)
            } else {
                (a.size >> 20).min(512)
            };
            let (ours, base) = side_by_side(&img, &raw, r, ops, a.size);
            let bytes = ops * r.bs;
            let test = format!(
                "{} {} {} x{}",
                if r.bs == 4096 { "4k" } else { "1m" },
                if r.random { "rand" } else { "seq" },
                if r.write { "write" } else { "read" },
                r.threads
            );
            let ratio = base.wall / ours.wall;
            let cpu_ratio = base.cpu / ours.cpu;
            if !r.write {
                read_ratios.push((format!("{name} {test}"), ratio, cpu_ratio));
                scaling.push((
                    format!("{name} {}", &test[..test.rfind(' ').unwrap_or(test.len())]),
                    r.threads,
                    ops as f64 / ours.wall,
                ));
            }
            println!(
                "{name:<16} {test:<22} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>7.2} {:>8.2} {:>8.2} {:>7.2}",
                mb(bytes, ours.wall),
                ops as f64 / ours.wall,
                mb(bytes, base.wall),
                ops as f64 / base.wall,
                ratio,
                ours.cpu / ops as f64 * 1e6,
                base.cpu / ops as f64 * 1e6,
                cpu_ratio
            );
        }
        drop(img);
        let _ = std::fs::remove_file(&path);
    }

    println!(
        "\n{:<16} {:<26} {:>10} {:>10} {:>12} {:>7}",
        "format", "allocating 4k writes", "MB/s", "ops/s", "qemu ops/s", "ratio"
    );
    let mut alloc_ratios: Vec<(String, f64)> = Vec::new();
    for name in a.formats.iter().filter(|n| n.contains("dynamic")) {
        let path = dir.join(format!("{name}-alloc.img"));
        let block = match create(&path, name, a.size) {
            Ok(i) => i.info().block_size.unwrap_or(2 << 20),
            Err(e) => {
                println!("{name:<16} skipped: {e}");
                continue;
            }
        };
        let qfmt = if name.starts_with("vhdx") {
            "vhdx"
        } else {
            "vpc"
        };
        for (label, step, count) in [
            (
                "sequential (-S 4096)",
                4096u64,
                a.alloc_count.min(a.size / 4096),
            ),
            (
                "one per block (-S block)",
                block,
                (a.size / block).min(a.alloc_count),
            ),
        ] {
            // Rounds alternate between the two; each side's best counts.
            let mut ours = f64::MAX;
            let mut qemu: Result<f64, String> = Err("not run".into());
            for _ in 0..ALLOC_ROUNDS {
                let img = create(&path, name, a.size).expect("create");
                let start = Instant::now();
                let buf = vec![0xA5u8; 4096];
                for i in 0..count {
                    img.write_at(&buf, (i * step) % a.size)
                        .expect("allocating write");
                }
                img.flush().expect("flush");
                ours = ours.min(start.elapsed().as_secs_f64());
                drop(img);
                let q = if !a.qemu {
                    Err("not run (--no-qemu)".to_string())
                } else if name.ends_with("-4k") {
                    Err("qemu-img has no 4 KiB-sector VHDX".to_string())
                } else {
                    // The same offsets. Where qemu-img's blocks are larger
                    // than ours, fewer of its writes allocate: that favours
                    // qemu-img.
                    qemu_bench(qfmt, &dir.join("qemu.img"), a.size, count, step)
                };
                qemu = match (qemu, q) {
                    (Ok(x), Ok(y)) => Ok(x.min(y)),
                    (_, q) => q,
                };
            }
            let (qops, ratio) = match &qemu {
                Ok(q) => {
                    let ratio = q / ours;
                    alloc_ratios.push((format!("{name} {label}"), ratio));
                    (format!("{:.0}", count as f64 / q), format!("{ratio:.2}"))
                }
                Err(e) => (format!("n/a: {e}"), "-".into()),
            };
            println!(
                "{name:<16} {label:<26} {:>10.1} {:>10.0} {:>12} {:>7}",
                mb(count * 4096, ours),
                count as f64 / ours,
                qops,
                ratio
            );
        }
        let _ = std::fs::remove_file(&path);
    }

    println!("\n# targets");
    let worst_read = read_ratios.iter().min_by(|x, y| x.1.total_cmp(&y.1));
    if let Some((what, r, _)) = worst_read {
        println!(
            "reads within 10% of pread, wall time (ratio >= 0.90): {} (worst {what}: {r:.2})",
            if *r >= 0.9 { "met" } else { "not met" }
        );
    }
    let worst_cpu = read_ratios.iter().min_by(|x, y| x.2.total_cmp(&y.2));
    if let Some((what, _, r)) = worst_cpu {
        println!(
            "reads within 10% of pread, CPU time per request (ratio >= 0.90): {} (worst {what}: {r:.2})",
            if *r >= 0.9 { "met" } else { "not met" }
        );
    }
    let mut keys: Vec<&String> = scaling.iter().map(|s| &s.0).collect();
    keys.dedup();
    for key in keys {
        let row: Vec<String> = scaling
            .iter()
            .filter(|s| &s.0 == key)
            .map(|s| format!("{}: {:.0}", s.1, s.2))
            .collect();
        println!("reader scaling {key} (threads: ops/s): {}", row.join(", "));
    }
    let worst_alloc = alloc_ratios.iter().min_by(|x, y| x.1.total_cmp(&y.1));
    match worst_alloc {
        Some((what, r)) => println!(
            "allocating 4k writes >= 2x qemu-img bench -w: {} (worst {what}: {r:.2}x)",
            if *r >= 2.0 { "met" } else { "not met" }
        ),
        None => println!("allocating 4k writes: no qemu-img comparison ran"),
    }
}
