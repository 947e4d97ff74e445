//! The neutral VM description: what the importer and `vmimport inspect`
//! consume, one per VirtualSystem, independent of OVF's document structure.

use std::fmt;

use serde::Serialize;

use super::hardware::{Bus, DiskFormat, NicModel};
use super::model::ItemKind;

/// Largest disk capacity the mapping accepts (2^60 bytes, 1 EiB).
pub const MAX_DISK_BYTES: u64 = 1 << 60;
/// Largest memory size the mapping accepts (2^52 bytes, the x86-64
/// physical address limit).
pub const MAX_MEMORY_BYTES: u64 = 1 << 52;

/// Choices the mapping needs from the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Deployment option (`DeploymentOptionSection/Configuration ovf:id`);
    /// `None` picks the default one.
    pub configuration: Option<String>,
    /// Use the first VirtualHardwareSection whose VirtualSystemType lists
    /// this token (case-insensitive); `None` takes the first section.
    pub system_type: Option<String>,
    /// Values the user chose for ProductSection properties, by plain or
    /// qualified key (`class.key.instance`); they override the defaults
    /// where the descriptor refers to a property (`${key}` capacities).
    pub property_values: Vec<(String, String)>,
}

/// What an envelope describes: the files and disks it carries once, the
/// collections, and one VM per VirtualSystem. VMs refer to disks, files and
/// collections by index, so that nothing shared is repeated per VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplianceDescription {
    /// OVF version of the descriptor.
    pub version: super::model::OvfVersion,
    /// The deployment option the items were selected for.
    pub configuration: Option<String>,
    /// Every `References/File`, in order; `FileIndex` values index this.
    pub files: Vec<FileInfo>,
    /// Every DiskSection disk a drive uses (and the parents they need), in
    /// the order first used; `DiskIndex` values index this.
    pub disks: Vec<DiskInfo>,
    /// Network names from NetworkSection.
    pub networks: Vec<String>,
    /// VirtualSystemCollections, outermost first, in document order.
    pub collections: Vec<CollectionDescription>,
    /// One VM per VirtualSystem, in document order.
    pub vms: Vec<VmDescription>,
}

impl ApplianceDescription {
    /// The file behind a disk, if any.
    pub fn disk_file(&self, disk: DiskIndex) -> Option<&FileInfo> {
        self.disks
            .get(disk.0)
            .and_then(|d| d.file)
            .and_then(|f| self.files.get(f.0))
    }
}

/// Index into [`ApplianceDescription::files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FileIndex(pub usize);

/// Index into [`ApplianceDescription::disks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DiskIndex(pub usize);

/// Index into [`ApplianceDescription::collections`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CollectionIndex(pub usize);

/// A VirtualSystemCollection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectionDescription {
    /// `ovf:id`.
    pub id: String,
    /// `Name`, else the id.
    pub name: String,
    /// The enclosing collection.
    pub parent: Option<CollectionIndex>,
    /// Its ProductSections.
    pub products: Vec<ProductInfo>,
    /// Whether it carries a EulaSection.
    pub eula_present: bool,
    /// Its StartupSection entries.
    pub startup: Vec<StartupEntry>,
    /// Qualified names of its optional sections that were ignored.
    pub ignored_sections: Vec<String>,
}

/// A StartupSection entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartupEntry {
    /// The system or collection it applies to.
    pub id: String,
    /// `ovf:order`.
    pub order: u32,
    /// `ovf:startDelay` in seconds.
    pub start_delay: Option<u32>,
    /// `ovf:startAction`.
    pub start_action: Option<String>,
    /// `ovf:stopDelay` in seconds.
    pub stop_delay: Option<u32>,
    /// `ovf:stopAction`.
    pub stop_action: Option<String>,
}

/// A DiskSection disk a drive uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskInfo {
    /// `ovf:diskId`.
    pub disk_id: String,
    /// The backing file; `None` for a blank disk.
    pub file: Option<FileIndex>,
    /// Virtual size in bytes.
    pub capacity_bytes: u64,
    /// `ovf:populatedSize`.
    pub populated_size: Option<u64>,
    /// Image format from `ovf:format`.
    pub format: DiskFormat,
    /// `ovf:parentRef`: the disk this one is a delta of.
    pub parent: Option<DiskIndex>,
}

