//! Gzip-compressed and chunked files, read while streaming, from tars and
//! directory packages; directory packages refuse links.
#![allow(clippy::cast_possible_truncation)]

#[path = "package_util.rs"]
mod util;

use std::io::{self, Read, Write};

use flate2::write::GzEncoder;
use ovf::package::{
    Compression, DigestAlgorithm, MemberRole, PackageError, PackageOptions, PackageReader,
    VerifyOptions, chunk_name, verify,
};
use util::{Tar, random_bytes};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Reads the file whose first member comes next after metadata, returning
/// its content and the names of the members that followed it.
fn read_file(
    pkg: &mut PackageReader,
    first: &str,
    compression: Compression,
    chunked: bool,
) -> Result<(Vec<u8>, Vec<String>), PackageError> {
    let mut content = Vec::new();
    let mut after = Vec::new();
    while let Some(m) = pkg.next_member()? {
        if m.name == first {
            pkg.open_file(compression, chunked)?
                .read_to_end(&mut content)
                .map_err(|e| PackageError::from_io(e, "reading", "t".as_ref()))?;
        } else if m.role == MemberRole::File || !content.is_empty() {
            after.push(m.name);
        }
    }
    Ok((content, after))
}

#[test]
fn gzip_file_decompresses_while_streaming() {
    let data = random_bytes(1, 100_000);
    let gz = gzip(&data);
    let ovf = util::descriptor(&["d.img.gz"]);
    let mf = util::manifest(
        &[("p.ovf", &ovf), ("d.img.gz", &gz)],
        DigestAlgorithm::Sha256,
    );
    let tar = Tar::new()
        .file("p.ovf", &ovf)
        .file("d.img.gz", &gz)
        .file("p.mf", &mf)
        .finish();
    let mut pkg = PackageReader::ova(io::Cursor::new(tar), PackageOptions::default());
    let (content, after) = read_file(&mut pkg, "d.img.gz", Compression::Gzip, false).unwrap();
    assert!(content == data);
    assert_eq!(after, vec!["p.mf".to_string()]);
    // The manifest digest is over the compressed member.
    verify(&pkg.finish().unwrap(), &VerifyOptions::default()).unwrap();
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut gz = gzip(&random_bytes(2, 50_000));
    let mid = gz.len() / 2;
    gz[mid] ^= 0xff;
    let tar = Tar::new().file("p.ovf", b"x").file("d.gz", &gz).finish();
    let mut pkg = PackageReader::ova(io::Cursor::new(tar), PackageOptions::default());
    let e = read_file(&mut pkg, "d.gz", Compression::Gzip, false).unwrap_err();
    assert!(matches!(e, PackageError::Gzip { .. }), "{e}");
}

fn chunks(data: &[u8], size: usize) -> Vec<(String, Vec<u8>)> {
    data.chunks(size)
        .enumerate()
        .map(|(i, c)| (chunk_name("disk.vmdk", i as u32), c.to_vec()))
        .collect()
}

#[test]
fn chunked_file_concatenates_in_order() {
    let data = random_bytes(3, 10_000);
    let parts = chunks(&data, 3000);
    assert_eq!(parts.len(), 4);
    let mut t = Tar::new();
    t.file("p.ovf", b"x");
    for (n, c) in &parts {
        t.file(n, c);
    }
    t.file("p.mf", b"");
    let mut pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
    let first = chunk_name("disk.vmdk", 0);
    let (content, after) = read_file(&mut pkg, &first, Compression::Identity, true).unwrap();
    assert!(content == data);
    // The manifest after the last chunk is still handed out.
    assert_eq!(after, vec!["p.mf".to_string()]);
}

