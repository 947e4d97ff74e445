//! Debug-exit port (0xf4, as QEMU's isa-debug-exit): a byte written to it
//! ends the VM with [`VmExit::DebugExit`] carrying that byte, so test
//! guests can report a result through the VMM's exit status.

use super::bus::{BusDevice, DeviceAction};
use crate::runtime::VmExit;

/// The port.
pub const DEBUG_EXIT_PORT: u64 = 0xf4;

/// The device.
#[derive(Debug, Default)]
pub struct DebugExit;

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> DeviceAction {
        match data.first() {
            Some(code) => DeviceAction::Exit(VmExit::DebugExit(*code)),
            None => DeviceAction::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_exits_with_the_byte() {
        assert_eq!(
            DebugExit.write(0, &[3]),
            DeviceAction::Exit(VmExit::DebugExit(3))
        );
    }
}
