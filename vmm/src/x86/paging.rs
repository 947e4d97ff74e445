//! Identity page tables for the 64-bit Linux entry: the first 1 GiB mapped
//! with 2 MiB pages (PML4 -> one PDPT -> one PD), as the anchors do.

use vm_memory::{Bytes, GuestMemory, GuestMemoryError};

use crate::layout::{PDE_START, PDPTE_START, PML4_START};

/// Present | writable.
const PRESENT_RW: u64 = 0x3;
/// Page size bit in a PD entry: the entry maps a 2 MiB page.
const PAGE_SIZE_2M: u64 = 0x80;

/// The three tables, as 4 KiB pages of entries.
pub fn identity_tables() -> [[u64; 512]; 3] {
    let mut pml4 = [0u64; 512];
    let mut pdpt = [0u64; 512];
    let mut pd = [0u64; 512];
    pml4[0] = PDPTE_START.0 | PRESENT_RW;
    pdpt[0] = PDE_START.0 | PRESENT_RW;
    for (i, entry) in (0u64..).zip(pd.iter_mut()) {
        *entry = (i << 21) | PAGE_SIZE_2M | PRESENT_RW;
    }
    [pml4, pdpt, pd]
}

/// Writes the tables to guest memory; returns the value for CR3.
pub fn write_identity_tables<M: GuestMemory>(mem: &M) -> Result<u64, GuestMemoryError> {
    let [pml4, pdpt, pd] = identity_tables();
    for (table, addr) in [(pml4, PML4_START), (pdpt, PDPTE_START), (pd, PDE_START)] {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_slice(&bytes, addr)?;
    }
    Ok(PML4_START.0)
}

/// Walks the tables the way the MMU does and returns the physical address
/// `virt` maps to, if any (used to check the tables).
pub fn translate(tables: &[[u64; 512]; 3], virt: u64) -> Option<u64> {
    let [pml4, pdpt, pd] = tables;
    let idx = |shift: u32| usize::try_from((virt >> shift) & 0x1ff).unwrap_or(0);
    let e4 = pml4[idx(39)];
    if e4 & 1 == 0 || e4 & !0xfff != PDPTE_START.0 {
        return None;
    }
    let e3 = pdpt[idx(30)];
    if e3 & 1 == 0 || e3 & !0xfff != PDE_START.0 {
        return None;
    }
    let e2 = pd[idx(21)];
    if e2 & 1 == 0 || e2 & PAGE_SIZE_2M == 0 {
        return None;
    }
    Some((e2 & !0x1f_ffff & 0x000f_ffff_ffff_ffff) | (virt & 0x1f_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    #[test]
    fn first_gib_is_identity_mapped() {
        let t = identity_tables();
        for virt in [0u64, 0x1000, 0x10_0000, 0x20_0123, 0x3fff_ffff] {
            assert_eq!(translate(&t, virt), Some(virt));
        }
        assert_eq!(translate(&t, 0x4000_0000), None);
        assert_eq!(translate(&t, 1 << 39), None);
    }

    #[test]
    fn tables_land_in_guest_memory() {
        let mem: GuestMemoryMmap<()> =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        assert_eq!(write_identity_tables(&mem).unwrap(), 0x9000);
        let pml4: u64 = mem.read_obj(PML4_START).unwrap();
        assert_eq!(pml4, 0xa003);
        let pdpt: u64 = mem.read_obj(PDPTE_START).unwrap();
        assert_eq!(pdpt, 0xb003);
        let last: u64 = mem.read_obj(GuestAddress(PDE_START.0 + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
    }
}
