//! Bytes as a streamOptimized VMDK: every grain read to the end of the
//! stream, then the whole stream copied into a sparse raw image.
#![no_main]

use ovf::vmdk::{CopyOptions, StreamReader, copy_vmdk_stream_to};
use vhd::{CreateOptions, Format, ImageType};

/// Largest capacity copied into a real image (the reader alone covers
/// larger declared disks).
const MAX_COPY: u64 = 1 << 30;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let capacity = match StreamReader::new(data) {
        Ok(mut stream) => {
            let capacity = stream.capacity();
            while let Ok(Some(grain)) = stream.next_grain() {
                std::hint::black_box(grain);
            }
            capacity
        }
        Err(_) => return,
    };
    if capacity == 0 || capacity > MAX_COPY {
        return;
    }
    let Ok(dir) = tempfile::tempdir_in(scratch()) else {
        return;
    };
    let options = CreateOptions::new(
        Format::Raw,
        ImageType::Fixed,
        capacity.next_multiple_of(512),
    );
    let Ok(target) = vhd::create(&dir.path().join("disk.raw"), &options) else {
        return;
    };
    for zeroed in [true, false] {
        let copy = CopyOptions {
            target_is_zeroed: zeroed,
            flush: false,
        };
        let _ = copy_vmdk_stream_to(data, &target, &copy);
    }
});

fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
