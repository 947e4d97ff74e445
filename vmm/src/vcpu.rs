//! One vCPU: its boot-time state and its run loop, which routes port and
//! MMIO exits to the device buses until a device or KVM ends the VM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{CpuId, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN, kvm_cpuid_entry2};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use crate::devices::{Bus, DeviceAction};
use crate::error::{Error, Result, VcpuFailure};
use crate::exit_stats::UserspaceExits;
use crate::kvm_stats::{KvmStats, Snapshot, StatsError};
use crate::runtime::VmExit;
use crate::x86::{cpuid, lapic, msr, regs};

/// A vCPU and the buses its exits go to.
#[derive(Debug)]
pub struct Vcpu {
    /// Index, also the APIC ID.
    pub index: u8,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exits: UserspaceExits,
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { op, source }
}

impl Vcpu {
    /// Wraps a created vCPU.
    pub fn new(index: u8, fd: VcpuFd, pio: Arc<Bus>, mmio: Arc<Bus>) -> Self {
        Vcpu {
            index,
            fd,
            pio,
            mmio,
            exits: UserspaceExits::default(),
        }
    }

    /// The exits this vCPU returned to the VMM so far.
    pub fn userspace_exits(&self) -> UserspaceExits {
        self.exits
    }

    /// KVM's counters for this vCPU now (binary stats).
    pub fn kvm_stats(&self) -> std::result::Result<Snapshot, StatsError> {
        KvmStats::open(&self.fd)?.snapshot()
    }

    /// Sets CPUID, MSRs, FPU and LAPIC; for the boot vCPU also the entry
    /// registers. Application processors stay in wait-for-SIPI until the
    /// guest starts them.
    pub fn configure(
        &self,
        supported: &[kvm_cpuid_entry2],
        cpus: u8,
        mem: &GuestMemoryMmap,
        entry: Option<regs::EntryPoint>,
    ) -> Result<()> {
        let entries = cpuid::filter(supported, self.index, cpus);
        let cpuid = CpuId::from_entries(&entries).map_err(Error::FamList)?;
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(kvm_err("KVM_SET_CPUID2"))?;

        let msrs = msr::boot_msrs().map_err(Error::FamList)?;
        let set = self.fd.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
        if set != msrs.as_slice().len() {
            return Err(Error::MsrsRejected {
                vcpu: self.index,
                set,
                wanted: msrs.as_slice().len(),
            });
        }

        let mut lapic_state = self.fd.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
        lapic::set_lint(&mut lapic_state);
        self.fd
            .set_lapic(&lapic_state)
            .map_err(kvm_err("KVM_SET_LAPIC"))?;

        if let Some(entry) = entry {
            self.fd
                .set_fpu(&regs::entry_fpu())
                .map_err(kvm_err("KVM_SET_FPU"))?;
            self.fd
                .set_regs(&regs::entry_regs(entry))
                .map_err(kvm_err("KVM_SET_REGS"))?;
            let base = self.fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
            let sregs = regs::entry_sregs(mem, entry, base)
                .map_err(|e| Error::GuestMemory("gdt and page tables", e))?;
            self.fd
                .set_sregs(&sregs)
                .map_err(kvm_err("KVM_SET_SREGS"))?;
        }
        Ok(())
    }

    /// Runs until the VM ends (`Ok(Some(exit))`), `stop` is raised
    /// (`Ok(None)`), or KVM reports a failure.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<Option<VmExit>> {
        let fail = |index, reason| Error::VcpuFailed {
            vcpu: index,
            reason,
        };
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            let exit = self.fd.run();
            self.exits.total = self.exits.total.wrapping_add(1);
            let action = match exit {
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.exits.pio = self.exits.pio.wrapping_add(1);
                    self.pio.read(u64::from(port), data);
                    DeviceAction::Continue
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.exits.pio = self.exits.pio.wrapping_add(1);
                    self.pio.write(u64::from(port), data)
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    self.exits.mmio = self.exits.mmio.wrapping_add(1);
                    self.mmio.read(addr, data);
                    DeviceAction::Continue
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    self.exits.mmio = self.exits.mmio.wrapping_add(1);
                    self.mmio.write(addr, data)
                }
                Ok(VcpuExit::Hlt) => DeviceAction::Exit(VmExit::Halted),
                Ok(VcpuExit::Shutdown) => DeviceAction::Exit(VmExit::TripleFault),
                Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => DeviceAction::Exit(VmExit::PowerOff),
                    KVM_SYSTEM_EVENT_RESET => DeviceAction::Exit(VmExit::Reset),
                    _ => {
                        return Err(fail(
                            self.index,
                            VcpuFailure::UnexpectedExit("system event"),
                        ));
                    }
                },
                Ok(VcpuExit::Intr) => DeviceAction::Continue,
                Ok(VcpuExit::FailEntry(reason, _)) => {
                    return Err(fail(self.index, VcpuFailure::FailEntry(reason)));
                }
                Ok(VcpuExit::InternalError) => {
                    return Err(fail(self.index, VcpuFailure::InternalError));
                }
                Ok(other) => {
                    let name = exit_name(&other);
                    return Err(fail(self.index, VcpuFailure::UnexpectedExit(name)));
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    DeviceAction::Continue
                }
                Err(e) => return Err(fail(self.index, VcpuFailure::Run(e.errno()))),
            };
            if let DeviceAction::Exit(exit) = action {
                return Ok(Some(exit));
            }
        }
    }
}

fn exit_name(exit: &VcpuExit<'_>) -> &'static str {
    match exit {
        VcpuExit::Unknown => "unknown",
        VcpuExit::Exception => "exception",
        VcpuExit::Hypercall(_) => "hypercall",
        VcpuExit::Debug(_) => "debug",
        VcpuExit::IrqWindowOpen => "irq window open",
        VcpuExit::SetTpr => "set tpr",
        VcpuExit::TprAccess => "tpr access",
        VcpuExit::Nmi => "nmi",
        _ => "other",
    }
}
