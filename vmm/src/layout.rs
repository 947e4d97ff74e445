//! Guest physical memory layout: where the VMM puts boot structures and
//! tables, where RAM is, and the e820 map that describes it.
//!
//! ```text
//! 0x0000_0500  GDT                     0x0000_7000  boot_params (zero page)
//! 0x0000_0520  IDT                     0x0000_8ff0  initial stack top
//! 0x0000_6000  hvm_start_info, memmap, module list
//! 0x0000_9000  PML4, 0xa000 PDPT, 0xb000 PD (identity map of the first 1 GiB)
//! 0x0002_0000  kernel command line
//! 0x0009_fc00  EBDA (reserved, empty)
//! 0x000e_0000  ACPI: RSDP then XSDT, FADT, MADT, DSDT (reserved up to 1 MiB)
//! 0x000f_0000  MP table (in the BIOS area a legacy scan covers)
//! 0x0010_0000  kernel, then RAM up to 3 GiB
//! 0xc000_0000  32-bit MMIO hole (PCI, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000)
//! 4 GiB        the rest of RAM
//! ```

use vm_memory::GuestAddress;

/// Start of the GDT built for the boot vCPU.
pub const GDT_START: GuestAddress = GuestAddress(0x500);
/// Start of the (empty) IDT.
pub const IDT_START: GuestAddress = GuestAddress(0x520);
/// PVH `hvm_start_info`, followed by the memory map and module list.
pub const PVH_INFO_START: GuestAddress = GuestAddress(0x6000);
/// Linux `boot_params` (the zero page).
pub const ZERO_PAGE_START: GuestAddress = GuestAddress(0x7000);
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Top-level page table of the identity map.
pub const PML4_START: GuestAddress = GuestAddress(0x9000);
/// Page-directory-pointer table of the identity map.
pub const PDPTE_START: GuestAddress = GuestAddress(0xa000);
/// Page directory of the identity map.
pub const PDE_START: GuestAddress = GuestAddress(0xb000);
/// Kernel command line.
pub const CMDLINE_START: GuestAddress = GuestAddress(0x20000);
/// Space reserved for the command line, NUL included.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// End of conventional memory; the EBDA starts here.
pub const EBDA_START: u64 = 0x9_fc00;
/// Legacy VGA/ROM area start (not RAM).
pub const LEGACY_HOLE_START: u64 = 0xa_0000;
/// ACPI tables: RSDP at the start of the BIOS area, where a legacy scan finds it.
pub const ACPI_START: GuestAddress = GuestAddress(0xe_0000);
/// Size of the reserved firmware area (ACPI tables and MP table).
pub const ACPI_SIZE: u64 = 0x2_0000;
/// The MP table, in the 0xf0000-0xfffff range that MP-aware kernels scan.
pub const MPTABLE_START: GuestAddress = GuestAddress(0xf_0000);
/// Where high memory starts; kernels are loaded here.
pub const HIGH_MEMORY_START: GuestAddress = GuestAddress(0x10_0000);
/// Start of the 32-bit MMIO hole.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole; RAM continues here.
pub const MMIO_HOLE_END: u64 = 1 << 32;
/// IOAPIC MMIO base.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC MMIO base.
pub const LAPIC_START: u64 = 0xfee0_0000;
/// Largest guest memory accepted (1 TiB).
pub const MAX_MEMORY: u64 = 1 << 40;

/// e820 entry type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 entry type: reserved.
pub const E820_RESERVED: u32 = 2;

/// One e820 map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type ([`E820_RAM`], [`E820_RESERVED`]).
    pub kind: u32,
}

/// The RAM regions backing `memory` bytes of guest memory: below the
/// 32-bit hole, then from 4 GiB for whatever does not fit.
pub fn ram_regions(memory: u64) -> Vec<(GuestAddress, u64)> {
    let low = memory.min(MMIO_HOLE_START);
    let mut regions = vec![(GuestAddress(0), low)];
    if memory > low {
        regions.push((GuestAddress(MMIO_HOLE_END), memory - low));
    }
    regions
}

/// Highest address of RAM below the 32-bit hole, plus one.
pub fn low_memory_end(memory: u64) -> u64 {
    memory.min(MMIO_HOLE_START)
}

/// The e820 map for `memory` bytes of guest memory.
pub fn e820_map(memory: u64) -> Vec<E820Entry> {
    let low_end = low_memory_end(memory);
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: LEGACY_HOLE_START - EBDA_START,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: ACPI_START.0,
            size: ACPI_SIZE,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: HIGH_MEMORY_START.0,
            size: low_end - HIGH_MEMORY_START.0,
            kind: E820_RAM,
        },
        // The PCI ECAM window MCFG announces: a guest (Linux) trusts MCFG
        // only where the firmware's map reserves it.
        E820Entry {
            addr: crate::pci::ECAM_BASE,
            size: crate::pci::ECAM_SIZE,
            kind: E820_RESERVED,
        },
    ];
    if memory > low_end {
        map.push(E820Entry {
            addr: MMIO_HOLE_END,
            size: memory - low_end,
            kind: E820_RAM,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_has_one_region() {
        assert_eq!(ram_regions(128 << 20), vec![(GuestAddress(0), 128 << 20)]);
        let map = e820_map(128 << 20);
        assert_eq!(map.len(), 5);
        assert_eq!(
            map[3],
            E820Entry {
                addr: 1 << 20,
                size: 127 << 20,
                kind: E820_RAM
            }
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, (128 << 20) - (1 << 20) + EBDA_START);
        assert!(map.contains(&E820Entry {
            addr: crate::pci::ECAM_BASE,
            size: crate::pci::ECAM_SIZE,
            kind: E820_RESERVED
        }));
    }

    #[test]
    fn large_memory_splits_around_the_hole() {
        let mem = 5u64 << 30;
        assert_eq!(
            ram_regions(mem),
            vec![(GuestAddress(0), 3 << 30), (GuestAddress(4 << 30), 2 << 30)]
        );
        let map = e820_map(mem);
        assert_eq!(
            map.last(),
            Some(&E820Entry {
                addr: 4 << 30,
                size: 2 << 30,
                kind: E820_RAM
            })
        );
        // Nothing overlaps and entries are sorted.
        for pair in map.windows(2) {
            assert!(pair[0].addr + pair[0].size <= pair[1].addr);
        }
    }

    #[test]
    fn fixed_structures_do_not_overlap() {
        let mut spans = [
            (GDT_START.0, 0x20),
            (IDT_START.0, 8),
            (PVH_INFO_START.0, 0x1000),
            (ZERO_PAGE_START.0, 0x1000),
            (0x8000, 0x1000),
            (PML4_START.0, 0x1000),
            (PDPTE_START.0, 0x1000),
            (PDE_START.0, 0x1000),
            (CMDLINE_START.0, CMDLINE_MAX_SIZE as u64),
        ];
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:x?}");
        }
        assert!(CMDLINE_START.0 + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
    }
}
