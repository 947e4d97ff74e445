//! What the tests of the binary share: running it, and building and
//! reading the fixture guest. Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary with `args`.
pub fn vmimport(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmimport"))
        .args(args)
        .output()
        .expect("running vmimport")
}

/// Runs the binary, asserts success and returns its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = vmimport(args);
    assert!(
        out.status.success(),
        "vmimport {args:?} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs the binary, asserts success and parses its output as JSON.
pub fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("valid JSON")
}

/// Runs `cmd`, panicking with its error output unless it succeeds.
pub fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs qemu-img with `args`, which must succeed.
pub fn qemu_img(args: &[&str]) {
    run(Command::new("qemu-img").args(args));
}

/// Converts the raw disk `raw` into a streamOptimized VMDK at `vmdk` with
/// qemu-img.
pub fn stream_optimized(raw: &Path, vmdk: &Path) {
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        s(raw),
        s(vmdk),
    ]);
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Builds the fixture guest (fixtures/guest) into `out` and returns its
/// bzImage.
pub fn fixture_guest(out: &Path) -> PathBuf {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm does not exist: this test boots a guest under KVM"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/guest/build.sh");
    let result = Command::new("sh").arg(&script).arg(out).output().unwrap();
    assert!(
        result.status.success(),
        "building the fixture guest failed (install gcc and binutils):\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out.join("fixture.bzImage")
}

/// The fixture guest's report lines on the serial console.
pub fn console_report(console: &Path) -> Vec<String> {
    std::fs::read_to_string(console)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("fixture: "))
        .map(str::to_string)
        .collect()
}
