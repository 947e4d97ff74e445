//! OVAs made by GNU tar in every header format and member order, pax and
//! GNU extensions, and members over 8 GiB streamed without storing them.
#![allow(clippy::cast_possible_truncation)]

#[path = "package_util.rs"]
mod util;

use std::io::{self, Read};
use std::process::Command;

use ovf::package::{
    Compression, DigestAlgorithm, DigestSet, MemberRole, PackageError, PackageOptions,
    PackageReader, VerifyOptions, verify,
};
use ovf::vmdk::{CopyOptions, StreamWriter, WriterOptions, copy_vmdk_stream_to};
use util::{Magic, Size, Tar, header, random_bytes};
use vhd::{DiskImage, ImageType, RawImage};

fn gnu_tar(args: &[&str], dir: &std::path::Path) {
    let out = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("GNU tar is needed for this test (install tar): {e}"));
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn vmdk_of(data: &[u8]) -> Vec<u8> {
    let opts = WriterOptions {
        grain_size: 4096,
        level: 1,
        ..WriterOptions::default()
    };
    let mut w = StreamWriter::new(Vec::new(), data.len() as u64, opts).unwrap();
    for (i, c) in data.chunks(4096).enumerate() {
        if c.iter().any(|&b| b != 0) {
            w.write_grain(i as u64 * 4096, c).unwrap();
        }
    }
    w.finish().unwrap()
}

fn permutations(items: &[&'static str]) -> Vec<Vec<&'static str>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            out.push(p);
        }
    }
    out
}

/// Every format and member order: the disk converts from the stream and
/// the manifest verifies, wherever it sits.
#[test]
fn gnu_tar_every_format_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut disk = random_bytes(7, 256 << 10);
    disk[64 << 10..128 << 10].fill(0);
    let vmdk = vmdk_of(&disk);
    // Over 100 bytes: GNU tar needs a long-name entry, a pax path or the
    // ustar prefix field.
    let long = format!("{}/disk2-with-a-long-name.iso", "x".repeat(90));
    std::fs::create_dir(src.join("x".repeat(90))).unwrap();
    let iso = random_bytes(8, 5000);
    let ovf = util::descriptor(&["disk1.vmdk", &long]);
    let mf = util::manifest(
        &[("a.ovf", &ovf), ("disk1.vmdk", &vmdk), (&long, &iso)],
        DigestAlgorithm::Sha256,
    );
    std::fs::write(src.join("a.ovf"), &ovf).unwrap();
    std::fs::write(src.join("a.mf"), &mf).unwrap();
    std::fs::write(src.join("disk1.vmdk"), &vmdk).unwrap();
    std::fs::write(src.join(&long), &iso).unwrap();

    let names: Vec<&'static str> = vec!["a.ovf", "a.mf", "disk1.vmdk", "LONG"];
    let target_path = dir.path().join("disk.raw");
    for format in ["ustar", "pax", "gnu"] {
        for order in permutations(&names) {
            let ova = dir.path().join("t.ova");
            let _ = std::fs::remove_file(&ova);
            let mut args = vec![
                format!("--format={format}"),
                "-cf".to_string(),
                ova.to_str().unwrap().to_string(),
            ];
            args.extend(order.iter().map(|n| {
                if *n == "LONG" {
                    long.clone()
                } else {
                    n.to_string()
                }
            }));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            gnu_tar(&args, &src);

            let mut pkg = PackageReader::open(&ova, PackageOptions::default()).unwrap();
            let mut seen = Vec::new();
            while let Some(m) = pkg.next_member().unwrap() {
                seen.push(m.name.clone());
                if m.name == "disk1.vmdk" {
                    let _ = std::fs::remove_file(&target_path);
                    let target =
                        RawImage::create(&target_path, disk.len() as u64, ImageType::Dynamic)
                            .unwrap();
                    let file = pkg.open_file(Compression::Identity, false).unwrap();
                    copy_vmdk_stream_to(file, &target, &CopyOptions::default()).unwrap();
                    let mut back = vec![0u8; disk.len()];
                    target.read_at(&mut back, 0).unwrap();
                    assert!(back == disk, "{format} {order:?}: disk differs");
                } else if m.role == MemberRole::Descriptor {
                    assert_eq!(&*m.data.unwrap(), &ovf[..]);
                }
            }
            assert_eq!(seen.len(), 4, "{format} {order:?}: {seen:?}");
            assert!(seen.contains(&long), "{format}: long name lost: {seen:?}");
            let contents = pkg.finish().unwrap();
            let v = verify(&contents, &VerifyOptions::default())
                .unwrap_or_else(|e| panic!("{format} {order:?}: {e}"));
            assert_eq!(v.entries.len(), 3);
            assert!(v.entries.iter().all(|e| e.ok));
        }
    }
}

