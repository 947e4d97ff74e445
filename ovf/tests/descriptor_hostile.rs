//! Hostile descriptors: each fails with a typed error, early in the input.
//!
//! "Early" is checked through the byte position the error reports, which
//! shows the reader stopped at the offending construct rather than after
//! processing the whole document; the elapsed time is printed for reference
//! (run with `--nocapture`), never asserted.

use std::time::Instant;

use ovf::descriptor::{
    DescriptorError, DescriptorErrorKind, Limits, MapError, MapErrorKind, MapOptions, describe,
    parse, parse_with_limits,
};

const HEAD: &str = r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">"#;

fn timed(name: &str, bytes: &[u8]) -> DescriptorError {
    let start = Instant::now();
    let result = parse(bytes);
    eprintln!(
        "{name}: {} bytes refused in {:?}",
        bytes.len(),
        start.elapsed()
    );
    match result {
        Ok(_) => panic!("{name}: hostile descriptor was accepted"),
        Err(e) => {
            // Every error renders to a message.
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

#[test]
fn billion_laughs_is_refused_at_the_doctype() {
    let mut doc =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    doc.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n");
    for i in 2..=9 {
        let p = i - 1;
        doc.push_str(&format!(
            "<!ENTITY lol{i} \"&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};&lol{p};\">\n"
        ));
    }
    doc.push_str("]>\n");
    doc.push_str(HEAD);
    doc.push_str(
        "<References/><VirtualSystem ovf:id=\"x\"><Info>&lol9;</Info></VirtualSystem></Envelope>",
    );
    match timed("billion laughs", doc.as_bytes()) {
        e @ DescriptorError::Doctype { position } => {
            assert!(position < 40, "{position}");
            assert_eq!(e.kind(), DescriptorErrorKind::Unsupported);
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn external_entities_are_never_fetched() {
    for doc in [
        format!(
            "<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{HEAD}<References/><VirtualSystem ovf:id=\"&xxe;\"/></Envelope>"
        ),
        format!(
            "<!DOCTYPE Envelope SYSTEM \"http://127.0.0.1:1/evil.dtd\">{HEAD}<References/><VirtualSystem ovf:id=\"x\"/></Envelope>"
        ),
        format!(
            "<!DOCTYPE Envelope [<!ENTITY % p SYSTEM \"http://127.0.0.1:1/p\"> %p;]>{HEAD}</Envelope>"
        ),
    ] {
        assert!(matches!(
            timed("external entity", doc.as_bytes()),
            DescriptorError::Doctype { .. }
        ));
    }
}

#[test]
fn undeclared_entities_are_errors_not_expanded() {
    let in_text = format!(
        "{HEAD}<References/><VirtualSystem ovf:id=\"x\"><Info>&xxe;</Info></VirtualSystem></Envelope>"
    );
    let in_attr = format!("{HEAD}<References/><VirtualSystem ovf:id=\"&xxe;\"/></Envelope>");
    for doc in [in_text, in_attr] {
        assert!(matches!(
            timed("undeclared entity", doc.as_bytes()),
            DescriptorError::Xml { .. }
        ));
    }
    // The predefined entities and character references are fine.
    let ok = format!(
        "{HEAD}<References/><VirtualSystem ovf:id=\"a&amp;b&#x41;\"><Name>&lt;x&gt; &quot;&apos;</Name></VirtualSystem></Envelope>"
    );
    let env = parse(ok.as_bytes()).unwrap();
    assert_eq!(env.content.id(), "a&bA");
}

#[test]
fn deep_nesting_stops_at_the_depth_limit() {
    let depth = 100_000;
    let mut doc = String::with_capacity(depth * 7 + 200);
    doc.push_str(HEAD);
    for _ in 0..depth {
        doc.push_str("<a>");
    }
    for _ in 0..depth {
        doc.push_str("</a>");
    }
    doc.push_str("</Envelope>");
    match timed("100,000-deep nesting", doc.as_bytes()) {
        e @ DescriptorError::TooDeep { limit, position } => {
            assert_eq!(e.kind(), DescriptorErrorKind::Limit);
            assert_eq!(limit, 64);
            assert!(position < HEAD.len() as u64 + 64 * 3, "{position}");
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn huge_attribute_counts_stop_at_the_attribute_limit() {
    let mut doc = String::from(HEAD);
    doc.push_str("<References/><VirtualSystem ovf:id=\"x\"><Info");
    for i in 0..1_000_000 {
        doc.push_str(&format!(" a{i}=\"\""));
    }
    doc.push_str("/></VirtualSystem></Envelope>");
    assert!(doc.len() < 16 << 20);
    assert!(matches!(
        timed("1,000,000 attributes", doc.as_bytes()),
        DescriptorError::TooManyAttributes { limit: 256, .. }
    ));
    // Namespace declarations count too.
    let mut doc = String::from(HEAD);
    doc.push_str("<References");
    for i in 0..100_000 {
        doc.push_str(&format!(" xmlns:p{i}=\"urn:x{i}\""));
    }
    doc.push_str("/></Envelope>");
    assert!(matches!(
        timed("100,000 namespace declarations", doc.as_bytes()),
        DescriptorError::TooManyAttributes { .. }
    ));
}

#[test]
fn element_count_is_bounded() {
    let mut doc = String::from(HEAD);
    doc.push_str("<References>");
    for _ in 0..200_000 {
        doc.push_str("<x/>");
    }
    doc.push_str("</References></Envelope>");
    match timed("200,000 elements", doc.as_bytes()) {
        DescriptorError::TooManyElements { limit, .. } => assert_eq!(limit, 100_000),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn size_is_bounded_before_reading() {
    let doc = vec![b' '; (16 << 20) + 1];
    assert!(matches!(
        timed("16 MiB + 1", &doc),
        DescriptorError::TooLarge { .. }
    ));
    let limits = Limits {
        max_size: 100,
        ..Limits::default()
    };
    let doc = format!("{HEAD}</Envelope>");
    assert!(matches!(
        parse_with_limits(doc.as_bytes(), &limits),
        Err(DescriptorError::TooLarge { size, limit: 100 }) if size == doc.len()
    ));
}

#[test]
fn bad_utf8_and_other_encodings() {
    let mut doc = HEAD.as_bytes().to_vec();
    let at = doc.len();
    doc.extend_from_slice(b"<References/><VirtualSystem ovf:id=\"\xff\xfe\"/></Envelope>");
    match timed("bad UTF-8", &doc) {
        DescriptorError::InvalidUtf8 { offset, .. } => assert_eq!(offset, at + 36),
        e => panic!("unexpected {e:?}"),
    }
    // Overlong encoding of '<'.
    assert!(matches!(
        timed("overlong UTF-8", b"\xc0\xbcEnvelope/>"),
        DescriptorError::InvalidUtf8 { offset: 0, .. }
    ));
    assert!(matches!(
        timed("UTF-16", b"\xff\xfe<\0E\0"),
        DescriptorError::UnsupportedEncoding { .. }
    ));
    let latin1 = format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{HEAD}</Envelope>");
    assert!(matches!(
        timed("ISO-8859-1", latin1.as_bytes()),
        DescriptorError::UnsupportedEncoding { .. }
    ));
    // A UTF-8 byte-order mark is accepted.
    let bom = format!("\u{feff}{HEAD}<References/><VirtualSystem ovf:id=\"x\"/></Envelope>");
    assert!(parse(bom.as_bytes()).is_ok());
}

#[test]
fn malformed_documents() {
    type Check = fn(&DescriptorError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        (String::new(), |e| matches!(e, DescriptorError::Empty)),
        (format!("{HEAD}<References>"), |e| {
            matches!(e, DescriptorError::Xml { .. } | DescriptorError::Truncated)
        }),
        (format!("{HEAD}</References></Envelope>"), |e| {
            matches!(e, DescriptorError::Xml { .. })
        }),
        ("<q:Envelope/>".into(), |e| {
            matches!(e, DescriptorError::UnboundPrefix { .. })
        }),
        ("<Envelope xmlns=\"urn:not-ovf\"/>".into(), |e| {
            matches!(e, DescriptorError::NotAnEnvelope { .. })
        }),
        (format!("{HEAD}<References/></Envelope>"), |e| {
            matches!(e, DescriptorError::NoContent)
        }),
        (
            format!("{HEAD}<VirtualSystem ovf:id=\"a\"/><VirtualSystem ovf:id=\"b\"/></Envelope>"),
            |e| matches!(e, DescriptorError::SeveralContents),
        ),
        (format!("{HEAD}<VirtualSystem/></Envelope>"), |e| {
            matches!(
                e,
                DescriptorError::MissingAttribute {
                    attribute: "id",
                    ..
                }
            )
        }),
        (
            format!(
                "{HEAD}<References><File ovf:id=\"f\" ovf:href=\"a\"/><File ovf:id=\"f\" ovf:href=\"b\"/></References><VirtualSystem ovf:id=\"x\"/></Envelope>"
            ),
            |e| matches!(e, DescriptorError::DuplicateId { kind: "file", .. }),
        ),
        (
            format!(
                "{HEAD}<DiskSection><Disk ovf:diskId=\"d\" ovf:capacity=\"99999999999999999999999\"/></DiskSection><VirtualSystem ovf:id=\"x\"/></Envelope>"
            ),
            |e| {
                matches!(
                    e,
                    DescriptorError::InvalidValue {
                        field: "capacity",
                        ..
                    }
                )
            },
        ),
        (
            format!(
                "{HEAD}<DiskSection><Disk ovf:diskId=\"d\" ovf:capacity=\"-1\"/></DiskSection><VirtualSystem ovf:id=\"x\"/></Envelope>"
            ),
            |e| {
                matches!(
                    e,
                    DescriptorError::InvalidValue {
                        field: "capacity",
                        ..
                    }
                )
            },
        ),
        (
            format!(
                "{HEAD}<VirtualSystem ovf:id=\"x\"><VirtualHardwareSection><Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>70000</rasd:ResourceType></Item></VirtualHardwareSection></VirtualSystem></Envelope>"
            ),
            |e| {
                matches!(
                    e,
                    DescriptorError::InvalidValue {
                        field: "ResourceType",
                        ..
                    }
                )
            },
        ),
        (
            format!(
                "{HEAD}<VirtualSystem ovf:id=\"x\"><VirtualHardwareSection><Item><rasd:ResourceType>3</rasd:ResourceType></Item></VirtualHardwareSection></VirtualSystem></Envelope>"
            ),
            |e| {
                matches!(
                    e,
                    DescriptorError::MissingElement {
                        child: "InstanceID",
                        ..
                    }
                )
            },
        ),
        (
            format!(
                "{HEAD}<VirtualSystem ovf:id=\"x\"><VirtualHardwareSection><Item><rasd:InstanceID>1</rasd:InstanceID><rasd:InstanceID>2</rasd:InstanceID></Item></VirtualHardwareSection></VirtualSystem></Envelope>"
            ),
            |e| {
                matches!(
                    e,
                    DescriptorError::InvalidValue {
                        field: "InstanceID",
                        ..
                    }
                )
            },
        ),
    ];
    for (doc, check) in cases {
        let e = parse(doc.as_bytes()).expect_err(&doc);
        assert!(check(&e), "{doc}: {e:?}");
    }
}

#[test]
fn nested_collections_are_bounded() {
    let mut doc = String::from(HEAD);
    for i in 0..30 {
        doc.push_str(&format!("<VirtualSystemCollection ovf:id=\"c{i}\">"));
    }
    for _ in 0..30 {
        doc.push_str("</VirtualSystemCollection>");
    }
    doc.push_str("</Envelope>");
    assert!(matches!(
        parse(doc.as_bytes()),
        Err(DescriptorError::InvalidValue {
            field: "nesting",
            ..
        })
    ));
}

fn with_disk(capacity: &str, units: &str, memory: &str) -> String {
    format!(
        "{HEAD}<DiskSection><Disk ovf:diskId=\"d\" ovf:capacity=\"{capacity}\" ovf:capacityAllocationUnits=\"{units}\"/></DiskSection>\
         <VirtualSystem ovf:id=\"x\"><VirtualHardwareSection>\
         <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity></Item>\
         <Item><rasd:HostResource>ovf:/disk/d</rasd:HostResource><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>\
         </VirtualHardwareSection></VirtualSystem></Envelope>"
    )
}

#[test]
fn absurd_sizes_parse_and_fail_when_mapped() {
    // 1024 * 2^60 = 2^70 bytes: parsed, refused when mapped, never allocated.
    let env = parse(with_disk("1024", "byte * 2^60", "1").as_bytes()).unwrap();
    match describe(&env, &MapOptions::default()) {
        Err(e @ MapError::TooLarge { bytes, .. }) => {
            assert_eq!(bytes, 1u128 << 70);
            assert_eq!(e.kind(), MapErrorKind::Invalid);
        }
        other => panic!("unexpected {other:?}"),
    }
    // u64::MAX * 2^100 overflows even 128 bits.
    let env = parse(with_disk(&u64::MAX.to_string(), "byte * 2^100", "1").as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::TooLarge { .. })
    ));
    // A multiplier beyond 128 bits.
    let env = parse(with_disk("1", "byte * 2^200", "1").as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::InvalidUnits { .. })
    ));
    // Memory of 2^64 MiB.
    let env = parse(with_disk("1", "byte", &u64::MAX.to_string()).as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::TooLarge { .. })
    ));
    // Within limits it maps.
    let env = parse(with_disk("1", "byte * 2^40", "4096").as_bytes()).unwrap();
    let app = describe(&env, &MapOptions::default()).unwrap();
    assert_eq!(app.disks[0].capacity_bytes, 1 << 40);
    assert_eq!(app.vms[0].memory_bytes, Some(4096 << 20));
}

#[test]
fn required_unknown_sections_are_fatal_when_mapped() {
    let doc = format!(
        "{HEAD}<References/><VirtualSystem ovf:id=\"x\" xmlns:acme=\"urn:acme\"><acme:PlacementSection ovf:required=\"true\"><Info>x</Info></acme:PlacementSection></VirtualSystem></Envelope>"
    );
    let env = parse(doc.as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::RequiredSectionUnsupported { section, .. }) if section == "acme:PlacementSection"
    ));
    let doc = format!(
        "{HEAD}<References/><acme:Thing xmlns:acme=\"urn:acme\" ovf:required=\"true\"/><VirtualSystem ovf:id=\"x\"/></Envelope>"
    );
    let env = parse(doc.as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::RequiredSectionUnsupported { .. })
    ));
    // Not required: ignored and reported.
    let doc = format!(
        "{HEAD}<References/><VirtualSystem ovf:id=\"x\" xmlns:acme=\"urn:acme\"><acme:PlacementSection ovf:required=\"false\"/></VirtualSystem></Envelope>"
    );
    let env = parse(doc.as_bytes()).unwrap();
    let vm = describe(&env, &MapOptions::default())
        .unwrap()
        .vms
        .remove(0);
    assert_eq!(vm.ignored_sections, ["acme:PlacementSection"]);
}

#[test]
fn disk_reference_errors() {
    let dangling_file = format!(
        "{HEAD}<References/><DiskSection><Disk ovf:diskId=\"d\" ovf:capacity=\"1\" ovf:fileRef=\"nope\"/></DiskSection>\
         <VirtualSystem ovf:id=\"x\"><VirtualHardwareSection><Item><rasd:HostResource>ovf:/disk/d</rasd:HostResource><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection></VirtualSystem></Envelope>"
    );
    let env = parse(dangling_file.as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::UnknownFile { .. })
    ));
    let parent_loop = format!(
        "{HEAD}<References/><DiskSection><Disk ovf:diskId=\"a\" ovf:capacity=\"1\" ovf:parentRef=\"b\"/><Disk ovf:diskId=\"b\" ovf:capacity=\"1\" ovf:parentRef=\"a\"/></DiskSection>\
         <VirtualSystem ovf:id=\"x\"><VirtualHardwareSection><Item><rasd:HostResource>ovf:/disk/a</rasd:HostResource><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection></VirtualSystem></Envelope>"
    );
    let env = parse(parent_loop.as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::ParentLoop { disk, .. }) if disk == "a"
    ));
    let dangling_parent = format!(
        "{HEAD}<References/><DiskSection><Disk ovf:diskId=\"a\" ovf:capacity=\"1\" ovf:parentRef=\"gone\"/></DiskSection>\
         <VirtualSystem ovf:id=\"x\"><VirtualHardwareSection><Item><rasd:HostResource>ovf:/disk/a</rasd:HostResource><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection></VirtualSystem></Envelope>"
    );
    let env = parse(dangling_parent.as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::BadParent { parent, .. }) if parent == "gone"
    ));
    let undefined_property = format!(
        "{HEAD}<References/><DiskSection><Disk ovf:diskId=\"a\" ovf:capacity=\"${{nope}}\"/></DiskSection>\
         <VirtualSystem ovf:id=\"x\"><VirtualHardwareSection><Item><rasd:HostResource>ovf:/disk/a</rasd:HostResource><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection></VirtualSystem></Envelope>"
    );
    let env = parse(undefined_property.as_bytes()).unwrap();
    assert!(matches!(
        describe(&env, &MapOptions::default()),
        Err(MapError::UnknownProperty { property, .. }) if property == "nope"
    ));
}

