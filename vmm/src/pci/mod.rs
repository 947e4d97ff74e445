//! PCI: one root bus (segment 0, bus 0) behind a host bridge, with
//! configuration access through ports CF8/CFC and through ECAM (announced
//! in the ACPI MCFG table), and memory BARs placed in the 32-bit MMIO hole
//! or above the top of RAM.
//!
//! The [`PciRoot`] owns the functions; [`ConfigIo`], [`Ecam`] and
//! [`BarWindow`] are the bus devices that route the guest's accesses to
//! it. BAR accesses are routed by the BAR registers' current values, so a
//! guest that moves a BAR is served at the new address.

pub mod config;
pub mod msix;

use std::sync::{Arc, Mutex};

use crate::devices::{BusDevice, DeviceAction};
pub use config::{Bar, ConfigSpace, Identity};

/// Base of the ECAM window (bus 0 only: 32 devices x 8 functions x 4 KiB).
pub const ECAM_BASE: u64 = 0xe000_0000;
/// Size of the ECAM window.
pub const ECAM_SIZE: u64 = 1 << 20;
/// Start of the window 32-bit BARs are allocated from.
pub const MMIO32_BASE: u64 = 0xc000_0000;
/// End of that window (the ECAM window follows).
pub const MMIO32_END: u64 = ECAM_BASE;
/// Size of the window above RAM that 64-bit BARs are allocated from.
pub const MMIO64_SIZE: u64 = 64 << 30;

/// Start of the 64-bit BAR window for `memory` bytes of guest RAM: the
/// first 1 GiB boundary above the RAM that continues at 4 GiB.
pub fn high_window(memory: u64) -> u64 {
    let above = memory.saturating_sub(crate::layout::low_memory_end(memory));
    (crate::layout::MMIO_HOLE_END + above).next_multiple_of(1 << 30)
}

/// Port of CONFIG_ADDRESS.
pub const CONFIG_ADDRESS_PORT: u64 = 0xcf8;
/// Ports CONFIG_ADDRESS and CONFIG_DATA span 8 bytes.
pub const CONFIG_IO_LEN: u64 = 8;
/// Devices per bus.
pub const SLOTS: usize = 32;

/// A PCI function on the root bus.
pub trait PciFunction: Send {
    /// Its configuration space (BAR decoding reads it).
    fn config(&self) -> &ConfigSpace;
    /// A configuration read at `offset` (0..4096).
    fn read_config(&mut self, offset: u64, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    /// A configuration write at `offset` (0..4096).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// A read inside BAR `bar` at `offset`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// A write inside BAR `bar` at `offset`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]);
}

/// The host bridge in slot 0: a header and nothing else.
#[derive(Debug)]
pub struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    /// A host bridge (class 06/00/00).
    pub fn new() -> Self {
        HostBridge {
            config: ConfigSpace::new(
                Identity {
                    vendor: 0x1b36,
                    device: 0x0008,
                    revision: 0,
                    class: 0x06_0000,
                    subsystem_vendor: 0x1b36,
                    subsystem: 0,
                },
                0,
            ),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciFunction for HostBridge {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.config.write(offset, data);
    }
    fn read_bar(&mut self, _: usize, _: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write_bar(&mut self, _: usize, _: u64, _: &[u8]) {}
}

/// A function shared between the root and whoever else drives it.
pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// The root bus: function 0 of each of 32 slots.
#[derive(Default)]
pub struct PciRoot {
    slots: Vec<Option<SharedFunction>>,
}

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect();
        f.debug_struct("PciRoot").field("slots", &used).finish()
    }
}

/// The bus has no free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pci bus has no free slot (at most {SLOTS} devices)")]
pub struct BusFull;

impl PciRoot {
    /// A root bus with the host bridge in slot 0.
    pub fn new() -> Self {
        let mut slots: Vec<Option<SharedFunction>> = vec![None; SLOTS];
        slots[0] = Some(Arc::new(Mutex::new(HostBridge::new())));
        PciRoot { slots }
    }

