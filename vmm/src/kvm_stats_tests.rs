use kvm_ioctls::VcpuExit;

use super::*;

const NAME_SIZE: u32 = 48;

/// A stats file as the kernel lays it out: header, id, descriptors, data.
fn stats_file(name_size: u32, stats: &[(&str, u32, u16, u64)]) -> Vec<u8> {
    let id = b"kvm-1/vcpu-0\0";
    let desc_offset = HEADER_LEN + id.len();
    let stride = 16 + name_size as usize;
    let data_offset = desc_offset + stride * stats.len();
    let mut f = Vec::new();
    for v in [
        0,
        name_size,
        u32::try_from(stats.len()).unwrap(),
        u32::try_from(HEADER_LEN).unwrap(),
        u32::try_from(desc_offset).unwrap(),
        u32::try_from(data_offset).unwrap(),
    ] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(id);
    let mut data = Vec::new();
    for (name, flags, items, value) in stats {
        f.extend_from_slice(&flags.to_le_bytes());
        f.extend_from_slice(&0i16.to_le_bytes());
        f.extend_from_slice(&items.to_le_bytes());
        f.extend_from_slice(&(u32::try_from(data.len()).unwrap()).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        let mut slot = name.as_bytes().to_vec();
        slot.resize(name_size as usize, 0);
        f.extend_from_slice(&slot);
        for i in 0..*items {
            data.extend_from_slice(&(value + u64::from(i)).to_le_bytes());
        }
    }
    f.extend_from_slice(&data);
    f
}

fn sample() -> Vec<u8> {
    stats_file(
        NAME_SIZE,
        &[
            ("exits", KVM_STATS_TYPE_CUMULATIVE, 1, 1234),
            ("halt_poll_ns_hist", 3, 32, 7),
            ("io_exits", KVM_STATS_TYPE_CUMULATIVE, 1, 99),
            ("blocking", KVM_STATS_TYPE_INSTANT, 1, 1),
            ("halt_wait_ns_max", KVM_STATS_TYPE_PEAK, 1, 5),
        ],
    )
}

fn set_u32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn a_well_formed_file() {
    let stats = KvmStats::parse(sample()).unwrap();
    assert_eq!(stats.descriptors().len(), 5);
    assert_eq!(stats.descriptors()[1].kind, StatKind::Histogram);
    assert_eq!(stats.descriptors()[1].items, 32);
    let now = stats.snapshot().unwrap();
    assert_eq!(now.get("exits"), Some(1234));
    assert_eq!(now.get("io_exits"), Some(99));
    assert_eq!(now.get("blocking"), Some(1));
    assert_eq!(now.get("halt_poll_ns_hist"), None);
    assert_eq!(now.get("missing"), None);
    let cumulative: Vec<_> = now.cumulative().collect();
    assert_eq!(cumulative, [("exits", 1234), ("io_exits", 99)]);
}

#[test]
fn truncated_files_are_read_errors() {
    let whole = sample();
    for len in [0, 10, 23, 24, 60, 100, whole.len() - 1] {
        let e = KvmStats::parse(whole[..len].to_vec()).and_then(|s| s.snapshot());
        assert!(
            matches!(e, Err(StatsError::Read { .. })),
            "length {len}: {e:?}"
        );
    }
}

#[test]
fn bad_name_sizes_and_counts() {
    let mut f = sample();
    set_u32(&mut f, 4, 0);
    assert!(matches!(KvmStats::parse(f), Err(StatsError::NameSize(0))));
    let mut f = sample();
    set_u32(&mut f, 4, 100_000);
    assert!(matches!(
        KvmStats::parse(f),
        Err(StatsError::NameSize(100_000))
    ));
    let mut f = sample();
    set_u32(&mut f, 8, u32::MAX);
    assert!(matches!(
        KvmStats::parse(f),
        Err(StatsError::TooManyDescriptors(u32::MAX))
    ));
}

#[test]
fn unterminated_and_non_utf8_names() {
    let long = "x".repeat(NAME_SIZE as usize);
    let f = stats_file(NAME_SIZE, &[("exits", 0, 1, 1), (&long, 0, 1, 2)]);
    assert!(matches!(
        KvmStats::parse(f),
        Err(StatsError::UnterminatedName { index: 1 })
    ));
    let mut f = stats_file(NAME_SIZE, &[("exits", 0, 1, 1)]);
    let name_at = HEADER_LEN + 13 + 16;
    f[name_at] = 0xff;
    assert!(matches!(
        KvmStats::parse(f),
        Err(StatsError::NameNotUtf8 { index: 0 })
    ));
}

#[test]
fn bad_offsets() {
    // Descriptor offset past the end of the file.
    let mut f = sample();
    set_u32(&mut f, 16, u32::MAX);
    assert!(matches!(KvmStats::parse(f), Err(StatsError::Read { .. })));
    // Data offset past the end of the file: the layout parses, reading fails.
    let mut f = sample();
    set_u32(&mut f, 20, u32::MAX - 8);
    let stats = KvmStats::parse(f).unwrap();
    assert!(matches!(stats.snapshot(), Err(StatsError::Read { .. })));
    // A statistic whose data lies far beyond any real data block.
    let mut f = stats_file(NAME_SIZE, &[("exits", 0, 1, 1)]);
    set_u32(&mut f, HEADER_LEN + 13 + 8, u32::MAX);
    assert!(matches!(
        KvmStats::parse(f),
        Err(StatsError::BlockSize { what: "data", .. })
    ));
    // A descriptor block larger than accepted.
    let mut f = sample();
    set_u32(&mut f, 4, MAX_NAME_SIZE);
    set_u32(&mut f, 8, MAX_DESCRIPTORS);
    assert!(matches!(
        KvmStats::parse(f),
        Err(StatsError::BlockSize {
            what: "descriptors",
            ..
        })
    ));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let base = sample();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut f = base.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = usize::try_from(x % f.len() as u64).unwrap();
            f[at] = x.to_le_bytes()[4];
        }
        if let Ok(s) = KvmStats::parse(f) {
            let _ = s.snapshot();
        }
    }
}

/// A real vCPU: real-mode code that writes a port and halts leaves the
/// guest twice for the VMM, which the counters show.
#[test]
fn a_real_vcpu_counts_its_exits() {
    // mov al, 1; out 0x10, al; hlt
    let crate::test_guest::RealModeGuest {
        vm: _vm,
        mem: _mem,
        mut vcpu,
    } = crate::test_guest::real_mode_guest(&[0xb0, 0x01, 0xe6, 0x10, 0xf4]);

    let stats = KvmStats::open(&vcpu).unwrap();
    let names: Vec<_> = stats
        .descriptors()
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    for want in ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits"] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    let before = stats.snapshot().unwrap();
    assert!(matches!(vcpu.run().unwrap(), VcpuExit::IoOut(0x10, [1])));
    assert!(matches!(vcpu.run().unwrap(), VcpuExit::Hlt));
    let after = stats.snapshot().unwrap();
    let grew = |n| after.get(n).unwrap() - before.get(n).unwrap();
    // Hardware KVM counts the port write as an I/O exit; a KVM without
    // hardware virtualization (PVM) emulates the instruction instead.
    assert!(grew("io_exits") + grew("insn_emulation") >= 1);
    assert_eq!(grew("halt_exits"), 1);
    assert!(grew("exits") >= 2);
}
