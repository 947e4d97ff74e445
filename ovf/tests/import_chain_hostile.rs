//! Hostile and contradictory delta-disk packages: a parentRef to no disk,
//! a loop, a chain past the depth limit, a parent whose file is missing,
//! one file used over different parents, children whose outputs would
//! share a name, corrupt children held back until their parent came. Each
//! gives a typed error (or a correct import) and leaves nothing behind.
#![allow(clippy::cast_possible_truncation)]

#[path = "chain_util.rs"]
mod chain;

use std::path::Path;

use chain::{DiskDef, assert_same, descriptor, import_as, layer, listing, ova, read_image};
use ovf::descriptor::MapError;
use ovf::import::{ImportError, MAX_CHAIN_DEPTH};

const SIZE: usize = 2 << 20;

fn disk<'a>(id: &'a str, href: Option<&'a str>, parent: Option<&'a str>) -> DiskDef<'a> {
    DiskDef {
        id,
        href,
        capacity: SIZE as u64,
        parent,
    }
}

/// Imports `bytes` as an OVA into a fresh directory; on error, checks that
/// the directory was removed.
fn import_ova(
    tmp: &Path,
    name: &str,
    bytes: &[u8],
    format: vhd::Format,
) -> Result<(ovf::import::ImportReport, std::path::PathBuf), ImportError> {
    let pkg = tmp.join(format!("{name}.ova"));
    std::fs::write(&pkg, bytes).unwrap();
    let out = tmp.join(format!("out-{name}"));
    match import_as(&pkg, &out, format) {
        Ok(r) => Ok((r, out)),
        Err(e) => {
            assert!(
                !out.exists(),
                "{name}: {e}: left behind {:?}",
                listing(&out)
            );
            Err(e)
        }
    }
}

#[test]
fn a_parent_ref_to_no_disk_and_a_loop_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = layer(1, SIZE, None);
    let files = [("base.vmdk", &base.stream[..])];
    let order = ["chain.ovf", "base.vmdk", "chain.mf"];
    let dangling = descriptor(&[disk("a", Some("base.vmdk"), Some("gone"))], &["a"]);
    match import_ova(
        tmp.path(),
        "dangling",
        &ova(&dangling, &files, &order),
        vhd::Format::Vhdx,
    ) {
        Err(ImportError::Map {
            source: MapError::BadParent { disk, parent },
            ..
        }) => assert_eq!((disk.as_str(), parent.as_str()), ("a", "gone")),
        other => panic!("expected a bad parent error, got {other:?}"),
    }
    let looped = descriptor(
        &[
            disk("a", Some("base.vmdk"), Some("c")),
            disk("b", None, Some("a")),
            disk("c", None, Some("b")),
        ],
        &["c"],
    );
    match import_ova(
        tmp.path(),
        "loop",
        &ova(&looped, &files, &order),
        vhd::Format::Vhdx,
    ) {
        Err(ImportError::Map {
            source: MapError::ParentLoop { .. },
            ..
        }) => {}
        other => panic!("expected a loop error, got {other:?}"),
    }
}

/// A chain of `n` blank disks, the VM using the last.
fn blank_chain(n: usize) -> String {
    let ids: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    let disks: Vec<DiskDef> = (0..n)
        .map(|i| disk(&ids[i], None, i.checked_sub(1).map(|p| ids[p].as_str())))
        .collect();
    descriptor(&disks, &[ids[n - 1].as_str()])
}

#[test]
fn chains_up_to_the_depth_limit_and_not_beyond() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = blank_chain(MAX_CHAIN_DEPTH + 1);
    match import_ova(
        tmp.path(),
        "deep",
        &ova(&deep, &[], &["chain.ovf"]),
        vhd::Format::Vhdx,
    ) {
        Err(ImportError::ChainTooDeep { disk_id, limit }) => {
            assert_eq!(limit, MAX_CHAIN_DEPTH);
            assert_eq!(disk_id, format!("d{MAX_CHAIN_DEPTH}"));
        }
        other => panic!("expected a chain-depth error, got {other:?}"),
    }
    // A descriptor of 100,000 chained disks is refused as quickly.
    let huge = blank_chain(100_000);
    let started = std::time::Instant::now();
    assert!(matches!(
        import_ova(
            tmp.path(),
            "huge",
            &ova(&huge, &[], &["chain.ovf"]),
            vhd::Format::Vhdx
        ),
        Err(ImportError::ChainTooDeep { .. })
            | Err(ImportError::Map { .. })
            | Err(ImportError::Descriptor { .. })
    ));
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );

    let at_limit = blank_chain(MAX_CHAIN_DEPTH);
    let (report, out) = import_ova(
        tmp.path(),
        "limit",
        &ova(&at_limit, &[], &["chain.ovf"]),
        vhd::Format::Vhdx,
    )
    .unwrap();
    let leaf = report.disk(&format!("d{}", MAX_CHAIN_DEPTH - 1)).unwrap();
    assert_eq!(leaf.backing.len(), MAX_CHAIN_DEPTH - 1);
    let got = read_image(&out.join(&leaf.output), vhd::Format::Vhdx);
    assert!(got.len() == SIZE && got.iter().all(|&b| b == 0));
}

#[test]
fn a_parent_whose_file_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = layer(1, SIZE, None);
    let child = layer(2, SIZE, Some(&base.content));
    let ovf = descriptor(
        &[
            disk("base", Some("base.vmdk"), None),
            disk("child", Some("child.vmdk"), Some("base")),
        ],
        &["child"],
    );
    // The child is held back waiting for a parent that never comes; no
    // manifest names the missing file.
    let files = [("child.vmdk", &child.stream[..])];
    for format in [vhd::Format::Vhdx, vhd::Format::Raw] {
        let bytes = ova(&ovf, &files, &["chain.ovf", "child.vmdk"]);
        match import_ova(tmp.path(), &format!("orphan-{format}"), &bytes, format) {
            Err(ImportError::MissingFile { disk_id, href }) => {
                assert_eq!((disk_id.as_str(), href.as_str()), ("base", "base.vmdk"));
            }
            other => panic!("expected a missing-file error, got {other:?}"),
        }
    }
}

