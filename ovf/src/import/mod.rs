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

mod disk;
mod inspect;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::descriptor::{self, ApplianceDescription, Backing, DiskFormat, MapOptions};
use crate::package::{
    self, MemberRole, PackageError, PackageOptions, PackageReader, SignatureStatus, VerifyOptions,
};

pub use disk::SourceFormat;
pub use inspect::{Inspection, inspect};

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

/// A disk written into the output directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedDisk {
    /// The package file it came from (`None` for a blank disk).
    pub href: Option<String>,
    /// The descriptor's disk id, once mapped.
    pub disk_id: Option<String>,
    /// File name inside the output directory.
    pub output: String,
    /// What the package file held.
    pub source_format: Option<SourceFormat>,
    /// Whether the package file was gzip-compressed.
    pub gzip: bool,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes of data written (holes are not written).
    pub bytes_written: u64,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerificationSummary {
    /// Manifest file name, when there is one.
    pub manifest: Option<String>,
    /// Manifest lines checked and matching.
    pub entries_ok: usize,
    /// Manifest lines checked in all.
    pub entries: usize,
    /// `unsigned`, `signed by <subject>`, or `invalid: <why>`.
    pub signature: String,
    /// Problems (fatal unless verification was turned off).
    pub problems: Vec<String>,
}

impl VerificationSummary {
    /// Summarises a package verification.
    pub fn of(v: &package::Verification) -> Self {
        VerificationSummary {
            manifest: v.manifest.clone(),
            entries_ok: v.entries.iter().filter(|e| e.ok).count(),
            entries: v.entries.len(),
            signature: match &v.signature {
                SignatureStatus::Unsigned => "unsigned".to_string(),
                SignatureStatus::Signed(s) => format!("signed by {}", s.subject),
                SignatureStatus::Invalid(why) => format!("invalid: {why}"),
            },
            problems: v.problems.clone(),
        }
    }
}

/// The result of an import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The package read.
    pub package: PathBuf,
    /// Where everything was written.
    pub out_dir: PathBuf,
    /// The descriptor's file name (a copy is in the output directory).
    pub descriptor: String,
    /// The appliance: files, disks, networks and one description per
    /// VirtualSystem.
    pub appliance: ApplianceDescription,
    /// Disks by descriptor disk id (files used directly as disks or CD
    /// media by their file id).
    pub disks: Vec<ImportedDisk>,
    /// Manifest and signature.
    pub verification: VerificationSummary,
    /// Things worth telling that did not stop the import.
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// The imported disk for a descriptor disk id.
    pub fn disk(&self, disk_id: &str) -> Option<&ImportedDisk> {
        self.disks
            .iter()
            .find(|d| d.disk_id.as_deref() == Some(disk_id))
    }
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

/// Files written so far; removed unless the import completes.
struct Outputs {
    dir: PathBuf,
    created_dir: bool,
    files: Vec<PathBuf>,
    names: HashSet<String>,
    done: bool,
}

impl Outputs {
    fn name_for(&mut self, base: &str, ext: &str) -> String {
        let stem = Path::new(base)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut clean: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        if clean.is_empty() || clean.starts_with('.') {
            clean.insert_str(0, "disk");
        }
        let mut name = format!("{clean}.{ext}");
        let mut i = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{clean}-{i}.{ext}");
            i += 1;
        }
        name
    }

    fn track(&mut self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        self.files.push(p.clone());
        p
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

fn prepare_out_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ImportError::OutDir {
                    path: dir.to_path_buf(),
                    reason: "exists and is not empty".into(),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| ImportError::OutDir {
                path: dir.to_path_buf(),
                reason: format!("cannot be created: {e}"),
            })?;
            Ok(true)
        }
        Err(e) => Err(ImportError::OutDir {
            path: dir.to_path_buf(),
            reason: format!("cannot be read: {e}"),
        }),
    }
}

/// What the descriptor says about a file, once it is known.
#[derive(Debug, Clone, Default)]
struct FilePlan {
    capacity: Option<u64>,
    iso: bool,
}

