//! An encoder for the part of ACPI Machine Language (ACPI 6.x, chapter
//! "ACPI Machine Language (AML) Specification") that a static DSDT needs:
//! name strings, package lengths, integer and string constants, buffers,
//! packages, `Name`, `Device` and `Scope`, and the resource descriptors
//! (chapter "Resource Data Types") a PCI host bridge's `_CRS` is made of.
//!
//! Declarations are values ([`Term`], [`Data`], [`Resource`]) encoded in
//! one pass; every length field is computed from what was encoded, never
//! given by hand. Whatever the spec cannot express (a bad name, an
//! over-long package, an inverted range) is a typed [`Error`].

/// `NameOp`.
const NAME_OP: u8 = 0x08;
/// `ScopeOp`.
const SCOPE_OP: u8 = 0x10;
/// `BufferOp`.
const BUFFER_OP: u8 = 0x11;
/// `PackageOp`.
const PACKAGE_OP: u8 = 0x12;
/// `VarPackageOp` (more than 255 elements).
const VAR_PACKAGE_OP: u8 = 0x13;
/// `ExtOpPrefix`.
const EXT_OP_PREFIX: u8 = 0x5b;
/// `DeviceOp` after [`EXT_OP_PREFIX`].
const DEVICE_OP: u8 = 0x82;
/// `ZeroOp`, `OneOp` and the integer prefixes.
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const STRING_PREFIX: u8 = 0x0d;
const QWORD_PREFIX: u8 = 0x0e;
/// Name string prefixes.
const ROOT_CHAR: u8 = b'\\';
const PARENT_PREFIX_CHAR: u8 = b'^';
const DUAL_NAME_PREFIX: u8 = 0x2e;
const MULTI_NAME_PREFIX: u8 = 0x2f;
const NULL_NAME: u8 = 0x00;

/// Largest package length: 28 bits.
pub const MAX_PKG_LENGTH: usize = 0x0fff_ffff;

/// Small resource items (tag byte: item name << 3 | length).
const IO_PORT_TAG: u8 = 0x47;
const END_TAG: u8 = 0x79;
/// Large resource items (tag byte: 0x80 | item name).
const MEMORY32_FIXED_TAG: u8 = 0x86;
const DWORD_ADDRESS_TAG: u8 = 0x87;
const WORD_ADDRESS_TAG: u8 = 0x88;
const QWORD_ADDRESS_TAG: u8 = 0x8a;
/// Address space resource types.
const RESOURCE_MEMORY: u8 = 0;
const RESOURCE_IO: u8 = 1;
const RESOURCE_BUS: u8 = 2;
/// General flags of an address space descriptor: consumer only, and the
/// minimum and maximum address fixed (positive decode is 0).
const GENERAL_CONSUMER: u8 = 1 << 0;
const GENERAL_MIN_FIXED: u8 = 1 << 2;
const GENERAL_MAX_FIXED: u8 = 1 << 3;
/// I/O type-specific flags: the window covers ISA and non-ISA ranges.
const IO_ENTIRE_RANGE: u8 = 0b11;
/// Memory type-specific flag: read-write.
const MEMORY_READ_WRITE: u8 = 1;

/// What cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A name path segment is not 1-4 characters of `A-Z`, `0-9`, `_`
    /// starting with a letter or `_`, or the path has over 255 segments.
    #[error("aml name path {0:?} is invalid")]
    InvalidName(String),
    /// A string holds a NUL or a character above 0x7f.
    #[error("aml string {0:?} has a character outside 0x01-0x7f")]
    InvalidString(String),
    /// An EISA ID is not three upper-case letters and four hex digits.
    #[error("eisa id {0:?} is not three upper-case letters and four hexadecimal digits")]
    InvalidEisaId(String),
    /// A package, scope, device or buffer is longer than a package length
    /// can say.
    #[error("aml object of {0} bytes exceeds the largest package length ({MAX_PKG_LENGTH} bytes)")]
    TooLong(usize),
    /// A resource range whose maximum is below its minimum, or whose
    /// length does not fit the descriptor's width.
    #[error("resource range {min:#x}..={max:#x} is inverted or too long")]
    InvalidRange {
        /// Minimum address.
        min: u64,
        /// Maximum address.
        max: u64,
    },
}

