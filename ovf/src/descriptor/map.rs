//! Model -> neutral appliance description: collections, systems, and the
//! disks and files they share.

use std::collections::{HashMap, HashSet};

use super::error::MapError;
use super::hardware::disk_format;
use super::model::*;
use super::os::os_type_name;
use super::units::{byte_multiplier, scale};
use super::vm::*;

/// Maps an envelope to an [`ApplianceDescription`]: one [`VmDescription`]
/// per VirtualSystem (collections flattened in document order), with the
/// items of the chosen deployment option and hardware section.
///
/// Disk capacities written as `${key}` take the default value of the
/// property `key` (plain or `class.key.instance`) from the ProductSections
/// of the first system that uses the disk, then of its enclosing
/// collections, innermost first.
pub fn describe(
    envelope: &Envelope,
    options: &MapOptions,
) -> Result<ApplianceDescription, MapError> {
    for e in &envelope.extensions {
        if e.required {
            return Err(MapError::RequiredSectionUnsupported {
                section: e.element.name.qualified(),
                place: "the envelope".into(),
            });
        }
    }
    let configuration = match (&options.configuration, &envelope.deployment_options) {
        (Some(c), Some(d)) if d.configurations.iter().any(|x| &x.id == c) => Some(c.clone()),
        (Some(c), _) => return Err(MapError::UnknownConfiguration(c.clone())),
        (None, Some(d)) => d.default_configuration().map(|c| c.id.clone()),
        (None, None) => None,
    };
    let mut mapper = Mapper {
        options,
        configuration: configuration.clone(),
        files: envelope
            .references
            .iter()
            .enumerate()
            .map(|(i, f)| (f.id.as_str(), FileIndex(i)))
            .collect(),
        disks: envelope
            .disk_section
            .iter()
            .flat_map(|d| d.disks.iter())
            .map(|d| (d.disk_id.as_str(), d))
            .collect(),
        disks_by_file: HashMap::new(),
        registered: HashMap::new(),
        disk_out: Vec::new(),
        properties: HashMap::new(),
        networks: envelope
            .network_section
            .iter()
            .flat_map(|n| n.networks.iter().map(|x| x.name.as_str()))
            .collect(),
        startup: Vec::new(),
        collections: Vec::new(),
        vms: Vec::new(),
    };
    for d in envelope.disk_section.iter().flat_map(|d| d.disks.iter()) {
        if let Some(f) = &d.file_ref {
            mapper.disks_by_file.entry(f.as_str()).or_insert(d);
        }
    }
    let mut chain = Vec::new();
    mapper.walk(&envelope.content, None, &mut chain)?;
    Ok(ApplianceDescription {
        version: envelope.version,
        configuration,
        files: envelope
            .references
            .iter()
            .map(|f| FileInfo {
                id: f.id.clone(),
                href: f.href.clone(),
                size: f.size,
                compression: f.compression.clone(),
                chunk_size: f.chunk_size,
            })
            .collect(),
        disks: mapper.disk_out,
        networks: envelope
            .network_section
            .iter()
            .flat_map(|n| n.networks.iter().map(|x| x.name.clone()))
            .collect(),
        collections: mapper.collections,
        vms: mapper.vms,
    })
}

/// A system or collection whose ProductSections supply properties.
pub(crate) type Scope<'a> = (&'a str, &'a ContentSections);

pub(crate) struct Mapper<'a> {
    options: &'a MapOptions,
    pub(crate) configuration: Option<String>,
    pub(crate) files: HashMap<&'a str, FileIndex>,
    pub(crate) disks: HashMap<&'a str, &'a VirtualDisk>,
    pub(crate) disks_by_file: HashMap<&'a str, &'a VirtualDisk>,
    registered: HashMap<&'a str, DiskIndex>,
    disk_out: Vec<DiskInfo>,
    /// Per system or collection id: property key (plain and qualified) ->
    /// (qualified key, default value).
    properties: HashMap<&'a str, HashMap<String, (String, Option<&'a str>)>>,
    /// NetworkSection names.
    pub(crate) networks: HashSet<&'a str>,
    /// Per collection (same index): system id -> startup order.
    startup: Vec<HashMap<&'a str, u32>>,
    collections: Vec<CollectionDescription>,
    vms: Vec<VmDescription>,
}

