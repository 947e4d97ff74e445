//! Bytes as an OVA package (tar, descriptor, manifest, certificate, disks)
//! imported into an output directory inside a temporary directory; then a
//! check that the import wrote nothing outside that directory.
#![no_main]

use std::path::{Path, PathBuf};

use ovf::import::{ImportOptions, import};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A parent of our own, so that anything written beside the temporary
    // directory shows up in its listing.
    let Ok(parent) = tempfile::tempdir_in(scratch()) else {
        return;
    };
    let Ok(dir) = tempfile::tempdir_in(parent.path()) else {
        return;
    };
    let package = dir.path().join("package.ova");
    if std::fs::write(&package, data).is_err() {
        return;
    }
    let out_dir = dir.path().join("out");
    let options = ImportOptions {
        out_dir: out_dir.clone(),
        disk_format: vhd::Format::Vhdx,
        // Odd lengths exercise the path where manifest problems are warnings.
        no_verify: data.len() % 2 == 1,
        configuration: None,
    };
    let _ = import(&package, &options, None);

    let beside = listing(parent.path());
    assert_eq!(
        beside,
        vec![dir.path().to_path_buf()],
        "import wrote beside its directory"
    );
    for entry in listing(dir.path()) {
        assert!(
            entry == package || entry == out_dir,
            "import wrote {} outside its output directory",
            entry.display()
        );
    }
    if out_dir.exists() {
        assert_no_links(&out_dir);
    }
});

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("listing")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// Output files are plain files and directories: a symbolic link could
/// point anywhere.
fn assert_no_links(dir: &Path) {
    for entry in listing(dir) {
        let meta = std::fs::symlink_metadata(&entry).expect("metadata");
        assert!(
            !meta.file_type().is_symlink(),
            "import made a link at {}",
            entry.display()
        );
        if meta.is_dir() {
            assert_no_links(&entry);
        }
    }
}

fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
