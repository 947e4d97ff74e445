//! Converting a streamOptimized VMDK stream into any [`vhd::DiskImage`],
//! and writing one from a disk image.

use std::io::{BufReader, Read, Write};
use std::ops::Range;
use std::path::Path;

use vhd::{CreateOptions, DiskImage};

use super::error::{Result, VmdkError};
use super::reader::StreamReader;
use super::writer::{StreamWriter, WriterOptions};

/// Largest write issued to the target.
const RUN_LIMIT: usize = 4 << 20;

/// Options of [`copy_vmdk_stream_to`].
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// The target reads as zeros everywhere (a newly created image): holes
    /// and all-zero grains are then not written at all. Otherwise holes
    /// and zero grains are written with `write_zeroes`.
    pub target_is_zeroed: bool,
    /// Flush the target at the end.
    pub flush: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            target_is_zeroed: true,
            flush: true,
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Capacity of the VMDK in bytes.
    pub capacity: u64,
    /// Grains found in the stream.
    pub grains: u64,
    /// Grains that held only zeros.
    pub zero_grains: u64,
    /// Bytes written to the target as data.
    pub data_bytes: u64,
    /// Bytes of the disk never written in the stream (holes).
    pub hole_bytes: u64,
    /// Bytes of grains the grain tables mark zeroed (the header's
    /// zeroed-grain flag), counted among the holes.
    pub zeroed_entry_bytes: u64,
    /// Compressed bytes read.
    pub compressed_bytes: u64,
}

/// Reads a streamOptimized VMDK from `reader` in one pass and writes its
/// data into `target`, which must be at least as large as the VMDK's
/// capacity.
pub fn copy_vmdk_stream_to(
    reader: impl Read,
    target: &dyn DiskImage,
    options: &CopyOptions,
) -> Result<CopyStats> {
    copy(reader, target, options, false, None)
}

/// Like [`copy_vmdk_stream_to`], and also returns the byte ranges the
/// stream defines, sorted and merged: its grains (data or zeros) and the
/// grains its tables mark zeroed. In a delta disk these override the
/// parent; everything else comes from it.
pub fn copy_vmdk_stream_covering(
    reader: impl Read,
    target: &dyn DiskImage,
    options: &CopyOptions,
) -> Result<(CopyStats, Vec<Range<u64>>)> {
    let mut covered = Vec::new();
    let stats = copy(reader, target, options, false, Some(&mut covered))?;
    Ok((stats, covered))
}

/// Copies a delta VMDK (a child disk's stream) onto `target`, which shows
/// the child's parent (a differencing image over the parent's image, or a
/// copy of it): holes (grains the stream does not hold) are left alone, so
/// the parent's data shows there, while all-zero grains and the grains the
/// grain tables mark zeroed are written as zeros. Returns what
/// [`copy_vmdk_stream_covering`] does.
pub fn copy_vmdk_delta_to(
    reader: impl Read,
    target: &dyn DiskImage,
    flush: bool,
) -> Result<(CopyStats, Vec<Range<u64>>)> {
    let options = CopyOptions {
        target_is_zeroed: false,
        flush,
    };
    let mut covered = Vec::new();
    let stats = copy(reader, target, &options, true, Some(&mut covered))?;
    Ok((stats, covered))
}

/// Converts the streamOptimized VMDK file at `source` into a new image at
/// `dest` (format and parameters from `create`; its size is the VMDK's
/// capacity), the way [`vhd::ops::convert`] converts the formats `vhd`
/// reads: one sequential pass, holes and all-zero grains never written, the
/// output created under a temporary name and renamed into place only once
/// complete and flushed. `progress` is told the bytes of the file consumed
/// and its length. Refuses to write onto the source.
pub fn convert_vmdk_file(
    source: &Path,
    dest: &Path,
    create: &CreateOptions,
    progress: Option<&dyn Fn(u64, u64)>,
) -> Result<CopyStats> {
    if vhd::ops::same_file(source, dest) {
        return Err(VmdkError::InvalidArgument(format!(
            "refusing to convert onto the input: {} is {}",
            dest.display(),
            source.display()
        )));
    }
    if create.parent.is_some() {
        return Err(VmdkError::InvalidArgument(
            "the output of a conversion cannot be a differencing image".into(),
        ));
    }
    let file = std::fs::File::open(source).map_err(|e| VmdkError::Io {
        op: "opening",
        offset: 0,
        source: e,
    })?;
    let len = file.metadata().map_or(0, |m| m.len());
    let stream = StreamReader::new(Counted {
        inner: BufReader::with_capacity(1 << 20, file),
        done: 0,
        len,
        progress,
    })?;
    let mut create = create.clone();
    create.size = Some(stream.capacity());
    let options = CopyOptions {
        target_is_zeroed: true,
        flush: false,
    };
    vhd::ops::write_new_image(dest, &create, |out| {
        copy_stream(stream, out, &options, false, None)
    })
}

