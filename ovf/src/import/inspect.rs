//! Looking into a package without converting anything: the descriptor's
//! VMs, the files present, and what verification finds. Works on a
//! descriptor alone whose disk files are absent.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::plan::{ancestors, chain_depths};
use super::{ImportError, Result, VerificationSummary};
use crate::descriptor::{self, ApplianceDescription, DiskIndex, MapOptions};
use crate::package::{self, MemberRole, PackageOptions, PackageReader, VerifyOptions};

/// A file of the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageFile {
    /// Name inside the package.
    pub name: String,
    /// Size in bytes as stored.
    pub size: u64,
}

/// A DiskSection disk, with the chain of delta disks it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskChain {
    /// `ovf:diskId`.
    pub disk_id: String,
    /// The file holding it (`None` for a blank disk).
    pub href: Option<String>,
    /// Capacity in bytes.
    pub capacity: u64,
    /// `ovf:parentRef`: the disk it is a delta over.
    pub parent: Option<String>,
    /// Every disk under it, nearest first (empty for a disk standing
    /// alone).
    pub ancestors: Vec<String>,
}

/// What a package holds.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The package read.
    pub package: PathBuf,
    /// The descriptor's file name.
    pub descriptor: String,
    /// The appliance: files, disks, networks and one description per
    /// VirtualSystem.
    pub appliance: ApplianceDescription,
    /// Every file read.
    pub files: Vec<PackageFile>,
    /// The disks the VMs use, each with its parent chain.
    pub disks: Vec<DiskChain>,
    /// Manifest and signature (problems reported, never fatal here).
    pub verification: VerificationSummary,
    /// Everything worth telling.
    pub warnings: Vec<String>,
}

/// Reads the package at `path` and describes it. Manifest problems and
/// missing files are reported, not fatal.
pub fn inspect(path: &Path, configuration: Option<&str>) -> Result<Inspection> {
    let mut reader = PackageReader::open(path, PackageOptions::default())?;
    while reader.next_member()?.is_some() {}
    let contents = reader.finish()?;
    let Some((name, bytes)) = contents.descriptor.clone() else {
        return Err(ImportError::NoDescriptor);
    };
    let envelope = descriptor::parse(&bytes).map_err(|source| ImportError::Descriptor {
        name: name.clone(),
        source,
    })?;
    let appliance = descriptor::describe(
        &envelope,
        &MapOptions {
            configuration: configuration.map(str::to_string),
            ..MapOptions::default()
        },
    )
    .map_err(|source| ImportError::Map {
        name: name.clone(),
        source,
    })?;
    let v = package::verify(
        &contents,
        &VerifyOptions {
            no_verify: true,
            require_manifest: false,
        },
    )?;
    let mut warnings = v.warnings.clone();
    if let Err(e) = chain_depths(&appliance) {
        warnings.push(format!("the package cannot be imported: {e}"));
    }
    let disks = appliance
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| DiskChain {
            disk_id: d.disk_id.clone(),
            href: d
                .file
                .and_then(|f| appliance.files.get(f.0))
                .map(|f| f.href.clone()),
            capacity: d.capacity_bytes,
            parent: d
                .parent
                .and_then(|p| appliance.disks.get(p.0))
                .map(|p| p.disk_id.clone()),
            ancestors: ancestors(&appliance, DiskIndex(i)),
        })
        .collect();
    Ok(Inspection {
        package: path.to_path_buf(),
        descriptor: name,
        appliance,
        files: contents
            .members
            .iter()
            .filter(|m| m.role == MemberRole::File)
            .map(|m| PackageFile {
                name: m.name.clone(),
                size: m.size,
            })
            .collect(),
        // Problems are not fatal here: they are reported among the warnings.
        verification: VerificationSummary {
            problems: Vec::new(),
            ..VerificationSummary::of(&v)
        },
        disks,
        warnings,
    })
}
