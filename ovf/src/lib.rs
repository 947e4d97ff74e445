//! OVF descriptors, OVA packages, streamOptimized VMDK and the import
//! pipeline.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod descriptor;
pub mod import;
pub mod package;
pub mod vmdk;
