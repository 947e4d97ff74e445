//! `vmimport disk` through the real binary on VHD and VHDX images of every
//! type: create, info, convert, map, commit, resize, check, compare; info
//! and convert of streamOptimized VMDK; images of formats not read refused
//! by name.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{json, ok, qemu_img, s, stream_optimized, vmimport};

/// Writes `count` 64 KiB requests from `offset` with `disk bench -w`, whose
/// data carries a verifiable pattern.
fn write_some(img: &Path, offset: &str, count: &str) {
    ok(&[
        "disk",
        "bench",
        "-w",
        "-s",
        "64K",
        "-c",
        count,
        "-o",
        offset,
        "--flush-every",
        "8",
        s(img),
    ]);
}

#[test]
fn every_type_is_created_described_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (fmt, kind, extra) in [
        ("vhd", "fixed", vec![]),
        ("vhd", "dynamic", vec!["--block-size", "512K"]),
        ("vhdx", "fixed", vec![]),
        ("vhdx", "dynamic", vec!["--block-size", "1M"]),
        (
            "vhdx",
            "dynamic",
            vec![
                "--logical-sector-size",
                "4096",
                "--physical-sector-size",
                "4096",
                "--block-size",
                "1M",
            ],
        ),
    ] {
        let name = format!("{fmt}-{kind}-{}.img", extra.len());
        let img = dir.path().join(&name);
        let mut args = vec!["disk", "create", "-f", fmt, "-t", kind];
        args.extend(extra.iter().copied());
        args.extend([s(&img), "20M"]);
        ok(&args);
        write_some(&img, "1M", "40");
        let v = json(&["disk", "info", "--output", "json", s(&img)]);
        assert_eq!(v["format"], fmt, "{name}");
        assert_eq!(v["type"], kind, "{name}");
        assert_eq!(v["virtual_size"], 20 << 20, "{name}");
        if extra.contains(&"4096") {
            assert_eq!(v["logical_sector_size"], 4096);
        }
        if fmt == "vhdx" {
            assert_eq!(v["log_dirty"], false, "{name}");
        }
        if kind == "dynamic" {
            assert!(
                v["allocated_bytes"].as_u64().unwrap() >= 40 * 65536,
                "{name}: {v}"
            );
            assert!(v["unallocated_bytes"].as_u64().unwrap() > 0, "{name}");
        }
        let c = json(&["disk", "check", "--output", "json", s(&img)]);
        assert_eq!(c["format"], fmt);
        let errors = c["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error" || f["severity"] == "leak")
            .count();
        assert_eq!(errors, 0, "{name}: {c}");
        // qemu-img reads what we wrote the same way (it cannot read
        // 4 KiB-sector VHDX).
        if !extra.contains(&"4096") {
            let raw = dir.path().join(format!("{name}.raw"));
            ok(&["disk", "convert", "-O", "raw", s(&img), s(&raw)]);
            let qfmt = if fmt == "vhd" { "vpc" } else { "vhdx" };
            let q = Command::new("qemu-img")
                .args(["compare", "-f", qfmt, "-F", "raw", s(&img), s(&raw)])
                .output()
                .unwrap();
            assert!(
                q.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&q.stdout)
            );
        }
    }
}

