//! A KVM virtual machine monitor for x86-64.
//!
//! Layers, each in its own modules:
//! - configuration: [`config::VmConfig`], a serde/TOML VM definition;
//! - builder: [`Vm::build`] creates the KVM VM (in-kernel irqchip and PIT),
//!   guest memory ([`memory`], [`layout`]), the MP and ACPI tables
//!   ([`tables`]), loads the kernel ([`boot`]: bzImage through the 64-bit
//!   Linux entry, or an ELF through PVH), the devices ([`devices`]: 8250
//!   serial, i8042, debug-exit port on a port-I/O bus; an MMIO bus) and
//!   configures the vCPUs ([`x86`]: CPUID, MSRs, FPU, registers, LAPIC);
//! - runtime: [`Vm::run`] runs one thread per vCPU ([`vcpu`], [`runtime`])
//!   until the guest resets, powers off, writes the debug-exit port,
//!   crashes, or the VMM is interrupted; [`Vm::exit_stats`] then gives the
//!   VM exits of the run ([`exit_stats`], from KVM's binary stats in
//!   [`kvm_stats`]).
//!
//! ```no_run
//! use vmm::{Vm, VmConfig, VmExit};
//!
//! let mut config = VmConfig::new("/boot/vmlinuz");
//! config.cpus = 2;
//! config.memory = 256 << 20;
//! let exit = Vm::build(&config)?.run()?;
//! assert_eq!(exit, VmExit::Reset);
//! # Ok::<(), vmm::Error>(())
//! ```
#![deny(missing_docs)]

pub mod boot;
mod builder;
pub mod config;
pub mod devices;
mod error;
pub mod exit_stats;
pub mod kvm_stats;
pub mod layout;
pub mod memory;
pub mod pci;
pub mod runtime;
pub mod tables;
#[cfg(test)]
mod test_guest;
pub mod vcpu;
pub mod x86;

pub use builder::Vm;
pub use config::{
    BootConfig, DiskConfig, DiskFormat, NicConfig, OsInfo, ProductInfo, SerialConfig, VmConfig,
};
pub use error::{Error, Result, VcpuFailure};
pub use exit_stats::{ExitStats, UserspaceExits};
pub use runtime::{VmExit, install_interrupt_handler};
