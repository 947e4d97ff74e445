//! What hardware items mean: CIM resource types, controller buses by
//! ResourceSubType, network adapter models, host-resource references and disk
//! format URIs.

use serde::Serialize;

/// CIM ResourceType codes used here (CIM_ResourceAllocationSettingData).
pub mod resource_type {
    /// Other.
    pub const OTHER: u16 = 1;
    /// Processor.
    pub const PROCESSOR: u16 = 3;
    /// Memory.
    pub const MEMORY: u16 = 4;
    /// IDE controller.
    pub const IDE_CONTROLLER: u16 = 5;
    /// Parallel SCSI HBA.
    pub const PARALLEL_SCSI_HBA: u16 = 6;
    /// Fibre Channel HBA.
    pub const FC_HBA: u16 = 7;
    /// iSCSI HBA.
    pub const ISCSI_HBA: u16 = 8;
    /// InfiniBand HCA.
    pub const IB_HCA: u16 = 9;
    /// Ethernet adapter.
    pub const ETHERNET_ADAPTER: u16 = 10;
    /// Other network adapter.
    pub const OTHER_NETWORK_ADAPTER: u16 = 11;
    /// Floppy drive.
    pub const FLOPPY_DRIVE: u16 = 14;
    /// CD drive.
    pub const CD_DRIVE: u16 = 15;
    /// DVD drive.
    pub const DVD_DRIVE: u16 = 16;
    /// Disk drive.
    pub const DISK_DRIVE: u16 = 17;
    /// Other storage device (SATA, NVMe, virtio-scsi controllers by subtype).
    pub const OTHER_STORAGE_DEVICE: u16 = 20;
    /// Serial port.
    pub const SERIAL_PORT: u16 = 21;
    /// Parallel port.
    pub const PARALLEL_PORT: u16 = 22;
    /// USB controller.
    pub const USB_CONTROLLER: u16 = 23;
    /// Graphics controller.
    pub const GRAPHICS_CONTROLLER: u16 = 24;
    /// Sound card (a VirtualBox value outside the CIM list).
    pub const SOUND_CARD: u16 = 35;
}

/// The short CIM name of a resource type, for messages.
pub fn resource_type_name(rt: u16) -> &'static str {
    match rt {
        1 => "other",
        2 => "computer system",
        3 => "processor",
        4 => "memory",
        5 => "IDE controller",
        6 => "parallel SCSI HBA",
        7 => "FC HBA",
        8 => "iSCSI HBA",
        9 => "IB HCA",
        10 => "ethernet adapter",
        11 => "other network adapter",
        12 => "I/O slot",
        13 => "I/O device",
        14 => "floppy drive",
        15 => "CD drive",
        16 => "DVD drive",
        17 => "disk drive",
        18 => "tape drive",
        19 => "storage extent",
        20 => "other storage device",
        21 => "serial port",
        22 => "parallel port",
        23 => "USB controller",
        24 => "graphics controller",
        25 => "IEEE 1394 controller",
        26 => "partitionable unit",
        27 => "base partitionable unit",
        28 => "power",
        29 => "cooling capacity",
        30 => "ethernet switch port",
        31 => "logical disk",
        32 => "storage volume",
        33 => "ethernet connection",
        35 => "sound card",
        32768..=65535 => "vendor-specific",
        _ => "unknown",
    }
}

/// Storage controller bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// IDE / ATA.
    Ide,
    /// SCSI or SAS (LSI Logic, BusLogic, PVSCSI, virtio-scsi).
    Scsi,
    /// SATA / AHCI.
    Sata,
    /// NVMe.
    Nvme,
    /// virtio-blk (disks attached to a virtio bus, oVirt style).
    Virtio,
}

/// Why a controller item could not be classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerClass {
    /// A storage controller on this bus.
    Controller(Bus),
    /// Resource type 20 with a subtype we do not know.
    UnknownSubtype,
    /// Not a storage controller.
    NotController,
}

