//! Model -> neutral VM descriptions.

use std::collections::{HashMap, HashSet};

use super::error::MapError;
use super::hardware::{
    ControllerClass, DiskFormat, HostResource, classify_controller, disk_format, nic_model,
    parse_host_resource, resource_type as rt,
};
use super::model::*;
use super::os::os_type_name;
use super::units::{byte_multiplier, scale};
use super::vm::*;

/// One [`VmDescription`] per VirtualSystem, collections flattened in
/// document order.
pub fn describe(envelope: &Envelope, options: &MapOptions) -> Result<Vec<VmDescription>, MapError> {
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
    let mapper = Mapper {
        envelope,
        options,
        configuration,
        files: envelope
            .references
            .iter()
            .map(|f| (f.id.as_str(), f))
            .collect(),
        disks: envelope
            .disk_section
            .iter()
            .flat_map(|d| d.disks.iter())
            .map(|d| (d.disk_id.as_str(), d))
            .collect(),
    };
    let mut out = Vec::new();
    let mut ancestors = Vec::new();
    mapper.walk(&envelope.content, &mut ancestors, &mut out)?;
    Ok(out)
}

struct Mapper<'a> {
    envelope: &'a Envelope,
    options: &'a MapOptions,
    configuration: Option<String>,
    files: HashMap<&'a str, &'a FileReference>,
    disks: HashMap<&'a str, &'a VirtualDisk>,
}

/// What a drive item resolved to before sorting.
struct Placed<T> {
    key: (usize, u32, usize),
    value: T,
}

impl<'a> Mapper<'a> {
    fn walk(
        &self,
        content: &'a Content,
        ancestors: &mut Vec<&'a VirtualSystemCollection>,
        out: &mut Vec<VmDescription>,
    ) -> Result<(), MapError> {
        match content {
            Content::System(vs) => out.push(self.system(vs, ancestors)?),
            Content::Collection(c) => {
                ancestors.push(c);
                for child in &c.children {
                    self.walk(child, ancestors, out)?;
                }
                ancestors.pop();
            }
        }
        Ok(())
    }

    fn system(
        &self,
        vs: &'a VirtualSystem,
        ancestors: &[&'a VirtualSystemCollection],
    ) -> Result<VmDescription, MapError> {
        let mut ignored = Vec::new();
        let own = std::iter::once((&vs.id, &vs.sections));
        let outer = ancestors.iter().rev().map(|c| (&c.id, &c.sections));
        let chain: Vec<(&String, &ContentSections)> = own.chain(outer).collect();
        for (id, sections) in &chain {
            for e in &sections.extensions {
                if e.required {
                    return Err(MapError::RequiredSectionUnsupported {
                        section: e.element.name.qualified(),
                        place: (*id).clone(),
                    });
                }
            }
        }
        ignored.extend(
            vs.sections
                .extensions
                .iter()
                .map(|e| e.element.name.qualified()),
        );
        let products: Vec<&ProductSection> = chain.iter().flat_map(|(_, s)| &s.products).collect();
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
        let mut vm = VmDescription {
            id: vs.id.clone(),
            name: vs.name.clone().unwrap_or_else(|| vs.id.clone()),
            collection_path: ancestors.iter().map(|c| c.id.clone()).collect(),
            startup_order: ancestors.last().and_then(|c| {
                c.sections
                    .startup
                    .as_ref()
                    .and_then(|s| s.items.iter().find(|i| i.id == vs.id))
                    .map(|i| i.order)
            }),
            configuration: self.configuration.clone(),
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
            products: products.iter().map(|p| product_info(p)).collect(),
            eula_present: chain.iter().any(|(_, s)| !s.eulas.is_empty()),
            annotation: vs
                .sections
                .annotation
                .as_ref()
                .map(|a| a.annotation.clone()),
            unmapped: Vec::new(),
            ignored_sections: Vec::new(),
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
                ignored.push(e.name.qualified());
            }
            vm.system_types = h
                .system
                .as_ref()
                .map(|s| s.virtual_system_types.clone())
                .unwrap_or_default();
            self.hardware(h, &products, &mut vm)?;
        }
        vm.ignored_sections = ignored;
        Ok(vm)
    }

