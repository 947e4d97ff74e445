//! Importing packages whose disks are chains of delta disks
//! (`ovf:parentRef`): a base, a child over it, a grandchild over the child
//! and a second child of the base, as layered streamOptimized VMDKs with
//! holes, new data, zero grains and zeroed grain-table entries over the
//! parent's data. Every member order of an OVA, directory packages, every
//! output format; the leaves read back as the flattened layers, through
//! `vhd::open` and through tools we did not write (libvhdi follows the
//! differencing chains, qemu-img checks and compares what it can open).
#![allow(clippy::cast_possible_truncation)]

#[path = "chain_util.rs"]
mod chain;

use std::path::{Path, PathBuf};

use chain::{
    DiskDef, Layer, assert_same, descriptor, directory, import_as, layer, libvhdi_matches, listing,
    ova, qemu_check, qemu_compare, read_image,
};
use ovf::import::{ImportError, ImportReport, inspect};

const SIZE: usize = 8 << 20;

struct Appliance {
    base: Layer,
    child: Layer,
    grand: Layer,
    sibling: Layer,
}

fn appliance() -> Appliance {
    let base = layer(1, SIZE, None);
    let child = layer(2, SIZE, Some(&base.content));
    let grand = layer(3, SIZE, Some(&child.content));
    let sibling = layer(4, SIZE, Some(&base.content));
    Appliance {
        base,
        child,
        grand,
        sibling,
    }
}

impl Appliance {
    fn files(&self) -> Vec<(&'static str, &[u8])> {
        vec![
            ("base.vmdk", &self.base.stream[..]),
            ("child.vmdk", &self.child.stream[..]),
            ("grand.vmdk", &self.grand.stream[..]),
            ("sibling.vmdk", &self.sibling.stream[..]),
        ]
    }

    /// The descriptor; `children_first` lists the delta disks' files
    /// before their parents' in References and DiskSection.
    fn descriptor(&self, children_first: bool) -> String {
        let cap = SIZE as u64;
        let disk = |id, href, parent| DiskDef {
            id,
            href: Some(href),
            capacity: cap,
            parent,
        };
        let mut disks = vec![
            disk("base", "base.vmdk", None),
            disk("child", "child.vmdk", Some("base")),
            disk("grand", "grand.vmdk", Some("child")),
            disk("sibling", "sibling.vmdk", Some("base")),
        ];
        if children_first {
            disks.reverse();
        }
        descriptor(&disks, &["grand", "sibling"])
    }
}

fn ext(format: vhd::Format) -> &'static str {
    match format {
        vhd::Format::Vhdx => "vhdx",
        vhd::Format::Vhd => "vhd",
        vhd::Format::Raw => "raw",
    }
}

