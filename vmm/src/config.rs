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
    /// What to boot.
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
}

/// Direct kernel boot: a bzImage or an ELF vmlinux with a PVH entry note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    /// Kernel image; the format is detected from its content.
    pub kernel: PathBuf,
    /// Initial ramdisk, handed to the kernel as-is.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
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
    /// The TOML text does not describe a VM.
    #[error("vm definition is not valid TOML for this schema")]
    Toml(#[source] toml::de::Error),
}

impl VmConfig {
    /// A definition with default resources for the given kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            boot: BootConfig {
                kernel: kernel.into(),
                initrd: None,
                cmdline: default_cmdline(),
            },
            cpus: default_cpus(),
            memory: default_memory(),
            serial: SerialConfig::default(),
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