    fn hardware(
        &self,
        h: &'a VirtualHardwareSection,
        products: &[&ProductSection],
        vm: &mut VmDescription,
    ) -> Result<(), MapError> {
        let cfg = self.configuration.as_deref();
        let items: Vec<&HardwareItem> =
            h.items.iter().filter(|i| i.in_configuration(cfg)).collect();
        // Controllers first, so drives can refer to them whatever the order.
        let mut controllers: HashMap<&str, (usize, Controller)> = HashMap::new();
        let mut per_bus: HashMap<super::hardware::Bus, u32> = HashMap::new();
        for (doc, item) in items.iter().enumerate() {
            if is_range_bound(item) {
                continue;
            }
            let Some(t) = item.resource_type else {
                continue;
            };
            if let ControllerClass::Controller(bus) =
                classify_controller(t, item.resource_sub_type.as_deref())
            {
                if controllers.contains_key(item.instance_id.as_str()) {
                    continue;
                }
                let n = per_bus.entry(bus).or_insert(0);
                let c = Controller {
                    instance_id: item.instance_id.clone(),
                    bus,
                    model: item.resource_sub_type.clone(),
                    index: *n,
                };
                *n = n.saturating_add(1);
                vm.controllers.push(c.clone());
                controllers.insert(item.instance_id.as_str(), (doc, c));
            }
        }
        let mut disks: Vec<Placed<DiskAttachment>> = Vec::new();
        let mut cdroms: Vec<Placed<CdromAttachment>> = Vec::new();
        for (doc, item) in items.iter().enumerate() {
            let unmapped = |reason| UnmappedItem {
                instance_id: item.instance_id.clone(),
                kind: item.kind,
                resource_type: item.resource_type,
                resource_sub_type: item.resource_sub_type.clone(),
                name: item_name(item),
                required: item.required,
                reason,
            };
            if let Some(bound) = item.bound.as_deref().filter(|_| is_range_bound(item)) {
                vm.unmapped.push(unmapped(UnmappedReason::RangeBound {
                    bound: bound.to_owned(),
                }));
                continue;
            }
            let Some(t) = item.resource_type else {
                vm.unmapped.push(unmapped(UnmappedReason::NoResourceType));
                continue;
            };
            // Where a drive sits. A Parent that is not a storage controller
            // (oVirt writes a null UUID) leaves the drive unattached.
            let placement = || -> (Option<DeviceAddress>, usize) {
                let position = item
                    .address_on_parent
                    .as_deref()
                    .and_then(|a| a.trim().parse::<u32>().ok());
                match item.parent.as_deref().and_then(|p| controllers.get(p)) {
                    None => (None, usize::MAX),
                    Some((cdoc, c)) => (
                        Some(DeviceAddress {
                            controller_id: c.instance_id.clone(),
                            bus: c.bus,
                            controller_index: c.index,
                            position,
                        }),
                        *cdoc,
                    ),
                }
            };
            match t {
                rt::PROCESSOR => {
                    if vm.vcpus.is_some() {
                        vm.unmapped.push(unmapped(UnmappedReason::Duplicate));
                        continue;
                    }
                    match item.virtual_quantity.or_else(|| topology_cpus(item)) {
                        None => vm.unmapped.push(unmapped(UnmappedReason::MissingQuantity)),
                        Some(q) => match u32::try_from(q) {
                            Ok(n) if n > 0 => vm.vcpus = Some(n),
                            _ => vm
                                .unmapped
                                .push(unmapped(UnmappedReason::InvalidQuantity { value: q })),
                        },
                    }
                }
                rt::MEMORY => {
                    if vm.memory_bytes.is_some() {
                        vm.unmapped.push(unmapped(UnmappedReason::Duplicate));
                        continue;
                    }
                    match item.virtual_quantity {
                        None => vm.unmapped.push(unmapped(UnmappedReason::MissingQuantity)),
                        Some(q) => vm.memory_bytes = Some(memory_bytes(item, q, &vm.id)?),
                    }
                }
                rt::IDE_CONTROLLER | rt::PARALLEL_SCSI_HBA | rt::OTHER_STORAGE_DEVICE => {
                    if !controllers.contains_key(item.instance_id.as_str()) {
                        vm.unmapped
                            .push(unmapped(UnmappedReason::UnknownControllerSubtype {
                                sub_type: item.resource_sub_type.clone().unwrap_or_default(),
                            }));
                    }
                }
                rt::DISK_DRIVE => {
                    let (address, cdoc) = placement();
                    match self.disk_drive(item, address, products)? {
                        Ok(d) => disks.push(Placed {
                            key: sort_key(cdoc, &d.address, doc),
                            value: d,
                        }),
                        Err(r) => vm.unmapped.push(unmapped(r)),
                    }
                }
                rt::CD_DRIVE | rt::DVD_DRIVE => {
                    let (address, cdoc) = placement();
                    match self.cd_drive(item, address) {
                        Ok(c) => cdroms.push(Placed {
                            key: sort_key(cdoc, &c.address, doc),
                            value: c,
                        }),
                        Err(r) => vm.unmapped.push(unmapped(r)),
                    }
                }
                rt::ETHERNET_ADAPTER | rt::OTHER_NETWORK_ADAPTER => {
                    let network = item.connections.first().cloned();
                    let network_declared = network.as_ref().is_some_and(|n| {
                        self.envelope
                            .network_section
                            .as_ref()
                            .is_some_and(|s| s.networks.iter().any(|x| &x.name == n))
                    });
                    vm.nics.push(Nic {
                        instance_id: item.instance_id.clone(),
                        name: item_name(item),
                        network,
                        network_declared,
                        adapter: nic_model(item.resource_sub_type.as_deref()),
                        mac_address: item.address.clone(),
                        connected: item.automatic_allocation.unwrap_or(true),
                    });
                }
                other => {
                    let device = match other {
                        rt::FLOPPY_DRIVE => Some("floppy"),
                        rt::SERIAL_PORT => Some("serial port"),
                        rt::PARALLEL_PORT => Some("parallel port"),
                        rt::USB_CONTROLLER => Some("USB controller"),
                        rt::GRAPHICS_CONTROLLER => Some("graphics"),
                        rt::SOUND_CARD => Some("sound card"),
                        _ => None,
                    };
                    vm.unmapped.push(unmapped(match device {
                        Some(device) => UnmappedReason::NotModelled { device },
                        None => UnmappedReason::UnsupportedResourceType {
                            resource_type: other,
                        },
                    }));
                }
            }
        }
        disks.sort_by_key(|p| p.key);
        cdroms.sort_by_key(|p| p.key);
        vm.disks = disks.into_iter().map(|p| p.value).collect();
        vm.cdroms = cdroms.into_iter().map(|p| p.value).collect();
        Ok(())
    }

