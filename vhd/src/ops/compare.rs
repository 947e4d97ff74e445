//! Content comparison of two images.

use serde::Serialize;

use crate::{DiskImage, Result};

/// Where two images first differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Difference {
    /// The virtual sizes differ (content up to the smaller size is equal).
    Size {
        /// Size of the first image.
        a: u64,
        /// Size of the second image.
        b: u64,
    },
    /// The bytes at `offset` differ.
    Content {
        /// First differing byte.
        offset: u64,
    },
}

const CHUNK: usize = 1 << 20;

/// Compares the content of two images and returns the first difference, or
/// `None` when they read identically. Ranges both images report as zero are
/// not read.
pub fn compare(a: &dyn DiskImage, b: &dyn DiskImage) -> Result<Option<Difference>> {
    let common = a.virtual_size().min(b.virtual_size());
    let mut ba = vec![0u8; CHUNK];
    let mut bb = vec![0u8; CHUNK];
    let mut pos = 0;
    while pos < common {
        let len = (CHUNK as u64).min(common - pos);
        let ea = a.block_status(pos, len)?;
        let eb = b.block_status(pos, len)?;
        if ea.allocation.reads_as_zero() && eb.allocation.reads_as_zero() {
            pos += ea.length.min(eb.length);
            continue;
        }
        let n = usize::try_from(len).unwrap_or(ba.len());
        a.read_at(&mut ba[..n], pos)?;
        b.read_at(&mut bb[..n], pos)?;
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Ok(Some(Difference::Content {
                offset: pos + i as u64,
            }));
        }
        pos += len;
    }
    // Content past the smaller size must be zero in the larger image for the
    // two to be "equal" as disks; otherwise report the sizes.
    if a.virtual_size() != b.virtual_size() {
        return Ok(Some(Difference::Size {
            a: a.virtual_size(),
            b: b.virtual_size(),
        }));
    }
    Ok(None)
}
