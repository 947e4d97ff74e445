//! Conversion of any image (a whole differencing chain flattened) into a new
//! image of any format.
//!
//! Sparse-aware: ranges the source reports as zero or unallocated are never
//! read, and chunks that turn out to hold only zeros are not written. A
//! reader thread and the writer overlap through a small ring of buffers, so
//! memory stays bounded (a few chunks) whatever the disk size. The output is
//! written under a temporary name in the destination directory and renamed
//! only once complete and flushed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::ops::{Progress, is_zero};
use crate::{CreateOptions, DiskImage, Error, ImageInfo, Result};

/// Size of one transfer between source and destination.
const CHUNK: usize = 4 << 20;
/// Buffers in flight between the reader and the writer.
const IN_FLIGHT: usize = 4;
/// Granularity at which zero runs inside data are skipped.
const ZERO_GRAIN: usize = 64 << 10;

/// How to convert.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Format and parameters of the output. Its `size` is ignored (the
    /// source's size is used) and it must not be a differencing image.
    pub create: CreateOptions,
}

/// What a conversion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConvertStats {
    /// Virtual size of the disk.
    pub virtual_size: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes written to the destination.
    pub bytes_written: u64,
    /// Bytes skipped because the source reported them as holes or zeros.
    pub bytes_skipped: u64,
}

/// Whether two paths name the same file (same device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn chain_paths(info: &ImageInfo) -> Vec<PathBuf> {
    let mut v = vec![info.path.clone()];
    let mut cur = info.parent.as_deref();
    while let Some(p) = cur {
        v.push(p.path.clone());
        cur = p.parent.as_deref();
    }
    v
}

struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Converts `source` into a new image at `dest`, replacing `dest` only once
/// the new image is complete and durable. Refuses to write onto any file of
/// the source's chain.
pub fn convert(
    source: &dyn DiskImage,
    dest: &Path,
    options: &ConvertOptions,
    progress: Option<Progress>,
) -> Result<ConvertStats> {
    let info = source.info();
    if let Some(p) = chain_paths(&info).iter().find(|p| same_file(p, dest)) {
        return Err(Error::InvalidArgument(format!(
            "refusing to convert onto the input: {} is {}",
            dest.display(),
            p.display()
        )));
    }
    if options.create.parent.is_some() {
        return Err(Error::InvalidArgument(
            "conversion flattens the chain: the output cannot be a differencing image".into(),
        ));
    }
    let mut create = options.create.clone();
    create.size = Some(source.virtual_size());
    write_new_image(dest, &create, |out| copy(source, out, progress))
}

/// Creates a new image at `dest` as [`convert`] does, filled by `fill`:
/// under a temporary name in the same directory, written behind (nothing
/// opens it before its final flush), flushed, and only then renamed into
/// place, the directory flushed after. `dest` therefore never names a
/// partial image; the temporary file is removed if anything fails.
pub fn write_new_image<T, E: From<Error>>(
    dest: &Path,
    create: &CreateOptions,
    fill: impl FnOnce(&dyn DiskImage) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", dest.display())))?;
    let dir = crate::open::parent_dir(dest);
    let tmp = TempFile {
        path: dir.join(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        )),
        keep: false,
    };
    let _ = fs::remove_file(&tmp.path);
    let out = crate::create(&tmp.path, create)?;
    // Nothing opens the temporary file before its final flush and rename:
    // its write-back starts early and clean pages leave the cache.
    out.set_staging(true);
    let done = fill(&out)?;
    out.flush()?;
    drop(out);
    fs::rename(&tmp.path, dest).map_err(|e| Error::io("renaming into place", dest, e))?;
    let mut tmp = tmp;
    tmp.keep = true;
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(&dir) {
        d.sync_all()
            .map_err(|e| Error::io("flushing directory", &dir, e))?;
    }
    Ok(done)
}

/// Copies every non-zero byte of `source` into `dest` (same virtual size,
/// `dest` reading as zeros where nothing is written).
pub(crate) fn copy(
    source: &dyn DiskImage,
    dest: &dyn DiskImage,
    progress: Option<Progress>,
) -> Result<ConvertStats> {
    let size = source.virtual_size();
    if dest.virtual_size() < size {
        return Err(Error::InvalidArgument(format!(
            "destination of {} bytes is smaller than the source's {size}",
            dest.virtual_size()
        )));
    }
    let mut stats = ConvertStats {
        virtual_size: size,
        ..Default::default()
    };
    let (full_tx, full_rx) = mpsc::sync_channel::<(u64, usize, Vec<u8>)>(IN_FLIGHT);
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let _ = free_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|s| -> Result<()> {
        let reader = s.spawn(move || -> Result<(u64, u64)> {
            let (mut read, mut skipped) = (0u64, 0u64);
            let mut pos = 0u64;
            while pos < size {
                let want = (CHUNK as u64).min(size - pos);
                let e = source.block_status(pos, want)?;
                if e.allocation.reads_as_zero() {
                    skipped += e.length;
                    pos += e.length;
                    continue;
                }
                let len = usize::try_from(e.length.min(want)).unwrap_or(CHUNK);
                let Ok(mut buf) = free_rx.recv() else {
                    break; // the writer stopped; it reports why
                };
                source.read_at(&mut buf[..len], pos)?;
                read += len as u64;
                if full_tx.send((pos, len, buf)).is_err() {
                    break;
                }
                pos += len as u64;
            }
            Ok((read, skipped))
        });
        let mut written = 0u64;
        let mut result = Ok(());
        for (pos, len, buf) in full_rx.iter() {
            if result.is_ok() {
                result = write_nonzero(dest, &buf[..len], pos).map(|n| written += n);
                if let Some(p) = progress {
                    p(pos + len as u64, size);
                }
            }
            if result.is_err() {
                break;
            }
            let _ = free_tx.send(buf);
        }
        drop(free_tx);
        drop(full_rx);
        let (read, skipped) = reader
            .join()
            .map_err(|_| Error::InvalidArgument("the reader thread panicked".into()))??;
        result?;
        stats.bytes_read = read;
        stats.bytes_skipped = skipped;
        stats.bytes_written = written;
        Ok(())
    })?;
    if let Some(p) = progress {
        p(size, size);
    }
    Ok(stats)
}

/// Writes the non-zero runs of `buf` at `pos`; returns the bytes written.
fn write_nonzero(dest: &dyn DiskImage, buf: &[u8], pos: u64) -> Result<u64> {
    let mut written = 0;
    let mut start = None;
    let mut i = 0;
    while i < buf.len() {
        let end = (i + ZERO_GRAIN).min(buf.len());
        let zero = is_zero(&buf[i..end]);
        match (zero, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                dest.write_at(&buf[s..i], pos + s as u64)?;
                written += (i - s) as u64;
                start = None;
            }
            _ => {}
        }
        i = end;
    }
    if let Some(s) = start {
        dest.write_at(&buf[s..], pos + s as u64)?;
        written += (buf.len() - s) as u64;
    }
    Ok(written)
}