    fn file_info(&self, id: &str) -> Option<FileInfo> {
        self.files.get(id).map(|f| FileInfo {
            id: f.id.clone(),
            href: f.href.clone(),
            size: f.size,
            compression: f.compression.clone(),
            chunk_size: f.chunk_size,
        })
    }

    /// A disk drive; the outer error aborts the mapping, the inner one
    /// leaves the item unmapped.
    fn disk_drive(
        &self,
        item: &HardwareItem,
        address: Option<DeviceAddress>,
        products: &[&ProductSection],
    ) -> Result<Result<DiskAttachment, UnmappedReason>, MapError> {
        let Some(hr) = item.host_resources.first() else {
            return Ok(Err(UnmappedReason::NoHostResource));
        };
        let disk = match parse_host_resource(hr) {
            HostResource::Disk(id) => match self.disks.get(id.as_str()) {
                Some(d) => *d,
                None => return Ok(Err(UnmappedReason::UnknownDisk { disk_id: id })),
            },
            HostResource::File(id) => {
                return Ok(match self.file_info(&id) {
                    None => Err(UnmappedReason::UnknownFile { file_id: id }),
                    Some(file) => Ok(DiskAttachment {
                        instance_id: item.instance_id.clone(),
                        name: item_name(item),
                        disk_id: None,
                        file: Some(file),
                        capacity_bytes: None,
                        populated_size: None,
                        format: DiskFormat::Unspecified,
                        parent_disk_id: None,
                        address,
                    }),
                });
            }
            HostResource::Other => {
                // Some exports name the disk or its file directly.
                let v = hr.trim();
                let direct = self.disks.get(v).copied().or_else(|| {
                    self.envelope
                        .disk_section
                        .iter()
                        .flat_map(|s| s.disks.iter())
                        .find(|d| d.file_ref.as_deref() == Some(v))
                });
                match direct {
                    Some(d) => d,
                    None => {
                        return Ok(Err(UnmappedReason::UnsupportedHostResource {
                            value: hr.clone(),
                        }));
                    }
                }
            }
        };
        let file = match &disk.file_ref {
            None => None,
            Some(f) => Some(self.file_info(f).ok_or_else(|| MapError::UnknownFile {
                disk: disk.disk_id.clone(),
                file: f.clone(),
            })?),
        };
        self.check_parents(disk)?;
        Ok(Ok(DiskAttachment {
            instance_id: item.instance_id.clone(),
            name: item_name(item),
            disk_id: Some(disk.disk_id.clone()),
            file,
            capacity_bytes: Some(capacity_bytes(disk, products)?),
            populated_size: disk.populated_size,
            format: disk_format(disk.format.as_deref()),
            parent_disk_id: disk.parent_ref.clone(),
            address,
        }))
    }