/// Compares the disk in the streamOptimized VMDK file at `vmdk` with
/// `other`, in one pass over the stream, and returns the first difference
/// as [`vhd::ops::compare`] does (`Size { a, b }` has the VMDK's size as
/// `a`): grains are compared byte for byte, and between them `other` must
/// read as zeros (ranges it reports as zero are not read).
pub fn compare_vmdk_file(
    vmdk: &Path,
    other: &dyn DiskImage,
) -> Result<Option<vhd::ops::Difference>> {
    use vhd::ops::Difference;
    let file = std::fs::File::open(vmdk).map_err(|source| VmdkError::Io {
        op: "opening",
        offset: 0,
        source,
    })?;
    let mut stream = StreamReader::new(BufReader::with_capacity(1 << 20, file))?;
    let capacity = stream.capacity();
    let common = capacity.min(other.virtual_size());
    // A grain (at most 8 MiB, as the header is validated) fits.
    let grain_bytes = usize::try_from(stream.header().grain_bytes()).unwrap_or(RUN_LIMIT);
    let mut buf = vec![0u8; RUN_LIMIT.max(grain_bytes)];
    let mut pos = 0u64;
    while let Some(grain) = stream.next_grain()? {
        if let Some(at) = first_nonzero(other, pos, grain.offset.min(common), &mut buf)? {
            return Ok(Some(Difference::Content { offset: at }));
        }
        let end = (grain.offset + grain.data.len() as u64).min(common);
        if grain.offset < end {
            let n = usize::try_from(end - grain.offset).unwrap_or(0);
            let theirs = &mut buf[..n];
            other.read_at(theirs, grain.offset)?;
            if let Some(i) = grain.data[..n]
                .iter()
                .zip(theirs.iter())
                .position(|(x, y)| x != y)
            {
                return Ok(Some(Difference::Content {
                    offset: grain.offset + i as u64,
                }));
            }
        }
        pos = grain.offset + grain.data.len() as u64;
    }
    if let Some(at) = first_nonzero(other, pos.min(common), common, &mut buf)? {
        return Ok(Some(Difference::Content { offset: at }));
    }
    if capacity != other.virtual_size() {
        return Ok(Some(Difference::Size {
            a: capacity,
            b: other.virtual_size(),
        }));
    }
    Ok(None)
}

/// The first byte of `image` in `from..to` that is not zero.
fn first_nonzero(image: &dyn DiskImage, from: u64, to: u64, buf: &mut [u8]) -> Result<Option<u64>> {
    let mut pos = from;
    while pos < to {
        let len = (buf.len() as u64).min(to - pos);
        let e = image.block_status(pos, len)?;
        if e.allocation.reads_as_zero() {
            pos += e.length.clamp(1, len);
            continue;
        }
        let n = usize::try_from(e.length.clamp(1, len)).unwrap_or(buf.len());
        image.read_at(&mut buf[..n], pos)?;
        if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
            return Ok(Some(pos + i as u64));
        }
        pos += n as u64;
    }
    Ok(None)
}

/// A reader that reports how far it has read.
struct Counted<'a, R> {
    inner: R,
    done: u64,
    len: u64,
    progress: Option<&'a dyn Fn(u64, u64)>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.done >> 22;
        self.done += n as u64;
        // Every 4 MiB, and at the end.
        if let Some(p) = self.progress
            && (self.done >> 22 != before || n == 0)
        {
            p(self.done, self.len);
        }
        Ok(n)
    }
}

/// Appends `r` to sorted, merged `ranges` (`r` starts at or after the last).
fn push_range(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    match ranges.last_mut() {
        Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
        _ => ranges.push(r),
    }
}

fn copy(
    reader: impl Read,
    target: &dyn DiskImage,
    options: &CopyOptions,
    keep_holes: bool,
    covered_out: Option<&mut Vec<Range<u64>>>,
) -> Result<CopyStats> {
    copy_stream(
        StreamReader::new(reader)?,
        target,
        options,
        keep_holes,
        covered_out,
    )
}

