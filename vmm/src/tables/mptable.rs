//! Intel MultiProcessor Specification 1.4 tables: the floating pointer and
//! the configuration table with one processor entry per vCPU, the ISA bus,
//! the IOAPIC, its 24 interrupt assignments and the LINT0/LINT1 wiring.

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use super::{PutLe, checksum};
use crate::layout::{IOAPIC_START, LAPIC_START};

/// Size of the floating pointer structure.
pub const FLOATING_POINTER_SIZE: usize = 16;
/// Size of the configuration table header.
pub const CONFIG_HEADER_SIZE: usize = 44;
/// Size of a processor entry.
pub const PROCESSOR_ENTRY_SIZE: usize = 20;
/// Number of IOAPIC pins announced.
pub const IOAPIC_PINS: u8 = 24;
/// MP specification revision 1.4.
const SPEC_REV: u8 = 4;
/// Local APIC version reported for each processor (integrated APIC).
const APIC_VERSION: u8 = 0x14;
/// IOAPIC version.
const IOAPIC_VERSION: u8 = 0x11;
/// Processor flags: enabled, bootstrap processor.
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
/// Entry types.
const MP_PROCESSOR: u8 = 0;
const MP_BUS: u8 = 1;
const MP_IOAPIC: u8 = 2;
const MP_INTSRC: u8 = 3;
const MP_LINTSRC: u8 = 4;
/// Interrupt types.
const MP_INT: u8 = 0;
const MP_NMI: u8 = 1;
const MP_EXTINT: u8 = 3;

/// Bytes the MP table takes for `cpus` vCPUs.
pub fn size(cpus: u8) -> usize {
    FLOATING_POINTER_SIZE
        + CONFIG_HEADER_SIZE
        + PROCESSOR_ENTRY_SIZE * usize::from(cpus)
        + 8 * (2 + usize::from(IOAPIC_PINS) + 2)
}

/// The IOAPIC's ID: the first one after the CPUs' APIC IDs.
pub fn ioapic_id(cpus: u8) -> u8 {
    cpus
}

/// Interrupt type-and-flags of a PCI INTx assignment: active low, level.
const PCI_INT_FLAGS: u16 = 0b1111;
/// Bus ID of the PCI root bus in the table.
const PCI_BUS_ID: u8 = 1;

/// The IOAPIC pin a PCI device's INTA# is wired to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIrq {
    /// Device number on bus 0.
    pub slot: u8,
    /// IOAPIC input.
    pub ioapic_pin: u8,
}

/// Builds the floating pointer followed by the configuration table, for
/// placement at guest address `base`.
pub fn build(base: GuestAddress, cpus: u8) -> Vec<u8> {
    build_with_pci(base, cpus, &[])
}

/// [`build`], plus a PCI bus and an interrupt assignment for each INTA#
/// in `pci` when there are any.
pub fn build_with_pci(base: GuestAddress, cpus: u8, pci: &[PciIrq]) -> Vec<u8> {
    let table_addr = u32::try_from(base.0 + FLOATING_POINTER_SIZE as u64).unwrap_or(0);
    let mut fp = Vec::with_capacity(FLOATING_POINTER_SIZE);
    fp.extend_from_slice(b"_MP_");
    fp.put_u32(table_addr);
    fp.put_u8(1); // length in 16-byte units
    fp.put_u8(SPEC_REV);
    fp.put_u8(0); // checksum
    fp.extend_from_slice(&[0; 5]); // feature bytes: configuration table present, no IMCR
    fp[10] = checksum(&fp);

    let mut entries = Vec::new();
    for cpu in 0..cpus {
        entries.put_u8(MP_PROCESSOR);
        entries.put_u8(cpu);
        entries.put_u8(APIC_VERSION);
        entries.put_u8(CPU_ENABLED | if cpu == 0 { CPU_BOOTSTRAP } else { 0 });
        entries.put_u32(0x600); // signature: family 6
        entries.put_u32(0x201); // features: FPU, APIC
        entries.put_u64(0);
    }
    entries.put_u8(MP_BUS);
    entries.put_u8(0);
    entries.extend_from_slice(b"ISA   ");
    if !pci.is_empty() {
        entries.put_u8(MP_BUS);
        entries.put_u8(PCI_BUS_ID);
        entries.extend_from_slice(b"PCI   ");
    }
    let ioapic = ioapic_id(cpus);
    entries.put_u8(MP_IOAPIC);
    entries.put_u8(ioapic);
    entries.put_u8(IOAPIC_VERSION);
    entries.put_u8(1); // enabled
    entries.put_u32(u32::try_from(IOAPIC_START).unwrap_or(0));
    for pin in 0..IOAPIC_PINS {
        entries.put_u8(MP_INTSRC);
        entries.put_u8(MP_INT);
        entries.put_u16(0); // conforming polarity and trigger
        entries.put_u8(0); // source bus
        entries.put_u8(pin); // source IRQ
        entries.put_u8(ioapic);
        entries.put_u8(pin);
    }
    for irq in pci {
        entries.put_u8(MP_INTSRC);
        entries.put_u8(MP_INT);
        entries.put_u16(PCI_INT_FLAGS);
        entries.put_u8(PCI_BUS_ID);
        entries.put_u8(irq.slot << 2); // device number, INTA#
        entries.put_u8(ioapic);
        entries.put_u8(irq.ioapic_pin);
    }
    for (kind, lint) in [(MP_EXTINT, 0u8), (MP_NMI, 1)] {
        entries.put_u8(MP_LINTSRC);
        entries.put_u8(kind);
        entries.put_u16(0);
        entries.put_u8(0);
        entries.put_u8(0);
        entries.put_u8(0xff); // every local APIC
        entries.put_u8(lint);
    }
    let pci_entries = if pci.is_empty() { 0 } else { 1 + pci.len() };
    let entry_count = usize::from(cpus) + 2 + usize::from(IOAPIC_PINS) + 2 + pci_entries;

    let mut table = Vec::with_capacity(CONFIG_HEADER_SIZE + entries.len());
    table.extend_from_slice(b"PCMP");
    table.put_u16(u16::try_from(CONFIG_HEADER_SIZE + entries.len()).unwrap_or(u16::MAX));
    table.put_u8(SPEC_REV);
    table.put_u8(0); // checksum
    table.extend_from_slice(b"VMIMPORT");
    table.extend_from_slice(b"VMM         ");
    table.put_u32(0); // OEM table pointer
    table.put_u16(0); // OEM table size
    table.put_u16(u16::try_from(entry_count).unwrap_or(u16::MAX));
    table.put_u32(u32::try_from(LAPIC_START).unwrap_or(0));
    table.put_u16(0); // extended table length
    table.put_u8(0); // extended table checksum
    table.put_u8(0);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    fp.extend_from_slice(&table);
    fp
}

