//! Crafted VHD files: damaged ones give typed errors (never a panic, a hang
//! or a huge allocation), quirky ones from real producers open, parent
//! chains that loop or leave the allowed directories are refused, and the
//! check finds and repairs what it should.
#![allow(clippy::cast_possible_truncation)]

use std::fs::OpenOptions as FsOpen;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vhd::{CreateOptions, DiskImage, Error, ErrorKind, Format, ImageType, OpenOptions, Severity};

fn checksum(b: &[u8]) -> u32 {
    !b.iter().fold(0u32, |a, &x| a.wrapping_add(u32::from(x)))
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut v = vec![0u8; len];
    f.read_exact_at(&mut v, off).unwrap();
    v
}

fn write_at(path: &Path, off: u64, data: &[u8]) {
    let f = FsOpen::new().write(true).open(path).unwrap();
    f.write_all_at(data, off).unwrap();
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Rewrites the footer (both copies for dynamic disks) through `f`, then
/// fixes its checksum.
fn patch_footer(path: &Path, f: impl Fn(&mut [u8])) {
    let end = len(path) - 512;
    let head = read_at(path, 0, 8) == b"conectix";
    let mut at = vec![end];
    if head {
        at.push(0);
    }
    for o in at {
        let mut b = read_at(path, o, 512);
        f(&mut b);
        b[64..68].fill(0);
        let s = checksum(&b);
        b[64..68].copy_from_slice(&s.to_be_bytes());
        write_at(path, o, &b);
    }
}

/// Rewrites the dynamic header (at 512) through `f`, then fixes its checksum.
fn patch_header(path: &Path, f: impl Fn(&mut [u8])) {
    let mut b = read_at(path, 512, 1024);
    f(&mut b);
    b[36..40].fill(0);
    let s = checksum(&b);
    b[36..40].copy_from_slice(&s.to_be_bytes());
    write_at(path, 512, &b);
}

fn dynamic(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    let img = vhd::create(
        &p,
        &CreateOptions::new(Format::Vhd, ImageType::Dynamic, size),
    )
    .unwrap();
    img.write_at(&[0xAB; 5000], 1 << 20).unwrap();
    img.write_at(&[0xCD; 512], size - 512).unwrap();
    img.flush().unwrap();
    p
}

fn open_err(path: &Path) -> Error {
    match vhd::open(path, &OpenOptions::read_only()) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

fn assert_corrupt(path: &Path, field: &str) {
    let e = open_err(path);
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains(field), "expected {field:?} in: {e}");
}

#[test]
fn bad_block_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bs in [0u32, 0x8000_0000, 3 << 20, 256] {
        let p = dynamic(dir.path(), &format!("bs{bs}.vhd"), 8 << 20);
        patch_header(&p, |h| h[32..36].copy_from_slice(&bs.to_be_bytes()));
        assert_corrupt(&p, "block size");
    }
}

#[test]
fn tables_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The table beyond the end of the file.
    let p = dynamic(dir.path(), "far.vhd", 8 << 20);
    let beyond = len(&p) + 4096;
    patch_header(&p, |h| h[16..24].copy_from_slice(&beyond.to_be_bytes()));
    assert_corrupt(&p, "table offset");
    // An entry count whose table would be 16 GiB.
    let p = dynamic(dir.path(), "count.vhd", 8 << 20);
    patch_header(&p, |h| h[28..32].copy_from_slice(&u32::MAX.to_be_bytes()));
    assert_corrupt(&p, "table offset");
    // A table offset that overflows when the table is added.
    let p = dynamic(dir.path(), "wrap.vhd", 8 << 20);
    patch_header(&p, |h| {
        h[16..24].copy_from_slice(&(u64::MAX - 3).to_be_bytes())
    });
    assert_corrupt(&p, "table offset");
    // Too few entries for the disk.
    let p = dynamic(dir.path(), "few.vhd", 8 << 20);
    patch_header(&p, |h| h[28..32].copy_from_slice(&2u32.to_be_bytes()));
    assert_corrupt(&p, "max table entries");
}

