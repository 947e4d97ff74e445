//! Property test: any model the writer accepts reads back identically.

use std::collections::HashSet;

use ovf::descriptor::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Trimmed, non-empty text with markup characters and non-ASCII letters.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9&<>'\"é€日%{}=;: ._/-]{1,16}"
        .prop_map(|s| s.trim().to_owned())
        .prop_filter("non-empty", |s| !s.is_empty())
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:-]{1,10}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    option::of(text())
}

fn xml_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,6}".prop_filter("not reserved", |s| {
        !s.to_ascii_lowercase().starts_with("xml") && s != "required"
    })
}

/// A foreign namespace: (prefix, uri); `None` for no namespace.
fn foreign_ns(allow_none: bool) -> impl Strategy<Value = Option<(&'static str, &'static str)>> {
    let mut choices = vec![
        Some(("vmw", NS_VMW)),
        Some(("acme", "urn:example:acme")),
        Some(("x", "urn:example:x")),
        // Same prefix, another namespace: the writer must redeclare it.
        Some(("acme", "urn:example:other")),
    ];
    if allow_none {
        choices.push(None);
    }
    proptest::sample::select(choices)
}

fn name(allow_none: bool) -> impl Strategy<Value = XmlName> {
    (foreign_ns(allow_none), xml_name()).prop_map(|(ns, local)| match ns {
        Some((p, uri)) => XmlName::new(Some(uri), Some(p), &local),
        None => XmlName::new(None, None, &local),
    })
}

fn attributes() -> impl Strategy<Value = Vec<XmlAttribute>> {
    vec((name(true), text()), 0..3).prop_map(|attrs| {
        let mut seen = HashSet::new();
        attrs
            .into_iter()
            .filter(|(n, _)| seen.insert((n.namespace.clone(), n.local.clone())))
            .map(|(name, value)| XmlAttribute { name, value })
            .collect()
    })
}

fn element(allow_none: bool) -> impl Strategy<Value = XmlElement> {
    let leaf =
        (name(allow_none), attributes(), option::of(text())).prop_map(|(name, attributes, t)| {
            XmlElement {
                name,
                attributes,
                children: t.into_iter().map(XmlNode::Text).collect(),
            }
        });
    leaf.prop_recursive(3, 12, 3, move |inner| {
        (name(allow_none), attributes(), vec(inner, 1..3)).prop_map(|(name, attributes, kids)| {
            XmlElement {
                name,
                attributes,
                children: kids.into_iter().map(XmlNode::Element).collect(),
            }
        })
    })
}

fn extension() -> impl Strategy<Value = (bool, XmlElement)> {
    (any::<bool>(), element(true))
}

fn file() -> impl Strategy<Value = FileReference> {
    (
        token(),
        text(),
        option::of(any::<u64>()),
        option::of(Just("gzip".to_owned())),
        option::of(1..u64::MAX),
    )
        .prop_map(|(id, href, size, compression, chunk_size)| FileReference {
            id,
            href,
            size,
            compression,
            chunk_size,
        })
}

fn disk() -> impl Strategy<Value = VirtualDisk> {
    let capacity = prop_oneof![
        any::<u64>().prop_map(Capacity::Value),
        "[a-z][a-z._]{0,8}".prop_map(Capacity::Property),
    ];
    (
        token(),
        capacity,
        option::of(proptest::sample::select(vec![
            "byte * 2^30".to_owned(),
            "MegaBytes".to_owned(),
        ])),
        option::of(any::<u64>()),
        option::of(token()),
        option::of(token()),
        opt_text(),
    )
        .prop_map(
            |(disk_id, capacity, units, populated_size, file_ref, parent_ref, format)| {
                VirtualDisk {
                    disk_id,
                    capacity,
                    capacity_allocation_units: units,
                    populated_size,
                    file_ref,
                    parent_ref,
                    format,
                }
            },
        )
}

fn cim_props(reserved: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, String)>> {
    vec(
        (
            proptest::sample::select(vec![
                "Reservation",
                "Limit",
                "Weight",
                "PoolID",
                "MappingBehavior",
                "ConsumerVisibility",
                "Generation",
            ]),
            text(),
        ),
        0..3,
    )
    .prop_map(move |v| {
        let mut v: Vec<(String, String)> = v
            .into_iter()
            .filter(|(k, _)| !reserved.contains(k))
            .map(|(k, t)| (k.to_owned(), t))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    })
}

