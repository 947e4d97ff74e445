//! Hardware items -> CPUs, memory, controllers, drives and NICs.

use std::collections::HashMap;

use super::error::MapError;
use super::hardware::{
    Bus, ControllerClass, HostResource, classify_controller, nic_model, parse_host_resource,
    resource_type as rt,
};
use super::map::{Mapper, Scope, bounded};
use super::model::*;
use super::units::{byte_multiplier, scale};
use super::vm::*;

/// A drive with its boot-order key: (controller position in the document,
/// position on the controller, item position).
type SortKey = (usize, u32, usize);

impl<'a> Mapper<'a> {
    pub(crate) fn hardware(
        &mut self,
        h: &'a VirtualHardwareSection,
        chain: &[Scope<'a>],
        vm: &mut VmDescription,
    ) -> Result<(), MapError> {
        let cfg = self.configuration.clone();
        let items: Vec<&'a HardwareItem> = h
            .items
            .iter()
            .filter(|i| i.in_configuration(cfg.as_deref()))
            .collect();
        // Controllers first, so drives can refer to them whatever the order.
        let mut controllers: HashMap<&str, (usize, Controller)> = HashMap::new();
        let mut per_bus: HashMap<Bus, u32> = HashMap::new();
        for (doc, item) in items.iter().enumerate() {
            let Some(t) = item.resource_type.filter(|_| !is_range_bound(item)) else {
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
        let mut disks: Vec<(SortKey, DiskAttachment)> = Vec::new();
        let mut cdroms: Vec<(SortKey, CdromAttachment)> = Vec::new();
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
            let placement = || -> (Option<DeviceAddress>, SortKey) {
                let position = item
                    .address_on_parent
                    .as_deref()
                    .and_then(|a| a.trim().parse::<u32>().ok());
                match item.parent.as_deref().and_then(|p| controllers.get(p)) {
                    None => (None, (usize::MAX, u32::MAX, doc)),
                    Some((cdoc, c)) => (
                        Some(DeviceAddress {
                            controller_id: c.instance_id.clone(),
                            bus: c.bus,
                            controller_index: c.index,
                            position,
                        }),
                        (*cdoc, position.unwrap_or(u32::MAX), doc),
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
                rt::DISK_DRIVE => match self.disk_backing(item, chain)? {
                    Ok(backing) => {
                        let (address, key) = placement();
                        disks.push((
                            key,
                            DiskAttachment {
                                instance_id: item.instance_id.clone(),
                                name: item_name(item),
                                backing,
                                address,
                            },
                        ));
                    }
                    Err(r) => vm.unmapped.push(unmapped(r)),
                },
                rt::CD_DRIVE | rt::DVD_DRIVE => match self.cd_backing(item, chain)? {
                    Ok(image) => {
                        let (address, key) = placement();
                        cdroms.push((
                            key,
                            CdromAttachment {
                                instance_id: item.instance_id.clone(),
                                name: item_name(item),
                                image,
                                address,
                            },
                        ));
                    }
                    Err(r) => vm.unmapped.push(unmapped(r)),
                },
                rt::ETHERNET_ADAPTER | rt::OTHER_NETWORK_ADAPTER => {
                    let network = item.connections.first().cloned();
                    let network_declared = network
                        .as_deref()
                        .is_some_and(|n| self.networks.contains(n));
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
        disks.sort_by_key(|(k, _)| *k);
        cdroms.sort_by_key(|(k, _)| *k);
        vm.disks = disks.into_iter().map(|(_, d)| d).collect();
        vm.cdroms = cdroms.into_iter().map(|(_, c)| c).collect();
        Ok(())
    }

    /// The disk or file behind a disk drive; the outer error aborts the
    /// mapping, the inner one leaves the item unmapped.
    fn disk_backing(
        &mut self,
        item: &HardwareItem,
        chain: &[Scope<'a>],
    ) -> Result<Result<Backing, UnmappedReason>, MapError> {
        let Some(hr) = item.host_resources.first() else {
            return Ok(Err(UnmappedReason::NoHostResource));
        };
        let disk = match parse_host_resource(hr) {
            HostResource::Disk(id) => match self.disks.get(id.as_str()) {
                Some(d) => *d,
                None => return Ok(Err(UnmappedReason::UnknownDisk { disk_id: id })),
            },
            HostResource::File(id) => {
                return Ok(match self.files.get(id.as_str()) {
                    Some(f) => Ok(Backing::File(*f)),
                    None => Err(UnmappedReason::UnknownFile { file_id: id }),
                });
            }
            HostResource::Other => {
                // Some exports name the disk or its file directly.
                let v = hr.trim();
                match self.disks.get(v).or_else(|| self.disks_by_file.get(v)) {
                    Some(d) => *d,
                    None => {
                        return Ok(Err(UnmappedReason::UnsupportedHostResource {
                            value: hr.clone(),
                        }));
                    }
                }
            }
        };
        Ok(Ok(Backing::Disk(self.disk(disk, chain)?)))
    }

    fn cd_backing(
        &mut self,
        item: &HardwareItem,
        chain: &[Scope<'a>],
    ) -> Result<Result<Option<Backing>, UnmappedReason>, MapError> {
        let Some(hr) = item.host_resources.first() else {
            return Ok(Ok(None));
        };
        Ok(match parse_host_resource(hr) {
            HostResource::File(id) => match self.files.get(id.as_str()) {
                Some(f) => Ok(Some(Backing::File(*f))),
                None => Err(UnmappedReason::UnknownFile { file_id: id }),
            },
            HostResource::Disk(id) => match self.disks.get(id.as_str()) {
                Some(d) => Ok(Some(Backing::Disk(self.disk(d, chain)?))),
                None => Err(UnmappedReason::UnknownDisk { disk_id: id }),
            },
            // A host device path ("/dev/cdrom", "cdrom0") leaves the drive empty.
            HostResource::Other => Ok(None),
        })
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
