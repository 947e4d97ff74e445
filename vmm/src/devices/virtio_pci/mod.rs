//! The virtio-pci modern transport (virtio 1.2, 4.1) for a virtio-blk
//! device: vendor capabilities pointing into one 64-bit memory BAR that
//! holds the common configuration, ISR status, device configuration,
//! notification area and the MSI-X table and PBA.
//!
//! Queue notifications arrive through ioeventfds registered on the notify
//! area (no exit to the VMM's vCPU thread); a worker thread per device
//! serves them. Completions go out through MSI-X irqfds, or INTx.
//!
//! A VIRTIO_PCI_CAP_PCI_CFG capability gives access to the same BAR
//! through configuration space (virtio 1.2, 4.1.4.9).
//!
//! BAR 0 layout:
//! ```text
//! 0x0000 common configuration    0x3000 notify (4 bytes per queue)
//! 0x1000 ISR status              0x4000 MSI-X table
//! 0x2000 device configuration    0x5000 MSI-X PBA
//! ```

pub mod common;
pub mod disks;
pub mod interrupt;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_ioctls::{IoEventAddress, NoDatamatch};
use virtio_blk::{Block, DEVICE_TYPE_BLOCK};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};
use crate::pci::config::ConfigSpace;
use crate::pci::msix::{self, MsixTable};
use crate::pci::{Bar, Identity, PciFunction};
use common::{Action, CommonConfig};
use interrupt::{GsiRoutes, ISR_CONFIG, PciInterrupt};
use worker::Worker;

/// virtio's PCI vendor ID.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Modern device IDs are 0x1040 + the virtio device type.
pub const DEVICE_ID_BASE: u16 = 0x1040;
/// Size of BAR 0.
pub const BAR_SIZE: u64 = 0x8000;
const COMMON_OFFSET: u64 = 0x0000;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_OFFSET: u64 = 0x2000;
const NOTIFY_OFFSET: u64 = 0x3000;
const MSIX_TABLE_OFFSET: u64 = 0x4000;
const MSIX_PBA_OFFSET: u64 = 0x5000;
const AREA: u64 = 0x1000;
/// Bytes between two queues' notification addresses.
pub const NOTIFY_MULTIPLIER: u32 = 4;

const CAP_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;
const CFG_PCI: u8 = 5;
/// Offset of `pci_cfg_data` inside the PCI configuration access capability.
const PCI_CFG_DATA: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Body of a virtio vendor capability (after ID and next pointer).
fn virtio_cap(cfg_type: u8, offset: u64, length: u64, extra: Option<u32>) -> Vec<u8> {
    let len = if extra.is_some() { 20u8 } else { 16 };
    let mut b = vec![len, cfg_type, 0, 0, 0, 0];
    b.extend_from_slice(&u32::try_from(offset).unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&u32::try_from(length).unwrap_or(0).to_le_bytes());
    if let Some(x) = extra {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b
}

/// A virtio-blk device on the PCI bus.
pub struct VirtioPciBlock {
    config: ConfigSpace,
    msix_cap: usize,
    /// The VIRTIO_PCI_CAP_PCI_CFG capability: a window into the BAR
    /// through configuration space.
    pci_cfg_cap: usize,
    common: CommonConfig,
    device: Arc<Block<GuestMemoryMmap>>,
    mem: Arc<GuestMemoryMmap>,
    interrupt: Arc<PciInterrupt>,
    notify: Vec<EventFd>,
    notify_base: Option<u64>,
    worker: Worker,
}

impl std::fmt::Debug for VirtioPciBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciBlock")
            .field("device", &self.device)
            .field("status", &self.common.status())
            .finish_non_exhaustive()
    }
}

