//! The import pipeline: one pass over a package (OVA, directory, or `.ovf`
//! file), converting every disk file into the output directory as it
//! streams by, then verifying the manifest and certificate, parsing the
//! descriptor and mapping it to VM descriptions.
//!
//! Files may come before or after the descriptor: a disk is converted by
//! what its content is (VMDK magic, gzip magic, VHD/VHDX signatures),
//! and the descriptor decides afterwards which outputs are kept. Output
//! names are made here from the file names (never taken as paths from the
//! package), so nothing can be written outside the output directory. On any
//! error every file written so far is removed.
//!
//! Delta disks (`ovf:parentRef`, chains up to [`MAX_CHAIN_DEPTH`] disks)
//! become differencing images over their parent's image (VHD, VHDX) or
//! are flattened onto a copy of it (raw); see the `session` and `child`
//! modules for the order in which that happens.

mod child;
mod disk;
mod inspect;
mod outputs;
mod plan;
mod report;
mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::descriptor::{self, ApplianceDescription, Backing, DiskFormat, MapOptions};
use crate::package::{
    self, MemberRole, PackageError, PackageOptions, PackageReader, VerifyOptions,
};

pub use disk::SourceFormat;
pub use inspect::{DiskChain, Inspection, inspect};
pub use plan::MAX_CHAIN_DEPTH;
pub use report::{ImportReport, ImportedDisk, VerificationSummary};

