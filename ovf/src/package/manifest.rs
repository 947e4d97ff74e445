//! The manifest (`.mf`): one digest line per file.
//!
//! Accepted spellings, as producers write them:
//! `SHA256(disk.vmdk)= ab..`, `SHA256 (disk.vmdk) = ab..`, `SHA-256(x)=..`,
//! `SHA2-256(x)=..`, `SHA1`, `SHA-1`, `SHA512`, `SHA-512`, `SHA2-512`; names
//! with a leading `./`; upper- or lower-case hex; LF or CRLF line ends; a
//! UTF-8 byte-order mark. File names may contain spaces and parentheses: the
//! name runs from the first `(` to the last `)` before the `=`.

use super::digest::{DigestAlgorithm, DigestSet, from_hex};
use super::error::{PackageError, Result};
use super::path::normalize_href;

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The file name, normalised like member names (relative to the
    /// package root).
    pub name: String,
    /// The algorithm the line names.
    pub algorithm: DigestAlgorithm,
    /// The expected digest.
    pub digest: Vec<u8>,
    /// 1-based line number.
    pub line: usize,
}

/// A parsed manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The entries in file order.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Parses manifest bytes; `name` is used in messages.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Manifest> {
        let bad = |line: usize, reason: String| PackageError::Manifest {
            name: name.to_string(),
            line,
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            bad(line, "not UTF-8 text".into())
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut entries: Vec<ManifestEntry> = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() {
                continue;
            }
            let (left, hex) = line
                .rsplit_once('=')
                .ok_or_else(|| bad(line_no, "no '=' in the line".into()))?;
            let left = left.trim_end();
            let hex = hex.trim();
            let open = left
                .find('(')
                .ok_or_else(|| bad(line_no, "no '(' after the algorithm".into()))?;
            let inner = left[open + 1..]
                .strip_suffix(')')
                .ok_or_else(|| bad(line_no, "no ')' before the '='".into()))?;
            let alg_text = left[..open].trim();
            let algorithm = DigestAlgorithm::parse(alg_text)
                .ok_or_else(|| bad(line_no, format!("unknown digest algorithm {alg_text:?}")))?;
            let digest =
                from_hex(hex).ok_or_else(|| bad(line_no, format!("digest {hex:?} is not hex")))?;
            if digest.len() != algorithm.digest_len() {
                return Err(bad(
                    line_no,
                    format!(
                        "{} digest has {} bytes, expected {}",
                        algorithm,
                        digest.len(),
                        algorithm.digest_len()
                    ),
                ));
            }
            let name = normalize_href(inner).map_err(|e| bad(line_no, e.to_string()))?;
            if let Some(prev) = entries
                .iter()
                .find(|e| e.name == name && e.algorithm == algorithm)
            {
                if prev.digest != digest {
                    return Err(bad(
                        line_no,
                        format!(
                            "second {algorithm} entry for {name:?} differs from line {}",
                            prev.line
                        ),
                    ));
                }
                continue;
            }
            entries.push(ManifestEntry {
                name,
                algorithm,
                digest,
                line: line_no,
            });
        }
        Ok(Manifest { entries })
    }

    /// The algorithms the manifest names for `name`.
    pub fn algorithms_for(&self, name: &str) -> DigestSet {
        let mut set = DigestSet::NONE;
        for e in self.entries.iter().filter(|e| e.name == name) {
            set.insert(e.algorithm);
        }
        set
    }

    /// Every algorithm the manifest uses.
    pub fn algorithms(&self) -> DigestSet {
        let mut set = DigestSet::NONE;
        for e in &self.entries {
            set.insert(e.algorithm);
        }
        set
    }

    /// Whether the manifest has an entry for `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }
}

/// Writes a manifest line in the form ovftool writes (`SHA256(x)= hex`).
pub fn manifest_line(algorithm: DigestAlgorithm, name: &str, digest: &[u8]) -> String {
    format!(
        "{}({})= {}\n",
        algorithm,
        name,
        super::digest::to_hex(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    #[test]
    fn dialects() {
        let h256 = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        let text = format!(
            "\u{feff}SHA1(a.ovf)= {H1}\r\nSHA256 (./disk 1 (copy).vmdk) = {h256}\r\n\
             SHA-256(b.iso)={}\nSHA2-256(c)= {h256}\n\n",
            h256.to_lowercase()
        );
        let m = Manifest::parse("x.mf", text.as_bytes()).unwrap();
        assert_eq!(m.entries.len(), 4);
        assert_eq!(m.entries[0].name, "a.ovf");
        assert_eq!(m.entries[1].name, "disk 1 (copy).vmdk");
        assert_eq!(m.entries[1].algorithm, DigestAlgorithm::Sha256);
        assert_eq!(m.entries[1].digest, m.entries[2].digest);
        assert_eq!(m.entries[3].line, 4);
    }

    #[test]
    fn refusals() {
        for bad in [
            format!("MD5(a)= {H1}"),
            format!("SHA1(a) {H1}"),
            "SHA1(a)= abc".to_string(),
            format!("SHA256(a)= {H1}"),
            format!("SHA1(../a)= {H1}"),
            format!("SHA1(a= {H1}"),
        ] {
            assert!(Manifest::parse("m", bad.as_bytes()).is_err(), "{bad}");
        }
        let conflicting = format!("SHA1(a)= {H1}\nSHA1(a)= {}\n", "0".repeat(40));
        assert!(Manifest::parse("m", conflicting.as_bytes()).is_err());
    }
}