impl VirtioPciBlock {
    /// The transport for `device`, BAR 0 at `bar_addr`, INTx on IOAPIC pin
    /// `intx_gsi` (reported in the interrupt line register).
    pub fn new(
        device: Arc<Block<GuestMemoryMmap>>,
        mem: Arc<GuestMemoryMmap>,
        routes: Arc<GsiRoutes>,
        bar_addr: u64,
        intx_gsi: u8,
    ) -> Result<Self> {
        let queues = device.num_queues();
        let vectors = queues.saturating_add(1);
        let id = Identity {
            vendor: VIRTIO_VENDOR,
            device: DEVICE_ID_BASE + u16::try_from(DEVICE_TYPE_BLOCK).unwrap_or(0),
            revision: 1,
            class: 0x01_8000,
            subsystem_vendor: VIRTIO_VENDOR,
            subsystem: 0x40,
        };
        let mut config = ConfigSpace::new(id, 1);
        config.set_interrupt_line(intx_gsi);
        config
            .add_bar(
                0,
                Bar {
                    size: BAR_SIZE,
                    is_64bit: true,
                    addr: bar_addr,
                },
            )
            .map_err(Error::Pci)?;
        let table = MsixTable::new(vectors);
        let caps = [
            virtio_cap(CFG_COMMON, COMMON_OFFSET, common::COMMON_CONFIG_SIZE, None),
            virtio_cap(CFG_ISR, ISR_OFFSET, 4, None),
            virtio_cap(CFG_DEVICE, DEVICE_OFFSET, device.config_len() as u64, None),
            virtio_cap(
                CFG_NOTIFY,
                NOTIFY_OFFSET,
                u64::from(queues) * u64::from(NOTIFY_MULTIPLIER),
                Some(NOTIFY_MULTIPLIER),
            ),
        ];
        for cap in &caps {
            config
                .add_capability(CAP_VENDOR, cap, &[])
                .map_err(Error::Pci)?;
        }
        // bar, offset, length and the data window are the driver's to write.
        let mut cfg_body = virtio_cap(CFG_PCI, 0, 0, Some(0));
        cfg_body[0] = 20;
        let mut cfg_mask = vec![0u8; cfg_body.len()];
        cfg_mask[2] = 0xff;
        cfg_mask[6..18].fill(0xff);
        let pci_cfg_cap = config
            .add_capability(CAP_VENDOR, &cfg_body, &cfg_mask)
            .map_err(Error::Pci)?;
        let mut body = table.control().to_le_bytes().to_vec();
        body.extend_from_slice(&u32::try_from(MSIX_TABLE_OFFSET).unwrap_or(0).to_le_bytes());
        body.extend_from_slice(&u32::try_from(MSIX_PBA_OFFSET).unwrap_or(0).to_le_bytes());
        let msix_cap = config
            .add_capability(msix::CAP_ID, &body, &[])
            .map_err(Error::Pci)?;

        let interrupt = Arc::new(PciInterrupt::new(
            routes,
            vectors,
            queues,
            u32::from(intx_gsi),
        )?);
        let mut notify = Vec::with_capacity(usize::from(queues));
        for _ in 0..queues {
            notify
                .push(EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Os("an ioeventfd", e))?);
        }
        let worker = Worker::spawn(device.clone(), interrupt.clone(), &notify)?;
        let mut dev = VirtioPciBlock {
            config,
            msix_cap,
            pci_cfg_cap,
            common: CommonConfig::new(device.features(), queues, device.queue_max_size()),
            device,
            mem,
            interrupt,
            notify,
            notify_base: None,
            worker,
        };
        dev.update_ioeventfds();
        Ok(dev)
    }

    /// Registers the notify ioeventfds at the BAR's current address
    /// (moving them when the guest moved the BAR).
    fn update_ioeventfds(&mut self) {
        let want = self
            .config
            .bar(0)
            .filter(|b| b.addr != 0)
            .map(|b| b.addr + NOTIFY_OFFSET);
        if want == self.notify_base {
            return;
        }
        let routes = self.interrupt.routes();
        let vm = routes.vm();
        for (i, fd) in self.notify.iter().enumerate() {
            let step = i as u64 * u64::from(NOTIFY_MULTIPLIER);
            if let Some(old) = self.notify_base {
                let _ = vm.unregister_ioevent(fd, &IoEventAddress::Mmio(old + step), NoDatamatch);
            }
            if let Some(new) = want
                && let Err(e) =
                    vm.register_ioevent(fd, &IoEventAddress::Mmio(new + step), NoDatamatch)
            {
                log::warn!("virtio-pci: cannot register the notify ioeventfd: {e}");
            }
        }
        self.notify_base = want;
    }

    fn reset(&mut self) {
        self.device.reset();
        self.common.reset();
        lock(&self.interrupt.msix).reset();
        if let Err(e) = self.interrupt.reroute(&lock(&self.interrupt.msix)) {
            log::warn!("virtio-pci: {e}");
        }
        self.interrupt.isr.store(0, Ordering::Release);
        self.interrupt.needs_reset.store(false, Ordering::Release);
        self.interrupt
            .config_vector
            .store(common::NO_VECTOR, Ordering::Release);
        for v in &self.interrupt.queue_vectors {
            v.store(common::NO_VECTOR, Ordering::Release);
        }
    }

    fn activate(&mut self) -> bool {
        let mut queues = Vec::new();
        for (i, qc) in self.common.queues().iter().enumerate() {
            let Ok(mut q) = Queue::new(qc.max_size) else {
                return false;
            };
            if qc.enabled {
                q.set_size(qc.size);
                q.set_desc_table_address(
                    Some(u32::try_from(qc.desc & 0xffff_ffff).unwrap_or(0)),
                    Some(u32::try_from(qc.desc >> 32).unwrap_or(0)),
                );
                q.set_avail_ring_address(
                    Some(u32::try_from(qc.driver & 0xffff_ffff).unwrap_or(0)),
                    Some(u32::try_from(qc.driver >> 32).unwrap_or(0)),
                );
                q.set_used_ring_address(
                    Some(u32::try_from(qc.device & 0xffff_ffff).unwrap_or(0)),
                    Some(u32::try_from(qc.device >> 32).unwrap_or(0)),
                );
                q.set_ready(true);
            }
            if let Some(v) = self.interrupt.queue_vectors.get(i) {
                v.store(qc.msix_vector, Ordering::Release);
            }
            queues.push(q);
        }
        match self
            .device
            .activate(self.mem.clone(), queues, self.interrupt.clone())
        {
            Ok(()) => true,
            Err(e) => {
                log::warn!("virtio-pci: the driver's queues cannot be served: {e}");
                false
            }
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let vectors = lock(&self.interrupt.msix).len();
        let action = self.common.write(offset, data, vectors);
        self.interrupt
            .config_vector
            .store(self.common.config_msix_vector, Ordering::Release);
        match action {
            Action::None => {}
            Action::Reset => self.reset(),
            Action::Negotiate(features) => {
                let ok = self.device.negotiate(features).is_ok();
                self.common.features_result(ok);
            }
            Action::Activate => {
                let ok = self.activate();
                self.common.activate_result(ok);
            }
        }
    }

    fn read_bar0(&mut self, offset: u64, data: &mut [u8]) {
        let area = offset / AREA * AREA;
        let off = offset - area;
        data.fill(0);
        match area {
            COMMON_OFFSET => {
                if self.interrupt.needs_reset.load(Ordering::Acquire) {
                    self.common.set_needs_reset();
                }
                self.common.read(off, data);
            }
            ISR_OFFSET if off == 0 => {
                if let Some(b) = data.first_mut() {
                    *b = self.interrupt.isr.swap(0, Ordering::AcqRel);
                }
            }
            DEVICE_OFFSET => self.device.read_config(off, data),
            MSIX_TABLE_OFFSET => lock(&self.interrupt.msix).read_table(off, data),
            MSIX_PBA_OFFSET => lock(&self.interrupt.msix).read_pba(off, data),
            _ => {}
        }
    }

    fn write_bar0(&mut self, offset: u64, data: &[u8]) {
        let area = offset / AREA * AREA;
        let off = offset - area;
        match area {
            COMMON_OFFSET => self.write_common(off, data),
            DEVICE_OFFSET => self.device.write_config(off, data),
            // Reached only when the ioeventfd is not registered (a BAR
            // being moved): forward to the worker the same way.
            NOTIFY_OFFSET => {
                let q = off / u64::from(NOTIFY_MULTIPLIER);
                if let Some(fd) = usize::try_from(q).ok().and_then(|q| self.notify.get(q)) {
                    let _ = fd.write(1);
                }
            }
            MSIX_TABLE_OFFSET => {
                let change = lock(&self.interrupt.msix).write_table(off, data);
                self.apply_msix(change);
            }
            _ => {}
        }
    }

    fn apply_msix(&self, change: msix::MsixChange) {
        if change.reroute
            && let Err(e) = self.interrupt.reroute(&lock(&self.interrupt.msix))
        {
            log::warn!("virtio-pci: {e}");
        }
        for v in change.fire {
            self.interrupt.fire(v);
        }
    }

    /// Signals a configuration change to the driver.
    pub fn signal_config_change(&self) {
        self.interrupt
            .signal(self.common.config_msix_vector, ISR_CONFIG);
    }
}