/// Classifies a controller from its resource type and subtype.
pub fn classify_controller(resource_type: u16, sub_type: Option<&str>) -> ControllerClass {
    let sub = sub_type.unwrap_or("").trim().to_ascii_lowercase();
    let sub = sub.as_str();
    match resource_type {
        resource_type::IDE_CONTROLLER => ControllerClass::Controller(Bus::Ide),
        resource_type::PARALLEL_SCSI_HBA => {
            if matches!(sub, "ahci" | "vmware.sata.ahci") {
                ControllerClass::Controller(Bus::Sata)
            } else {
                ControllerClass::Controller(Bus::Scsi)
            }
        }
        resource_type::OTHER_STORAGE_DEVICE => match sub {
            "ahci" | "vmware.sata.ahci" | "sata" | "intelahci" => {
                ControllerClass::Controller(Bus::Sata)
            }
            "vmware.nvme.controller" | "nvme" => ControllerClass::Controller(Bus::Nvme),
            "virtio-scsi" | "virtioscsi" | "lsilogicsas" | "lsilogic" | "buslogic"
            | "virtualscsi" => ControllerClass::Controller(Bus::Scsi),
            "virtio" | "virtio-blk" => ControllerClass::Controller(Bus::Virtio),
            "piix3" | "piix4" | "ich6" | "ide" => ControllerClass::Controller(Bus::Ide),
            _ => ControllerClass::UnknownSubtype,
        },
        _ => ControllerClass::NotController,
    }
}

/// The network adapter model named by an Ethernet item's ResourceSubType.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "model", content = "name")]
pub enum NicModel {
    /// Intel PRO/1000 (E1000).
    E1000,
    /// Intel 82574 (E1000e).
    E1000e,
    /// VMware vmxnet3.
    Vmxnet3,
    /// VMware vmxnet / vmxnet2.
    Vmxnet,
    /// AMD PCnet32 / PCnet-FAST.
    PcNet32,
    /// Realtek RTL8139.
    Rtl8139,
    /// virtio-net.
    Virtio,
    /// Something else, as written.
    Other(String),
    /// No subtype given.
    Unspecified,
}

/// Maps a ResourceSubType to a NIC model.
pub fn nic_model(sub_type: Option<&str>) -> NicModel {
    let Some(raw) = sub_type.map(str::trim).filter(|s| !s.is_empty()) else {
        return NicModel::Unspecified;
    };
    match raw.to_ascii_lowercase().as_str() {
        "e1000" | "i82540em" | "i82543gc" | "i82545em" => NicModel::E1000,
        "e1000e" => NicModel::E1000e,
        "vmxnet3" => NicModel::Vmxnet3,
        "vmxnet" | "vmxnet2" => NicModel::Vmxnet,
        "pcnet32" | "pcnet" | "am79c970a" | "am79c973" | "pcnetfast" | "pcnet-fast" => {
            NicModel::PcNet32
        }
        "rtl8139" => NicModel::Rtl8139,
        "virtio" | "virtio-net" | "virtionet" | "pv" => NicModel::Virtio,
        _ => NicModel::Other(raw.to_owned()),
    }
}

/// What a `HostResource` value points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostResource {
    /// A DiskSection disk: `ovf:/disk/ID`, `ovf://disk/ID`, `/disk/ID`.
    Disk(String),
    /// A References file: `ovf:/file/ID`, `ovf://file/ID`, `/file/ID`.
    File(String),
    /// Something else (a host path, a pool, ...), not followed.
    Other,
}

/// Parses a `HostResource` value.
pub fn parse_host_resource(value: &str) -> HostResource {
    let v = value.trim();
    let rest = v
        .strip_prefix("ovf://")
        .or_else(|| v.strip_prefix("ovf:/"))
        .or_else(|| v.strip_prefix('/'));
    let Some(rest) = rest else {
        return HostResource::Other;
    };
    if let Some(id) = rest.strip_prefix("disk/").filter(|id| !id.is_empty()) {
        HostResource::Disk(id.to_owned())
    } else if let Some(id) = rest.strip_prefix("file/").filter(|id| !id.is_empty()) {
        HostResource::File(id.to_owned())
    } else {
        HostResource::Other
    }
}

/// The image format named by a DiskSection `ovf:format` URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "uri")]
pub enum DiskFormat {
    /// VMDK streamOptimized (`vmdk.html#streamOptimized`, and OVF 0.9's
    /// `vmdk.html#compressed`).
    #[serde(rename = "vmdk-streamOptimized")]
    VmdkStreamOptimized,
    /// Another VMDK variant (`#sparse`, `#monolithicSparse` ...).
    VmdkOther(String),
    /// Microsoft VHD.
    Vhd,
    /// Microsoft VHDX.
    Vhdx,
    /// Raw bytes.
    Raw,
    /// ISO 9660 (ECMA-119).
    Iso,
    /// A URI we do not know.
    Unknown(String),
    /// No format attribute.
    Unspecified,
}

