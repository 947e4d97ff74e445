//! Merging a differencing image into its parent.

use std::path::{Path, PathBuf};

use crate::ops::Progress;
use crate::{Allocation, CreateOptions, DiskImage, Error, OpenOptions, Result};

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitStats {
    /// The parent that received the child's data.
    pub parent: PathBuf,
    /// Bytes of data copied into the parent.
    pub bytes_copied: u64,
    /// Bytes the child marked as zero, zeroed in the parent.
    pub bytes_zeroed: u64,
}

/// Writes every range the differencing image at `child` holds itself into
/// its parent, then replaces the child with an empty differencing image over
/// the updated parent (so the chain stays valid: the parent's identity
/// changes when it is written). `options` governs how the chain is opened
/// (allowed directories, depth).
pub fn commit(
    child: &Path,
    options: &OpenOptions,
    progress: Option<Progress>,
) -> Result<CommitStats> {
    let ro = OpenOptions {
        read_only: true,
        ..options.clone()
    };
    let image = crate::open(child, &ro)?;
    let info = image.info();
    let Some(parent_info) = info.parent.as_deref() else {
        return Err(Error::InvalidArgument(format!(
            "{} is not a differencing image: it has no parent to commit into",
            child.display()
        )));
    };
    let parent_path = parent_info.path.clone();
    let rw = OpenOptions {
        read_only: false,
        allowed_parent_dirs: Some(vec![crate::open::parent_dir(&parent_path)]),
        ..options.clone()
    };
    let parent = crate::open(&parent_path, &rw)?;
    let size = image.virtual_size();
    if parent.virtual_size() < size {
        return Err(Error::Unsupported {
            format: parent.format(),
            what: format!(
                "committing a {size}-byte child into a smaller parent of {} bytes",
                parent.virtual_size()
            ),
        });
    }
    let mut stats = CommitStats {
        parent: parent_path.clone(),
        bytes_copied: 0,
        bytes_zeroed: 0,
    };
    const CHUNK: usize = 4 << 20;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0;
    while pos < size {
        let e = image.block_status(pos, (CHUNK as u64).min(size - pos))?;
        if e.depth == 0 {
            match e.allocation {
                Allocation::Data => {
                    let n = usize::try_from(e.length).unwrap_or(buf.len());
                    image.read_at(&mut buf[..n], pos)?;
                    parent.write_at(&buf[..n], pos)?;
                    stats.bytes_copied += e.length;
                }
                Allocation::Zero => {
                    parent.write_zeroes(pos, e.length)?;
                    stats.bytes_zeroed += e.length;
                }
                Allocation::Unallocated => {}
            }
        }
        pos += e.length;
        if let Some(p) = progress {
            p(pos, size);
        }
    }
    parent.flush()?;
    drop(parent);
    drop(image);

    // Replace the child by an empty one over the parent as it now is.
    let name = child
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", child.display())))?;
    let tmp = crate::open::parent_dir(child).join(format!(
        ".{}.commit-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut create = CreateOptions::differencing(info.format, &parent_path);
    create.block_size = info.block_size;
    create.logical_sector_size = info.logical_sector_size;
    create.physical_sector_size = Some(info.physical_sector_size);
    let fresh = crate::create(&tmp, &create);
    match fresh {
        Ok(img) => {
            img.flush()?;
            drop(img);
            std::fs::rename(&tmp, child).map_err(|e| Error::io("renaming into place", child, e))?;
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(stats)
}
