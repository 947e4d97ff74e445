//! A directory package: the descriptor, manifest and certificate of an
//! unpacked OVF, then the files asked for, read as members.
//!
//! Files are opened only inside the package directory: every path
//! component is checked with `lstat` (no symbolic links, only directories
//! then a regular file) and the opened file is checked to be the one that
//! was inspected (same device and inode).

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::{PackageError, Result};
use super::path::{chunk_name, normalize_member_name};

/// The member source of a directory package.
#[derive(Debug)]
pub(crate) struct DirSource {
    root: PathBuf,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    file: Option<(File, u64, String)>,
}

impl DirSource {
    /// A package rooted at `root` whose descriptor is `descriptor` (a
    /// name in `root`), or the only `.ovf` file in `root` when `None`.
    pub(crate) fn new(root: &Path, descriptor: Option<&str>) -> Result<Self> {
        let io_err = |source| PackageError::Io {
            op: "listing",
            path: root.to_path_buf(),
            source,
        };
        let descriptor = match descriptor {
            Some(d) => d.to_string(),
            None => {
                let mut found = Vec::new();
                for entry in std::fs::read_dir(root).map_err(io_err)? {
                    let entry = entry.map_err(io_err)?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.to_ascii_lowercase().ends_with(".ovf") {
                        found.push(name);
                    }
                }
                found.sort();
                match found.len() {
                    1 => found.remove(0),
                    0 => {
                        return Err(PackageError::Layout {
                            reason: format!("no .ovf descriptor in {}", root.display()),
                        });
                    }
                    _ => {
                        return Err(PackageError::Layout {
                            reason: format!(
                                "several .ovf descriptors in {}: {}",
                                root.display(),
                                found.join(", ")
                            ),
                        });
                    }
                }
            }
        };
        let mut source = DirSource {
            root: root.to_path_buf(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            file: None,
        };
        let stem = descriptor
            .rsplit_once('.')
            .map_or(descriptor.as_str(), |(s, _)| s)
            .to_string();
        source.want(&descriptor);
        for ext in ["mf", "cert"] {
            let name = format!("{stem}.{ext}");
            if source.lookup(&name)?.is_some() {
                source.want(&name);
            }
        }
        Ok(source)
    }

    /// Queues a file by its normalised name. A name that does not exist as
    /// a file but whose first chunk does queues every consecutive chunk.
    pub(crate) fn want(&mut self, name: &str) {
        if self.queued.insert(name.to_string()) {
            self.queue.push_back(name.to_string());
        }
    }

    /// Expands a wanted name into its chunks when the plain file is absent.
    fn expand_chunks(&mut self, name: &str) -> Result<Vec<String>> {
        let mut chunks = Vec::new();
        for index in 0u32.. {
            let chunk = chunk_name(name, index);
            if self.lookup(&chunk)?.is_none() {
                break;
            }
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// `lstat`s each component of `name`; `Some(size)` for a regular file,
    /// `None` when absent; an error for links and other kinds.
    fn lookup(&self, name: &str) -> Result<Option<u64>> {
        let name = normalize_member_name(name)?;
        let mut path = self.root.clone();
        let parts: Vec<&str> = name.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(source) => {
                    return Err(PackageError::Io {
                        op: "inspecting",
                        path,
                        source,
                    });
                }
            };
            let last = i + 1 == parts.len();
            let ft = meta.file_type();
            if ft.is_symlink() {
                return Err(PackageError::ForbiddenMember {
                    name,
                    kind: "symbolic link",
                });
            }
            if last {
                if !ft.is_file() {
                    return Err(PackageError::ForbiddenMember {
                        name,
                        kind: if ft.is_dir() {
                            "directory"
                        } else {
                            "special file"
                        },
                    });
                }
                return Ok(Some(meta.len()));
            } else if !ft.is_dir() {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Opens the next queued file that exists; `None` when the queue is
    /// empty. Missing files are skipped: verification reports them.
    pub(crate) fn next(&mut self) -> Result<Option<(String, u64)>> {
        self.file = None;
        while let Some(name) = self.queue.pop_front() {
            let Some(_) = self.lookup(&name)? else {
                let chunks = self.expand_chunks(&name)?;
                for c in chunks.into_iter().rev() {
                    if self.queued.insert(c.clone()) {
                        self.queue.push_front(c);
                    }
                }
                continue;
            };
            let path = self.root.join(&name);
            let before = std::fs::symlink_metadata(&path).map_err(|source| PackageError::Io {
                op: "inspecting",
                path: path.clone(),
                source,
            })?;
            let file = File::open(&path).map_err(|source| PackageError::Io {
                op: "opening",
                path: path.clone(),
                source,
            })?;
            let after = file.metadata().map_err(|source| PackageError::Io {
                op: "inspecting",
                path: path.clone(),
                source,
            })?;
            if before.dev() != after.dev() || before.ino() != after.ino() || !after.is_file() {
                return Err(PackageError::UnsafePath {
                    name,
                    reason: "file was replaced while being opened",
                });
            }
            let size = after.len();
            self.file = Some((file, size, name.clone()));
            return Ok(Some((name, size)));
        }
        Ok(None)
    }

    /// Reads the current file's bytes, at most its size when opened.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((file, remaining, name)) = &mut self.file else {
            return Ok(0);
        };
        if *remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from((*remaining).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(PackageError::Truncated {
                what: format!("file {name:?} shrank while being read"),
                offset: 0,
            }
            .into_io());
        }
        *remaining -= n as u64;
        Ok(n)
    }
}