impl<'a> Mapper<'a> {
    fn walk(
        &mut self,
        content: &'a Content,
        parent: Option<CollectionIndex>,
        chain: &mut Vec<Scope<'a>>,
    ) -> Result<(), MapError> {
        match content {
            Content::System(vs) => {
                chain.push((vs.id.as_str(), &vs.sections));
                let result = self.system(vs, parent, chain);
                chain.pop();
                let vm = result?;
                self.vms.push(vm);
            }
            Content::Collection(c) => {
                check_required(&c.sections, &c.id)?;
                let index = CollectionIndex(self.collections.len());
                self.collections.push(CollectionDescription {
                    id: c.id.clone(),
                    name: c.name.clone().unwrap_or_else(|| c.id.clone()),
                    parent,
                    products: c.sections.products.iter().map(product_info).collect(),
                    eula_present: !c.sections.eulas.is_empty(),
                    startup: c
                        .sections
                        .startup
                        .iter()
                        .flat_map(|s| s.items.iter())
                        .map(|i| StartupEntry {
                            id: i.id.clone(),
                            order: i.order,
                            start_delay: i.start_delay,
                            start_action: i.start_action.clone(),
                            stop_delay: i.stop_delay,
                            stop_action: i.stop_action.clone(),
                        })
                        .collect(),
                    ignored_sections: ignored(&c.sections),
                });
                let mut orders = HashMap::new();
                for i in c.sections.startup.iter().flat_map(|s| s.items.iter()) {
                    orders.entry(i.id.as_str()).or_insert(i.order);
                }
                self.startup.push(orders);
                chain.push((c.id.as_str(), &c.sections));
                for child in &c.children {
                    self.walk(child, Some(index), chain)?;
                }
                chain.pop();
            }
        }
        Ok(())
    }

