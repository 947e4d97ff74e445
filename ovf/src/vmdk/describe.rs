//! A streamOptimized VMDK file described from its header (or footer),
//! embedded descriptor and grain tables, read with random access, without
//! inflating a grain; and checked, by describing it and reading every grain.
//!
//! Every read is bounded by the file's length, whatever the header claims.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{Result, VmdkError};
use super::header::{
    GD_AT_END, GTE_ZEROED, GTES_PER_GT, MAGIC, MAX_DESCRIPTOR_SECTORS, RawHeader, SECTOR,
    StreamHeader,
};
use super::reader::{MARKER_EOS, MARKER_FOOTER, StreamReader};

/// What [`describe_vmdk_file`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmdkInfo {
    /// The file.
    pub path: PathBuf,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Capacity of the disk in bytes.
    pub virtual_size: u64,
    /// Sparse extent format version (1 to 3).
    pub version: u32,
    /// Grain size in bytes.
    pub grain_size: u64,
    /// The descriptor's `createType`, when present.
    pub create_type: Option<String>,
    /// The descriptor's content identifier (`CID`), when present.
    pub cid: Option<String>,
    /// The descriptor's `parentCID`, when present (`ffffffff`: no parent).
    pub parent_cid: Option<String>,
    /// Whether the grain directory comes in a footer at the end (the
    /// layout VMware writes) rather than reserved up front (qemu-img's).
    pub tables_at_end: bool,
    /// Bytes of the disk in grains the tables reference.
    pub allocated_bytes: u64,
    /// Bytes of the disk in grains the tables mark zeroed.
    pub zeroed_bytes: u64,
    /// Bytes of the disk no grain holds (they read as zeros).
    pub unallocated_bytes: u64,
}

fn io_err(offset: u64) -> impl Fn(std::io::Error) -> VmdkError {
    move |source| VmdkError::Io {
        op: "reading",
        offset,
        source,
    }
}

/// Reads `buf.len()` bytes at `at`, or reports `what` as truncated when the
/// file ends first.
fn read_in(file: &File, len: u64, buf: &mut [u8], at: u64, what: &'static str) -> Result<()> {
    if at.saturating_add(buf.len() as u64) > len {
        return Err(VmdkError::Truncated { what, offset: at });
    }
    file.read_exact_at(buf, at).map_err(io_err(at))
}

/// Calls `f(grain index, entry)` for every non-zero grain-table entry of
/// the grain directory at sector `gd_offset`, in grain order.
fn for_each_grain_entry(
    file: &File,
    len: u64,
    h: &StreamHeader,
    gd_offset: u64,
    mut f: impl FnMut(u64, u32) -> Result<()>,
) -> Result<()> {
    let gd_at = gd_offset.saturating_mul(SECTOR);
    let grains = h.grain_count();
    let tables = grains.div_ceil(u64::from(GTES_PER_GT));
    let mut entry = [0u8; 4];
    let mut table = vec![0u8; GTES_PER_GT as usize * 4];
    for t in 0..tables {
        read_in(
            file,
            len,
            &mut entry,
            gd_at.saturating_add(t * 4),
            "grain directory",
        )?;
        let gt = u64::from(u32::from_le_bytes(entry));
        if gt == 0 {
            continue;
        }
        read_in(
            file,
            len,
            &mut table,
            gt.saturating_mul(SECTOR),
            "grain table",
        )?;
        for (i, e) in table.chunks_exact(4).enumerate() {
            let index = t * u64::from(GTES_PER_GT) + i as u64;
            let value = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            if value != 0 && index < grains {
                f(index, value)?;
            }
        }
    }
    Ok(())
}

/// The header that locates the grain directory: the one at the start, or,
/// when that says the directory is in the footer, the footer's (checked to
/// sit between a footer marker and the end-of-stream marker at the end).
fn directory_header(file: &File, len: u64, h: StreamHeader) -> Result<StreamHeader> {
    if h.gd_offset != GD_AT_END {
        return Ok(h);
    }
    let missing = || VmdkError::Truncated {
        what: "stream ends without its footer and end-of-stream marker",
        offset: len,
    };
    let at = len.checked_sub(3 * SECTOR).ok_or_else(missing)?;
    let mut tail = [0u8; 1536];
    read_in(file, len, &mut tail, at, "footer")?;
    let marker_type = |s: &[u8]| u32::from_le_bytes([s[12], s[13], s[14], s[15]]);
    let marker_size = |s: &[u8]| u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let (marker, rest) = tail.split_at(512);
    let (footer, eos) = rest.split_at(512);
    if marker_size(marker) != 0
        || marker_type(marker) != MARKER_FOOTER
        || marker_size(eos) != 0
        || marker_type(eos) != MARKER_EOS
    {
        return Err(missing());
    }
    let mut sector = [0u8; 512];
    sector.copy_from_slice(footer);
    let f = StreamHeader::validate(&RawHeader::decode(&sector), at + SECTOR)?;
    if f.gd_offset == GD_AT_END || f.capacity_sectors != h.capacity_sectors {
        return Err(VmdkError::corrupt(
            "footer",
            at + SECTOR,
            "no grain directory offset, or a capacity other than the header's",
        ));
    }
    Ok(f)
}

