//! VM exits of one run, summed over the vCPUs: what the VMM itself saw
//! (returns from `KVM_RUN`) and KVM's own counters (binary stats), which
//! also count the exits KVM handled in the kernel.

use std::collections::BTreeMap;

use crate::kvm_stats::{Snapshot, StatsError};

/// Exits one vCPU returned to the VMM, counted by its run loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserspaceExits {
    /// Every return from `KVM_RUN` (including signals that kicked the
    /// vCPU out).
    pub total: u64,
    /// Port I/O the VMM emulated.
    pub pio: u64,
    /// MMIO the VMM emulated.
    pub mmio: u64,
}

impl UserspaceExits {
    fn add(&mut self, other: UserspaceExits) {
        self.total = self.total.saturating_add(other.total);
        self.pio = self.pio.saturating_add(other.pio);
        self.mmio = self.mmio.saturating_add(other.mmio);
    }
}

/// Exit counts of a run, summed over its vCPUs.
#[derive(Debug, Default)]
pub struct ExitStats {
    /// vCPUs counted.
    pub vcpus: u32,
    /// Exits the VMM handled.
    pub userspace: UserspaceExits,
    /// KVM's cumulative per-vCPU counters (`exits`, `io_exits`,
    /// `mmio_exits`, `halt_exits`, `irq_exits`, ...) by name; empty when
    /// the kernel has no binary stats.
    pub kvm: BTreeMap<String, u64>,
    /// Why KVM's counters are missing or partial (the first vCPU whose
    /// stats could not be read).
    pub kvm_unavailable: Option<StatsError>,
}

impl ExitStats {
    /// The KVM counters a summary shows first.
    pub const MAIN_KVM_COUNTERS: [&'static str; 5] =
        ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits"];

    /// KVM's counter `name` summed over the vCPUs, if the kernel has it.
    pub fn kvm(&self, name: &str) -> Option<u64> {
        self.kvm.get(name).copied()
    }

    /// Adds one vCPU's counts.
    pub fn add_vcpu(&mut self, userspace: UserspaceExits, kvm: Result<Snapshot, StatsError>) {
        self.vcpus = self.vcpus.saturating_add(1);
        self.userspace.add(userspace);
        match kvm {
            Ok(snapshot) => {
                for (name, value) in snapshot.cumulative() {
                    let sum = self.kvm.entry(name.to_string()).or_default();
                    *sum = sum.saturating_add(value);
                }
            }
            Err(e) => {
                if self.kvm_unavailable.is_none() {
                    self.kvm_unavailable = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvm_stats::KvmStats;

    fn snapshot(exits: u64, io: u64) -> Snapshot {
        // Header, no id, two descriptors with 16-byte name slots, then
        // the two values.
        let mut f = Vec::new();
        for v in [0u32, 16, 2, 24, 24, 88] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        for (i, name) in (0u32..).zip(["exits", "io_exits"]) {
            f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]);
            f.extend_from_slice(&(8 * i).to_le_bytes());
            f.extend_from_slice(&[0; 4]);
            let mut slot = name.as_bytes().to_vec();
            slot.resize(16, 0);
            f.extend_from_slice(&slot);
        }
        f.extend_from_slice(&exits.to_le_bytes());
        f.extend_from_slice(&io.to_le_bytes());
        KvmStats::parse(f).unwrap().snapshot().unwrap()
    }

    #[test]
    fn sums_over_vcpus() {
        let mut s = ExitStats::default();
        let u = UserspaceExits {
            total: 5,
            pio: 2,
            mmio: 1,
        };
        s.add_vcpu(u, Ok(snapshot(10, 3)));
        s.add_vcpu(u, Ok(snapshot(7, 0)));
        assert_eq!(s.vcpus, 2);
        assert_eq!(s.userspace.total, 10);
        assert_eq!(s.userspace.pio, 4);
        assert_eq!(s.kvm("exits"), Some(17));
        assert_eq!(s.kvm("io_exits"), Some(3));
        assert_eq!(s.kvm("irq_exits"), None);
        assert!(s.kvm_unavailable.is_none());
    }

    #[test]
    fn a_vcpu_without_stats_is_reported() {
        let mut s = ExitStats::default();
        let e = KvmStats::parse(Vec::new()).unwrap_err();
        s.add_vcpu(UserspaceExits::default(), Err(e));
        s.add_vcpu(UserspaceExits::default(), Ok(snapshot(1, 1)));
        assert!(matches!(s.kvm_unavailable, Some(StatsError::Read { .. })));
        assert_eq!(s.kvm("exits"), Some(1));
    }
}
