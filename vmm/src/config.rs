//! The VM definition: what to boot and with which resources. Serde types
//! that round-trip through TOML; [`VmConfig::validate`] checks the limits
//! the builder relies on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::layout;

/// Highest vCPU count: APIC IDs are 8-bit in the MP table and the MADT's
/// local APIC entries, and 0xff is the broadcast ID.
pub const MAX_VCPUS: u8 = 254;

/// Smallest guest memory accepted: the boot structures below 1 MiB, the
/// kernel at 1 MiB and room for an initrd.
pub const MIN_MEMORY: u64 = 16 << 20;

/// A virtual machine definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// A name for the VM (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What to boot. May be left out of a definition file when the kernel
    /// is given some other way (command-line flags); building a VM without
    /// a kernel is an error.
    #[serde(default, skip_serializing_if = "BootConfig::is_empty")]
    pub boot: BootConfig,
    /// Number of vCPUs.
    #[serde(default = "default_cpus")]
    pub cpus: u8,
    /// Guest memory in bytes.
    #[serde(default = "default_memory")]
    pub memory: u64,
    /// Where the 8250 serial port's output goes.
    #[serde(default)]
    pub serial: SerialConfig,
    /// Disks, each served as a virtio-blk device on its own PCI slot.
    #[serde(default, rename = "disk", skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskConfig>,
    /// Network interfaces as the appliance declared them (informational:
    /// no network device is served yet).
    #[serde(default, rename = "nic", skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<NicConfig>,
    /// Guest operating system as declared (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    /// Product description as declared (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ProductInfo>,
}

/// Image formats a disk may name; left out, the format is detected from
/// the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Raw image.
    Raw,
    /// VHD (fixed, dynamic or differencing).
    Vhd,
    /// VHDX.
    Vhdx,
}

/// One disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Image path; a relative path is relative to the definition file's
    /// directory (see [`VmConfig::resolve_paths`]).
    pub path: PathBuf,
    /// Expected format; the image must be of this format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DiskFormat>,
    /// Serve the disk read-only (and open the image read-only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    /// Device ID the guest reads with GET_ID (at most 20 ASCII bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Bus the appliance declared (informational, e.g. "sata"): every disk
    /// is served as virtio-blk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
}

impl DiskConfig {
    /// A writable disk at `path`, format detected.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DiskConfig {
            path: path.into(),
            format: None,
            readonly: false,
            serial: None,
            bus: None,
        }
    }
}

/// A network interface as declared (not served yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicConfig {
    /// Network name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Adapter model (e.g. "e1000", "vmxnet3").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The guest operating system as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsInfo {
    /// OS type identifier (e.g. a CIM OS ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Product information as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInfo {
    /// Product name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Direct kernel boot: a bzImage or an ELF vmlinux with a PVH entry note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    /// Kernel image; the format is detected from its content. Empty when
    /// the definition names none.
    #[serde(default)]
    pub kernel: PathBuf,
    /// Initial ramdisk, handed to the kernel as-is.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            kernel: PathBuf::new(),
            initrd: None,
            cmdline: default_cmdline(),
        }
    }
}

impl BootConfig {
    fn is_empty(&self) -> bool {
        *self == BootConfig::default()
    }
}

/// Destination of the serial console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SerialConfig {
    /// The VMM's standard output.
    #[default]
    Stdio,
    /// A file, created or truncated.
    File(PathBuf),
    /// Discarded.
    Null,
}

fn default_cpus() -> u8 {
    1
}

fn default_memory() -> u64 {
    128 << 20
}

fn default_cmdline() -> String {
    "console=ttyS0 reboot=k panic=1".to_string()
}

/// A VM definition that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The vCPU count is zero or above [`MAX_VCPUS`].
    #[error("vcpu count {0} is outside 1..={MAX_VCPUS}")]
    Cpus(u8),
    /// The memory size is too small, unaligned or too large.
    #[error("memory size {0} bytes is not a multiple of 4 KiB between 16 MiB and {max} bytes", max = layout::MAX_MEMORY)]
    Memory(u64),
    /// The command line is longer than the space reserved for it.
    #[error("kernel command line is {0} bytes; at most {max} fit", max = layout::CMDLINE_MAX_SIZE - 1)]
    CmdlineTooLong(usize),
    /// The command line holds a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// No kernel was named.
    #[error("the vm definition names no kernel: add [boot] kernel = \"...\" or pass --kernel")]
    NoKernel,
    /// A disk serial number is too long or not ASCII.
    #[error("disk serial {0:?} is not at most 20 ASCII bytes")]
    DiskSerial(String),
    /// The TOML text does not describe a VM.
    #[error("vm definition is not valid TOML for this schema")]
    Toml(#[source] toml::de::Error),
}