/// What backs a drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backing {
    /// A DiskSection disk (`ovf:/disk/ID`).
    Disk(DiskIndex),
    /// A References file named directly (`ovf:/file/ID`).
    File(FileIndex),
}

/// One virtual machine, from one VirtualSystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmDescription {
    /// `VirtualSystem ovf:id`.
    pub id: String,
    /// `Name`, else the id.
    pub name: String,
    /// The enclosing VirtualSystemCollection.
    pub collection: Option<CollectionIndex>,
    /// The `ovf:order` of this system in the enclosing StartupSection.
    pub startup_order: Option<u32>,
    /// VirtualSystemType tokens of the hardware section used.
    pub system_types: Vec<String>,
    /// Number of virtual CPUs.
    pub vcpus: Option<u32>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Storage controllers in document order.
    pub controllers: Vec<Controller>,
    /// Hard disks in boot order: by controller (document order), then
    /// position on the controller, then document order; disks on no
    /// controller last.
    pub disks: Vec<DiskAttachment>,
    /// CD/DVD drives, in the same order as disks.
    pub cdroms: Vec<CdromAttachment>,
    /// Network adapters in document order.
    pub nics: Vec<Nic>,
    /// Guest operating system.
    pub os: Option<OsInfo>,
    /// This system's ProductSections (see the collections for theirs).
    pub products: Vec<ProductInfo>,
    /// Whether a EulaSection applies (here or on an enclosing collection).
    pub eula_present: bool,
    /// `AnnotationSection` text.
    pub annotation: Option<String>,
    /// Every hardware item of the selected configuration that was not used,
    /// and why.
    pub unmapped: Vec<UnmappedItem>,
    /// Qualified names of the optional sections and hardware extension
    /// elements that were ignored.
    pub ignored_sections: Vec<String>,
}

/// A storage controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Controller {
    /// Item `InstanceID`.
    pub instance_id: String,
    /// Bus kind.
    pub bus: Bus,
    /// `ResourceSubType` as written (`lsilogic`, `AHCI`, `PIIX4` ...).
    pub model: Option<String>,
    /// Order among the controllers of the same bus (0 = first).
    pub index: u32,
}

/// Where a drive is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceAddress {
    /// The controller's `InstanceID`.
    pub controller_id: String,
    /// The controller's bus.
    pub bus: Bus,
    /// The controller's index among those of its bus.
    pub controller_index: u32,
    /// `AddressOnParent` (unit number, port).
    pub position: Option<u32>,
}

/// A file from References, as a disk or CD-ROM image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// `ovf:id`.
    pub id: String,
    /// `ovf:href` as written; resolve it safely against the package.
    pub href: String,
    /// `ovf:size`.
    pub size: Option<u64>,
    /// `ovf:compression` (`gzip`).
    pub compression: Option<String>,
    /// `ovf:chunkSize`.
    pub chunk_size: Option<u64>,
}

/// A hard disk drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskAttachment {
    /// Item `InstanceID`.
    pub instance_id: String,
    /// Item `ElementName` (or `Caption`).
    pub name: Option<String>,
    /// What backs it.
    pub backing: Backing,
    /// Where it is attached.
    pub address: Option<DeviceAddress>,
}

/// A CD or DVD drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdromAttachment {
    /// Item `InstanceID`.
    pub instance_id: String,
    /// Item `ElementName` (or `Caption`).
    pub name: Option<String>,
    /// The image in the drive; `None` for an empty drive.
    pub image: Option<Backing>,
    /// Where it is attached.
    pub address: Option<DeviceAddress>,
}

/// A network adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    /// Item `InstanceID`.
    pub instance_id: String,
    /// Item `ElementName` (or `Caption`).
    pub name: Option<String>,
    /// `Connection`: the network name.
    pub network: Option<String>,
    /// Whether NetworkSection declares that network.
    pub network_declared: bool,
    /// Adapter model from `ResourceSubType`.
    pub adapter: NicModel,
    /// `Address`: the MAC address, as written.
    pub mac_address: Option<String>,
    /// `AutomaticAllocation`: connected at power-on (default true).
    pub connected: bool,
}

/// The guest operating system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// CIM OSType code.
    pub id: u16,
    /// CIM name of the code.
    pub name: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `vmw:osType`.
    pub vmw_os_type: Option<String>,
    /// `ovf:version`.
    pub version: Option<String>,
}

