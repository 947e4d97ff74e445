//! A test-only AML reader for what [`super::aml`] emits: `Scope`, `Device`,
//! `Name`, integers, strings, buffers and packages, and the resource
//! descriptors inside a resource template. Written from the spec's grammar
//! independently of the encoder, so that a DSDT's bytes can be checked by
//! meaning (names, entries, ranges) and every length field cross-checked.

pub use super::aml::Data;

/// A namespace term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// `Scope (path) { .. }`.
    Scope(String, Vec<Node>),
    /// `Device (path) { .. }`.
    Device(String, Vec<Node>),
    /// `Name (path, value)`.
    Name(String, Data),
}

/// A resource descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desc {
    /// I/O port: decode16, min, max, alignment, length.
    Io(bool, u16, u16, u8, u8),
    /// Address space descriptor of width 2, 4 or 8 bytes.
    Address {
        /// 2, 4 or 8.
        width: u8,
        /// Resource type.
        kind: u8,
        /// General flags.
        general: u8,
        /// Type-specific flags.
        specific: u8,
        /// Granularity, minimum, maximum, translation, length.
        fields: [u64; 5],
    },
    /// Fixed 32-bit memory range: writable, base, length.
    Memory32Fixed(bool, u32, u32),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("unexpected end")?;
        self.pos += 1;
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or(format!("{n} bytes past the end at {}", self.pos))?;
        self.pos += n;
        Ok(s)
    }
    fn le(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0, |v, b| (v << 8) | u64::from(*b)))
    }
    /// Reads a PkgLength; returns the end offset of the object it covers.
    fn pkg_end(&mut self) -> Result<usize, String> {
        let start = self.pos;
        let lead = self.byte()?;
        let follow = usize::from(lead >> 6);
        let len = if follow == 0 {
            usize::from(lead & 0x3f)
        } else {
            if lead & 0x30 != 0 {
                return Err(format!("reserved pkglength bits set at {start}"));
            }
            let mut len = usize::from(lead & 0x0f);
            for i in 0..follow {
                len |= usize::from(self.byte()?) << (4 + 8 * i);
            }
            len
        };
        let end = start + len;
        if end > self.b.len() || end < self.pos {
            return Err(format!("pkglength {len} at {start} leaves the data"));
        }
        Ok(end)
    }
    fn name(&mut self) -> Result<String, String> {
        let mut s = String::new();
        while let Some(c @ (b'\\' | b'^')) = self.b.get(self.pos) {
            s.push(char::from(*c));
            self.pos += 1;
        }
        let count = match self.byte()? {
            0 => 0,
            0x2e => 2,
            0x2f => usize::from(self.byte()?),
            _ => {
                self.pos -= 1;
                1
            }
        };
        let segs: Vec<String> = (0..count)
            .map(|_| Ok(String::from_utf8_lossy(self.take(4)?).into_owned()))
            .collect::<Result<_, String>>()?;
        s.push_str(&segs.join("."));
        Ok(s)
    }
    fn value(&mut self) -> Result<Data, String> {
        let at = self.pos;
        Ok(match self.byte()? {
            0x00 => Data::Integer(0),
            0x01 => Data::Integer(1),
            0xff => Data::Integer(u64::MAX),
            0x0a => Data::Integer(self.le(1)?),
            0x0b => Data::Integer(self.le(2)?),
            0x0c => Data::Integer(self.le(4)?),
            0x0e => Data::Integer(self.le(8)?),
            0x0d => {
                let end = self.b[self.pos..]
                    .iter()
                    .position(|c| *c == 0)
                    .ok_or("unterminated string")?;
                let s = String::from_utf8_lossy(self.take(end)?).into_owned();
                self.byte()?;
                Data::String(s)
            }
            0x11 => {
                let end = self.pkg_end()?;
                let Data::Integer(size) = self.value()? else {
                    return Err(format!("buffer size at {at} is not an integer"));
                };
                let bytes = self.take(end - self.pos)?.to_vec();
                if bytes.len() as u64 != size {
                    return Err(format!(
                        "buffer at {at}: size {size}, {} bytes",
                        bytes.len()
                    ));
                }
                Data::Buffer(bytes)
            }
            op @ (0x12 | 0x13) => {
                let end = self.pkg_end()?;
                let count = if op == 0x12 {
                    u64::from(self.byte()?)
                } else {
                    match self.value()? {
                        Data::Integer(n) => n,
                        _ => return Err(format!("package count at {at}")),
                    }
                };
                let mut elements = Vec::new();
                while self.pos < end {
                    elements.push(self.value()?);
                }
                if elements.len() as u64 != count || self.pos != end {
                    return Err(format!(
                        "package at {at}: count {count}, {} elements",
                        elements.len()
                    ));
                }
                Data::Package(elements)
            }
            other => return Err(format!("unexpected data opcode {other:#x} at {at}")),
        })
    }
    fn terms(&mut self, end: usize) -> Result<Vec<Node>, String> {
        let mut nodes = Vec::new();
        while self.pos < end {
            let at = self.pos;
            nodes.push(match self.byte()? {
                0x08 => Node::Name(self.name()?, self.value()?),
                0x10 => {
                    let end = self.pkg_end()?;
                    Node::Scope(self.name()?, self.terms(end)?)
                }
                0x5b if self.byte()? == 0x82 => {
                    let end = self.pkg_end()?;
                    Node::Device(self.name()?, self.terms(end)?)
                }
                other => return Err(format!("unexpected opcode {other:#x} at {at}")),
            });
        }
        if self.pos != end {
            return Err(format!("term list overran its end {end}"));
        }
        Ok(nodes)
    }
}

