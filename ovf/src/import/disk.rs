//! Converting one package file into a disk image in the output directory,
//! straight from the stream: streamOptimized VMDK grain by grain; VHD,
//! VHDX and raw through a read-only window of the package file (random
//! access, no extraction); compressed or chunked raw data streamed.
//!
//! A delta disk's file is written over its parent's image (see
//! [`Target`]): a VMDK delta defines its grains (data or zeros) and the
//! grains its tables mark zeroed, and leaves its holes to the parent; any
//! other file (raw, VHD, VHDX) defines every byte it holds.

use std::io::{self, Read};
use std::ops::Range;
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;
use vhd::ops::ConvertOptions;
use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

use super::child::{Target, copy_data, disk_err};
use super::{ImportError, Result};
use crate::vmdk::{self, CopyOptions, RawHeader, StreamHeader};

/// What the content of a package file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// streamOptimized VMDK.
    #[serde(rename = "vmdk-streamOptimized")]
    VmdkStreamOptimized,
    /// VHD (fixed, dynamic).
    Vhd,
    /// VHDX.
    Vhdx,
    /// Raw bytes.
    Raw,
    /// An ISO 9660 image, kept as it is.
    Iso,
}

/// The result of converting one file.
#[derive(Debug, Clone)]
pub(crate) struct Converted {
    pub format: SourceFormat,
    pub virtual_size: u64,
    pub bytes_written: u64,
    pub gzip: bool,
    /// The byte ranges the file defines, sorted: in a delta disk these
    /// override the parent, everything else comes from it.
    pub covered: Vec<Range<u64>>,
}

/// The one range `0..len`: what a file that is not a VMDK delta defines.
fn whole(len: u64) -> Vec<Range<u64>> {
    std::iter::once(0..len).collect()
}

