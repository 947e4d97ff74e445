//! A minimal real-mode guest for the unit tests that need a real vCPU.

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the code is placed and the vCPU starts.
pub const CODE_AT: u64 = 0x1000;

/// A VM with 64 KiB of memory and one vCPU in real mode about to run the
/// code at [`CODE_AT`]. The VM and its memory must outlive the vCPU's runs.
pub struct RealModeGuest {
    pub vm: VmFd,
    pub mem: GuestMemoryMmap,
    pub vcpu: VcpuFd,
}

/// Builds a [`RealModeGuest`] running `code`.
pub fn real_mode_guest(code: &[u8]) -> RealModeGuest {
    let kvm = Kvm::new().expect("cannot open /dev/kvm: this test needs KVM");
    let vm = kvm.create_vm().unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    crate::memory::register(&vm, &mem).unwrap();
    mem.write_slice(code, GuestAddress(CODE_AT)).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = CODE_AT;
    regs.rflags = 2;
    vcpu.set_regs(&regs).unwrap();
    RealModeGuest { vm, mem, vcpu }
}
