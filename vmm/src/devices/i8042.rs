//! A minimal i8042 keyboard controller at ports 0x60 and 0x64: no keyboard
//! attached; the "pulse reset line" command (0xfe to the command port) ends
//! the VM with [`VmExit::Reset`], the way Linux's `reboot=k` restarts.

use super::bus::{BusDevice, DeviceAction};
use crate::runtime::VmExit;

/// First port of the range the device claims (data port).
pub const I8042_BASE: u64 = 0x60;
/// Length of the range: 0x60..=0x64.
pub const I8042_LEN: u64 = 5;
/// Offset of the command/status port.
const COMMAND: u64 = 4;
/// Offset of the data port.
const DATA: u64 = 0;
/// Command: pulse the CPU reset line.
pub const CMD_RESET_CPU: u8 = 0xfe;

/// The controller.
#[derive(Debug, Default)]
pub struct I8042;

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Status: output buffer empty, input buffer empty. Data: nothing.
        let value = match offset {
            COMMAND | DATA => 0,
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        if offset == COMMAND && data.first() == Some(&CMD_RESET_CPU) {
            return DeviceAction::Exit(VmExit::Reset);
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_ends_the_vm() {
        let mut d = I8042;
        assert_eq!(d.write(4, &[0xfe]), DeviceAction::Exit(VmExit::Reset));
        assert_eq!(d.write(4, &[0xad]), DeviceAction::Continue);
        assert_eq!(d.write(0, &[0xfe]), DeviceAction::Continue);
        let mut s = [0xaa];
        d.read(4, &mut s);
        assert_eq!(s, [0]);
    }
}