impl VirtioPciBlock {
    /// The BAR access the PCI configuration access capability describes:
    /// (offset in BAR 0, length), when the driver chose BAR 0, a length of
    /// 1, 2 or 4 and an offset aligned to it.
    fn pci_cfg_window(&self) -> Option<(u64, usize)> {
        let b = self.config.bytes();
        let cap = self.pci_cfg_cap;
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let bar = *b.get(cap + 4)?;
        let offset = u64::from(word(cap + 8)?);
        let len = usize::try_from(word(cap + 12)?).ok()?;
        let aligned = offset.is_multiple_of(len as u64);
        (bar == 0 && matches!(len, 1 | 2 | 4) && aligned && offset + len as u64 <= BAR_SIZE)
            .then_some((offset, len))
    }

    fn touches_pci_cfg_data(&self, offset: u64, len: usize) -> bool {
        let start = (self.pci_cfg_cap + PCI_CFG_DATA) as u64;
        offset < start + 4 && start < offset + len as u64
    }
}

impl PciFunction for VirtioPciBlock {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn read_config(&mut self, offset: u64, data: &mut [u8]) {
        if self.touches_pci_cfg_data(offset, data.len())
            && let Some((bar_off, len)) = self.pci_cfg_window()
        {
            let mut window = [0u8; 4];
            self.read_bar0(bar_off, &mut window[..len]);
            let start = (self.pci_cfg_cap + PCI_CFG_DATA) as u64;
            self.config.read(offset, data);
            for (i, b) in data.iter_mut().enumerate() {
                if let Some(k) = (offset + i as u64).checked_sub(start).filter(|k| *k < 4) {
                    *b = window[usize::try_from(k).unwrap_or(0)];
                }
            }
            return;
        }
        self.config.read(offset, data);
        // MSI-X message control lives in the table state.
        let ctl = self.msix_cap as u64 + 2;
        let control = lock(&self.interrupt.msix).control().to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            match (offset + i as u64).checked_sub(ctl) {
                Some(0) => *b = control[0],
                Some(1) => *b = control[1],
                _ => {}
            }
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.config.write(offset, data);
        if self.touches_pci_cfg_data(offset, data.len())
            && let Some((bar_off, len)) = self.pci_cfg_window()
        {
            let start = self.pci_cfg_cap + PCI_CFG_DATA;
            let mut window = [0u8; 4];
            window.copy_from_slice(&self.config.bytes()[start..start + 4]);
            self.write_bar0(bar_off, &window[..len]);
            return;
        }
        let ctl = self.msix_cap as u64 + 2;
        let mut table = lock(&self.interrupt.msix);
        let mut control = table.control().to_le_bytes();
        let mut touched = false;
        for (i, b) in data.iter().enumerate() {
            if let Some(k @ 0..=1) = (offset + i as u64).checked_sub(ctl) {
                control[usize::try_from(k).unwrap_or(0)] = *b;
                touched = true;
            }
        }
        if touched {
            let change = table.write_control(u16::from_le_bytes(control));
            drop(table);
            self.apply_msix(change);
        } else {
            drop(table);
        }
        self.update_ioeventfds();
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == 0 {
            self.read_bar0(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == 0 {
            self.write_bar0(offset, data);
        }
    }
}

impl Drop for VirtioPciBlock {
    fn drop(&mut self) {
        self.worker.stop();
        if let Some(base) = self.notify_base {
            let routes = self.interrupt.routes();
            let vm = routes.vm();
            for (i, fd) in self.notify.iter().enumerate() {
                let addr = base + i as u64 * u64::from(NOTIFY_MULTIPLIER);
                let _ = vm.unregister_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch);
            }
        }
    }
}