#[test]
fn shared_data_is_described_once_not_per_vm() {
    // Many systems referring to one disk with a long href, under a
    // collection with many properties: the description stays linear in the
    // input because disks, files and collection data are listed once.
    let href = "h".repeat(4096);
    let mut doc = format!(
        "{HEAD}<References><File ovf:id=\"f\" ovf:href=\"{href}\"/></References>\
         <DiskSection><Disk ovf:diskId=\"d\" ovf:capacity=\"1\" ovf:fileRef=\"f\"/></DiskSection>\
         <VirtualSystemCollection ovf:id=\"c\"><ProductSection>"
    );
    for i in 0..5_000 {
        doc.push_str(&format!(
            "<Property ovf:key=\"k{i}\" ovf:type=\"string\" ovf:value=\"v\"/>"
        ));
    }
    doc.push_str("</ProductSection><StartupSection>");
    for i in 0..5_000 {
        doc.push_str(&format!("<Item ovf:id=\"s{i}\" ovf:order=\"{i}\"/>"));
    }
    doc.push_str("</StartupSection>");
    for i in 0..5_000 {
        doc.push_str(&format!(
            "<VirtualSystem ovf:id=\"s{i}\"><VirtualHardwareSection><Item><rasd:HostResource>ovf:/disk/d</rasd:HostResource><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection></VirtualSystem>"
        ));
    }
    doc.push_str("</VirtualSystemCollection></Envelope>");
    let start = Instant::now();
    let env = parse(doc.as_bytes()).unwrap();
    let parsed = start.elapsed();
    let app = describe(&env, &MapOptions::default()).unwrap();
    eprintln!(
        "5,000 systems sharing a disk ({} bytes): parsed in {parsed:?}, described in {:?}",
        doc.len(),
        start.elapsed() - parsed
    );
    assert_eq!(app.vms.len(), 5_000);
    assert_eq!(app.disks.len(), 1);
    assert_eq!(app.files.len(), 1);
    assert_eq!(app.collections[0].products[0].properties.len(), 5_000);
    assert!(app.vms.iter().all(|v| v.products.is_empty()));
    assert_eq!(app.vms[4_999].startup_order, Some(4_999));
}