/// Checks what an import of the appliance wrote into `out`.
fn check(report: &ImportReport, out: &Path, format: vhd::Format, app: &Appliance, tmp: &Path) {
    let disk = |id: &str| {
        report
            .disk(id)
            .unwrap_or_else(|| panic!("no imported disk {id}"))
    };
    let (base, child, grand, sibling) =
        (disk("base"), disk("child"), disk("grand"), disk("sibling"));
    assert_eq!(base.parent, None);
    assert_eq!(child.parent.as_deref(), Some("base"));
    assert_eq!(grand.parent.as_deref(), Some("child"));
    assert_eq!(sibling.parent.as_deref(), Some("base"));
    for d in [base, child, grand, sibling] {
        assert!(
            d.output.ends_with(ext(format)),
            "{} output {}",
            d.href.as_deref().unwrap_or(""),
            d.output
        );
        assert_eq!(d.virtual_size, SIZE as u64);
    }
    if format == vhd::Format::Raw {
        assert!(grand.backing.is_empty() && sibling.backing.is_empty());
    } else {
        assert_eq!(grand.backing, [child.output.clone(), base.output.clone()]);
        assert_eq!(child.backing, std::slice::from_ref(&base.output));
        assert_eq!(sibling.backing, std::slice::from_ref(&base.output));
        assert!(base.backing.is_empty());
    }
    for (what, d, l) in [
        ("base", base, &app.base),
        ("child", child, &app.child),
        ("grand", grand, &app.grand),
        ("sibling", sibling, &app.sibling),
    ] {
        let got = read_image(&out.join(&d.output), format);
        assert_same(&format!("{format} {what}"), &got, &l.content);
    }
    // Only the images and the descriptor: no spool or rebuild leftovers.
    let mut want: Vec<String> = [base, child, grand, sibling]
        .iter()
        .map(|d| d.output.clone())
        .chain(std::iter::once("chain.ovf".to_string()))
        .collect();
    want.sort();
    assert_eq!(listing(out), want);

    // The structure of every image, by the image crate's checker (qemu-img
    // cannot open differencing VHDX or check VHD).
    if format != vhd::Format::Raw {
        for d in [base, child, grand, sibling] {
            let r = vhd::check(&out.join(&d.output), false).unwrap();
            assert!(r.is_clean(), "{}: {:?}", d.output, r.findings);
        }
    }

    // Tools we did not write.
    let expected = |name: &str, l: &Layer| {
        let p = tmp.join(format!("expected-{name}.raw"));
        std::fs::write(&p, &l.content).unwrap();
        p
    };
    let (e_base, e_grand, e_sib) = (
        expected("base", &app.base),
        expected("grand", &app.grand),
        expected("sibling", &app.sibling),
    );
    let path = |d: &ovf::import::ImportedDisk| out.join(&d.output);
    match format {
        vhd::Format::Raw => {
            qemu_compare(&path(grand), "raw", &e_grand);
            qemu_compare(&path(sibling), "raw", &e_sib);
        }
        vhd::Format::Vhd | vhd::Format::Vhdx => {
            // qemu-img opens neither differencing VHD (it ignores the
            // parent) nor differencing VHDX: libvhdi follows the chains.
            libvhdi_matches(&[path(grand), path(child), path(base)], &e_grand);
            libvhdi_matches(&[path(sibling), path(base)], &e_sib);
            let qfmt = if format == vhd::Format::Vhd {
                "vpc"
            } else {
                "vhdx"
            };
            qemu_compare(&path(base), qfmt, &e_base);
            if format == vhd::Format::Vhdx {
                qemu_check(&path(base));
            }
        }
    }
}

const FORMATS: [vhd::Format; 3] = [vhd::Format::Vhdx, vhd::Format::Vhd, vhd::Format::Raw];

#[test]
fn ova_in_every_member_order_to_every_format() {
    let app = appliance();
    let tmp = tempfile::tempdir().unwrap();
    let files = app.files();
    let orders: [(&str, bool, &[&str]); 4] = [
        (
            "parents first",
            false,
            &[
                "chain.ovf",
                "chain.mf",
                "base.vmdk",
                "child.vmdk",
                "grand.vmdk",
                "sibling.vmdk",
            ],
        ),
        (
            "children first",
            true,
            &[
                "chain.ovf",
                "grand.vmdk",
                "sibling.vmdk",
                "child.vmdk",
                "base.vmdk",
                "chain.mf",
            ],
        ),
        (
            "child between",
            false,
            &[
                "chain.ovf",
                "child.vmdk",
                "base.vmdk",
                "grand.vmdk",
                "sibling.vmdk",
                "chain.mf",
            ],
        ),
        (
            "descriptor last",
            false,
            &[
                "grand.vmdk",
                "child.vmdk",
                "base.vmdk",
                "sibling.vmdk",
                "chain.mf",
                "chain.ovf",
            ],
        ),
    ];
    for (i, (what, children_first, order)) in orders.iter().enumerate() {
        let pkg = tmp.path().join(format!("chain-{i}.ova"));
        std::fs::write(&pkg, ova(&app.descriptor(*children_first), &files, order)).unwrap();
        for format in FORMATS {
            let out = tmp.path().join(format!("out-{i}-{format}"));
            let report =
                import_as(&pkg, &out, format).unwrap_or_else(|e| panic!("{what}, {format}: {e:?}"));
            assert_eq!(report.verification.entries_ok, 5, "{what}");
            check(&report, &out, format, &app, tmp.path());
        }
    }
}

#[test]
fn directory_package_listing_children_first_and_a_moved_output() {
    let app = appliance();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("pkg");
    directory(&pkg, &app.descriptor(true), &app.files());
    for format in [vhd::Format::Vhdx, vhd::Format::Vhd] {
        let out = tmp.path().join(format!("out-{format}"));
        let report = import_as(&pkg, &out, format).unwrap();
        check(&report, &out, format, &app, tmp.path());
        // The chain is found by relative locators: the directory can move.
        let moved = tmp.path().join(format!("moved/{format}"));
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::rename(&out, &moved).unwrap();
        let grand = report.disk("grand").unwrap();
        let got = read_image(&moved.join(&grand.output), format);
        assert_same("moved grand", &got, &app.grand.content);
    }
}