    fn check_parents(&self, disk: &VirtualDisk) -> Result<(), MapError> {
        let mut seen = HashSet::new();
        seen.insert(disk.disk_id.as_str());
        let mut cur = disk;
        while let Some(p) = &cur.parent_ref {
            let bad = || MapError::BadParent {
                disk: disk.disk_id.clone(),
                parent: p.clone(),
            };
            let parent = self.disks.get(p.as_str()).ok_or_else(bad)?;
            if !seen.insert(parent.disk_id.as_str()) {
                return Err(bad());
            }
            cur = parent;
        }
        Ok(())
    }

    fn cd_drive(
        &self,
        item: &HardwareItem,
        address: Option<DeviceAddress>,
    ) -> Result<CdromAttachment, UnmappedReason> {
        let mut cd = CdromAttachment {
            instance_id: item.instance_id.clone(),
            name: item_name(item),
            file: None,
            format: None,
            address,
        };
        if let Some(hr) = item.host_resources.first() {
            match parse_host_resource(hr) {
                HostResource::File(id) => {
                    cd.file = Some(
                        self.file_info(&id)
                            .ok_or(UnmappedReason::UnknownFile { file_id: id })?,
                    );
                }
                HostResource::Disk(id) => {
                    let disk = self
                        .disks
                        .get(id.as_str())
                        .ok_or(UnmappedReason::UnknownDisk { disk_id: id })?;
                    cd.format = Some(disk_format(disk.format.as_deref()));
                    if let Some(f) = &disk.file_ref {
                        cd.file = Some(
                            self.file_info(f)
                                .ok_or_else(|| UnmappedReason::UnknownFile {
                                    file_id: f.clone(),
                                })?,
                        );
                    }
                }
                // A host device path ("/dev/cdrom", "cdrom0") leaves the drive empty.
                HostResource::Other => {}
            }
        }
        Ok(cd)
    }
}

fn is_range_bound(item: &HardwareItem) -> bool {
    matches!(item.bound.as_deref(), Some("min") | Some("max"))
}

/// vCPUs from oVirt's topology properties when VirtualQuantity is absent.
fn topology_cpus(item: &HardwareItem) -> Option<u64> {
    let get = |k: &str| {
        item.other_properties
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    let sockets = get("num_of_sockets")?;
    let cores = get("cpu_per_socket").unwrap_or(1);
    let threads = get("threads_per_cpu").unwrap_or(1);
    sockets.checked_mul(cores)?.checked_mul(threads)
}

fn item_name(item: &HardwareItem) -> Option<String> {
    item.element_name.clone().or_else(|| item.caption.clone())
}

fn sort_key(
    controller_doc: usize,
    address: &Option<DeviceAddress>,
    doc: usize,
) -> (usize, u32, usize) {
    let position = address
        .as_ref()
        .and_then(|a| a.position)
        .unwrap_or(u32::MAX);
    (controller_doc, position, doc)
}

fn memory_bytes(item: &HardwareItem, quantity: u64, vm: &str) -> Result<u64, MapError> {
    let what = || format!("memory of {vm}");
    // AllocationUnits, else the newer VirtualQuantityUnits; producers that
    // write neither mean MiB.
    let units = item
        .allocation_units
        .as_deref()
        .or(item.virtual_quantity_units.as_deref());
    let multiplier = match units {
        None => 1 << 20,
        Some(u) => byte_multiplier(u).map_err(|source| MapError::InvalidUnits {
            what: what(),
            units: u.to_owned(),
            source,
        })?,
    };
    bounded(scale(quantity, multiplier), MAX_MEMORY_BYTES, what)
}

fn bounded(value: Option<u128>, limit: u64, what: impl Fn() -> String) -> Result<u64, MapError> {
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

fn capacity_bytes(disk: &VirtualDisk, products: &[&ProductSection]) -> Result<u64, MapError> {
    let what = || format!("capacity of disk {}", disk.disk_id);
    let value = match &disk.capacity {
        Capacity::Value(v) => *v,
        Capacity::Property(key) => {
            let prop = products.iter().find_map(|p| {
                p.properties
                    .iter()
                    .find(|x| &x.key == key || &p.qualified_key(&x.key) == key)
            });
            let prop = prop.ok_or_else(|| MapError::UnknownProperty {
                disk: disk.disk_id.clone(),
                property: key.clone(),
            })?;
            let raw = prop.value.as_deref().unwrap_or("");
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