/// Where a file's bytes can be read with random access.
pub(crate) struct Location {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn io_err(href: &str, e: io::Error) -> ImportError {
    ImportError::Read {
        href: href.to_string(),
        source: e,
    }
}

/// Converts the file whose content `input` yields into a new image at
/// `target`. `window` is where the same bytes can be read with random
/// access when the file is stored plainly; `iso` keeps the bytes as they
/// are.
pub(crate) fn convert_file(
    href: &str,
    mut input: impl Read,
    window: Option<Location>,
    iso: bool,
    target: &Target<'_>,
) -> Result<Converted> {
    let mut head = [0u8; 512];
    let n = read_full(&mut input, &mut head[..]).map_err(|e| io_err(href, e))?;
    let gzip = n >= 2 && head[..2] == [0x1f, 0x8b];
    if gzip {
        let chained = io::Cursor::new(head[..n].to_vec()).chain(input);
        let mut inner = MultiGzDecoder::new(chained);
        let mut head = [0u8; 512];
        let n = read_full(&mut inner, &mut head[..]).map_err(|e| io_err(href, e))?;
        let body = io::Cursor::new(head[..n].to_vec()).chain(inner);
        return convert_plain(href, &head[..n], body, None, iso, target)
            .map(|c| Converted { gzip: true, ..c });
    }
    let body = io::Cursor::new(head[..n].to_vec()).chain(input);
    convert_plain(href, &head[..n], body, window, iso, target)
}

fn convert_plain(
    href: &str,
    head: &[u8],
    mut body: impl Read,
    window: Option<Location>,
    iso: bool,
    target: &Target<'_>,
) -> Result<Converted> {
    if iso {
        let mut out = std::fs::File::create(target.dest).map_err(|e| io_err(href, e))?;
        let n = io::copy(&mut body, &mut out).map_err(|e| io_err(href, e))?;
        out.sync_all().map_err(|e| io_err(href, e))?;
        return Ok(Converted {
            format: SourceFormat::Iso,
            virtual_size: n,
            bytes_written: n,
            gzip: false,
            covered: whole(n),
        });
    }
    if head.len() >= 4 && head[..4] == vmdk::MAGIC.to_le_bytes() {
        return convert_vmdk(href, head, body, target);
    }
    match window {
        Some(w) => convert_window(href, &w, target),
        None => convert_stream(href, body, target),
    }
}

fn convert_vmdk(
    href: &str,
    head: &[u8],
    body: impl Read,
    target: &Target<'_>,
) -> Result<Converted> {
    let mut sector = [0u8; 512];
    sector[..head.len()].copy_from_slice(head);
    let header =
        StreamHeader::validate(&RawHeader::decode(&sector), 0).map_err(|e| ImportError::Vmdk {
            href: href.to_string(),
            source: e,
        })?;
    let size = header.capacity_bytes();
    let out = target.create(href, size, 0, None)?;
    // Over a parent, holes are the parent's and zeros must hide it.
    let copied = if target.parent.is_some() {
        vmdk::copy_vmdk_delta_to(body, &out, true)
    } else {
        vmdk::copy_vmdk_stream_covering(body, &out, &CopyOptions::default())
    };
    let (stats, covered) = copied.map_err(|e| ImportError::Vmdk {
        href: href.to_string(),
        source: e,
    })?;
    Ok(Converted {
        format: SourceFormat::VmdkStreamOptimized,
        virtual_size: out.virtual_size(),
        bytes_written: stats.data_bytes,
        gzip: false,
        covered,
    })
}

fn convert_window(href: &str, w: &Location, target: &Target<'_>) -> Result<Converted> {
    let options = OpenOptions {
        read_only: true,
        // A disk inside a package has no business naming files outside it.
        allowed_parent_dirs: Some(Vec::new()),
        ..OpenOptions::default()
    };
    let source =
        vhd::open_window(&w.path, w.offset, w.len, &options).map_err(|e| disk_err(href, e))?;
    let found = match source.format() {
        Format::Raw => SourceFormat::Raw,
        Format::Vhd => SourceFormat::Vhd,
        Format::Vhdx => SourceFormat::Vhdx,
    };
    let size = source.virtual_size();
    if target.parent.is_some() {
        // A delta disk that is not VMDK defines every byte it holds.
        let out = target.create(href, size, size, Some(source.physical_sector_size()))?;
        let written = copy_data(href, &source, &out, 0..size, true)?;
        out.flush().map_err(|e| disk_err(href, e))?;
        return Ok(Converted {
            format: found,
            virtual_size: out.virtual_size(),
            bytes_written: written,
            gzip: false,
            covered: whole(size),
        });
    }
    let format = target.format;
    let dest = target.dest;
    let mut create = CreateOptions::new(format, ImageType::Dynamic, 0);
    if format == Format::Vhdx {
        create.logical_sector_size = source.logical_sector_size();
        create.physical_sector_size = Some(source.physical_sector_size().max(4096));
    }
    let stats = vhd::ops::convert(&source, dest, &ConvertOptions { create }, None)
        .map_err(|e| disk_err(href, e))?;
    Ok(Converted {
        format: found,
        virtual_size: stats.virtual_size,
        bytes_written: stats.bytes_written,
        gzip: false,
        covered: whole(size),
    })
}

/// Streams raw data (possibly a fixed VHD: data followed by a 512-byte
/// footer, recognised at the end) into an image of the descriptor's
/// capacity.
fn convert_stream(href: &str, mut body: impl Read, target: &Target<'_>) -> Result<Converted> {
    let Some(capacity) = target.capacity else {
        return Err(ImportError::Unsupported(format!(
            "{href} is compressed or chunked raw data that comes before the descriptor: \
             its size is not known while streaming"
        )));
    };
    // The data's length is known only at its end: over a parent, all of
    // the parent is copied (raw) and the data laid over it.
    let out = target.create(href, capacity, 0, None)?;
    let over = target.parent.is_some();
    const CHUNK: usize = 1 << 20;
    // The last 512 bytes seen are held back: they may be a VHD footer.
    let mut buf = vec![0u8; CHUNK + 512];
    let mut held = 0usize;
    let mut pos = 0u64;
    let mut written = 0u64;
    loop {
        let n = read_full(&mut body, &mut buf[held..]).map_err(|e| io_err(href, e))?;
        let total = held + n;
        if n == 0 {
            break;
        }
        let emit = total.saturating_sub(512);
        write_data(href, &out, &buf[..emit], pos, capacity, over, &mut written)?;
        pos += emit as u64;
        buf.copy_within(emit..total, 0);
        held = total - emit;
    }
    let tail = &buf[..held];
    let footer = held == 512 && tail[..8] == *b"conectix";
    if !footer {
        write_data(href, &out, tail, pos, capacity, over, &mut written)?;
        pos += tail.len() as u64;
    }
    out.flush().map_err(|e| disk_err(href, e))?;
    Ok(Converted {
        format: if footer {
            SourceFormat::Vhd
        } else {
            SourceFormat::Raw
        },
        virtual_size: out.virtual_size(),
        bytes_written: written,
        gzip: false,
        covered: whole(pos),
    })
}

fn write_data(
    href: &str,
    out: &vhd::Image,
    data: &[u8],
    pos: u64,
    capacity: u64,
    over: bool,
    written: &mut u64,
) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if pos
        .checked_add(data.len() as u64)
        .is_none_or(|end| end > capacity)
    {
        return Err(ImportError::Unsupported(format!(
            "{href} holds more data than the {capacity}-byte capacity the descriptor gives"
        )));
    }
    for (i, run) in data.chunks(64 << 10).enumerate() {
        let at = pos + (i * (64 << 10)) as u64;
        if !vhd::ops::is_zero(run) {
            out.write_at(run, at).map_err(|e| disk_err(href, e))?;
            *written += run.len() as u64;
        } else if over {
            // Zeros hide the parent's data.
            out.write_zeroes(at, run.len() as u64)
                .map_err(|e| disk_err(href, e))?;
        }
    }
    Ok(())
}
