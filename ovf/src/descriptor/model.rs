//! The typed OVF descriptor model.
//!
//! The model stays close to the document: values are kept as written where
//! their interpretation belongs to the mapping (capacities, units, host
//! resources), so that the writer can reproduce them and the mapping can
//! report precisely what it could not use. Sections and elements the model
//! does not know are kept as [`XmlElement`] trees.

use serde::Serialize;

use super::xml::XmlElement;

/// Envelope namespace of OVF 0.9 (VMware's pre-standard format).
pub const NS_OVF_0_9: &str = "http://www.vmware.com/schema/ovf/1/envelope";
/// Envelope namespace of OVF 1.x.
pub const NS_OVF_1: &str = "http://schemas.dmtf.org/ovf/envelope/1";
/// The 1.x namespace as oVirt writes it, with a trailing slash.
pub const NS_OVF_1_SLASH: &str = "http://schemas.dmtf.org/ovf/envelope/1/";
/// Envelope namespace of OVF 2.x.
pub const NS_OVF_2: &str = "http://schemas.dmtf.org/ovf/envelope/2";
/// CIM ResourceAllocationSettingData (`rasd:`).
pub const NS_RASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
/// CIM VirtualSystemSettingData (`vssd:`).
pub const NS_VSSD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
/// CIM StorageAllocationSettingData (`sasd:`, OVF 2.x).
pub const NS_SASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData";
/// CIM EthernetPortAllocationSettingData (`epasd:`, OVF 2.x).
pub const NS_EPASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData";
/// CIM common types (`cim:`).
pub const NS_CIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/common";
/// XML Schema instance (`xsi:`).
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// VMware extensions (`vmw:`).
pub const NS_VMW: &str = "http://www.vmware.com/schema/ovf";
/// VirtualBox extensions (`vbox:`).
pub const NS_VBOX: &str = "http://www.virtualbox.org/ovf/machine";

/// Which OVF version an envelope is, by its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum OvfVersion {
    /// VMware's OVF 0.9.
    #[serde(rename = "0.9")]
    V0_9,
    /// DSP0243 1.x.
    #[serde(rename = "1.x")]
    V1,
    /// DSP0243 2.x.
    #[serde(rename = "2.x")]
    V2,
}

impl OvfVersion {
    /// The envelope namespace of this version.
    pub fn namespace(self) -> &'static str {
        match self {
            OvfVersion::V0_9 => NS_OVF_0_9,
            OvfVersion::V1 => NS_OVF_1,
            OvfVersion::V2 => NS_OVF_2,
        }
    }

    /// The version for an envelope namespace.
    pub fn from_namespace(ns: &str) -> Option<Self> {
        match ns {
            NS_OVF_0_9 => Some(OvfVersion::V0_9),
            // oVirt writes the 1.x namespace with a trailing slash.
            NS_OVF_1 | NS_OVF_1_SLASH => Some(OvfVersion::V1),
            NS_OVF_2 => Some(OvfVersion::V2),
            _ => None,
        }
    }

    /// Short display name: "0.9", "1.x", "2.x".
    pub fn label(self) -> &'static str {
        match self {
            OvfVersion::V0_9 => "0.9",
            OvfVersion::V1 => "1.x",
            OvfVersion::V2 => "2.x",
        }
    }
}

/// A parsed OVF envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    /// Version, from the envelope namespace.
    pub version: OvfVersion,
    /// `xml:lang` of the envelope.
    pub lang: Option<String>,
    /// `References/File` in document order.
    pub references: Vec<FileReference>,
    /// `DiskSection`.
    pub disk_section: Option<DiskSection>,
    /// `NetworkSection`.
    pub network_section: Option<NetworkSection>,
    /// `DeploymentOptionSection`.
    pub deployment_options: Option<DeploymentOptionSection>,
    /// Envelope-level sections the model does not know.
    pub extensions: Vec<ExtensionSection>,
    /// The one top-level VirtualSystem or VirtualSystemCollection.
    pub content: Content,
}

