//! ACPI tables (ACPI 6.x): RSDP -> XSDT -> {FADT -> DSDT, MADT}.
//!
//! The FADT declares a hardware-reduced platform (no PM timer or fixed
//! event blocks, as Firecracker does), an 8042 and the reset register at
//! I/O port 0x64 with value 0xfe, which the i8042 model turns into a VM
//! exit. The MADT lists one enabled local APIC per vCPU, the IOAPIC and
//! LINT1 as NMI on every processor. The DSDT describes the PCI host bridge
//! ([`super::dsdt`]); the MCFG announces its ECAM window.

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use super::dsdt::{self, PciHost};
use super::{PutLe, checksum};
use crate::layout::{IOAPIC_START, LAPIC_START};
use crate::tables::mptable::ioapic_id;

/// Size of the RSDP (ACPI 2.0+).
pub const RSDP_SIZE: usize = 36;
/// Size of a system description table header.
pub const HEADER_SIZE: usize = 36;
/// Size of the FADT (revision 6).
pub const FADT_SIZE: usize = 276;
/// OEM ID in every table.
pub const OEM_ID: &[u8; 6] = b"VMIMPT";

/// FADT flag: the reset register is supported.
pub const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// FADT flag: hardware-reduced ACPI.
pub const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// IA-PC boot architecture: an 8042 is present.
pub const IAPC_8042: u16 = 1 << 1;
/// IA-PC boot architecture: VGA is not present.
pub const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// MADT flag: dual 8259 PICs are installed.
pub const MADT_PCAT_COMPAT: u32 = 1;

/// Why the tables could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The DSDT cannot describe the PCI host bridge as given.
    #[error("cannot build the dsdt")]
    Dsdt(#[from] dsdt::Error),
    /// Guest memory refused the tables.
    #[error("cannot write the acpi tables to guest memory")]
    Memory(#[source] GuestMemoryError),
}

/// The tables laid out for one address.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    /// Guest address of the RSDP (the start of `bytes`).
    pub rsdp: GuestAddress,
    /// All tables, back to back, 16-byte aligned.
    pub bytes: Vec<u8>,
}

fn header(signature: &[u8; 4], revision: u8, table_id: &[u8; 8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_SIZE);
    h.extend_from_slice(signature);
    h.put_u32(0); // length, patched by finish()
    h.put_u8(revision);
    h.put_u8(0); // checksum, patched by finish()
    h.extend_from_slice(OEM_ID);
    h.extend_from_slice(table_id);
    h.put_u32(1); // OEM revision
    h.extend_from_slice(b"VMIM"); // creator ID
    h.put_u32(1); // creator revision
    h
}

fn finish(mut table: Vec<u8>) -> Vec<u8> {
    let len = u32::try_from(table.len()).unwrap_or(u32::MAX);
    table[4..8].copy_from_slice(&len.to_le_bytes());
    table[9] = checksum(&table);
    table
}

/// Generic address structure for a system I/O register.
fn gas_io(v: &mut Vec<u8>, width_bits: u8, port: u64) {
    v.put_u8(1); // system I/O space
    v.put_u8(width_bits);
    v.put_u8(0); // bit offset
    v.put_u8(1); // byte access
    v.put_u64(port);
}

fn gas_none(v: &mut Vec<u8>) {
    v.extend_from_slice(&[0; 12]);
}

/// The DSDT: the PCI host bridge `host` and the motherboard resources.
/// Revision 6 (at least 2) makes AML integers 64 bits wide, which the
/// 64-bit window needs.
pub fn dsdt(host: &PciHost) -> Result<Vec<u8>, dsdt::Error> {
    let mut t = header(b"DSDT", 6, b"VMIMDSDT");
    t.extend_from_slice(&dsdt::definition_block(host)?);
    Ok(finish(t))
}

/// The FADT pointing at the DSDT.
pub fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut t = header(b"FACP", 6, b"VMIMFACP");
    t.put_u32(0); // 36 FIRMWARE_CTRL
    t.put_u32(0); // 40 DSDT (32-bit); X_DSDT is used
    t.put_u8(0); // 44 reserved
    t.put_u8(0); // 45 preferred PM profile: unspecified
    t.put_u16(0); // 46 SCI_INT
    t.put_u32(0); // 48 SMI_CMD
    t.resize(109, 0); // 52..109: ACPI enable, PM blocks, GPE, C-states: none
    t.put_u16(IAPC_8042 | IAPC_VGA_NOT_PRESENT); // 109 IAPC_BOOT_ARCH
    t.put_u8(0); // 111 reserved
    t.put_u32(FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP); // 112 flags
    gas_io(&mut t, 8, 0x64); // 116 RESET_REG
    t.put_u8(0xfe); // 128 RESET_VALUE
    t.put_u16(0); // 129 ARM_BOOT_ARCH
    t.put_u8(5); // 131 FADT minor version (6.5)
    t.put_u64(0); // 132 X_FIRMWARE_CTRL
    t.put_u64(dsdt_addr); // 140 X_DSDT
    while t.len() < 244 {
        gas_none(&mut t); // X_PM1a_EVT_BLK .. X_GPE1_BLK: none
    }
    gas_none(&mut t); // 244 SLEEP_CONTROL_REG
    gas_none(&mut t); // 256 SLEEP_STATUS_REG
    t.extend_from_slice(b"VMIMPORT"); // 268 hypervisor vendor identity
    debug_assert_eq!(t.len(), FADT_SIZE);
    finish(t)
}