#[test]
fn inspect_shows_the_chains() {
    let app = appliance();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("chain.ova");
    let order = [
        "chain.ovf",
        "grand.vmdk",
        "child.vmdk",
        "base.vmdk",
        "sibling.vmdk",
    ];
    std::fs::write(&pkg, ova(&app.descriptor(false), &app.files(), &order)).unwrap();
    let i = inspect(&pkg, None).unwrap();
    let d = |id: &str| i.disks.iter().find(|d| d.disk_id == id).unwrap();
    assert_eq!(d("base").parent, None);
    assert!(d("base").ancestors.is_empty());
    assert_eq!(d("grand").parent.as_deref(), Some("child"));
    assert_eq!(d("grand").ancestors, ["child", "base"]);
    assert_eq!(d("sibling").ancestors, ["base"]);
    assert_eq!(d("grand").href.as_deref(), Some("grand.vmdk"));
}

/// Writes an OVA at `pkg` with disk "base" (SIZE bytes) and disk "child"
/// (`child_capacity` bytes) over it, members in `order`.
fn write_base_and_child(
    pkg: &Path,
    base: &Layer,
    child: &Layer,
    child_capacity: usize,
    order: &[&str],
) {
    let ovf = descriptor(
        &[
            DiskDef {
                id: "base",
                href: Some("base.vmdk"),
                capacity: SIZE as u64,
                parent: None,
            },
            DiskDef {
                id: "child",
                href: Some("child.vmdk"),
                capacity: child_capacity as u64,
                parent: Some("base"),
            },
        ],
        &["child"],
    );
    let files = [
        ("base.vmdk", &base.stream[..]),
        ("child.vmdk", &child.stream[..]),
    ];
    std::fs::write(pkg, ova(&ovf, &files, order)).unwrap();
}

#[test]
fn a_child_larger_than_its_parent() {
    let base = layer(11, SIZE, None);
    let big = SIZE + (3 << 20);
    let child = layer(12, big, Some(&base.content));
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("big.ova");
    let order = ["chain.ovf", "child.vmdk", "base.vmdk", "chain.mf"];
    write_base_and_child(&pkg, &base, &child, big, &order);
    // VHDX records the child's own size; raw flattens.
    for format in [vhd::Format::Vhdx, vhd::Format::Raw] {
        let out = tmp.path().join(format!("out-{format}"));
        let report = import_as(&pkg, &out, format).unwrap();
        let c = report.disk("child").unwrap();
        assert_eq!(c.virtual_size, big as u64);
        let got = read_image(&out.join(&c.output), format);
        assert_same(&format!("{format} big child"), &got, &child.content);
        let b = report.disk("base").unwrap();
        assert_eq!(b.virtual_size, SIZE as u64);
        if format == vhd::Format::Vhdx {
            // The part past the parent is zeros in the child itself, so
            // libvhdi (which cannot read a parent past its end) reads it.
            let expected = tmp.path().join("expected-big.raw");
            std::fs::write(&expected, &child.content).unwrap();
            libvhdi_matches(&[out.join(&c.output), out.join(&b.output)], &expected);
        }
    }
    // A differencing VHD keeps its parent's size: refused, nothing left.
    let out = tmp.path().join("out-vhd");
    match import_as(&pkg, &out, vhd::Format::Vhd) {
        Err(ImportError::Unsupported(why)) => assert!(why.contains("delta disk"), "{why}"),
        other => panic!("expected an unsupported error, got {other:?}"),
    }
    assert!(!out.exists(), "the output directory was left behind");
}

