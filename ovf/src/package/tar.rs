//! A streaming tar reader: ustar, pax and GNU headers, one forward pass.
//!
//! Headers are decoded from 512-byte blocks with their checksum verified.
//! Extended headers (pax `x`, GNU `L`/`K`) are folded into the entry that
//! follows them; a pax `size` record overrides the header's size field, so
//! the body length is the one every pax-aware reader agrees on. GNU base-256
//! sizes and pax sizes allow members over 8 GiB. Nothing is allocated in
//! proportion to a size read from a header except extended-header bodies,
//! which are capped.

use std::io::{self, Read};

use super::error::{PackageError, Result};

/// Tar block size.
pub const BLOCK: u64 = 512;
/// Largest pax or GNU long-name body accepted.
pub const MAX_EXTENDED_HEADER: u64 = 1 << 20;

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (types `0`, NUL and `7`).
    File,
    /// A directory (type `5`).
    Directory,
    /// A hard link (type `1`).
    HardLink,
    /// A symbolic link (type `2`).
    Symlink,
    /// A character device (type `3`).
    CharDevice,
    /// A block device (type `4`).
    BlockDevice,
    /// A FIFO (type `6`).
    Fifo,
}

impl EntryKind {
    /// A name for messages.
    pub fn describe(self) -> &'static str {
        match self {
            EntryKind::File => "regular file",
            EntryKind::Directory => "directory",
            EntryKind::HardLink => "hard link",
            EntryKind::Symlink => "symbolic link",
            EntryKind::CharDevice => "character device",
            EntryKind::BlockDevice => "block device",
            EntryKind::Fifo => "fifo",
        }
    }
}

/// One decoded tar entry header, extended headers applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    /// The name as stored (not yet normalised).
    pub name: String,
    /// The link target for links.
    pub link_name: String,
    /// What the entry is.
    pub kind: EntryKind,
    /// Length of the body in bytes (pax `size` when present).
    pub size: u64,
    /// Offset of the body in the archive.
    pub data_offset: u64,
    /// Offset of the first header block of this entry (extended headers
    /// included).
    pub header_offset: u64,
}

/// A raw 512-byte header, decoded field by field.
struct RawHeader<'a> {
    block: &'a [u8; 512],
}

impl<'a> RawHeader<'a> {
    fn field(&self, start: usize, len: usize) -> &'a [u8] {
        &self.block[start..start + len]
    }

    fn is_zero(&self) -> bool {
        self.block.iter().all(|&b| b == 0)
    }

    fn type_flag(&self) -> u8 {
        self.block[156]
    }

    fn is_ustar(&self) -> bool {
        self.field(257, 6) == b"ustar\0"
    }

    fn checksum_ok(&self, offset: u64) -> Result<()> {
        let stored = parse_octal(self.field(148, 8)).ok_or_else(|| PackageError::TarHeader {
            offset,
            reason: "checksum field is not an octal number".into(),
        })?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in self.block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b.cast_signed());
        }
        if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
            Ok(())
        } else {
            Err(PackageError::TarHeader {
                offset,
                reason: format!("checksum {stored:o} does not match the computed {unsigned:o}"),
            })
        }
    }

    fn size(&self, offset: u64) -> Result<u64> {
        parse_number(self.field(124, 12)).ok_or_else(|| PackageError::TarHeader {
            offset,
            reason: "size field is neither octal nor a positive base-256 number".into(),
        })
    }

    fn name(&self) -> String {
        let name = cstr(self.field(0, 100));
        if self.is_ustar() {
            let prefix = cstr(self.field(345, 155));
            if !prefix.is_empty() {
                return format!("{}/{}", lossless(prefix), lossless(name));
            }
        }
        lossless(name)
    }

    fn link_name(&self) -> String {
        lossless(cstr(self.field(157, 100)))
    }
}

fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// Names that are not UTF-8 are kept with replacement characters; such a
/// name can never match an href, so it is reported as an extra file.
fn lossless(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses an octal field (leading spaces, trailing NUL or spaces).
pub fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ');
    let mut value: u64 = 0;
    let mut digits = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    if digits == 0 && field.iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    Some(value)
}

/// Parses a numeric field: octal, or GNU base-256 (high bit of the first
/// byte set; negative values refused).
pub fn parse_number(field: &[u8]) -> Option<u64> {
    let first = *field.first()?;
    if first & 0x80 == 0 {
        return parse_octal(field);
    }
    if first & 0x40 != 0 {
        return None; // negative
    }
    let mut value = u64::from(first & 0x3f);
    for &b in &field[1..] {
        value = value.checked_mul(256)?.checked_add(u64::from(b))?;
    }
    Some(value)
}