#[test]
fn footers_claiming_more_than_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fixed.vhd");
    drop(
        vhd::create(
            &p,
            &CreateOptions::new(Format::Vhd, ImageType::Fixed, 1 << 20),
        )
        .unwrap(),
    );
    patch_footer(&p, |f| {
        f[48..56].copy_from_slice(&(2u64 << 20).to_be_bytes())
    });
    assert_corrupt(&p, "current size");
    // A dynamic disk whose size its table cannot cover.
    let p = dynamic(dir.path(), "dyn.vhd", 8 << 20);
    patch_footer(&p, |f| {
        f[48..56].copy_from_slice(&(1u64 << 40).to_be_bytes())
    });
    assert_corrupt(&p, "max table entries");
    // The header offset outside the file.
    let p = dynamic(dir.path(), "hdr.vhd", 8 << 20);
    patch_footer(&p, |f| {
        f[16..24].copy_from_slice(&(1u64 << 40).to_be_bytes())
    });
    assert_corrupt(&p, "data offset");
}

#[test]
fn bad_checksums_are_refused_or_recovered() {
    let dir = tempfile::tempdir().unwrap();
    // Header checksum.
    let p = dynamic(dir.path(), "h.vhd", 8 << 20);
    write_at(&p, 512 + 36, &[1, 2, 3, 4]);
    assert_corrupt(&p, "dynamic header checksum");
    // Both footers bad.
    let p = dynamic(dir.path(), "f.vhd", 8 << 20);
    let end = len(&p) - 512;
    write_at(&p, end + 100, &[0x55]);
    write_at(&p, 100, &[0x55]);
    assert_corrupt(&p, "footer checksum");
    // Fixed disk with a bad footer: nothing to fall back on.
    let p = dir.path().join("fixed.vhd");
    drop(
        vhd::create(
            &p,
            &CreateOptions::new(Format::Vhd, ImageType::Fixed, 1 << 20),
        )
        .unwrap(),
    );
    write_at(&p, (1 << 20) + 100, &[0x55]);
    assert_corrupt(&p, "footer checksum");
    // Only the end footer bad: the copy at 0 opens the disk, the check
    // reports it and the repair puts the footer back.
    let p = dynamic(dir.path(), "end.vhd", 8 << 20);
    let end = len(&p) - 512;
    write_at(&p, end + 100, &[0x55]);
    let img = vhd::open(&p, &OpenOptions::read_only()).unwrap();
    let mut b = vec![0u8; 5000];
    img.read_at(&mut b, 1 << 20).unwrap();
    assert!(b.iter().all(|&x| x == 0xAB));
    drop(img);
    let r = vhd::check(&p, false).unwrap();
    assert_eq!(r.count(Severity::Error), 1, "{r:?}");
    let r = vhd::check(&p, true).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert!(vhd::check(&p, false).unwrap().is_clean());
    // Only the copy bad: repaired from the end footer.
    let p = dynamic(dir.path(), "copy.vhd", 8 << 20);
    write_at(&p, 100, &[0x55]);
    assert!(!vhd::check(&p, false).unwrap().is_clean());
    assert!(vhd::check(&p, true).unwrap().is_clean());
    assert_eq!(read_at(&p, 0, 512), read_at(&p, len(&p) - 512, 512));
}

#[test]
fn bad_table_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, u32, &str); 3] = [
        ("meta", 1, "overlaps the dynamic header"),
        ("beyond", 0x00FF_FFFF, "beyond the end"),
        ("footer", 0, "overlaps the footer copy"),
    ];
    for (name, v, what) in cases {
        let p = dynamic(dir.path(), &format!("{name}.vhd"), 8 << 20);
        write_at(&p, 1536 + 4 * 3, &v.to_be_bytes());
        assert_corrupt(&p, what);
    }
    // Two entries naming the same block.
    let p = dynamic(dir.path(), "dup.vhd", 8 << 20);
    // Block 0 holds the data written at 1 MiB.
    let used = read_at(&p, 1536, 4);
    assert_ne!(used, [0xFF; 4]);
    write_at(&p, 1536 + 4 * 3, &used);
    assert_corrupt(&p, "overlaps the block");
}

