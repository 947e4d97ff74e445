//! The DSDT read back with the test-only AML walker, checked against the
//! MP table's wiring and the PCI constants, and disassembled by iasl.

use std::collections::BTreeMap;

use super::*;
use crate::devices::virtio_pci::disks::intx_routes;
use crate::tables::aml_walk::{self, Data, Desc, Node};
use crate::tables::{acpi, mptable};

const MEMORY: u64 = 5 << 30;

fn names(nodes: &[Node]) -> BTreeMap<String, Data> {
    nodes
        .iter()
        .filter_map(|n| match n {
            Node::Name(name, v) => Some((name.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// The PCI0 and MBRD devices of the DSDT built for `disks` disks.
fn devices(intx: &[PciIrq]) -> (Vec<Node>, Vec<Node>) {
    let body = definition_block(&PciHost::new(intx, MEMORY)).unwrap();
    let nodes = aml_walk::parse(&body).unwrap();
    let [Node::Scope(scope, children)] = nodes.as_slice() else {
        panic!("one scope expected: {nodes:?}");
    };
    assert_eq!(scope, "\\_SB_");
    let mut pci0 = None;
    let mut mbrd = None;
    for c in children {
        match c {
            Node::Device(n, terms) if n == "PCI0" => pci0 = Some(terms.clone()),
            Node::Device(n, terms) if n == "MBRD" => mbrd = Some(terms.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    (pci0.unwrap(), mbrd.unwrap())
}

fn resources(v: &Data) -> Vec<Desc> {
    let Data::Buffer(b) = v else {
        panic!("_CRS is not a buffer: {v:?}");
    };
    aml_walk::parse_resources(b).unwrap()
}

/// Slot -> IOAPIC pin of the PCI interrupt assignments in the MP table.
fn mptable_wiring(intx: &[PciIrq]) -> BTreeMap<u64, u64> {
    let t = mptable::build_with_pci(vm_memory::GuestAddress(0xf_0000), 1, intx);
    let ct = &t[16..];
    let count = usize::from(u16::from_le_bytes([ct[34], ct[35]]));
    let mut off = 44;
    let mut wiring = BTreeMap::new();
    for _ in 0..count {
        match ct[off] {
            0 => off += 20,
            3 => {
                // Source bus 1 is the PCI bus; its IRQ is slot << 2 | pin.
                if ct[off + 4] == 1 {
                    assert_eq!(ct[off + 5] & 3, 0, "mp table lists INTA# only");
                    wiring.insert(u64::from(ct[off + 5] >> 2), u64::from(ct[off + 7]));
                }
                off += 8;
            }
            _ => off += 8,
        }
    }
    wiring
}

#[test]
fn pci0_identity() {
    let (pci0, _) = devices(&intx_routes(1));
    let n = names(&pci0);
    assert_eq!(n["_HID"], Data::Integer(0x080a_d041), "PNP0A08");
    assert_eq!(n["_CID"], Data::Integer(0x030a_d041), "PNP0A03");
    for zero in ["_SEG", "_BBN", "_UID"] {
        assert_eq!(n[zero], Data::Integer(0), "{zero}");
    }
    assert!(
        !n.contains_key("_ADR"),
        "a device has _HID or _ADR, not both"
    );
    assert_eq!(n.len(), 7);
}

#[test]
fn pci0_crs_windows() {
    let (pci0, _) = devices(&[]);
    let crs = resources(&names(&pci0)["_CRS"]);
    let high = pci::high_window(MEMORY);
    assert_eq!(high, 6 << 30, "first GiB boundary above the RAM at 4 GiB");
    // Producer windows: general flags MinFixed | MaxFixed (0x0c).
    let window = |width, kind, specific, min: u64, max: u64| Desc::Address {
        width,
        kind,
        general: 0x0c,
        specific,
        fields: [0, min, max, 0, max - min + 1],
    };
    assert_eq!(
        crs,
        [
            window(2, 2, 0, 0, 0),
            Desc::Io(true, 0xcf8, 0xcf8, 1, 8),
            window(2, 1, 3, 0, 0xcf7),
            window(2, 1, 3, 0xd00, 0xffff),
            window(4, 0, 1, pci::MMIO32_BASE, pci::MMIO32_END - 1),
            window(8, 0, 3, high, high + pci::MMIO64_SIZE - 1),
        ]
    );
    // The windows stay clear of the ECAM window, the IOAPIC/LAPIC pages
    // and RAM.
    const { assert!(pci::MMIO32_END <= pci::ECAM_BASE) };
    assert!(
        high >= crate::layout::MMIO_HOLE_END + (MEMORY - crate::layout::low_memory_end(MEMORY))
    );
}

#[test]
fn prt_matches_the_mp_table() {
    for disks in [0, 1, 3, 4, 5, 31, 40] {
        let intx = intx_routes(disks);
        let (pci0, _) = devices(&intx);
        let Data::Package(entries) = &names(&pci0)["_PRT"] else {
            panic!("_PRT is not a package");
        };
        let slots = disks.min(31);
        assert_eq!(entries.len(), slots * 4, "{disks} disks");
        let wiring = mptable_wiring(&intx);
        assert_eq!(wiring.len(), slots);
        for (i, e) in entries.iter().enumerate() {
            let Data::Package(fields) = e else {
                panic!("entry {i} is not a package");
            };
            let [
                Data::Integer(addr),
                Data::Integer(pin),
                Data::Integer(source),
                Data::Integer(gsi),
            ] = fields.as_slice()
            else {
                panic!("entry {i}: {fields:?}");
            };
            let slot = addr >> 16;
            assert_eq!(slot, (i / 4 + 1) as u64, "slots 1.. in order");
            assert_eq!(addr & 0xffff, 0xffff, "any function");
            assert_eq!(*pin, (i % 4) as u64);
            assert_eq!(*source, 0, "gsi, not a link device");
            assert_eq!(Some(gsi), wiring.get(&slot), "slot {slot} pin {pin}");
        }
    }
}

#[test]
fn motherboard_reserves_the_ecam_window() {
    let (_, mbrd) = devices(&[]);
    let n = names(&mbrd);
    assert_eq!(n["_HID"], Data::Integer(0x020c_d041), "PNP0C02");
    assert_eq!(n["_UID"], Data::Integer(0));
    let base = u32::try_from(pci::ECAM_BASE).unwrap();
    let size = u32::try_from(pci::ECAM_SIZE).unwrap();
    assert_eq!(
        resources(&n["_CRS"]),
        [Desc::Memory32Fixed(true, base, size)]
    );
}

#[test]
fn table_checksum_and_length() {
    let intx = intx_routes(4);
    let t = acpi::dsdt(&PciHost::new(&intx, MEMORY)).unwrap();
    assert_eq!(&t[..4], b"DSDT");
    assert_eq!(
        u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
        t.len()
    );
    assert_eq!(t.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
}

#[test]
fn bad_wiring_and_windows_are_typed_errors() {
    let irq = |slot| PciIrq {
        slot,
        ioapic_pin: 5,
    };
    fn host(intx: &[PciIrq]) -> PciHost<'_> {
        PciHost {
            intx,
            mmio64: 1 << 36..1 << 37,
        }
    }
    assert_eq!(
        definition_block(&host(&[irq(32)])),
        Err(Error::InvalidSlot(32))
    );
    assert_eq!(
        definition_block(&host(&[irq(2), irq(3), irq(2)])),
        Err(Error::DuplicateSlot(2))
    );
    let empty = PciHost {
        intx: &[],
        mmio64: 1 << 36..1 << 36,
    };
    assert!(matches!(
        definition_block(&empty),
        Err(Error::Aml(aml::Error::InvalidRange { .. }))
    ));
    assert!(definition_block(&host(&[irq(0), irq(31)])).is_ok());
}

/// Disassembles the DSDT with iasl (Debian package acpica-tools), then
/// compiles the disassembly again: both must succeed without errors.
#[test]
fn iasl_disassembles_and_recompiles_the_dsdt() {
    let intx = intx_routes(2);
    let table = acpi::dsdt(&PciHost::new(&intx, MEMORY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dat = dir.path().join("dsdt.dat");
    std::fs::write(&dat, &table).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("iasl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run iasl ({e}): install it with `apt-get install acpica-tools` (scripts/setup.sh does)")
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "iasl {args:?} failed:\n{text}");
        text
    };
    let log = run(&["-d", "dsdt.dat"]);
    assert!(!log.contains("Error"), "iasl -d reported errors:\n{log}");
    let dsl = std::fs::read_to_string(dir.path().join("dsdt.dsl")).unwrap();
    for want in [
        "Device (PCI0)",
        "EisaId (\"PNP0A08\")",
        "EisaId (\"PNP0A03\")",
        "Name (_PRT, Package (0x08)",
        "0x0001FFFF",
        "0x0002FFFF",
        "WordBusNumber (ResourceProducer",
        "WordIO (ResourceProducer",
        "DWordMemory (ResourceProducer",
        "QWordMemory (ResourceProducer",
        "IO (Decode16,",
        "Device (MBRD)",
        "EisaId (\"PNP0C02\")",
        "Memory32Fixed (ReadWrite,",
    ] {
        assert!(dsl.contains(want), "no {want:?} in the disassembly:\n{dsl}");
    }
    // -on: keep name paths as written (iasl would drop the root prefix
    // of \_SB at the root scope, a shorter equivalent).
    let log = run(&["-on", "-p", "recompiled", "dsdt.dsl"]);
    assert!(
        log.contains("0 Errors, 0 Warnings"),
        "recompiling the disassembly reported errors or warnings:\n{log}"
    );
    // iasl's own encoding of the same ASL is byte for byte ours, but for
    // the end tags' checksums, which iasl leaves 0 ("treated as valid").
    let theirs = std::fs::read(dir.path().join("recompiled.aml")).unwrap();
    assert_eq!(theirs.len(), table.len());
    let mut end_tags = 0;
    for (i, (a, b)) in table.iter().zip(&theirs).enumerate().skip(36) {
        if a != b {
            assert_eq!((table[i - 1], *b), (0x79, 0), "byte {i} differs");
            end_tags += 1;
        }
    }
    assert!(end_tags <= 2, "only the two end tags' checksums may differ");
}
