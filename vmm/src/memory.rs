//! Guest memory: anonymous mappings for the RAM regions of
//! [`crate::layout::ram_regions`], registered with KVM as memory slots.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::{Error, Result};
use crate::layout;

/// Allocates guest memory of `size` bytes (not yet touched, so it costs no
/// RSS until the guest or the loader writes it).
pub fn create(size: u64) -> Result<GuestMemoryMmap> {
    let ranges: Vec<(GuestAddress, usize)> = layout::ram_regions(size)
        .into_iter()
        .map(|(addr, len)| {
            usize::try_from(len)
                .map(|len| (addr, len))
                .map_err(|_| Error::Config(crate::config::ConfigError::Memory(size)))
        })
        .collect::<Result<_>>()?;
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| Error::MemoryAlloc(size, e))
}

/// Registers every region with KVM, one slot each.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<()> {
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let host = region.as_ptr() as u64;
        let region_info = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host,
        };
        // SAFETY: [userspace_addr, +memory_size) is a live anonymous mapping
        // owned by `mem`; `Vm` keeps `mem` alive until after the VM file
        // descriptor and the vCPUs are dropped. Slot numbers are unique.
        unsafe { vm.set_user_memory_region(region_info) }.map_err(|source| Error::Kvm {
            op: "KVM_SET_USER_MEMORY_REGION",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_the_layout() {
        let mem = create(32 << 20).unwrap();
        let regions: Vec<_> = mem.iter().map(|r| (r.start_addr().0, r.len())).collect();
        assert_eq!(regions, vec![(0, 32 << 20)]);
    }
}
