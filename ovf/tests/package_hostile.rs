//! Hostile packages: each is refused quickly with a clear, typed error.

#[path = "package_util.rs"]
mod util;

use std::io;

use ovf::package::{
    DigestAlgorithm, PackageError, PackageErrorKind, PackageOptions, PackageReader, VerifyOptions,
    safe_relative_path, verify,
};
use util::{Magic, Size, Tar, header};

fn read(bytes: Vec<u8>) -> ovf::package::Result<util::ReadAll> {
    util::read_all(PackageReader::ova(
        io::Cursor::new(bytes),
        PackageOptions::default(),
    ))
}

fn refused(bytes: Vec<u8>) -> PackageError {
    match read(bytes) {
        Ok((m, _)) => panic!(
            "accepted, members {:?}",
            m.iter().map(|x| &x.0).collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

#[test]
fn path_traversal_and_absolute_names() {
    for name in [
        "../evil.vmdk",
        "a/../../evil",
        "/etc/passwd",
        "./../x",
        "a\\..\\b",
    ] {
        let e = refused(Tar::new().file("a.ovf", b"x").file(name, b"data").finish());
        assert_eq!(e.kind(), PackageErrorKind::Unsafe, "{name}: {e}");
        assert!(e.to_string().contains("unsafe path"), "{e}");
    }
    // Through a pax path and a GNU long name too.
    let mut t = Tar::new();
    t.pax(&[("path", "../../etc/cron.d/x")])
        .file("innocent", b"x");
    assert_eq!(refused(t.finish()).kind(), PackageErrorKind::Unsafe);
    let mut t = Tar::new();
    t.gnu_long_name("/abs/x").file("innocent", b"x");
    assert_eq!(refused(t.finish()).kind(), PackageErrorKind::Unsafe);
}

#[test]
fn links_devices_and_fifos() {
    for (flag, kind) in [
        (b'2', "symbolic link"),
        (b'1', "hard link"),
        (b'3', "character device"),
        (b'4', "block device"),
        (b'6', "fifo"),
    ] {
        // A link named like a referenced file, pointing at a host file.
        let e = refused(
            Tar::new()
                .file("a.ovf", &util::descriptor(&["disk.vmdk"]))
                .entry("disk.vmdk", flag, "/etc/shadow", b"")
                .finish(),
        );
        match &e {
            PackageError::ForbiddenMember { name, kind: k } => {
                assert_eq!((name.as_str(), *k), ("disk.vmdk", kind));
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn duplicate_members() {
    let e = refused(
        Tar::new()
            .file("a.vmdk", b"1")
            .file("./a.vmdk", b"2")
            .finish(),
    );
    assert!(
        matches!(e, PackageError::Duplicate { ref name } if name == "a.vmdk"),
        "{e}"
    );
}

#[test]
fn truncated_archives() {
    let full = Tar::new()
        .file("a.ovf", b"x")
        .file("b.img", &[7u8; 3000])
        .finish();
    // Cut inside the body, inside a header, and just before the end marker.
    for cut in [512 * 2 + 700, 512 * 2 + 100, full.len() - 1024] {
        let e = refused(full[..cut].to_vec());
        assert!(
            matches!(e, PackageError::Truncated { .. }),
            "cut {cut}: {e}"
        );
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}

#[test]
fn bad_header_checksum() {
    let mut bytes = Tar::new().file("a.ovf", b"x").finish();
    bytes[0] ^= 1; // name changed, checksum not
    let e = refused(bytes);
    assert!(matches!(e, PackageError::TarHeader { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn negative_base256_size_and_bad_octal() {
    let mut t = Tar::new();
    let mut h = header("a.img", Size::Base256(1), b'0', "", Magic::Gnu);
    h[124] = 0xff;
    util::set_checksum(&mut h);
    t.raw(&h, b"");
    assert!(matches!(
        refused(t.finish()),
        PackageError::TarHeader { .. }
    ));
    let mut t = Tar::new();
    let mut h = header("a.img", Size::Octal(1), b'0', "", Magic::Ustar);
    h[124..127].copy_from_slice(b"9zz");
    util::set_checksum(&mut h);
    t.raw(&h, b"");
    assert!(matches!(
        refused(t.finish()),
        PackageError::TarHeader { .. }
    ));
}

#[test]
fn oversized_extended_headers_and_metadata() {
    // A pax header claiming 4 GiB: refused before any allocation.
    let mut t = Tar::new();
    t.bytes
        .extend_from_slice(&header("p", Size::Octal(1 << 32), b'x', "", Magic::Ustar));
    assert!(matches!(
        refused(t.finish()),
        PackageError::TarHeader { .. }
    ));
    // A descriptor claiming 100 GiB in a 2 KiB archive: capped, not allocated.
    let mut t = Tar::new();
    t.bytes.extend_from_slice(&header(
        "a.ovf",
        Size::Base256(100 << 30),
        b'0',
        "",
        Magic::Gnu,
    ));
    assert!(matches!(refused(t.finish()), PackageError::TooLarge { .. }));
}

#[test]
fn unsupported_entries() {
    let e = refused(Tar::new().entry("s.img", b'S', "", b"").finish());
    assert_eq!(e.kind(), PackageErrorKind::Unsupported);
    let mut t = Tar::new();
    t.pax(&[("GNU.sparse.major", "1")]).file("s.img", b"");
    assert_eq!(refused(t.finish()).kind(), PackageErrorKind::Unsupported);
}

fn signed_package(disk: &[u8], manifest_disk: &[u8], list_disk: bool) -> Vec<u8> {
    let ovf = util::descriptor(&["disk.img"]);
    let mut files: Vec<(&str, &[u8])> = vec![("p.ovf", &ovf)];
    if list_disk {
        files.push(("disk.img", manifest_disk));
    }
    let mf = util::manifest(&files, DigestAlgorithm::Sha256);
    Tar::new()
        .file("p.ovf", &ovf)
        .file("disk.img", disk)
        .file("p.mf", &mf)
        .finish()
}

#[test]
fn wrong_digest_missing_entry_missing_file() {
    let disk = vec![1u8; 4000];
    let mut other = disk.clone();
    other[10] = 2;

    let (_, contents) = read(signed_package(&disk, &other, true)).unwrap();
    let e = verify(&contents, &VerifyOptions::default()).unwrap_err();
    assert_eq!(e.kind(), PackageErrorKind::Verification);
    assert!(
        e.to_string().contains("SHA256 digest of \"disk.img\""),
        "{e}"
    );

    let (_, contents) = read(signed_package(&disk, &disk, false)).unwrap();
    let e = verify(&contents, &VerifyOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no entry in the manifest"), "{e}");

    // An entry for a file the package lacks.
    let ovf = util::descriptor(&[]);
    let mf = util::manifest(
        &[("p.ovf", &ovf), ("gone.vmdk", b"x")],
        DigestAlgorithm::Sha1,
    );
    let (_, contents) = read(Tar::new().file("p.mf", &mf).file("p.ovf", &ovf).finish()).unwrap();
    let e = verify(&contents, &VerifyOptions::default()).unwrap_err();
    assert!(e.to_string().contains("gone.vmdk"), "{e}");

    // no_verify turns all of these into warnings, with the details kept.
    let (_, contents) = read(signed_package(&disk, &other, true)).unwrap();
    let v = verify(
        &contents,
        &VerifyOptions {
            no_verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!v.warnings.is_empty());
    let bad = v.entries.iter().find(|e| e.name == "disk.img").unwrap();
    assert!(!bad.ok && bad.actual.is_some() && bad.actual.as_deref() != Some(&bad.expected[..]));
}

#[test]
fn manifest_spellings_verify() {
    let ovf = util::descriptor(&["d.img"]);
    let d = vec![9u8; 777];
    let h1 = ovf::package::to_hex(&DigestAlgorithm::Sha1.digest(&ovf)).to_uppercase();
    let h5 = ovf::package::to_hex(&DigestAlgorithm::Sha512.digest(&d));
    let mf = format!("SHA-1 (./p.ovf) = {h1}\r\nSHA512(d.img)={h5}\r\n");
    // Manifest first: only the algorithms it names are computed afterwards.
    let (_, contents) = read(
        Tar::new()
            .file("p.mf", mf.as_bytes())
            .file("p.ovf", &ovf)
            .file("d.img", &d)
            .finish(),
    )
    .unwrap();
    let v = verify(&contents, &VerifyOptions::default()).unwrap();
    assert!(v.entries.iter().all(|e| e.ok) && v.entries.len() == 2);
    let disk = contents.members.iter().find(|m| m.name == "d.img").unwrap();
    assert!(disk.digests.sha512.is_some() && disk.digests.sha1.is_none());
}

#[test]
fn layout_errors() {
    let e = refused(Tar::new().file("a.ovf", b"1").file("b.ovf", b"2").finish());
    assert!(matches!(e, PackageError::Layout { .. }), "{e}");
    let e = refused(Tar::new().file("d/a.ovf", b"1").file("a.mf", b"").finish());
    assert!(matches!(e, PackageError::Layout { .. }), "{e}");
}

#[test]
fn href_helper() {
    assert!(safe_relative_path("../x").is_err());
    assert!(safe_relative_path("/x").is_err());
    assert!(safe_relative_path("http://example.invalid/x").is_err());
    assert_eq!(
        safe_relative_path("./sub/x.vmdk").unwrap(),
        std::path::Path::new("sub/x.vmdk")
    );
}