    /// The next free slot number.
    pub fn free_slot(&self) -> Result<u8, BusFull> {
        let i = self.slots.iter().position(Option::is_none).ok_or(BusFull)?;
        u8::try_from(i).map_err(|_| BusFull)
    }

    /// Puts `function` in `slot`.
    pub fn insert(&mut self, slot: u8, function: SharedFunction) -> Result<(), BusFull> {
        match self.slots.get_mut(usize::from(slot)) {
            Some(s @ None) => {
                *s = Some(function);
                Ok(())
            }
            _ => Err(BusFull),
        }
    }

    fn function(&self, device: usize, function: usize) -> Option<&SharedFunction> {
        if function != 0 {
            return None;
        }
        self.slots.get(device)?.as_ref()
    }

    /// A configuration read of (device, function) at `offset`; absent
    /// functions read as all ones.
    pub fn read_config(&self, device: usize, function: usize, offset: u64, data: &mut [u8]) {
        match self.function(device, function).map(|f| f.lock()) {
            Some(Ok(mut f)) => f.read_config(offset, data),
            _ => data.fill(0xff),
        }
    }

    /// A configuration write of (device, function) at `offset`.
    pub fn write_config(&self, device: usize, function: usize, offset: u64, data: &[u8]) {
        if let Some(Ok(mut f)) = self.function(device, function).map(|f| f.lock()) {
            f.write_config(offset, data);
        }
    }

    fn with_bar<R>(
        &self,
        addr: u64,
        act: impl FnOnce(&mut dyn PciFunction, usize, u64) -> R,
    ) -> Option<R> {
        for f in self.slots.iter().flatten() {
            let Ok(mut f) = f.lock() else { continue };
            if let Some((bar, offset)) = f.config().decode(addr) {
                return Some(act(&mut *f, bar, offset));
            }
        }
        None
    }
}

/// Ports CF8 (CONFIG_ADDRESS) and CFC..CFF (CONFIG_DATA), configuration
/// mechanism #1.
#[derive(Debug)]
pub struct ConfigIo {
    root: Arc<PciRoot>,
    address: u32,
}

impl ConfigIo {
    /// Configuration ports over `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        ConfigIo { root, address: 0 }
    }

    /// (device, function, register offset) of CONFIG_ADDRESS when enabled
    /// and on bus 0.
    fn target(&self, data_offset: u64) -> Option<(usize, usize, u64)> {
        let a = self.address;
        if a >> 31 == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        let device = usize::try_from((a >> 11) & 0x1f).ok()?;
        let function = usize::try_from((a >> 8) & 0x7).ok()?;
        // Bits 27:24 extend the register number (AMD extended access).
        let reg = u64::from((a & 0xfc) | ((a >> 16) & 0xf00)) + data_offset;
        Some((device, function, reg))
    }
}

impl BusDevice for ConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..=7 => match self.target(offset - 4) {
                Some((d, f, reg)) => self.root.read_config(d, f, reg, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        match offset {
            0 if data.len() == 4 => {
                let mut b = [0; 4];
                b.copy_from_slice(data);
                self.address = u32::from_le_bytes(b) & 0x8fff_fffc;
            }
            4..=7 => {
                if let Some((d, f, reg)) = self.target(offset - 4) {
                    self.root.write_config(d, f, reg, data);
                }
            }
            _ => {}
        }
        DeviceAction::Continue
    }
}

/// The ECAM window: 4 KiB of configuration space per function.
#[derive(Debug)]
pub struct Ecam {
    root: Arc<PciRoot>,
}

impl Ecam {
    /// The ECAM window over `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Ecam { root }
    }
}

