//! What the tests that boot the fixture guest share. Each test binary
//! uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the fixture guest (fixtures/guest) once per test binary and
/// returns its output directory; fails (never skips) when /dev/kvm, gcc or
/// binutils are missing.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        assert!(
            Path::new("/dev/kvm").exists(),
            "/dev/kvm does not exist: these tests boot a guest under KVM; \
             load the kvm module (kvm_intel or kvm_amd) or run on a host with KVM"
        );
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fixture-guest-{}", env!("CARGO_CRATE_NAME")));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/guest/build.sh");
        let result = Command::new("sh")
            .arg(&script)
            .arg(&out)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; install a POSIX sh", script.display()));
        assert!(
            result.status.success(),
            "building the fixture guest failed (it needs gcc, ld and objcopy; install gcc and binutils):\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        out
    })
}

/// The fixture guest's bzImage.
pub fn fixture_bzimage() -> PathBuf {
    fixture_dir().join("fixture.bzImage")
}

/// FNV-1a, 32 bits: the hash the fixture guest reports for what it read.
pub fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(16_777_619)
    })
}