/// Classifies a format URI (case-insensitive, `http`/`https` alike).
pub fn disk_format(uri: Option<&str>) -> DiskFormat {
    let Some(raw) = uri.map(str::trim).filter(|u| !u.is_empty()) else {
        return DiskFormat::Unspecified;
    };
    let lower = raw.to_ascii_lowercase();
    let bare = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let bare = bare.strip_prefix("www.").unwrap_or(bare);
    if bare.starts_with("vmware.com/") && bare.contains("vmdk.html") {
        let fragment = bare.rsplit_once('#').map(|(_, f)| f).unwrap_or("");
        return match fragment {
            "streamoptimized" | "compressed" => DiskFormat::VmdkStreamOptimized,
            _ => DiskFormat::VmdkOther(raw.to_owned()),
        };
    }
    if bare == "go.microsoft.com/fwlink/?linkid=137171" {
        return DiskFormat::Vhd;
    }
    if bare.starts_with("technet.microsoft.com/") {
        if bare.ends_with("#vhdx") {
            return DiskFormat::Vhdx;
        }
        if bare.ends_with("#vhd") {
            return DiskFormat::Vhd;
        }
    }
    if bare.starts_with("ecma-international.org/publications/standards/ecma-119") {
        return DiskFormat::Iso;
    }
    if bare == "en.wikipedia.org/wiki/byte" || bare.ends_with("#raw") {
        return DiskFormat::Raw;
    }
    DiskFormat::Unknown(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_resources() {
        for v in ["ovf:/disk/vmdisk1", "ovf://disk/vmdisk1", "/disk/vmdisk1"] {
            assert_eq!(parse_host_resource(v), HostResource::Disk("vmdisk1".into()));
        }
        assert_eq!(
            parse_host_resource("ovf:/file/iso1"),
            HostResource::File("iso1".into())
        );
        assert_eq!(parse_host_resource("ovf:/disk/"), HostResource::Other);
        assert_eq!(parse_host_resource("/dev/sda"), HostResource::Other);
    }

    #[test]
    fn formats() {
        assert_eq!(
            disk_format(Some(
                "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
            )),
            DiskFormat::VmdkStreamOptimized
        );
        assert_eq!(
            disk_format(Some(
                "http://www.vmware.com/specifications/vmdk.html#compressed"
            )),
            DiskFormat::VmdkStreamOptimized
        );
        assert!(matches!(
            disk_format(Some(
                "http://www.vmware.com/specifications/vmdk.html#sparse"
            )),
            DiskFormat::VmdkOther(_)
        ));
        assert_eq!(
            disk_format(Some("http://go.microsoft.com/fwlink/?LinkId=137171")),
            DiskFormat::Vhd
        );
        assert_eq!(
            disk_format(Some(
                "http://technet.microsoft.com/en-us/library/dd979539.aspx#VHDX"
            )),
            DiskFormat::Vhdx
        );
        assert_eq!(
            disk_format(Some(
                "http://www.ecma-international.org/publications/standards/Ecma-119.htm"
            )),
            DiskFormat::Iso
        );
        assert_eq!(
            disk_format(Some("http://en.wikipedia.org/wiki/Byte")),
            DiskFormat::Raw
        );
        assert!(matches!(
            disk_format(Some("http://www.gnome.org/~markmc/qcow-image-format.html")),
            DiskFormat::Unknown(_)
        ));
        assert_eq!(disk_format(None), DiskFormat::Unspecified);
    }

    #[test]
    fn controllers_and_nics() {
        use resource_type::*;
        assert_eq!(
            classify_controller(OTHER_STORAGE_DEVICE, Some("vmware.sata.ahci")),
            ControllerClass::Controller(Bus::Sata)
        );
        assert_eq!(
            classify_controller(OTHER_STORAGE_DEVICE, Some("vmware.nvme.controller")),
            ControllerClass::Controller(Bus::Nvme)
        );
        assert_eq!(
            classify_controller(PARALLEL_SCSI_HBA, Some("VirtualSCSI")),
            ControllerClass::Controller(Bus::Scsi)
        );
        assert_eq!(
            classify_controller(OTHER_STORAGE_DEVICE, Some("floppy-ish")),
            ControllerClass::UnknownSubtype
        );
        assert_eq!(nic_model(Some("VmxNet3")), NicModel::Vmxnet3);
        assert_eq!(nic_model(Some("PCNet32")), NicModel::PcNet32);
        assert_eq!(nic_model(None), NicModel::Unspecified);
    }
}
