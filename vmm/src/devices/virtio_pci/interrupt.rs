//! Interrupt delivery for virtio-pci: MSI-X vectors routed through KVM GSI
//! routing to irqfds, and for drivers without MSI-X the INTx line: an
//! IOAPIC pin (level-triggered, as the MP table announces) asserted through
//! a resampling irqfd, which KVM deasserts at the guest's EOI; the worker
//! asserts it again while the ISR status register still holds a cause.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_bindings::{
    KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KvmIrqRouting, kvm_irq_routing_entry,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use super::common::NO_VECTOR;
use crate::error::{Error, Result};
use crate::pci::msix::{MsixEntry, MsixTable};

/// GSIs 0..24 are the IOAPIC pins; MSI routes start above them.
const FIRST_MSI_GSI: u32 = 24;
/// ISR status bit: a queue interrupt.
pub const ISR_QUEUE: u8 = 1;
/// ISR status bit: a configuration change.
pub const ISR_CONFIG: u8 = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The VM's GSI routing table: KVM's default IOAPIC and PIC routes plus an
/// MSI route per allocated vector. KVM_SET_GSI_ROUTING replaces the whole
/// table, so every update sends all of it.
#[derive(Debug)]
pub struct GsiRoutes {
    vm: Arc<VmFd>,
    msi: Mutex<MsiRoutes>,
}

/// The next free GSI, and each MSI GSI's (address low, address high, data).
type MsiRoutes = (u32, BTreeMap<u32, (u32, u32, u32)>);

fn irqchip_route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

impl GsiRoutes {
    /// Routes for `vm` (which has the in-kernel irqchip).
    pub fn new(vm: Arc<VmFd>) -> Self {
        GsiRoutes {
            vm,
            msi: Mutex::new((FIRST_MSI_GSI, BTreeMap::new())),
        }
    }

    /// The VM.
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// A fresh GSI for an MSI vector (routed nowhere until set).
    pub fn allocate(&self) -> u32 {
        let mut m = lock(&self.msi);
        let gsi = m.0;
        m.0 += 1;
        gsi
    }

    /// Points `gsi` at the message `entry` describes (or removes the route
    /// when `entry` is None) and installs the whole table.
    pub fn set_msi(&self, updates: &[(u32, Option<MsixEntry>)]) -> Result<()> {
        let mut m = lock(&self.msi);
        for (gsi, entry) in updates {
            match entry {
                Some(e) => {
                    m.1.insert(*gsi, (e.addr_lo, e.addr_hi, e.data));
                }
                None => {
                    m.1.remove(gsi);
                }
            }
        }
        let mut entries = Vec::with_capacity(40 + m.1.len());
        for pin in 0..24 {
            if pin < 16 && pin != 2 {
                let chip = if pin < 8 {
                    KVM_IRQCHIP_PIC_MASTER
                } else {
                    KVM_IRQCHIP_PIC_SLAVE
                };
                entries.push(irqchip_route(pin, chip, pin % 8));
            }
            entries.push(irqchip_route(pin, KVM_IRQCHIP_IOAPIC, pin));
        }
        for (gsi, (lo, hi, data)) in &m.1 {
            let mut e = kvm_irq_routing_entry {
                gsi: *gsi,
                type_: KVM_IRQ_ROUTING_MSI,
                ..Default::default()
            };
            e.u.msi.address_lo = *lo;
            e.u.msi.address_hi = *hi;
            e.u.msi.data = *data;
            entries.push(e);
        }
        let table = KvmIrqRouting::from_entries(&entries).map_err(Error::FamList)?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(|source| Error::Kvm {
                op: "KVM_SET_GSI_ROUTING",
                source,
            })
    }
}

/// The interrupt state of one virtio-pci function, shared by the
/// transport (vCPU threads) and the device's queue worker.
#[derive(Debug)]
pub struct PciInterrupt {
    /// The MSI-X table and PBA.
    pub msix: Mutex<MsixTable>,
    /// One irqfd per MSI-X vector, and its GSI.
    vectors: Vec<(EventFd, u32)>,
    /// The INTx irqfd (asserts the line until the guest's EOI).
    intx: EventFd,
    /// Signalled by KVM when the guest's EOI deasserted INTx.
    resample: EventFd,
    /// ISR status (read-to-clear).
    pub isr: AtomicU8,
    /// MSI-X vector of each queue.
    pub queue_vectors: Vec<AtomicU16>,
    /// MSI-X vector for configuration changes.
    pub config_vector: AtomicU16,
    /// A queue broke (the device can no longer serve it): DEVICE_NEEDS_RESET.
    pub needs_reset: AtomicBool,
    routes: Arc<GsiRoutes>,
}