/// A ProductSection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductInfo {
    /// `ovf:class`.
    pub class: Option<String>,
    /// `ovf:instance`.
    pub instance: Option<String>,
    /// `Product`.
    pub product: Option<String>,
    /// `Vendor`.
    pub vendor: Option<String>,
    /// `Version`.
    pub version: Option<String>,
    /// `FullVersion`.
    pub full_version: Option<String>,
    /// `ProductUrl`.
    pub product_url: Option<String>,
    /// `VendorUrl`.
    pub vendor_url: Option<String>,
    /// Properties.
    pub properties: Vec<PropertyInfo>,
}

/// A ProductSection property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyInfo {
    /// Fully qualified key (`class.key.instance`).
    pub key: String,
    /// `ovf:type`.
    pub type_name: String,
    /// Default value; withheld (`None`) for password properties.
    pub default_value: Option<String>,
    /// `ovf:userConfigurable`.
    pub user_configurable: bool,
    /// `ovf:password`.
    pub password: bool,
    /// `Label`.
    pub label: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `Category`.
    pub category: Option<String>,
}

/// A hardware item that was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmappedItem {
    /// `InstanceID`.
    pub instance_id: String,
    /// Element kind.
    pub kind: ItemKind,
    /// `ResourceType`.
    pub resource_type: Option<u16>,
    /// `ResourceSubType`.
    pub resource_sub_type: Option<String>,
    /// `ElementName` (or `Caption`).
    pub name: Option<String>,
    /// `ovf:required`: the producer says the VM needs it.
    pub required: bool,
    /// Why it was not used.
    pub reason: UnmappedReason,
}

/// Why a hardware item was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum UnmappedReason {
    /// A device kind the VM description does not carry (serial, USB, ...).
    NotModelled {
        /// The device kind.
        device: &'static str,
    },
    /// A resource type with no mapping.
    UnsupportedResourceType {
        /// The code.
        resource_type: u16,
    },
    /// No `ResourceType`.
    NoResourceType,
    /// A storage controller whose `ResourceSubType` is not known.
    UnknownControllerSubtype {
        /// The subtype as written.
        sub_type: String,
    },
    /// A second processor or memory item; the first was used.
    Duplicate,
    /// `ovf:bound="min"` or `"max"`: a range limit, not the value.
    RangeBound {
        /// The bound.
        bound: String,
    },
    /// No `VirtualQuantity`.
    MissingQuantity,
    /// A `VirtualQuantity` out of range.
    InvalidQuantity {
        /// The value.
        value: u64,
    },
    /// A disk drive with no `HostResource`.
    NoHostResource,
    /// A `HostResource` that is not an `ovf:/disk/` or `ovf:/file/` reference.
    UnsupportedHostResource {
        /// The value.
        value: String,
    },
    /// `ovf:/disk/ID` with no such disk.
    UnknownDisk {
        /// The disk id.
        disk_id: String,
    },
    /// `ovf:/file/ID` with no such file.
    UnknownFile {
        /// The file id.
        file_id: String,
    },
}

impl fmt::Display for UnmappedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmappedReason::NotModelled { device } => {
                write!(f, "{device} devices are not carried over")
            }
            UnmappedReason::UnsupportedResourceType { resource_type } => write!(
                f,
                "resource type {resource_type} ({}) is not supported",
                super::hardware::resource_type_name(*resource_type)
            ),
            UnmappedReason::NoResourceType => write!(f, "item has no resource type"),
            UnmappedReason::UnknownControllerSubtype { sub_type } => {
                write!(f, "storage controller subtype {sub_type:?} is not known")
            }
            UnmappedReason::Duplicate => write!(f, "a previous item of this type was used"),
            UnmappedReason::RangeBound { bound } => write!(f, "a {bound} bound, not the value"),
            UnmappedReason::MissingQuantity => write!(f, "item has no virtual quantity"),
            UnmappedReason::InvalidQuantity { value } => {
                write!(f, "virtual quantity {value} is out of range")
            }
            UnmappedReason::NoHostResource => write!(f, "disk drive has no host resource"),
            UnmappedReason::UnsupportedHostResource { value } => {
                write!(f, "host resource {value:?} is not a disk or file reference")
            }
            UnmappedReason::UnknownDisk { disk_id } => {
                write!(f, "disk {disk_id:?} is not in DiskSection")
            }
            UnmappedReason::UnknownFile { file_id } => {
                write!(f, "file {file_id:?} is not in References")
            }
        }
    }
}
