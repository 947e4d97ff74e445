//! The DSDT's definition block: the PCI host bridge and the motherboard
//! resources, in AML.
//!
//! ```text
//! Scope (\_SB) {
//!     Device (PCI0) {                       // the root bridge of segment 0
//!         _HID PNP0A08, _CID PNP0A03, _SEG 0, _BBN 0, _UID 0
//!         _CRS: bus 0..0; IO 0xcf8/8 (consumed); I/O 0x0-0xcf7, 0xd00-0xffff;
//!               the 32-bit BAR window; the 64-bit BAR window above RAM
//!         _PRT: {0xSSSSFFFF, pin, 0, GSI} for INTA#..INTD# of each slot
//!     }
//!     Device (MBRD) { _HID PNP0C02, _UID 0, _CRS: the ECAM window }
//! }
//! ```
//!
//! The bridge has no `_ADR`: the spec lets a device carry `_HID` or
//! `_ADR`, not both. `_PRT` routes every pin of a slot to the IOAPIC input
//! the MP table gives that slot's INTA#: the VMM wires one interrupt line
//! per device, whichever pin the function reports, so the two tables
//! always agree. `MBRD` is how Linux checks that MCFG's window is reserved
//! in the ACPI namespace (the e820 map reserves it as well).

use std::ops::Range;

use super::aml::{self, Caching, Data, Resource, Term, Usage};
use super::mptable::PciIrq;
use crate::pci;

/// Interrupt pins per PCI slot (INTA# to INTD#).
pub const PINS_PER_SLOT: u8 = 4;
/// Device numbers on a PCI bus.
const DEVICES: u8 = 32;
/// Last port of the I/O window below CONFIG_ADDRESS.
const IO_LOW_END: u16 = 0x0cf7;
/// First port of the I/O window above CONFIG_DATA (the firmware convention
/// of starting it at the next 256-port boundary).
const IO_HIGH_START: u16 = 0x0d00;
/// CONFIG_ADDRESS and CONFIG_DATA, the ports the bridge itself decodes.
const CONFIG_PORTS: u8 = 8;
const _: () = assert!(pci::CONFIG_ADDRESS_PORT == IO_LOW_END as u64 + 1);
const _: () = assert!(pci::CONFIG_IO_LEN == CONFIG_PORTS as u64);
const _: () = assert!(pci::CONFIG_ADDRESS_PORT + pci::CONFIG_IO_LEN <= IO_HIGH_START as u64);

/// What the DSDT cannot describe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A slot number is not a PCI device number.
    #[error("pci slot {0} in the interrupt wiring is not a device number below 32")]
    InvalidSlot(u8),
    /// Two wirings name the same slot.
    #[error("pci slot {0} appears twice in the interrupt wiring")]
    DuplicateSlot(u8),
    /// An address does not fit its descriptor.
    #[error("the pci windows cannot be encoded")]
    Aml(#[from] aml::Error),
}

/// What the DSDT says about the PCI host bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciHost<'a> {
    /// INTA# wiring of each populated slot, as the MP table announces it.
    pub intx: &'a [PciIrq],
    /// The window 64-bit BARs are allocated from.
    pub mmio64: Range<u64>,
}

impl<'a> PciHost<'a> {
    /// The bridge of a VM with `memory` bytes of RAM: its 64-bit window is
    /// the one [`pci::high_window`] places above RAM.
    pub fn new(intx: &'a [PciIrq], memory: u64) -> Self {
        let base = pci::high_window(memory);
        PciHost {
            intx,
            mmio64: base..base.saturating_add(pci::MMIO64_SIZE),
        }
    }
}

/// The term list of the DSDT (what follows the table header).
pub fn definition_block(host: &PciHost) -> Result<Vec<u8>, Error> {
    let scope = Term::scope("\\_SB", vec![pci0(host)?, motherboard()?])?;
    let mut out = Vec::new();
    scope.encode(&mut out)?;
    Ok(out)
}

