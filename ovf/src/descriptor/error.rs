//! Errors of the descriptor parser, writer and mapping.

use thiserror::Error;

/// Why a descriptor could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// The descriptor is larger than the size limit.
    #[error("descriptor is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Elements nest deeper than the depth limit.
    #[error("elements nest deeper than {limit} levels at byte {position}")]
    TooDeep {
        /// The limit.
        limit: usize,
        /// Byte offset of the element that went too deep.
        position: u64,
    },
    /// The document has more elements than the element limit.
    #[error("descriptor has more than {limit} elements (at byte {position})")]
    TooManyElements {
        /// The limit.
        limit: usize,
        /// Byte offset of the first element over the limit.
        position: u64,
    },
    /// One element has more attributes than the attribute limit.
    #[error("element at byte {position} has more than {limit} attributes")]
    TooManyAttributes {
        /// The limit.
        limit: usize,
        /// Byte offset of the element.
        position: u64,
    },
    /// A document type declaration: refused, so no entity is ever declared,
    /// expanded or fetched.
    #[error("document type declarations are not accepted (at byte {position})")]
    Doctype {
        /// Byte offset of the declaration.
        position: u64,
    },
    /// The declared or detected encoding is not UTF-8.
    #[error("descriptor encoding {encoding} is not supported (only UTF-8)")]
    UnsupportedEncoding {
        /// The encoding named or detected.
        encoding: String,
    },
    /// The bytes are not valid UTF-8.
    #[error("descriptor is not valid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first invalid byte (approximate inside markup).
        offset: usize,
        /// The decoding error.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The XML is not well-formed, or names an unknown entity.
    #[error("malformed XML at byte {position}")]
    Xml {
        /// Byte offset where reading failed.
        position: u64,
        /// The XML reader's error.
        #[source]
        source: quick_xml::Error,
    },
    /// A namespace prefix is used without a declaration.
    #[error("namespace prefix {prefix:?} is not declared (at byte {position})")]
    UnboundPrefix {
        /// The prefix.
        prefix: String,
        /// Byte offset of the element.
        position: u64,
    },
    /// A reserved prefix is redeclared or a prefix is bound to "".
    #[error("prefix {prefix:?} cannot be declared (at byte {position})")]
    ReservedPrefix {
        /// The prefix.
        prefix: String,
        /// Byte offset of the element.
        position: u64,
    },
    /// A prefix declared with an empty namespace name.
    #[error("prefix {prefix:?} is bound to an empty namespace (at byte {position})")]
    EmptyNamespace {
        /// The prefix.
        prefix: String,
        /// Byte offset of the element.
        position: u64,
    },
    /// The same attribute appears twice on one element.
    #[error("attribute {name} appears twice on the element at byte {position}")]
    DuplicateAttribute {
        /// The attribute name.
        name: String,
        /// Byte offset of the element.
        position: u64,
    },
    /// The input holds no element.
    #[error("descriptor is empty")]
    Empty,
    /// The input ends inside an element.
    #[error("descriptor ends inside an element")]
    Truncated,
    /// A second root element.
    #[error("a second root element at byte {position}")]
    SecondRoot {
        /// Byte offset.
        position: u64,
    },
    /// Character data outside the root element.
    #[error("text outside the root element at byte {position}")]
    TextOutsideRoot {
        /// Byte offset.
        position: u64,
    },
    /// The root element is not an OVF `Envelope`.
    #[error("root element is {found}, not an OVF Envelope")]
    NotAnEnvelope {
        /// The root element's namespace and name.
        found: String,
    },
    /// A required attribute is missing.
    #[error("{element} has no {attribute} attribute")]
    MissingAttribute {
        /// Where: element name and identifying context.
        element: String,
        /// The missing attribute.
        attribute: &'static str,
    },
    /// A required child element is missing.
    #[error("{element} has no {child} element")]
    MissingElement {
        /// Where.
        element: String,
        /// The missing element.
        child: &'static str,
    },
    /// A value does not parse as its type.
    #[error("{field} of {element} has the invalid value {value:?}: {expected}")]
    InvalidValue {
        /// Where.
        element: String,
        /// Which attribute or child element.
        field: &'static str,
        /// The value as written (truncated to 64 characters).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// Two objects of one kind share an identifier.
    #[error("{kind} id {id:?} is used twice")]
    DuplicateId {
        /// What kind of object: file, disk, network, virtual system, item.
        kind: &'static str,
        /// The identifier.
        id: String,
    },
    /// The envelope has no VirtualSystem or VirtualSystemCollection.
    #[error("envelope has no VirtualSystem or VirtualSystemCollection")]
    NoContent,
    /// More than one top-level content element.
    #[error("envelope has more than one top-level VirtualSystem or VirtualSystemCollection")]
    SeveralContents,
}

/// Why a model could not be written as a descriptor.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The writer produces OVF 1.x and 2.x envelopes only.
    #[error("writing OVF {0} envelopes is not supported")]
    UnsupportedVersion(&'static str),
    /// A construct that the target OVF version cannot express.
    #[error("{what} cannot be written in an OVF {version} envelope")]
    NotInVersion {
        /// The construct.
        what: &'static str,
        /// The target version.
        version: &'static str,
    },
    /// A string holds a character XML 1.0 cannot carry.
    #[error("{what} holds a character XML cannot carry (U+{code:04X})")]
    InvalidCharacter {
        /// Which value.
        what: String,
        /// The character.
        code: u32,
    },
    /// A name is not a valid XML name.
    #[error("{name:?} is not a valid XML name")]
    InvalidName {
        /// The name.
        name: String,
    },
}

