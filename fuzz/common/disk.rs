// Shared by the disk-image targets: put the bytes in a file, open it as the
// given format with parents confined to the file's own directory, then
// exercise reads, writes, flushes and a reopen across the whole disk with a
// bounded number of requests.

use std::io::Write;

use vhd::{DiskImage, Format, OpenOptions};

/// Most requests one input may issue, so that a huge declared disk costs the
/// same as a small one.
const REQUESTS: u64 = 48;

pub fn exercise(format: Format, data: &[u8]) {
    let Ok(dir) = tempfile::tempdir_in(scratch()) else {
        return;
    };
    let path = dir.path().join("image");
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    let options = OpenOptions {
        format: Some(format),
        allowed_parent_dirs: Some(vec![dir.path().to_path_buf()]),
        max_chain_depth: 4,
        ..OpenOptions::default()
    };
    for round in 0..2 {
        let Ok(image) = vhd::open(&path, &options) else {
            return;
        };
        let size = image.virtual_size();
        let _ = image.info();
        let mut buf = vec![0u8; 4096];
        let step = (size / REQUESTS).max(4096);
        let mut off = 0u64;
        let mut n = 0;
        while off < size && n < REQUESTS {
            let len = 4096.min(size - off);
            let b = &mut buf[..len as usize];
            let _ = image.read_at(b, off);
            let _ = image.block_status(off, len);
            if round == 0 && n % 3 == 0 {
                b.fill(n as u8 | 1);
                let _ = image.write_at(b, off);
            }
            if round == 0 && n % 7 == 0 {
                let _ = image.write_zeroes(off, len);
            }
            off = off.saturating_add(step);
            n += 1;
        }
        // The tail of the disk, and a request that runs past its end (which
        // must fail cleanly).
        let tail = size.min(8192);
        let mut end = vec![0u8; 8192];
        let _ = image.read_at(&mut end[..tail as usize], size - tail);
        let _ = image.read_at(&mut end, size.saturating_sub(4096));
        let _ = image.flush();
    }
    let _ = vhd::check(&path, false);
}

fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
