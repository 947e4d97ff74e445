//! Member names and hrefs turned into safe relative paths.
//!
//! Every name that comes from a package (tar member names, GNU long names,
//! pax `path` records, descriptor hrefs, manifest entries) goes through
//! [`normalize_member_name`] or [`safe_relative_path`], which refuse anything
//! that could name a file outside the package: `..` components, absolute
//! paths, backslashes, NUL and control characters, URL schemes.

use std::path::PathBuf;

use super::error::{PackageError, Result};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 4096;
/// Most path components accepted in a name.
pub const MAX_COMPONENTS: usize = 32;

/// Normalises a member name: drops `./` and empty components and a trailing
/// `/`, and refuses names that could escape the package root.
///
/// Returns the components joined with `/` (never empty, never starting with
/// `/`, never containing `.` or `..` components).
pub fn normalize_member_name(name: &str) -> Result<String> {
    let refuse = |reason| {
        Err(PackageError::UnsafePath {
            name: name.to_string(),
            reason,
        })
    };
    if name.len() > MAX_NAME_LEN {
        return refuse("name is too long");
    }
    if name.starts_with('/') {
        return refuse("absolute path");
    }
    if name.contains('\\') {
        return refuse("backslash in name");
    }
    if name.chars().any(char::is_control) {
        return refuse("control character in name");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => continue,
            ".." => return refuse("parent-directory component"),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return refuse("empty name");
    }
    if parts.len() > MAX_COMPONENTS {
        return refuse("too many path components");
    }
    if parts.iter().any(|p| p.len() > 255) {
        return refuse("path component longer than 255 bytes");
    }
    Ok(parts.join("/"))
}

/// Turns an href from a descriptor or manifest into a safe path relative
/// to the package root (output directory), refusing everything else:
/// absolute paths, `..`, URLs (`scheme:`), backslashes, control characters.
///
/// `file:` URLs and `http(s):` references are not package members and are
/// refused with a message saying so.
pub fn safe_relative_path(href: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(normalize_href(href)?))
}

/// Like [`safe_relative_path`] but returns the normalised name as a string,
/// in the form [`normalize_member_name`] gives member names.
pub fn normalize_href(href: &str) -> Result<String> {
    if let Some(colon) = href.find(':') {
        let scheme = &href[..colon];
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(PackageError::UnsafePath {
                name: href.to_string(),
                reason: "href is a URL, not a file of the package",
            });
        }
    }
    normalize_member_name(href)
}

/// Joins a package root (`""` or a normalised directory name) and a
/// normalised relative name.
pub fn join_root(root: &str, name: &str) -> String {
    if root.is_empty() {
        name.to_string()
    } else {
        format!("{root}/{name}")
    }
}

/// The name of chunk `index` of a chunked file (`href.000000000`, ...).
pub fn chunk_name(href: &str, index: u32) -> String {
    format!("{href}.{index:09}")
}

/// Splits a chunk name into the file's name and the chunk index, when the
/// name ends in a dot and nine digits.
pub fn split_chunk_name(name: &str) -> Option<(&str, u32)> {
    let (base, digits) = name.rsplit_once('.')?;
    if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) || base.is_empty() {
        return None;
    }
    Some((base, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_harmless_forms() {
        assert_eq!(normalize_member_name("./a.ovf").unwrap(), "a.ovf");
        assert_eq!(normalize_member_name("d//./x.vmdk").unwrap(), "d/x.vmdk");
        assert_eq!(normalize_member_name("d/").unwrap(), "d");
    }

    #[test]
    fn refuses_escapes() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "",
            "./",
            "a\\..\\b",
            "a\0b",
            "a\nb",
        ] {
            assert!(normalize_member_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_href("file:///etc/passwd").is_err());
        assert!(normalize_href("http://x/y.vmdk").is_err());
        assert!(normalize_href("c:/x").is_err());
        assert_eq!(
            safe_relative_path("disks/a.vmdk").unwrap(),
            PathBuf::from("disks/a.vmdk")
        );
    }

    #[test]
    fn chunk_names() {
        assert_eq!(chunk_name("d.vmdk", 1), "d.vmdk.000000001");
        assert_eq!(split_chunk_name("d.vmdk.000000012"), Some(("d.vmdk", 12)));
        assert_eq!(split_chunk_name("d.vmdk.00000001"), None);
        assert_eq!(split_chunk_name("d.vmdk"), None);
    }
}
