//! The crate's error type.

use std::path::PathBuf;

use crate::boot::BootError;
use crate::config::ConfigError;
use crate::devices::bus::BusConflict;

/// Why a VM could not be built or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The VM definition is invalid.
    #[error("invalid vm definition")]
    Config(#[from] ConfigError),
    /// `/dev/kvm` cannot be opened.
    #[error("cannot open /dev/kvm (is KVM available and accessible to this user?)")]
    KvmOpen(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("kvm {op} failed")]
    Kvm {
        /// The operation.
        op: &'static str,
        /// The cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM accepted only some of the MSRs.
    #[error("kvm set {set} of {wanted} boot msrs on vcpu {vcpu}")]
    MsrsRejected {
        /// The vCPU.
        vcpu: u8,
        /// How many were set.
        set: usize,
        /// How many were given.
        wanted: usize,
    },
    /// A CPUID or MSR list does not fit KVM's array type.
    #[error("cpuid or msr list too long for kvm")]
    FamList(#[source] vmm_sys_util::fam::Error),
    /// Guest memory could not be allocated.
    #[error("cannot allocate {0} bytes of guest memory")]
    MemoryAlloc(u64, #[source] vm_memory::mmap::FromRangesError),
    /// The ACPI tables could not be built or written.
    #[error("cannot set up the acpi tables")]
    Acpi(#[source] crate::tables::acpi::Error),
    /// Writing firmware tables or vCPU state to guest memory failed.
    #[error("cannot write {0} to guest memory")]
    GuestMemory(&'static str, #[source] vm_memory::GuestMemoryError),
    /// Loading the kernel or writing boot information failed.
    #[error("boot set-up failed")]
    Boot(#[from] BootError),
    /// The serial output file cannot be created.
    #[error("cannot create serial output file {path}")]
    SerialFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An eventfd or signal handler could not be set up.
    #[error("cannot set up {0}")]
    Os(&'static str, #[source] std::io::Error),
    /// Two devices claim the same addresses.
    #[error("device bus conflict")]
    Bus(#[from] BusConflict),
    /// A PCI device's configuration space cannot hold what it needs.
    #[error("pci device set-up failed")]
    Pci(#[source] crate::pci::config::ConfigError),
    /// The PCI bus or its BAR window is full.
    #[error("no room for disk {0} on the pci bus or in its bar window")]
    PciFull(usize),
    /// A disk image cannot be opened.
    #[error("cannot open disk image {path}")]
    Disk {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: vhd::Error,
    },
    /// A disk image is not of the format its definition names.
    #[error("disk image {path} is {found}, not {expected} as the vm definition says")]
    DiskFormat {
        /// The image.
        path: PathBuf,
        /// What it is.
        found: String,
        /// What the definition says.
        expected: String,
    },
    /// The virtio-blk device cannot be created over an image.
    #[error("cannot create the virtio-blk device for {path}")]
    BlockDevice {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: virtio_blk::Error,
    },
    /// A vCPU thread could not be started.
    #[error("cannot start the thread of vcpu {0}")]
    Thread(u8, #[source] std::io::Error),
    /// Every vCPU thread ended without saying why (a thread panicked).
    #[error("all vcpu threads ended without a vm exit")]
    VcpuThreadsEnded,
    /// [`crate::Vm::run`] was called on a VM that already ran.
    #[error("the vm already ran; build a new one")]
    AlreadyRan,
    /// A vCPU stopped in a way the VMM cannot continue from.
    #[error("vcpu {vcpu} stopped: {reason}")]
    VcpuFailed {
        /// The vCPU.
        vcpu: u8,
        /// What KVM reported.
        reason: VcpuFailure,
    },
}

/// What made a vCPU fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VcpuFailure {
    /// `KVM_EXIT_FAIL_ENTRY`.
    #[error("kvm could not enter the guest (hardware reason {0:#x})")]
    FailEntry(u64),
    /// `KVM_EXIT_INTERNAL_ERROR`.
    #[error("kvm internal error (emulation failure)")]
    InternalError,
    /// An exit the VMM does not handle.
    #[error("unexpected kvm exit {0}")]
    UnexpectedExit(&'static str),
    /// KVM_RUN itself failed.
    #[error("KVM_RUN failed with errno {0}")]
    Run(i32),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
