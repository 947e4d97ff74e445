//! Element tree -> model for `VirtualHardwareSection`: the vssd `System` and
//! the RASD `Item`, sasd `StorageItem` and epasd `EthernetPortItem` entries.

use super::error::DescriptorError;
use super::model::{HardwareItem, ItemKind, SystemSettings, VirtualHardwareSection};
use super::parse::{child_text, invalid, is_ovf_namespace, ovf_attr, parse_bool, parse_u64};
use super::xml::XmlElement;

/// Prefix shared by the CIM schema namespaces (rasd, vssd, sasd, epasd).
const CIM_SCHEMA_PREFIX: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";

/// Whether a child of an item or System is a CIM property (as opposed to an
/// extension element such as `vmw:Config`).
fn is_cim_property(el: &XmlElement) -> bool {
    match el.name.namespace.as_deref() {
        None => true,
        Some(ns) => ns.starts_with(CIM_SCHEMA_PREFIX) || is_ovf_namespace(Some(ns)),
    }
}

pub(crate) fn parse_hardware_section(
    el: &XmlElement,
    parent: &dyn Fn() -> String,
) -> Result<VirtualHardwareSection, DescriptorError> {
    let mut section = VirtualHardwareSection {
        id: ovf_attr(el, "id").map(str::to_owned),
        transport: ovf_attr(el, "transport").map(str::to_owned),
        info: child_text(el, "Info"),
        ..VirtualHardwareSection::default()
    };
    for child in el.elements() {
        let ovf = is_ovf_namespace(child.name.namespace.as_deref());
        match child.name.local.as_str() {
            "Info" if ovf => {}
            "System" if ovf => {
                if section.system.is_some() {
                    return Err(DescriptorError::DuplicateId {
                        kind: "section",
                        id: format!("VirtualHardwareSection/System of {}", parent()),
                    });
                }
                section.system = Some(parse_system(child));
            }
            "Item" if ovf => section
                .items
                .push(parse_item(child, ItemKind::Item, parent)?),
            "StorageItem" if ovf => {
                section
                    .items
                    .push(parse_item(child, ItemKind::StorageItem, parent)?);
            }
            "EthernetPortItem" if ovf => {
                section
                    .items
                    .push(parse_item(child, ItemKind::EthernetPortItem, parent)?);
            }
            _ => section.extensions.push(child.clone()),
        }
    }
    Ok(section)
}

fn parse_system(el: &XmlElement) -> SystemSettings {
    let mut s = SystemSettings::default();
    for c in el.elements() {
        let text = c.text();
        if text.is_empty() {
            continue;
        }
        match c.name.local.as_str() {
            "ElementName" => s.element_name = Some(text),
            "InstanceID" | "InstanceId" => s.instance_id = Some(text),
            "VirtualSystemIdentifier" => s.virtual_system_identifier = Some(text),
            "VirtualSystemType" => s
                .virtual_system_types
                .extend(text.split_whitespace().map(str::to_owned)),
            _ => s.other_properties.push((c.name.local.clone(), text)),
        }
    }
    s.other_properties.sort_by(|a, b| a.0.cmp(&b.0));
    s
}

fn set_once(
    slot: &mut Option<String>,
    value: String,
    ctx: &dyn Fn() -> String,
    field: &'static str,
) -> Result<(), DescriptorError> {
    if slot.is_some() {
        return Err(invalid(ctx, field, &value, "one value, not several"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_item(
    el: &XmlElement,
    kind: ItemKind,
    parent: &dyn Fn() -> String,
) -> Result<HardwareItem, DescriptorError> {
    let ctx = || format!("{} in {}", kind.element_name(), parent());
    let mut item = HardwareItem::new(kind, "");
    if let Some(v) = ovf_attr(el, "required") {
        item.required = parse_bool(v, &ctx, "required")?;
    }
    if let Some(v) = ovf_attr(el, "configuration") {
        item.configurations = v.split_whitespace().map(str::to_owned).collect();
    }
    item.bound = ovf_attr(el, "bound").map(str::to_owned);
    let mut instance_id = None;
    let mut resource_type = None;
    let mut virtual_quantity = None;
    let mut automatic_allocation = None;
    for c in el.elements() {
        if !is_cim_property(c) {
            item.extensions.push(c.clone());
            continue;
        }
        let text = c.text();
        let nil = c
            .attribute_ns(Some(super::model::NS_XSI), "nil")
            .is_some_and(|v| v == "true");
        if text.is_empty() || nil {
            continue;
        }
        let field = c.name.local.as_str();
        match field {
            "InstanceID" | "InstanceId" => set_once(&mut instance_id, text, &ctx, "InstanceID")?,
            "ResourceType" => set_once(&mut resource_type, text, &ctx, "ResourceType")?,
            "VirtualQuantity" => set_once(&mut virtual_quantity, text, &ctx, "VirtualQuantity")?,
            "AutomaticAllocation" => {
                set_once(&mut automatic_allocation, text, &ctx, "AutomaticAllocation")?;
            }
            "OtherResourceType" => {
                set_once(
                    &mut item.other_resource_type,
                    text,
                    &ctx,
                    "OtherResourceType",
                )?;
            }
            "ResourceSubType" => {
                set_once(&mut item.resource_sub_type, text, &ctx, "ResourceSubType")?;
            }
            "ElementName" => set_once(&mut item.element_name, text, &ctx, "ElementName")?,
            "Caption" => set_once(&mut item.caption, text, &ctx, "Caption")?,
            "Description" => set_once(&mut item.description, text, &ctx, "Description")?,
            "Address" => set_once(&mut item.address, text, &ctx, "Address")?,
            "AddressOnParent" => {
                set_once(&mut item.address_on_parent, text, &ctx, "AddressOnParent")?;
            }
            "Parent" => set_once(&mut item.parent, text, &ctx, "Parent")?,
            "AllocationUnits" => {
                set_once(&mut item.allocation_units, text, &ctx, "AllocationUnits")?;
            }
            "VirtualQuantityUnits" => set_once(
                &mut item.virtual_quantity_units,
                text,
                &ctx,
                "VirtualQuantityUnits",
            )?,
            "Connection" => item.connections.push(text),
            "HostResource" => item.host_resources.push(text),
            _ => item.other_properties.push((field.to_owned(), text)),
        }
    }
    item.other_properties.sort_by(|a, b| a.0.cmp(&b.0));
    item.instance_id = instance_id.ok_or_else(|| DescriptorError::MissingElement {
        element: ctx(),
        child: "InstanceID",
    })?;
    let ctx = || {
        format!(
            "{} {} in {}",
            kind.element_name(),
            item.instance_id,
            parent()
        )
    };
    if let Some(rt) = resource_type {
        let v = parse_u64(&rt, &ctx, "ResourceType")?;
        item.resource_type =
            Some(u16::try_from(v).map_err(|_| {
                invalid(&ctx, "ResourceType", &rt, "a CIM resource type below 65536")
            })?);
    }
    if let Some(q) = virtual_quantity {
        item.virtual_quantity = Some(parse_u64(&q, &ctx, "VirtualQuantity")?);
    }
    if let Some(a) = automatic_allocation {
        item.automatic_allocation = Some(parse_bool(&a, &ctx, "AutomaticAllocation")?);
    }
    Ok(item)
}