    fn system(
        &mut self,
        vs: &'a VirtualSystem,
        collection: Option<CollectionIndex>,
        chain: &[Scope<'a>],
    ) -> Result<VmDescription, MapError> {
        check_required(&vs.sections, &vs.id)?;
        let hardware = match &self.options.system_type {
            Some(t) => Some(
                vs.sections
                    .hardware
                    .iter()
                    .find(|h| {
                        h.system.as_ref().is_some_and(|s| {
                            s.virtual_system_types
                                .iter()
                                .any(|x| x.eq_ignore_ascii_case(t))
                        })
                    })
                    .ok_or_else(|| MapError::UnknownSystemType {
                        system: vs.id.clone(),
                        system_type: t.clone(),
                    })?,
            ),
            None => vs.sections.hardware.first(),
        };
        let eula_present = chain.iter().any(|(_, s)| !s.eulas.is_empty());
        let startup_order = collection
            .and_then(|c| self.startup.get(c.0))
            .and_then(|m| m.get(vs.id.as_str()).copied());
        let mut vm = VmDescription {
            id: vs.id.clone(),
            name: vs.name.clone().unwrap_or_else(|| vs.id.clone()),
            collection,
            startup_order,
            system_types: Vec::new(),
            vcpus: None,
            memory_bytes: None,
            controllers: Vec::new(),
            disks: Vec::new(),
            cdroms: Vec::new(),
            nics: Vec::new(),
            os: vs.sections.operating_system.as_ref().map(|os| OsInfo {
                id: os.id,
                name: os_type_name(os.id).map(str::to_owned),
                description: os.description.clone(),
                vmw_os_type: os.vmw_os_type.clone(),
                version: os.version.clone(),
            }),
            products: vs.sections.products.iter().map(product_info).collect(),
            eula_present,
            annotation: vs
                .sections
                .annotation
                .as_ref()
                .map(|a| a.annotation.clone()),
            unmapped: Vec::new(),
            ignored_sections: ignored(&vs.sections),
        };
        if let Some(h) = hardware {
            for e in &h.extensions {
                let required = e
                    .attributes
                    .iter()
                    .any(|a| a.name.local == "required" && a.value.trim() == "true");
                if required {
                    return Err(MapError::RequiredSectionUnsupported {
                        section: e.name.qualified(),
                        place: vs.id.clone(),
                    });
                }
                vm.ignored_sections.push(e.name.qualified());
            }
            vm.system_types = h
                .system
                .as_ref()
                .map(|s| s.virtual_system_types.clone())
                .unwrap_or_default();
            self.hardware(h, chain, &mut vm)?;
        }
        Ok(vm)
    }

    /// The index of a disk in the output, registering it (and its parents,
    /// oldest first) on first use.
    pub(crate) fn disk(
        &mut self,
        disk: &'a VirtualDisk,
        chain: &[Scope<'a>],
    ) -> Result<DiskIndex, MapError> {
        if let Some(i) = self.registered.get(disk.disk_id.as_str()) {
            return Ok(*i);
        }
        // Walk up to the first registered ancestor (or the root), iteratively.
        let mut pending = vec![disk];
        let mut seen = HashSet::from([disk.disk_id.as_str()]);
        let mut cur = disk;
        while let Some(p) = &cur.parent_ref {
            if self.registered.contains_key(p.as_str()) {
                break;
            }
            let bad = || MapError::BadParent {
                disk: cur.disk_id.clone(),
                parent: p.clone(),
            };
            let parent = *self.disks.get(p.as_str()).ok_or_else(bad)?;
            if !seen.insert(parent.disk_id.as_str()) {
                return Err(MapError::ParentLoop {
                    disk: disk.disk_id.clone(),
                    parent: parent.disk_id.clone(),
                });
            }
            pending.push(parent);
            cur = parent;
        }
        let mut last = None;
        for d in pending.into_iter().rev() {
            let file = match &d.file_ref {
                None => None,
                Some(f) => {
                    Some(
                        *self
                            .files
                            .get(f.as_str())
                            .ok_or_else(|| MapError::UnknownFile {
                                disk: d.disk_id.clone(),
                                file: f.clone(),
                            })?,
                    )
                }
            };
            let parent = d
                .parent_ref
                .as_deref()
                .and_then(|p| self.registered.get(p).copied());
            let info = DiskInfo {
                disk_id: d.disk_id.clone(),
                file,
                capacity_bytes: self.capacity_bytes(d, chain)?,
                populated_size: d.populated_size,
                format: disk_format(d.format.as_deref()),
                parent,
            };
            let index = DiskIndex(self.disk_out.len());
            self.disk_out.push(info);
            self.registered.insert(d.disk_id.as_str(), index);
            last = Some(index);
        }
        // `pending` always holds `disk`, so the loop ran.
        last.ok_or_else(|| MapError::BadParent {
            disk: disk.disk_id.clone(),
            parent: String::new(),
        })
    }

    /// The value of property `key`: the user's choice (by the key as
    /// referenced or the property's qualified key), else its default.
    fn property(&mut self, key: &str, chain: &[Scope<'a>]) -> Option<Option<&'a str>> {
        let options = self.options;
        let chosen = |k: &str| {
            options
                .property_values
                .iter()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.as_str())
        };
        for (id, sections) in chain.iter().rev() {
            let map = self.properties.entry(id).or_insert_with(|| {
                let mut map = HashMap::new();
                for p in &sections.products {
                    for x in &p.properties {
                        let qualified = p.qualified_key(&x.key);
                        let value = x.value.as_deref();
                        map.entry(x.key.clone())
                            .or_insert((qualified.clone(), value));
                        map.entry(qualified.clone()).or_insert((qualified, value));
                    }
                }
                map
            });
            if let Some((qualified, default)) = map.get(key) {
                return Some(chosen(key).or_else(|| chosen(qualified)).or(*default));
            }
        }
        chosen(key).map(Some)
    }

    fn capacity_bytes(
        &mut self,
        disk: &'a VirtualDisk,
        chain: &[Scope<'a>],
    ) -> Result<u64, MapError> {
        let what = || format!("capacity of disk {}", disk.disk_id);
        let value = match &disk.capacity {
            Capacity::Value(v) => *v,
            Capacity::Property(key) => {
                let raw = self
                    .property(key, chain)
                    .ok_or_else(|| MapError::UnknownProperty {
                        disk: disk.disk_id.clone(),
                        property: key.clone(),
                    })?
                    .unwrap_or("");
                raw.trim()
                    .parse::<u64>()
                    .map_err(|_| MapError::InvalidQuantity {
                        what: format!("property {key} used as capacity of disk {}", disk.disk_id),
                        value: raw.chars().take(64).collect(),
                    })?
            }
        };
        let multiplier = match &disk.capacity_allocation_units {
            None => 1,
            Some(u) => byte_multiplier(u).map_err(|source| MapError::InvalidUnits {
                what: what(),
                units: u.clone(),
                source,
            })?,
        };
        bounded(scale(value, multiplier), MAX_DISK_BYTES, what)
    }
}

fn check_required(sections: &ContentSections, place: &str) -> Result<(), MapError> {
    match sections.extensions.iter().find(|e| e.required) {
        Some(e) => Err(MapError::RequiredSectionUnsupported {
            section: e.element.name.qualified(),
            place: place.to_owned(),
        }),
        None => Ok(()),
    }
}

fn ignored(sections: &ContentSections) -> Vec<String> {
    sections
        .extensions
        .iter()
        .map(|e| e.element.name.qualified())
        .collect()
}

/// Checks a byte count against a limit.
pub(crate) fn bounded(
    value: Option<u128>,
    limit: u64,
    what: impl Fn() -> String,
) -> Result<u64, MapError> {
    let v = value.unwrap_or(u128::MAX);
    if v > u128::from(limit) {
        return Err(MapError::TooLarge {
            what: what(),
            bytes: v,
            limit,
        });
    }
    u64::try_from(v).map_err(|_| MapError::TooLarge {
        what: what(),
        bytes: v,
        limit,
    })
}

fn product_info(p: &ProductSection) -> ProductInfo {
    ProductInfo {
        class: p.class.clone(),
        instance: p.instance.clone(),
        product: p.product.clone(),
        vendor: p.vendor.clone(),
        version: p.version.clone(),
        full_version: p.full_version.clone(),
        product_url: p.product_url.clone(),
        vendor_url: p.vendor_url.clone(),
        properties: p
            .properties
            .iter()
            .map(|x| PropertyInfo {
                key: p.qualified_key(&x.key),
                type_name: x.type_name.clone(),
                default_value: if x.password { None } else { x.value.clone() },
                user_configurable: x.user_configurable,
                password: x.password,
                label: x.label.clone(),
                description: x.description.clone(),
                category: x.category.clone(),
            })
            .collect(),
    }
}