/// Writes the MP table at `base`.
pub fn write<M: GuestMemory>(
    mem: &M,
    base: GuestAddress,
    cpus: u8,
) -> Result<(), GuestMemoryError> {
    mem.write_slice(&build(base, cpus), base)
}

/// Writes the MP table at `base` with PCI interrupt assignments.
pub fn write_with_pci<M: GuestMemory>(
    mem: &M,
    base: GuestAddress,
    cpus: u8,
    pci: &[PciIrq],
) -> Result<(), GuestMemoryError> {
    mem.write_slice(&build_with_pci(base, cpus, pci), base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    #[test]
    fn floating_pointer_fields() {
        let t = build(GuestAddress(0xf_0000), 2);
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 0xf_0010);
        assert_eq!((t[8], t[9]), (1, 4));
        assert_eq!(sum(&t[..16]), 0);
    }

    #[test]
    fn pci_interrupt_assignments() {
        let pci = [
            PciIrq {
                slot: 1,
                ioapic_pin: 9,
            },
            PciIrq {
                slot: 2,
                ioapic_pin: 10,
            },
        ];
        let t = build_with_pci(GuestAddress(0xf_0000), 1, &pci);
        let ct = &t[16..];
        assert_eq!(sum(ct), 0);
        let count = usize::from(u16::from_le_bytes([ct[34], ct[35]]));
        assert_eq!(count, 1 + 28 + 3);
        assert_eq!(usize::from(u16::from_le_bytes([ct[4], ct[5]])), ct.len());
        let entries = &ct[44 + 20..];
        assert_eq!(&entries[8..16], &[1, 1, b'P', b'C', b'I', b' ', b' ', b' ']);
        let pci_int = &entries[24 + 8 * 24..];
        assert_eq!(pci_int[..8], [3, 0, 0x0f, 0, 1, 1 << 2, 1, 9]);
        assert_eq!(pci_int[8..16], [3, 0, 0x0f, 0, 1, 2 << 2, 1, 10]);
        assert_eq!(pci_int[16], 4, "lint entries follow");
    }

    #[test]
    fn configuration_table_fields() {
        for cpus in [1u8, 2, 8, 254] {
            let t = build(GuestAddress(0xf_0000), cpus);
            assert_eq!(t.len(), size(cpus));
            let ct = &t[16..];
            assert_eq!(&ct[0..4], b"PCMP");
            let len = usize::from(u16::from_le_bytes([ct[4], ct[5]]));
            assert_eq!(len, ct.len());
            assert_eq!(ct[6], 4);
            assert_eq!(sum(ct), 0);
            let count = usize::from(u16::from_le_bytes([ct[34], ct[35]]));
            assert_eq!(count, usize::from(cpus) + 28);
            assert_eq!(
                u32::from_le_bytes(ct[36..40].try_into().unwrap()),
                0xfee0_0000
            );
            // Walk the entries as a guest would.
            let mut off = 44;
            let mut processors = Vec::new();
            for _ in 0..count {
                match ct[off] {
                    0 => {
                        processors.push((ct[off + 1], ct[off + 3]));
                        off += 20;
                    }
                    1..=4 => off += 8,
                    other => panic!("entry type {other}"),
                }
            }
            assert_eq!(off, len);
            assert_eq!(processors.len(), usize::from(cpus));
            assert_eq!(processors[0], (0, 3));
            if cpus > 1 {
                assert_eq!(processors[1], (1, 1));
            }
        }
    }
}