#[test]
fn differencing_chain_info_map_commit() {
    let dir = tempfile::tempdir().unwrap();
    for fmt in ["vhd", "vhdx"] {
        let base = dir.path().join(format!("base.{fmt}"));
        let child = dir.path().join(format!("child.{fmt}"));
        ok(&["disk", "create", "-f", fmt, s(&base), "16M"]);
        write_some(&base, "0", "32"); // 2 MiB at 0
        ok(&["disk", "create", "-f", fmt, "--parent", s(&base), s(&child)]);
        write_some(&child, "8M", "16"); // 1 MiB at 8 MiB
        let v = json(&["disk", "info", "--output", "json", s(&child)]);
        assert_eq!(v["type"], "differencing");
        assert_eq!(v["parent"]["format"], fmt);
        // Parent data is reported at the parent's block granularity.
        let parent_bytes = v["parent_bytes"].as_u64().unwrap();
        assert!((2 << 20..=15 << 20).contains(&parent_bytes), "{fmt}: {v}");
        let map = json(&["disk", "map", "--output", "json", s(&child)]);
        let from_parent = map
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["allocation"] == "data" && e["depth"] == 1)
            .map(|e| e["length"].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(from_parent, parent_bytes, "{fmt}");
        // Flatten, commit, and the parent alone now reads as the chain did.
        let flat = dir.path().join(format!("flat-{fmt}.raw"));
        ok(&["disk", "convert", "-O", "raw", s(&child), s(&flat)]);
        ok(&["disk", "commit", s(&child)]);
        assert_eq!(
            vmimport(&["disk", "compare", s(&base), s(&flat)])
                .status
                .code(),
            Some(0),
            "{fmt}"
        );
        // The child is valid and empty over the updated parent.
        assert_eq!(
            vmimport(&["disk", "compare", s(&child), s(&flat)])
                .status
                .code(),
            Some(0)
        );
        let v = json(&["disk", "info", "--output", "json", s(&child)]);
        assert_eq!(v["allocated_bytes"], 0, "{fmt}: {v}");
        // Committing the base, which has no parent, is refused.
        assert_eq!(
            vmimport(&["disk", "commit", s(&base)]).status.code(),
            Some(1)
        );
    }
}