/// `References/File`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReference {
    /// `ovf:id`.
    pub id: String,
    /// `ovf:href`, as written (resolving it safely is the package's job).
    pub href: String,
    /// `ovf:size` (the compressed size when compressed).
    pub size: Option<u64>,
    /// `ovf:compression`, e.g. `gzip`; `None` when absent or `identity`.
    pub compression: Option<String>,
    /// `ovf:chunkSize`: the file is split into `href.000000000`, ...
    pub chunk_size: Option<u64>,
}

/// `DiskSection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskSection {
    /// `Info`.
    pub info: Option<String>,
    /// `Disk` elements in order.
    pub disks: Vec<VirtualDisk>,
}

/// How `ovf:capacity` is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capacity {
    /// A number (in `capacity_allocation_units`).
    Value(u64),
    /// `${key}`: the default value of a ProductSection property.
    Property(String),
}

/// `DiskSection/Disk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualDisk {
    /// `ovf:diskId`.
    pub disk_id: String,
    /// `ovf:capacity`.
    pub capacity: Capacity,
    /// `ovf:capacityAllocationUnits` (bytes when absent).
    pub capacity_allocation_units: Option<String>,
    /// `ovf:populatedSize`.
    pub populated_size: Option<u64>,
    /// `ovf:fileRef`; `None` for a blank disk.
    pub file_ref: Option<String>,
    /// `ovf:parentRef`.
    pub parent_ref: Option<String>,
    /// `ovf:format` URI.
    pub format: Option<String>,
}

/// `NetworkSection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSection {
    /// `Info`.
    pub info: Option<String>,
    /// `Network` elements.
    pub networks: Vec<Network>,
}

/// `NetworkSection/Network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// `ovf:name`.
    pub name: String,
    /// `Description`.
    pub description: Option<String>,
}

/// `DeploymentOptionSection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentOptionSection {
    /// `Info`.
    pub info: Option<String>,
    /// `Configuration` elements.
    pub configurations: Vec<Configuration>,
}

impl DeploymentOptionSection {
    /// The default configuration: the one marked `ovf:default="true"`, else the first.
    pub fn default_configuration(&self) -> Option<&Configuration> {
        self.configurations
            .iter()
            .find(|c| c.default)
            .or_else(|| self.configurations.first())
    }
}

/// `DeploymentOptionSection/Configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Configuration {
    /// `ovf:id`.
    pub id: String,
    /// `ovf:default`.
    pub default: bool,
    /// `Label`.
    pub label: Option<String>,
    /// `Description`.
    pub description: Option<String>,
}

/// The envelope's content: one system or a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    /// `VirtualSystem`.
    System(VirtualSystem),
    /// `VirtualSystemCollection`.
    Collection(VirtualSystemCollection),
}

impl Content {
    /// `ovf:id` of the system or collection.
    pub fn id(&self) -> &str {
        match self {
            Content::System(s) => &s.id,
            Content::Collection(c) => &c.id,
        }
    }
}

/// `VirtualSystem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualSystem {
    /// `ovf:id`.
    pub id: String,
    /// `Info`.
    pub info: Option<String>,
    /// `Name`.
    pub name: Option<String>,
    /// The sections inside.
    pub sections: ContentSections,
}

/// `VirtualSystemCollection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualSystemCollection {
    /// `ovf:id`.
    pub id: String,
    /// `Info`.
    pub info: Option<String>,
    /// `Name`.
    pub name: Option<String>,
    /// The sections inside.
    pub sections: ContentSections,
    /// Nested systems and collections in order.
    pub children: Vec<Content>,
}

/// The sections a VirtualSystem or VirtualSystemCollection may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentSections {
    /// `ProductSection`s.
    pub products: Vec<ProductSection>,
    /// `EulaSection`s.
    pub eulas: Vec<EulaSection>,
    /// `AnnotationSection`.
    pub annotation: Option<AnnotationSection>,
    /// `OperatingSystemSection`.
    pub operating_system: Option<OperatingSystemSection>,
    /// `VirtualHardwareSection`s (several may target different platforms).
    pub hardware: Vec<VirtualHardwareSection>,
    /// `StartupSection` (collections).
    pub startup: Option<StartupSection>,
    /// Sections the model does not know.
    pub extensions: Vec<ExtensionSection>,
}