/// Result of encoding.
pub type Result<T> = std::result::Result<T, Error>;

/// An encoded name string: a path such as `\_SB.PCI0`, `^PCI0` or `_HID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameString(Vec<u8>);

impl NameString {
    /// Parses `path`: an optional `\` or any number of `^`, then
    /// dot-separated segments of up to four characters (shorter ones are
    /// padded with `_`). `\` alone is the root.
    pub fn new(path: &str) -> Result<Self> {
        let bad = || Error::InvalidName(path.to_string());
        let mut out = Vec::new();
        let rest = if let Some(rest) = path.strip_prefix('\\') {
            out.push(ROOT_CHAR);
            rest
        } else {
            let rest = path.trim_start_matches('^');
            out.resize(path.len() - rest.len(), PARENT_PREFIX_CHAR);
            rest
        };
        if rest.is_empty() {
            if out.is_empty() {
                return Err(bad());
            }
            out.push(NULL_NAME);
            return Ok(NameString(out));
        }
        let segments: Vec<[u8; 4]> = rest
            .split('.')
            .map(name_seg)
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        match segments.len() {
            1 => {}
            2 => out.push(DUAL_NAME_PREFIX),
            n => {
                out.push(MULTI_NAME_PREFIX);
                out.push(u8::try_from(n).map_err(|_| bad())?);
            }
        }
        for seg in &segments {
            out.extend_from_slice(seg);
        }
        Ok(NameString(out))
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One segment, padded to four characters, or `None` if invalid.
fn name_seg(s: &str) -> Option<[u8; 4]> {
    let b = s.as_bytes();
    let lead_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_uppercase() || *c == b'_');
    let rest_ok = b
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_');
    if !lead_ok || !rest_ok || b.len() > 4 {
        return None;
    }
    let mut seg = [b'_'; 4];
    seg[..b.len()].copy_from_slice(b);
    Some(seg)
}

/// The compressed 32-bit EISA ID of `id` (`"PNP0A03"` -> 0x030AD041): three
/// 5-bit letters packed big-endian into the first two bytes, then four hex
/// digits, read as a little-endian DWord as the ASL `EISAID` macro does.
pub fn eisa_id(id: &str) -> Result<u32> {
    let bad = || Error::InvalidEisaId(id.to_string());
    let b = id.as_bytes();
    if b.len() != 7 {
        return Err(bad());
    }
    let mut letters = [0u8; 3];
    for (l, c) in letters.iter_mut().zip(&b[..3]) {
        if !c.is_ascii_uppercase() {
            return Err(bad());
        }
        *l = c - b'@';
    }
    let mut digits = [0u8; 4];
    for (d, c) in digits.iter_mut().zip(&b[3..]) {
        let v = char::from(*c).to_digit(16).ok_or_else(bad)?;
        *d = u8::try_from(v).map_err(|_| bad())?;
    }
    Ok(u32::from_le_bytes([
        (letters[0] << 2) | (letters[1] >> 3),
        ((letters[1] & 0x7) << 5) | letters[2],
        (digits[0] << 4) | digits[1],
        (digits[2] << 4) | digits[3],
    ]))
}

/// Appends the PkgLength of an object whose contents after the PkgLength
/// are `content_len` bytes (the encoded value counts its own bytes).
pub fn pkg_length(content_len: usize, out: &mut Vec<u8>) -> Result<()> {
    // A one-byte PkgLength holds 6 bits; each further byte adds 8 bits to
    // the 4 left in the lead byte.
    let limits = [0x3f, 0xfff, 0xf_ffff, MAX_PKG_LENGTH];
    for (extra, limit) in limits.into_iter().enumerate() {
        let total = content_len
            .checked_add(extra + 1)
            .ok_or(Error::TooLong(content_len))?;
        if total > limit {
            continue;
        }
        let bytes = total.to_le_bytes();
        if extra == 0 {
            out.push(bytes[0]);
            return Ok(());
        }
        let extra_u8 = u8::try_from(extra).map_err(|_| Error::TooLong(content_len))?;
        out.push((extra_u8 << 6) | (bytes[0] & 0x0f));
        for i in 0..extra {
            let v = (total >> (4 + 8 * i)) & 0xff;
            out.push(u8::try_from(v).map_err(|_| Error::TooLong(content_len))?);
        }
        return Ok(());
    }
    Err(Error::TooLong(content_len))
}

/// Appends the shortest encoding of integer `v`.
pub fn integer(v: u64, out: &mut Vec<u8>) {
    if v == 0 {
        out.push(ZERO_OP);
    } else if v == 1 {
        out.push(ONE_OP);
    } else if let Ok(b) = u8::try_from(v) {
        out.extend_from_slice(&[BYTE_PREFIX, b]);
    } else if let Ok(w) = u16::try_from(v) {
        out.push(WORD_PREFIX);
        out.extend_from_slice(&w.to_le_bytes());
    } else if let Ok(d) = u32::try_from(v) {
        out.push(DWORD_PREFIX);
        out.extend_from_slice(&d.to_le_bytes());
    } else {
        out.push(QWORD_PREFIX);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// `op PkgLength body`, for the objects whose length covers what follows.
fn with_pkg_length(op: &[u8], body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(op);
    pkg_length(body.len(), out)?;
    out.extend_from_slice(body);
    Ok(())
}

/// A data object: what a `Name` holds or a package contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// An integer constant.
    Integer(u64),
    /// An ASCII string.
    String(String),
    /// A buffer with these bytes.
    Buffer(Vec<u8>),
    /// A package of these elements.
    Package(Vec<Data>),
}

impl Data {
    /// The EISA ID `id` as an integer ([`eisa_id`]).
    pub fn eisa_id(id: &str) -> Result<Data> {
        eisa_id(id).map(|v| Data::Integer(u64::from(v)))
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Data::Integer(v) => integer(*v, out),
            Data::String(s) => {
                if s.bytes().any(|c| c == 0 || c > 0x7f) {
                    return Err(Error::InvalidString(s.clone()));
                }
                out.push(STRING_PREFIX);
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Data::Buffer(bytes) => {
                let mut body = Vec::with_capacity(bytes.len() + 9);
                integer(bytes.len() as u64, &mut body);
                body.extend_from_slice(bytes);
                with_pkg_length(&[BUFFER_OP], &body, out)?;
            }
            Data::Package(elements) => {
                let mut body = Vec::new();
                let op = match u8::try_from(elements.len()) {
                    Ok(n) => {
                        body.push(n);
                        PACKAGE_OP
                    }
                    Err(_) => {
                        integer(elements.len() as u64, &mut body);
                        VAR_PACKAGE_OP
                    }
                };
                for e in elements {
                    e.encode(&mut body)?;
                }
                with_pkg_length(&[op], &body, out)?;
            }
        }
        Ok(())
    }
}

/// A term of a definition block's term list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// `Name (path, data)`.
    Name(NameString, Data),
    /// `Device (path) { terms }`.
    Device(NameString, Vec<Term>),
    /// `Scope (path) { terms }`.
    Scope(NameString, Vec<Term>),
}

impl Term {
    /// `Name (path, data)` with `path` parsed.
    pub fn name(path: &str, data: Data) -> Result<Term> {
        Ok(Term::Name(NameString::new(path)?, data))
    }