impl PciInterrupt {
    /// Interrupt state with `vectors` MSI-X vectors (each given a GSI and
    /// an irqfd) and INTx on IOAPIC pin `intx_gsi`.
    pub fn new(routes: Arc<GsiRoutes>, vectors: u16, queues: u16, intx_gsi: u32) -> Result<Self> {
        let efd = || EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Os("an irqfd", e));
        let kvm = |source| Error::Kvm {
            op: "KVM_IRQFD",
            source,
        };
        let mut fds = Vec::with_capacity(usize::from(vectors));
        for _ in 0..vectors {
            let fd = efd()?;
            let gsi = routes.allocate();
            routes.vm().register_irqfd(&fd, gsi).map_err(kvm)?;
            fds.push((fd, gsi));
        }
        let intx = efd()?;
        let resample = efd()?;
        routes
            .vm()
            .register_irqfd_with_resample(&intx, &resample, intx_gsi)
            .map_err(kvm)?;
        Ok(PciInterrupt {
            msix: Mutex::new(MsixTable::new(vectors)),
            vectors: fds,
            intx,
            resample,
            isr: AtomicU8::new(0),
            queue_vectors: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
            config_vector: AtomicU16::new(NO_VECTOR),
            needs_reset: AtomicBool::new(false),
            routes,
        })
    }

    /// The eventfd KVM signals when the guest acknowledged INTx.
    pub fn resample_fd(&self) -> &EventFd {
        &self.resample
    }

    /// After the guest's EOI deasserted INTx: asserts it again while the
    /// ISR still holds a cause the driver has not read (level semantics).
    pub fn resample(&self) {
        let _ = self.resample.read();
        if self.isr.load(Ordering::Acquire) != 0
            && let Err(e) = self.intx.write(1)
        {
            log::warn!("virtio-pci: cannot signal intx: {e}");
        }
    }

    /// A queue can no longer be served: sets DEVICE_NEEDS_RESET and tells
    /// the driver through a configuration change interrupt (virtio 1.2,
    /// 2.1.2).
    pub fn device_broken(&self) {
        if !self.needs_reset.swap(true, Ordering::AcqRel) {
            self.signal(self.config_vector.load(Ordering::Acquire), ISR_CONFIG);
        }
    }

    /// The VM's routing table.
    pub fn routes(&self) -> Arc<GsiRoutes> {
        self.routes.clone()
    }

    /// Sends MSI-X `vector` now (it was found deliverable).
    pub fn fire(&self, vector: u16) {
        if let Some((fd, _)) = self.vectors.get(usize::from(vector))
            && let Err(e) = fd.write(1)
        {
            log::warn!("virtio-pci: cannot signal msi-x vector {vector}: {e}");
        }
    }

    /// Re-installs the MSI routes of every vector from the table.
    pub fn reroute(&self, table: &MsixTable) -> Result<()> {
        let updates: Vec<(u32, Option<MsixEntry>)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, (_, gsi))| {
                let entry = u16::try_from(i).ok().and_then(|v| table.entry(v));
                (*gsi, entry.filter(|_| table.enabled()))
            })
            .collect();
        self.routes.set_msi(&updates)
    }

    /// Raises `cause` (an ISR bit) on vector `vector`, or on INTx when
    /// MSI-X is off.
    pub fn signal(&self, vector: u16, cause: u8) {
        let mut table = lock(&self.msix);
        if table.enabled() {
            if vector != NO_VECTOR && table.trigger(vector) {
                drop(table);
                self.fire(vector);
            }
            return;
        }
        drop(table);
        self.isr.fetch_or(cause, Ordering::AcqRel);
        if let Err(e) = self.intx.write(1) {
            log::warn!("virtio-pci: cannot signal intx: {e}");
        }
    }
}

impl virtio_blk::Interrupt for PciInterrupt {
    fn signal_used_queue(&self, queue_index: u16) {
        let vector = self
            .queue_vectors
            .get(usize::from(queue_index))
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire));
        self.signal(vector, ISR_QUEUE);
    }
}
