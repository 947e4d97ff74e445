//! Emulated devices and the buses that route port and MMIO accesses to
//! them. The [`DeviceManager`] owns one port-I/O bus and one MMIO bus;
//! PCI (CF8/CFC on the port bus, ECAM and BARs on the MMIO bus) plugs in
//! as further bus devices.

pub mod bus;
pub mod debug_exit;
pub mod i8042;
pub mod serial;
pub mod virtio_pci;

use std::sync::{Arc, Mutex};

pub use bus::{Bus, BusDevice, DeviceAction};

/// The VM's buses and the devices on them.
#[derive(Debug)]
pub struct DeviceManager {
    /// Port I/O bus, shared read-only by the vCPU threads once built.
    pub pio: Arc<Bus>,
    /// MMIO bus, shared read-only by the vCPU threads once built.
    pub mmio: Arc<Bus>,
    /// The console, kept to flush its output when the VM ends.
    pub serial: Option<Arc<Mutex<serial::SerialDevice>>>,
}

impl DeviceManager {
    /// Flushes device output (the console).
    pub fn flush(&self) {
        if let Some(Ok(mut s)) = self.serial.as_ref().map(|s| s.lock()) {
            s.flush();
        }
    }
}
