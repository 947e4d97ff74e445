//! `vmimport disk` through the real binary: output parsed field by field,
//! exit codes, refused operations.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use common::{json, ok, s, vmimport};

fn code(args: &[&str]) -> i32 {
    vmimport(args).status.code().expect("exit code")
}

fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A 16 MiB raw file: data at 1 MiB and 9 MiB, holes elsewhere.
fn raw_sample(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("sample.img");
    let mut data = vec![0u8; 16 << 20];
    data[1 << 20..2 << 20].copy_from_slice(&random(1, 1 << 20));
    data[9 << 20..(9 << 20) + 5000].copy_from_slice(&random(2, 5000));
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(data.len() as u64).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&data[1 << 20..2 << 20], 1 << 20).unwrap();
    f.write_all_at(&data[9 << 20..(9 << 20) + 5000], 9 << 20)
        .unwrap();
    (path, data)
}

#[test]
fn info_json_describes_a_raw_image() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = raw_sample(dir.path());
    let v = json(&["disk", "info", "--output", "json", s(&img)]);
    assert_eq!(v["format"], "raw");
    assert_eq!(v["virtual_size"], 16 << 20);
    assert_eq!(v["logical_sector_size"], 512);
    assert_eq!(v["parent"], serde_json::Value::Null);
    let alloc = v["allocated_bytes"].as_u64().unwrap();
    assert!((1 << 20..=3 << 20).contains(&alloc), "allocated {alloc}");
    assert_eq!(
        alloc + v["unallocated_bytes"].as_u64().unwrap() + v["zero_bytes"].as_u64().unwrap(),
        16 << 20
    );
    let human = ok(&["disk", "info", s(&img)]);
    assert!(human.contains("format:          raw"), "{human}");
}

#[test]
fn missing_image_is_an_error_status() {
    assert_eq!(code(&["disk", "info", "/nonexistent/x.vhd"]), 1);
    assert_eq!(code(&["disk", "check", "/nonexistent/x.vhd"]), 1);
    assert_eq!(
        code(&["disk", "compare", "/nonexistent/a", "/nonexistent/b"]),
        2
    );
}

#[test]
fn create_convert_compare_map_on_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = raw_sample(dir.path());
    let out = dir.path().join("copy.raw");
    let v = json(&[
        "disk",
        "convert",
        "-O",
        "raw",
        "--output",
        "json",
        s(&img),
        s(&out),
    ]);
    assert_eq!(v["virtual_size"], 16 << 20);
    assert!(v["bytes_read"].as_u64().unwrap() < 4 << 20, "{v}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(code(&["disk", "compare", s(&img), s(&out)]), 0);

    // A one-byte change is found at its offset, with status 1.
    let changed = dir.path().join("changed.raw");
    let mut d2 = data.clone();
    d2[12345678] ^= 1;
    std::fs::write(&changed, &d2).unwrap();
    let o = vmimport(&["disk", "compare", s(&img), s(&changed)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("12345678"));

    let map = json(&["disk", "map", "--output", "json", s(&img)]);
    let extents = map.as_array().unwrap();
    let mut pos = 0;
    for e in extents {
        assert_eq!(e["offset"].as_u64().unwrap(), pos);
        pos += e["length"].as_u64().unwrap();
    }
    assert_eq!(pos, 16 << 20);
    assert!(extents.iter().any(|e| e["allocation"] == "data"
        && e["offset"].as_u64().unwrap() <= 1 << 20
        && e["offset"].as_u64().unwrap() + e["length"].as_u64().unwrap() >= 2 << 20));

    let new = dir.path().join("new.raw");
    ok(&["disk", "create", "-f", "raw", s(&new), "3M"]);
    assert_eq!(std::fs::metadata(&new).unwrap().len(), 3 << 20);
    assert_eq!(
        code(&["disk", "create", "-f", "raw", s(&new), "3M"]),
        1,
        "exists"
    );
    assert_eq!(
        code(&["disk", "create", "-f", "raw", s(&new)]),
        1,
        "no size"
    );
}

#[test]
fn convert_onto_its_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = raw_sample(dir.path());
    let o = vmimport(&["disk", "convert", "-O", "raw", s(&img), s(&img)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("onto the input"));
    assert_eq!(std::fs::read(&img).unwrap(), data);
}

#[test]
fn commit_without_a_parent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = raw_sample(dir.path());
    let o = vmimport(&["disk", "commit", s(&img)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no parent"));
}

#[test]
fn resize_grows_and_shrinks_only_over_empty_tails() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = raw_sample(dir.path());
    ok(&["disk", "resize", s(&img), "20M"]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 20 << 20);
    assert_eq!(
        code(&["disk", "resize", s(&img), "12M"]),
        1,
        "needs --shrink"
    );
    let o = vmimport(&["disk", "resize", "--shrink", s(&img), "9M"]);
    assert_eq!(o.status.code(), Some(1), "data at 9 MiB");
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds data"));
    ok(&["disk", "resize", "--shrink", s(&img), "12M"]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 12 << 20);
    ok(&["disk", "resize", s(&img), "+1M"]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 13 << 20);
}

#[test]
fn resize_of_an_image_another_writer_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = raw_sample(dir.path());
    let held = vhd::open(&img, &vhd::OpenOptions::default()).unwrap();
    let o = vmimport(&["disk", "resize", s(&img), "20M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another process"));
    drop(held);
    ok(&["disk", "resize", s(&img), "20M"]);
}

