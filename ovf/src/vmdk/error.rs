//! Errors of the VMDK layer.

use std::io;

/// An error from reading or writing a streamOptimized VMDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmdkError {
    /// Reading or writing the stream failed.
    #[error("i/o error while {op} the vmdk stream at offset {offset:#x}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Byte offset in the stream.
        offset: u64,
        /// The cause (may carry a package error, e.g. a truncated tar).
        #[source]
        source: io::Error,
    },
    /// The stream ended early.
    #[error("truncated vmdk stream: {what} at offset {offset:#x}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Byte offset where the data ran out.
        offset: u64,
    },
    /// A structure is invalid.
    #[error("corrupt vmdk: {field} at offset {offset:#x}: {reason}")]
    Corrupt {
        /// The structure or field.
        field: &'static str,
        /// Byte offset in the stream.
        offset: u64,
        /// Why it is refused.
        reason: String,
    },
    /// A compressed grain does not inflate.
    #[error("corrupt vmdk: compressed grain at offset {offset:#x} (lba {lba}) does not inflate")]
    Inflate {
        /// Byte offset of the grain marker.
        offset: u64,
        /// The grain's first sector.
        lba: u64,
        /// The decoder error.
        #[source]
        source: flate2::DecompressError,
    },
    /// The file uses something not handled.
    #[error("unsupported vmdk: {what}")]
    Unsupported {
        /// What is not supported.
        what: String,
    },
    /// An argument is invalid (writer).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The target disk image failed or is too small.
    #[error("target disk image error")]
    Target(#[source] vhd::Error),
}

impl From<vhd::Error> for VmdkError {
    fn from(e: vhd::Error) -> Self {
        VmdkError::Target(e)
    }
}

impl VmdkError {
    /// The package error (truncated tar, gzip or chunk error ...) that made
    /// reading the stream fail, when the stream came from a package.
    pub fn package_error(&self) -> Option<&crate::package::PackageError> {
        match self {
            VmdkError::Io { source, .. } => source
                .get_ref()
                .and_then(|e| e.downcast_ref::<crate::package::PackageError>()),
            _ => None,
        }
    }

    pub(crate) fn corrupt(field: &'static str, offset: u64, reason: impl Into<String>) -> Self {
        VmdkError::Corrupt {
            field,
            offset,
            reason: reason.into(),
        }
    }
}

/// Result type of the VMDK layer.
pub type Result<T> = std::result::Result<T, VmdkError>;
