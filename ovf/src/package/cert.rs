//! The certificate file (`.cert`): a signature over the manifest and the
//! X.509 certificate whose key made it.
//!
//! Layout, as ovftool and `openssl dgst -sign` produce it:
//!
//! ```text
//! SHA256(package.mf)= <hex signature over the manifest bytes>
//! -----BEGIN CERTIFICATE-----
//! ...
//! -----END CERTIFICATE-----
//! ```
//!
//! Keys: RSA (PKCS#1 v1.5 signatures) and ECDSA on P-256 or P-384 (DER
//! signatures); digests SHA-1, SHA-256, SHA-512 as the line says. Further
//! certificates after the first (a chain) are ignored; only the first one's
//! key is used. Chain building to a trust anchor is not done: the report
//! says who signed and whether the certificate is self-signed.

use std::time::SystemTime;

use der::{DecodePem, Encode};
use rsa::pkcs1::DecodeRsaPublicKey;
use sha2::Digest as _;
use x509_cert::Certificate;

use super::digest::{DigestAlgorithm, from_hex};
use super::error::{PackageError, Result};
use super::path::normalize_href;

/// Who signed the package, from the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerInfo {
    /// The certificate's subject (RFC 4514 form).
    pub subject: String,
    /// The certificate's issuer (RFC 4514 form).
    pub issuer: String,
    /// Start of the validity period.
    pub not_before: SystemTime,
    /// End of the validity period.
    pub not_after: SystemTime,
    /// Start of the validity period, as text (`YYYY-MM-DDTHH:MM:SSZ`).
    pub not_before_text: String,
    /// End of the validity period, as text.
    pub not_after_text: String,
    /// Issuer equals subject and the certificate's own signature verifies
    /// with its key.
    pub self_signed: bool,
    /// The current time is inside the validity period.
    pub currently_valid: bool,
    /// The key type, e.g. "RSA 2048" or "ECDSA P-256".
    pub key: String,
    /// The digest algorithm of the manifest signature.
    pub algorithm: DigestAlgorithm,
}

/// A parsed certificate file.
#[derive(Debug, Clone)]
pub struct CertificateFile {
    /// The manifest the signature line names (normalised).
    pub manifest_name: String,
    /// The digest the signature line names.
    pub algorithm: DigestAlgorithm,
    /// The signature bytes.
    pub signature: Vec<u8>,
    certificate: Certificate,
}

