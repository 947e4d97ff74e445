//! Builder: turns a [`VmConfig`] into a ready-to-run [`Vm`]: KVM VM with
//! in-kernel irqchip and PIT, guest memory, firmware tables, the loaded
//! kernel, devices and configured vCPUs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::boot::{self, BootSetup};
use crate::config::{SerialConfig, VmConfig};
use crate::devices::debug_exit::{DEBUG_EXIT_PORT, DebugExit};
use crate::devices::i8042::{I8042, I8042_BASE, I8042_LEN};
use crate::devices::serial::{COM1_BASE, COM1_IRQ, COM1_LEN, SerialDevice, SerialOut};
use crate::devices::virtio_pci::disks;
use crate::devices::virtio_pci::interrupt::GsiRoutes;
use crate::devices::{Bus, DeviceManager};
use crate::error::{Error, Result};
use crate::exit_stats::ExitStats;
use crate::layout;
use crate::memory;
use crate::pci::{self, BarAllocator, BarWindow, ConfigIo, Ecam, PciRoot};
use crate::runtime::{self, VmExit};
use crate::tables::{acpi, mptable};
use crate::vcpu::Vcpu;

/// Address of the TSS KVM needs on Intel hosts (three pages below 4 GiB,
/// inside the MMIO hole).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// A built VM, ready to [`run`](Vm::run).
#[derive(Debug)]
pub struct Vm {
    // Field order is drop order: vCPUs and the VM go before the memory
    // they map.
    vcpus: Vec<Vcpu>,
    devices: DeviceManager,
    _vm: Arc<VmFd>,
    _kvm: Kvm,
    mem: GuestMemoryMmap,
    boot: BootSetup,
    started_at: Option<Duration>,
    exit_stats: Option<ExitStats>,
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { op, source }
}

impl Vm {
    /// Builds the VM `config` describes.
    pub fn build(config: &VmConfig) -> Result<Vm> {
        config.validate()?;
        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;

        let mem = memory::create(config.memory)?;
        memory::register(&vm, &mem)?;

        // The DSDT's _PRT and the MP table announce the same INTx wiring.
        let intx = disks::intx_routes(config.disks.len());
        let host = crate::tables::dsdt::PciHost::new(&intx, config.memory);
        let rsdp =
            acpi::write(&mem, layout::ACPI_START, config.cpus, &host).map_err(Error::Acpi)?;
        mptable::write_with_pci(&mem, layout::MPTABLE_START, config.cpus, &intx)
            .map_err(|e| Error::GuestMemory("mp table", e))?;
        let boot = boot::load(&mem, &config.boot, config.memory, rsdp)?;

        let vm = Arc::new(vm);
        let mut devices = build_devices(&vm, &config.serial)?;
        add_pci(&mut devices, &vm, &mem, config)?;
        let pio = devices.pio.clone();
        let mmio = devices.mmio.clone();

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let mut vcpus = Vec::with_capacity(usize::from(config.cpus));
        for index in 0..config.cpus {
            let fd = vm
                .create_vcpu(u64::from(index))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            let vcpu = Vcpu::new(index, fd, pio.clone(), mmio.clone());
            let entry = (index == 0).then_some(boot.entry);
            vcpu.configure(supported.as_slice(), config.cpus, &mem, entry)?;
            vcpus.push(vcpu);
        }
        Ok(Vm {
            vcpus,
            devices,
            _vm: vm,
            _kvm: kvm,
            mem,
            boot,
            started_at: None,
            exit_stats: None,
        })
    }