/// The MADT for `cpus` vCPUs.
pub fn madt(cpus: u8) -> Vec<u8> {
    let mut t = header(b"APIC", 6, b"VMIMAPIC");
    t.put_u32(u32::try_from(LAPIC_START).unwrap_or(0));
    t.put_u32(MADT_PCAT_COMPAT);
    for cpu in 0..cpus {
        t.put_u8(0); // processor local APIC
        t.put_u8(8);
        t.put_u8(cpu); // ACPI processor UID
        t.put_u8(cpu); // APIC ID
        t.put_u32(1); // enabled
    }
    t.put_u8(1); // I/O APIC
    t.put_u8(12);
    t.put_u8(ioapic_id(cpus));
    t.put_u8(0);
    t.put_u32(u32::try_from(IOAPIC_START).unwrap_or(0));
    t.put_u32(0); // GSI base
    t.put_u8(4); // local APIC NMI
    t.put_u8(6);
    t.put_u8(0xff); // all processors
    t.put_u16(0); // conforming polarity and trigger
    t.put_u8(1); // LINT1
    finish(t)
}

/// The MCFG announcing the ECAM window of PCI segment 0, bus 0.
pub fn mcfg() -> Vec<u8> {
    let mut t = header(b"MCFG", 1, b"VMIMMCFG");
    t.put_u64(0); // reserved
    t.put_u64(crate::pci::ECAM_BASE);
    t.put_u16(0); // segment
    t.put_u8(0); // start bus
    t.put_u8(0); // end bus
    t.put_u32(0); // reserved
    finish(t)
}

/// The XSDT listing `tables`.
pub fn xsdt(tables: &[u64]) -> Vec<u8> {
    let mut t = header(b"XSDT", 1, b"VMIMXSDT");
    for addr in tables {
        t.put_u64(*addr);
    }
    finish(t)
}

