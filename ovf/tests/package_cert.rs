//! Signed packages: certificates and signatures made by `openssl` (RSA,
//! ECDSA P-256 and P-384; SHA-1, SHA-256, SHA-512), verified over the
//! manifest; a bad signature is an error, an unsigned package is reported
//! as unsigned.

#[path = "package_util.rs"]
mod util;

use std::io;
use std::path::Path;
use std::process::Command;

use ovf::package::{
    DigestAlgorithm, PackageErrorKind, PackageOptions, PackageReader, SignatureStatus,
    VerifyOptions, to_hex, verify,
};
use util::Tar;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for this test (install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a self-signed certificate `name.pem` with key `name.key`.
fn self_signed(dir: &Path, name: &str, key: &[&str], subject: &str) {
    let (k, c) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec!["req", "-x509", "-nodes", "-days", "30", "-subj", subject];
    args.extend_from_slice(&["-keyout", &k, "-out", &c]);
    args.extend_from_slice(key);
    openssl(&args, dir);
}

/// The `.cert` file: a signature line over `mf` with `key`, then the PEM.
fn cert_file(dir: &Path, key: &str, pem: &str, alg: &str, mf: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("p.mf"), mf).unwrap();
    openssl(
        &[
            "dgst",
            &format!("-{alg}"),
            "-sign",
            key,
            "-out",
            "sig.bin",
            "p.mf",
        ],
        dir,
    );
    let sig = std::fs::read(dir.join("sig.bin")).unwrap();
    let label = match alg {
        "sha1" => "SHA1",
        "sha256" => "SHA256",
        _ => "SHA512",
    };
    let mut out = format!("{label}(p.mf)= {}\n", to_hex(&sig)).into_bytes();
    out.extend_from_slice(&std::fs::read(dir.join(pem)).unwrap());
    out
}

fn package(cert: Option<&[u8]>, mf: &[u8], ovf: &[u8]) -> ovf::package::PackageContents {
    let mut t = Tar::new();
    t.file("p.ovf", ovf).file("p.mf", mf);
    if let Some(c) = cert {
        t.file("p.cert", c);
    }
    let pkg = PackageReader::ova(io::Cursor::new(t.finish()), PackageOptions::default());
    util::read_all(pkg).unwrap().1
}

#[test]
fn rsa_and_ecdsa_signatures_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(
        d,
        "rsa",
        &["-newkey", "rsa:2048"],
        "/CN=RSA Signer/O=Example",
    );
    self_signed(
        d,
        "p256",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=P256 Signer",
    );
    self_signed(
        d,
        "p384",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "/CN=P384 Signer",
    );
    let ovf = util::descriptor(&[]);
    let mf = util::manifest(&[("p.ovf", &ovf)], DigestAlgorithm::Sha256);
    for (name, alg, key_text) in [
        ("rsa", "sha1", "RSA 2048"),
        ("rsa", "sha256", "RSA 2048"),
        ("rsa", "sha512", "RSA 2048"),
        ("p256", "sha256", "ECDSA P-256"),
        ("p256", "sha1", "ECDSA P-256"),
        ("p384", "sha256", "ECDSA P-384"),
        ("p384", "sha512", "ECDSA P-384"),
    ] {
        let cert = cert_file(d, &format!("{name}.key"), &format!("{name}.pem"), alg, &mf);
        let contents = package(Some(&cert), &mf, &ovf);
        let v = verify(&contents, &VerifyOptions::default())
            .unwrap_or_else(|e| panic!("{name} {alg}: {e}"));
        let SignatureStatus::Signed(info) = &v.signature else {
            panic!("{name} {alg}: {:?}", v.signature);
        };
        assert!(info.subject.contains("CN="), "{}", info.subject);
        assert_eq!(info.subject, info.issuer);
        assert!(info.self_signed && info.currently_valid, "{info:?}");
        assert_eq!(info.key, key_text);
        assert!(v.warnings.iter().any(|w| w.contains("self-signed")));

        // The same signature over a different manifest fails.
        let mut other = mf.clone();
        other[0] = b's';
        let contents = package(Some(&cert), &other, &ovf);
        let e = verify(&contents, &VerifyOptions::default()).unwrap_err();
        assert_eq!(
            e.kind(),
            PackageErrorKind::Verification,
            "{name} {alg}: {e}"
        );
        assert!(e.to_string().contains("does not verify"), "{e}");
        // no_verify does not excuse a signature that lies.
        let no_verify = VerifyOptions {
            no_verify: true,
            ..Default::default()
        };
        assert!(verify(&contents, &no_verify).is_err());
    }
}

#[test]
fn ca_issued_certificate_is_not_self_signed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "ca", &["-newkey", "rsa:2048"], "/CN=Test CA");
    openssl(
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "leaf.key",
            "-subj",
            "/CN=Leaf Signer",
            "-out",
            "leaf.csr",
        ],
        d,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "10",
            "-out",
            "leaf.pem",
        ],
        d,
    );
    let ovf = util::descriptor(&[]);
    let mf = util::manifest(&[("p.ovf", &ovf)], DigestAlgorithm::Sha1);
    let cert = cert_file(d, "leaf.key", "leaf.pem", "sha256", &mf);
    let v = verify(&package(Some(&cert), &mf, &ovf), &VerifyOptions::default()).unwrap();
    let SignatureStatus::Signed(info) = v.signature else {
        panic!("{:?}", v.signature);
    };
    assert!(!info.self_signed);
    assert!(info.subject.contains("Leaf Signer") && info.issuer.contains("Test CA"));

    // Signed with one key, presented with another certificate: error.
    let wrong = cert_file(d, "ca.key", "leaf.pem", "sha256", &mf);
    assert!(verify(&package(Some(&wrong), &mf, &ovf), &VerifyOptions::default()).is_err());
}

#[test]
fn unsigned_and_malformed() {
    let ovf = util::descriptor(&[]);
    let mf = util::manifest(&[("p.ovf", &ovf)], DigestAlgorithm::Sha256);
    let v = verify(&package(None, &mf, &ovf), &VerifyOptions::default()).unwrap();
    assert_eq!(v.signature, SignatureStatus::Unsigned);
    for bad in [
        &b"SHA256(p.mf)= zz\n"[..],
        b"SHA256(p.mf)= 00ff\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"no signature line",
        b"SHA256(other.mf)= 00ff\n",
    ] {
        let e = verify(&package(Some(bad), &mf, &ovf), &VerifyOptions::default()).unwrap_err();
        assert_eq!(e.kind(), PackageErrorKind::Verification, "{e}");
    }
}
