//! A type 0 PCI configuration space (PCI Local Bus 3.0, chapter 6): the
//! header with write masks, memory BARs with sizing, and a capability list.
//! The extended space (256..4096, ECAM only) reads as zeros.

/// Size of the conventional configuration space.
pub const CONFIG_SIZE: usize = 256;
/// Size of a function's ECAM window (extended configuration space).
pub const EXTENDED_CONFIG_SIZE: u64 = 4096;

/// Command register bit: memory space enable.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register bit: bus master enable.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register bit: INTx emulation disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register bit: the capability list exists.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Status register bit: INTx is asserted.
pub const STATUS_INTERRUPT: u16 = 1 << 3;

const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const BAR0: usize = 0x10;
const CAP_POINTER: usize = 0x34;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;
const FIRST_CAP: usize = 0x40;
const BAR_COUNT: usize = 6;

/// A memory BAR: its size (a power of two, at least 16 bytes) and whether
/// it decodes 64-bit addresses (occupying two BAR registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Size in bytes.
    pub size: u64,
    /// 64-bit memory BAR.
    pub is_64bit: bool,
    /// Current base address (what the guest or the VMM programmed).
    pub addr: u64,
}

/// Identity of a function, written into the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code (base class, subclass, programming interface).
    pub class: u32,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// Why a capability or BAR cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The capability does not fit the 256-byte space.
    #[error("pci capability of {0} bytes does not fit the configuration space")]
    NoRoom(usize),
    /// The BAR index or size is invalid.
    #[error(
        "pci bar {index} of {size:#x} bytes is invalid (index in use or size not a power of two)"
    )]
    BadBar {
        /// BAR index.
        index: usize,
        /// Size.
        size: u64,
    },
}

/// A function's configuration space.
#[derive(Debug, Clone)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
    writable: [u8; CONFIG_SIZE],
    bars: [Option<Bar>; BAR_COUNT],
    /// Register slots that hold the upper half of a 64-bit BAR.
    upper_half: [bool; BAR_COUNT],
    next_cap: usize,
    last_cap: Option<usize>,
}