#[test]
fn blank_disks_in_chains() {
    // A VMDK child over a blank base, and an empty snapshot (no file) over
    // that child.
    let child = layer(21, SIZE, None);
    let ovf = descriptor(
        &[
            DiskDef {
                id: "base",
                href: None,
                capacity: SIZE as u64,
                parent: None,
            },
            DiskDef {
                id: "child",
                href: Some("child.vmdk"),
                capacity: SIZE as u64,
                parent: Some("base"),
            },
            DiskDef {
                id: "snap",
                href: None,
                capacity: SIZE as u64,
                parent: Some("child"),
            },
        ],
        &["snap"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("blank.ova");
    let files = [("child.vmdk", &child.stream[..])];
    std::fs::write(
        &pkg,
        ova(&ovf, &files, &["chain.ovf", "child.vmdk", "chain.mf"]),
    )
    .unwrap();
    for format in FORMATS {
        let out = tmp.path().join(format!("out-{format}"));
        let report = import_as(&pkg, &out, format).unwrap();
        let snap = report.disk("snap").unwrap();
        assert_eq!(snap.parent.as_deref(), Some("child"));
        assert_eq!(snap.href, None);
        let got = read_image(&out.join(&snap.output), format);
        assert_same(&format!("{format} snapshot"), &got, &child.content);
        if format != vhd::Format::Raw {
            let chain: Vec<PathBuf> = std::iter::once(snap.output.clone())
                .chain(snap.backing.iter().cloned())
                .map(|n| out.join(n))
                .collect();
            assert_eq!(chain.len(), 3);
            let expected = tmp.path().join("expected-snap.raw");
            std::fs::write(&expected, &child.content).unwrap();
            // libvhdi (20210425) reads the sector bitmap of a differencing
            // VHDX block that has none from file offset 0, so it misreads
            // an empty differencing VHDX (as Hyper-V creates them too):
            // there it checks the chain under the snapshot.
            let from = usize::from(format == vhd::Format::Vhdx);
            libvhdi_matches(&chain[from..], &expected);
        }
    }
}

#[test]
fn raw_children_define_every_byte() {
    // A plain raw child and a gzip-compressed one over a VMDK base: their
    // zeros hide the base's data just as their data does.
    let base = layer(31, SIZE, None);
    let mut plain = chain::layer(32, SIZE, None).content;
    plain[..SIZE / 4].fill(0);
    let mut packed = chain::layer(33, SIZE, None).content;
    packed[SIZE / 2..].fill(0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &packed).unwrap();
    let gz = gz.finish().unwrap();
    let ovf = descriptor(
        &[
            DiskDef {
                id: "base",
                href: Some("base.vmdk"),
                capacity: SIZE as u64,
                parent: None,
            },
            DiskDef {
                id: "plain",
                href: Some("plain.raw"),
                capacity: SIZE as u64,
                parent: Some("base"),
            },
            DiskDef {
                id: "packed",
                href: Some("packed.raw.gz"),
                capacity: SIZE as u64,
                parent: Some("base"),
            },
        ],
        &["plain", "packed"],
    );
    let files = [
        ("base.vmdk", &base.stream[..]),
        ("plain.raw", &plain[..]),
        ("packed.raw.gz", &gz[..]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let orders: [&[&str]; 3] = [
        &[
            "chain.ovf",
            "base.vmdk",
            "plain.raw",
            "packed.raw.gz",
            "chain.mf",
        ],
        &[
            "chain.ovf",
            "plain.raw",
            "packed.raw.gz",
            "base.vmdk",
            "chain.mf",
        ],
        &[
            "base.vmdk",
            "plain.raw",
            "chain.ovf",
            "packed.raw.gz",
            "chain.mf",
        ],
    ];
    for (i, order) in orders.iter().enumerate() {
        let pkg = tmp.path().join(format!("raw-{i}.ova"));
        std::fs::write(&pkg, ova(&ovf, &files, order)).unwrap();
        for format in FORMATS {
            let out = tmp.path().join(format!("out-{i}-{format}"));
            let report = import_as(&pkg, &out, format).unwrap();
            for (id, want) in [("plain", &plain), ("packed", &packed)] {
                let d = report.disk(id).unwrap();
                assert_eq!(d.parent.as_deref(), Some("base"));
                let got = read_image(&out.join(&d.output), format);
                assert_same(&format!("order {i}, {format}, {id}"), &got, want);
            }
            assert!(listing(&out).iter().all(|n| !n.starts_with('.')));
        }
    }
}

#[test]
fn a_child_smaller_than_its_parent_is_not_cut() {
    let base = layer(41, SIZE, None);
    let half = SIZE / 2;
    let child = layer(42, half, Some(&base.content));
    let mut want = base.content.clone();
    want[..half].copy_from_slice(&child.content);
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("small.ova");
    let order = ["chain.ovf", "base.vmdk", "child.vmdk", "chain.mf"];
    write_base_and_child(&pkg, &base, &child, half, &order);
    for format in FORMATS {
        let out = tmp.path().join(format!("out-{format}"));
        let report = import_as(&pkg, &out, format).unwrap();
        let c = report.disk("child").unwrap();
        assert_eq!(c.virtual_size, SIZE as u64, "{format}");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("disk child") && w.contains("keeps its full size")),
            "{:?}",
            report.warnings
        );
        let got = read_image(&out.join(&c.output), format);
        assert_same(&format!("{format} small child"), &got, &want);
    }
}
