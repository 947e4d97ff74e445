//! Verification of a package read to its end: manifest digests against the
//! digests computed while streaming, missing entries and files, and the
//! certificate's signature over the manifest.

use super::cert::{CertificateFile, SignerInfo};
use super::digest::{DigestAlgorithm, to_hex};
use super::error::{PackageError, Result};
use super::manifest::Manifest;
use super::reader::{MemberRole, PackageContents};

/// How strictly to verify.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Report manifest problems (digest mismatch, missing entry, missing
    /// file, no descriptor, unparsable manifest) as warnings instead of
    /// failing. A signature that is present but does not verify is still
    /// an error: a package that claims a signer and lies is refused.
    pub no_verify: bool,
    /// A package without a manifest is a problem (otherwise it is noted as
    /// a warning).
    pub require_manifest: bool,
}

/// The check of one manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    /// The file name from the manifest (relative to the package root).
    pub name: String,
    /// The algorithm of the line.
    pub algorithm: DigestAlgorithm,
    /// The digest the manifest gives, lower-case hex.
    pub expected: String,
    /// The digest computed, lower-case hex; `None` when the file is missing
    /// or the digest was not computed.
    pub actual: Option<String>,
    /// Whether they match.
    pub ok: bool,
}

/// The signature status of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No certificate file.
    Unsigned,
    /// The signature over the manifest verifies with the certificate.
    Signed(SignerInfo),
    /// The certificate or signature is wrong; the text says how.
    Invalid(String),
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The manifest's name, when there is one.
    pub manifest: Option<String>,
    /// One check per manifest line.
    pub entries: Vec<EntryCheck>,
    /// Members (other than the manifest and certificate) the manifest does
    /// not list.
    pub missing_entries: Vec<String>,
    /// Manifest entries with no member.
    pub missing_files: Vec<String>,
    /// Members outside the package root (the descriptor's directory).
    pub extra_files: Vec<String>,
    /// The signature.
    pub signature: SignatureStatus,
    /// Problems that fail verification (unless `no_verify`).
    pub problems: Vec<String>,
    /// Things worth telling that do not fail verification.
    pub warnings: Vec<String>,
}

impl Verification {
    /// Whether nothing failed.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies a package read to its end. Returns
/// [`PackageError::Verification`] listing every problem unless
/// `options.no_verify`, in which case manifest problems come back as
/// warnings (a bad signature still fails).
pub fn verify(contents: &PackageContents, options: &VerifyOptions) -> Result<Verification> {
    let mut v = Verification {
        manifest: contents.manifest.as_ref().map(|(n, _)| n.clone()),
        entries: Vec::new(),
        missing_entries: Vec::new(),
        missing_files: Vec::new(),
        extra_files: Vec::new(),
        signature: SignatureStatus::Unsigned,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let root = contents.root.as_str();
    let relative = |name: &str| -> Option<String> {
        if root.is_empty() {
            Some(name.to_string())
        } else {
            name.strip_prefix(root)
                .and_then(|r| r.strip_prefix('/'))
                .map(str::to_string)
        }
    };
    for m in &contents.members {
        if relative(&m.name).is_none() {
            v.extra_files.push(m.name.clone());
            v.warnings.push(format!(
                "member {:?} is outside the package directory {root:?}",
                m.name
            ));
        }
    }
    if contents.descriptor.is_none() {
        v.problems.push("the package has no .ovf descriptor".into());
    }

    let manifest = match (&contents.manifest, &contents.manifest_error) {
        (_, Some(err)) => {
            v.problems.push(err.clone());
            None
        }
        (Some((name, bytes)), None) => match Manifest::parse(name, bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                v.problems.push(e.to_string());
                None
            }
        },
        (None, None) => {
            let msg = "the package has no manifest: file contents are not verified".to_string();
            if options.require_manifest {
                v.problems.push(msg);
            } else {
                v.warnings.push(msg);
            }
            None
        }
    };

    if let Some(manifest) = &manifest {
        check_entries(contents, manifest, &relative, &mut v);
    }

    if options.no_verify {
        let problems = std::mem::take(&mut v.problems);
        v.warnings.extend(problems);
    }
    v.signature = check_signature(contents, &mut v);

    if !v.problems.is_empty() {
        return Err(PackageError::Verification {
            problems: v.problems,
        });
    }
    Ok(v)
}

fn check_entries(
    contents: &PackageContents,
    manifest: &Manifest,
    relative: &dyn Fn(&str) -> Option<String>,
    v: &mut Verification,
) {
    for e in &manifest.entries {
        let member = contents
            .members
            .iter()
            .find(|m| relative(&m.name).as_deref() == Some(e.name.as_str()));
        let expected = to_hex(&e.digest);
        let (actual, ok) = match member {
            None => {
                if !v.missing_files.contains(&e.name) {
                    v.missing_files.push(e.name.clone());
                    v.problems.push(format!(
                        "manifest line {} lists {:?}, which is not in the package",
                        e.line, e.name
                    ));
                }
                (None, false)
            }
            Some(m) => match m.digests.get(e.algorithm) {
                None => {
                    v.problems.push(format!(
                        "{} of {:?} was not computed (the member came before the manifest)",
                        e.algorithm, e.name
                    ));
                    (None, false)
                }
                Some(d) => {
                    let ok = d == e.digest.as_slice();
                    if !ok {
                        v.problems.push(format!(
                            "{} digest of {:?} is {}, the manifest says {}",
                            e.algorithm,
                            e.name,
                            to_hex(d),
                            expected
                        ));
                    }
                    (Some(to_hex(d)), ok)
                }
            },
        };
        v.entries.push(EntryCheck {
            name: e.name.clone(),
            algorithm: e.algorithm,
            expected,
            actual,
            ok,
        });
    }
    for m in &contents.members {
        if matches!(m.role, MemberRole::Manifest | MemberRole::Certificate) {
            continue;
        }
        if let Some(rel) = relative(&m.name)
            && !manifest.contains(&rel)
        {
            v.problems
                .push(format!("{:?} has no entry in the manifest", m.name));
            v.missing_entries.push(m.name.clone());
        }
    }
}

fn check_signature(contents: &PackageContents, v: &mut Verification) -> SignatureStatus {
    let Some((cert_name, cert_bytes)) = &contents.certificate else {
        return SignatureStatus::Unsigned;
    };
    let mut invalid = |msg: String| {
        v.problems.push(msg.clone());
        SignatureStatus::Invalid(msg)
    };
    let Some((mf_name, mf_bytes)) = &contents.manifest else {
        return invalid(format!(
            "{cert_name:?} signs a manifest but the package has none"
        ));
    };
    let cert = match CertificateFile::parse(cert_name, cert_bytes) {
        Ok(c) => c,
        Err(e) => return invalid(e.to_string()),
    };
    let mf_base = mf_name.rsplit('/').next().unwrap_or(mf_name);
    if cert.manifest_name != mf_base {
        return invalid(format!(
            "{cert_name:?} signs {:?}, but the manifest is {mf_base:?}",
            cert.manifest_name
        ));
    }
    match cert.verify(cert_name, mf_bytes) {
        Ok(info) => {
            if info.self_signed {
                v.warnings.push(format!(
                    "the package is signed with a self-signed certificate ({})",
                    info.subject
                ));
            }
            if !info.currently_valid {
                v.warnings.push(format!(
                    "the signing certificate is not valid now (valid {} to {})",
                    info.not_before_text, info.not_after_text
                ));
            }
            SignatureStatus::Signed(info)
        }
        Err(PackageError::Verification { problems }) => invalid(problems.join("; ")),
        Err(e) => invalid(e.to_string()),
    }
}