/// Fields collected from pax extended headers.
#[derive(Debug, Default, Clone)]
struct PaxFields {
    path: Option<String>,
    link_path: Option<String>,
    size: Option<u64>,
}

/// Parses a pax extended header body into the fields that matter here.
/// Records are `"<len> <key>=<value>\n"`; `len` counts the whole record.
fn parse_pax(body: &[u8], offset: u64, global: bool) -> Result<PaxFields> {
    let bad = |reason: String| PackageError::TarHeader { offset, reason };
    let mut fields = PaxFields::default();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("pax record without a length".into()))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("pax record length is not a number".into()))?;
        let record = rest
            .get(..len)
            .filter(|r| len > space + 1 && r.last() == Some(&b'\n'))
            .ok_or_else(|| bad(format!("pax record of length {len} is malformed")))?;
        let kv = &record[space + 1..len - 1];
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("pax record without '='".into()))?;
        let key = std::str::from_utf8(&kv[..eq]).map_err(|_| bad("pax key is not UTF-8".into()))?;
        let value = &kv[eq + 1..];
        let text = || {
            std::str::from_utf8(value)
                .map(str::to_string)
                .map_err(|_| bad(format!("pax {key} value is not UTF-8")))
        };
        match key {
            "path" | "linkpath" | "size" if global => {
                return Err(PackageError::Unsupported {
                    what: format!("pax global header setting {key:?} (offset {offset:#x})"),
                });
            }
            "path" => fields.path = Some(text()?),
            "linkpath" => fields.link_path = Some(text()?),
            "size" => {
                let s = text()?;
                let n = s
                    .parse::<u64>()
                    .ok()
                    .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad(format!("pax size {s:?} is not a decimal number")))?;
                fields.size = Some(n);
            }
            k if k.starts_with("GNU.sparse.") => {
                return Err(PackageError::Unsupported {
                    what: format!("GNU sparse member (pax key {k}) at offset {offset:#x}"),
                });
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(fields)
}

/// Reads a tar archive from a `Read`, one entry at a time.
#[derive(Debug)]
pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    pos: u64,
    /// Body bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current body.
    padding: u64,
    /// The current entry's name, for messages.
    current: Option<String>,
    done: bool,
}