enum PublicKey {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl From<DigestAlgorithm> for Hash {
    fn from(a: DigestAlgorithm) -> Self {
        match a {
            DigestAlgorithm::Sha1 => Hash::Sha1,
            DigestAlgorithm::Sha256 => Hash::Sha256,
            DigestAlgorithm::Sha512 => Hash::Sha512,
        }
    }
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256_CURVE: &str = "1.2.840.10045.3.1.7";
const P384_CURVE: &str = "1.3.132.0.34";

impl CertificateFile {
    /// Parses a `.cert` file; `name` is used in messages.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<CertificateFile> {
        let bad = |reason: String| PackageError::Certificate {
            name: name.to_string(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines
            .next()
            .ok_or_else(|| bad("empty certificate file".into()))?;
        let (left, hex) = first
            .rsplit_once('=')
            .ok_or_else(|| bad("first line is not a signature line".into()))?;
        let left = left.trim_end();
        let open = left
            .find('(')
            .ok_or_else(|| bad("signature line has no '('".into()))?;
        let inner = left[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| bad("signature line has no ')'".into()))?;
        let alg_text = left[..open].trim();
        let algorithm = DigestAlgorithm::parse(alg_text)
            .ok_or_else(|| bad(format!("unknown digest algorithm {alg_text:?}")))?;
        let signature = from_hex(hex.trim()).ok_or_else(|| bad("signature is not hex".into()))?;
        if signature.is_empty() {
            return Err(bad("signature is empty".into()));
        }
        let manifest_name = normalize_href(inner)?;
        let begin = text
            .find("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| bad("no PEM certificate".into()))?;
        let end_marker = "-----END CERTIFICATE-----";
        let end = text[begin..]
            .find(end_marker)
            .map(|e| begin + e + end_marker.len())
            .ok_or_else(|| bad("PEM certificate has no END line".into()))?;
        let certificate = Certificate::from_pem(&text.as_bytes()[begin..end])
            .map_err(|e| bad(format!("X.509 certificate does not decode: {e}")))?;
        Ok(CertificateFile {
            manifest_name,
            algorithm,
            signature,
            certificate,
        })
    }

    fn public_key(&self, name: &str) -> Result<(PublicKey, String)> {
        let bad = |reason: String| PackageError::Certificate {
            name: name.to_string(),
            reason,
        };
        let spki = &self.certificate.tbs_certificate.subject_public_key_info;
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| bad("public key bit string has unused bits".into()))?;
        match spki.algorithm.oid.to_string().as_str() {
            RSA_ENCRYPTION => {
                let key = rsa::RsaPublicKey::from_pkcs1_der(key_bytes)
                    .map_err(|e| bad(format!("RSA public key does not decode: {e}")))?;
                let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
                Ok((PublicKey::Rsa(key), format!("RSA {bits}")))
            }
            EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                    .map(|o| o.to_string())
                    .ok_or_else(|| bad("EC key without a named curve".into()))?;
                match curve.as_str() {
                    P256_CURVE => p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(|k| (PublicKey::P256(k), "ECDSA P-256".to_string()))
                        .map_err(|_| bad("P-256 public key does not decode".into())),
                    P384_CURVE => p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(|k| (PublicKey::P384(k), "ECDSA P-384".to_string()))
                        .map_err(|_| bad("P-384 public key does not decode".into())),
                    other => Err(PackageError::Unsupported {
                        what: format!("certificate key on elliptic curve {other}"),
                    }),
                }
            }
            other => Err(PackageError::Unsupported {
                what: format!("certificate key algorithm {other}"),
            }),
        }
    }

    /// Checks the signature over `manifest` (the manifest file's bytes) and
    /// describes the signer. A signature that does not verify is a
    /// [`PackageError::Verification`].
    pub fn verify(&self, name: &str, manifest: &[u8]) -> Result<SignerInfo> {
        let (key, key_text) = self.public_key(name)?;
        if !verify_signature(&key, self.algorithm.into(), manifest, &self.signature) {
            return Err(PackageError::Verification {
                problems: vec![format!(
                    "the {} signature in {name:?} does not verify over {:?} with the certificate's key",
                    self.algorithm, self.manifest_name
                )],
            });
        }
        Ok(self.describe(key, key_text))
    }

    fn describe(&self, key: PublicKey, key_text: String) -> SignerInfo {
        let tbs = &self.certificate.tbs_certificate;
        let validity = &tbs.validity;
        let not_before = validity.not_before.to_system_time();
        let not_after = validity.not_after.to_system_time();
        let now = SystemTime::now();
        let self_signed = tbs.subject == tbs.issuer && self.self_signature_ok(&key);
        SignerInfo {
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            not_before,
            not_after,
            not_before_text: validity.not_before.to_string(),
            not_after_text: validity.not_after.to_string(),
            self_signed,
            currently_valid: not_before <= now && now <= not_after,
            key: key_text,
            algorithm: self.algorithm,
        }
    }

    fn self_signature_ok(&self, key: &PublicKey) -> bool {
        let hash = match self
            .certificate
            .signature_algorithm
            .oid
            .to_string()
            .as_str()
        {
            "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" => Hash::Sha1,
            "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => Hash::Sha256,
            "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Hash::Sha384,
            "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Hash::Sha512,
            _ => return false,
        };
        let Ok(tbs) = self.certificate.tbs_certificate.to_der() else {
            return false;
        };
        let Some(sig) = self.certificate.signature.as_bytes() else {
            return false;
        };
        verify_signature(key, hash, &tbs, sig)
    }
}

fn verify_signature(key: &PublicKey, hash: Hash, message: &[u8], sig: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let prehash = hash.digest(message);
    match key {
        PublicKey::Rsa(k) => {
            let scheme = match hash {
                Hash::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
                Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            };
            k.verify(scheme, &prehash, sig).is_ok()
        }
        PublicKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
        PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
    }
}
