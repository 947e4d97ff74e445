//! Element tree -> typed model: envelope, references and sections.

use std::collections::HashSet;

use super::error::DescriptorError;
use super::hardware_parse::parse_hardware_section;
use super::model::*;
use super::xml::{XML_NAMESPACE, XmlElement};

/// Builds the model from the element tree of a descriptor.
pub(crate) fn envelope_from_tree(root: &XmlElement) -> Result<Envelope, DescriptorError> {
    let version = root
        .name
        .namespace
        .as_deref()
        .and_then(OvfVersion::from_namespace)
        .filter(|_| root.name.local == "Envelope")
        .ok_or_else(|| DescriptorError::NotAnEnvelope {
            found: format!(
                "{{{}}}{}",
                root.name.namespace.as_deref().unwrap_or(""),
                root.name.local
            ),
        })?;
    let mut env = EnvelopeParts::default();
    for child in root.elements() {
        match section_kind(child) {
            Some("References") => {
                env.references = parse_references(child)?;
            }
            Some("DiskSection") => {
                once(&env.disk_section, "DiskSection")?;
                env.disk_section = Some(parse_disk_section(child)?);
            }
            Some("NetworkSection") => {
                once(&env.network_section, "NetworkSection")?;
                env.network_section = Some(parse_network_section(child)?);
            }
            Some("DeploymentOptionSection") => {
                once(&env.deployment_options, "DeploymentOptionSection")?;
                env.deployment_options = Some(parse_deployment_options(child)?);
            }
            Some("VirtualSystem") | Some("VirtualSystemCollection") => {
                if env.content.is_some() {
                    return Err(DescriptorError::SeveralContents);
                }
                env.content = Some(parse_content(child, 0)?);
            }
            _ => env.extensions.push(extension(child)),
        }
    }
    let content = env.content.ok_or(DescriptorError::NoContent)?;
    let mut ids = HashSet::new();
    collect_content_ids(&content, &mut ids)?;
    Ok(Envelope {
        version,
        lang: root
            .attribute_ns(Some(XML_NAMESPACE), "lang")
            .map(str::to_owned),
        references: env.references,
        disk_section: env.disk_section,
        network_section: env.network_section,
        deployment_options: env.deployment_options,
        extensions: env.extensions,
        content,
    })
}

#[derive(Default)]
struct EnvelopeParts {
    references: Vec<FileReference>,
    disk_section: Option<DiskSection>,
    network_section: Option<NetworkSection>,
    deployment_options: Option<DeploymentOptionSection>,
    extensions: Vec<ExtensionSection>,
    content: Option<Content>,
}

fn once<T>(slot: &Option<T>, kind: &'static str) -> Result<(), DescriptorError> {
    match slot {
        Some(_) => Err(DescriptorError::DuplicateId {
            kind: "section",
            id: kind.to_owned(),
        }),
        None => Ok(()),
    }
}

fn collect_content_ids<'a>(
    content: &'a Content,
    ids: &mut HashSet<&'a str>,
) -> Result<(), DescriptorError> {
    if !ids.insert(content.id()) {
        return Err(DescriptorError::DuplicateId {
            kind: "virtual system",
            id: content.id().to_owned(),
        });
    }
    if let Content::Collection(c) = content {
        for child in &c.children {
            collect_content_ids(child, ids)?;
        }
    }
    Ok(())
}

/// Whether `ns` is one of the OVF envelope namespaces.
pub(crate) fn is_ovf_namespace(ns: Option<&str>) -> bool {
    ns.is_some_and(|ns| OvfVersion::from_namespace(ns).is_some())
}

/// The section or content kind of an element in an OVF namespace: its local
/// name, or for OVF 0.9 `Section`/`Content` the `xsi:type` without prefix
/// and `_Type` suffix. `None` for elements in other namespaces.
pub(crate) fn section_kind(el: &XmlElement) -> Option<&str> {
    if !is_ovf_namespace(el.name.namespace.as_deref()) {
        return None;
    }
    if el.name.local == "Section" || el.name.local == "Content" {
        let ty = el.attribute_ns(Some(NS_XSI), "type")?;
        let local = ty.rsplit_once(':').map_or(ty, |(_, l)| l);
        return Some(local.strip_suffix("_Type").unwrap_or(local));
    }
    Some(el.name.local.as_str())
}

/// An OVF attribute: namespaced with any OVF namespace, or unqualified.
pub(crate) fn ovf_attr<'a>(el: &'a XmlElement, local: &str) -> Option<&'a str> {
    el.attributes
        .iter()
        .find(|a| a.name.local == local && is_ovf_namespace(a.name.namespace.as_deref()))
        .or_else(|| {
            el.attributes
                .iter()
                .find(|a| a.name.local == local && a.name.namespace.is_none())
        })
        .map(|a| a.value.as_str())
}