#[test]
fn gzip_over_chunks() {
    let data = random_bytes(4, 60_000);
    let gz = gzip(&data);
    let mut t = Tar::new();
    for (i, c) in gz.chunks(7000).enumerate() {
        t.file(&chunk_name("disk.vmdk", i as u32), c);
    }
    let mut pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
    let first = chunk_name("disk.vmdk", 0);
    let (content, _) = read_file(&mut pkg, &first, Compression::Gzip, true).unwrap();
    assert!(content == data);
}

#[test]
fn out_of_order_or_missing_chunks_are_errors() {
    let data = random_bytes(5, 9000);
    let parts = chunks(&data, 3000);
    for order in [[0usize, 2, 1], [1, 0, 2], [2, 0, 1]] {
        let mut t = Tar::new();
        for &i in &order {
            t.file(&parts[i].0, &parts[i].1);
        }
        let mut pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
        let e = match read_file(&mut pkg, &parts[0].0, Compression::Identity, true) {
            Ok(_) => panic!("{order:?}: out-of-order chunks accepted"),
            Err(e) => e,
        };
        assert!(matches!(e, PackageError::Chunk { .. }), "{order:?}: {e}");
        assert!(e.to_string().contains("chunk"), "{e}");
    }
    // A gap (chunk 1 missing) ends the file at chunk 0, and chunk 2
    // arriving later is refused.
    let mut t = Tar::new();
    t.file(&parts[0].0, &parts[0].1)
        .file("other.img", b"o")
        .file(&parts[2].0, &parts[2].1);
    let mut pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
    let e = read_file(&mut pkg, &parts[0].0, Compression::Identity, true).unwrap_err();
    assert!(matches!(e, PackageError::Chunk { .. }), "{e}");
}

#[test]
fn directory_package_with_chunks_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(6, 10_000);
    let parts = chunks(&data, 4096);
    let ovf = util::descriptor(&["disk.vmdk", "extra.iso"]);
    let iso = random_bytes(7, 100);
    let mut files: Vec<(&str, &[u8])> = vec![("p.ovf", &ovf), ("extra.iso", &iso)];
    for (n, c) in &parts {
        files.push((n, c));
    }
    std::fs::write(dir.path().join("p.ovf"), &ovf).unwrap();
    std::fs::write(dir.path().join("extra.iso"), &iso).unwrap();
    std::fs::write(dir.path().join("unrelated.txt"), b"not part of it").unwrap();
    std::fs::write(
        dir.path().join("p.mf"),
        util::manifest(&files, DigestAlgorithm::Sha256),
    )
    .unwrap();
    for (n, c) in &parts {
        std::fs::write(dir.path().join(n), c).unwrap();
    }
    let mut pkg =
        PackageReader::open(&dir.path().join("p.ovf"), PackageOptions::default()).unwrap();
    assert!(pkg.is_directory());
    // Descriptor and manifest come first.
    let m = pkg.next_member().unwrap().unwrap();
    assert_eq!(m.role, MemberRole::Descriptor);
    let m = pkg.next_member().unwrap().unwrap();
    assert_eq!(m.role, MemberRole::Manifest);
    pkg.want(["disk.vmdk", "extra.iso"]).unwrap();
    let first = chunk_name("disk.vmdk", 0);
    let (content, _) = read_file(&mut pkg, &first, Compression::Identity, true).unwrap();
    assert!(content == data);
    let contents = pkg.finish().unwrap();
    assert!(!contents.members.iter().any(|m| m.name == "unrelated.txt"));
    let v = verify(&contents, &VerifyOptions::default()).unwrap();
    assert_eq!(v.entries.len(), files.len());
}

