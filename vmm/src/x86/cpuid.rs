//! CPUID for each vCPU: KVM's supported set, filtered so that the guest
//! sees its own APIC ID, a topology of `cpus` single-thread cores in one
//! package, the hypervisor bit and the KVM signature leaf.

use kvm_bindings::{KVM_CPUID_FLAG_SIGNIFCANT_INDEX, kvm_cpuid_entry2};

/// Leaf 1 ECX: running under a hypervisor.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: more than one logical processor per package.
pub const LEAF1_EDX_HTT: u32 = 1 << 28;
/// First hypervisor leaf.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
pub const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

/// Extended topology level type: SMT.
const LEVEL_SMT: u32 = 1;
/// Extended topology level type: core.
const LEVEL_CORE: u32 = 2;

/// Bits needed to number `n` items (ceil(log2 n)).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn topology_entry(function: u32, index: u32, cpus: u32, apic_id: u32) -> kvm_cpuid_entry2 {
    let (eax, ebx, ecx) = match index {
        0 => (0, 1, LEVEL_SMT << 8),
        1 => (bits_for(cpus), cpus, (LEVEL_CORE << 8) | 1),
        _ => (0, 0, index),
    };
    kvm_cpuid_entry2 {
        function,
        index,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax,
        ebx,
        ecx,
        edx: apic_id,
        ..Default::default()
    }
}

/// Filters `supported` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `apic_id`
/// of `cpus`.
pub fn filter(supported: &[kvm_cpuid_entry2], apic_id: u8, cpus: u8) -> Vec<kvm_cpuid_entry2> {
    let cpus = u32::from(cpus);
    let id = u32::from(apic_id);
    let max_basic = supported
        .iter()
        .find(|e| e.function == 0)
        .map_or(0, |e| e.eax);
    let mut out: Vec<kvm_cpuid_entry2> = Vec::with_capacity(supported.len() + 3);
    for entry in supported {
        let mut e = *entry;
        match e.function {
            0x1 => {
                // EBX: APIC ID [31:24], logical processors [23:16], CLFLUSH size 8 x 8 bytes.
                e.ebx = (id << 24) | ((cpus & 0xff) << 16) | (8 << 8);
                e.ecx |= LEAF1_ECX_HYPERVISOR;
                if cpus > 1 {
                    e.edx |= LEAF1_EDX_HTT;
                } else {
                    e.edx &= !LEAF1_EDX_HTT;
                }
            }
            0x4 => {
                // Cores per package - 1 in [31:26]; threads sharing the cache - 1 in
                // [25:14]: one per core for L1/L2, all of them for L3.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { cpus - 1 } else { 0 };
                e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((cpus - 1) & 0x3f) << 26);
            }
            0xb | 0x1f => continue,
            HYPERVISOR_LEAF => {
                e.eax = e.eax.max(HYPERVISOR_LEAF + 1);
                [e.ebx, e.ecx, e.edx] = KVM_SIGNATURE;
            }
            _ => {}
        }
        out.push(e);
    }
    if max_basic >= 0xb {
        for index in 0..3 {
            out.push(topology_entry(0xb, index, cpus, id));
        }
    }
    if !out.iter().any(|e| e.function == HYPERVISOR_LEAF) {
        let [ebx, ecx, edx] = KVM_SIGNATURE;
        out.push(kvm_cpuid_entry2 {
            function: HYPERVISOR_LEAF,
            eax: HYPERVISOR_LEAF + 1,
            ebx,
            ecx,
            edx,
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32, eax: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ..Default::default()
        }
    }

    fn find(v: &[kvm_cpuid_entry2], f: u32, i: u32) -> kvm_cpuid_entry2 {
        *v.iter().find(|e| e.function == f && e.index == i).unwrap()
    }

    fn supported() -> Vec<kvm_cpuid_entry2> {
        vec![
            leaf(0, 0, 0xd),
            leaf(1, 0, 0x000a_0655),
            leaf(4, 0, 0x121),    // L1d
            leaf(4, 3, 0x163),    // L3
            leaf(0xb, 0, 0x1234), // replaced
            leaf(0x4000_0000, 0, 0x4000_0001),
        ]
    }

    #[test]
    fn leaf1_carries_apic_id_and_hypervisor_bit() {
        let v = filter(&supported(), 3, 4);
        let l1 = find(&v, 1, 0);
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!((l1.ebx >> 8) & 0xff, 8);
        assert_ne!(l1.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & LEAF1_EDX_HTT, 0);
        assert_eq!(
            filter(&supported(), 0, 1)
                .iter()
                .find(|e| e.function == 1)
                .unwrap()
                .edx
                & LEAF1_EDX_HTT,
            0
        );
    }

    #[test]
    fn topology_leaves() {
        let v = filter(&supported(), 2, 3);
        let smt = find(&v, 0xb, 0);
        assert_eq!(
            (smt.eax, smt.ebx, smt.ecx >> 8, smt.edx),
            (0, 1, LEVEL_SMT, 2)
        );
        let core = find(&v, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 3, 0x201, 2));
        let end = find(&v, 0xb, 2);
        assert_eq!((end.ebx, end.ecx >> 8), (0, 0));
        assert_eq!(v.iter().filter(|e| e.function == 0xb).count(), 3);
        let l1d = find(&v, 4, 0);
        assert_eq!(
            (l1d.eax >> 26, (l1d.eax >> 14) & 0xfff, l1d.eax & 0x3fff),
            (2, 0, 0x121)
        );
        let l3 = find(&v, 4, 3);
        assert_eq!(((l3.eax >> 14) & 0xfff), 2);
    }

    #[test]
    fn hypervisor_signature() {
        let v = filter(&supported(), 0, 1);
        let h = find(&v, HYPERVISOR_LEAF, 0);
        let mut sig = Vec::new();
        for r in [h.ebx, h.ecx, h.edx] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"KVMKVMKVM\0\0\0");
        // Added when KVM did not list it.
        let v = filter(&[leaf(0, 0, 1)], 0, 1);
        assert_eq!(find(&v, HYPERVISOR_LEAF, 0).eax, HYPERVISOR_LEAF + 1);
    }

    #[test]
    fn bit_widths() {
        assert_eq!(
            (
                bits_for(1),
                bits_for(2),
                bits_for(3),
                bits_for(4),
                bits_for(5)
            ),
            (0, 1, 2, 2, 3)
        );
        assert_eq!(bits_for(254), 8);
    }
}