/// A required OVF attribute.
pub(crate) fn required_attr<'a>(
    el: &'a XmlElement,
    local: &'static str,
    context: &dyn Fn() -> String,
) -> Result<&'a str, DescriptorError> {
    let value = ovf_attr(el, local).ok_or_else(|| DescriptorError::MissingAttribute {
        element: context(),
        attribute: local,
    })?;
    if value.trim().is_empty() {
        return Err(invalid(context, local, value, "a non-empty value"));
    }
    Ok(value)
}

/// The text of the first OVF-namespace child named `local`, `None` when
/// absent or empty.
pub(crate) fn child_text(el: &XmlElement, local: &str) -> Option<String> {
    el.elements()
        .find(|c| c.name.local == local && is_ovf_namespace(c.name.namespace.as_deref()))
        .map(XmlElement::text)
        .filter(|t| !t.is_empty())
}

/// Truncates a value for an error message.
pub(crate) fn short(value: &str) -> String {
    value.chars().take(64).collect()
}

pub(crate) fn parse_u64(
    value: &str,
    element: &dyn Fn() -> String,
    field: &'static str,
) -> Result<u64, DescriptorError> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(element, field, value, "a non-negative integer"));
    }
    v.parse()
        .map_err(|_| invalid(element, field, value, "an integer below 2^64"))
}

pub(crate) fn parse_bool(
    value: &str,
    element: &dyn Fn() -> String,
    field: &'static str,
) -> Result<bool, DescriptorError> {
    match value.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(element, field, value, "true or false")),
    }
}

pub(crate) fn invalid(
    element: &dyn Fn() -> String,
    field: &'static str,
    value: &str,
    expected: &'static str,
) -> DescriptorError {
    DescriptorError::InvalidValue {
        element: element(),
        field,
        value: short(value),
        expected,
    }
}

fn opt_u64(
    el: &XmlElement,
    local: &'static str,
    ctx: &dyn Fn() -> String,
) -> Result<Option<u64>, DescriptorError> {
    ovf_attr(el, local)
        .map(|v| parse_u64(v, ctx, local))
        .transpose()
}

fn opt_u32(
    el: &XmlElement,
    local: &'static str,
    ctx: &dyn Fn() -> String,
) -> Result<Option<u32>, DescriptorError> {
    match opt_u64(el, local, ctx)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| invalid(ctx, local, &v.to_string(), "an integer below 2^32")),
    }
}

fn extension(el: &XmlElement) -> ExtensionSection {
    ExtensionSection {
        required: ovf_attr(el, "required").is_some_and(|v| v.trim() == "true" || v.trim() == "1"),
        element: el.clone(),
    }
}

fn parse_references(el: &XmlElement) -> Result<Vec<FileReference>, DescriptorError> {
    let mut files = Vec::new();
    let mut ids = HashSet::new();
    for f in el.elements().filter(|c| c.name.local == "File") {
        let ctx = || "References/File".to_owned();
        let id = required_attr(f, "id", &ctx)?.to_owned();
        let ctx = || format!("File {id}");
        let href = required_attr(f, "href", &ctx)?.to_owned();
        let compression = ovf_attr(f, "compression")
            .map(str::trim)
            .filter(|c| !c.is_empty() && *c != "identity")
            .map(str::to_owned);
        let size = opt_u64(f, "size", &ctx)?;
        let chunk_size = opt_u64(f, "chunkSize", &ctx)?;
        if chunk_size == Some(0) {
            return Err(invalid(&ctx, "chunkSize", "0", "a positive integer"));
        }
        let file = FileReference {
            size,
            chunk_size,
            href,
            compression,
            id,
        };
        if !ids.insert(file.id.clone()) {
            return Err(DescriptorError::DuplicateId {
                kind: "file",
                id: file.id,
            });
        }
        files.push(file);
    }
    Ok(files)
}