    /// What the boot step did (format, entry point, initrd placement).
    pub fn boot_setup(&self) -> &BootSetup {
        &self.boot
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Runs the guest until it ends; returns how. A VM runs once: its
    /// vCPUs are consumed.
    pub fn run(&mut self) -> Result<VmExit> {
        if self.vcpus.is_empty() {
            return Err(Error::AlreadyRan);
        }
        let vcpus = std::mem::take(&mut self.vcpus);
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        self.started_at = u64::try_from(now.tv_sec)
            .ok()
            .zip(u32::try_from(now.tv_nsec).ok())
            .map(|(s, ns)| Duration::new(s, ns));
        let (result, stats) = runtime::run_vcpus(vcpus);
        self.exit_stats = Some(stats);
        self.devices.flush();
        result
    }

    /// The VM exits of the run, summed over the vCPUs (after [`Vm::run`]).
    pub fn exit_stats(&self) -> Option<&ExitStats> {
        self.exit_stats.as_ref()
    }

    /// `CLOCK_MONOTONIC` time at which [`Vm::run`] started the vCPU
    /// threads (the guest's first instruction follows within a thread
    /// start-up), for measuring the VMM's start-up cost from outside.
    pub fn vcpus_started_at(&self) -> Option<Duration> {
        self.started_at
    }

    /// Guest memory resident in host RAM (what the loader and the guest
    /// touched): the part of the VMM's RSS that is the guest's.
    pub fn guest_resident_bytes(&self) -> std::io::Result<u64> {
        memory::resident_bytes(&self.mem)
    }
}

/// The PCI host bridge (CF8/CFC and ECAM), one virtio-blk device per disk,
/// and the BAR window on the MMIO bus.
fn add_pci(
    devices: &mut DeviceManager,
    vm: &Arc<VmFd>,
    mem: &GuestMemoryMmap,
    config: &VmConfig,
) -> Result<()> {
    let mut root = PciRoot::new();
    // 64-bit BARs go above RAM, as firmware places them; the 32-bit hole
    // stays for BARs a guest moves there.
    let high = pci::high_window(config.memory);
    let mut bars = BarAllocator::new(high, high + pci::MMIO64_SIZE);
    let routes = Arc::new(GsiRoutes::new(vm.clone()));
    disks::attach(
        &mut root,
        &mut bars,
        &config.disks,
        &Arc::new(mem.clone()),
        &routes,
    )?;
    let root = Arc::new(root);
    let pio = Arc::get_mut(&mut devices.pio).ok_or(Error::AlreadyRan)?;
    pio.insert(
        pci::CONFIG_ADDRESS_PORT,
        pci::CONFIG_IO_LEN,
        "pci-config",
        Arc::new(Mutex::new(ConfigIo::new(root.clone()))),
    )?;
    let mmio = Arc::get_mut(&mut devices.mmio).ok_or(Error::AlreadyRan)?;
    mmio.insert(
        pci::ECAM_BASE,
        pci::ECAM_SIZE,
        "pci-ecam",
        Arc::new(Mutex::new(Ecam::new(root.clone()))),
    )?;
    mmio.insert(
        pci::MMIO32_BASE,
        pci::MMIO32_END - pci::MMIO32_BASE,
        "pci-bars",
        Arc::new(Mutex::new(BarWindow::new(root.clone(), pci::MMIO32_BASE))),
    )?;
    mmio.insert(
        high,
        pci::MMIO64_SIZE,
        "pci-bars-64",
        Arc::new(Mutex::new(BarWindow::new(root, high))),
    )?;
    Ok(())
}

fn build_devices(vm: &VmFd, serial: &SerialConfig) -> Result<DeviceManager> {
    let mut pio = Bus::new("pio");
    let mmio = Bus::new("mmio");

    let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Os("the serial eventfd", e))?;
    vm.register_irqfd(&irq, COM1_IRQ)
        .map_err(kvm_err("KVM_IRQFD"))?;
    let out = SerialOut::open(serial).map_err(|source| match serial {
        SerialConfig::File(path) => Error::SerialFile {
            path: path.clone(),
            source,
        },
        _ => Error::Os("the serial output", source),
    })?;
    let uart = Arc::new(Mutex::new(SerialDevice::new(irq, out)));
    pio.insert(COM1_BASE, COM1_LEN, "serial", uart.clone())?;
    pio.insert(I8042_BASE, I8042_LEN, "i8042", Arc::new(Mutex::new(I8042)))?;
    pio.insert(
        DEBUG_EXIT_PORT,
        1,
        "debug-exit",
        Arc::new(Mutex::new(DebugExit)),
    )?;
    Ok(DeviceManager {
        pio: Arc::new(pio),
        mmio: Arc::new(mmio),
        serial: Some(uart),
    })
}
