//! Errors of the disk-image layer.
//!
//! Every error carries enough context to say what was wrong and where (file,
//! offset, field); [`Error::kind`] gives the coarse class a caller can match on.

use std::io;
use std::path::PathBuf;

use crate::Format;

/// The coarse class of an [`Error`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The operating system refused or failed an operation.
    Io,
    /// The image's structures are inconsistent or out of range.
    Corrupt,
    /// The image uses a feature this implementation does not handle.
    Unsupported,
    /// The caller asked for something invalid (range, size, option).
    InvalidArgument,
    /// A write was refused: the image is open read-only, or the write
    /// would have changed what format the file is detected as.
    ReadOnly,
    /// A differencing chain could not be resolved (missing, not allowed,
    /// identity mismatch, too deep).
    Parent,
}

/// An error from the disk-image layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("i/o error while {op} {}", path.display())]
    Io {
        /// What was being done, e.g. "reading".
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// An on-disk structure is invalid.
    #[error("corrupt {format} image: {field} at offset {offset:#x}: {reason}")]
    Corrupt {
        /// The format being parsed.
        format: Format,
        /// The structure or field name, e.g. "dynamic header block size".
        field: &'static str,
        /// The byte offset in the file of the structure or field.
        offset: u64,
        /// Why the value is refused.
        reason: String,
    },
    /// The image uses a feature that is not supported.
    #[error("unsupported {format} image feature: {what}")]
    Unsupported {
        /// The format concerned.
        format: Format,
        /// What is not supported.
        what: String,
    },
    /// An argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A request reaches outside the virtual disk.
    #[error("request of {len} bytes at offset {offset:#x} is outside the disk of {size} bytes")]
    OutOfRange {
        /// Start of the request.
        offset: u64,
        /// Length of the request.
        len: u64,
        /// Virtual size of the disk.
        size: u64,
    },
    /// A write was attempted on a read-only image.
    #[error("the image is open read-only")]
    ReadOnly,
    /// A write to a raw image found by probing would have left a signature
    /// that makes the file detect as another format.
    #[error(
        "refused a write that would put a {format} signature at offset {offset:#x} of a raw \
         image whose format was detected (name the format explicitly to allow it)"
    )]
    SignatureRefused {
        /// The format the file would detect as ("VHDX", "QCOW", ...).
        format: &'static str,
        /// Where the signature would start.
        offset: u64,
    },
    /// A parent locator names a file outside the directories the caller allows.
    #[error("parent {} of {} is outside the allowed directories", parent.display(), child.display())]
    ParentNotAllowed {
        /// The child image.
        child: PathBuf,
        /// The parent path the locator named.
        parent: PathBuf,
    },
    /// None of the parent locators led to a usable file.
    #[error("parent of {} not found (tried: {})", child.display(), tried.join(", "))]
    ParentNotFound {
        /// The child image.
        child: PathBuf,
        /// The paths that were tried.
        tried: Vec<String>,
    },
    /// The parent found does not match the identity the child records.
    #[error("parent {} of {} does not match: {reason}", parent.display(), child.display())]
    ParentMismatch {
        /// The child image.
        child: PathBuf,
        /// The parent image.
        parent: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Probing found the signature of an image format this crate does not
    /// read; taking the file for raw would expose its container bytes as
    /// the disk.
    #[error(
        "{} is a {format} image, a format not supported here (name the raw format explicitly \
         to use its bytes as a disk)",
        path.display()
    )]
    ForeignFormat {
        /// The file.
        path: PathBuf,
        /// The format its signature names ("QCOW", "VMDK", "VDI", "QED").
        format: &'static str,
    },
    /// The differencing chain is longer than the limit (or loops).
    #[error("differencing chain of {} is deeper than {limit} images (a loop?)", path.display())]
    ChainTooDeep {
        /// The image at which the limit was hit.
        path: PathBuf,
        /// The limit.
        limit: u32,
    },
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Unsupported { .. } | Error::ForeignFormat { .. } => ErrorKind::Unsupported,
            Error::InvalidArgument(_) | Error::OutOfRange { .. } => ErrorKind::InvalidArgument,
            Error::ReadOnly | Error::SignatureRefused { .. } => ErrorKind::ReadOnly,
            Error::ParentNotAllowed { .. }
            | Error::ParentNotFound { .. }
            | Error::ParentMismatch { .. }
            | Error::ChainTooDeep { .. } => ErrorKind::Parent,
        }
    }

    /// Builds an I/O error.
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Builds a corruption error.
    #[allow(dead_code)] // used by the VHD and VHDX modules
    pub(crate) fn corrupt(
        format: Format,
        field: &'static str,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            format,
            field,
            offset,
            reason: reason.into(),
        }
    }

    /// Builds an unsupported-feature error.
    pub(crate) fn unsupported(format: Format, what: impl Into<String>) -> Self {
        Error::Unsupported {
            format,
            what: what.into(),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
