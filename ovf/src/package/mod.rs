//! OVA and directory packages: streaming tar reader, gzip and chunked
//! files, manifest and certificate.
//!
//! An OVA is read in one forward pass over the tar, its members in whatever
//! order they come ([`PackageReader::next_member`]). Every member is hashed
//! while it is read or skipped, so the manifest may come before or after
//! the files it lists; the descriptor, manifest and certificate are
//! buffered in memory (capped by [`PackageOptions::metadata_limit`]).
//! Files are read through [`PackageReader::open_file`], which concatenates
//! chunks and decompresses gzip while streaming. At the end,
//! [`PackageReader::finish`] gives the [`PackageContents`] that [`verify`]
//! checks.
//!
//! Safety: member names are normalised and refused when they could leave
//! the package ([`normalize_member_name`]); symbolic and hard links,
//! devices and FIFOs are refused with an error whatever their name (no OVA
//! producer writes them, and refusing them all means a link can never
//! stand in for a referenced file); duplicate names are an error; header
//! sizes are never used to size an allocation except for metadata members
//! and extended headers, which are capped. [`safe_relative_path`] turns an
//! href into a path inside the output directory or refuses it.

mod cert;
mod digest;
mod dir;
mod error;
mod file;
mod manifest;
mod path;
mod reader;
pub mod tar;
mod verify;

pub use cert::{CertificateFile, SignerInfo};
pub use digest::{DigestAlgorithm, DigestSet, Digests, Hashers, from_hex, to_hex};
pub use error::{PackageError, PackageErrorKind, Result};
pub use file::{Compression, FileReader};
pub use manifest::{Manifest, ManifestEntry, manifest_line};
pub use path::{
    MAX_COMPONENTS, MAX_NAME_LEN, chunk_name, join_root, normalize_href, normalize_member_name,
    safe_relative_path, split_chunk_name,
};
pub use reader::{
    DEFAULT_MAX_MEMBERS, DEFAULT_METADATA_LIMIT, Member, MemberBody, MemberRole, MemberSummary,
    PackageContents, PackageOptions, PackageReader,
};
pub use verify::{EntryCheck, SignatureStatus, Verification, VerifyOptions, verify};