/// A package inside one top-level directory, as `tar -cf x.ova dir`.
#[test]
fn top_level_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pkg_dir = dir.path().join("app");
    std::fs::create_dir(&pkg_dir).unwrap();
    let ovf = util::descriptor(&["d.img"]);
    let img = random_bytes(9, 3000);
    std::fs::write(pkg_dir.join("app.ovf"), &ovf).unwrap();
    std::fs::write(pkg_dir.join("d.img"), &img).unwrap();
    std::fs::write(
        pkg_dir.join("app.mf"),
        util::manifest(&[("app.ovf", &ovf), ("d.img", &img)], DigestAlgorithm::Sha1),
    )
    .unwrap();
    // `tar -C app -cf x.ova .`: a `./` entry, then `./app.ovf` ...
    let dot = dir.path().join("dot.ova");
    gnu_tar(
        &["--format=gnu", "-cf", dot.to_str().unwrap(), "."],
        &pkg_dir,
    );
    let pkg = PackageReader::open(&dot, PackageOptions::default()).unwrap();
    let (members, contents) = util::read_all(pkg).unwrap();
    assert_eq!(contents.root, "");
    assert_eq!(members.len(), 3);
    verify(&contents, &VerifyOptions::default()).unwrap();

    let ova = dir.path().join("app.ova");
    gnu_tar(
        &["--format=gnu", "-cf", ova.to_str().unwrap(), "app"],
        dir.path(),
    );
    let pkg = PackageReader::open(&ova, PackageOptions::default()).unwrap();
    let (members, contents) = util::read_all(pkg).unwrap();
    assert_eq!(contents.root, "app");
    assert!(members.iter().any(|(n, d)| n == "app/d.img" && *d == img));
    let v = verify(&contents, &VerifyOptions::default()).unwrap();
    assert!(v.entries.iter().all(|e| e.ok) && v.extra_files.is_empty());
}

/// The pax size overrides the header's size field: the body length, and
/// so the position of the next header, follow the pax record.
#[test]
fn pax_size_overrides_header_size() {
    let body = random_bytes(10, 1500);
    let mut t = Tar::new();
    t.pax(&[("size", "1500"), ("path", "real-name.img")]);
    // The ustar size field lies (100 bytes).
    let h = header("short", Size::Octal(100), b'0', "", Magic::Ustar);
    t.raw(&h, &body);
    t.file("next.txt", b"hello");
    let pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
    let (members, _) = util::read_all(pkg).unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].0, "real-name.img");
    assert_eq!(members[0].1, body);
    assert_eq!(members[1], ("next.txt".to_string(), b"hello".to_vec()));
}

/// Long names through GNU `L` entries and the ustar prefix field.
#[test]
fn long_names() {
    let long = format!("{}/{}.vmdk", "d".repeat(120), "n".repeat(120));
    let mut t = Tar::new();
    t.gnu_long_name(&long);
    t.raw(
        &header("trunc", Size::Octal(3), b'0', "", Magic::Gnu),
        b"abc",
    );
    let mut h = header("file.img", Size::Octal(2), b'0', "", Magic::Ustar);
    h[345..352].copy_from_slice(b"pre/fix");
    util::set_checksum(&mut h);
    t.raw(&h, b"xy");
    let pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
    let (members, _) = util::read_all(pkg).unwrap();
    assert_eq!(members[0].0, long);
    assert_eq!(members[1].0, "pre/fix/file.img");
}