fn item(kinds: Vec<ItemKind>) -> impl Strategy<Value = HardwareItem> {
    let head = (
        proptest::sample::select(kinds),
        any::<bool>(),
        vec(token(), 0..3),
        option::of(proptest::sample::select(vec!["min", "max", "normal"])),
        token(),
        option::of(any::<u16>()),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
    );
    let tail = (
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        option::of(any::<u64>()),
        opt_text(),
        option::of(any::<bool>()),
        vec(text(), 0..2),
        vec(text(), 0..2),
        cim_props(&[]),
        vec(element(false), 0..2),
        opt_text(),
    );
    (head, tail).prop_map(|(h, t)| {
        let mut item = HardwareItem::new(h.0, &h.4);
        item.required = h.1;
        item.configurations = h.2;
        item.bound = h.3.map(str::to_owned);
        item.resource_type = h.5;
        item.other_resource_type = h.6;
        item.resource_sub_type = h.7;
        item.element_name = h.8;
        item.caption = h.9;
        item.description = t.0;
        item.address = t.1;
        item.address_on_parent = t.2;
        item.parent = t.3;
        item.virtual_quantity = t.4;
        item.allocation_units = t.5;
        item.automatic_allocation = t.6;
        item.connections = t.7;
        item.host_resources = t.8;
        item.other_properties = t.9;
        item.extensions = t.10;
        item.virtual_quantity_units = t.11;
        item
    })
}

fn hardware(kinds: Vec<ItemKind>) -> impl Strategy<Value = VirtualHardwareSection> {
    let system = (
        opt_text(),
        opt_text(),
        opt_text(),
        vec(token(), 0..3),
        cim_props(&[]),
    )
        .prop_map(|(e, i, v, types, other)| SystemSettings {
            element_name: e,
            instance_id: i,
            virtual_system_identifier: v,
            virtual_system_types: types,
            other_properties: other,
        });
    (
        option::of(token()),
        option::of(token()),
        opt_text(),
        option::of(system),
        vec(item(kinds), 0..5),
        vec(element(false), 0..2),
    )
        .prop_map(
            |(id, transport, info, system, items, extensions)| VirtualHardwareSection {
                id,
                transport,
                info,
                system,
                items,
                extensions,
            },
        )
}

fn property() -> impl Strategy<Value = Property> {
    (
        token(),
        token(),
        opt_text(),
        opt_text(),
        any::<bool>(),
        any::<bool>(),
        opt_text(),
        opt_text(),
        opt_text(),
    )
        .prop_map(
            |(key, ty, q, value, uc, pw, label, description, category)| Property {
                key,
                type_name: ty,
                qualifiers: q,
                value,
                user_configurable: uc,
                password: pw,
                label,
                description,
                category,
            },
        )
}

fn product() -> impl Strategy<Value = ProductSection> {
    (
        (
            option::of(token()),
            option::of(token()),
            opt_text(),
            opt_text(),
        ),
        (
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
        ),
        vec(property(), 0..4),
    )
        .prop_map(|(a, b, mut properties)| {
            let mut seen = HashSet::new();
            properties.retain(|p| seen.insert(p.key.clone()));
            ProductSection {
                class: a.0,
                instance: a.1,
                info: a.2,
                product: a.3,
                vendor: b.0,
                version: b.1,
                full_version: b.2,
                product_url: b.3,
                vendor_url: b.4,
                app_url: b.5,
                properties,
            }
        })
}

fn sections(kinds: Vec<ItemKind>) -> impl Strategy<Value = ContentSections> {
    let os = (
        any::<u16>(),
        option::of(token()),
        option::of(token()),
        opt_text(),
        opt_text(),
    )
        .prop_map(
            |(id, version, vmw, info, description)| OperatingSystemSection {
                id,
                version,
                vmw_os_type: vmw,
                info,
                description,
            },
        );
    let startup_item = (
        token(),
        any::<u32>(),
        option::of(any::<u32>()),
        option::of(token()),
        option::of(any::<u32>()),
        option::of(token()),
        option::of(any::<bool>()),
    )
        .prop_map(|(id, order, sd, sa, td, ta, w)| StartupItem {
            id,
            order,
            start_delay: sd,
            start_action: sa,
            stop_delay: td,
            stop_action: ta,
            waiting_for_guest: w,
        });
    let startup = (opt_text(), vec(startup_item, 0..3))
        .prop_map(|(info, items)| StartupSection { info, items });
    let license = prop_oneof![Just(String::new()), text()];
    (
        vec(product(), 0..2),
        vec(
            (opt_text(), license.clone()).prop_map(|(info, license)| EulaSection { info, license }),
            0..2,
        ),
        option::of(
            (opt_text(), license)
                .prop_map(|(info, annotation)| AnnotationSection { info, annotation }),
        ),
        option::of(os),
        vec(hardware(kinds), 0..2),
        option::of(startup),
        vec(extension(), 0..2),
    )
        .prop_map(
            |(products, eulas, annotation, os, hardware, startup, ext)| ContentSections {
                products,
                eulas,
                annotation,
                operating_system: os,
                hardware,
                startup,
                extensions: ext
                    .into_iter()
                    .map(|(required, element)| ExtensionSection { required, element })
                    .collect(),
            },
        )
}