impl<R: Read> TarReader<R> {
    /// Wraps a reader positioned at the start of an archive.
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            pos: 0,
            remaining: 0,
            padding: 0,
            current: None,
            done: false,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Body bytes of the current entry not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(PackageError::Truncated {
                        what: what.to_string(),
                        offset: self.pos,
                    });
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PackageError::from_io(e, "reading", "archive".as_ref())),
            }
        }
        Ok(())
    }

    /// Reads a block; `Ok(None)` at a clean end of input.
    fn read_block(&mut self) -> Result<Option<[u8; 512]>> {
        let mut block = [0u8; 512];
        let mut done = 0;
        while done < 512 {
            match self.inner.read(&mut block[done..]) {
                Ok(0) if done == 0 => return Ok(None),
                Ok(0) => {
                    return Err(PackageError::Truncated {
                        what: "partial header block".into(),
                        offset: self.pos,
                    });
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PackageError::from_io(e, "reading", "archive".as_ref())),
            }
        }
        Ok(Some(block))
    }

    fn skip(&mut self, mut n: u64, what: &str) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let chunk = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
            self.read_exact_or(&mut buf[..chunk], what)?;
            n -= chunk as u64;
        }
        Ok(())
    }

    fn read_extended(&mut self, size: u64, offset: u64) -> Result<Vec<u8>> {
        if size > MAX_EXTENDED_HEADER {
            return Err(PackageError::TarHeader {
                offset,
                reason: format!(
                    "extended header of {size} bytes exceeds the {MAX_EXTENDED_HEADER}-byte limit"
                ),
            });
        }
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        let mut body = vec![0u8; len];
        self.read_exact_or(&mut body, "extended header body")?;
        self.skip(padding(size), "extended header padding")?;
        Ok(body)
    }

    /// Skips what is left of the current entry and decodes the next
    /// header. Returns `None` at the end-of-archive marker.
    ///
    /// An input that ends without the marker is a truncated archive.
    pub fn next_entry(&mut self) -> Result<Option<EntryHeader>> {
        if self.done {
            return Ok(None);
        }
        let what = match &self.current {
            Some(name) => format!("body of member {name:?}"),
            None => "member body".into(),
        };
        self.skip(self.remaining, &what)?;
        self.remaining = 0;
        self.skip(self.padding, &what)?;
        self.padding = 0;
        self.current = None;

        let mut pax = PaxFields::default();
        let mut long_name: Option<String> = None;
        let mut long_link: Option<String> = None;
        let mut first_offset = None;
        let mut extended_headers = 0u32;
        loop {
            let offset = self.pos;
            first_offset.get_or_insert(offset);
            let Some(block) = self.read_block()? else {
                return Err(PackageError::Truncated {
                    what: "archive ends without the end-of-archive marker".into(),
                    offset,
                });
            };
            let raw = RawHeader { block: &block };
            if raw.is_zero() {
                if extended_headers > 0 {
                    return Err(PackageError::TarHeader {
                        offset,
                        reason: "end-of-archive marker after an extended header".into(),
                    });
                }
                // The marker is two zero blocks; a lone one at the end of the
                // input is accepted, as GNU tar does. Anything after the
                // marker is not part of the archive.
                self.done = true;
                return Ok(None);
            }
            raw.checksum_ok(offset)?;
            let size = raw.size(offset)?;
            let flag = raw.type_flag();
            if matches!(flag, b'x' | b'g' | b'L' | b'K') {
                extended_headers += 1;
                if extended_headers > 8 {
                    return Err(PackageError::TarHeader {
                        offset,
                        reason: "more than 8 extended headers in a row".into(),
                    });
                }
                let body = self.read_extended(size, offset)?;
                match flag {
                    b'x' => {
                        let fields = parse_pax(&body, offset, false)?;
                        pax.path = fields.path.or(pax.path);
                        pax.link_path = fields.link_path.or(pax.link_path);
                        pax.size = fields.size.or(pax.size);
                    }
                    b'g' => {
                        parse_pax(&body, offset, true)?;
                    }
                    b'L' => long_name = Some(lossless(cstr(&body))),
                    _ => long_link = Some(lossless(cstr(&body))),
                }
                continue;
            }
            let kind = match flag {
                b'0' | 0 | b'7' => EntryKind::File,
                b'1' => EntryKind::HardLink,
                b'2' => EntryKind::Symlink,
                b'3' => EntryKind::CharDevice,
                b'4' => EntryKind::BlockDevice,
                b'5' => EntryKind::Directory,
                b'6' => EntryKind::Fifo,
                b'S' => {
                    return Err(PackageError::Unsupported {
                        what: format!("GNU sparse member at offset {offset:#x}"),
                    });
                }
                other => {
                    return Err(PackageError::Unsupported {
                        what: format!(
                            "tar entry type {:?} at offset {offset:#x}",
                            char::from(other)
                        ),
                    });
                }
            };
            let name = pax
                .path
                .take()
                .or(long_name.take())
                .unwrap_or_else(|| raw.name());
            let link_name = pax
                .link_path
                .take()
                .or(long_link.take())
                .unwrap_or_else(|| raw.link_name());
            // A pax size overrides the header's. The declared size is
            // honoured for every entry type, as other readers do, so that
            // every reader finds the same next header.
            let size = pax.size.unwrap_or(size);
            self.remaining = size;
            self.padding = padding(size);
            self.current = Some(name.clone());
            return Ok(Some(EntryHeader {
                name,
                link_name,
                kind,
                size,
                data_offset: self.pos,
                header_offset: first_offset.unwrap_or(offset),
            }));
        }
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

impl<R: Read> Read for TarReader<R> {
    /// Reads the current entry's body; 0 at its end. Running out of input
    /// before the body ends is an `UnexpectedEof` error carrying
    /// [`PackageError::Truncated`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            let name = self.current.clone().unwrap_or_default();
            return Err(PackageError::Truncated {
                what: format!("body of member {name:?} ({} bytes missing)", self.remaining),
                offset: self.pos,
            }
            .into_io());
        }
        self.pos += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"00000001750\0"), Some(1000));
        assert_eq!(parse_number(b"     1750 \0\0"), Some(1000));
        assert_eq!(parse_number(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        let mut b = [0u8; 12];
        b[0] = 0x80;
        b[7] = 0x03; // 3 << 32 = 12 GiB
        assert_eq!(parse_number(&b), Some(3 << 32));
        b[0] = 0xff;
        assert_eq!(parse_number(&b), None);
        assert_eq!(parse_number(b"12x4\0"), None);
        let mut huge = [0xffu8; 12];
        huge[0] = 0x80;
        assert_eq!(parse_number(&huge), None);
    }

    #[test]
    fn pax_records() {
        let body = b"30 path=a/very/long/name.vmdk\n20 size=10000000000\n";
        let f = parse_pax(body, 0, false).unwrap();
        assert_eq!(f.path.as_deref(), Some("a/very/long/name.vmdk"));
        assert_eq!(f.size, Some(10_000_000_000));
        assert!(parse_pax(b"99 path=x\n", 0, false).is_err());
        assert!(parse_pax(b"9 size=-1\n", 0, false).is_err());
        assert!(parse_pax(b"11 size=10\n", 0, true).is_err());
    }
}
