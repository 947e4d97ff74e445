//! Bytes as a VHDX file: opened (log replay included), read and written
//! across the disk, flushed, reopened, checked.
#![no_main]

#[path = "../common/disk.rs"]
mod disk;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    disk::exercise(vhd::Format::Vhdx, data);
});
