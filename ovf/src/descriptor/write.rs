//! Model -> descriptor: writes an OVF 1.x or 2.x envelope.
//!
//! Elements of the envelope namespace are written unprefixed (it is the
//! default namespace) and its attributes with the `ovf:` prefix, the way
//! ovftool and VirtualBox write them. Kept extension elements are written back
//! with the prefixes they had, declaring a namespace wherever the binding in
//! scope differs.

use std::fmt::Write as _;

use super::error::WriteError;
use super::model::*;
use super::xml::{XML_NAMESPACE, XmlElement, XmlName, XmlNode};

/// Writes `envelope` as an OVF descriptor of `envelope.version` (set the
/// version to convert, e.g. a 0.9 model to 1.x).
pub fn write(envelope: &Envelope) -> Result<Vec<u8>, WriteError> {
    let mut w = Writer::new(envelope.version)?;
    w.envelope(envelope)?;
    Ok(w.out.into_bytes())
}

struct Writer {
    out: String,
    version: OvfVersion,
    /// Namespace bindings in scope: (prefix, uri), "" for the default.
    bindings: Vec<(String, String)>,
}

const INDENT: &str = "  ";

impl Writer {
    fn new(version: OvfVersion) -> Result<Self, WriteError> {
        if version == OvfVersion::V0_9 {
            return Err(WriteError::UnsupportedVersion("0.9"));
        }
        Ok(Writer {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            version,
            bindings: Vec::new(),
        })
    }

