//! `vmimport run vm.toml`: boot a VM definition file. The kernel, initrd
//! and command line come from the file's `[boot]` table or from flags that
//! override it; relative paths in the file are relative to its directory.
//! Exit status as for `vmimport boot`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use vmm::{DiskConfig, SerialConfig, VmConfig};

use crate::boot::{parse_disk, run_config};
use crate::output::error_chain;

/// Arguments of `vmimport run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The VM definition (TOML).
    definition: PathBuf,
    /// Kernel, overriding the definition's.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial ramdisk, overriding the definition's.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line, overriding the definition's.
    #[arg(long)]
    cmdline: Option<String>,
    /// Serial console (stdio, file:PATH, null), overriding the definition's.
    #[arg(long, value_parser = parse_serial_arg)]
    serial: Option<SerialConfig>,
    /// A further disk: PATH[,readonly][,serial=S] (repeatable).
    #[arg(long = "disk", value_name = "PATH[,readonly][,serial=S]", value_parser = parse_disk)]
    disks: Vec<DiskConfig>,
    /// After the VM ends, print the guest memory resident in host RAM and
    /// the VM exits (as `vmimport boot --stats`).
    #[arg(long)]
    stats: bool,
}

fn parse_serial_arg(s: &str) -> Result<SerialConfig, String> {
    match s {
        "stdio" => Ok(SerialConfig::Stdio),
        "null" => Ok(SerialConfig::Null),
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(SerialConfig::File(PathBuf::from(p))),
            _ => Err(format!(
                "'{s}' is not a serial destination (stdio, file:PATH, null)"
            )),
        },
    }
}

/// Why a definition cannot be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("cannot read vm definition {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vm definition {path} is invalid")]
    Invalid {
        path: PathBuf,
        #[source]
        source: vmm::config::ConfigError,
    },
}

/// Reads the definition, resolves its relative paths and applies the
/// flags.
fn load(args: &RunArgs) -> Result<VmConfig, LoadError> {
    let path = &args.definition;
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    let invalid = |source| LoadError::Invalid {
        path: path.clone(),
        source,
    };
    let mut config = VmConfig::parse_toml(&text).map_err(invalid)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    config.resolve_paths(dir);
    if let Some(k) = &args.kernel {
        config.boot.kernel = k.clone();
    }
    if let Some(i) = &args.initrd {
        config.boot.initrd = Some(i.clone());
    }
    if let Some(c) = &args.cmdline {
        config.boot.cmdline = c.clone();
    }
    if let Some(s) = &args.serial {
        config.serial = s.clone();
    }
    config.disks.extend(args.disks.iter().cloned());
    config.validate().map_err(invalid)?;
    Ok(config)
}

/// Runs `vmimport run`.
pub fn run(args: RunArgs) -> ExitCode {
    match load(&args) {
        Ok(config) => run_config(&config, args.stats, "run"),
        Err(e) => {
            eprintln!("vmimport run: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(definition: PathBuf) -> RunArgs {
        RunArgs {
            definition,
            kernel: None,
            initrd: None,
            cmdline: None,
            serial: None,
            disks: Vec::new(),
            stats: false,
        }
    }

    #[test]
    fn definition_paths_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let def = dir.path().join("vm.toml");
        std::fs::write(
            &def,
            "name = \"a\"\nserial = { file = \"console.log\" }\n\
             [boot]\nkernel = \"k\"\ncmdline = \"x\"\n\
             [[disk]]\npath = \"d.vhdx\"\nbus = \"sata\"\n",
        )
        .unwrap();
        let c = load(&args(def.clone())).unwrap();
        assert_eq!(c.boot.kernel, dir.path().join("k"));
        assert_eq!(c.boot.cmdline, "x");
        assert_eq!(c.disks[0].path, dir.path().join("d.vhdx"));
        assert_eq!(c.serial, SerialConfig::File(dir.path().join("console.log")));
        let mut a = args(def);
        a.kernel = Some("/other".into());
        a.cmdline = Some("y".into());
        a.disks = vec![parse_disk("/e.raw,readonly").unwrap()];
        let c = load(&a).unwrap();
        assert_eq!(c.boot.kernel, PathBuf::from("/other"));
        assert_eq!(c.boot.cmdline, "y");
        assert_eq!(c.disks.len(), 2);
        assert!(c.disks[1].readonly);
    }

    #[test]
    fn a_definition_without_kernel_needs_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let def = dir.path().join("vm.toml");
        std::fs::write(&def, "[[disk]]\npath = \"d.vhdx\"\n").unwrap();
        let e = load(&args(def.clone())).unwrap_err();
        let text = error_chain(&e);
        assert!(text.contains("names no kernel"), "{text}");
        assert!(text.contains("--kernel"), "{text}");
        let mut a = args(def);
        a.kernel = Some("/k".into());
        assert!(load(&a).is_ok());
        let e = load(&args(dir.path().join("missing.toml"))).unwrap_err();
        assert!(matches!(e, LoadError::Read { .. }));
    }
}
