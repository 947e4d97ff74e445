//! A whole streamOptimized VMDK file with its tables in a footer at the end
//! (as this crate's writer and VMware write them): described from its
//! tables (`describe_vmdk_file`), converted into an image
//! (`convert_vmdk_file`), and refused when cut short. The layout with the
//! tables up front (qemu-img's) is tested in `vmdk_qemu.rs`.

use std::path::Path;

use ovf::vmdk::{StreamWriter, VmdkError, WriterOptions, convert_vmdk_file, describe_vmdk_file};
use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

const GRAIN: usize = 64 << 10;

/// A 4 MiB disk: data grains 1 and 2, a zeroed grain 5, data in the last
/// grain; the rest never written.
fn footer_layout(path: &Path) -> Vec<u8> {
    let mut disk = vec![0u8; 4 << 20];
    for (i, b) in disk[GRAIN..3 * GRAIN].iter_mut().enumerate() {
        *b = (i % 251).to_le_bytes()[0] + 1;
    }
    let last = disk.len() - GRAIN;
    disk[last..].fill(7);
    let options = WriterOptions {
        zeroed_grain_gtes: true,
        ..WriterOptions::default()
    };
    let mut w = StreamWriter::new(Vec::new(), disk.len() as u64, options).unwrap();
    for g in [1, 2] {
        w.write_grain((g * GRAIN) as u64, &disk[g * GRAIN..(g + 1) * GRAIN])
            .unwrap();
    }
    w.write_zeroed_grain(5 * GRAIN as u64).unwrap();
    w.write_grain(last as u64, &disk[last..]).unwrap();
    std::fs::write(path, w.finish().unwrap()).unwrap();
    disk
}

fn read_all(path: &Path) -> Vec<u8> {
    let image = vhd::open(path, &OpenOptions::read_only()).unwrap();
    let mut buf = vec![0u8; usize::try_from(image.virtual_size()).unwrap()];
    image.read_at(&mut buf, 0).unwrap();
    buf
}

#[test]
fn footer_layout_is_described_and_converted() {
    let dir = tempfile::tempdir().unwrap();
    let vmdk = dir.path().join("disk.vmdk");
    let disk = footer_layout(&vmdk);
    let info = describe_vmdk_file(&vmdk).unwrap();
    assert!(info.tables_at_end);
    assert_eq!(info.virtual_size, 4 << 20);
    assert_eq!(info.grain_size, GRAIN as u64);
    assert_eq!(info.allocated_bytes, 3 * GRAIN as u64);
    assert_eq!(info.zeroed_bytes, GRAIN as u64);
    assert_eq!(info.unallocated_bytes, (4 << 20) - 4 * GRAIN as u64);
    assert_eq!(info.create_type.as_deref(), Some("streamOptimized"));
    assert!(info.cid.is_some());

    for format in [Format::Vhdx, Format::Vhd, Format::Raw] {
        let out = dir.path().join(format!("out.{format}"));
        let create = CreateOptions::new(format, ImageType::Dynamic, 0);
        let stats = convert_vmdk_file(&vmdk, &out, &create, None).unwrap();
        assert_eq!(stats.data_bytes, 3 * GRAIN as u64, "{format}");
        assert_eq!(read_all(&out), disk, "{format}");
    }

    // Without its end-of-stream marker, or its footer: refused, and no
    // output appears.
    let whole = std::fs::read(&vmdk).unwrap();
    for cut in [512, 1024, 1536] {
        let short = dir.path().join("short.vmdk");
        std::fs::write(&short, &whole[..whole.len() - cut]).unwrap();
        assert!(
            matches!(describe_vmdk_file(&short), Err(VmdkError::Truncated { .. })),
            "cut {cut}"
        );
        let out = dir.path().join("short.vhdx");
        let create = CreateOptions::new(Format::Vhdx, ImageType::Dynamic, 0);
        assert!(
            convert_vmdk_file(&short, &out, &create, None).is_err(),
            "cut {cut}"
        );
        assert!(!out.exists());
    }
    // Converting onto the input is refused.
    let create = CreateOptions::new(Format::Raw, ImageType::Dynamic, 0);
    assert!(matches!(
        convert_vmdk_file(&vmdk, &vmdk, &create, None),
        Err(VmdkError::InvalidArgument(_))
    ));
    assert_eq!(std::fs::read(&vmdk).unwrap(), whole);
}

#[test]
fn absurd_table_offsets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let vmdk = dir.path().join("disk.vmdk");
    footer_layout(&vmdk);
    let whole = std::fs::read(&vmdk).unwrap();
    // gdOffset (header offset 56) far past any file, and just past this one.
    for gd in [1u64 << 60, u64::MAX - 1, whole.len() as u64 / 512] {
        let mut bytes = whole.clone();
        bytes[56..64].copy_from_slice(&gd.to_le_bytes());
        let bad = dir.path().join("bad.vmdk");
        std::fs::write(&bad, &bytes).unwrap();
        assert!(describe_vmdk_file(&bad).is_err(), "gd {gd:#x}");
        let out = dir.path().join("bad.raw");
        let create = CreateOptions::new(Format::Raw, ImageType::Dynamic, 0);
        // Whatever the reader makes of it, no panic and no partial output.
        if convert_vmdk_file(&bad, &out, &create, None).is_err() {
            assert!(!out.exists());
        }
    }
}
