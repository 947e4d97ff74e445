//! Bytes as a VHD file (fixed, dynamic or differencing footer and header):
//! opened, read and written across the disk, flushed, reopened, checked.
#![no_main]

#[path = "../common/disk.rs"]
mod disk;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    disk::exercise(vhd::Format::Vhd, data);
});