fn ecam_split(offset: u64) -> (usize, usize, u64) {
    let device = usize::try_from((offset >> 15) & 0x1f).unwrap_or(usize::MAX);
    let function = usize::try_from((offset >> 12) & 0x7).unwrap_or(usize::MAX);
    (device, function, offset & 0xfff)
}

impl BusDevice for Ecam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let (d, f, reg) = ecam_split(offset);
        self.root.read_config(d, f, reg, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        let (d, f, reg) = ecam_split(offset);
        self.root.write_config(d, f, reg, data);
        DeviceAction::Continue
    }
}

/// An MMIO window in which BARs live; accesses go to the function whose
/// BAR decodes the address.
#[derive(Debug)]
pub struct BarWindow {
    root: Arc<PciRoot>,
    base: u64,
}

impl BarWindow {
    /// A window starting at guest address `base`.
    pub fn new(root: Arc<PciRoot>, base: u64) -> Self {
        BarWindow { root, base }
    }
}

impl BusDevice for BarWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let addr = self.base.saturating_add(offset);
        if self
            .root
            .with_bar(addr, |f, bar, off| f.read_bar(bar, off, data))
            .is_none()
        {
            data.fill(0xff);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        let addr = self.base.saturating_add(offset);
        self.root
            .with_bar(addr, |f, bar, off| f.write_bar(bar, off, data));
        DeviceAction::Continue
    }
}

/// Hands out naturally aligned BAR addresses from a window.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    /// Allocates from `[start, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        BarAllocator { next: start, end }
    }

    /// A `size`-byte (power of two) range aligned to its size, or None
    /// when the window is exhausted.
    pub fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let at = self.next.checked_next_multiple_of(size)?;
        let end = at.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_aligns_and_exhausts() {
        let mut a = BarAllocator::new(MMIO32_BASE + 0x10, MMIO32_BASE + 0x3_0000);
        assert_eq!(a.allocate(0x1_0000), Some(MMIO32_BASE + 0x1_0000));
        assert_eq!(a.allocate(0x100), Some(MMIO32_BASE + 0x2_0000));
        assert_eq!(a.allocate(0x1_0000), None);
        assert_eq!(a.allocate(3), None);
        // The high window: above RAM, for 64-bit BARs.
        let mut high = BarAllocator::new(1 << 36, 1 << 40);
        assert_eq!(high.allocate(1 << 32), Some(1 << 36));
        assert_eq!(high.allocate(16), Some((1 << 36) + (1 << 32)));
    }

    #[test]
    fn high_window_is_above_ram() {
        assert_eq!(high_window(64 << 20), 4 << 30);
        assert_eq!(high_window(3 << 30), 4 << 30);
        assert_eq!(high_window((5 << 30) + 4096), 7 << 30);
    }

    #[test]
    fn config_io_and_ecam_reach_the_host_bridge() {
        let root = Arc::new(PciRoot::new());
        let mut io = ConfigIo::new(root.clone());
        let mut ecam = Ecam::new(root.clone());
        io.write(0, &0x8000_0000u32.to_le_bytes());
        let mut b = [0u8; 4];
        io.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0000);
        io.read(4, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x0008_1b36);
        // Class code through a 2-byte read of CFE (register 8, bytes 2-3).
        io.write(0, &0x8000_0008u32.to_le_bytes());
        let mut w = [0u8; 2];
        io.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0600);
        // Disabled address or another bus: all ones.
        io.write(0, &0x0000_0000u32.to_le_bytes());
        io.read(4, &mut b);
        assert_eq!(b, [0xff; 4]);
        io.write(0, &0x8001_0000u32.to_le_bytes());
        io.read(4, &mut b);
        assert_eq!(b, [0xff; 4]);
        ecam.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x0008_1b36);
        ecam.read(1 << 15, &mut b);
        assert_eq!(b, [0xff; 4], "slot 1 is empty");
        ecam.read(1 << 12, &mut b);
        assert_eq!(b, [0xff; 4], "function 1 does not exist");
    }
}
