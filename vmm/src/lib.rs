//! A KVM virtual machine monitor. (Being written: nothing here is usable yet.)
#![deny(missing_docs)]