fn parse_disk_section(el: &XmlElement) -> Result<DiskSection, DescriptorError> {
    let mut disks = Vec::new();
    let mut ids = HashSet::new();
    for d in el.elements().filter(|c| c.name.local == "Disk") {
        let ctx = || "DiskSection/Disk".to_owned();
        let disk_id = required_attr(d, "diskId", &ctx)?.to_owned();
        let ctx = || format!("Disk {disk_id}");
        let raw = required_attr(d, "capacity", &ctx)?.trim();
        let capacity = match raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
            Some(key) if !key.is_empty() => Capacity::Property(key.to_owned()),
            _ => Capacity::Value(parse_u64(raw, &ctx, "capacity")?),
        };
        let disk = VirtualDisk {
            capacity,
            capacity_allocation_units: ovf_attr(d, "capacityAllocationUnits").map(str::to_owned),
            populated_size: opt_u64(d, "populatedSize", &ctx)?,
            file_ref: ovf_attr(d, "fileRef")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            parent_ref: ovf_attr(d, "parentRef")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            format: ovf_attr(d, "format").map(str::to_owned),
            disk_id,
        };
        if !ids.insert(disk.disk_id.clone()) {
            return Err(DescriptorError::DuplicateId {
                kind: "disk",
                id: disk.disk_id,
            });
        }
        disks.push(disk);
    }
    Ok(DiskSection {
        info: child_text(el, "Info"),
        disks,
    })
}

fn parse_network_section(el: &XmlElement) -> Result<NetworkSection, DescriptorError> {
    let mut networks = Vec::new();
    let mut names = HashSet::new();
    for n in el.elements().filter(|c| c.name.local == "Network") {
        let ctx = || "NetworkSection/Network".to_owned();
        let name = required_attr(n, "name", &ctx)?.to_owned();
        if !names.insert(name.clone()) {
            return Err(DescriptorError::DuplicateId {
                kind: "network",
                id: name,
            });
        }
        networks.push(Network {
            name,
            description: child_text(n, "Description"),
        });
    }
    Ok(NetworkSection {
        info: child_text(el, "Info"),
        networks,
    })
}

fn parse_deployment_options(el: &XmlElement) -> Result<DeploymentOptionSection, DescriptorError> {
    let mut configurations = Vec::new();
    let mut ids = HashSet::new();
    for c in el.elements().filter(|c| c.name.local == "Configuration") {
        let ctx = || "DeploymentOptionSection/Configuration".to_owned();
        let id = required_attr(c, "id", &ctx)?.to_owned();
        let ctx = || format!("Configuration {id}");
        let default = ovf_attr(c, "default")
            .map(|v| parse_bool(v, &ctx, "default"))
            .transpose()?
            .unwrap_or(false);
        if !ids.insert(id.clone()) {
            return Err(DescriptorError::DuplicateId {
                kind: "configuration",
                id,
            });
        }
        configurations.push(Configuration {
            default,
            label: child_text(c, "Label"),
            description: child_text(c, "Description"),
            id,
        });
    }
    Ok(DeploymentOptionSection {
        info: child_text(el, "Info"),
        configurations,
    })
}

/// Collections nest; bound the recursion independently of the XML depth
/// limit so the model never recurses deeper than this.
const MAX_COLLECTION_DEPTH: usize = 16;

fn parse_content(el: &XmlElement, depth: usize) -> Result<Content, DescriptorError> {
    let kind = section_kind(el).unwrap_or_default();
    let ctx = || kind.to_owned();
    if depth > MAX_COLLECTION_DEPTH {
        return Err(invalid(
            &ctx,
            "nesting",
            &depth.to_string(),
            "collections nested at most 16 deep",
        ));
    }
    let id = required_attr(el, "id", &ctx)?.to_owned();
    let is_collection = kind == "VirtualSystemCollection";
    let mut sections = ContentSections::default();
    let mut children = Vec::new();
    for child in el.elements() {
        let ctx = || format!("{kind} {id}");
        match section_kind(child) {
            Some("Info") | Some("Name") => {}
            Some("ProductSection") => sections.products.push(parse_product(child, &ctx)?),
            Some("EulaSection") => sections.eulas.push(EulaSection {
                info: child_text(child, "Info"),
                license: child_text(child, "License").unwrap_or_default(),
            }),
            Some("AnnotationSection") => {
                once(&sections.annotation, "AnnotationSection")?;
                sections.annotation = Some(AnnotationSection {
                    info: child_text(child, "Info"),
                    annotation: child_text(child, "Annotation").unwrap_or_default(),
                });
            }
            Some("OperatingSystemSection") => {
                once(&sections.operating_system, "OperatingSystemSection")?;
                sections.operating_system = Some(parse_os(child, &ctx)?);
            }
            Some("VirtualHardwareSection") => {
                sections.hardware.push(parse_hardware_section(child, &ctx)?)
            }
            Some("StartupSection") => {
                once(&sections.startup, "StartupSection")?;
                sections.startup = Some(parse_startup(child)?);
            }
            Some("VirtualSystem") | Some("VirtualSystemCollection") if is_collection => {
                children.push(parse_content(child, depth + 1)?);
            }
            _ => sections.extensions.push(extension(child)),
        }
    }
    let info = child_text(el, "Info");
    let name = child_text(el, "Name");
    Ok(if is_collection {
        Content::Collection(VirtualSystemCollection {
            id,
            info,
            name,
            sections,
            children,
        })
    } else {
        Content::System(VirtualSystem {
            id,
            info,
            name,
            sections,
        })
    })
}

