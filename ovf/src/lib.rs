//! OVF descriptors, OVA packages, streamOptimized VMDK and the import
//! pipeline. (Being written: nothing here is usable yet.)
#![forbid(unsafe_code)]
#![deny(missing_docs)]