#[test]
fn long_parent_chains_are_walked_without_recursion() {
    let n = 20_000;
    let mut doc = format!("{HEAD}<References/><DiskSection>");
    doc.push_str("<Disk ovf:diskId=\"d0\" ovf:capacity=\"1\"/>");
    for i in 1..n {
        doc.push_str(&format!(
            "<Disk ovf:diskId=\"d{i}\" ovf:capacity=\"1\" ovf:parentRef=\"d{}\"/>",
            i - 1
        ));
    }
    doc.push_str(&format!(
        "</DiskSection><VirtualSystem ovf:id=\"x\"><VirtualHardwareSection>\
         <Item><rasd:HostResource>ovf:/disk/d{}</rasd:HostResource><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>\
         <Item><rasd:HostResource>ovf:/disk/d{}</rasd:HostResource><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>\
         </VirtualHardwareSection></VirtualSystem></Envelope>",
        n - 1,
        n / 2
    ));
    let env = parse(doc.as_bytes()).unwrap();
    let app = describe(&env, &MapOptions::default()).unwrap();
    assert_eq!(app.disks.len(), n);
    // Parents come before their children.
    assert_eq!(app.disks[0].disk_id, "d0");
    assert_eq!(app.disks[0].parent, None);
    assert_eq!(app.disks[n - 1].parent.map(|p| p.0), Some(n - 2));
}

#[test]
fn includes_and_processing_instructions_stay_inert() {
    // Nothing in a descriptor makes the parser open a file or a URL: an
    // XInclude element is kept as an unknown extension, a stylesheet
    // instruction is ignored.
    let doc = format!(
        "<?xml-stylesheet href=\"http://127.0.0.1:1/s.xsl\"?>{HEAD}<References/>\
         <xi:include xmlns:xi=\"http://www.w3.org/2001/XInclude\" href=\"file:///etc/passwd\" parse=\"text\"/>\
         <VirtualSystem ovf:id=\"x\"/></Envelope>"
    );
    let env = parse(doc.as_bytes()).unwrap();
    assert_eq!(env.extensions.len(), 1);
    assert_eq!(env.extensions[0].element.name.local, "include");
    assert!(env.extensions[0].element.children.is_empty());
}
