//! A small, bounded XML tree reader on top of quick-xml.
//!
//! The descriptor is first read into a namespace-resolved element tree, then
//! mapped to the typed model. This layer enforces every resource limit: the
//! document size, the nesting depth, the element count and the attribute
//! count per element. It refuses document type declarations outright, so no
//! entity is ever declared, expanded or fetched; a reference to an entity
//! other than the five predefined ones is an error.

use std::collections::{HashMap, HashSet};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::Serialize;

use super::error::DescriptorError;

/// The namespace bound to the `xml` prefix by the XML Namespaces recommendation.
pub const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";

/// Resource limits applied while reading a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest descriptor accepted, in bytes.
    pub max_size: usize,
    /// Deepest element nesting accepted (the root element is depth 1). Kept
    /// extension trees are cloned, compared, written and dropped
    /// recursively, so this also bounds the stack those operations use:
    /// keep it in the tens.
    pub max_depth: usize,
    /// Most elements accepted in the whole document.
    pub max_elements: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 16 << 20,
            max_depth: 64,
            max_elements: 100_000,
            max_attributes: 256,
        }
    }
}

/// A namespace-qualified XML name.
///
/// Names compare and hash by namespace and local part only: the prefix is a
/// hint for the writer, which may have to pick another one.
#[derive(Debug, Clone, Serialize)]
pub struct XmlName {
    /// Namespace URI, `None` for a name in no namespace.
    pub namespace: Option<String>,
    /// Prefix used in the source document (a hint for the writer).
    pub prefix: Option<String>,
    /// Local part of the name.
    pub local: String,
}

impl PartialEq for XmlName {
    fn eq(&self, other: &Self) -> bool {
        self.namespace == other.namespace && self.local == other.local
    }
}

impl Eq for XmlName {}

impl std::hash::Hash for XmlName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.namespace.hash(state);
        self.local.hash(state);
    }
}

impl XmlName {
    /// A name in `namespace` with a preferred `prefix`.
    pub fn new(namespace: Option<&str>, prefix: Option<&str>, local: &str) -> Self {
        XmlName {
            namespace: namespace.map(str::to_owned),
            prefix: prefix.map(str::to_owned),
            local: local.to_owned(),
        }
    }

    /// The name as written in the source, `prefix:local` or `local`.
    pub fn qualified(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{p}:{}", self.local),
            None => self.local.clone(),
        }
    }
}

/// One attribute of an element (namespace declarations are not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XmlAttribute {
    /// Attribute name.
    pub name: XmlName,
    /// Attribute value, entity references resolved.
    pub value: String,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum XmlNode {
    /// A child element.
    Element(XmlElement),
    /// Character data, trimmed; whitespace-only runs are dropped.
    Text(String),
}

/// An element with its attributes and children: how sections the model does
/// not know are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XmlElement {
    /// Element name.
    pub name: XmlName,
    /// Attributes in document order.
    pub attributes: Vec<XmlAttribute>,
    /// Children in document order.
    pub children: Vec<XmlNode>,
}

impl XmlElement {
    /// An empty element.
    pub fn new(name: XmlName) -> Self {
        XmlElement {
            name,
            attributes: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Child elements in order.
    pub fn elements(&self) -> impl Iterator<Item = &XmlElement> {
        self.children.iter().filter_map(|c| match c {
            XmlNode::Element(e) => Some(e),
            XmlNode::Text(_) => None,
        })
    }

    /// The concatenated text content directly inside this element.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.children {
            if let XmlNode::Text(t) = c {
                out.push_str(t);
            }
        }
        out
    }

    /// The value of the attribute with this local name in `namespace`.
    pub fn attribute_ns(&self, namespace: Option<&str>, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name.local == local && a.name.namespace.as_deref() == namespace)
            .map(|a| a.value.as_str())
    }
}

