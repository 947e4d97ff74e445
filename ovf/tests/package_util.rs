//! Helpers shared by the package tests: a tar writer that can write
//! hostile archives (any name, type, size encoding), and readers that drain
//! a package into memory.
#![allow(dead_code, clippy::cast_possible_truncation)]

use std::io::Read;

use ovf::package::{DigestAlgorithm, PackageContents, PackageReader, Result, manifest_line};

/// How a header encodes its size.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    /// 11 octal digits.
    Octal(u64),
    /// GNU base-256.
    Base256(u64),
}

/// Header dialect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Magic {
    /// POSIX ustar (`ustar\0` `00`).
    Ustar,
    /// Old GNU (`ustar  \0`).
    Gnu,
}

/// One 512-byte header with a correct checksum.
pub fn header(name: &str, size: Size, typeflag: u8, link: &str, magic: Magic) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.as_bytes();
    h[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0001750");
    h[116..123].copy_from_slice(b"0001750");
    match size {
        Size::Octal(s) => h[124..135].copy_from_slice(format!("{s:011o}").as_bytes()),
        Size::Base256(s) => {
            h[124] = 0x80;
            h[128..136].copy_from_slice(&s.to_be_bytes());
        }
    }
    h[136..147].copy_from_slice(b"14712345670");
    h[156] = typeflag;
    let l = link.as_bytes();
    h[157..157 + l.len().min(100)].copy_from_slice(&l[..l.len().min(100)]);
    match magic {
        Magic::Ustar => {
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
        }
        Magic::Gnu => h[257..265].copy_from_slice(b"ustar  \0"),
    }
    set_checksum(&mut h);
    h
}

/// Recomputes a header's checksum.
pub fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// Builds archives entry by entry.
#[derive(Debug, Default)]
pub struct Tar {
    pub bytes: Vec<u8>,
}

impl Tar {
    pub fn new() -> Self {
        Tar::default()
    }

    /// Appends a header and a body (padded).
    pub fn raw(&mut self, h: &[u8; 512], body: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(h);
        self.bytes.extend_from_slice(body);
        let pad = (512 - body.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let h = header(name, Size::Octal(data.len() as u64), b'0', "", Magic::Ustar);
        self.raw(&h, data)
    }

    /// An entry of any type.
    pub fn entry(&mut self, name: &str, typeflag: u8, link: &str, data: &[u8]) -> &mut Self {
        let h = header(
            name,
            Size::Octal(data.len() as u64),
            typeflag,
            link,
            Magic::Ustar,
        );
        self.raw(&h, data)
    }

    /// A pax extended header with these records.
    pub fn pax(&mut self, records: &[(&str, &str)]) -> &mut Self {
        let body = pax_body(records);
        let h = header(
            "PaxHeaders/x",
            Size::Octal(body.len() as u64),
            b'x',
            "",
            Magic::Ustar,
        );
        self.raw(&h, &body)
    }

    /// A GNU long-name entry.
    pub fn gnu_long_name(&mut self, name: &str) -> &mut Self {
        let mut body = name.as_bytes().to_vec();
        body.push(0);
        let h = header(
            "././@LongLink",
            Size::Octal(body.len() as u64),
            b'L',
            "",
            Magic::Gnu,
        );
        self.raw(&h, &body)
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(&self) -> Vec<u8> {
        let mut b = self.bytes.clone();
        b.extend(std::iter::repeat_n(0u8, 1024));
        b
    }
}

/// Encodes pax records (`"<len> key=value\n"`).
pub fn pax_body(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let payload = format!(" {k}={v}\n");
        let mut len = payload.len() + 1;
        while format!("{len}{payload}").len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{payload}").as_bytes());
    }
    out
}

/// A minimal descriptor naming `files`.
pub fn descriptor(files: &[&str]) -> Vec<u8> {
    let refs: String = files
        .iter()
        .enumerate()
        .map(|(i, f)| format!("<File ovf:id=\"file{i}\" ovf:href=\"{f}\"/>"))
        .collect();
    format!(
        "<?xml version=\"1.0\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" \
         xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\"><References>{refs}</References>\
         </Envelope>\n"
    )
    .into_bytes()
}

/// A manifest over `files` with `alg`.
pub fn manifest(files: &[(&str, &[u8])], alg: DigestAlgorithm) -> Vec<u8> {
    files
        .iter()
        .map(|(n, d)| manifest_line(alg, n, &alg.digest(d)))
        .collect::<String>()
        .into_bytes()
}

/// Member names and contents, and what the reader kept.
pub type ReadAll = (Vec<(String, Vec<u8>)>, PackageContents);

/// Reads every member of a package, streaming each body into memory.
pub fn read_all(mut pkg: PackageReader) -> Result<ReadAll> {
    let mut out = Vec::new();
    while let Some(m) = pkg.next_member()? {
        let mut data = Vec::new();
        pkg.body()?
            .read_to_end(&mut data)
            .map_err(|e| ovf::package::PackageError::from_io(e, "reading", "test".as_ref()))?;
        out.push((m.name, data));
    }
    Ok((out, pkg.finish()?))
}

/// Pseudo-random bytes from a seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}