#[test]
fn random_damage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let base = dynamic(dir.path(), "base.vhd", 4 << 20);
    let pristine = std::fs::read(&base).unwrap();
    let mut rng = SmallRng::seed_from_u64(99);
    let p = dir.path().join("fuzz.vhd");
    for _ in 0..300 {
        let mut b = pristine.clone();
        // Damage the structures: footer copy, header, table, and the footer.
        for _ in 0..rng.random_range(1..6) {
            let region = match rng.random_range(0..3) {
                0 => 0..2048,
                1 => 2048..4096,
                _ => b.len() - 512..b.len(),
            };
            let i = rng.random_range(region);
            b[i] = rng.random();
        }
        std::fs::write(&p, &b).unwrap();
        if let Ok(img) = vhd::open(&p, &OpenOptions::read_only()) {
            let mut buf = vec![0u8; 64 * 1024];
            let size = img.virtual_size();
            let mut off = 0;
            while off < size.min(8 << 20) {
                let n = (size - off).min(buf.len() as u64) as usize;
                let _ = img.read_at(&mut buf[..n], off);
                off += n as u64;
            }
            if size > 0 {
                let _ = vhd::map_range(&img, 0, size);
            }
        }
        let _ = vhd::check(&p, false);
    }
}

#[test]
fn size_follows_the_creator_application() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.vhd");
    let size = 100_000_000u64.next_multiple_of(512);
    drop(vhd::create(&p, &CreateOptions::new(Format::Vhd, ImageType::Fixed, size)).unwrap());
    let open_size = || {
        vhd::open(&p, &OpenOptions::read_only())
            .unwrap()
            .virtual_size()
    };
    assert_eq!(open_size(), size);
    let footer = read_at(&p, size, 512);
    let (c, h, s) = (
        u64::from(u16::from_be_bytes([footer[56], footer[57]])),
        u64::from(footer[58]),
        u64::from(footer[59]),
    );
    let chs = c * h * s * 512;
    assert!(chs < size);
    for (app, expect) in [
        (*b"vpc ", chs),
        (*b"qemu", chs),
        (*b"win ", size),
        (*b"d2v ", size),
        (*b"qem2", size),
        (*b"wa\0\0", size),
        (*b"tap\0", size),
    ] {
        patch_footer(&p, |f| f[28..32].copy_from_slice(&app));
        assert_eq!(open_size(), expect, "creator {app:?}");
    }
    // The maximum geometry means "use the current size" even for Virtual PC.
    patch_footer(&p, |f| {
        f[28..32].copy_from_slice(b"vpc ");
        f[56..60].copy_from_slice(&[0xFF, 0xFF, 16, 255]);
    });
    assert_eq!(open_size(), size);
}

/// A parent, a child and a grandchild, each with data of its own.
fn chain(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let base = dynamic(dir, "base.vhd", 8 << 20);
    let mid = dir.join("mid.vhd");
    let img = vhd::create(&mid, &CreateOptions::differencing(Format::Vhd, &base)).unwrap();
    img.write_at(&[0x11; 4096], 2 << 20).unwrap();
    img.flush().unwrap();
    drop(img);
    let top = dir.join("top.vhd");
    let img = vhd::create(&top, &CreateOptions::differencing(Format::Vhd, &mid)).unwrap();
    img.write_at(&[0x22; 100], 3 << 20).unwrap();
    img.flush().unwrap();
    (base, mid, top)
}

fn uuid_and_ts(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let f = read_at(path, len(path) - 512, 512);
    (f[68..84].to_vec(), f[24..28].to_vec())
}

#[test]
fn chains_open_with_depth() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, top) = chain(dir.path());
    let img = vhd::open(&top, &OpenOptions::read_only()).unwrap();
    let mut b = [0u8; 1];
    for (off, want, depth) in [
        ((1u64 << 20) + 1, 0xAB, 2),
        ((2 << 20) + 1, 0x11, 1),
        ((3 << 20) + 1, 0x22, 0),
    ] {
        img.read_at(&mut b, off).unwrap();
        assert_eq!(b[0], want);
        assert_eq!(img.block_status(off, 1).unwrap().depth, depth);
    }
    let info = img.info();
    assert_eq!(
        info.parent
            .as_ref()
            .unwrap()
            .parent
            .as_ref()
            .unwrap()
            .image_type,
        ImageType::Dynamic
    );
    // A chain longer than the limit is refused.
    let o = OpenOptions {
        max_chain_depth: 2,
        ..OpenOptions::read_only()
    };
    assert!(matches!(
        vhd::open(&top, &o),
        Err(Error::ChainTooDeep { .. })
    ));
}

