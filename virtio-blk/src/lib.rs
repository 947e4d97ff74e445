//! The device side of virtio block over any `vhd::DiskImage`.
//! (Being written: nothing here is usable yet.)
#![deny(missing_docs)]
