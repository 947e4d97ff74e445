//! Parent locators: where a differencing disk says its parent lives.
//!
//! Read: `W2ru`/`W2ku` (relative/absolute, UTF-16LE) and `Wi2r`/`Wi2k`
//! (relative/absolute, ASCII). Windows paths are turned into candidate paths
//! on this system (backslashes become slashes; a drive-letter path, which
//! cannot name a file here, contributes its file name, looked up next to the
//! child). The header's parent name is the last resort, by file name.
//! Written: `W2ku` with the parent's absolute path and `W2ru` with the path
//! relative to the child (`.\name`, Windows separators).

use std::path::{Component, Path, PathBuf};

use super::header::{DynamicHeader, LocatorEntry};
use crate::file::ImageFile;
use crate::{Error, Format, Result};

/// Longest locator data read; real paths are far shorter.
const MAX_LOCATOR_LEN: u32 = 64 * 1024;

/// Decodes the text of one locator's data, or `None` for a platform code
/// this reader does not follow (Macintosh aliases and URLs).
fn decode(code: &[u8; 4], data: &[u8]) -> Option<String> {
    let s = match code {
        b"W2ku" | b"W2ru" => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        b"Wi2k" | b"Wi2r" => String::from_utf8_lossy(data).into_owned(),
        _ => return None,
    };
    let s = s.trim_end_matches('\0').to_string();
    (!s.is_empty()).then_some(s)
}

/// The file name at the end of a Windows or POSIX path.
fn file_name(path: &str) -> Option<String> {
    path.rsplit(['\\', '/'])
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(str::to_string)
}

/// Whether `s` starts like `C:` or `\\server`.
fn is_windows_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || s.starts_with("\\\\")
}

/// Turns a locator's path into a path on this system, or `None` if it cannot
/// name a file here.
fn to_local(s: &str) -> Option<PathBuf> {
    if is_windows_absolute(s) {
        return None;
    }
    let p = PathBuf::from(s.replace('\\', "/"));
    // Strip a leading "./" so that joining keeps paths tidy.
    let p: PathBuf = p.components().filter(|c| *c != Component::CurDir).collect();
    (!p.as_os_str().is_empty()).then_some(p)
}

/// The candidate parent paths a differencing disk's header and locators name,
/// in order of preference: relative locators, absolute ones, then file names
/// (looked up next to the child).
pub fn candidates(file: &ImageFile, header: &DynamicHeader, file_len: u64) -> Result<Vec<PathBuf>> {
    let mut relative = Vec::new();
    let mut absolute = Vec::new();
    let mut names = Vec::new();
    for (i, l) in header.locators.iter().enumerate() {
        if !l.is_used() || l.data_length == 0 {
            continue;
        }
        let entry_at = 512 + 576 + 24 * i as u64;
        let end = l.data_offset.checked_add(u64::from(l.data_length));
        if l.data_length > MAX_LOCATOR_LEN || end.is_none_or(|e| e > file_len) {
            return Err(Error::corrupt(
                Format::Vhd,
                "parent locator data",
                entry_at,
                format!(
                    "{} bytes at {:#x} do not fit in the file of {file_len} bytes (or exceed {MAX_LOCATOR_LEN})",
                    l.data_length, l.data_offset
                ),
            ));
        }
        let mut data = vec![0u8; l.data_length as usize];
        file.read_exact_at(&mut data, l.data_offset)?;
        let Some(text) = decode(&l.code, &data) else {
            continue;
        };
        let relative_code = matches!(&l.code, b"W2ru" | b"Wi2r");
        match to_local(&text) {
            Some(p) if relative_code || !p.is_absolute() => relative.push(p),
            Some(p) => absolute.push(p),
            None => {}
        }
        if let Some(n) = file_name(&text) {
            names.push(PathBuf::from(n));
        }
    }
    if let Some(n) = file_name(&header.parent_name()) {
        names.push(PathBuf::from(n));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for p in relative.into_iter().chain(absolute).chain(names) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The relative path from directory `from` to `to` (both absolute and
/// canonical), with Windows separators and a leading `.\` as Windows writes.
pub fn relative_windows(from: &Path, to: &Path) -> String {
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..a.len() {
        parts.push("..".into());
    }
    for c in &b[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    if parts.first().is_some_and(|p| p != "..") {
        parts.insert(0, ".".into());
    }
    parts.join("\\")
}

/// UTF-16LE bytes of `s`.
pub fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A locator entry for `data` placed at `offset`, reserving whole sectors
/// (`data_space` counted in sectors as the specification says).
pub fn entry(code: &[u8; 4], data: &[u8], offset: u64) -> LocatorEntry {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    LocatorEntry {
        code: *code,
        data_space: len.div_ceil(512),
        data_length: len,
        data_offset: offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths() {
        assert_eq!(to_local(".\\base.vhd"), Some(PathBuf::from("base.vhd")));
        assert_eq!(to_local("..\\a\\b.vhd"), Some(PathBuf::from("../a/b.vhd")));
        assert_eq!(to_local("C:\\VMs\\b.vhd"), None);
        assert_eq!(to_local("/srv/b.vhd"), Some(PathBuf::from("/srv/b.vhd")));
        assert_eq!(file_name("C:\\VMs\\b.vhd").as_deref(), Some("b.vhd"));
    }

    #[test]
    fn relative_paths() {
        let r = relative_windows(Path::new("/a/b"), Path::new("/a/b/p.vhd"));
        assert_eq!(r, ".\\p.vhd");
        let r = relative_windows(Path::new("/a/b"), Path::new("/a/c/p.vhd"));
        assert_eq!(r, "..\\c\\p.vhd");
    }

    #[test]
    fn decoding() {
        assert_eq!(decode(b"W2ku", &utf16le("x\0\0")).as_deref(), Some("x"));
        assert_eq!(decode(b"Wi2r", b".\\p.vhd").as_deref(), Some(".\\p.vhd"));
        assert_eq!(decode(b"MacX", b"file://x"), None);
    }
}