fn content(kinds: Vec<ItemKind>) -> impl Strategy<Value = Content> {
    let system =
        (opt_text(), opt_text(), sections(kinds.clone())).prop_map(|(info, name, sections)| {
            Content::System(VirtualSystem {
                id: String::new(),
                info,
                name,
                sections,
            })
        });
    system.prop_recursive(2, 6, 3, move |inner| {
        (
            opt_text(),
            opt_text(),
            sections(kinds.clone()),
            vec(inner, 0..3),
        )
            .prop_map(|(info, name, sections, children)| {
                Content::Collection(VirtualSystemCollection {
                    id: String::new(),
                    info,
                    name,
                    sections,
                    children,
                })
            })
    })
}

/// Gives every system a unique id and turns the `required` flag of each
/// extension into the attribute the parser reads it from.
fn finish_content(c: &mut Content, next: &mut u32, ns: &'static str) {
    *next += 1;
    let id = format!("vs{next}");
    let (slot, sections) = match c {
        Content::System(s) => (&mut s.id, &mut s.sections),
        Content::Collection(s) => (&mut s.id, &mut s.sections),
    };
    *slot = id;
    finish_extensions(&mut sections.extensions, ns);
    if let Content::Collection(col) = c {
        for child in &mut col.children {
            finish_content(child, next, ns);
        }
    }
}

fn finish_extensions(extensions: &mut [ExtensionSection], ns: &'static str) {
    for e in extensions {
        if e.required {
            e.element.attributes.push(XmlAttribute {
                name: XmlName::new(Some(ns), Some("ovf"), "required"),
                value: "true".into(),
            });
        }
    }
}

fn envelope() -> impl Strategy<Value = Envelope> {
    proptest::sample::select(vec![OvfVersion::V1, OvfVersion::V2])
        .prop_flat_map(|version| {
            let kinds = if version == OvfVersion::V2 {
                vec![
                    ItemKind::Item,
                    ItemKind::StorageItem,
                    ItemKind::EthernetPortItem,
                ]
            } else {
                vec![ItemKind::Item]
            };
            let disks = option::of(
                (opt_text(), vec(disk(), 0..4))
                    .prop_map(|(info, disks)| DiskSection { info, disks }),
            );
            let networks = option::of(
                (
                    opt_text(),
                    vec(
                        (text(), opt_text())
                            .prop_map(|(name, description)| Network { name, description }),
                        0..3,
                    ),
                )
                    .prop_map(|(info, networks)| NetworkSection { info, networks }),
            );
            let options = option::of(
                (
                    opt_text(),
                    vec(
                        (token(), any::<bool>(), opt_text(), opt_text()).prop_map(
                            |(id, default, label, description)| Configuration {
                                id,
                                default,
                                label,
                                description,
                            },
                        ),
                        0..3,
                    ),
                )
                    .prop_map(|(info, configurations)| DeploymentOptionSection {
                        info,
                        configurations,
                    }),
            );
            (
                Just(version),
                option::of(token()),
                vec(file(), 0..4),
                disks,
                networks,
                options,
                vec(extension(), 0..2),
                content(kinds),
            )
        })
        .prop_map(
            |(
                version,
                lang,
                mut references,
                mut disk_section,
                mut network_section,
                mut deployment_options,
                ext,
                mut content,
            )| {
                let mut seen = HashSet::new();
                references.retain(|f| seen.insert(f.id.clone()));
                if let Some(d) = &mut disk_section {
                    let mut seen = HashSet::new();
                    d.disks.retain(|x| seen.insert(x.disk_id.clone()));
                }
                if let Some(n) = &mut network_section {
                    let mut seen = HashSet::new();
                    n.networks.retain(|x| seen.insert(x.name.clone()));
                }
                if let Some(o) = &mut deployment_options {
                    let mut seen = HashSet::new();
                    o.configurations.retain(|x| seen.insert(x.id.clone()));
                }
                let ns = version.namespace();
                let mut extensions: Vec<ExtensionSection> = ext
                    .into_iter()
                    .map(|(required, element)| ExtensionSection { required, element })
                    .collect();
                finish_extensions(&mut extensions, ns);
                let mut next = 0;
                finish_content(&mut content, &mut next, ns);
                Envelope {
                    version,
                    lang,
                    references,
                    disk_section,
                    network_section,
                    deployment_options,
                    extensions,
                    content,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_models_round_trip(env in envelope()) {
        let bytes = write(&env).unwrap();
        let back = parse(&bytes).map_err(|e| {
            TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&bytes)))
        })?;
        prop_assert_eq!(&back, &env, "{}", String::from_utf8_lossy(&bytes));
        // Mapping never panics on whatever the model holds.
        let _ = describe(&back, &MapOptions::default());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_descriptors_never_panic(
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/descriptors/vmware-ovftool.ovf");
        let mut bytes = std::fs::read(path).unwrap();
        let at = pos.index(bytes.len());
        bytes[at] = byte;
        bytes.truncate(cut.index(bytes.len()) + 1);
        if let Ok(env) = parse(&bytes) {
            let _ = describe(&env, &MapOptions::default());
            if let Ok(out) = write(&env) {
                prop_assert_eq!(parse(&out).unwrap(), env);
            }
        }
    }
}