/// The value of `key = value` or `key="value"` in a descriptor.
fn descriptor_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Whether the file at `path` starts with the magic of a VMDK sparse extent
/// (`KDMV`): streamOptimized, which this module reads, or another sparse
/// kind, which it refuses by name.
pub fn is_sparse_extent(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && u32::from_le_bytes(magic) == MAGIC
}

/// Describes the streamOptimized VMDK file at `path`.
pub fn describe_vmdk_file(path: &Path) -> Result<VmdkInfo> {
    let file = File::open(path).map_err(|source| VmdkError::Io {
        op: "opening",
        offset: 0,
        source,
    })?;
    let len = file.metadata().map_err(io_err(0))?.len();
    let mut sector = [0u8; 512];
    read_in(&file, len, &mut sector, 0, "header")?;
    let h = StreamHeader::validate(&RawHeader::decode(&sector), 0)?;
    let mut descriptor = String::new();
    if h.descriptor_size > 0 {
        let size = h.descriptor_size.min(MAX_DESCRIPTOR_SECTORS) * SECTOR;
        let mut buf = vec![0u8; usize::try_from(size.min(len)).unwrap_or(0)];
        read_in(
            &file,
            len,
            &mut buf,
            h.descriptor_offset * SECTOR,
            "descriptor",
        )?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        descriptor = String::from_utf8_lossy(&buf[..end]).into_owned();
    }
    let d = directory_header(&file, len, h)?;
    let (grain, capacity) = (h.grain_bytes(), h.capacity_bytes());
    let (mut allocated, mut zeroed) = (0u64, 0u64);
    for_each_grain_entry(&file, len, &h, d.gd_offset, |index, value| {
        let start = index * grain;
        let bytes = grain.min(capacity - start);
        if value == GTE_ZEROED && d.zeroed_grain_gtes {
            zeroed += bytes;
        } else if u64::from(value).saturating_mul(SECTOR) >= len {
            return Err(VmdkError::Truncated {
                what: "stream ends before a grain its grain table references",
                offset: u64::from(value) * SECTOR,
            });
        } else {
            allocated += bytes;
        }
        Ok(())
    })?;
    Ok(VmdkInfo {
        path: path.to_path_buf(),
        file_size: len,
        virtual_size: capacity,
        version: h.version,
        grain_size: grain,
        create_type: descriptor_value(&descriptor, "createType"),
        cid: descriptor_value(&descriptor, "CID"),
        parent_cid: descriptor_value(&descriptor, "parentCID"),
        tables_at_end: h.gd_offset == GD_AT_END,
        allocated_bytes: allocated,
        zeroed_bytes: zeroed,
        unallocated_bytes: capacity - allocated - zeroed,
    })
}

/// What [`check_vmdk_file`] found.
#[derive(Debug)]
pub struct VmdkCheck {
    /// The description, when the tables could be read.
    pub info: Option<VmdkInfo>,
    /// Grains read and inflated before the end or the first error.
    pub grains: u64,
    /// The first structural problem: a corrupt structure, a grain that
    /// does not inflate, or a file cut short.
    pub problem: Option<VmdkError>,
}

impl VmdkError {
    /// Whether this is a fault of the file's structure (corrupt, cut
    /// short, a grain that does not inflate), rather than a failure to read
    /// it or a feature not supported.
    pub fn is_structural(&self) -> bool {
        matches!(
            self,
            VmdkError::Corrupt { .. } | VmdkError::Truncated { .. } | VmdkError::Inflate { .. }
        )
    }

    /// The byte offset in the file the error concerns, when it names one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            VmdkError::Io { offset, .. }
            | VmdkError::Truncated { offset, .. }
            | VmdkError::Corrupt { offset, .. }
            | VmdkError::Inflate { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// Checks the streamOptimized VMDK file at `path`: its tables (as
/// [`describe_vmdk_file`] reads them), then every marker and grain of the
/// stream, each grain inflated. Structural problems are reported in the
/// result; an error means the check could not run (the file cannot be
/// read, or uses a feature not supported).
pub fn check_vmdk_file(path: &Path) -> Result<VmdkCheck> {
    let info = match describe_vmdk_file(path) {
        Ok(i) => Some(i),
        Err(e) if e.is_structural() => {
            return Ok(VmdkCheck {
                info: None,
                grains: 0,
                problem: Some(e),
            });
        }
        Err(e) => return Err(e),
    };
    let file = File::open(path).map_err(io_err(0))?;
    let mut grains = 0;
    let problem = match StreamReader::new(std::io::BufReader::with_capacity(1 << 20, file)) {
        Ok(mut stream) => loop {
            match stream.next_grain() {
                Ok(Some(_)) => grains += 1,
                Ok(None) => break None,
                Err(e) if e.is_structural() => break Some(e),
                Err(e) => return Err(e),
            }
        },
        Err(e) if e.is_structural() => Some(e),
        Err(e) => return Err(e),
    };
    Ok(VmdkCheck {
        info,
        grains,
        problem,
    })
}
