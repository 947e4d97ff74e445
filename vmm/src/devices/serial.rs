//! The 8250 UART at 0x3f8 (COM1, IRQ 4) through vm-superio, writing to
//! standard output, a file or nowhere. Its interrupt line is an eventfd
//! registered with KVM as an irqfd.

use std::fs::File;
use std::io::{self, Write};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::{BusDevice, DeviceAction};
use crate::config::SerialConfig;

/// COM1 base port.
pub const COM1_BASE: u64 = 0x3f8;
/// Eight registers.
pub const COM1_LEN: u64 = 8;
/// COM1's ISA interrupt.
pub const COM1_IRQ: u32 = 4;

/// Raises the UART's interrupt by signalling an eventfd.
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Where console bytes go.
#[derive(Debug)]
pub enum SerialOut {
    /// Standard output.
    Stdout(io::Stdout),
    /// A file.
    File(File),
    /// Discarded.
    Null,
}

impl SerialOut {
    /// Opens the destination a [`SerialConfig`] names.
    pub fn open(config: &SerialConfig) -> io::Result<Self> {
        Ok(match config {
            SerialConfig::Stdio => SerialOut::Stdout(io::stdout()),
            SerialConfig::File(p) => SerialOut::File(File::create(p)?),
            SerialConfig::Null => SerialOut::Null,
        })
    }
}

impl Write for SerialOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SerialOut::Stdout(s) => s.write(buf),
            SerialOut::File(f) => f.write(buf),
            SerialOut::Null => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SerialOut::Stdout(s) => s.flush(),
            SerialOut::File(f) => f.flush(),
            SerialOut::Null => Ok(()),
        }
    }
}

/// The UART on the port bus.
#[derive(Debug)]
pub struct SerialDevice {
    uart: Serial<EventFdTrigger, vm_superio::serial::NoEvents, SerialOut>,
}

impl SerialDevice {
    /// A UART that interrupts through `irq` and writes to `out`.
    pub fn new(irq: EventFd, out: SerialOut) -> Self {
        SerialDevice {
            uart: Serial::new(EventFdTrigger(irq), out),
        }
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) {
        if let Err(e) = self.uart.writer_mut().flush() {
            log::warn!("serial output flush failed: {e}");
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match u8::try_from(offset) {
            Ok(reg) if data.len() == 1 => self.uart.read(reg),
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        if let (Ok(reg), [value]) = (u8::try_from(offset), data)
            && let Err(e) = self.uart.write(reg, *value)
        {
            log::warn!("serial write to register {reg} failed: {e}");
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_reach_the_file_and_raise_the_interrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console");
        let out = SerialOut::open(&SerialConfig::File(path.clone())).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(irq.try_clone().unwrap(), out);
        dev.write(1, &[0x02]); // IER: THR empty interrupt
        for b in b"hi\n" {
            dev.write(0, &[*b]);
        }
        dev.flush();
        assert_eq!(std::fs::read(&path).unwrap(), b"hi\n");
        assert!(irq.read().unwrap() >= 1);
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
    }
}