    /// `Device (path) { terms }` with `path` parsed.
    pub fn device(path: &str, terms: Vec<Term>) -> Result<Term> {
        Ok(Term::Device(NameString::new(path)?, terms))
    }

    /// `Scope (path) { terms }` with `path` parsed.
    pub fn scope(path: &str, terms: Vec<Term>) -> Result<Term> {
        Ok(Term::Scope(NameString::new(path)?, terms))
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Term::Name(name, data) => {
                out.push(NAME_OP);
                out.extend_from_slice(name.as_bytes());
                data.encode(out)
            }
            Term::Device(name, terms) => {
                with_pkg_length(&[EXT_OP_PREFIX, DEVICE_OP], &named_body(name, terms)?, out)
            }
            Term::Scope(name, terms) => {
                with_pkg_length(&[SCOPE_OP], &named_body(name, terms)?, out)
            }
        }
    }
}

fn named_body(name: &NameString, terms: &[Term]) -> Result<Vec<u8>> {
    let mut body = name.as_bytes().to_vec();
    for t in terms {
        t.encode(&mut body)?;
    }
    Ok(body)
}

/// Whether a device only uses an address range or also passes it on (a
/// bridge's window); general flags bit 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `ResourceProducer`: the device decodes the range for its children.
    Producer,
    /// `ResourceConsumer`: the device itself uses the range.
    Consumer,
}