#[test]
fn locator_loops_end_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A child that names itself as its parent.
    let base = dynamic(dir.path(), "p.vhd", 4 << 20);
    let c = dir.path().join("c.vhd");
    drop(vhd::create(&c, &CreateOptions::differencing(Format::Vhd, &base)).unwrap());
    std::fs::rename(&c, &base).unwrap();
    let (uuid, _) = uuid_and_ts(&base);
    patch_header(&base, |h| {
        h[40..56].copy_from_slice(&uuid);
        h[56..60].fill(0);
    });
    let e = open_err(&base);
    assert!(matches!(e, Error::ChainTooDeep { .. }), "{e}");
    // Two children naming each other.
    let x = dynamic(dir.path(), "x.vhd", 4 << 20);
    let a = dir.path().join("a.vhd");
    let b = dir.path().join("b.vhd");
    drop(vhd::create(&a, &CreateOptions::differencing(Format::Vhd, &x)).unwrap());
    drop(vhd::create(&b, &CreateOptions::differencing(Format::Vhd, &a)).unwrap());
    // Point a at b: same-length names, so the locator data just changes.
    let whole = std::fs::read(&a).unwrap();
    let from: Vec<u8> = "x.vhd".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let to: Vec<u8> = "b.vhd".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut patched = whole.clone();
    for i in 0..whole.len() - from.len() {
        if whole[i..i + from.len()] == from[..] {
            patched[i..i + to.len()].copy_from_slice(&to);
        }
    }
    std::fs::write(&a, &patched).unwrap();
    let (buuid, _) = uuid_and_ts(&b);
    patch_header(&a, |h| {
        h[40..56].copy_from_slice(&buuid);
        h[56..60].fill(0);
        let name: Vec<u8> = "b.vhd".encode_utf16().flat_map(u16::to_be_bytes).collect();
        h[64..576].fill(0);
        h[64..64 + name.len()].copy_from_slice(&name);
    });
    let e = open_err(&b);
    assert!(matches!(e, Error::ChainTooDeep { .. }), "{e}");
}

#[test]
fn locators_outside_the_allowed_directories_are_refused() {
    let parent_dir = tempfile::tempdir().unwrap();
    let child_dir = tempfile::tempdir().unwrap();
    let base = dynamic(parent_dir.path(), "base.vhd", 4 << 20);
    let child = child_dir.path().join("child.vhd");
    drop(vhd::create(&child, &CreateOptions::differencing(Format::Vhd, &base)).unwrap());
    // By default only the child's directory is allowed.
    let e = open_err(&child);
    assert!(matches!(e, Error::ParentNotAllowed { .. }), "{e}");
    // A symbolic link inside the allowed directory that leads outside.
    let link_dir = tempfile::tempdir().unwrap();
    let c2 = link_dir.path().join("c2.vhd");
    std::fs::copy(&child, &c2).unwrap();
    std::os::unix::fs::symlink(&base, link_dir.path().join("base.vhd")).unwrap();
    let e = open_err(&c2);
    assert!(matches!(e, Error::ParentNotAllowed { .. }), "{e}");
    // Allowed explicitly, it opens.
    let o = OpenOptions {
        allowed_parent_dirs: Some(vec![parent_dir.path().to_path_buf()]),
        ..OpenOptions::read_only()
    };
    let img = vhd::open(&child, &o).unwrap();
    let mut b = [0u8; 1];
    img.read_at(&mut b, 1 << 20).unwrap();
    assert_eq!(b[0], 0xAB);
}

#[test]
fn parent_identity_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (base, mid, _) = chain(dir.path());
    // A different disk under the parent's name.
    let saved = std::fs::read(&base).unwrap();
    std::fs::remove_file(&base).unwrap();
    dynamic(dir.path(), "base.vhd", 8 << 20);
    let e = open_err(&mid);
    assert!(matches!(e, Error::ParentMismatch { .. }), "{e}");
    std::fs::write(&base, &saved).unwrap();
    vhd::open(&mid, &OpenOptions::read_only()).unwrap();
    // Same id, other time stamp.
    patch_header(&mid, |h| h[56..60].copy_from_slice(&12345u32.to_be_bytes()));
    let e = open_err(&mid);
    assert!(matches!(e, Error::ParentMismatch { .. }), "{e}");
    // Time stamp 0, as Windows 10 writes: not checked.
    patch_header(&mid, |h| h[56..60].fill(0));
    vhd::open(&mid, &OpenOptions::read_only()).unwrap();
}