/// A reader that yields a header, then `len` generated bytes, then the
/// rest: a tar with a huge member, without storing it.
struct Generated {
    head: io::Cursor<Vec<u8>>,
    body_left: u64,
    tail: io::Cursor<Vec<u8>>,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        if self.body_left > 0 {
            let n = (buf.len() as u64).min(self.body_left) as usize;
            buf[..n].fill(0x5a);
            self.body_left -= n as u64;
            return Ok(n);
        }
        self.tail.read(buf)
    }
}

fn huge_member(size: u64, pax: bool) -> Generated {
    let mut head = Tar::new();
    if pax {
        head.pax(&[("size", &size.to_string())]);
        head.bytes
            .extend_from_slice(&header("big.img", Size::Octal(0), b'0', "", Magic::Ustar));
    } else {
        head.bytes.extend_from_slice(&header(
            "big.img",
            Size::Base256(size),
            b'0',
            "",
            Magic::Gnu,
        ));
    }
    let pad = (512 - size % 512) % 512;
    let mut tail = Tar::new();
    tail.bytes.extend(std::iter::repeat_n(0u8, pad as usize));
    tail.file("after.txt", b"after");
    Generated {
        head: io::Cursor::new(head.bytes),
        body_left: size,
        tail: io::Cursor::new(tail.finish()),
    }
}

/// Members over 8 GiB (base-256 and pax sizes) stream through and the
/// next member is found right after them.
#[test]
fn member_over_8_gib() {
    let size = (8u64 << 30) + 1000;
    for pax in [false, true] {
        let options = PackageOptions {
            digests_before_manifest: DigestSet::NONE,
            ..Default::default()
        };
        let mut pkg = PackageReader::ova(huge_member(size, pax), options);
        let m = pkg.next_member().unwrap().unwrap();
        assert_eq!((m.name.as_str(), m.size), ("big.img", size));
        let mut first = [0u8; 4096];
        pkg.body().unwrap().read_exact(&mut first).unwrap();
        assert!(first.iter().all(|&b| b == 0x5a));
        // The rest is skipped by the next call, streaming.
        let next = pkg.next_member().unwrap().unwrap();
        assert_eq!(next.name, "after.txt");
        assert!(pkg.next_member().unwrap().is_none());
    }
}

/// The same huge member, truncated: a clear error, not a hang.
#[test]
fn huge_member_truncated() {
    let mut g = huge_member(9 << 30, false);
    g.body_left = 1 << 20;
    g.tail = io::Cursor::new(Vec::new());
    let mut pkg = PackageReader::ova(g, PackageOptions::default());
    pkg.next_member().unwrap().unwrap();
    let err = pkg.next_member().unwrap_err();
    assert!(matches!(err, PackageError::Truncated { .. }), "{err}");
}

/// The end-of-archive marker: a lone zero block at the end of the input is
/// accepted (GNU tar does too), and bytes after the marker are not members.
#[test]
fn end_of_archive_marker() {
    let mut t = Tar::new();
    t.file("a.ovf", b"x");
    let mut lone = t.bytes.clone();
    lone.extend_from_slice(&[0u8; 512]);
    let pkg = PackageReader::ova(io::Cursor::new(lone), PackageOptions::default());
    assert_eq!(util::read_all(pkg).unwrap().0.len(), 1);

    let mut trailing = t.finish();
    trailing.extend_from_slice(&header("ghost.img", Size::Octal(0), b'0', "", Magic::Ustar));
    let pkg = PackageReader::ova(io::Cursor::new(trailing), PackageOptions::default());
    let (members, _) = util::read_all(pkg).unwrap();
    assert_eq!(members.len(), 1);

    // No marker at all: truncated.
    let pkg = PackageReader::ova(io::Cursor::new(t.bytes.clone()), PackageOptions::default());
    assert!(matches!(
        util::read_all(pkg).unwrap_err(),
        PackageError::Truncated { .. }
    ));
}