#[test]
fn one_file_over_different_parents_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = layer(1, SIZE, None);
    let child = layer(2, SIZE, Some(&base.content));
    let files = [
        ("base.vmdk", &base.stream[..]),
        ("child.vmdk", &child.stream[..]),
    ];
    let order = ["chain.ovf", "base.vmdk", "child.vmdk", "chain.mf"];
    // One disk uses child.vmdk over base, another alone.
    let shared = descriptor(
        &[
            disk("base", Some("base.vmdk"), None),
            disk("delta", Some("child.vmdk"), Some("base")),
            disk("alone", Some("child.vmdk"), None),
        ],
        &["delta", "alone"],
    );
    match import_ova(
        tmp.path(),
        "shared",
        &ova(&shared, &files, &order),
        vhd::Format::Vhdx,
    ) {
        Err(ImportError::FileConflict {
            href,
            first,
            second,
        }) => {
            assert_eq!(href, "child.vmdk");
            assert_eq!((first.as_str(), second.as_str()), ("delta", "alone"));
        }
        other => panic!("expected a file conflict, got {other:?}"),
    }
    // A delta disk whose file is its parent's own.
    let own = descriptor(
        &[
            disk("base", Some("base.vmdk"), None),
            disk("self", Some("base.vmdk"), Some("base")),
        ],
        &["self"],
    );
    assert!(matches!(
        import_ova(
            tmp.path(),
            "own",
            &ova(&own, &files, &order),
            vhd::Format::Vhdx
        ),
        Err(ImportError::FileConflict { .. })
    ));
}

#[test]
fn children_whose_outputs_would_share_a_name() {
    let tmp = tempfile::tempdir().unwrap();
    let base = layer(1, SIZE, None);
    let one = layer(2, SIZE, Some(&base.content));
    let two = layer(3, SIZE, Some(&base.content));
    let ovf = descriptor(
        &[
            disk("base", Some("base.vmdk"), None),
            disk("one", Some("x/disk.vmdk"), Some("base")),
            disk("two", Some("y/disk.vmdk"), Some("base")),
        ],
        &["one", "two"],
    );
    let files = [
        ("base.vmdk", &base.stream[..]),
        ("x/disk.vmdk", &one.stream[..]),
        ("y/disk.vmdk", &two.stream[..]),
    ];
    // Both children come first and are held back.
    let order = [
        "chain.ovf",
        "x/disk.vmdk",
        "y/disk.vmdk",
        "base.vmdk",
        "chain.mf",
    ];
    for format in [vhd::Format::Vhd, vhd::Format::Raw] {
        let (report, out) = import_ova(
            tmp.path(),
            &format!("names-{format}"),
            &ova(&ovf, &files, &order),
            format,
        )
        .unwrap();
        let (a, b) = (report.disk("one").unwrap(), report.disk("two").unwrap());
        assert_ne!(a.output, b.output);
        assert_same(
            "one",
            &read_image(&out.join(&a.output), format),
            &one.content,
        );
        assert_same(
            "two",
            &read_image(&out.join(&b.output), format),
            &two.content,
        );
        assert_eq!(listing(&out).len(), 4, "{:?}", listing(&out));
    }
}

#[test]
fn a_corrupt_child_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let base = layer(1, SIZE, None);
    let child = layer(2, SIZE, Some(&base.content));
    let mut bad = child.stream.clone();
    // Damage the compressed data of the first grain (after the 64 KiB
    // header area the writer reserves).
    for b in &mut bad[(64 << 10) + 40..(64 << 10) + 200] {
        *b ^= 0x5A;
    }
    let ovf = descriptor(
        &[
            disk("base", Some("base.vmdk"), None),
            disk("child", Some("child.vmdk"), Some("base")),
        ],
        &["child"],
    );
    let files = [("base.vmdk", &base.stream[..]), ("child.vmdk", &bad[..])];
    // Without a manifest the damage is found while converting: held back
    // (child first) or straight from the stream (parent first).
    for (i, order) in [
        ["chain.ovf", "child.vmdk", "base.vmdk"],
        ["chain.ovf", "base.vmdk", "child.vmdk"],
    ]
    .iter()
    .enumerate()
    {
        for format in [vhd::Format::Vhdx, vhd::Format::Raw] {
            match import_ova(
                tmp.path(),
                &format!("corrupt-{i}-{format}"),
                &ova(&ovf, &files, order),
                format,
            ) {
                Err(ImportError::Vmdk { href, .. }) => assert!(href.ends_with("child.vmdk")),
                other => panic!("expected a vmdk error, got {other:?}"),
            }
        }
    }
    // With a manifest the digest mismatch is reported before conversion.
    let order = ["chain.ovf", "chain.mf", "child.vmdk", "base.vmdk"];
    let mut bytes = ova(
        &ovf,
        &[
            ("base.vmdk", &base.stream[..]),
            ("child.vmdk", &child.stream[..]),
        ],
        &order,
    );
    // The child's first grain marker and data are unique in the archive.
    let grain = &child.stream[64 << 10..(64 << 10) + 64];
    let at = bytes.windows(grain.len()).position(|w| w == grain).unwrap();
    bytes[at + 30] ^= 1;
    assert!(matches!(
        import_ova(tmp.path(), "digest", &bytes, vhd::Format::Vhdx),
        Err(ImportError::Package(_))
    ));
}