#[test]
fn windows_style_locators_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let base = dynamic(dir.path(), "base.vhd", 4 << 20);
    let child = dir.path().join("child.vhd");
    drop(vhd::create(&child, &CreateOptions::differencing(Format::Vhd, &base)).unwrap());
    // Replace the locators with what Windows writes: an absolute path on a
    // drive (W2ku), a relative one in ASCII (Wi2r), data_space in bytes,
    // parent time stamp 0.
    let h = read_at(&child, 512, 1024);
    let at0 = u64::from_be_bytes(h[576 + 16..576 + 24].try_into().unwrap());
    let at1 = u64::from_be_bytes(h[600 + 16..600 + 24].try_into().unwrap());
    let abs: Vec<u8> = "C:\\Hyper-V\\Disks\\base.vhd"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let rel = b".\\base.vhd".to_vec();
    write_at(&child, at0, &abs);
    write_at(&child, at1, &rel);
    patch_header(&child, |h| {
        h[56..60].fill(0);
        h[576..580].copy_from_slice(b"W2ku");
        h[580..584].copy_from_slice(&4096u32.to_be_bytes());
        h[584..588].copy_from_slice(&(abs.len() as u32).to_be_bytes());
        h[600..604].copy_from_slice(b"Wi2r");
        h[604..608].copy_from_slice(&4096u32.to_be_bytes());
        h[608..612].copy_from_slice(&(rel.len() as u32).to_be_bytes());
    });
    let img = vhd::open(&child, &OpenOptions::read_only()).unwrap();
    let mut b = [0u8; 1];
    img.read_at(&mut b, 1 << 20).unwrap();
    assert_eq!(b[0], 0xAB);
    // Only the drive path left: the file name next to the child is used.
    patch_header(&child, |h| h[600..624].fill(0));
    vhd::open(&child, &OpenOptions::read_only()).unwrap();
    // A locator whose data lies outside the file is an error.
    patch_header(&child, |h| {
        h[576 + 16..576 + 24].copy_from_slice(&(1u64 << 40).to_be_bytes())
    });
    let e = open_err(&child);
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

#[test]
fn leaked_space_is_found_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let p = dynamic(dir.path(), "leak.vhd", 8 << 20);
    let before = len(&p);
    let footer = read_at(&p, before - 512, 512);
    // Leave 3 MiB of junk before the footer, as a lost allocation would.
    write_at(&p, before - 512, &vec![0x77; 3 << 20]);
    write_at(&p, before - 512 + (3 << 20), &footer);
    let img = vhd::open(&p, &OpenOptions::read_only()).unwrap();
    let mut b = vec![0u8; 8 << 20];
    img.read_at(&mut b, 0).unwrap();
    assert!(!b.contains(&0x77));
    drop(img);
    let r = vhd::check(&p, false).unwrap();
    assert_eq!(r.count(Severity::Leak), 1, "{r:?}");
    assert_eq!(r.allocated_blocks, 2);
    let r = vhd::check(&p, true).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(len(&p), before);
    // Allocation after the repair still works and reads back.
    let img = vhd::open(&p, &OpenOptions::default()).unwrap();
    img.write_at(&[9; 512], 7 << 20).unwrap();
    img.flush().unwrap();
    drop(img);
    assert!(vhd::check(&p, false).unwrap().is_clean());
}

#[test]
fn resize_keeps_data_and_zeros_new_space() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [ImageType::Fixed, ImageType::Dynamic] {
        let p = dir.path().join(format!("{kind}.vhd"));
        let img = vhd::create(&p, &CreateOptions::new(Format::Vhd, kind, 3 << 20)).unwrap();
        img.write_at(&[5; 4096], (3 << 20) - 4096).unwrap();
        img.resize(4 << 20).unwrap();
        assert_eq!(img.virtual_size(), 4 << 20);
        let mut b = vec![0u8; 1 << 20];
        img.read_at(&mut b, 3 << 20).unwrap();
        assert!(b.iter().all(|&x| x == 0), "{kind}: grown space reads zeros");
        img.resize(2 << 20).unwrap();
        img.resize(3 << 20).unwrap();
        img.read_at(&mut b[..4096], (3 << 20) - 4096).unwrap();
        assert!(
            b[..4096].iter().all(|&x| x == 0),
            "{kind}: cut data stays gone"
        );
        drop(img);
        let img = vhd::open(&p, &OpenOptions::read_only()).unwrap();
        assert_eq!(img.virtual_size(), 3 << 20);
        assert!(vhd::check(&p, false).unwrap().is_clean());
    }
}