#[test]
fn convert_between_every_pair_and_resize() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.vhdx");
    ok(&["disk", "create", "-f", "vhdx", s(&src), "24M"]);
    write_some(&src, "3M", "50");
    let mut prev = src.clone();
    for (i, fmt) in ["vhd", "raw", "vhdx", "vhd", "vhdx"].iter().enumerate() {
        let out = dir.path().join(format!("c{i}.{fmt}"));
        ok(&["disk", "convert", "-O", fmt, s(&prev), s(&out)]);
        assert_eq!(
            vmimport(&["disk", "compare", s(&src), s(&out)])
                .status
                .code(),
            Some(0),
            "{fmt}"
        );
        prev = out;
    }
    // Grow a VHDX; shrinking over data is refused.
    ok(&["disk", "resize", s(&prev), "40M"]);
    assert_eq!(
        json(&["disk", "info", "--output", "json", s(&prev)])["virtual_size"],
        40 << 20
    );
    let o = vmimport(&["disk", "resize", "--shrink", s(&prev), "4M"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn check_reports_damage_with_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.vhdx");
    ok(&["disk", "create", "-f", "vhdx", s(&img), "16M"]);
    // Damage both headers' checksums: the image can no longer be opened.
    let mut bytes = std::fs::read(&img).unwrap();
    for off in [64 << 10, 128 << 10] {
        bytes[off + 4] ^= 0xff;
    }
    std::fs::write(&img, &bytes).unwrap();
    let o = vmimport(&["disk", "check", s(&img)]);
    assert!(matches!(o.status.code(), Some(1) | Some(2)), "{o:?}");
    assert_eq!(vmimport(&["disk", "info", s(&img)]).status.code(), Some(1));
    // A VHD whose footer copy is damaged: an error that --repair fixes.
    let vhd = dir.path().join("d.vhd");
    ok(&["disk", "create", "-f", "vhd", s(&vhd), "16M"]);
    let mut bytes = std::fs::read(&vhd).unwrap();
    bytes[100] ^= 0xff; // inside the footer copy at offset 0
    std::fs::write(&vhd, &bytes).unwrap();
    let o = vmimport(&["disk", "check", s(&vhd)]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    ok(&["disk", "check", "--repair", s(&vhd)]);
    assert_eq!(vmimport(&["disk", "check", s(&vhd)]).status.code(), Some(0));
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn convert_reads_stream_optimized_vmdk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 24 MiB: data at 1 MiB (3 MiB of it), a zero-filled MiB written at
    // 8 MiB, data in the last sector; holes elsewhere.
    let raw = d.join("src.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(24 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    let mut data = vec![0u8; 3 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    }
    f.write_all_at(&data, 1 << 20).unwrap();
    f.write_all_at(&vec![0u8; 1 << 20], 8 << 20).unwrap();
    f.write_all_at(b"last sector", (24 << 20) - 512).unwrap();
    drop(f);
    let vmdk = d.join("src.vmdk");
    stream_optimized(&raw, &vmdk);
    let v = json(&["disk", "info", "--output", "json", s(&vmdk)]);
    assert_eq!(v["format"], "vmdk");
    assert_eq!(v["type"], "streamOptimized");
    assert_eq!(v["virtual_size"], 24 << 20);
    assert_eq!(v["block_size"], 64 << 10);
    assert_eq!(v["tables_at_end"], false);
    assert_eq!(
        v["file_size"].as_u64().unwrap(),
        std::fs::metadata(&vmdk).unwrap().len()
    );
    let allocated = v["allocated_bytes"].as_u64().unwrap();
    assert!(
        (3 << 20..=(3 << 20) + (128 << 10)).contains(&allocated),
        "{allocated}"
    );
    assert_eq!(
        allocated + v["unallocated_bytes"].as_u64().unwrap() + v["zero_bytes"].as_u64().unwrap(),
        24 << 20
    );
    assert!(ok(&["disk", "info", s(&vmdk)]).contains("vmdk (streamOptimized"));
    for format in ["vhdx", "vhd", "raw"] {
        let out = d.join(format!("out.{format}"));
        let v = json(&[
            "disk",
            "convert",
            "-O",
            format,
            "--output",
            "json",
            s(&vmdk),
            s(&out),
        ]);
        assert_eq!(v["virtual_size"], 24 << 20, "{format}");
        // The data grains, not the zero MiB or the holes.
        let written = v["bytes_written"].as_u64().unwrap();
        assert!(
            (3 << 20..=(3 << 20) + (128 << 10)).contains(&written),
            "{format}: {written}"
        );
        assert_eq!(
            v["bytes_skipped"].as_u64().unwrap() + written,
            24 << 20,
            "{format}"
        );
        // qemu-img reads our output as the disk it wrote into the VMDK.
        qemu_img(&["compare", "-q", "-F", "raw", s(&out), s(&raw)]);
        ok(&["disk", "compare", s(&out), s(&raw)]);
    }

    // compare, with the VMDK on either side.
    assert!(ok(&["disk", "compare", s(&vmdk), s(&raw)]).contains("identical"));
    assert!(ok(&["disk", "compare", s(&d.join("out.vhdx")), s(&vmdk)]).contains("identical"));
    let changed = d.join("changed.raw");
    for (at, byte) in [
        ((20 << 20) + 3, 1u8),
        ((1 << 20) + 5, 0),
        ((24 << 20) - 512, 0),
    ] {
        std::fs::copy(&raw, &changed).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&changed)
            .unwrap();
        let mut old = [0u8; 1];
        std::fs::File::open(&raw)
            .unwrap()
            .read_exact_at(&mut old, at)
            .unwrap();
        f.write_all_at(&[if old[0] == byte { byte ^ 0xff } else { byte }], at)
            .unwrap();
        drop(f);
        for args in [[s(&vmdk), s(&changed)], [s(&changed), s(&vmdk)]] {
            let o = vmimport(&["disk", "compare", args[0], args[1]]);
            assert_eq!(o.status.code(), Some(1), "at {at}");
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(out.contains(&format!("mismatch at offset {at} ")), "{out}");
        }
    }
    // A larger disk whose tail is zeros: equal content, sizes differ.
    std::fs::copy(&raw, &changed).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&changed)
        .unwrap()
        .set_len(25 << 20)
        .unwrap();
    let o = vmimport(&["disk", "compare", s(&changed), s(&vmdk)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!(
        "sizes differ: {} and {} bytes",
        25 << 20,
        24 << 20
    )));
    assert_eq!(
        vmimport(&["disk", "compare", s(&vmdk), s(&vmdk)])
            .status
            .code(),
        Some(2)
    );

    // check reads every grain.
    assert!(ok(&["disk", "check", s(&vmdk)]).contains("no errors were found"));
    assert_eq!(
        vmimport(&["disk", "check", "-r", s(&vmdk)]).status.code(),
        Some(1)
    );

    // Onto itself: refused, the input untouched.
    let before = std::fs::read(&vmdk).unwrap();
    let o = vmimport(&["disk", "convert", s(&vmdk), s(&vmdk)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("onto the input"));
    assert_eq!(std::fs::read(&vmdk).unwrap(), before);

    // A cut stream fails and leaves nothing under the final name, nor a
    // temporary file: cut in the middle, and cut cleanly where the first
    // grain starts (qemu-img's layout needs no end-of-stream marker, so
    // only the grain tables show that grains are missing).
    let overhead = u64::from_le_bytes(before[64..72].try_into().unwrap()) as usize * 512;
    for cut_at in [before.len() / 2, overhead] {
        let cut = d.join("cut.vmdk");
        std::fs::write(&cut, &before[..cut_at]).unwrap();
        let listed = names(d);
        let o = vmimport(&["disk", "convert", s(&cut), s(&d.join("cut.vhdx"))]);
        assert_eq!(o.status.code(), Some(1), "cut at {cut_at}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("truncated vmdk"),
            "cut at {cut_at}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(names(d), listed);
        let o = vmimport(&["disk", "check", "--output", "json", s(&cut)]);
        assert_eq!(o.status.code(), Some(2), "cut at {cut_at}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["format"], "vmdk");
        assert_eq!(v["findings"][0]["severity"], "error");
        assert!(
            v["findings"][0]["message"]
                .as_str()
                .unwrap()
                .contains("truncated")
        );
    }
    // A damaged grain: check finds it, convert refuses it.
    let mut damaged = before.clone();
    let mid = overhead + 4096;
    for b in &mut damaged[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let bad = d.join("bad.vmdk");
    std::fs::write(&bad, &damaged).unwrap();
    let o = vmimport(&["disk", "check", s(&bad)]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("error at 0x"));
    let o = vmimport(&["disk", "convert", s(&bad), s(&d.join("bad.vhdx"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!d.join("bad.vhdx").exists());

    // Other VMDK kinds are refused by name.
    let sparse = d.join("sparse.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", s(&sparse), "4M"]);
    let o = vmimport(&["disk", "convert", s(&sparse), s(&d.join("sparse.vhdx"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("only streamOptimized"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!d.join("sparse.vhdx").exists());
}

#[test]
fn images_of_formats_not_read_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (format, name) in [("qcow2", "QCOW"), ("vdi", "VDI"), ("vmdk", "VMDK")] {
        let img = d.join(format!("disk.{format}"));
        qemu_img(&["create", "-q", "-f", format, s(&img), "4M"]);
        for args in [
            vec!["disk", "info", s(&img)],
            vec!["disk", "map", s(&img)],
            vec!["disk", "check", s(&img)],
        ] {
            let o = vmimport(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            // info and check read VMDK headers, and name what they cannot
            // read.
            let want = if format == "vmdk" && args[1] != "map" {
                "only streamOptimized".to_string()
            } else {
                format!("a {name} image")
            };
            assert!(err.contains(&want), "{args:?}: {err}");
        }
        if format != "vmdk" {
            let out = d.join(format!("{format}.vhdx"));
            let o = vmimport(&["disk", "convert", s(&img), s(&out)]);
            assert_eq!(o.status.code(), Some(1), "{format}");
            assert!(!out.exists(), "{format}");
        }
    }
}