    fn ns(&self) -> &'static str {
        self.version.namespace()
    }

    fn envelope(&mut self, env: &Envelope) -> Result<(), WriteError> {
        let ns = self.ns();
        let mut decls: Vec<(&str, &str)> = vec![
            ("", ns),
            ("ovf", ns),
            ("rasd", NS_RASD),
            ("vssd", NS_VSSD),
            ("xsi", NS_XSI),
            ("vmw", NS_VMW),
        ];
        if self.version == OvfVersion::V2 {
            decls.push(("sasd", NS_SASD));
            decls.push(("epasd", NS_EPASD));
        }
        self.out.push_str("<Envelope");
        for (p, uri) in &decls {
            if p.is_empty() {
                let _ = write!(self.out, " xmlns=\"{}\"", attr_escape(uri, "namespace")?);
            } else {
                let _ = write!(
                    self.out,
                    " xmlns:{p}=\"{}\"",
                    attr_escape(uri, "namespace")?
                );
            }
            self.bindings.push(((*p).to_owned(), (*uri).to_owned()));
        }
        let version = if self.version == OvfVersion::V2 {
            "2.0"
        } else {
            "1.0"
        };
        let _ = write!(self.out, " ovf:version=\"{version}\"");
        if let Some(lang) = &env.lang {
            let _ = write!(self.out, " xml:lang=\"{}\"", attr_escape(lang, "xml:lang")?);
        }
        self.out.push_str(">\n");
        self.open("References", &[], 1)?;
        for f in &env.references {
            let mut a = vec![("href", f.href.clone()), ("id", f.id.clone())];
            push_opt(&mut a, "size", f.size);
            if let Some(c) = &f.compression {
                a.push(("compression", c.clone()));
            }
            push_opt(&mut a, "chunkSize", f.chunk_size);
            self.empty("File", &a, 2)?;
        }
        self.close("References", 1);
        if let Some(ds) = &env.disk_section {
            self.open("DiskSection", &[], 1)?;
            self.info(ds.info.as_deref(), 2)?;
            for d in &ds.disks {
                let capacity = match &d.capacity {
                    Capacity::Value(v) => v.to_string(),
                    Capacity::Property(k) => format!("${{{k}}}"),
                };
                let mut a = vec![("capacity", capacity)];
                if let Some(u) = &d.capacity_allocation_units {
                    a.push(("capacityAllocationUnits", u.clone()));
                }
                a.push(("diskId", d.disk_id.clone()));
                for (k, v) in [
                    ("fileRef", &d.file_ref),
                    ("format", &d.format),
                    ("parentRef", &d.parent_ref),
                ] {
                    if let Some(v) = v {
                        a.push((k, v.clone()));
                    }
                }
                push_opt(&mut a, "populatedSize", d.populated_size);
                self.empty("Disk", &a, 2)?;
            }
            self.close("DiskSection", 1);
        }
        if let Some(ns) = &env.network_section {
            self.open("NetworkSection", &[], 1)?;
            self.info(ns.info.as_deref(), 2)?;
            for n in &ns.networks {
                self.open("Network", &[("name", n.name.clone())], 2)?;
                self.text_opt("Description", n.description.as_deref(), 3)?;
                self.close("Network", 2);
            }
            self.close("NetworkSection", 1);
        }
        if let Some(d) = &env.deployment_options {
            self.open("DeploymentOptionSection", &[], 1)?;
            self.info(d.info.as_deref(), 2)?;
            for c in &d.configurations {
                let mut a = vec![("id", c.id.clone())];
                if c.default {
                    a.push(("default", "true".into()));
                }
                self.open("Configuration", &a, 2)?;
                self.text_elem("Label", c.label.as_deref().unwrap_or(""), 3)?;
                self.text_elem("Description", c.description.as_deref().unwrap_or(""), 3)?;
                self.close("Configuration", 2);
            }
            self.close("DeploymentOptionSection", 1);
        }
        for e in &env.extensions {
            self.extension(e, 1)?;
        }
        self.content(&env.content, 1)?;
        self.out.push_str("</Envelope>\n");
        Ok(())
    }

    fn content(&mut self, c: &Content, depth: usize) -> Result<(), WriteError> {
        let (tag, id, info, name, sections) = match c {
            Content::System(s) => ("VirtualSystem", &s.id, &s.info, &s.name, &s.sections),
            Content::Collection(c) => (
                "VirtualSystemCollection",
                &c.id,
                &c.info,
                &c.name,
                &c.sections,
            ),
        };
        self.open(tag, &[("id", id.clone())], depth)?;
        let d = depth + 1;
        self.info(info.as_deref(), d)?;
        self.text_opt("Name", name.as_deref(), d)?;
        for p in &sections.products {
            self.product(p, d)?;
        }
        for e in &sections.eulas {
            self.open("EulaSection", &[], d)?;
            self.info(e.info.as_deref(), d + 1)?;
            self.text_elem("License", &e.license, d + 1)?;
            self.close("EulaSection", d);
        }
        if let Some(a) = &sections.annotation {
            self.open("AnnotationSection", &[], d)?;
            self.info(a.info.as_deref(), d + 1)?;
            self.text_elem("Annotation", &a.annotation, d + 1)?;
            self.close("AnnotationSection", d);
        }
        if let Some(os) = &sections.operating_system {
            let mut a = vec![("id", os.id.to_string())];
            if let Some(v) = &os.version {
                a.push(("version", v.clone()));
            }
            self.indent(d);
            self.out.push_str("<OperatingSystemSection");
            self.attrs(&a)?;
            if let Some(t) = &os.vmw_os_type {
                let _ = write!(
                    self.out,
                    " vmw:osType=\"{}\"",
                    attr_escape(t, "vmw:osType")?
                );
            }
            self.out.push_str(">\n");
            self.info(os.info.as_deref(), d + 1)?;
            self.text_opt("Description", os.description.as_deref(), d + 1)?;
            self.close("OperatingSystemSection", d);
        }
        for h in &sections.hardware {
            self.hardware(h, d)?;
        }
        if let Some(s) = &sections.startup {
            self.open("StartupSection", &[], d)?;
            self.info(s.info.as_deref(), d + 1)?;
            for i in &s.items {
                let mut a = vec![("id", i.id.clone()), ("order", i.order.to_string())];
                push_opt(&mut a, "startDelay", i.start_delay);
                if let Some(v) = &i.start_action {
                    a.push(("startAction", v.clone()));
                }
                push_opt(&mut a, "stopDelay", i.stop_delay);
                if let Some(v) = &i.stop_action {
                    a.push(("stopAction", v.clone()));
                }
                push_opt(&mut a, "waitingForGuest", i.waiting_for_guest);
                self.empty("Item", &a, d + 1)?;
            }
            self.close("StartupSection", d);
        }
        for e in &sections.extensions {
            self.extension(e, d)?;
        }
        if let Content::Collection(c) = c {
            for child in &c.children {
                self.content(child, d)?;
            }
        }
        self.close(tag, depth);
        Ok(())
    }

    fn product(&mut self, p: &ProductSection, d: usize) -> Result<(), WriteError> {
        let mut a = Vec::new();
        if let Some(c) = &p.class {
            a.push(("class", c.clone()));
        }
        if let Some(i) = &p.instance {
            a.push(("instance", i.clone()));
        }
        self.open("ProductSection", &a, d)?;
        self.info(p.info.as_deref(), d + 1)?;
        for (tag, v) in [
            ("Product", &p.product),
            ("Vendor", &p.vendor),
            ("Version", &p.version),
            ("FullVersion", &p.full_version),
            ("ProductUrl", &p.product_url),
            ("VendorUrl", &p.vendor_url),
            ("AppUrl", &p.app_url),
        ] {
            self.text_opt(tag, v.as_deref(), d + 1)?;
        }
        let mut category: Option<&str> = None;
        for prop in &p.properties {
            if prop.category.as_deref() != category {
                category = prop.category.as_deref();
                self.text_elem("Category", category.unwrap_or(""), d + 1)?;
            }
            let mut a = vec![("key", prop.key.clone()), ("type", prop.type_name.clone())];
            if let Some(q) = &prop.qualifiers {
                a.push(("qualifiers", q.clone()));
            }
            if let Some(v) = &prop.value {
                a.push(("value", v.clone()));
            }
            if prop.user_configurable {
                a.push(("userConfigurable", "true".into()));
            }
            if prop.password {
                a.push(("password", "true".into()));
            }
            self.open("Property", &a, d + 1)?;
            self.text_opt("Label", prop.label.as_deref(), d + 2)?;
            self.text_opt("Description", prop.description.as_deref(), d + 2)?;
            self.close("Property", d + 1);
        }
        self.close("ProductSection", d);
        Ok(())
    }

    fn hardware(&mut self, h: &VirtualHardwareSection, d: usize) -> Result<(), WriteError> {
        let mut a = Vec::new();
        if let Some(id) = &h.id {
            a.push(("id", id.clone()));
        }
        if let Some(t) = &h.transport {
            a.push(("transport", t.clone()));
        }
        self.open("VirtualHardwareSection", &a, d)?;
        self.info(h.info.as_deref(), d + 1)?;
        if let Some(s) = &h.system {
            self.open("System", &[], d + 1)?;
            let mut props: Vec<(&str, String)> = Vec::new();
            if let Some(v) = &s.element_name {
                props.push(("ElementName", v.clone()));
            }
            if let Some(v) = &s.instance_id {
                props.push(("InstanceID", v.clone()));
            }
            if let Some(v) = &s.virtual_system_identifier {
                props.push(("VirtualSystemIdentifier", v.clone()));
            }
            if !s.virtual_system_types.is_empty() {
                props.push(("VirtualSystemType", s.virtual_system_types.join(" ")));
            }
            for (k, v) in &s.other_properties {
                props.push((k.as_str(), v.clone()));
            }
            props.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in props {
                self.cim_property("vssd", k, &v, d + 2)?;
            }
            self.close("System", d + 1);
        }
        for item in &h.items {
            self.item(item, d + 1)?;
        }
        for e in &h.extensions {
            self.raw(e, d + 1)?;
        }
        self.close("VirtualHardwareSection", d);
        Ok(())
    }

    fn item(&mut self, item: &HardwareItem, d: usize) -> Result<(), WriteError> {
        let (tag, prefix) = match item.kind {
            ItemKind::Item => ("Item", "rasd"),
            ItemKind::StorageItem => ("StorageItem", "sasd"),
            ItemKind::EthernetPortItem => ("EthernetPortItem", "epasd"),
        };
        if item.kind != ItemKind::Item && self.version != OvfVersion::V2 {
            return Err(WriteError::NotInVersion {
                what: tag,
                version: self.version.label(),
            });
        }
        let mut a = Vec::new();
        if let Some(b) = &item.bound {
            a.push(("bound", b.clone()));
        }
        if !item.configurations.is_empty() {
            a.push(("configuration", item.configurations.join(" ")));
        }
        if !item.required {
            a.push(("required", "false".into()));
        }
        self.open(tag, &a, d)?;
        let mut props: Vec<(&str, String)> = Vec::new();
        let singles = [
            ("Address", &item.address),
            ("AddressOnParent", &item.address_on_parent),
            ("AllocationUnits", &item.allocation_units),
            ("Caption", &item.caption),
            ("Description", &item.description),
            ("ElementName", &item.element_name),
            ("OtherResourceType", &item.other_resource_type),
            ("Parent", &item.parent),
            ("ResourceSubType", &item.resource_sub_type),
            ("VirtualQuantityUnits", &item.virtual_quantity_units),
        ];
        for (k, v) in singles {
            if let Some(v) = v {
                props.push((k, v.clone()));
            }
        }
        props.push(("InstanceID", item.instance_id.clone()));
        if let Some(v) = item.automatic_allocation {
            props.push(("AutomaticAllocation", v.to_string()));
        }
        if let Some(v) = item.resource_type {
            props.push(("ResourceType", v.to_string()));
        }
        if let Some(v) = item.virtual_quantity {
            props.push(("VirtualQuantity", v.to_string()));
        }
        for c in &item.connections {
            props.push(("Connection", c.clone()));
        }
        for h in &item.host_resources {
            props.push(("HostResource", h.clone()));
        }
        for (k, v) in &item.other_properties {
            props.push((k.as_str(), v.clone()));
        }
        props.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in props {
            self.cim_property(prefix, k, &v, d + 1)?;
        }
        for e in &item.extensions {
            self.raw(e, d + 1)?;
        }
        self.close(tag, d);
        Ok(())
    }

    fn cim_property(
        &mut self,
        prefix: &str,
        name: &str,
        value: &str,
        d: usize,
    ) -> Result<(), WriteError> {
        check_name(name)?;
        self.indent(d);
        let v = text_escape(value, name)?;
        let _ = writeln!(self.out, "<{prefix}:{name}>{v}</{prefix}:{name}>");
        Ok(())
    }

    fn extension(&mut self, e: &ExtensionSection, d: usize) -> Result<(), WriteError> {
        let has_required = e.element.attributes.iter().any(|a| {
            a.name.local == "required"
                && (a.name.namespace.is_none()
                    || OvfVersion::from_namespace(a.name.namespace.as_deref().unwrap_or(""))
                        .is_some())
        });
        if e.required && !has_required {
            let mut el = e.element.clone();
            el.attributes.push(super::xml::XmlAttribute {
                name: XmlName::new(Some(self.ns()), Some("ovf"), "required"),
                value: "true".into(),
            });
            self.raw(&el, d)
        } else {
            self.raw(&e.element, d)
        }
    }

    fn lookup(&self, prefix: &str) -> Option<&str> {
        self.bindings
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, u)| u.as_str())
    }

    /// Picks the prefix to write `name` with. `entries` holds the prefixes
    /// this element already uses, `(prefix, uri, declared here)`, so that a
    /// declaration never changes the meaning of a prefix the same element
    /// uses for another namespace.
    fn bind(
        &self,
        name: &XmlName,
        attribute: bool,
        entries: &mut Vec<(String, String, bool)>,
    ) -> Result<Option<String>, WriteError> {
        let Some(ns) = name.namespace.as_deref().filter(|ns| !ns.is_empty()) else {
            if !attribute && !entries.iter().any(|(p, _, _)| p.is_empty()) {
                let declare = self.lookup("").is_some_and(|u| !u.is_empty());
                entries.push((String::new(), String::new(), declare));
            }
            return Ok(None);
        };
        if ns == XML_NAMESPACE {
            return Ok(Some("xml".into()));
        }
        let mut prefix = match (&name.prefix, attribute) {
            (Some(p), _) => p.clone(),
            (None, false) => String::new(),
            (None, true) => "ns".into(),
        };
        if prefix == "xml" || prefix == "xmlns" || (attribute && prefix.is_empty()) {
            prefix = "ns".into();
        }
        check_prefix(&prefix)?;
        let mut candidate = prefix.clone();
        let mut n = 0u32;
        loop {
            let taken = entries
                .iter()
                .find(|(p, _, _)| *p == candidate)
                .map(|(_, u, _)| u.as_str());
            match taken {
                Some(u) if u == ns => break,
                Some(_) => {
                    n += 1;
                    let stem = if prefix.is_empty() { "ns" } else { &prefix };
                    candidate = format!("{stem}{n}");
                }
                None => {
                    let declare = self.lookup(&candidate) != Some(ns);
                    entries.push((candidate.clone(), ns.to_owned(), declare));
                    break;
                }
            }
        }
        Ok(if candidate.is_empty() {
            None
        } else {
            Some(candidate)
        })
    }

    fn raw(&mut self, el: &XmlElement, d: usize) -> Result<(), WriteError> {
        check_name(&el.name.local)?;
        let mut entries = Vec::new();
        let prefix = self.bind(&el.name, false, &mut entries)?;
        let mut attrs = Vec::new();
        for a in &el.attributes {
            check_name(&a.name.local)?;
            let p = self.bind(&a.name, true, &mut entries)?;
            attrs.push((p, &a.name.local, &a.value));
        }
        let decls: Vec<(String, String)> = entries
            .into_iter()
            .filter(|(_, _, declare)| *declare)
            .map(|(p, u, _)| (p, u))
            .collect();
        let qname = match &prefix {
            Some(p) => format!("{p}:{}", el.name.local),
            None => el.name.local.clone(),
        };
        self.indent(d);
        let _ = write!(self.out, "<{qname}");
        for (p, uri) in &decls {
            let uri_e = attr_escape(uri, "namespace")?;
            if p.is_empty() {
                let _ = write!(self.out, " xmlns=\"{uri_e}\"");
            } else {
                let _ = write!(self.out, " xmlns:{p}=\"{uri_e}\"");
            }
        }
        for (p, local, value) in attrs {
            let v = attr_escape(value, local)?;
            match p {
                Some(p) => {
                    let _ = write!(self.out, " {p}:{local}=\"{v}\"");
                }
                None => {
                    let _ = write!(self.out, " {local}=\"{v}\"");
                }
            }
        }
        let mark = self.bindings.len();
        self.bindings.extend(decls);
        if el.children.is_empty() {
            self.out.push_str("/>\n");
        } else if let [XmlNode::Text(t)] = el.children.as_slice() {
            let _ = writeln!(self.out, ">{}</{qname}>", text_escape(t, &el.name.local)?);
        } else {
            self.out.push_str(">\n");
            for c in &el.children {
                match c {
                    XmlNode::Element(e) => self.raw(e, d + 1)?,
                    XmlNode::Text(t) => {
                        self.indent(d + 1);
                        self.out.push_str(&text_escape(t, &el.name.local)?);
                        self.out.push('\n');
                    }
                }
            }
            self.indent(d);
            let _ = writeln!(self.out, "</{qname}>");
        }
        self.bindings.truncate(mark);
        Ok(())
    }

    fn indent(&mut self, d: usize) {
        for _ in 0..d {
            self.out.push_str(INDENT);
        }
    }

    fn attrs(&mut self, attrs: &[(&str, String)]) -> Result<(), WriteError> {
        for (k, v) in attrs {
            let v = attr_escape(v, k)?;
            let _ = write!(self.out, " ovf:{k}=\"{v}\"");
        }
        Ok(())
    }

    fn open(&mut self, tag: &str, attrs: &[(&str, String)], d: usize) -> Result<(), WriteError> {
        self.indent(d);
        let _ = write!(self.out, "<{tag}");
        self.attrs(attrs)?;
        self.out.push_str(">\n");
        Ok(())
    }

    fn empty(&mut self, tag: &str, attrs: &[(&str, String)], d: usize) -> Result<(), WriteError> {
        self.indent(d);
        let _ = write!(self.out, "<{tag}");
        self.attrs(attrs)?;
        self.out.push_str("/>\n");
        Ok(())
    }

    fn close(&mut self, tag: &str, d: usize) {
        self.indent(d);
        let _ = writeln!(self.out, "</{tag}>");
    }

    fn text_elem(&mut self, tag: &str, text: &str, d: usize) -> Result<(), WriteError> {
        self.indent(d);
        let _ = writeln!(self.out, "<{tag}>{}</{tag}>", text_escape(text, tag)?);
        Ok(())
    }

    fn text_opt(&mut self, tag: &str, text: Option<&str>, d: usize) -> Result<(), WriteError> {
        match text {
            Some(t) => self.text_elem(tag, t, d),
            None => Ok(()),
        }
    }

    fn info(&mut self, info: Option<&str>, d: usize) -> Result<(), WriteError> {
        self.text_elem("Info", info.unwrap_or(""), d)
    }
}

fn push_opt<T: ToString>(a: &mut Vec<(&'static str, String)>, k: &'static str, v: Option<T>) {
    if let Some(v) = v {
        a.push((k, v.to_string()));
    }
}

fn check_char(c: char, what: &str) -> Result<(), WriteError> {
    let ok = matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}';
    if ok {
        Ok(())
    } else {
        Err(WriteError::InvalidCharacter {
            what: what.to_owned(),
            code: u32::from(c),
        })
    }
}

fn text_escape(s: &str, what: &str) -> Result<String, WriteError> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        check_char(c, what)?;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn attr_escape(s: &str, what: &str) -> Result<String, WriteError> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        check_char(c, what)?;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_name(name: &str) -> Result<(), WriteError> {
    if is_name(name) {
        Ok(())
    } else {
        Err(WriteError::InvalidName {
            name: name.to_owned(),
        })
    }
}

fn check_prefix(prefix: &str) -> Result<(), WriteError> {
    if prefix.is_empty() || is_name(prefix) {
        Ok(())
    } else {
        Err(WriteError::InvalidName {
            name: prefix.to_owned(),
        })
    }
}