impl VmConfig {
    /// A definition with default resources for the given kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            name: None,
            boot: BootConfig {
                kernel: kernel.into(),
                initrd: None,
                cmdline: default_cmdline(),
            },
            cpus: default_cpus(),
            memory: default_memory(),
            serial: SerialConfig::default(),
            disks: Vec::new(),
            nics: Vec::new(),
            os: None,
            product: None,
        }
    }

    /// Parses a TOML definition without validating it (a file may leave
    /// the kernel to command-line flags).
    pub fn parse_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(ConfigError::Toml)
    }

    /// Makes relative kernel, initrd, disk and serial file paths relative
    /// to `dir` (the definition file's directory).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        let fix = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.boot.kernel);
        if let Some(i) = self.boot.initrd.as_mut() {
            fix(i);
        }
        for d in &mut self.disks {
            fix(&mut d.path);
        }
        if let SerialConfig::File(p) = &mut self.serial {
            fix(p);
        }
    }

    /// Parses a TOML VM definition and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: VmConfig = toml::from_str(text).map_err(ConfigError::Toml)?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the definition as TOML.
    pub fn to_toml(&self) -> String {
        // Serialising these plain types cannot fail: every field is a
        // string, integer, path or enum of those.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks the limits the builder relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cpus == 0 || self.cpus > MAX_VCPUS {
            return Err(ConfigError::Cpus(self.cpus));
        }
        if self.memory < MIN_MEMORY
            || self.memory > layout::MAX_MEMORY
            || !self.memory.is_multiple_of(4096)
        {
            return Err(ConfigError::Memory(self.memory));
        }
        if self.boot.cmdline.len() >= layout::CMDLINE_MAX_SIZE {
            return Err(ConfigError::CmdlineTooLong(self.boot.cmdline.len()));
        }
        if self.boot.cmdline.contains('\0') {
            return Err(ConfigError::CmdlineNul);
        }
        if self.boot.kernel.as_os_str().is_empty() {
            return Err(ConfigError::NoKernel);
        }
        for d in &self.disks {
            if let Some(s) = &d.serial
                && (s.len() > 20 || !s.is_ascii())
            {
                return Err(ConfigError::DiskSerial(s.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip() {
        let mut c = VmConfig::new("/boot/vmlinuz");
        c.cpus = 2;
        c.memory = 256 << 20;
        c.boot.initrd = Some("/boot/initrd".into());
        c.serial = SerialConfig::File("/tmp/console.log".into());
        let text = c.to_toml();
        assert_eq!(VmConfig::from_toml(&text).unwrap(), c);
    }

    #[test]
    fn minimal_toml_takes_defaults() {
        let c = VmConfig::from_toml("[boot]\nkernel = \"k\"\n").unwrap();
        assert_eq!(c, VmConfig::new("k"));
    }

    #[test]
    fn appliance_definition_round_trips() {
        let text = r#"
name = "appliance"
cpus = 2
memory = 268435456

[[disk]]
path = "disk1.vhdx"
format = "vhdx"
bus = "sata"
serial = "disk-1"

[[disk]]
path = "/abs/data.vhd"
readonly = true

[[nic]]
network = "VM Network"
model = "e1000"
mac = "00:50:56:00:00:01"

[os]
id = 101
description = "Debian 12"

[product]
name = "Appliance"
vendor = "Example"
version = "1.0"
"#;
        let mut c = VmConfig::parse_toml(text).unwrap();
        assert_eq!(c.validate(), Err(ConfigError::NoKernel));
        assert_eq!(c.disks.len(), 2);
        assert_eq!(c.disks[0].format, Some(DiskFormat::Vhdx));
        assert!(c.disks[1].readonly);
        assert_eq!(c.nics[0].model.as_deref(), Some("e1000"));
        assert_eq!(VmConfig::parse_toml(&c.to_toml()).unwrap(), c);
        c.resolve_paths(std::path::Path::new("/vms/a"));
        assert_eq!(c.disks[0].path, PathBuf::from("/vms/a/disk1.vhdx"));
        assert_eq!(c.disks[1].path, PathBuf::from("/abs/data.vhd"));
        c.boot.kernel = "/boot/k".into();
        assert_eq!(c.validate(), Ok(()));
        c.disks[0].serial = Some("x".repeat(21));
        assert!(matches!(c.validate(), Err(ConfigError::DiskSerial(_))));
        assert!(VmConfig::parse_toml("[[disk]]\npath = \"a\"\nsize = 1\n").is_err());
        assert!(VmConfig::parse_toml("[[disk]]\npath = \"a\"\nformat = \"qcow2\"\n").is_err());
    }

    #[test]
    fn limits_are_checked() {
        let mut c = VmConfig::new("k");
        c.cpus = 0;
        assert_eq!(c.validate(), Err(ConfigError::Cpus(0)));
        c.cpus = 255;
        assert_eq!(c.validate(), Err(ConfigError::Cpus(255)));
        c.cpus = 1;
        c.memory = 1 << 20;
        assert_eq!(c.validate(), Err(ConfigError::Memory(1 << 20)));
        c.memory = (64 << 20) + 1;
        assert!(c.validate().is_err());
        c.memory = 64 << 20;
        c.boot.cmdline = "x".repeat(layout::CMDLINE_MAX_SIZE);
        assert!(matches!(c.validate(), Err(ConfigError::CmdlineTooLong(_))));
        assert!(VmConfig::from_toml("[boot]\nkernel = \"k\"\nbogus = 1\n").is_err());
    }
}
