//! The identity of a differencing disk's parent.
//!
//! A differencing VHD records its parent's unique id and time stamp. What is
//! compared depends on the parent's format:
//! - VHD parent: the footer's unique id must equal the recorded id. A
//!   recorded time stamp of 0 (what Windows 10 writes) is not checked;
//!   otherwise it must equal the parent footer's time stamp (what this crate
//!   writes) or the parent file's modification time (what some Windows tools
//!   write).
//! - VHDX parent: the recorded id must equal the parent's DataWriteGuid
//!   (which changes when the parent's data does), as a VHDX child's
//!   parent_linkage does.
//! - raw parent: a raw file has no identity; nothing is compared (the
//!   recorded id is nil).

use std::path::Path;

use uuid::Uuid;

use super::footer::{self, vhd_time};
use super::header::DynamicHeader;
use crate::{DiskImage, Error, Image, Result};

/// The parent file's modification time as a VHD time stamp.
fn mtime(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(vhd_time)
}

/// Checks that `parent` is the disk `header` (of `child`) refers to.
pub fn check_identity(child: &Path, header: &DynamicHeader, parent: &Image) -> Result<()> {
    let info = parent.info();
    let mismatch = |reason: String| Error::ParentMismatch {
        child: child.to_path_buf(),
        parent: info.path.clone(),
        reason,
    };
    let want = Uuid::from_bytes(header.parent_uuid);
    match parent {
        Image::Vhd(p) => {
            if p.uuid() != want {
                return Err(mismatch(format!(
                    "the child records parent id {want}, the parent's id is {}",
                    p.uuid()
                )));
            }
            let ts = header.parent_timestamp;
            if ts != 0 && ts != p.timestamp() && Some(ts) != mtime(&info.path) {
                return Err(mismatch(format!(
                    "the child records parent time stamp {ts} ({:?}), the parent's is {}",
                    footer::to_system_time(ts),
                    p.timestamp()
                )));
            }
            Ok(())
        }
        Image::Vhdx(v) => {
            let have = v.data_write_guid();
            if have == want {
                Ok(())
            } else {
                Err(mismatch(format!(
                    "the child records parent id {want}, the parent's data write guid is {have}"
                )))
            }
        }
        Image::Raw(_) => Ok(()),
    }
}

/// The id and time stamp to record for `parent` in a new child.
pub fn identity_of(parent: &Image, path: &Path) -> ([u8; 16], u32) {
    match parent {
        Image::Vhd(p) => (*p.uuid().as_bytes(), p.timestamp()),
        Image::Vhdx(v) => (*v.data_write_guid().as_bytes(), mtime(path).unwrap_or(0)),
        Image::Raw(_) => ([0; 16], mtime(path).unwrap_or(0)),
    }
}