/// [`copy`] from a stream whose header has been read.
fn copy_stream<R: Read>(
    mut stream: StreamReader<R>,
    target: &dyn DiskImage,
    options: &CopyOptions,
    keep_holes: bool,
    mut covered_out: Option<&mut Vec<Range<u64>>>,
) -> Result<CopyStats> {
    let capacity = stream.capacity();
    if target.virtual_size() < capacity {
        return Err(VmdkError::Target(vhd::Error::InvalidArgument(format!(
            "target of {} bytes is smaller than the vmdk capacity of {capacity} bytes",
            target.virtual_size()
        ))));
    }
    let mut stats = CopyStats {
        capacity,
        ..Default::default()
    };
    let mut covered = 0u64;
    let zeroed = options.target_is_zeroed;
    let fill_gap = |from: u64, to: u64, stats: &mut CopyStats| -> Result<()> {
        if to > from {
            stats.hole_bytes += to - from;
            if !zeroed && !keep_holes {
                target
                    .write_zeroes(from, to - from)
                    .map_err(VmdkError::Target)?;
            }
        }
        Ok(())
    };
    // Consecutive data grains are gathered into one write of up to
    // `RUN_LIMIT` bytes.
    let mut run: Vec<u8> = Vec::with_capacity(RUN_LIMIT);
    let mut run_start = 0u64;
    let flush_run = |run: &mut Vec<u8>, start: u64| -> Result<()> {
        if !run.is_empty() {
            target.write_at(run, start).map_err(VmdkError::Target)?;
            run.clear();
        }
        Ok(())
    };
    while let Some(grain) = stream.next_grain()? {
        fill_gap(covered, grain.offset, &mut stats)?;
        let len = grain.data.len() as u64;
        stats.grains += 1;
        if let Some(c) = covered_out.as_deref_mut() {
            push_range(c, grain.offset..grain.offset + len);
        }
        if grain.data.iter().all(|&b| b == 0) {
            stats.zero_grains += 1;
            flush_run(&mut run, run_start)?;
            if !zeroed {
                target
                    .write_zeroes(grain.offset, len)
                    .map_err(VmdkError::Target)?;
            }
        } else {
            let contiguous = run_start + run.len() as u64 == grain.offset;
            if !contiguous || run.len() + grain.data.len() > RUN_LIMIT {
                flush_run(&mut run, run_start)?;
            }
            if run.is_empty() {
                run_start = grain.offset;
            }
            run.extend_from_slice(grain.data);
            stats.data_bytes += len;
        }
        covered = grain.offset + len;
    }
    flush_run(&mut run, run_start)?;
    fill_gap(covered, capacity, &mut stats)?;
    // Grains marked zeroed are holes to the loop above; where holes keep
    // what the target shows, they still have to read as zeros.
    let zeroed_ranges = stream.zeroed_grains();
    for r in zeroed_ranges {
        stats.zeroed_entry_bytes += r.end - r.start;
        if keep_holes && !zeroed {
            target
                .write_zeroes(r.start, r.end - r.start)
                .map_err(VmdkError::Target)?;
        }
    }
    if let Some(c) = covered_out {
        let mut all = std::mem::take(c);
        all.extend(zeroed_ranges.iter().cloned());
        all.sort_by_key(|r| r.start);
        for r in all {
            push_range(c, r);
        }
    }
    stats.compressed_bytes = stream.compressed_bytes();
    if options.flush {
        target.flush().map_err(VmdkError::Target)?;
    }
    Ok(stats)
}

/// Writes `source` as a streamOptimized VMDK to `out`, skipping ranges the
/// image reports as unallocated or zero and grains that hold only zeros.
/// The source size must be a multiple of 512.
pub fn write_vmdk_stream_from<W: Write>(
    source: &dyn DiskImage,
    out: W,
    options: WriterOptions,
) -> Result<W> {
    let size = source.virtual_size();
    let mut w = StreamWriter::new(out, size, options)?;
    let g = w.grain_size();
    let mut buf = vec![0u8; usize::try_from(g).unwrap_or(0)];
    let mut offset = 0u64;
    while offset < size {
        let len = g.min(size - offset);
        let extent = source
            .block_status(offset, len)
            .map_err(VmdkError::Target)?;
        if extent.allocation.reads_as_zero() && extent.length >= len {
            offset += len;
            continue;
        }
        let chunk = &mut buf[..usize::try_from(len).unwrap_or(0)];
        source.read_at(chunk, offset).map_err(VmdkError::Target)?;
        if chunk.iter().any(|&b| b != 0) {
            w.write_grain(offset, chunk)?;
        }
        offset += len;
    }
    w.finish()
}
