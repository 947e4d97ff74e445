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

/// Bytes of guest memory resident in host RAM (pages the loader or the
/// guest touched), from `mincore(2)`.
pub fn resident_bytes(mem: &GuestMemoryMmap) -> std::io::Result<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .map_err(|_| std::io::Error::last_os_error())?;
    let mut total = 0u64;
    for region in mem.iter() {
        let len = usize::try_from(region.len()).map_err(std::io::Error::other)?;
        let pages = len.div_ceil(usize::try_from(page).map_err(std::io::Error::other)?);
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is the region's live, page-aligned mapping and
        // `vec` has one byte per page of it, as mincore requires.
        let rc = unsafe { libc::mincore(region.as_ptr().cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        total += vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page;
    }
    Ok(total)
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

    #[test]
    fn resident_bytes_counts_touched_pages() {
        use vm_memory::Bytes;
        let mem = create(32 << 20).unwrap();
        let before = resident_bytes(&mem).unwrap();
        mem.write_slice(&[1u8; 3 * 4096], GuestAddress(0x10_0000))
            .unwrap();
        let after = resident_bytes(&mem).unwrap();
        assert!(after >= before + 3 * 4096, "{before} -> {after}");
        assert!(after <= 1 << 20, "{after}");
    }
}