fn pci0(host: &PciHost) -> Result<Term, Error> {
    Ok(Term::device(
        "PCI0",
        vec![
            Term::name("_HID", Data::eisa_id("PNP0A08")?)?,
            Term::name("_CID", Data::eisa_id("PNP0A03")?)?,
            Term::name("_SEG", Data::Integer(0))?,
            Term::name("_BBN", Data::Integer(0))?,
            Term::name("_UID", Data::Integer(0))?,
            Term::name("_CRS", aml::resource_template(&bridge_resources(host)?)?)?,
            Term::name("_PRT", routing_table(host.intx)?)?,
        ],
    )?)
}

fn u32_of(v: u64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Aml(aml::Error::InvalidRange { min: v, max: v }))
}

/// The bridge's `_CRS`: the bus it decodes, the configuration ports it
/// uses, and the I/O and memory windows it passes to the bus.
fn bridge_resources(host: &PciHost) -> Result<Vec<Resource>, Error> {
    let mmio64_last = host
        .mmio64
        .end
        .checked_sub(1)
        .filter(|last| *last >= host.mmio64.start)
        .ok_or(aml::Error::InvalidRange {
            min: host.mmio64.start,
            max: host.mmio64.end,
        })?;
    Ok(vec![
        Resource::WordBusNumber {
            usage: Usage::Producer,
            min: 0,
            max: 0,
        },
        Resource::Io {
            min: IO_LOW_END + 1,
            max: IO_LOW_END + 1,
            alignment: 1,
            length: CONFIG_PORTS,
        },
        Resource::WordIo {
            usage: Usage::Producer,
            min: 0,
            max: IO_LOW_END,
        },
        Resource::WordIo {
            usage: Usage::Producer,
            min: IO_HIGH_START,
            max: u16::MAX,
        },
        Resource::DWordMemory {
            usage: Usage::Producer,
            caching: Caching::NonCacheable,
            writable: true,
            min: u32_of(pci::MMIO32_BASE)?,
            max: u32_of(pci::MMIO32_END - 1)?,
        },
        Resource::QWordMemory {
            usage: Usage::Producer,
            caching: Caching::Cacheable,
            writable: true,
            min: host.mmio64.start,
            max: mmio64_last,
        },
    ])
}

/// `_PRT`: `{address 0xSSSSFFFF, pin, 0 (no link device), GSI}` for every
/// pin of every wired slot, in the wiring's order.
fn routing_table(intx: &[PciIrq]) -> Result<Data, Error> {
    let mut seen = [false; DEVICES as usize];
    let mut entries = Vec::with_capacity(intx.len() * usize::from(PINS_PER_SLOT));
    for irq in intx {
        let used = seen
            .get_mut(usize::from(irq.slot))
            .ok_or(Error::InvalidSlot(irq.slot))?;
        if std::mem::replace(used, true) {
            return Err(Error::DuplicateSlot(irq.slot));
        }
        for pin in 0..PINS_PER_SLOT {
            entries.push(Data::Package(vec![
                Data::Integer((u64::from(irq.slot) << 16) | 0xffff),
                Data::Integer(pin.into()),
                Data::Integer(0),
                Data::Integer(irq.ioapic_pin.into()),
            ]));
        }
    }
    Ok(Data::Package(entries))
}

/// `MBRD`: motherboard resources reserving the ECAM window MCFG announces.
fn motherboard() -> Result<Term, Error> {
    let ecam = Resource::Memory32Fixed {
        writable: true,
        base: u32_of(pci::ECAM_BASE)?,
        length: u32_of(pci::ECAM_SIZE)?,
    };
    Ok(Term::device(
        "MBRD",
        vec![
            Term::name("_HID", Data::eisa_id("PNP0C02")?)?,
            Term::name("_UID", Data::Integer(0))?,
            Term::name("_CRS", aml::resource_template(&[ecam])?)?,
        ],
    )?)
}

#[cfg(test)]
#[path = "dsdt_tests.rs"]
mod tests;
