//! The OVF descriptor: typed model, parser, writer, and the mapping to a
//! neutral VM description.
//!
//! - [`parse`] reads OVF 0.9 (VMware's pre-standard namespace), 1.x and 2.x
//!   descriptors into an [`Envelope`]. It is the single entry point for
//!   untrusted descriptors: no DTD is accepted, no entity is expanded or
//!   fetched, and size, depth, element and attribute counts are bounded
//!   ([`Limits`]).
//! - [`write()`] produces an OVF 1.x or 2.x descriptor that [`parse`] reads
//!   back to an equal model.
//! - [`describe`] maps an envelope to an [`ApplianceDescription`]: the
//!   files and disks it carries, its collections, and one [`VmDescription`]
//!   per VirtualSystem, for the importer and for `vmimport inspect`.
//!
//! ```
//! let xml = br#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
//!     xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
//!   <References/>
//!   <VirtualSystem ovf:id="vm"><Info>A VM</Info></VirtualSystem>
//! </Envelope>"#;
//! let envelope = ovf::descriptor::parse(xml)?;
//! let appliance = ovf::descriptor::describe(&envelope, &Default::default())?;
//! assert_eq!(appliance.vms[0].name, "vm");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod hardware;
mod hardware_parse;
mod map;
mod map_items;
mod model;
mod os;
mod parse;
pub mod units;
mod vm;
mod write;
mod xml;

pub use error::{DescriptorError, DescriptorErrorKind, MapError, MapErrorKind, WriteError};
pub use hardware::{
    Bus, ControllerClass, DiskFormat, HostResource, NicModel, classify_controller, disk_format,
    nic_model, parse_host_resource, resource_type, resource_type_name,
};
pub use map::describe;
pub use model::*;
pub use os::os_type_name;
pub use vm::*;
pub use write::write;
pub use xml::{Limits, XML_NAMESPACE, XmlAttribute, XmlElement, XmlName, XmlNode};

/// Parses a descriptor with the default [`Limits`].
pub fn parse(bytes: &[u8]) -> Result<Envelope, DescriptorError> {
    parse_with_limits(bytes, &Limits::default())
}

/// Parses a descriptor with explicit resource limits.
pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<Envelope, DescriptorError> {
    let root = xml::read_document(bytes, limits)?;
    parse::envelope_from_tree(&root)
}