/// Makes a file unwritable until dropped: read-only permissions and, for a
/// process that permissions do not stop (root), the immutable attribute.
struct Unwritable<'a> {
    path: &'a Path,
    immutable: bool,
}

impl<'a> Unwritable<'a> {
    fn new(path: &'a Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let mut guard = Unwritable {
            path,
            immutable: false,
        };
        if std::fs::OpenOptions::new().write(true).open(path).is_ok() {
            let f = std::fs::File::open(path).unwrap();
            let flags = rustix::fs::ioctl_getflags(&f).unwrap();
            rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::IMMUTABLE)
                .expect("this process ignores permissions and cannot set the immutable attribute");
            guard.immutable = true;
            assert!(
                std::fs::OpenOptions::new().write(true).open(path).is_err(),
                "still writable"
            );
        }
        guard
    }
}

impl Drop for Unwritable<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let f = std::fs::File::open(self.path).unwrap();
            let flags = rustix::fs::ioctl_getflags(&f).unwrap();
            rustix::fs::ioctl_setflags(&f, flags - rustix::fs::IFlags::IMMUTABLE).unwrap();
        }
        let _ = std::fs::set_permissions(self.path, std::fs::Permissions::from_mode(0o644));
    }
}

#[test]
fn resize_of_a_read_only_image_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (format, name) in [("vhdx", "ro.vhdx"), ("vhd", "ro.vhd"), ("raw", "ro.img")] {
        let img = dir.path().join(name);
        ok(&["disk", "create", "-f", format, s(&img), "16M"]);
        let before = std::fs::read(&img).unwrap();
        let guard = Unwritable::new(&img);
        let o = vmimport(&["disk", "resize", s(&img), "32M"]);
        assert_eq!(o.status.code(), Some(1), "{format}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("cannot open") && err.contains("os error"),
            "{format}: the operating system's reason is reported: {err}"
        );
        assert_eq!(std::fs::read(&img).unwrap(), before, "{format} unchanged");
        // Still readable: info opens it read-only and sees the old size.
        let v = json(&["disk", "info", "--output", "json", s(&img)]);
        assert_eq!(v["virtual_size"], 16 << 20, "{format}");
        drop(guard);
        ok(&["disk", "resize", s(&img), "32M"]);
        let v = json(&["disk", "info", "--output", "json", s(&img)]);
        assert_eq!(v["virtual_size"], 32 << 20, "{format}");
    }
}

#[test]
fn check_of_a_raw_image_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = raw_sample(dir.path());
    let v = json(&["disk", "check", "--output", "json", s(&img)]);
    assert_eq!(v["format"], "raw");
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn bench_reports_operations() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = raw_sample(dir.path());
    let v = json(&[
        "disk",
        "bench",
        "-w",
        "--pattern",
        "rand",
        "-c",
        "500",
        "--flush-every",
        "100",
        "--output",
        "json",
        s(&img),
    ]);
    assert_eq!(v["ops"], 500);
    assert_eq!(v["bytes"], 500 * 4096);
    assert!(v["ops_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(
        code(&["disk", "bench", "-s", "32M", s(&img)]),
        1,
        "request larger than disk"
    );
}

#[test]
fn interrupted_convert_leaves_nothing_under_the_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.img");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        for i in 0..384u64 {
            f.write_all(&random(i, 1 << 20)).unwrap();
        }
    }
    let out = dir.path().join("out.raw");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmimport"))
        .args(["disk", "convert", "-O", "raw", s(&src), s(&out)])
        .spawn()
        .unwrap();
    // Wait for the partial output to appear, then kill the converter.
    let start = std::time::Instant::now();
    loop {
        let partial = std::fs::read_dir(dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".partial-")
        });
        if partial || start.elapsed().as_secs() > 30 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !out.exists(),
        "final name exists after kill (status {status:?})"
    );
}