/// The RSDP pointing at the XSDT.
pub fn rsdp(xsdt_addr: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(RSDP_SIZE);
    r.extend_from_slice(b"RSD PTR ");
    r.put_u8(0); // checksum of the first 20 bytes
    r.extend_from_slice(OEM_ID);
    r.put_u8(2); // revision: ACPI 2.0+
    r.put_u32(0); // RSDT address: none
    r.put_u32(u32::try_from(RSDP_SIZE).unwrap_or(0));
    r.put_u64(xsdt_addr);
    r.put_u8(0); // extended checksum
    r.extend_from_slice(&[0; 3]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

fn align16(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(16) {
        v.push(0);
    }
}

/// Lays the tables out from `base`: RSDP, XSDT, FADT, MADT, DSDT, MCFG.
pub fn build(base: GuestAddress, cpus: u8, host: &PciHost) -> Result<AcpiTables, Error> {
    let at = |off: usize| base.0 + off as u64;
    let dsdt = dsdt(host)?;
    let madt = madt(cpus);
    let mcfg = mcfg();
    // Offsets: the RSDP (36 bytes) padded to 48, then an XSDT with three entries.
    let xsdt_off = 48;
    let xsdt_len = HEADER_SIZE + 24;
    let fadt_off = (xsdt_off + xsdt_len).next_multiple_of(16);
    let madt_off = (fadt_off + FADT_SIZE).next_multiple_of(16);
    let dsdt_off = (madt_off + madt.len()).next_multiple_of(16);
    let mcfg_off = (dsdt_off + dsdt.len()).next_multiple_of(16);

    let mut bytes = rsdp(at(xsdt_off));
    align16(&mut bytes);
    bytes.extend_from_slice(&xsdt(&[at(fadt_off), at(madt_off), at(mcfg_off)]));
    align16(&mut bytes);
    bytes.extend_from_slice(&fadt(at(dsdt_off)));
    align16(&mut bytes);
    bytes.extend_from_slice(&madt);
    align16(&mut bytes);
    bytes.extend_from_slice(&dsdt);
    align16(&mut bytes);
    bytes.extend_from_slice(&mcfg);
    Ok(AcpiTables { rsdp: base, bytes })
}

/// Writes the tables at `base`; returns the RSDP address.
pub fn write<M: GuestMemory>(
    mem: &M,
    base: GuestAddress,
    cpus: u8,
    host: &PciHost,
) -> Result<GuestAddress, Error> {
    let tables = build(base, cpus, host)?;
    mem.write_slice(&tables.bytes, base)
        .map_err(Error::Memory)?;
    Ok(tables.rsdp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::mptable::PciIrq;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }
    /// Returns the table at guest address `addr` inside the laid-out bytes.
    fn table(t: &AcpiTables, addr: u64) -> &[u8] {
        let off = usize::try_from(addr - t.rsdp.0).unwrap();
        let len = usize::try_from(u32_at(&t.bytes, off + 4)).unwrap();
        let tb = &t.bytes[off..off + len];
        assert_eq!(
            sum(tb),
            0,
            "checksum of {}",
            String::from_utf8_lossy(&tb[..4])
        );
        assert_eq!(&tb[10..16], OEM_ID);
        tb
    }

    #[test]
    fn rsdp_fields() {
        let r = rsdp(0xe_0030);
        assert_eq!(r.len(), 36);
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(&r), 0);
        assert_eq!(r[15], 2);
        assert_eq!(u32_at(&r, 20), 36);
        assert_eq!(u64_at(&r, 24), 0xe_0030);
    }

    fn host(intx: &[PciIrq]) -> PciHost<'_> {
        PciHost::new(intx, 5 << 30)
    }

    #[test]
    fn table_tree_is_consistent() {
        let t = build(GuestAddress(0xe_0000), 3, &host(&[])).unwrap();
        let xsdt_addr = u64_at(&t.bytes, 24);
        let x = table(&t, xsdt_addr);
        assert_eq!(&x[..4], b"XSDT");
        assert_eq!(x.len(), 36 + 24);
        let mcfg = table(&t, u64_at(x, 52));
        assert_eq!(&mcfg[..4], b"MCFG");
        assert_eq!(mcfg.len(), 60);
        assert_eq!(u64_at(mcfg, 44), crate::pci::ECAM_BASE);
        assert_eq!(&mcfg[52..56], &[0, 0, 0, 0]);
        let fadt = table(&t, u64_at(x, 36));
        assert_eq!(&fadt[..4], b"FACP");
        assert_eq!(fadt.len(), FADT_SIZE);
        assert_eq!(fadt[8], 6);
        assert_eq!(u32_at(fadt, 112), FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP);
        assert_eq!(
            u16::from_le_bytes([fadt[109], fadt[110]]),
            IAPC_8042 | IAPC_VGA_NOT_PRESENT
        );
        assert_eq!(&fadt[116..120], &[1, 8, 0, 1]);
        assert_eq!(u64_at(fadt, 120), 0x64);
        assert_eq!(fadt[128], 0xfe);
        let dsdt = table(&t, u64_at(fadt, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(dsdt[8], 6, "dsdt revision 2+ for 64-bit integers");
        assert_eq!(&dsdt[36..], dsdt::definition_block(&host(&[])).unwrap());
        let madt = table(&t, u64_at(x, 44));
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(u32_at(madt, 36), 0xfee0_0000);
        // Walk the MADT entries.
        let mut off = 44;
        let mut lapics = Vec::new();
        let mut ioapics = 0;
        while off < madt.len() {
            let (kind, len) = (madt[off], usize::from(madt[off + 1]));
            match kind {
                0 => {
                    assert_eq!(len, 8);
                    lapics.push((madt[off + 3], u32_at(madt, off + 4)));
                }
                1 => {
                    assert_eq!(len, 12);
                    assert_eq!(madt[off + 2], 3);
                    assert_eq!(u32_at(madt, off + 4), 0xfec0_0000);
                    ioapics += 1;
                }
                4 => assert_eq!((len, madt[off + 2], madt[off + 5]), (6, 0xff, 1)),
                other => panic!("unexpected madt entry {other}"),
            }
            off += len;
        }
        assert_eq!(off, madt.len());
        assert_eq!(lapics, vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(ioapics, 1);
    }

    #[test]
    fn tables_fit_the_acpi_area_at_the_cpu_and_slot_limits() {
        let intx: Vec<PciIrq> = (0..32)
            .map(|slot| PciIrq {
                slot,
                ioapic_pin: 23,
            })
            .collect();
        let t = build(
            GuestAddress(0xe_0000),
            crate::config::MAX_VCPUS,
            &PciHost::new(&intx, crate::layout::MAX_MEMORY),
        )
        .unwrap();
        assert!(t.bytes.len() as u64 <= crate::layout::MPTABLE_START.0 - 0xe_0000);
    }

    #[test]
    fn a_bad_wiring_is_a_typed_error() {
        let bad = [PciIrq {
            slot: 32,
            ioapic_pin: 5,
        }];
        let err = build(GuestAddress(0xe_0000), 1, &host(&bad)).unwrap_err();
        assert!(matches!(err, Error::Dsdt(dsdt::Error::InvalidSlot(32))));
    }
}