/// Memory attributes of a memory range (type-specific flags bits 2:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// `NonCacheable`.
    NonCacheable = 0,
    /// `Cacheable`.
    Cacheable = 1,
    /// `WriteCombining`.
    WriteCombining = 2,
    /// `Prefetchable`.
    Prefetchable = 3,
}

/// A resource descriptor of a resource template. Address space
/// descriptors describe fixed windows: minimum and maximum fixed, positive
/// decode, granularity 0, no translation, length `max - min + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `IO (Decode16, min, max, alignment, length)`.
    Io {
        /// Lowest base.
        min: u16,
        /// Highest base.
        max: u16,
        /// Base alignment.
        alignment: u8,
        /// Number of ports.
        length: u8,
    },
    /// `WordBusNumber (usage, MinFixed, MaxFixed, PosDecode, ...)`.
    WordBusNumber {
        /// Producer or consumer.
        usage: Usage,
        /// First bus.
        min: u16,
        /// Last bus.
        max: u16,
    },
    /// `WordIO (usage, MinFixed, MaxFixed, PosDecode, EntireRange, ...)`.
    WordIo {
        /// Producer or consumer.
        usage: Usage,
        /// First port.
        min: u16,
        /// Last port.
        max: u16,
    },
    /// `DWordMemory (usage, PosDecode, MinFixed, MaxFixed, caching, rw, ...)`.
    DWordMemory {
        /// Producer or consumer.
        usage: Usage,
        /// Memory attributes.
        caching: Caching,
        /// `ReadWrite` rather than `ReadOnly`.
        writable: bool,
        /// First address.
        min: u32,
        /// Last address.
        max: u32,
    },
    /// `QWordMemory (usage, PosDecode, MinFixed, MaxFixed, caching, rw, ...)`.
    QWordMemory {
        /// Producer or consumer.
        usage: Usage,
        /// Memory attributes.
        caching: Caching,
        /// `ReadWrite` rather than `ReadOnly`.
        writable: bool,
        /// First address.
        min: u64,
        /// Last address.
        max: u64,
    },
    /// `Memory32Fixed (rw, base, length)`.
    Memory32Fixed {
        /// `ReadWrite` rather than `ReadOnly`.
        writable: bool,
        /// Base address.
        base: u32,
        /// Length in bytes.
        length: u32,
    },
}

/// The `_LEN` of a fixed window `min..=max`, checked.
fn window_len(min: u64, max: u64) -> Result<u64> {
    max.checked_sub(min)
        .and_then(|d| d.checked_add(1))
        .ok_or(Error::InvalidRange { min, max })
}