fn parse_product(
    el: &XmlElement,
    parent: &dyn Fn() -> String,
) -> Result<ProductSection, DescriptorError> {
    let mut p = ProductSection {
        class: ovf_attr(el, "class").map(str::to_owned),
        instance: ovf_attr(el, "instance").map(str::to_owned),
        info: child_text(el, "Info"),
        product: child_text(el, "Product"),
        vendor: child_text(el, "Vendor"),
        version: child_text(el, "Version"),
        full_version: child_text(el, "FullVersion"),
        product_url: child_text(el, "ProductUrl"),
        vendor_url: child_text(el, "VendorUrl"),
        app_url: child_text(el, "AppUrl"),
        properties: Vec::new(),
    };
    let mut category: Option<String> = None;
    let mut keys = HashSet::new();
    for c in el
        .elements()
        .filter(|c| is_ovf_namespace(c.name.namespace.as_deref()))
    {
        match c.name.local.as_str() {
            "Category" => category = Some(c.text()).filter(|t| !t.is_empty()),
            "Property" => {
                let ctx = || format!("ProductSection of {}", parent());
                let key = required_attr(c, "key", &ctx)?.to_owned();
                let ctx = || format!("Property {key}");
                let flag = |name: &'static str| -> Result<bool, DescriptorError> {
                    Ok(ovf_attr(c, name)
                        .map(|v| parse_bool(v, &ctx, name))
                        .transpose()?
                        .unwrap_or(false))
                };
                let prop = Property {
                    type_name: ovf_attr(c, "type").unwrap_or("string").to_owned(),
                    qualifiers: ovf_attr(c, "qualifiers").map(str::to_owned),
                    value: ovf_attr(c, "value").map(str::to_owned),
                    user_configurable: flag("userConfigurable")?,
                    password: flag("password")?,
                    label: child_text(c, "Label"),
                    description: child_text(c, "Description"),
                    category: category.clone(),
                    key,
                };
                if !keys.insert(prop.key.clone()) {
                    return Err(DescriptorError::DuplicateId {
                        kind: "property",
                        id: p.qualified_key(&prop.key),
                    });
                }
                p.properties.push(prop);
            }
            _ => {}
        }
    }
    Ok(p)
}

fn parse_os(
    el: &XmlElement,
    parent: &dyn Fn() -> String,
) -> Result<OperatingSystemSection, DescriptorError> {
    let ctx = || format!("OperatingSystemSection of {}", parent());
    let raw = required_attr(el, "id", &ctx)?;
    let id = u16::try_from(parse_u64(raw, &ctx, "id")?)
        .map_err(|_| invalid(&ctx, "id", raw, "a CIM OsType code below 65536"))?;
    Ok(OperatingSystemSection {
        id,
        version: ovf_attr(el, "version").map(str::to_owned),
        vmw_os_type: el.attribute_ns(Some(NS_VMW), "osType").map(str::to_owned),
        info: child_text(el, "Info"),
        description: child_text(el, "Description"),
    })
}

fn parse_startup(el: &XmlElement) -> Result<StartupSection, DescriptorError> {
    let mut items = Vec::new();
    for i in el.elements().filter(|c| c.name.local == "Item") {
        let ctx = || "StartupSection/Item".to_owned();
        let id = required_attr(i, "id", &ctx)?.to_owned();
        let ctx = || format!("StartupSection/Item {id}");
        let order =
            opt_u32(i, "order", &ctx)?.ok_or_else(|| DescriptorError::MissingAttribute {
                element: ctx(),
                attribute: "order",
            })?;
        items.push(StartupItem {
            order,
            start_delay: opt_u32(i, "startDelay", &ctx)?,
            start_action: ovf_attr(i, "startAction").map(str::to_owned),
            stop_delay: opt_u32(i, "stopDelay", &ctx)?,
            stop_action: ovf_attr(i, "stopAction").map(str::to_owned),
            waiting_for_guest: ovf_attr(i, "waitingForGuest")
                .map(|v| parse_bool(v, &ctx, "waitingForGuest"))
                .transpose()?,
            id,
        });
    }
    Ok(StartupSection {
        info: child_text(el, "Info"),
        items,
    })
}
