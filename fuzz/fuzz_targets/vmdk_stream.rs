//! Bytes as a streamOptimized VMDK: every grain read to the end of the
//! stream; the bytes as a whole file described from its tables; then the
//! stream copied into a sparse raw image, the file compared with it,
//! checked, and converted into another.
#![no_main]

use ovf::vmdk::{
    CopyOptions, StreamReader, check_vmdk_file, compare_vmdk_file, convert_vmdk_file,
    copy_vmdk_stream_to, describe_vmdk_file,
};
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
    let Ok(dir) = tempfile::tempdir_in(scratch()) else {
        return;
    };
    let file = dir.path().join("disk.vmdk");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let _ = std::hint::black_box(describe_vmdk_file(&file));
    if capacity == 0 || capacity > MAX_COPY {
        return;
    }
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
    let _ = std::hint::black_box(compare_vmdk_file(&file, &target));
    drop(target);
    let _ = std::hint::black_box(check_vmdk_file(&file));
    let out = CreateOptions::new(Format::Raw, ImageType::Dynamic, 0);
    let _ = convert_vmdk_file(&file, &dir.path().join("out.raw"), &out, None);
});

fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
