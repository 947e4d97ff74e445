//! Errors of the package layer.

use std::io;
use std::path::PathBuf;

/// The coarse class of a [`PackageError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageErrorKind {
    /// Reading the package failed at the operating-system level.
    Io,
    /// The archive or one of its files is malformed or truncated.
    Corrupt,
    /// The package tries something refused for safety (path escape, link,
    /// device, duplicate).
    Unsafe,
    /// The package uses a feature that is not handled.
    Unsupported,
    /// Digests or the signature do not match.
    Verification,
}

/// An error from reading or verifying a package.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Reading failed.
    #[error("i/o error while {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or archive concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// A tar header is invalid.
    #[error("corrupt tar header at offset {offset:#x}: {reason}")]
    TarHeader {
        /// Byte offset of the header in the archive.
        offset: u64,
        /// Why it is refused.
        reason: String,
    },
    /// The archive ended early.
    #[error("truncated archive: {what} at offset {offset:#x}")]
    Truncated {
        /// What was being read.
        what: String,
        /// Byte offset where the data ran out.
        offset: u64,
    },
    /// A member name or an href is refused.
    #[error("unsafe path {name:?}: {reason}")]
    UnsafePath {
        /// The name as found.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A member is not a regular file or directory.
    #[error("member {name:?} is a {kind}, which packages may not contain")]
    ForbiddenMember {
        /// The member name.
        name: String,
        /// What it is, e.g. "symbolic link".
        kind: &'static str,
    },
    /// Two members have the same name.
    #[error("member {name:?} appears twice in the package")]
    Duplicate {
        /// The member name.
        name: String,
    },
    /// A feature of the archive or package is not handled.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is not supported.
        what: String,
    },
    /// A small member (descriptor, manifest, certificate) exceeds the cap.
    #[error("member {name:?} is larger than the {limit}-byte limit for metadata files")]
    TooLarge {
        /// The member name.
        name: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The package layout is invalid (no descriptor, several descriptors ...).
    #[error("invalid package layout: {reason}")]
    Layout {
        /// What is wrong.
        reason: String,
    },
    /// Chunks of a chunked file are missing or out of order.
    #[error("chunked file {href:?}: {reason}")]
    Chunk {
        /// The href of the chunked file.
        href: String,
        /// What is wrong.
        reason: String,
    },
    /// A gzip-compressed file could not be decompressed.
    #[error("gzip data of {name:?} is corrupt")]
    Gzip {
        /// The member name.
        name: String,
        /// The decoder error.
        #[source]
        source: io::Error,
    },
    /// The manifest cannot be parsed.
    #[error("manifest {name:?} line {line}: {reason}")]
    Manifest {
        /// The manifest member name.
        name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The certificate file cannot be parsed or uses something unsupported.
    #[error("certificate {name:?}: {reason}")]
    Certificate {
        /// The certificate member name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Verification failed (digest mismatch, missing entry or file, bad
    /// signature); the list says every problem found.
    #[error("package verification failed: {}", problems.join("; "))]
    Verification {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// The reader was used out of order (e.g. a body requested with no
    /// current member).
    #[error("package reader misuse: {0}")]
    Usage(&'static str),
}

impl PackageError {
    /// The class of this error.
    pub fn kind(&self) -> PackageErrorKind {
        match self {
            PackageError::Io { .. } => PackageErrorKind::Io,
            PackageError::TarHeader { .. }
            | PackageError::Truncated { .. }
            | PackageError::TooLarge { .. }
            | PackageError::Layout { .. }
            | PackageError::Chunk { .. }
            | PackageError::Gzip { .. }
            | PackageError::Manifest { .. }
            | PackageError::Certificate { .. }
            | PackageError::Usage(_) => PackageErrorKind::Corrupt,
            PackageError::UnsafePath { .. }
            | PackageError::ForbiddenMember { .. }
            | PackageError::Duplicate { .. } => PackageErrorKind::Unsafe,
            PackageError::Unsupported { .. } => PackageErrorKind::Unsupported,
            PackageError::Verification { .. } => PackageErrorKind::Verification,
        }
    }

    /// Wraps this error in an `io::Error` so it can travel through `Read`;
    /// [`PackageError::from_io`] takes it out again.
    pub fn into_io(self) -> io::Error {
        let kind = match self {
            PackageError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }

    /// Recovers a `PackageError` carried in an `io::Error` by
    /// [`into_io`](Self::into_io); other I/O errors become [`PackageError::Io`].
    pub fn from_io(err: io::Error, op: &'static str, path: &std::path::Path) -> Self {
        if err.get_ref().is_some_and(|e| e.is::<PackageError>()) {
            let kind = err.kind();
            if let Some(Ok(e)) = err.into_inner().map(|e| e.downcast::<PackageError>()) {
                return *e;
            }
            return PackageError::Io {
                op,
                path: path.to_path_buf(),
                source: io::Error::from(kind),
            };
        }
        PackageError::Io {
            op,
            path: path.to_path_buf(),
            source: err,
        }
    }
}

/// Result type of the package layer.
pub type Result<T> = std::result::Result<T, PackageError>;