#[test]
fn directory_package_refuses_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.ovf"), util::descriptor(&["disk.vmdk"])).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("disk.vmdk")).unwrap();
    let mut pkg = PackageReader::open(dir.path(), PackageOptions::default()).unwrap();
    pkg.next_member().unwrap().unwrap();
    pkg.want(["disk.vmdk"]).unwrap();
    let e = pkg.next_member().unwrap_err();
    assert!(
        matches!(
            e,
            PackageError::ForbiddenMember {
                kind: "symbolic link",
                ..
            }
        ),
        "{e}"
    );
    // A symlinked directory on the way is refused as well.
    std::fs::remove_file(dir.path().join("disk.vmdk")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("sub")).unwrap();
    let mut pkg = PackageReader::open(dir.path(), PackageOptions::default()).unwrap();
    pkg.next_member().unwrap().unwrap();
    pkg.want(["sub/passwd"]).unwrap();
    assert!(pkg.next_member().is_err());
    assert!(pkg.want(["../x"]).is_err());
}

/// A gzip-compressed streamOptimized VMDK split in chunks converts straight
/// from the tar stream; `drain` moves past what the VMDK reader left.
#[test]
fn gzip_chunked_vmdk_converts_from_the_stream() {
    use ovf::vmdk::{CopyOptions, StreamWriter, WriterOptions, copy_vmdk_stream_to};
    use vhd::DiskImage;

    let mut disk = random_bytes(11, 512 << 10);
    disk[100_000..300_000].fill(0);
    let mut w = StreamWriter::new(Vec::new(), disk.len() as u64, WriterOptions::default()).unwrap();
    for (i, c) in disk.chunks(65536).enumerate() {
        if c.iter().any(|&b| b != 0) {
            w.write_grain(i as u64 * 65536, c).unwrap();
        }
    }
    let mut vmdk = w.finish().unwrap();
    vmdk.extend_from_slice(&[0u8; 4096]); // trailing bytes the VMDK reader never needs
    let gz = gzip(&vmdk);
    let mut t = Tar::new();
    t.file("p.ovf", b"x");
    for (i, c) in gz.chunks(100_000).enumerate() {
        t.file(&chunk_name("disk.vmdk", i as u32), c);
    }
    t.file("p.mf", b"");
    let mut pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let target = vhd::RawImage::create(
        &dir.path().join("d.raw"),
        disk.len() as u64,
        vhd::ImageType::Dynamic,
    )
    .unwrap();
    let mut names = Vec::new();
    while let Some(m) = pkg.next_member().unwrap() {
        names.push(m.name.clone());
        if m.name == chunk_name("disk.vmdk", 0) {
            let mut file = pkg.open_file(Compression::Gzip, true).unwrap();
            let stats = copy_vmdk_stream_to(&mut file, &target, &CopyOptions::default()).unwrap();
            assert!(stats.hole_bytes >= 131072, "{stats:?}");
            assert_eq!(file.drain().unwrap(), 4096);
            assert!(file.chunks_read() > 1);
        }
    }
    assert_eq!(names, ["p.ovf", "disk.vmdk.000000000", "p.mf"]);
    let mut back = vec![0u8; disk.len()];
    target.read_at(&mut back, 0).unwrap();
    assert!(back == disk);
}

/// A tar cut inside a disk: the VMDK error carries the package's
/// truncation error.
#[test]
fn truncated_tar_under_a_vmdk() {
    use ovf::vmdk::{StreamReader, StreamWriter, WriterOptions};
    let mut w = StreamWriter::new(Vec::new(), 1 << 20, WriterOptions::default()).unwrap();
    w.write_grain(0, &random_bytes(12, 65536)).unwrap();
    let vmdk = w.finish().unwrap();
    let tar = Tar::new().file("d.vmdk", &vmdk).finish();
    let cut = tar[..512 + 80_000].to_vec(); // inside the first grain
    let mut pkg = PackageReader::ova(io::Cursor::new(cut), PackageOptions::default());
    pkg.next_member().unwrap().unwrap();
    let file = pkg.open_file(Compression::Identity, false).unwrap();
    let mut r = StreamReader::new(file).unwrap();
    let e = r.next_grain().unwrap_err();
    assert!(
        matches!(e.package_error(), Some(PackageError::Truncated { .. })),
        "{e:?}"
    );
}