/// Why a model could not be mapped to a VM description.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MapError {
    /// The deployment option asked for does not exist.
    #[error("deployment option {0:?} is not declared in DeploymentOptionSection")]
    UnknownConfiguration(String),
    /// No VirtualHardwareSection has the system type asked for.
    #[error("virtual system {system} has no hardware section of type {system_type:?}")]
    UnknownSystemType {
        /// The VirtualSystem id.
        system: String,
        /// The type asked for.
        system_type: String,
    },
    /// A section we do not understand is marked `ovf:required="true"`.
    #[error("section {section} in {place} is required but not supported")]
    RequiredSectionUnsupported {
        /// Qualified name of the section.
        section: String,
        /// Envelope or the VirtualSystem id.
        place: String,
    },
    /// A disk capacity names a property that does not exist.
    #[error("disk {disk} capacity refers to the undefined property {property:?}")]
    UnknownProperty {
        /// Disk id.
        disk: String,
        /// Property key.
        property: String,
    },
    /// A quantity is not a non-negative integer.
    #[error("{what} has the invalid value {value:?}")]
    InvalidQuantity {
        /// Which value.
        what: String,
        /// The value.
        value: String,
    },
    /// An allocation unit string we cannot interpret.
    #[error("{what} has unrecognised allocation units {units:?}")]
    InvalidUnits {
        /// Which value.
        what: String,
        /// The units as written.
        units: String,
        /// Why.
        #[source]
        source: super::units::UnitsError,
    },
    /// A quantity is larger than any sensible value.
    #[error("{what} of {bytes} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Which value.
        what: String,
        /// The value in bytes (may exceed u64).
        bytes: u128,
        /// The limit.
        limit: u64,
    },
    /// A disk names a file that References does not list.
    #[error("disk {disk} refers to the unknown file {file:?}")]
    UnknownFile {
        /// Disk id.
        disk: String,
        /// File id.
        file: String,
    },
    /// A disk's parentRef names a disk the DiskSection does not list.
    #[error("disk {disk} has a parentRef {parent:?} that names no disk")]
    BadParent {
        /// Disk id.
        disk: String,
        /// The parent id.
        parent: String,
    },
    /// Following parentRefs from a disk comes back to a disk already seen.
    #[error("the parentRef chain of disk {disk} loops back to disk {parent}")]
    ParentLoop {
        /// The disk whose chain was followed.
        disk: String,
        /// The disk met twice.
        parent: String,
    },
}

/// The coarse class of a [`DescriptorError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorErrorKind {
    /// A resource limit was exceeded (size, depth, elements, attributes).
    Limit,
    /// Refused for safety or not handled: a DTD, a non-UTF-8 encoding.
    Unsupported,
    /// Not well-formed XML (syntax, encoding, namespaces).
    Malformed,
    /// Well-formed XML that is not a valid OVF descriptor.
    Invalid,
}

impl DescriptorError {
    /// The class of this error.
    pub fn kind(&self) -> DescriptorErrorKind {
        use DescriptorError as E;
        match self {
            E::TooLarge { .. }
            | E::TooDeep { .. }
            | E::TooManyElements { .. }
            | E::TooManyAttributes { .. } => DescriptorErrorKind::Limit,
            E::Doctype { .. } | E::UnsupportedEncoding { .. } => DescriptorErrorKind::Unsupported,
            E::InvalidUtf8 { .. }
            | E::Xml { .. }
            | E::UnboundPrefix { .. }
            | E::ReservedPrefix { .. }
            | E::EmptyNamespace { .. }
            | E::DuplicateAttribute { .. }
            | E::Empty
            | E::Truncated
            | E::SecondRoot { .. }
            | E::TextOutsideRoot { .. } => DescriptorErrorKind::Malformed,
            E::NotAnEnvelope { .. }
            | E::MissingAttribute { .. }
            | E::MissingElement { .. }
            | E::InvalidValue { .. }
            | E::DuplicateId { .. }
            | E::NoContent
            | E::SeveralContents => DescriptorErrorKind::Invalid,
        }
    }
}

/// The coarse class of a [`MapError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapErrorKind {
    /// A choice in [`MapOptions`](super::MapOptions) names nothing in the
    /// descriptor.
    Option,
    /// The descriptor requires something not supported.
    Unsupported,
    /// The descriptor's values are inconsistent or out of range.
    Invalid,
}

impl MapError {
    /// The class of this error.
    pub fn kind(&self) -> MapErrorKind {
        match self {
            MapError::UnknownConfiguration(_) | MapError::UnknownSystemType { .. } => {
                MapErrorKind::Option
            }
            MapError::RequiredSectionUnsupported { .. } => MapErrorKind::Unsupported,
            MapError::UnknownProperty { .. }
            | MapError::InvalidQuantity { .. }
            | MapError::InvalidUnits { .. }
            | MapError::TooLarge { .. }
            | MapError::UnknownFile { .. }
            | MapError::BadParent { .. }
            | MapError::ParentLoop { .. } => MapErrorKind::Invalid,
        }
    }
}
