//! The encoder against byte strings assembled by hand from the ACPI 6.x
//! grammar ("AML Specification": 20.2.2 names, 20.2.3 data objects, 20.2.4
//! package length, 20.2.5 terms; "Resource Data Types": 6.4.2 small and
//! 6.4.3 large descriptors).

use super::*;

fn pkg(content_len: usize) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    pkg_length(content_len, &mut v)?;
    Ok(v)
}

fn data(d: &Data) -> Vec<u8> {
    let mut v = Vec::new();
    d.encode(&mut v).unwrap();
    v
}

fn resource(r: Resource) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    r.encode(&mut v)?;
    Ok(v)
}

#[test]
fn package_length_boundaries() {
    // One byte holds a total (the length byte included) of up to 63.
    assert_eq!(pkg(0).unwrap(), [0x01]);
    assert_eq!(pkg(62).unwrap(), [0x3f]);
    // 63 content bytes: a total of 64 no longer fits one byte, so two
    // bytes and a total of 65 = 0x41: lead 0x40 | 0x1, then 0x41 >> 4.
    assert_eq!(pkg(63).unwrap(), [0x41, 0x04]);
    // Two bytes hold up to 4095 = 0xfff.
    assert_eq!(pkg(4093).unwrap(), [0x4f, 0xff]);
    // 4094 content bytes: 4096 does not fit, three bytes give 4097 = 0x1001.
    assert_eq!(pkg(4094).unwrap(), [0x81, 0x00, 0x01]);
    assert_eq!(pkg(0xf_fffc).unwrap(), [0x8f, 0xff, 0xff]);
    assert_eq!(pkg(0xf_fffd).unwrap(), [0xc1, 0x00, 0x00, 0x01]);
    assert_eq!(pkg(0x0fff_fffb).unwrap(), [0xcf, 0xff, 0xff, 0xff]);
    assert_eq!(pkg(0x0fff_fffc), Err(Error::TooLong(0x0fff_fffc)));
    assert_eq!(pkg(usize::MAX), Err(Error::TooLong(usize::MAX)));
}

#[test]
fn buffers_frame_their_bytes_across_the_one_byte_boundary() {
    // BufferOp PkgLength BufferSize ByteList: size 60 takes 2 bytes, so the
    // content is 62 and the total 63.
    let b = data(&Data::Buffer(vec![0xaa; 60]));
    assert_eq!(b[..4], [0x11, 0x3f, 0x0a, 60]);
    assert_eq!(b.len(), 1 + 1 + 2 + 60);
    let b = data(&Data::Buffer(vec![0xaa; 61]));
    assert_eq!(b[..5], [0x11, 0x41, 0x04, 0x0a, 61]);
    assert_eq!(b.len(), 1 + 2 + 2 + 61);
    assert_eq!(data(&Data::Buffer(vec![])), [0x11, 0x02, 0x00]);
}

