//! PVH boot: `hvm_start_info` (version 1) with the memory map, the command
//! line and the initrd as the first module.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::layout::{CMDLINE_START, E820Entry, PVH_INFO_START};

/// `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Offset of the memory map from the start info.
pub const MEMMAP_OFFSET: u64 = 0x40;
/// Offset of the module list from the start info.
pub const MODLIST_OFFSET: u64 = 0x800;
/// Memory map entries that fit between the start info and the module list.
pub const MEMMAP_MAX: usize = ((MODLIST_OFFSET - MEMMAP_OFFSET) / 24) as usize;

/// The start info, memory map and module list as written to guest memory.
pub fn start_info(
    e820: &[E820Entry],
    initrd: Option<(u64, u64)>,
    rsdp: GuestAddress,
) -> (
    hvm_start_info,
    Vec<hvm_memmap_table_entry>,
    Vec<hvm_modlist_entry>,
) {
    let memmap: Vec<hvm_memmap_table_entry> = e820
        .iter()
        .take(MEMMAP_MAX)
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let modules: Vec<hvm_modlist_entry> = initrd
        .map(|(paddr, size)| hvm_modlist_entry {
            paddr,
            size,
            cmdline_paddr: 0,
            reserved: 0,
        })
        .into_iter()
        .collect();
    let info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        flags: 0,
        nr_modules: u32::try_from(modules.len()).unwrap_or(0),
        modlist_paddr: if modules.is_empty() {
            0
        } else {
            PVH_INFO_START.0 + MODLIST_OFFSET
        },
        cmdline_paddr: CMDLINE_START.0,
        rsdp_paddr: rsdp.0,
        memmap_paddr: PVH_INFO_START.0 + MEMMAP_OFFSET,
        memmap_entries: u32::try_from(memmap.len()).unwrap_or(0),
        reserved: 0,
    };
    (info, memmap, modules)
}

/// Writes the start info, memory map and module list at [`PVH_INFO_START`].
pub fn write(
    mem: &GuestMemoryMmap,
    e820: &[E820Entry],
    initrd: Option<(u64, u64)>,
    rsdp: GuestAddress,
) -> Result<(), BootError> {
    let (info, memmap, modules) = start_info(e820, initrd, rsdp);
    let mut params = BootParams::new(&info, PVH_INFO_START);
    params.set_sections(&memmap, GuestAddress(info.memmap_paddr));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(info.modlist_paddr));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
        .map_err(BootError::Configure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::e820_map;
    use vm_memory::Bytes;

    #[test]
    fn start_info_layout_matches_the_pvh_abi() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let e820 = e820_map(64 << 20);
        write(
            &mem,
            &e820,
            Some((0x3ff_0000, 0x1234)),
            GuestAddress(0xe_0000),
        )
        .unwrap();
        let s = PVH_INFO_START.0;
        let rd32 = |a: u64| -> u32 { mem.read_obj(GuestAddress(a)).unwrap() };
        let rd64 = |a: u64| -> u64 { mem.read_obj(GuestAddress(a)).unwrap() };
        // Field offsets from xen/include/public/arch-x86/hvm/start_info.h.
        assert_eq!(rd32(s), 0x336e_c578);
        assert_eq!(rd32(s + 4), 1);
        assert_eq!(rd32(s + 12), 1);
        let modlist = rd64(s + 16);
        assert_eq!(rd64(s + 24), 0x2_0000);
        assert_eq!(rd64(s + 32), 0xe_0000);
        let memmap = rd64(s + 40);
        assert_eq!(rd32(s + 48), u32::try_from(e820.len()).unwrap());
        for (i, e) in (0u64..).zip(e820.iter()) {
            let a = memmap + 24 * i;
            assert_eq!(
                (rd64(a), rd64(a + 8), rd32(a + 16)),
                (e.addr, e.size, e.kind)
            );
        }
        assert_eq!(
            (rd64(modlist), rd64(modlist + 8), rd64(modlist + 16)),
            (0x3ff_0000, 0x1234, 0)
        );
    }

    #[test]
    fn no_initrd_means_no_modules() {
        let (info, _, modules) = start_info(&e820_map(64 << 20), None, GuestAddress(0));
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
        assert!(modules.is_empty());
    }
}
