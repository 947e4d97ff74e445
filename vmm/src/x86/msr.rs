//! Model-specific registers set before entry, as the anchors do: SYSENTER
//! and SYSCALL state cleared, TSC at zero, fast strings on and write-back
//! as the default memory type.

use kvm_bindings::{Msrs, kvm_msr_entry};

/// IA32_SYSENTER_CS.
pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
/// STAR (SYSCALL segments).
pub const MSR_STAR: u32 = 0xc000_0081;
/// LSTAR (64-bit SYSCALL target).
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// CSTAR (compatibility-mode SYSCALL target).
pub const MSR_CSTAR: u32 = 0xc000_0083;
/// SYSCALL flag mask.
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
/// KERNEL_GS_BASE.
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// IA32_TSC.
pub const MSR_IA32_TSC: u32 = 0x10;
/// IA32_MISC_ENABLE.
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
/// IA32_MISC_ENABLE: fast-string operations.
pub const MISC_ENABLE_FAST_STRING: u64 = 0x1;
/// IA32_MTRR_DEF_TYPE.
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// MTRRs enabled (bit 11), default type write-back (6).
pub const MTRR_DEF_TYPE_ENABLED_WB: u64 = (1 << 11) | 6;

/// The (index, value) pairs written to every vCPU.
pub fn boot_msr_values() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_DEF_TYPE_ENABLED_WB),
    ]
}

/// The boot MSRs in the form `KVM_SET_MSRS` takes.
pub fn boot_msrs() -> Result<Msrs, vmm_sys_util::fam::Error> {
    let entries: Vec<kvm_msr_entry> = boot_msr_values()
        .into_iter()
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_msrs_hold_the_expected_values() {
        let msrs = boot_msrs().unwrap();
        let e = msrs.as_slice();
        assert_eq!(e.len(), 11);
        let get = |i| e.iter().find(|m| m.index == i).map(|m| m.data);
        assert_eq!(get(MSR_MTRR_DEF_TYPE), Some(0x806));
        assert_eq!(get(MSR_IA32_MISC_ENABLE), Some(1));
        assert_eq!(get(MSR_IA32_TSC), Some(0));
    }
}
