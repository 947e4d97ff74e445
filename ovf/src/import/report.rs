//! What an import reports: the disks written, verification, warnings.

use std::path::PathBuf;

use serde::Serialize;

use super::SourceFormat;
use crate::descriptor::ApplianceDescription;
use crate::package::{self, SignatureStatus};

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
    /// The descriptor's `ovf:parentRef`: the disk id this disk is a delta
    /// over (`None` for a disk that stands alone).
    pub parent: Option<String>,
    /// The images `output` reads through, nearest first: its differencing
    /// parents in the output directory. Empty for a standalone image and
    /// for a delta disk flattened into a raw image (whose `parent` is set).
    pub backing: Vec<String>,
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