#[test]
fn a_511_byte_footer_is_read() {
    // Windows before Virtual PC 2004 wrote the footer one byte short.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short.vhd");
    let img = vhd::create(
        &p,
        &CreateOptions::new(Format::Vhd, ImageType::Fixed, 1 << 20),
    )
    .unwrap();
    img.write_at(&[0x42; 512], (1 << 20) - 512).unwrap();
    drop(img);
    let footer = read_at(&p, 1 << 20, 512);
    assert_eq!(footer[511], 0, "the last footer byte is reserved");
    let f = FsOpen::new().write(true).open(&p).unwrap();
    f.set_len((1 << 20) + 511).unwrap();
    drop(f);
    let img = vhd::open(&p, &OpenOptions::read_only()).unwrap();
    assert_eq!(img.virtual_size(), 1 << 20);
    let mut b = [0u8; 512];
    img.read_at(&mut b, (1 << 20) - 512).unwrap();
    assert_eq!(b, [0x42; 512]);
}

#[test]
fn a_vhdx_parent_is_identified_by_its_data_write_guid() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("parent.vhdx");
    let p = vhd::create(
        &parent,
        &CreateOptions::new(Format::Vhdx, ImageType::Dynamic, 4 << 20),
    )
    .unwrap();
    p.write_at(&[0x31; 4096], 1 << 20).unwrap();
    p.flush().unwrap();
    drop(p);
    let child = dir.path().join("child.vhd");
    drop(vhd::create(&child, &CreateOptions::differencing(Format::Vhd, &parent)).unwrap());
    let img = vhd::open(&child, &OpenOptions::read_only()).unwrap();
    let mut b = [0u8; 1];
    img.read_at(&mut b, 1 << 20).unwrap();
    assert_eq!(b[0], 0x31);
    drop(img);
    // Writing to the parent gives it a new data write guid: the child no
    // longer matches.
    let p = vhd::open(&parent, &OpenOptions::default()).unwrap();
    p.write_at(&[0x32; 512], 0).unwrap();
    p.flush().unwrap();
    drop(p);
    let e = open_err(&child);
    assert!(matches!(e, Error::ParentMismatch { .. }), "{e}");
}

#[test]
fn new_blocks_have_page_aligned_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = dynamic(dir.path(), "aligned.vhd", 8 << 20);
    let mut seen = 0;
    for i in 0..4u64 {
        let e = u32::from_be_bytes(read_at(&p, 1536 + 4 * i, 4).try_into().unwrap());
        if e != u32::MAX {
            // 512-byte bitmap, then the data.
            assert_eq!((u64::from(e) * 512 + 512) % 4096, 0, "block {i}");
            seen += 1;
        }
    }
    assert_eq!(seen, 2);
    assert!(vhd::check(&p, false).unwrap().is_clean());
}

#[test]
fn growing_twice_keeps_blocks_allocated_in_between() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("grow.vhd");
    let img = vhd::create(
        &p,
        &CreateOptions::new(Format::Vhd, ImageType::Dynamic, 3 << 20),
    )
    .unwrap();
    img.resize(10 << 20).unwrap();
    img.write_at(&[0x66; 4096], 9 << 20).unwrap();
    img.resize(20 << 20).unwrap();
    img.write_at(&[0x67; 4096], 19 << 20).unwrap();
    img.flush().unwrap();
    drop(img);
    let img = vhd::open(&p, &OpenOptions::read_only()).unwrap();
    assert_eq!(img.virtual_size(), 20 << 20);
    let mut b = [0u8; 4096];
    img.read_at(&mut b, 9 << 20).unwrap();
    assert_eq!(b, [0x66; 4096]);
    img.read_at(&mut b, 19 << 20).unwrap();
    assert_eq!(b, [0x67; 4096]);
    assert!(vhd::check(&p, false).unwrap().is_clean());
    // Beyond what the table's padding can hold: a clear error.
    let img = vhd::open(&p, &OpenOptions::default()).unwrap();
    let e = img.resize(1 << 40).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}
