//! What the tests that boot the fixture guest share.

use std::path::{Path, PathBuf};
use std::process::Command;

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