#[test]
fn integers_take_the_narrowest_width() {
    let cases: [(u64, &[u8]); 11] = [
        (0, &[0x00]),
        (1, &[0x01]),
        (2, &[0x0a, 0x02]),
        (0xff, &[0x0a, 0xff]),
        (0x100, &[0x0b, 0x00, 0x01]),
        (0xffff, &[0x0b, 0xff, 0xff]),
        (0x1_0000, &[0x0c, 0x00, 0x00, 0x01, 0x00]),
        (0xffff_ffff, &[0x0c, 0xff, 0xff, 0xff, 0xff]),
        (
            0x1_0000_0000,
            &[0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00],
        ),
        (
            0x0102_0304_0506_0708,
            &[0x0e, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
        ),
        (
            u64::MAX,
            &[0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
    ];
    for (v, want) in cases {
        assert_eq!(data(&Data::Integer(v)), want, "{v:#x}");
    }
}

#[test]
fn eisa_ids_compress_as_the_spec_gives() {
    // "PNP": P=16, N=14, P=16 -> 0b0_10000_01110_10000 = 0x41d0, stored
    // big-endian; then the digits 0A 03: bytes 41 d0 0a 03.
    assert_eq!(eisa_id("PNP0A03"), Ok(0x030a_d041));
    assert_eq!(eisa_id("PNP0A08"), Ok(0x080a_d041));
    assert_eq!(eisa_id("PNP0C02"), Ok(0x020c_d041));
    assert_eq!(
        data(&Data::eisa_id("PNP0A03").unwrap()),
        [0x0c, 0x41, 0xd0, 0x0a, 0x03]
    );
    for bad in ["pnp0A03", "PNP0A0", "PNP0A033", "PNP0G03", "P1P0A03", ""] {
        assert_eq!(eisa_id(bad), Err(Error::InvalidEisaId(bad.into())), "{bad}");
    }
}

#[test]
fn name_paths() {
    let enc = |p: &str| NameString::new(p).map(|n| n.as_bytes().to_vec());
    assert_eq!(enc("_HID").unwrap(), b"_HID");
    assert_eq!(enc("PCI").unwrap(), b"PCI_");
    assert_eq!(enc("\\_SB").unwrap(), b"\\_SB_");
    assert_eq!(enc("\\_SB.PCI0").unwrap(), b"\\\x2e_SB_PCI0");
    assert_eq!(enc("\\_SB.PCI0.S08").unwrap(), b"\\\x2f\x03_SB_PCI0S08_");
    assert_eq!(enc("^^FOO").unwrap(), b"^^FOO_");
    assert_eq!(enc("^A.B").unwrap(), b"^\x2eA___B___");
    assert_eq!(enc("\\").unwrap(), b"\\\x00");
    assert_eq!(enc("^").unwrap(), b"^\x00");
    let long: Vec<&str> = vec!["A"; 255];
    let enc255 = enc(&long.join(".")).unwrap();
    assert_eq!(enc255[..2], [0x2f, 0xff]);
    assert_eq!(enc255.len(), 2 + 4 * 255);
    let too_long = vec!["A"; 256].join(".");
    for bad in [
        "",
        "1ABC",
        "ABCDE",
        "pci0",
        "\\_SB.",
        "A..B",
        "A-B",
        "\\^A",
        too_long.as_str(),
    ] {
        assert_eq!(
            NameString::new(bad),
            Err(Error::InvalidName(bad.into())),
            "{bad:?}"
        );
    }
}

#[test]
fn strings() {
    assert_eq!(data(&Data::String("Hi".into())), [0x0d, b'H', b'i', 0x00]);
    assert_eq!(data(&Data::String(String::new())), [0x0d, 0x00]);
    for bad in ["a\0b", "\u{e9}"] {
        let mut v = Vec::new();
        assert_eq!(
            Data::String(bad.into()).encode(&mut v),
            Err(Error::InvalidString(bad.into()))
        );
    }
}

#[test]
fn packages() {
    // PackageOp PkgLength NumElements elements: 1 + 1 + 2 = 4 content bytes.
    let p = Data::Package(vec![Data::Integer(1), Data::Integer(2)]);
    assert_eq!(data(&p), [0x12, 0x05, 0x02, 0x01, 0x0a, 0x02]);
    assert_eq!(data(&Data::Package(vec![])), [0x12, 0x02, 0x00]);
    let nested = Data::Package(vec![Data::Package(vec![Data::Integer(0)])]);
    assert_eq!(data(&nested), [0x12, 0x06, 0x01, 0x12, 0x03, 0x01, 0x00]);
    // Over 255 elements: VarPackageOp with the count as a TermArg; content
    // 3 + 256 = 259, total 261 = 0x105.
    let big = data(&Data::Package(vec![Data::Integer(0); 256]));
    assert_eq!(big[..6], [0x13, 0x45, 0x10, 0x0b, 0x00, 0x01]);
    assert_eq!(big.len(), 3 + 3 + 256);
}

#[test]
fn name_device_and_scope() {
    let t = Term::scope(
        "\\_SB",
        vec![Term::device("PCI0", vec![Term::name("_UID", Data::Integer(0)).unwrap()]).unwrap()],
    )
    .unwrap();
    let mut v = Vec::new();
    t.encode(&mut v).unwrap();
    let mut want = vec![0x10, 0x13, b'\\', b'_', b'S', b'B', b'_'];
    want.extend_from_slice(&[0x5b, 0x82, 0x0b, b'P', b'C', b'I', b'0']);
    want.extend_from_slice(&[0x08, b'_', b'U', b'I', b'D', 0x00]);
    assert_eq!(v, want);
    assert!(matches!(
        Term::name("bad", Data::Integer(0)),
        Err(Error::InvalidName(_))
    ));
}

#[test]
fn small_io_descriptor() {
    let io = Resource::Io {
        min: 0xcf8,
        max: 0xcf8,
        alignment: 1,
        length: 8,
    };
    assert_eq!(
        resource(io).unwrap(),
        [0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]
    );
}

#[test]
fn word_descriptors() {
    let bus = Resource::WordBusNumber {
        usage: Usage::Producer,
        min: 0,
        max: 0,
    };
    // Tag, length 13, type 2 (bus), MinFixed|MaxFixed, no type flags,
    // granularity, min, max, translation, length 1.
    assert_eq!(
        resource(bus).unwrap(),
        [
            0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00
        ]
    );
    let io = Resource::WordIo {
        usage: Usage::Producer,
        min: 0x0d00,
        max: 0xffff,
    };
    // Type 1 (I/O), EntireRange (3), length 0xf300.
    assert_eq!(
        resource(io).unwrap(),
        [
            0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff, 0, 0, 0x00, 0xf3
        ]
    );
    let consumer = Resource::WordIo {
        usage: Usage::Consumer,
        min: 0,
        max: 0xcf7,
    };
    assert_eq!(resource(consumer).unwrap()[4], 0x0d);
    for (min, max) in [(5, 4), (0, 0xffff)] {
        let r = Resource::WordIo {
            usage: Usage::Producer,
            min,
            max,
        };
        assert_eq!(
            resource(r),
            Err(Error::InvalidRange {
                min: min.into(),
                max: max.into()
            })
        );
    }
}

#[test]
fn dword_and_qword_memory_descriptors() {
    let m32 = Resource::DWordMemory {
        usage: Usage::Producer,
        caching: Caching::NonCacheable,
        writable: true,
        min: 0xc000_0000,
        max: 0xdfff_ffff,
    };
    let mut want = vec![0x87, 0x17, 0x00, 0x00, 0x0c, 0x01];
    want.extend_from_slice(&[0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xff, 0xdf]);
    want.extend_from_slice(&[0, 0, 0, 0, 0x00, 0x00, 0x00, 0x20]);
    assert_eq!(resource(m32).unwrap(), want);

    let m64 = Resource::QWordMemory {
        usage: Usage::Producer,
        caching: Caching::Cacheable,
        writable: true,
        min: 0x1_8000_0000,
        max: 0x11_7fff_ffff,
    };
    let mut want = vec![0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x03];
    for v in [0u64, 0x1_8000_0000, 0x11_7fff_ffff, 0, 0x10_0000_0000] {
        want.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(resource(m64).unwrap(), want);

    let prefetch_ro = Resource::QWordMemory {
        usage: Usage::Consumer,
        caching: Caching::Prefetchable,
        writable: false,
        min: 0,
        max: 0,
    };
    assert_eq!(resource(prefetch_ro).unwrap()[4..6], [0x0d, 0x06]);
    let whole = Resource::QWordMemory {
        usage: Usage::Producer,
        caching: Caching::WriteCombining,
        writable: true,
        min: 0,
        max: u64::MAX,
    };
    assert!(matches!(resource(whole), Err(Error::InvalidRange { .. })));
    let whole32 = Resource::DWordMemory {
        usage: Usage::Producer,
        caching: Caching::NonCacheable,
        writable: true,
        min: 0,
        max: u32::MAX,
    };
    assert!(matches!(resource(whole32), Err(Error::InvalidRange { .. })));
}

#[test]
fn memory32_fixed_descriptor() {
    let r = Resource::Memory32Fixed {
        writable: true,
        base: 0xe000_0000,
        length: 0x10_0000,
    };
    assert_eq!(
        resource(r).unwrap(),
        [
            0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x10, 0x00
        ]
    );
}

#[test]
fn resource_templates_end_with_a_balancing_checksum() {
    // End tag 0x79 and the checksum 0x100 - 0x79 = 0x87, in a buffer of 2.
    assert_eq!(
        data(&resource_template(&[]).unwrap()),
        [0x11, 0x05, 0x0a, 0x02, 0x79, 0x87]
    );
    let Data::Buffer(b) = resource_template(&[Resource::Io {
        min: 0xcf8,
        max: 0xcf8,
        alignment: 1,
        length: 8,
    }])
    .unwrap() else {
        panic!("not a buffer");
    };
    assert_eq!(b.len(), 10);
    assert_eq!(b[8], 0x79);
    assert_eq!(b.iter().fold(0u8, |s, x| s.wrapping_add(*x)), 0);
}