impl ConfigSpace {
    /// A header for `id` with no BARs or capabilities; `interrupt_pin`
    /// is 0 (none) or 1..=4 (INTA..INTD).
    pub fn new(id: Identity, interrupt_pin: u8) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SIZE],
            writable: [0; CONFIG_SIZE],
            bars: [None; BAR_COUNT],
            upper_half: [false; BAR_COUNT],
            next_cap: FIRST_CAP,
            last_cap: None,
        };
        c.put(0x00, &id.vendor.to_le_bytes());
        c.put(0x02, &id.device.to_le_bytes());
        c.bytes[0x08] = id.revision;
        c.put(0x09, &id.class.to_le_bytes()[..3]);
        c.put(0x2c, &id.subsystem_vendor.to_le_bytes());
        c.put(0x2e, &id.subsystem.to_le_bytes());
        c.bytes[INTERRUPT_PIN] = interrupt_pin;
        let command = COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
        c.writable[COMMAND..COMMAND + 2].copy_from_slice(&command.to_le_bytes());
        c.writable[INTERRUPT_LINE] = 0xff;
        c
    }

    fn put(&mut self, offset: usize, data: &[u8]) {
        if let Some(dst) = self.bytes.get_mut(offset..offset + data.len()) {
            dst.copy_from_slice(data);
        }
    }

    /// The interrupt line register (what firmware routed INTx to).
    pub fn set_interrupt_line(&mut self, line: u8) {
        self.bytes[INTERRUPT_LINE] = line;
    }

    /// Declares memory BAR `index` of `size` bytes at `addr`.
    pub fn add_bar(&mut self, index: usize, bar: Bar) -> Result<(), ConfigError> {
        let bad = ConfigError::BadBar {
            index,
            size: bar.size,
        };
        let slots = if bar.is_64bit { 2 } else { 1 };
        if index + slots > BAR_COUNT
            || !bar.size.is_power_of_two()
            || bar.size < 16
            || (!bar.is_64bit && bar.size > 1 << 31)
            || (index..index + slots).any(|i| self.bars[i].is_some() || self.upper_half[i])
            || !bar.addr.is_multiple_of(bar.size)
        {
            return Err(bad);
        }
        self.bars[index] = Some(bar);
        if bar.is_64bit {
            self.upper_half[index + 1] = true;
        }
        Ok(())
    }

    /// BAR `index`, if declared.
    pub fn bar(&self, index: usize) -> Option<Bar> {
        self.bars.get(index).copied().flatten()
    }

    /// Appends a capability: `id`, then `body` (the bytes after the ID and
    /// next pointer). Returns its offset. `writable` masks the body.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, ConfigError> {
        let len = body.len() + 2;
        let at = self.next_cap;
        let end = at.checked_add(len).filter(|&e| e <= CONFIG_SIZE);
        let Some(end) = end else {
            return Err(ConfigError::NoRoom(len));
        };
        self.bytes[at] = id;
        self.bytes[at + 1] = 0;
        self.put(at + 2, body);
        for (i, m) in writable.iter().take(body.len()).enumerate() {
            self.writable[at + 2 + i] = *m;
        }
        match self.last_cap {
            None => {
                self.bytes[CAP_POINTER] = u8::try_from(at).unwrap_or(0);
                let status = u16::from_le_bytes([self.bytes[STATUS], self.bytes[STATUS + 1]])
                    | STATUS_CAP_LIST;
                self.put(STATUS, &status.to_le_bytes());
            }
            Some(prev) => self.bytes[prev + 1] = u8::try_from(at).unwrap_or(0),
        }
        self.last_cap = Some(at);
        self.next_cap = end.next_multiple_of(4);
        Ok(at)
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[COMMAND], self.bytes[COMMAND + 1]])
    }

    /// Sets or clears the status register's interrupt bit.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let mut status = u16::from_le_bytes([self.bytes[STATUS], self.bytes[STATUS + 1]]);
        if asserted {
            status |= STATUS_INTERRUPT;
        } else {
            status &= !STATUS_INTERRUPT;
        }
        self.put(STATUS, &status.to_le_bytes());
    }

    /// Raw bytes of the conventional space (for capabilities the owner
    /// interprets, such as MSI-X message control).
    pub fn bytes(&self) -> &[u8; CONFIG_SIZE] {
        &self.bytes
    }

    fn bar_register(&self, slot: usize) -> u32 {
        if self.upper_half[slot] {
            let addr = self.bars[slot - 1].map_or(0, |b| b.addr);
            return u32::try_from(addr >> 32).unwrap_or(0);
        }
        match self.bars[slot] {
            Some(b) => {
                let low = u32::try_from(b.addr & 0xffff_fff0).unwrap_or(0);
                low | if b.is_64bit { 0b100 } else { 0 }
            }
            None => 0,
        }
    }

    fn write_bar_register(&mut self, slot: usize, value: u32) {
        if self.upper_half[slot] {
            if let Some(b) = self.bars[slot - 1].as_mut() {
                let keep = b.addr & 0xffff_ffff;
                let high = u64::from(value) << 32;
                b.addr = (high | keep) & !(b.size - 1);
            }
        } else if let Some(b) = self.bars[slot].as_mut() {
            let high = b.addr & !0xffff_ffff;
            b.addr = (high | u64::from(value & 0xffff_fff0)) & !(b.size - 1);
        }
    }

    /// Reads `data.len()` bytes at `offset` (any offset below 4096).
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let Some(at) = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
            else {
                *byte = 0;
                continue;
            };
            *byte = if (BAR0..BAR0 + 4 * BAR_COUNT).contains(&at) {
                let slot = (at - BAR0) / 4;
                self.bar_register(slot).to_le_bytes()[(at - BAR0) % 4]
            } else {
                self.bytes.get(at).copied().unwrap_or(0)
            };
        }
    }

    /// Writes `data` at `offset` through the write masks; BAR registers
    /// keep only the address bits their size allows.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, value) in data.iter().enumerate() {
            let Some(at) = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
            else {
                continue;
            };
            if (BAR0..BAR0 + 4 * BAR_COUNT).contains(&at) {
                let slot = (at - BAR0) / 4;
                let mut reg = self.bar_register(slot).to_le_bytes();
                reg[(at - BAR0) % 4] = *value;
                self.write_bar_register(slot, u32::from_le_bytes(reg));
            } else if let (Some(b), Some(m)) = (self.bytes.get_mut(at), self.writable.get(at)) {
                *b = (*b & !m) | (value & m);
            }
        }
    }

    /// The BAR (index, offset inside it) that decodes memory address
    /// `addr`, if memory decoding is enabled.
    pub fn decode(&self, addr: u64) -> Option<(usize, u64)> {
        if self.command() & COMMAND_MEMORY == 0 {
            return None;
        }
        self.bars.iter().enumerate().find_map(|(i, b)| {
            let b = (*b)?;
            let off = addr.checked_sub(b.addr)?;
            (b.addr != 0 && off < b.size).then_some((i, off))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            vendor: 0x1af4,
            device: 0x1042,
            revision: 1,
            class: 0x01_8000,
            subsystem_vendor: 0x1af4,
            subsystem: 0x40,
        }
    }

    fn rd32(c: &ConfigSpace, off: u64) -> u32 {
        let mut b = [0; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn header_fields_and_masks() {
        let mut c = ConfigSpace::new(id(), 1);
        assert_eq!(rd32(&c, 0), 0x1042_1af4);
        assert_eq!(rd32(&c, 8), 0x0180_0001);
        assert_eq!(rd32(&c, 0x2c), 0x0040_1af4);
        // Vendor ID is read-only; command takes only the modelled bits.
        c.write(0, &[0, 0, 0, 0]);
        assert_eq!(rd32(&c, 0), 0x1042_1af4);
        c.write(4, &[0xff, 0xff]);
        assert_eq!(
            c.command(),
            COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE
        );
        c.write(0x3c, &[11, 9]);
        assert_eq!(c.bytes()[0x3c], 11);
        assert_eq!(c.bytes()[0x3d], 1, "interrupt pin is read-only");
        // The extended space reads as zeros; writes there are ignored.
        c.write(0x100, &[1]);
        assert_eq!(rd32(&c, 0x100), 0);
    }

    #[test]
    fn bar_sizing_32_and_64_bit() {
        let mut c = ConfigSpace::new(id(), 0);
        c.add_bar(
            0,
            Bar {
                size: 0x8000,
                is_64bit: true,
                addr: 0x1_0000_8000,
            },
        )
        .unwrap();
        c.add_bar(
            2,
            Bar {
                size: 0x100,
                is_64bit: false,
                addr: 0xc000_0100,
            },
        )
        .unwrap();
        assert!(
            c.add_bar(
                1,
                Bar {
                    size: 16,
                    is_64bit: false,
                    addr: 0
                }
            )
            .is_err()
        );
        assert!(
            c.add_bar(
                3,
                Bar {
                    size: 24,
                    is_64bit: false,
                    addr: 0
                }
            )
            .is_err()
        );
        assert_eq!(rd32(&c, 0x10), 0x8004);
        assert_eq!(rd32(&c, 0x14), 1);
        // Sizing: write all ones, read back the size mask, restore.
        c.write(0x10, &[0xff; 4]);
        c.write(0x14, &[0xff; 4]);
        assert_eq!(rd32(&c, 0x10), 0xffff_8004);
        assert_eq!(rd32(&c, 0x14), 0xffff_ffff);
        c.write(0x18, &[0xff; 4]);
        assert_eq!(rd32(&c, 0x18), 0xffff_ff00);
        c.write(0x10, &0xd000_0000u32.to_le_bytes());
        c.write(0x14, &[0; 4]);
        assert_eq!(c.bar(0).unwrap().addr, 0xd000_0000);
        // Unused BAR registers read zero and ignore writes.
        c.write(0x1c, &[0xff; 4]);
        assert_eq!(rd32(&c, 0x1c), 0);
        // Decoding follows the memory enable bit.
        assert_eq!(c.decode(0xd000_0010), None);
        c.write(4, &COMMAND_MEMORY.to_le_bytes());
        assert_eq!(c.decode(0xd000_0010), Some((0, 0x10)));
        assert_eq!(c.decode(0xd000_8000), None);
    }

    #[test]
    fn capability_list_links() {
        let mut c = ConfigSpace::new(id(), 0);
        let a = c.add_capability(0x09, &[14, 1, 0, 0], &[0; 4]).unwrap();
        let b = c.add_capability(0x11, &[0; 10], &[0, 0xc0]).unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x48);
        assert_eq!(c.bytes()[0x34], 0x40);
        assert_eq!(c.bytes()[0x41], 0x48);
        assert_eq!(c.bytes()[0x49], 0);
        assert_ne!(rd32(&c, 4) >> 16 & u32::from(STATUS_CAP_LIST), 0);
        c.write(0x4a, &[0xff, 0xff]);
        assert_eq!(&c.bytes()[0x4a..0x4c], &[0, 0xc0]);
        assert!(c.add_capability(0x09, &[0; 200], &[]).is_err());
    }
}
