//! The format implementations.

pub mod raw;
pub mod vhd;
pub mod vhdx;
