//! VHD interoperability with tools this project did not write: qemu-img
//! (images it makes read byte-identically here; images made here pass its
//! check and compare) and libvhdi (differencing chains flatten to the same
//! bytes).

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {cmd} ({e}): install qemu-utils (qemu-img 10) and python3-libvhdi")
    })
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    let out = run("qemu-img", args);
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What qemu-img can say about a VHD: it opens it (footer checksum,
/// header, table against the end of the file) and, where it has a check for
/// the format, finds nothing wrong. qemu-img 10 has no vpc check, and says so.
fn qemu_check(path: &Path) {
    qemu_img(&["info", "-f", "vpc", s(path)]);
    let out = run("qemu-img", &["check", "-f", "vpc", s(path)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("does not support checks"),
        "qemu-img check failed: {err}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Seeded data with holes: 64 KiB runs, about a third of them zero, and in
/// images over 8 MiB a zero run of 4 MiB at 2 MiB (two whole blocks).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(64 * 1024) {
        if rng.random_range(0..3) != 0 {
            rng.fill_bytes(chunk);
        }
    }
    if len > 8 << 20 {
        v[2 << 20..6 << 20].fill(0);
    }
    v
}

fn read_all(img: &dyn DiskImage) -> Vec<u8> {
    let mut v = vec![0u8; usize::try_from(img.virtual_size()).unwrap()];
    for (i, c) in v.chunks_mut(1 << 20).enumerate() {
        img.read_at(c, (i as u64) << 20).unwrap();
    }
    v
}

fn qemu_virtual_size(path: &Path) -> u64 {
    let out = qemu_img(&["info", "-f", "vpc", s(path)]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("virtual size"))
        .unwrap();
    let n = line.split('(').nth(1).unwrap().split(' ').next().unwrap();
    n.parse().unwrap()
}

#[test]
fn images_qemu_img_makes_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    let sizes: [usize; 4] = [
        3_000_000,          // not a multiple of 512 or of a cylinder
        (5 << 20) + 512,    // one sector into a third block
        4 << 20,            // exactly two blocks
        (17 << 20) + 12345, // several blocks, odd tail
    ];
    for (n, &len) in sizes.iter().enumerate() {
        let raw = dir.path().join(format!("src{n}.raw"));
        let data = pattern(n as u64, len);
        std::fs::write(&raw, &data).unwrap();
        for opts in [
            "subformat=fixed",
            "subformat=dynamic",
            "subformat=fixed,force_size=on",
            "subformat=dynamic,force_size=on",
        ] {
            let vhd = dir
                .path()
                .join(format!("img{n}-{}.vhd", opts.replace([',', '='], "_")));
            qemu_img(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                opts,
                s(&raw),
                s(&vhd),
            ]);
            let back = dir.path().join("back.raw");
            let _ = std::fs::remove_file(&back);
            qemu_img(&["convert", "-f", "vpc", "-O", "raw", s(&vhd), s(&back)]);
            let theirs = std::fs::read(&back).unwrap();
            let img = vhd::open(&vhd, &OpenOptions::read_only()).unwrap();
            assert_eq!(img.info().format, Format::Vhd);
            assert_eq!(
                img.virtual_size(),
                qemu_virtual_size(&vhd),
                "{opts} size {len}"
            );
            let ours = read_all(&img);
            assert!(
                ours == theirs,
                "{opts} size {len}: bytes differ from qemu-img's"
            );
            assert_eq!(&ours[..len], &data[..], "{opts} size {len}");
            assert!(ours[len..].iter().all(|&b| b == 0));
            let report = vhd::check(&vhd, false).unwrap();
            assert!(report.is_clean(), "{opts} size {len}: {report:?}");
            // Blocks qemu-img left out are reported as holes.
            if opts.contains("dynamic") && len > 8 << 20 {
                let map = vhd::map_range(&img, 0, img.virtual_size()).unwrap();
                let hole = map.iter().find(|e| e.offset == 2 << 20).unwrap();
                assert!(
                    hole.allocation.reads_as_zero() && hole.length == 4 << 20,
                    "{map:?}"
                );
            }
        }
    }
}

#[test]
fn empty_images_qemu_img_creates_open_and_take_writes() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["fixed", "dynamic"] {
        let vhd = dir.path().join(format!("{sub}.vhd"));
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            &format!("subformat={sub}"),
            s(&vhd),
            "100M",
        ]);
        let img = vhd::open(&vhd, &OpenOptions::default()).unwrap();
        assert_eq!(
            img.virtual_size(),
            104_865_792,
            "{sub}: the CHS-rounded size qemu writes"
        );
        let mut expect = vec![0u8; 104_865_792];
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..40 {
            let len = rng.random_range(1..200_000usize);
            let off = rng.random_range(0..expect.len() - len);
            rng.fill_bytes(&mut expect[off..off + len]);
            img.write_at(&expect[off..off + len], off as u64).unwrap();
        }
        img.flush().unwrap();
        drop(img);
        let raw = dir.path().join(format!("{sub}.raw"));
        std::fs::write(&raw, &expect).unwrap();
        qemu_check(&vhd);
        qemu_img(&["compare", "-f", "vpc", "-F", "raw", s(&vhd), s(&raw)]);
    }
}

