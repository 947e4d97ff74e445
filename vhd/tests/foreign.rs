//! Images of formats this crate does not read, made by qemu-img, are
//! refused by probing with an error naming the format, instead of being
//! taken for raw disks whose bytes are their containers; naming the raw
//! format explicitly still opens them as bytes.

mod common;

use common::qemu_img;
use vhd::{DiskImage, Error, ErrorKind, Format, OpenOptions};

#[test]
fn probing_refuses_formats_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    for (format, options, name) in [
        ("qcow2", "", "QCOW"),
        ("qcow", "", "QCOW"),
        ("vmdk", "subformat=monolithicSparse", "VMDK"),
        ("vmdk", "subformat=streamOptimized", "VMDK"),
        ("vmdk", "subformat=monolithicFlat", "VMDK"),
        ("vdi", "", "VDI"),
        ("qed", "", "QED"),
    ] {
        let path = dir.path().join(format!("disk-{format}-{}", options.len()));
        let p = path.to_str().unwrap();
        let mut args = vec!["create", "-q", "-f", format];
        if !options.is_empty() {
            args.extend(["-o", options]);
        }
        args.extend([p, "4M"]);
        qemu_img(&args);
        let what = format!("{format} {options}");
        match vhd::open(&path, &OpenOptions::read_only()) {
            Err(e @ Error::ForeignFormat { .. }) => {
                assert_eq!(e.kind(), ErrorKind::Unsupported, "{what}");
                let text = e.to_string();
                assert!(text.contains(&format!("a {name} image")), "{what}: {text}");
                assert!(text.contains(p), "{what}: {text}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            matches!(
                vhd::check(&path, false),
                Err(Error::ForeignFormat { format: f, .. }) if f == name
            ),
            "{what}: check refuses it too"
        );
        // Named explicitly, the file is a raw disk of its own bytes.
        let raw = vhd::open(
            &path,
            &OpenOptions {
                format: Some(Format::Raw),
                ..OpenOptions::read_only()
            },
        )
        .unwrap();
        assert_eq!(
            raw.virtual_size(),
            std::fs::metadata(&path).unwrap().len(),
            "{what}"
        );
    }
}

#[test]
fn plain_files_are_still_raw() {
    let dir = tempfile::tempdir().unwrap();
    // Near misses of every signature, and a file too short to hold one.
    for (name, data) in [
        ("text", b"# Disk Descriptor, not quite\n".to_vec()),
        ("kdmw", b"KDMW and more bytes".to_vec()),
        ("short", b"QFI".to_vec()),
        ("empty", Vec::new()),
    ] {
        let path = dir.path().join(name);
        common::write_raw(&path, &data);
        let image = vhd::open(&path, &OpenOptions::read_only()).unwrap();
        assert_eq!(image.info().format, Format::Raw, "{name}");
    }
}
