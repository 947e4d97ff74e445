//! SHA-1, SHA-256 and SHA-512 computed side by side while a member streams.

use std::fmt;

use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm a manifest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-1 (160 bits).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    /// Every algorithm.
    pub const ALL: [DigestAlgorithm; 3] = [Self::Sha1, Self::Sha256, Self::Sha512];

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The spelling OVF tools write (`SHA1`, `SHA256`, `SHA512`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses the spellings producers write: `SHA1`, `SHA-1`, `SHA256`,
    /// `SHA-256`, `SHA2-256`, `SHA512`, `SHA-512`, `SHA2-512`, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_uppercase();
        match norm.as_str() {
            "SHA1" => Some(Self::Sha1),
            "SHA256" | "SHA2256" => Some(Self::Sha256),
            "SHA512" | "SHA2512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Digest of `data` in one call.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of digest algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DigestSet {
    /// Compute SHA-1.
    pub sha1: bool,
    /// Compute SHA-256.
    pub sha256: bool,
    /// Compute SHA-512.
    pub sha512: bool,
}

impl DigestSet {
    /// All three algorithms.
    pub const ALL: DigestSet = DigestSet {
        sha1: true,
        sha256: true,
        sha512: true,
    };

    /// No algorithm.
    pub const NONE: DigestSet = DigestSet {
        sha1: false,
        sha256: false,
        sha512: false,
    };

    /// Adds one algorithm.
    pub fn insert(&mut self, a: DigestAlgorithm) {
        match a {
            DigestAlgorithm::Sha1 => self.sha1 = true,
            DigestAlgorithm::Sha256 => self.sha256 = true,
            DigestAlgorithm::Sha512 => self.sha512 = true,
        }
    }

    /// Whether the set holds `a`.
    pub fn contains(&self, a: DigestAlgorithm) -> bool {
        match a {
            DigestAlgorithm::Sha1 => self.sha1,
            DigestAlgorithm::Sha256 => self.sha256,
            DigestAlgorithm::Sha512 => self.sha512,
        }
    }
}

/// Running hashers for the algorithms of a [`DigestSet`].
#[derive(Debug, Clone, Default)]
pub struct Hashers {
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl Hashers {
    /// Starts hashers for `set`.
    pub fn new(set: DigestSet) -> Self {
        Hashers {
            sha1: set.sha1.then(Sha1::new),
            sha256: set.sha256.then(Sha256::new),
            sha512: set.sha512.then(Sha512::new),
        }
    }

    /// Feeds bytes to every hasher.
    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
    }

    /// The final digests.
    pub fn finish(self) -> Digests {
        Digests {
            sha1: self.sha1.map(|h| h.finalize().to_vec()),
            sha256: self.sha256.map(|h| h.finalize().to_vec()),
            sha512: self.sha512.map(|h| h.finalize().to_vec()),
        }
    }
}

/// The digests computed for one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    /// SHA-1, when computed.
    pub sha1: Option<Vec<u8>>,
    /// SHA-256, when computed.
    pub sha256: Option<Vec<u8>>,
    /// SHA-512, when computed.
    pub sha512: Option<Vec<u8>>,
}

impl Digests {
    /// The digest for `a`, when it was computed.
    pub fn get(&self, a: DigestAlgorithm) -> Option<&[u8]> {
        match a {
            DigestAlgorithm::Sha1 => self.sha1.as_deref(),
            DigestAlgorithm::Sha256 => self.sha256.as_deref(),
            DigestAlgorithm::Sha512 => self.sha512.as_deref(),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes hex in either case; `None` when not hex or of odd length.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        for (s, a) in [
            ("SHA1", DigestAlgorithm::Sha1),
            ("sha-1", DigestAlgorithm::Sha1),
            ("SHA256", DigestAlgorithm::Sha256),
            ("SHA-256", DigestAlgorithm::Sha256),
            ("SHA2-256", DigestAlgorithm::Sha256),
            ("SHA512", DigestAlgorithm::Sha512),
            ("Sha-512", DigestAlgorithm::Sha512),
        ] {
            assert_eq!(DigestAlgorithm::parse(s), Some(a), "{s}");
        }
        assert_eq!(DigestAlgorithm::parse("MD5"), None);
        assert_eq!(DigestAlgorithm::parse("SHA384"), None);
    }

    #[test]
    fn hex_and_hashers() {
        assert_eq!(from_hex("00fFa0"), Some(vec![0, 255, 160]));
        assert_eq!(from_hex("0g"), None);
        let mut h = Hashers::new(DigestSet::ALL);
        h.update(b"ab");
        h.update(b"c");
        let d = h.finish();
        assert_eq!(
            to_hex(d.get(DigestAlgorithm::Sha1).unwrap()),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            d.get(DigestAlgorithm::Sha256).unwrap(),
            DigestAlgorithm::Sha256.digest(b"abc")
        );
    }
}
