//! Entry registers for the two boot protocols.
//!
//! - Linux 64-bit entry (bzImage): long mode, paging on with the identity
//!   map of [`super::paging`], flat 64-bit code at `__BOOT_CS`, `rsi` =
//!   boot_params.
//! - PVH: 32-bit protected mode, paging off, flat 32-bit segments, `rbx` =
//!   hvm_start_info.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestMemory, GuestMemoryError};

use super::gdt::{self, boot_gdt, kvm_segment_from_gdt};
use super::paging;
use crate::layout::{BOOT_STACK_POINTER, GDT_START, IDT_START};

/// CR0: protection enable.
pub const X86_CR0_PE: u64 = 0x1;
/// CR0: extension type (always 1 on modern processors).
pub const X86_CR0_ET: u64 = 0x10;
/// CR0: paging.
pub const X86_CR0_PG: u64 = 0x8000_0000;
/// CR4: physical address extension.
pub const X86_CR4_PAE: u64 = 0x20;
/// EFER: long mode enable.
pub const EFER_LME: u64 = 0x100;
/// EFER: long mode active.
pub const EFER_LMA: u64 = 0x400;

/// How the boot vCPU enters the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// Linux boot protocol, 64-bit entry (bzImage load address + 0x200).
    Linux64 {
        /// Entry address.
        entry: u64,
        /// Address of boot_params, passed in `rsi`.
        boot_params: u64,
    },
    /// PVH 32-bit entry from the ELF note.
    Pvh {
        /// Entry address.
        entry: u64,
        /// Address of hvm_start_info, passed in `rbx`.
        start_info: u64,
    },
}

/// General-purpose registers at entry.
pub fn entry_regs(entry: EntryPoint) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: 0x2,
        ..Default::default()
    };
    match entry {
        EntryPoint::Linux64 { entry, boot_params } => {
            regs.rip = entry;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = boot_params;
        }
        EntryPoint::Pvh { entry, start_info } => {
            regs.rip = entry;
            regs.rbx = start_info;
        }
    }
    regs
}

/// FPU state at entry: the x87 control word and MXCSR reset values.
pub fn entry_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// Writes the GDT, the IDT and (for the 64-bit entry) the page tables, and
/// returns `base` with the segment, control and EFER registers set.
pub fn entry_sregs<M: GuestMemory>(
    mem: &M,
    entry: EntryPoint,
    base: kvm_sregs,
) -> Result<kvm_sregs, GuestMemoryError> {
    let long_mode = matches!(entry, EntryPoint::Linux64 { .. });
    let table = boot_gdt(long_mode);
    let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&bytes, GDT_START)?;
    mem.write_obj(0u64, IDT_START)?;

    let mut sregs = base;
    sregs.gdt.base = GDT_START.0;
    sregs.gdt.limit = u16::try_from(bytes.len() - 1).unwrap_or(u16::MAX);
    sregs.idt.base = IDT_START.0;
    sregs.idt.limit = 7;
    let code = kvm_segment_from_gdt(table[2], 2);
    let data = kvm_segment_from_gdt(table[3], 3);
    let tss = kvm_segment_from_gdt(table[4], 4);
    debug_assert_eq!(code.selector, gdt::CODE_SELECTOR);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;

    sregs.cr0 = (sregs.cr0 | X86_CR0_PE | X86_CR0_ET) & !X86_CR0_PG;
    sregs.cr4 &= !X86_CR4_PAE;
    sregs.efer &= !(EFER_LME | EFER_LMA);
    if long_mode {
        sregs.cr3 = paging::write_identity_tables(mem)?;
        sregs.cr4 |= X86_CR4_PAE;
        sregs.cr0 |= X86_CR0_PG;
        sregs.efer |= EFER_LME | EFER_LMA;
    }
    Ok(sregs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    #[test]
    fn linux64_entry_state() {
        let m = mem();
        let e = EntryPoint::Linux64 {
            entry: 0x10_0200,
            boot_params: 0x7000,
        };
        let regs = entry_regs(e);
        assert_eq!((regs.rip, regs.rsi, regs.rflags), (0x10_0200, 0x7000, 2));
        let s = entry_sregs(&m, e, kvm_sregs::default()).unwrap();
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE | X86_CR0_PG);
        assert_eq!(s.cr4 & X86_CR4_PAE, X86_CR4_PAE);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, 0x9000);
        assert_eq!((s.cs.selector, s.cs.l), (0x10, 1));
        assert_eq!((s.ds.selector, s.ss.selector), (0x18, 0x18));
        assert_eq!(s.gdt.limit, 39);
        let gdt: u64 = m.read_obj(GuestAddress(GDT_START.0 + 16)).unwrap();
        assert_eq!(gdt, 0x00af_9b00_0000_ffff);
    }

    #[test]
    fn pvh_entry_state() {
        let m = mem();
        let e = EntryPoint::Pvh {
            entry: 0x10_0000,
            start_info: 0x6000,
        };
        let regs = entry_regs(e);
        assert_eq!((regs.rip, regs.rbx), (0x10_0000, 0x6000));
        let base = kvm_sregs {
            cr0: X86_CR0_PG,
            efer: EFER_LME,
            ..Default::default()
        };
        let s = entry_sregs(&m, e, base).unwrap();
        assert_eq!(s.cr0, X86_CR0_PE | X86_CR0_ET);
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!(
            (s.cs.l, s.cs.db, s.cs.limit, s.cs.base),
            (0, 1, 0xffff_ffff, 0)
        );
        assert_eq!((s.ds.type_, s.ds.db), (3, 1));
        // No page tables were written.
        let pml4: u64 = m.read_obj(GuestAddress(0x9000)).unwrap();
        assert_eq!(pml4, 0);
    }

    #[test]
    fn fpu_reset_values() {
        let f = entry_fpu();
        assert_eq!((f.fcw, f.mxcsr), (0x37f, 0x1f80));
    }
}