/// Reads `bytes` into an element tree, enforcing `limits`.
pub fn read_document(bytes: &[u8], limits: &Limits) -> Result<XmlElement, DescriptorError> {
    if bytes.len() > limits.max_size {
        return Err(DescriptorError::TooLarge {
            size: bytes.len(),
            limit: limits.max_size,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.starts_with(b"\xFE\xFF") || bytes.starts_with(b"\xFF\xFE") {
        return Err(DescriptorError::UnsupportedEncoding {
            encoding: "UTF-16".into(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|source| DescriptorError::InvalidUtf8 {
        offset: source.valid_up_to(),
        source,
    })?;
    TreeBuilder::new(limits).run(text)
}

struct TreeBuilder<'l> {
    limits: &'l Limits,
    /// Prefix (empty for the default namespace) -> stack of bound URIs.
    scopes: HashMap<String, Vec<String>>,
    /// Prefixes declared by each open element, to unbind on close.
    declared: Vec<Vec<String>>,
    stack: Vec<XmlElement>,
    elements: usize,
    root: Option<XmlElement>,
}

impl<'l> TreeBuilder<'l> {
    fn new(limits: &'l Limits) -> Self {
        TreeBuilder {
            limits,
            scopes: HashMap::new(),
            declared: Vec::new(),
            stack: Vec::new(),
            elements: 0,
            root: None,
        }
    }

    fn run(mut self, text: &str) -> Result<XmlElement, DescriptorError> {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
        loop {
            let position = reader.buffer_position();
            let event = reader
                .read_event()
                .map_err(|source| DescriptorError::Xml { position, source })?;
            match event {
                Event::Start(start) => self.open(&start, position)?,
                Event::End(_) => self.close(),
                Event::Empty(start) => {
                    self.open(&start, position)?;
                    self.close();
                }
                Event::Text(t) => {
                    let s = t
                        .unescape()
                        .map_err(|source| DescriptorError::Xml { position, source })?;
                    self.text(&s, position)?;
                }
                Event::CData(c) => {
                    let raw = c.into_inner();
                    let s = std::str::from_utf8(&raw).map_err(|source| {
                        DescriptorError::InvalidUtf8 {
                            offset: usize::try_from(position).unwrap_or(usize::MAX),
                            source,
                        }
                    })?;
                    self.text(s, position)?;
                }
                Event::DocType(_) => return Err(DescriptorError::Doctype { position }),
                Event::Decl(decl) => {
                    if let Some(enc) = decl.encoding() {
                        let enc = enc.map_err(|source| DescriptorError::Xml {
                            position,
                            source: source.into(),
                        })?;
                        let enc = String::from_utf8_lossy(&enc).to_ascii_lowercase();
                        if !matches!(enc.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") {
                            return Err(DescriptorError::UnsupportedEncoding { encoding: enc });
                        }
                    }
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => break,
            }
        }
        if !self.stack.is_empty() {
            return Err(DescriptorError::Truncated);
        }
        self.root.ok_or(DescriptorError::Empty)
    }

    fn text(&mut self, s: &str, position: u64) -> Result<(), DescriptorError> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Ok(());
        }
        match self.stack.last_mut() {
            None => Err(DescriptorError::TextOutsideRoot { position }),
            Some(parent) => {
                if let Some(XmlNode::Text(prev)) = parent.children.last_mut() {
                    prev.push_str(trimmed);
                } else {
                    parent.children.push(XmlNode::Text(trimmed.to_owned()));
                }
                Ok(())
            }
        }
    }

    fn open(&mut self, start: &BytesStart<'_>, position: u64) -> Result<(), DescriptorError> {
        if self.root.is_some() {
            return Err(DescriptorError::SecondRoot { position });
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(DescriptorError::TooManyElements {
                limit: self.limits.max_elements,
                position,
            });
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(DescriptorError::TooDeep {
                limit: self.limits.max_depth,
                position,
            });
        }
        // Collect raw attributes first, bounded, so nothing below is quadratic
        // in an attacker-chosen count.
        let mut raw: Vec<(String, String)> = Vec::new();
        for attr in start.attributes().with_checks(false) {
            if raw.len() >= self.limits.max_attributes {
                return Err(DescriptorError::TooManyAttributes {
                    limit: self.limits.max_attributes,
                    position,
                });
            }
            let attr = attr.map_err(|source| DescriptorError::Xml {
                position,
                source: source.into(),
            })?;
            let key = utf8(attr.key.as_ref(), position)?.to_owned();
            let value = attr
                .unescape_value()
                .map_err(|source| DescriptorError::Xml { position, source })?
                .into_owned();
            raw.push((key, value));
        }
        let mut seen = HashSet::new();
        for (key, _) in &raw {
            if !seen.insert(key.as_str()) {
                return Err(DescriptorError::DuplicateAttribute {
                    name: key.clone(),
                    position,
                });
            }
        }
        // Bind the namespaces this element declares.
        let mut declared = Vec::new();
        for (key, value) in &raw {
            let prefix = if key == "xmlns" {
                String::new()
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                if p == "xml" || p == "xmlns" || p.is_empty() {
                    return Err(DescriptorError::ReservedPrefix {
                        prefix: p.to_owned(),
                        position,
                    });
                }
                if value.is_empty() {
                    return Err(DescriptorError::EmptyNamespace {
                        prefix: p.to_owned(),
                        position,
                    });
                }
                p.to_owned()
            } else {
                continue;
            };
            self.scopes
                .entry(prefix.clone())
                .or_default()
                .push(value.clone());
            declared.push(prefix);
        }
        self.declared.push(declared);
        let qname = utf8(start.name().as_ref(), position)?.to_owned();
        let name = self.resolve(&qname, false, position)?;
        let mut element = XmlElement::new(name);
        for (key, value) in raw {
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let name = self.resolve(&key, true, position)?;
            element.attributes.push(XmlAttribute { name, value });
        }
        // Two prefixes bound to one URI can still name the same attribute.
        for (i, a) in element.attributes.iter().enumerate() {
            let dup = element.attributes[..i]
                .iter()
                .any(|b| b.name.local == a.name.local && b.name.namespace == a.name.namespace);
            if dup {
                return Err(DescriptorError::DuplicateAttribute {
                    name: a.name.qualified(),
                    position,
                });
            }
        }
        self.stack.push(element);
        Ok(())
    }

    fn close(&mut self) {
        if let Some(prefixes) = self.declared.pop() {
            for p in prefixes {
                if let Some(v) = self.scopes.get_mut(&p) {
                    v.pop();
                }
            }
        }
        if let Some(done) = self.stack.pop() {
            match self.stack.last_mut() {
                Some(parent) => parent.children.push(XmlNode::Element(done)),
                None => self.root = Some(done),
            }
        }
    }

    fn lookup(&self, prefix: &str) -> Option<&str> {
        self.scopes
            .get(prefix)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn resolve(
        &self,
        qname: &str,
        attribute: bool,
        position: u64,
    ) -> Result<XmlName, DescriptorError> {
        match qname.split_once(':') {
            Some((prefix, local)) => {
                let namespace = if prefix == "xml" {
                    XML_NAMESPACE
                } else {
                    self.lookup(prefix)
                        .ok_or_else(|| DescriptorError::UnboundPrefix {
                            prefix: prefix.to_owned(),
                            position,
                        })?
                };
                Ok(XmlName::new(Some(namespace), Some(prefix), local))
            }
            None => {
                // Unprefixed attributes are in no namespace; unprefixed
                // elements take the default namespace ("" undeclares it).
                let namespace = if attribute {
                    None
                } else {
                    self.lookup("").filter(|ns| !ns.is_empty())
                };
                Ok(XmlName::new(namespace, None, qname))
            }
        }
    }
}

fn utf8(bytes: &[u8], position: u64) -> Result<&str, DescriptorError> {
    std::str::from_utf8(bytes).map_err(|source| DescriptorError::InvalidUtf8 {
        offset: usize::try_from(position).unwrap_or(usize::MAX),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Result<XmlElement, DescriptorError> {
        read_document(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn resolves_namespaces_and_scopes() {
        let root = read(
            r#"<a xmlns="urn:d" xmlns:p="urn:p"><p:b p:x="1" y="2"/><c xmlns="urn:e"/><d/></a>"#,
        )
        .unwrap();
        assert_eq!(root.name.namespace.as_deref(), Some("urn:d"));
        let kids: Vec<_> = root.elements().collect();
        assert_eq!(kids[0].name.namespace.as_deref(), Some("urn:p"));
        assert_eq!(kids[0].attribute_ns(Some("urn:p"), "x"), Some("1"));
        assert_eq!(kids[0].attribute_ns(None, "y"), Some("2"));
        assert_eq!(kids[1].name.namespace.as_deref(), Some("urn:e"));
        assert_eq!(kids[2].name.namespace.as_deref(), Some("urn:d"));
    }

    #[test]
    fn refuses_unbound_prefix_and_duplicates() {
        assert!(matches!(
            read("<q:a/>"),
            Err(DescriptorError::UnboundPrefix { .. })
        ));
        assert!(matches!(
            read(r#"<a x="1" x="2"/>"#),
            Err(DescriptorError::DuplicateAttribute { .. })
        ));
        assert!(matches!(
            read(r#"<a xmlns:p="urn:x" xmlns:q="urn:x" p:x="1" q:x="2"/>"#),
            Err(DescriptorError::DuplicateAttribute { .. })
        ));
    }

    #[test]
    fn text_is_unescaped_and_trimmed() {
        let root = read("<a>  x &amp; y &#65;<![CDATA[<z>]]>\n</a>").unwrap();
        assert_eq!(root.text(), "x & y A<z>");
    }

    #[test]
    fn structure_errors() {
        assert!(matches!(read(""), Err(DescriptorError::Empty)));
        assert!(matches!(read("<a>"), Err(DescriptorError::Truncated)));
        assert!(matches!(
            read("<a/><b/>"),
            Err(DescriptorError::SecondRoot { .. })
        ));
        assert!(read("<a></b>").is_err());
    }
}