fn file_plans(app: &ApplianceDescription, reader: &PackageReader) -> BTreeMap<String, FilePlan> {
    let mut plans = BTreeMap::new();
    for f in &app.files {
        if let Ok(href) = package::normalize_href(&f.href) {
            plans.insert(reader.full_name(&href), FilePlan::default());
        }
    }
    for d in &app.disks {
        if let Some(f) = d.file.and_then(|f| app.files.get(f.0))
            && let Ok(href) = package::normalize_href(&f.href)
        {
            let e: &mut FilePlan = plans.entry(reader.full_name(&href)).or_default();
            e.capacity = e.capacity.max(Some(d.capacity_bytes));
            e.iso |= d.format == DiskFormat::Iso;
        }
    }
    for vm in &app.vms {
        for c in &vm.cdroms {
            let file = match c.image {
                Some(Backing::File(f)) => app.files.get(f.0),
                Some(Backing::Disk(d)) => app.disk_file(d),
                None => None,
            };
            if let Some(f) = file
                && let Ok(href) = package::normalize_href(&f.href)
            {
                plans.entry(reader.full_name(&href)).or_default().iso = true;
            }
        }
    }
    plans
}

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
    let created_dir = prepare_out_dir(&options.out_dir)?;
    let mut outputs = Outputs {
        dir: options.out_dir.clone(),
        created_dir,
        files: Vec::new(),
        names: HashSet::new(),
        done: false,
    };
    let ext = match options.disk_format {
        vhd::Format::Vhdx => "vhdx",
        vhd::Format::Vhd => "vhd",
        vhd::Format::Raw => "raw",
    };
    let mut reader = PackageReader::open(package, PackageOptions::default())?;
    let mut desc: Option<Descriptor> = None;
    let mut plans: BTreeMap<String, FilePlan> = BTreeMap::new();
    // Converted files by full member name (chunk suffix removed).
    let mut converted: BTreeMap<String, ImportedDisk> = BTreeMap::new();
    let mut warnings = Vec::new();

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
                plans = file_plans(&d.appliance, &reader);
                reader.want(d.appliance.files.iter().map(|f| f.href.as_str()))?;
                desc = Some(d);
            }
            MemberRole::Manifest | MemberRole::Certificate => {}
            MemberRole::File => {
                let (base, chunked) = match package::split_chunk_name(&member.name) {
                    Some((b, _)) => (b.to_string(), true),
                    None => (member.name.clone(), false),
                };
                if converted.contains_key(&base) {
                    continue; // a later chunk of a file already read (an error is raised by the reader)
                }
                let plan = plans.get(&base).cloned();
                if desc.is_some() && plan.is_none() {
                    warnings.push(format!(
                        "{} is not referenced by the descriptor; skipped",
                        member.name
                    ));
                    continue;
                }
                let iso = plan.as_ref().is_some_and(|p| p.iso)
                    || base.to_ascii_lowercase().ends_with(".iso");
                let name = outputs.name_for(&base, if iso { "iso" } else { ext });
                let dest = outputs.track(&name);
                if let Some(p) = progress {
                    p(&base);
                }
                let window = if chunked {
                    None
                } else {
                    reader
                        .current_location()
                        .map(|(path, offset)| disk::Location {
                            path,
                            offset,
                            len: member.size,
                        })
                };
                let mut file = reader.open_file(package::Compression::Identity, chunked)?;
                let result = disk::convert_file(
                    &base,
                    &mut file,
                    window,
                    plan.as_ref().and_then(|p| p.capacity),
                    iso,
                    options.disk_format,
                    &dest,
                )?;
                file.drain()?;
                converted.insert(
                    base.clone(),
                    ImportedDisk {
                        href: Some(base),
                        disk_id: None,
                        output: name,
                        source_format: Some(result.format),
                        gzip: result.gzip,
                        virtual_size: result.virtual_size,
                        bytes_written: result.bytes_written,
                    },
                );
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
    warnings.extend(verification.warnings.iter().cloned());
    let desc = match desc {
        Some(d) => d,
        None => match &contents.descriptor {
            Some((name, bytes)) => read_descriptor(name, bytes.clone(), options)?,
            None => return Err(ImportError::NoDescriptor),
        },
    };
    let app = &desc.appliance;
    let mut disks = Vec::new();
    let mut used = HashSet::new();
    for d in &app.disks {
        let disk_id = d.disk_id.clone();
        if let Some(parent) = d.parent.and_then(|p| app.disks.get(p.0)) {
            return Err(ImportError::Unsupported(format!(
                "disk {disk_id} is a delta over disk {}: differencing chains inside packages",
                parent.disk_id
            )));
        }
        match d.file.and_then(|f| app.files.get(f.0)) {
            Some(f) => {
                let full = join(&contents.root, &f.href)?;
                let Some(c) = converted.get(&full) else {
                    return Err(ImportError::MissingFile {
                        disk_id,
                        href: f.href.clone(),
                    });
                };
                let mut c = c.clone();
                let cap = d.capacity_bytes;
                if d.format != DiskFormat::Iso && cap > c.virtual_size {
                    grow(&options.out_dir.join(&c.output), cap, &f.href)?;
                    c.virtual_size = cap;
                } else if cap < c.virtual_size {
                    warnings.push(format!(
                        "disk {disk_id}: the descriptor's capacity of {cap} bytes is smaller than the {} bytes {} holds; the disk keeps its full size",
                        c.virtual_size, f.href
                    ));
                }
                if !matches!(d.format, DiskFormat::Unspecified | DiskFormat::Unknown(_))
                    && !format_agrees(&d.format, c.source_format)
                {
                    warnings.push(format!(
                        "disk {disk_id}: the descriptor says {:?} but {} holds {:?}",
                        d.format, f.href, c.source_format
                    ));
                }
                used.insert(full);
                c.disk_id = Some(disk_id);
                disks.push(c);
            }
            None => {
                let cap = d.capacity_bytes;
                let name = outputs.name_for(&disk_id, ext);
                let dest = outputs.track(&name);
                let opts =
                    vhd::CreateOptions::new(options.disk_format, vhd::ImageType::Dynamic, cap);
                let img = vhd::create(&dest, &opts).map_err(|source| ImportError::Disk {
                    href: name.clone(),
                    source,
                })?;
                use vhd::DiskImage;
                img.flush().map_err(|source| ImportError::Disk {
                    href: name.clone(),
                    source,
                })?;
                disks.push(ImportedDisk {
                    href: None,
                    disk_id: Some(disk_id),
                    output: name,
                    source_format: None,
                    gzip: false,
                    virtual_size: cap,
                    bytes_written: 0,
                });
            }
        }
    }
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
            let Some(c) = converted.get(&full) else {
                return Err(ImportError::MissingFile {
                    disk_id: f.id.clone(),
                    href: f.href.clone(),
                });
            };
            let mut c = c.clone();
            c.disk_id = Some(f.id.clone());
            used.insert(full);
            disks.push(c);
        }
    }
    for (name, c) in &converted {
        if !used.contains(name) {
            let _ = std::fs::remove_file(options.out_dir.join(&c.output));
            warnings.push(format!(
                "{name} is not referenced by the descriptor; not kept"
            ));
        }
    }
    // Keep the original descriptor beside the disks.
    let desc_name = outputs.name_for(&desc.name, "ovf");
    let desc_path = outputs.track(&desc_name);
    std::fs::write(&desc_path, &desc.bytes).map_err(|e| ImportError::OutDir {
        path: options.out_dir.clone(),
        reason: format!("cannot write {desc_name}: {e}"),
    })?;
    outputs.done = true;
    Ok(ImportReport {
        package: package.to_path_buf(),
        out_dir: options.out_dir.clone(),
        descriptor: desc.name,
        appliance: desc.appliance,
        disks,
        verification: VerificationSummary::of(&verification),
        warnings,
    })
}

fn join(root: &str, href: &str) -> Result<String> {
    Ok(package::join_root(root, &package::normalize_href(href)?))
}

fn format_agrees(said: &DiskFormat, found: Option<SourceFormat>) -> bool {
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

fn grow(path: &Path, size: u64, href: &str) -> Result<()> {
    let img =
        vhd::open(path, &vhd::OpenOptions::default()).map_err(|source| ImportError::Disk {
            href: href.to_string(),
            source,
        })?;
    use vhd::DiskImage;
    img.resize(size)
        .and_then(|()| img.flush())
        .map_err(|source| ImportError::Disk {
            href: href.to_string(),
            source,
        })
}
