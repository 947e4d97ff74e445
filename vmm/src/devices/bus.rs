//! An address bus: non-overlapping ranges, each served by a device.
//! Accesses nothing claims are logged and ignored (reads return all ones),
//! never fatal.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::runtime::VmExit;

/// What a device asks of the VMM after an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    /// Nothing: the guest continues.
    Continue,
    /// End the VM.
    Exit(VmExit),
}

/// A device on a bus. `offset` is relative to the start of its range.
pub trait BusDevice: Send {
    /// Fills `data` for a read at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction;
}

/// A bus range overlaps another or wraps around.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bus range {base:#x}+{len:#x} overlaps another device or wraps")]
pub struct BusConflict {
    /// Start of the refused range.
    pub base: u64,
    /// Its length.
    pub len: u64,
}

struct Entry {
    base: u64,
    len: u64,
    name: &'static str,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// A port-I/O or MMIO bus.
#[derive(Default)]
pub struct Bus {
    name: &'static str,
    entries: Vec<Entry>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<_> = self
            .entries
            .iter()
            .map(|e| (e.name, e.base, e.len))
            .collect();
        f.debug_struct("Bus")
            .field("name", &self.name)
            .field("ranges", &ranges)
            .finish()
    }
}

impl Bus {
    /// An empty bus; `name` appears in log messages ("pio", "mmio").
    pub fn new(name: &'static str) -> Self {
        Bus {
            name,
            entries: Vec::new(),
        }
    }

    /// Claims `[base, base + len)` for `device`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        name: &'static str,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusConflict> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusConflict { base, len })?;
        if self
            .entries
            .iter()
            .any(|e| base < e.base + e.len && e.base < end)
        {
            return Err(BusConflict { base, len });
        }
        let at = self.entries.partition_point(|e| e.base < base);
        self.entries.insert(
            at,
            Entry {
                base,
                len,
                name,
                device,
            },
        );
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&Entry, u64)> {
        let i = self
            .entries
            .partition_point(|e| e.base <= addr)
            .checked_sub(1)?;
        let e = &self.entries[i];
        let offset = addr - e.base;
        let last = offset.checked_add(u64::try_from(size).ok()?)?;
        (last <= e.len).then_some((e, offset))
    }

    /// Routes a read; unclaimed addresses read as all ones.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.find(addr, data.len()) {
            Some((e, offset)) => match e.device.lock() {
                Ok(mut d) => d.read(offset, data),
                Err(_) => data.fill(0xff),
            },
            None => {
                log::debug!(
                    "{} read of {} bytes at {addr:#x}: no device",
                    self.name,
                    data.len()
                );
                data.fill(0xff);
            }
        }
    }

    /// Routes a write; unclaimed addresses ignore it.
    pub fn write(&self, addr: u64, data: &[u8]) -> DeviceAction {
        match self.find(addr, data.len()) {
            Some((e, offset)) => match e.device.lock() {
                Ok(mut d) => d.write(offset, data),
                Err(_) => DeviceAction::Continue,
            },
            None => {
                log::debug!("{} write of {data:x?} at {addr:#x}: no device", self.name);
                DeviceAction::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(u64, Vec<u8>)>);

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(u8::try_from(offset).unwrap_or(0));
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
            self.0.push((offset, data.to_vec()));
            DeviceAction::Continue
        }
    }

    #[test]
    fn routes_by_range_and_ignores_the_rest() {
        let mut bus = Bus::new("pio");
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x3f8, 8, "serial", dev.clone()).unwrap();
        assert!(bus.insert(0x3fc, 8, "other", dev.clone()).is_err());
        assert!(bus.insert(0x3f0, 9, "other", dev.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, "wrap", dev.clone()).is_err());
        bus.insert(0x3f0, 8, "below", Arc::new(Mutex::new(Recorder::default())))
            .unwrap();
        let mut b = [0u8; 1];
        bus.read(0x3fd, &mut b);
        assert_eq!(b, [5]);
        bus.read(0x400, &mut b);
        assert_eq!(b, [0xff]);
        let mut w = [0u8; 2];
        bus.read(0x3ff, &mut w); // straddles the end of the range
        assert_eq!(w, [0xff, 0xff]);
        assert_eq!(bus.write(0x3f9, &[7]), DeviceAction::Continue);
        assert_eq!(bus.write(0x10, &[7]), DeviceAction::Continue);
        assert_eq!(dev.lock().unwrap().0, vec![(1, vec![7])]);
    }
}