/// A section the model does not interpret, kept as XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionSection {
    /// `ovf:required` (default false for sections the reader may ignore).
    pub required: bool,
    /// The whole element.
    pub element: XmlElement,
}

/// `ProductSection`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProductSection {
    /// `ovf:class`.
    pub class: Option<String>,
    /// `ovf:instance`.
    pub instance: Option<String>,
    /// `Info`.
    pub info: Option<String>,
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
    /// `AppUrl`.
    pub app_url: Option<String>,
    /// `Property` elements, each with the `Category` that preceded it.
    pub properties: Vec<Property>,
}

impl ProductSection {
    /// The fully qualified key of a property: `class.key.instance` with the
    /// absent parts left out.
    pub fn qualified_key(&self, key: &str) -> String {
        let mut out = String::new();
        if let Some(c) = &self.class {
            out.push_str(c);
            out.push('.');
        }
        out.push_str(key);
        if let Some(i) = &self.instance {
            out.push('.');
            out.push_str(i);
        }
        out
    }
}

/// `ProductSection/Property`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Property {
    /// `ovf:key`.
    pub key: String,
    /// `ovf:type` (`string`, `int`, `boolean`, `uint16` ...).
    pub type_name: String,
    /// `ovf:qualifiers`.
    pub qualifiers: Option<String>,
    /// `ovf:value`: the default value.
    pub value: Option<String>,
    /// `ovf:userConfigurable`.
    pub user_configurable: bool,
    /// `ovf:password`.
    pub password: bool,
    /// `Label`.
    pub label: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// The `Category` this property is listed under.
    pub category: Option<String>,
}

/// `EulaSection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EulaSection {
    /// `Info`.
    pub info: Option<String>,
    /// `License` text.
    pub license: String,
}

/// `AnnotationSection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnotationSection {
    /// `Info`.
    pub info: Option<String>,
    /// `Annotation` text.
    pub annotation: String,
}

/// `OperatingSystemSection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatingSystemSection {
    /// `ovf:id`: the CIM_OperatingSystem OsType code.
    pub id: u16,
    /// `ovf:version`.
    pub version: Option<String>,
    /// `vmw:osType`.
    pub vmw_os_type: Option<String>,
    /// `Info`.
    pub info: Option<String>,
    /// `Description`.
    pub description: Option<String>,
}

/// `StartupSection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartupSection {
    /// `Info`.
    pub info: Option<String>,
    /// `Item`s.
    pub items: Vec<StartupItem>,
}

/// `StartupSection/Item`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartupItem {
    /// `ovf:id`: the system or collection it applies to.
    pub id: String,
    /// `ovf:order`.
    pub order: u32,
    /// `ovf:startDelay` in seconds.
    pub start_delay: Option<u32>,
    /// `ovf:startAction` (`powerOn`, `none`).
    pub start_action: Option<String>,
    /// `ovf:stopDelay` in seconds.
    pub stop_delay: Option<u32>,
    /// `ovf:stopAction` (`powerOff`, `guestShutdown`, `none`).
    pub stop_action: Option<String>,
    /// `ovf:waitingForGuest`.
    pub waiting_for_guest: Option<bool>,
}

/// `VirtualHardwareSection`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VirtualHardwareSection {
    /// `ovf:id`.
    pub id: Option<String>,
    /// `ovf:transport` (OVF environment transports, space-separated).
    pub transport: Option<String>,
    /// `Info`.
    pub info: Option<String>,
    /// `System` (vssd).
    pub system: Option<SystemSettings>,
    /// `Item`, `StorageItem` and `EthernetPortItem` in document order.
    pub items: Vec<HardwareItem>,
    /// Other children (`vmw:Config`, `vmw:ExtraConfig` ...).
    pub extensions: Vec<XmlElement>,
}