/// Writes a seeded mix of aligned, unaligned, zeroing and discarding
/// requests to `img`, mirroring them in `expect`.
fn scribble(img: &dyn DiskImage, expect: &mut [u8], seed: u64, ops: usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let size = expect.len();
    for _ in 0..ops {
        let len = match rng.random_range(0..4) {
            0 => rng.random_range(1..600usize),
            1 => 4096,
            2 => rng.random_range(1..300_000usize),
            _ => 1 << 20,
        }
        .min(size);
        let mut off = rng.random_range(0..=size - len);
        if rng.random_bool(0.5) {
            off -= off % 512;
        }
        match rng.random_range(0..8) {
            0 => {
                img.write_zeroes(off as u64, len as u64).unwrap();
                expect[off..off + len].fill(0);
            }
            1 => {
                img.discard(off as u64, len as u64).unwrap();
                expect[off..off + len].fill(0);
            }
            _ => {
                rng.fill_bytes(&mut expect[off..off + len]);
                img.write_at(&expect[off..off + len], off as u64).unwrap();
            }
        }
    }
}

#[test]
fn images_made_here_pass_qemu_check_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (ImageType::Fixed, None, 10_000_000u64),
        (ImageType::Dynamic, None, 10_000_000),
        (ImageType::Dynamic, Some(512 * 1024), 7 << 20),
        (ImageType::Dynamic, Some(4096), (1 << 20) + 512),
    ];
    for (n, (ty, bs, size)) in cases.into_iter().enumerate() {
        let vhd = dir.path().join(format!("ours{n}.vhd"));
        let mut o = CreateOptions::new(Format::Vhd, ty, size);
        o.block_size = bs;
        let img = vhd::create(&vhd, &o).unwrap();
        let size = img.virtual_size();
        assert_eq!(size, size.next_multiple_of(512));
        let mut expect = vec![0u8; usize::try_from(size).unwrap()];
        scribble(&img, &mut expect, n as u64, 60);
        img.flush().unwrap();
        assert!(read_all(&img) == expect, "case {n} reads back");
        drop(img);
        assert_eq!(
            qemu_virtual_size(&vhd),
            size,
            "qemu 10 uses the current size for 'vmim'"
        );
        let raw = dir.path().join(format!("ours{n}.raw"));
        std::fs::write(&raw, &expect).unwrap();
        qemu_check(&vhd);
        qemu_img(&["compare", "-f", "vpc", "-F", "raw", s(&vhd), s(&raw)]);
        let report = vhd::check(&vhd, false).unwrap();
        assert!(report.is_clean(), "case {n}: {report:?}");
        // libvhdi reads the same bytes.
        assert!(
            libvhdi_read(std::slice::from_ref(&vhd)) == expect,
            "case {n} via libvhdi"
        );
    }
}

/// Reads a chain (child first) through libvhdi.
fn libvhdi_read(chain: &[PathBuf]) -> Vec<u8> {
    let script = r#"
import sys, pyvhdi
paths = sys.argv[1:]
files = []
for p in paths:
    f = pyvhdi.file()
    f.open(p)
    files.append(f)
for i in range(len(files) - 2, -1, -1):
    files[i].set_parent(files[i + 1])
f = files[0]
size = f.get_media_size()
out = sys.stdout.buffer
off = 0
while off < size:
    n = min(1 << 20, size - off)
    out.write(f.read_buffer_at_offset(n, off))
    off += n
"#;
    let mut args = vec!["-c", script];
    let strs: Vec<&str> = chain.iter().map(|p| s(p)).collect();
    args.extend(strs);
    let out = run("/usr/bin/python3", &args);
    assert!(
        out.status.success(),
        "libvhdi failed (install python3-libvhdi): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn differencing_chains_flatten_like_libvhdi() {
    let dir = tempfile::tempdir().unwrap();
    let size = (9 << 20) + 3 * 512;
    // The base is made by qemu-img, the children here.
    let base_raw = dir.path().join("base.raw");
    let data = pattern(42, size);
    std::fs::write(&base_raw, &data).unwrap();
    let base = dir.path().join("base.vhd");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vpc",
        "-o",
        "subformat=dynamic,force_size=on",
        s(&base_raw),
        s(&base),
    ]);
    let mut expect = data.clone();
    expect.resize(usize::try_from(qemu_virtual_size(&base)).unwrap(), 0);
    let mut chain = vec![base.clone()];
    for level in 0..3 {
        let child = dir.path().join(format!("child{level}.vhd"));
        let o = CreateOptions::differencing(Format::Vhd, chain.last().unwrap());
        let img = vhd::create(&child, &o).unwrap();
        assert_eq!(img.info().image_type, ImageType::Differencing);
        scribble(&img, &mut expect, 100 + level, 50);
        img.flush().unwrap();
        drop(img);
        chain.push(child.clone());
        let img = vhd::open(&child, &OpenOptions::read_only()).unwrap();
        assert!(read_all(&img) == expect, "level {level}: our flattening");
        let mut rev = chain.clone();
        rev.reverse();
        let theirs = libvhdi_read(&rev);
        assert_eq!(theirs.len(), expect.len());
        if let Some(d) = theirs.iter().zip(&expect).position(|(a, b)| a != b) {
            if std::env::var_os("VHD_DEBUG_KEEP").is_some() {
                let _ = std::fs::remove_dir_all("/tmp/vhddbg");
                std::fs::create_dir_all("/tmp/vhddbg").unwrap();
                for p in &chain {
                    std::fs::copy(p, Path::new("/tmp/vhddbg").join(p.file_name().unwrap()))
                        .unwrap();
                }
                std::fs::write("/tmp/vhddbg/expect", &expect).unwrap();
                std::fs::write("/tmp/vhddbg/theirs", &theirs).unwrap();
            }
            panic!("level {level}: libvhdi's flattening differs at {d:#x}");
        }
        let report = vhd::check(&child, false).unwrap();
        assert!(report.is_clean(), "{report:?}");
        // The chain depth shows in the allocation map.
        let map = vhd::map_range(&img, 0, img.virtual_size()).unwrap();
        assert!(map.iter().any(|e| e.depth > 0));
    }
}
