//! The output directory: unique names for the files written, temporary
//! files beside them, and removal of everything written when an import
//! fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{ImportError, Result};

/// Files written so far; removed unless the import completes.
pub(crate) struct Outputs {
    dir: PathBuf,
    created_dir: bool,
    files: Vec<PathBuf>,
    names: HashSet<String>,
    /// Temporary files made so far (their names never collide with outputs,
    /// which never start with a dot).
    temporaries: u32,
    pub(crate) done: bool,
}

impl Outputs {
    /// Prepares `dir` (created if missing, refused if not empty).
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        let created_dir = prepare_out_dir(dir)?;
        Ok(Outputs {
            dir: dir.to_path_buf(),
            created_dir,
            files: Vec::new(),
            names: HashSet::new(),
            temporaries: 0,
            done: false,
        })
    }

    /// A path for a temporary file (`what`: "spool", "rebuild") inside the
    /// output directory, removed with the outputs if the import fails.
    pub(crate) fn temporary(&mut self, what: &str) -> PathBuf {
        self.temporaries += 1;
        let name = format!(".{what}-{}", self.temporaries);
        self.track(&name)
    }

    /// A file name in the output directory, unique among the outputs, made
    /// from the stem of `base` and `ext`.
    pub(crate) fn name_for(&mut self, base: &str, ext: &str) -> String {
        let stem = Path::new(base)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut clean: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        if clean.is_empty() || clean.starts_with('.') {
            clean.insert_str(0, "disk");
        }
        let mut name = format!("{clean}.{ext}");
        let mut i = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{clean}-{i}.{ext}");
            i += 1;
        }
        name
    }

    /// The path of output `name`, removed if the import fails.
    pub(crate) fn track(&mut self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        self.files.push(p.clone());
        p
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

fn prepare_out_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ImportError::OutDir {
                    path: dir.to_path_buf(),
                    reason: "exists and is not empty".into(),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| ImportError::OutDir {
                path: dir.to_path_buf(),
                reason: format!("cannot be created: {e}"),
            })?;
            Ok(true)
        }
        Err(e) => Err(ImportError::OutDir {
            path: dir.to_path_buf(),
            reason: format!("cannot be read: {e}"),
        }),
    }
}