/// `VirtualHardwareSection/System`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SystemSettings {
    /// `vssd:ElementName`.
    pub element_name: Option<String>,
    /// `vssd:InstanceID`.
    pub instance_id: Option<String>,
    /// `vssd:VirtualSystemIdentifier`.
    pub virtual_system_identifier: Option<String>,
    /// `vssd:VirtualSystemType`, split at whitespace.
    pub virtual_system_types: Vec<String>,
    /// Other CIM properties, by local name, sorted by name.
    pub other_properties: Vec<(String, String)>,
}

/// Which element a hardware item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// `Item` (rasd).
    Item,
    /// `StorageItem` (sasd, OVF 2.x).
    StorageItem,
    /// `EthernetPortItem` (epasd, OVF 2.x).
    EthernetPortItem,
}

impl ItemKind {
    /// The CIM namespace of the item's properties.
    pub fn namespace(self) -> &'static str {
        match self {
            ItemKind::Item => NS_RASD,
            ItemKind::StorageItem => NS_SASD,
            ItemKind::EthernetPortItem => NS_EPASD,
        }
    }

    /// Element name.
    pub fn element_name(self) -> &'static str {
        match self {
            ItemKind::Item => "Item",
            ItemKind::StorageItem => "StorageItem",
            ItemKind::EthernetPortItem => "EthernetPortItem",
        }
    }
}

/// A RASD hardware item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HardwareItem {
    /// Element kind.
    pub kind: ItemKind,
    /// `ovf:required` (true when absent).
    pub required: bool,
    /// `ovf:configuration`, split at whitespace; empty = every configuration.
    pub configurations: Vec<String>,
    /// `ovf:bound` (`min`, `max`, `normal`).
    pub bound: Option<String>,
    /// `InstanceID` (`InstanceId` in OVF 0.9).
    pub instance_id: String,
    /// `ResourceType`.
    pub resource_type: Option<u16>,
    /// `OtherResourceType`.
    pub other_resource_type: Option<String>,
    /// `ResourceSubType`.
    pub resource_sub_type: Option<String>,
    /// `ElementName`.
    pub element_name: Option<String>,
    /// `Caption`.
    pub caption: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `Address`.
    pub address: Option<String>,
    /// `AddressOnParent`.
    pub address_on_parent: Option<String>,
    /// `Parent`.
    pub parent: Option<String>,
    /// `AllocationUnits`.
    pub allocation_units: Option<String>,
    /// `VirtualQuantity`.
    pub virtual_quantity: Option<u64>,
    /// `VirtualQuantityUnits`.
    pub virtual_quantity_units: Option<String>,
    /// `AutomaticAllocation`.
    pub automatic_allocation: Option<bool>,
    /// `Connection` values.
    pub connections: Vec<String>,
    /// `HostResource` values.
    pub host_resources: Vec<String>,
    /// Other CIM properties (`Reservation`, `Limit`, `Weight` ...), by local
    /// name, sorted by name.
    pub other_properties: Vec<(String, String)>,
    /// Non-CIM children (`vmw:Config` ...).
    pub extensions: Vec<XmlElement>,
}

impl HardwareItem {
    /// An item with only the kind and instance id set.
    pub fn new(kind: ItemKind, instance_id: &str) -> Self {
        HardwareItem {
            kind,
            required: true,
            configurations: Vec::new(),
            bound: None,
            instance_id: instance_id.to_owned(),
            resource_type: None,
            other_resource_type: None,
            resource_sub_type: None,
            element_name: None,
            caption: None,
            description: None,
            address: None,
            address_on_parent: None,
            parent: None,
            allocation_units: None,
            virtual_quantity: None,
            virtual_quantity_units: None,
            automatic_allocation: None,
            connections: Vec::new(),
            host_resources: Vec::new(),
            other_properties: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// Whether this item belongs to the deployment option `configuration`
    /// (items with no `ovf:configuration` belong to all).
    pub fn in_configuration(&self, configuration: Option<&str>) -> bool {
        match configuration {
            None => true,
            Some(c) => self.configurations.is_empty() || self.configurations.iter().any(|x| x == c),
        }
    }
}