fn general_flags(usage: Usage) -> u8 {
    let consumer = if usage == Usage::Consumer {
        GENERAL_CONSUMER
    } else {
        0
    };
    GENERAL_MIN_FIXED | GENERAL_MAX_FIXED | consumer
}

fn memory_flags(caching: Caching, writable: bool) -> u8 {
    let rw = if writable { MEMORY_READ_WRITE } else { 0 };
    ((caching as u8) << 1) | rw
}

impl Resource {
    /// Appends the descriptor.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        match *self {
            Resource::Io {
                min,
                max,
                alignment,
                length,
            } => {
                out.extend_from_slice(&[IO_PORT_TAG, 1]); // Decode16
                out.extend_from_slice(&min.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
                out.extend_from_slice(&[alignment, length]);
            }
            Resource::WordBusNumber { usage, min, max } => {
                let flags = general_flags(usage);
                address(WORD, RESOURCE_BUS, flags, 0, min.into(), max.into(), out)?;
            }
            Resource::WordIo { usage, min, max } => {
                let flags = general_flags(usage);
                let io = IO_ENTIRE_RANGE;
                address(WORD, RESOURCE_IO, flags, io, min.into(), max.into(), out)?;
            }
            Resource::DWordMemory {
                usage,
                caching,
                writable,
                min,
                max,
            } => {
                let (general, specific) = (general_flags(usage), memory_flags(caching, writable));
                let (min, max) = (min.into(), max.into());
                address(DWORD, RESOURCE_MEMORY, general, specific, min, max, out)?;
            }
            Resource::QWordMemory {
                usage,
                caching,
                writable,
                min,
                max,
            } => {
                let (general, specific) = (general_flags(usage), memory_flags(caching, writable));
                address(QWORD, RESOURCE_MEMORY, general, specific, min, max, out)?;
            }
            Resource::Memory32Fixed {
                writable,
                base,
                length,
            } => {
                out.extend_from_slice(&[MEMORY32_FIXED_TAG, 9, 0, u8::from(writable)]);
                out.extend_from_slice(&base.to_le_bytes());
                out.extend_from_slice(&length.to_le_bytes());
            }
        }
        Ok(())
    }
}

/// Word, DWord and QWord address space descriptors: tag and field width.
const WORD: (u8, usize) = (WORD_ADDRESS_TAG, 2);
const DWORD: (u8, usize) = (DWORD_ADDRESS_TAG, 4);
const QWORD: (u8, usize) = (QWORD_ADDRESS_TAG, 8);

/// An address space descriptor of the given size for the fixed window
/// `min..=max` (both fit the field width): granularity, minimum, maximum,
/// translation and length fields, each `size.1` bytes.
fn address(
    size: (u8, usize),
    kind: u8,
    general: u8,
    specific: u8,
    min: u64,
    max: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    let (tag, width) = size;
    let len = window_len(min, max)?;
    // A window covering every value of the width has a length it cannot hold.
    if width < 8 && len >> (8 * width) != 0 {
        return Err(Error::InvalidRange { min, max });
    }
    let body = u8::try_from(3 + 5 * width).unwrap_or(u8::MAX);
    out.extend_from_slice(&[tag, body, 0, kind, general, specific]);
    for v in [0, min, max, 0, len] {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    Ok(())
}

/// A `ResourceTemplate () { resources }`: a buffer of the descriptors and
/// an end tag whose checksum makes the bytes sum to zero.
pub fn resource_template(resources: &[Resource]) -> Result<Data> {
    let mut bytes = Vec::new();
    for r in resources {
        r.encode(&mut bytes)?;
    }
    bytes.push(END_TAG);
    bytes.push(super::checksum(&bytes));
    Ok(Data::Buffer(bytes))
}

#[cfg(test)]
#[path = "aml_tests.rs"]
mod tests;
