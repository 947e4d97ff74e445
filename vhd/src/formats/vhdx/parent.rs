//! Differencing parents: turning parent locator paths (written on Windows)
//! into candidate paths here, opening the parent, and checking its identity
//! against the child's parent_linkage.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::format::corrupt;
use super::metadata::{Metadata, ParentLocator};
use crate::{ChainContext, DiskImage, Error, Image, Result};

/// Whether `s` is a Windows absolute path (drive letter, UNC or `\\?\`).
fn is_windows_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || s.starts_with("\\\\")
}

/// The last component of a Windows or POSIX path.
fn file_name(s: &str) -> Option<PathBuf> {
    let name = s.rsplit(['\\', '/']).next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| PathBuf::from(name))
}

/// Maps one locator value to a path to try, relative paths being relative
/// to the child's directory.
fn map_path(key: &str, value: &str) -> Option<PathBuf> {
    let value = value.trim_end_matches('\0');
    if value.is_empty() {
        return None;
    }
    if value.starts_with('/') {
        // Written by a POSIX tool: usable as it is.
        return Some(PathBuf::from(value));
    }
    if key == "relative_path" && !is_windows_absolute(value) {
        return Some(PathBuf::from(value.replace('\\', "/")));
    }
    // A drive letter or volume GUID means nothing here: look for the file
    // name next to the child.
    file_name(value)
}

/// The paths the locator names, in the order the specification prefers.
pub(crate) fn candidates(loc: &ParentLocator) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for key in ["relative_path", "volume_path", "absolute_win32_path"] {
        if let Some(p) = loc.get(key).and_then(|v| map_path(key, v))
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    out
}

/// Parses a locator GUID value (`{...}` or bare).
pub(crate) fn parse_guid(v: &str) -> Option<Uuid> {
    Uuid::parse_str(v.trim().trim_end_matches('\0')).ok()
}

/// The identity a child records for `parent`: the DataWriteGuid of a VHDX
/// parent, the unique id of a VHD parent; `None` for a raw parent, which
/// has none.
pub(crate) fn identity(parent: &Image) -> Option<Uuid> {
    match parent {
        Image::Vhdx(v) => Some(v.data_write_guid()),
        Image::Raw(_) => None,
        other => other
            .info()
            .identifiers
            .iter()
            .find(|(k, _)| k == "uuid" || k == "unique_id")
            .and_then(|(_, v)| parse_guid(v)),
    }
}

/// Opens the parent the locator names and checks it matches.
pub(crate) fn open_parent(
    child: &Path,
    loc: &ParentLocator,
    meta: &Metadata,
    ctx: &ChainContext,
) -> Result<Image> {
    let linkage = loc
        .get("parent_linkage")
        .ok_or_else(|| corrupt("parent locator", 0, "there is no parent_linkage key"))?;
    let linkage = parse_guid(linkage).ok_or_else(|| {
        corrupt(
            "parent locator",
            0,
            format!("parent_linkage {linkage:?} is not a GUID"),
        )
    })?;
    let linkage2 = loc.get("parent_linkage2").and_then(parse_guid);
    let paths = candidates(loc);
    if paths.is_empty() {
        return Err(corrupt("parent locator", 0, "no path to the parent"));
    }
    let parent = crate::open_parent(child, &paths, ctx)?;
    let parent_path = parent.info().path;
    if let Some(id) = identity(&parent)
        && id != linkage
        && Some(id) != linkage2
    {
        return Err(Error::ParentMismatch {
            child: child.to_path_buf(),
            parent: parent_path,
            reason: format!("the child expects {linkage} but the parent is {id}"),
        });
    }
    if parent.logical_sector_size() != meta.logical_sector_size {
        return Err(Error::ParentMismatch {
            child: child.to_path_buf(),
            parent: parent_path,
            reason: format!(
                "logical sectors of {} bytes, the child has {}",
                parent.logical_sector_size(),
                meta.logical_sector_size
            ),
        });
    }
    Ok(parent)
}

/// The relative path from `dir` to `target` (both absolute, canonical),
/// with Windows separators: `.\name` next to it, `..\x\name` elsewhere.
pub(crate) fn relative_windows_path(dir: &Path, target: &Path) -> String {
    let d: Vec<_> = dir.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = d.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = Vec::new();
    if common == d.len() {
        parts.push(".".into());
    }
    for _ in common..d.len() {
        parts.push("..".into());
    }
    for c in &t[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    parts.join("\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(pairs: &[(&str, &str)]) -> ParentLocator {
        ParentLocator {
            entries: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn windows_paths_map_next_to_the_child() {
        let l = loc(&[
            ("parent_linkage", "{00000000-0000-0000-0000-000000000001}"),
            ("relative_path", ".\\base.vhdx"),
            ("volume_path", "\\\\?\\Volume{1234}\\vms\\base.vhdx"),
            ("absolute_win32_path", "C:\\vms\\other.vhdx"),
        ]);
        assert_eq!(
            candidates(&l),
            vec![
                PathBuf::from("./base.vhdx"),
                PathBuf::from("base.vhdx"),
                PathBuf::from("other.vhdx")
            ]
        );
        let l = loc(&[("relative_path", "..\\disks\\p.vhdx")]);
        assert_eq!(candidates(&l), vec![PathBuf::from("../disks/p.vhdx")]);
        let l = loc(&[("absolute_win32_path", "/srv/p.vhdx")]);
        assert_eq!(candidates(&l), vec![PathBuf::from("/srv/p.vhdx")]);
        let l = loc(&[("absolute_win32_path", "C:\\")]);
        assert!(candidates(&l).is_empty());
    }

    #[test]
    fn relative_paths_use_backslashes() {
        assert_eq!(
            relative_windows_path(Path::new("/a/b"), Path::new("/a/b/p.vhdx")),
            ".\\p.vhdx"
        );
        assert_eq!(
            relative_windows_path(Path::new("/a/b"), Path::new("/a/c/p.vhdx")),
            "..\\c\\p.vhdx"
        );
    }

    #[test]
    fn linkage_parses_with_braces() {
        assert_eq!(
            parse_guid("{00000000-0000-0000-0000-00000000000a}"),
            Some(Uuid::from_u128(10))
        );
    }
}
