//! x86-64 vCPU state for direct kernel boot: GDT, identity page tables,
//! registers, CPUID, MSRs and the local APIC.

pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod msr;
pub mod paging;
pub mod regs;