/// Parses a term list.
pub fn parse(b: &[u8]) -> Result<Vec<Node>, String> {
    Reader { b, pos: 0 }.terms(b.len())
}

/// Parses a resource template; checks the end tag and its checksum.
pub fn parse_resources(b: &[u8]) -> Result<Vec<Desc>, String> {
    let mut r = Reader { b, pos: 0 };
    let mut out = Vec::new();
    loop {
        let at = r.pos;
        let tag = r.byte()?;
        match tag {
            0x79 => {
                r.byte()?;
                if r.pos != b.len() {
                    return Err("bytes after the end tag".into());
                }
                if super::checksum(b) != 0 {
                    return Err("resource template checksum".into());
                }
                return Ok(out);
            }
            0x47 => {
                let info = r.byte()?;
                let (min, max) = (r.le(2)?, r.le(2)?);
                let (aln, len) = (r.byte()?, r.byte()?);
                let min = u16::try_from(min).map_err(|e| e.to_string())?;
                let max = u16::try_from(max).map_err(|e| e.to_string())?;
                out.push(Desc::Io(info & 1 == 1, min, max, aln, len));
            }
            0x86..=0x8a => {
                let len = usize::try_from(r.le(2)?).map_err(|e| e.to_string())?;
                let body_end = r.pos + len;
                if tag == 0x86 {
                    let rw = r.byte()? & 1 == 1;
                    let base = u32::try_from(r.le(4)?).map_err(|e| e.to_string())?;
                    let size = u32::try_from(r.le(4)?).map_err(|e| e.to_string())?;
                    out.push(Desc::Memory32Fixed(rw, base, size));
                } else {
                    let width: u8 = match tag {
                        0x88 => 2,
                        0x87 => 4,
                        0x8a => 8,
                        _ => return Err(format!("descriptor {tag:#x} at {at}")),
                    };
                    let (kind, general, specific) = (r.byte()?, r.byte()?, r.byte()?);
                    let mut fields = [0u64; 5];
                    for f in &mut fields {
                        *f = r.le(usize::from(width))?;
                    }
                    out.push(Desc::Address {
                        width,
                        kind,
                        general,
                        specific,
                        fields,
                    });
                }
                if r.pos != body_end {
                    return Err(format!("descriptor at {at}: length {len} disagrees"));
                }
            }
            other => return Err(format!("unexpected resource tag {other:#x} at {at}")),
        }
    }
}
