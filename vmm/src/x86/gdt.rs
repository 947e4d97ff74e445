//! Global descriptor table entries and their `kvm_segment` form.
//!
//! The Linux 64-bit boot protocol asks for flat 4 GiB segments at selectors
//! `__BOOT_CS` (0x10) and `__BOOT_DS` (0x18); PVH asks for a flat 32-bit
//! code segment and flat data segments at any selector. Both GDTs here
//! therefore use 0x10 for code, 0x18 for data and 0x20 for the TSS.

use kvm_bindings::kvm_segment;

/// Selector of the code segment.
pub const CODE_SELECTOR: u16 = 0x10;
/// Selector of the data segments.
pub const DATA_SELECTOR: u16 = 0x18;
/// Selector of the task state segment.
pub const TSS_SELECTOR: u16 = 0x20;

/// Access/flags word of a 64-bit code segment: G, L, P, S, type execute/read/accessed.
pub const CODE64_FLAGS: u16 = 0xa09b;
/// Access/flags word of a 32-bit code segment: G, D/B, P, S, type execute/read/accessed.
pub const CODE32_FLAGS: u16 = 0xc09b;
/// Access/flags word of a flat data segment: G, D/B, P, S, type read/write/accessed.
pub const DATA_FLAGS: u16 = 0xc093;
/// Access/flags word of a 32/64-bit busy TSS.
pub const TSS_FLAGS: u16 = 0x808b;

/// Encodes a descriptor from a flags word (bits 0-7 access byte, 12-15
/// the G, D/B, L and AVL nibble), a base and a 20-bit limit.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = u64::from(base);
    let limit = u64::from(limit);
    let flags = u64::from(flags);
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

fn entry_base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn entry_limit(entry: u64) -> u32 {
    let raw = ((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0x0000_0000_0000_ffff);
    // The raw limit is 20 bits wide; with G set it counts 4 KiB pages.
    let raw = u32::try_from(raw).unwrap_or(u32::MAX);
    if entry & (1 << 55) != 0 {
        (raw << 12) | 0xfff
    } else {
        raw
    }
}

fn bit(entry: u64, n: u32) -> u8 {
    u8::from(entry & (1 << n) != 0)
}

/// The `kvm_segment` a descriptor loads into a segment register.
pub fn kvm_segment_from_gdt(entry: u64, table_index: u8) -> kvm_segment {
    kvm_segment {
        base: entry_base(entry),
        limit: entry_limit(entry),
        selector: u16::from(table_index) * 8,
        type_: u8::try_from((entry >> 40) & 0xf).unwrap_or(0),
        present: bit(entry, 47),
        dpl: u8::try_from((entry >> 45) & 0x3).unwrap_or(0),
        db: bit(entry, 54),
        s: bit(entry, 44),
        l: bit(entry, 53),
        g: bit(entry, 55),
        avl: bit(entry, 52),
        padding: 0,
        unusable: u8::from(bit(entry, 47) == 0),
    }
}

/// The boot GDT: null, null, code, data, TSS (selectors 0x10, 0x18, 0x20).
pub fn boot_gdt(long_mode: bool) -> [u64; 5] {
    let code = if long_mode {
        CODE64_FLAGS
    } else {
        CODE32_FLAGS
    };
    [
        0,
        0,
        gdt_entry(code, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0xfffff),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_64bit_code_descriptor_matches_the_manual() {
        // Intel SDM vol. 3 3.4.5: base 0, limit 0xfffff, G=1 L=1 P=1 S=1 type 0xb.
        assert_eq!(gdt_entry(CODE64_FLAGS, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(CODE32_FLAGS, 0, 0xfffff), 0x00cf_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA_FLAGS, 0, 0xfffff), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn segment_fields_round_trip() {
        let e = gdt_entry(0xa09b, 0x1234_5678, 0xabcde);
        let s = kvm_segment_from_gdt(e, 2);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0xabcd_efff);
        assert_eq!(s.selector, 0x10);
        assert_eq!(
            (s.type_, s.present, s.dpl, s.s, s.l, s.db, s.g),
            (0xb, 1, 0, 1, 1, 0, 1)
        );
        assert_eq!(s.unusable, 0);
        let null = kvm_segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn boot_gdt_uses_linux_boot_selectors() {
        let gdt = boot_gdt(true);
        let cs = kvm_segment_from_gdt(gdt[usize::from(CODE_SELECTOR / 8)], 2);
        assert_eq!(cs.l, 1);
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = kvm_segment_from_gdt(gdt[usize::from(DATA_SELECTOR / 8)], 3);
        assert_eq!((ds.type_, ds.db, ds.limit), (3, 1, 0xffff_ffff));
        let cs32 = kvm_segment_from_gdt(boot_gdt(false)[2], 2);
        assert_eq!((cs32.l, cs32.db), (0, 1));
    }
}