use outputs::Outputs;
use session::{FileState, Session};

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Directory that receives the disks and the descriptor; created if
    /// missing, refused if it exists and is not empty.
    pub out_dir: PathBuf,
    /// Format of the converted disks.
    pub disk_format: vhd::Format,
    /// Turn manifest problems into warnings.
    pub no_verify: bool,
    /// Deployment option to map (default: the descriptor's default).
    pub configuration: Option<String>,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The package could not be read or failed verification.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The descriptor is invalid.
    #[error("descriptor {name}")]
    Descriptor {
        /// Descriptor file name.
        name: String,
        /// What is wrong.
        #[source]
        source: descriptor::DescriptorError,
    },
    /// The descriptor cannot be mapped to VMs.
    #[error("descriptor {name} cannot be mapped to a VM")]
    Map {
        /// Descriptor file name.
        name: String,
        /// What is wrong.
        #[source]
        source: descriptor::MapError,
    },
    /// A VMDK stream is invalid.
    #[error("disk file {href}")]
    Vmdk {
        /// The package file.
        href: String,
        /// What is wrong.
        #[source]
        source: crate::vmdk::VmdkError,
    },
    /// A disk image could not be read or written.
    #[error("disk file {href}")]
    Disk {
        /// The package file.
        href: String,
        /// What failed.
        #[source]
        source: vhd::Error,
    },
    /// A file of the package could not be read.
    #[error("reading {href}")]
    Read {
        /// The package file.
        href: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The package has no descriptor.
    #[error("the package has no .ovf descriptor")]
    NoDescriptor,
    /// The descriptor names a file the package does not hold.
    #[error("disk {disk_id} refers to file {href}, which the package does not hold")]
    MissingFile {
        /// Descriptor disk id.
        disk_id: String,
        /// The href.
        href: String,
    },
    /// Something the importer does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A chain of delta disks is longer than [`MAX_CHAIN_DEPTH`].
    #[error("disk {disk_id} ends a chain of delta disks longer than {limit}")]
    ChainTooDeep {
        /// The disk whose chain is too long.
        disk_id: String,
        /// The limit.
        limit: usize,
    },
    /// Two disks use one file over different parents (or one over a
    /// parent and one alone): the file cannot be converted for both.
    #[error("file {href} is used by disk {first} and disk {second} over different parents")]
    FileConflict {
        /// The file's href.
        href: String,
        /// The first disk using it.
        first: String,
        /// The disk that disagrees.
        second: String,
    },
    /// The output directory cannot be used.
    #[error("output directory {}: {reason}", path.display())]
    OutDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The result type of the importer.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;

struct Descriptor {
    name: String,
    bytes: std::sync::Arc<[u8]>,
    appliance: ApplianceDescription,
}

fn read_descriptor(
    name: &str,
    bytes: std::sync::Arc<[u8]>,
    options: &ImportOptions,
) -> Result<Descriptor> {
    let envelope = descriptor::parse(&bytes).map_err(|source| ImportError::Descriptor {
        name: name.to_string(),
        source,
    })?;
    let map = MapOptions {
        configuration: options.configuration.clone(),
        ..MapOptions::default()
    };
    let appliance = descriptor::describe(&envelope, &map).map_err(|source| ImportError::Map {
        name: name.to_string(),
        source,
    })?;
    Ok(Descriptor {
        name: name.to_string(),
        bytes,
        appliance,
    })
}

/// Imports the package at `package` into `options.out_dir`. `progress`
/// is told the name of each file as its conversion starts.
pub fn import(
    package: &Path,
    options: &ImportOptions,
    progress: Option<&dyn Fn(&str)>,
) -> Result<ImportReport> {
    let outputs = Outputs::new(&options.out_dir)?;
    let ext = match options.disk_format {
        vhd::Format::Vhdx => "vhdx",
        vhd::Format::Vhd => "vhd",
        vhd::Format::Raw => "raw",
    };
    let mut session = Session {
        options,
        outputs,
        ext,
        files: BTreeMap::new(),
        warnings: Vec::new(),
        progress,
    };
    let mut reader = PackageReader::open(package, PackageOptions::default())?;
    let mut desc: Option<Descriptor> = None;
    let mut plans = BTreeMap::new();

    while let Some(member) = reader.next_member()? {
        match member.role {
            MemberRole::Descriptor => {
                let Some(bytes) = member.data.clone() else {
                    continue;
                };
                if desc.is_some() {
                    return Err(ImportError::Unsupported(format!(
                        "a second descriptor {} in the package",
                        member.name
                    )));
                }
                let d = read_descriptor(&member.name, bytes, options)?;
                plans = plan::file_plans(&d.appliance, &|h| reader.full_name(h))?;
                // Directory packages are read parents first.
                reader.want(plan::read_order(&d.appliance))?;
                desc = Some(d);
            }
            MemberRole::Manifest | MemberRole::Certificate => {}
            MemberRole::File => {
                let (base, chunked) = match package::split_chunk_name(&member.name) {
                    Some((b, _)) => (b.to_string(), true),
                    None => (member.name.clone(), false),
                };
                if session.files.contains_key(&base) {
                    continue; // a later chunk of a file already read (an error is raised by the reader)
                }
                if desc.is_some() && !plans.contains_key(&base) {
                    session.warnings.push(format!(
                        "{} is not referenced by the descriptor; skipped",
                        member.name
                    ));
                    continue;
                }
                let known = desc.as_ref().map(|d| (&d.appliance, &plans));
                session.on_file(&mut reader, base, chunked, member.size, known)?;
            }
        }
    }
    let contents = reader.finish()?;
    let verification = package::verify(
        &contents,
        &VerifyOptions {
            no_verify: options.no_verify,
            require_manifest: false,
        },
    )?;
    session
        .warnings
        .extend(verification.warnings.iter().cloned());
    let desc = match desc {
        Some(d) => d,
        None => match &contents.descriptor {
            Some((name, bytes)) => {
                let d = read_descriptor(name, bytes.clone(), options)?;
                plans = plan::file_plans(&d.appliance, &|h| package::join_root(&contents.root, h))?;
                d
            }
            None => return Err(ImportError::NoDescriptor),
        },
    };
    let app = &desc.appliance;
    let (mut disks, mut used) = session.finish_disks(app, &plans, &contents.root)?;
    // Files used directly by drives (`ovf:/file/ID`): disks or CD media.
    for f in &app.files {
        let full = join(&contents.root, &f.href)?;
        if used.contains(&full) {
            continue;
        }
        let direct = app.vms.iter().any(|vm| {
            let is = |b: &Backing| matches!(b, Backing::File(i) if app.files.get(i.0) == Some(f));
            vm.disks.iter().any(|x| is(&x.backing))
                || vm.cdroms.iter().any(|x| x.image.as_ref().is_some_and(is))
        });
        if direct {
            let Some(FileState::Done(w) | FileState::Alone(w)) = session.files.get(&full) else {
                return Err(ImportError::MissingFile {
                    disk_id: f.id.clone(),
                    href: f.href.clone(),
                });
            };
            let mut c = session::imported_disk(Some(full.clone()), w);
            c.disk_id = Some(f.id.clone());
            used.insert(full);
            disks.push(c);
        }
    }
    for (name, state) in &session.files {
        if !used.contains(name) {
            let path = match state {
                FileState::Done(w) | FileState::Alone(w) => options.out_dir.join(&w.name),
                FileState::Spooled { path, .. } => path.clone(),
            };
            let _ = std::fs::remove_file(path);
            session.warnings.push(format!(
                "{name} is not referenced by the descriptor; not kept"
            ));
        }
    }
    // Keep the original descriptor beside the disks.
    let desc_name = session.outputs.name_for(&desc.name, "ovf");
    let desc_path = session.outputs.track(&desc_name);
    std::fs::write(&desc_path, &desc.bytes).map_err(|e| ImportError::OutDir {
        path: options.out_dir.clone(),
        reason: format!("cannot write {desc_name}: {e}"),
    })?;
    session.outputs.done = true;
    Ok(ImportReport {
        package: package.to_path_buf(),
        out_dir: options.out_dir.clone(),
        descriptor: desc.name,
        appliance: desc.appliance,
        disks,
        verification: VerificationSummary::of(&verification),
        warnings: session.warnings,
    })
}

pub(crate) fn join(root: &str, href: &str) -> Result<String> {
    Ok(package::join_root(root, &package::normalize_href(href)?))
}

pub(crate) fn format_agrees(said: &DiskFormat, found: Option<SourceFormat>) -> bool {
    matches!(
        (said, found),
        (
            DiskFormat::VmdkStreamOptimized,
            Some(SourceFormat::VmdkStreamOptimized)
        ) | (DiskFormat::Vhd, Some(SourceFormat::Vhd))
            | (DiskFormat::Vhdx, Some(SourceFormat::Vhdx))
            | (DiskFormat::Raw, Some(SourceFormat::Raw))
            | (DiskFormat::Iso, Some(SourceFormat::Iso))
            | (DiskFormat::VmdkOther(_), Some(_))
    )
}
