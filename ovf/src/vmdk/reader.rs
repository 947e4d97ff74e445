//! A one-pass, forward-only reader of streamOptimized VMDK.
//!
//! The stream is read from a `Read` without seeking (it may be inside a tar
//! or a gzip stream): header, embedded descriptor, then markers until the
//! end-of-stream marker. Grains carry their own LBA, so the grain tables and
//! directory are not needed to place data, whether they come at the end
//! with a footer (`gdOffset` all ones) or were reserved in the overhead.
//! They are read when the header's zeroed-grain flag is set, to find the
//! grains whose table entry of 1 marks them zeroed (see
//! [`StreamReader::zeroed_grains`]), and, when reserved in the overhead, to
//! know the last grain the stream must hold.
//! In the first layout the footer and end-of-stream marker are required; in
//! the second (qemu-img's) the stream may end after the last grain without
//! an end-of-stream marker, so the reserved tables are read as they pass
//! (they come before every grain) and a stream that ends before the last
//! grain they list is refused as truncated, even when cut exactly between
//! two grains.
//!
//! Rules enforced on every grain: the LBA is grain-aligned, inside the
//! capacity and strictly after the previous grain (so grains never overlap
//! and each LBA is written once); the compressed size is at most a grain
//! plus deflate's worst-case expansion; the data inflates (zlib, RFC 1950)
//! to exactly one grain, or to exactly the part of the disk left when the
//! grain is the last one and the capacity is not grain-aligned. Grains never
//! written are holes: zeros on a standalone disk, the parent's data in a
//! delta disk.

use std::io::{self, Read};
use std::ops::Range;

use flate2::{Decompress, FlushDecompress, Status};

use super::error::{Result, VmdkError};
use super::header::{GD_AT_END, GTE_ZEROED, GTES_PER_GT, RawHeader, SECTOR, StreamHeader};
use super::zeroed::ZeroedGrains;

/// Largest grain directory read from the header area to find zeroed-grain
/// entries (the layout that reserves the tables up front).
const MAX_UPFRONT_GD_BYTES: u64 = 1 << 20;

/// Marker types (the `type` field of a metadata marker).
pub const MARKER_EOS: u32 = 0;
/// Grain table marker.
pub const MARKER_GT: u32 = 1;
/// Grain directory marker.
pub const MARKER_GD: u32 = 2;
/// Footer marker.
pub const MARKER_FOOTER: u32 = 3;

/// One grain of data.
#[derive(Debug, PartialEq, Eq)]
pub struct Grain<'a> {
    /// Byte offset on the virtual disk.
    pub offset: u64,
    /// The bytes (one grain, shorter for a last grain cut by the capacity).
    pub data: &'a [u8],
}

/// Reads a streamOptimized VMDK in one forward pass.
#[derive(Debug)]
pub struct StreamReader<R> {
    inner: R,
    pos: u64,
    header: StreamHeader,
    descriptor: String,
    /// Sector after the previous grain (no later grain may start before).
    next_min_lba: u64,
    compressed: Vec<u8>,
    grain: Vec<u8>,
    inflater: Decompress,
    done: bool,
    footer_seen: bool,
    compressed_bytes: u64,
    /// Zeroed-grain entries being collected (with the header's flag).
    zeroed: Option<ZeroedGrains>,
    /// Zeroed grains as byte ranges, once the stream has ended.
    zeroed_ranges: Vec<Range<u64>>,
    /// The LBA of the last grain the tables reserved up front list, when
    /// they were read: the stream must hold it before it ends.
    last_listed_lba: Option<u64>,
}

impl<R: Read> StreamReader<R> {
    /// Reads and validates the header and embedded descriptor.
    pub fn new(inner: R) -> Result<Self> {
        let mut r = StreamReader {
            inner,
            pos: 0,
            header: StreamHeader {
                version: 0,
                capacity_sectors: 0,
                grain_sectors: 1,
                descriptor_offset: 0,
                descriptor_size: 0,
                gd_offset: 0,
                overhead: 1,
                zeroed_grain_gtes: false,
            },
            descriptor: String::new(),
            next_min_lba: 0,
            compressed: Vec::new(),
            grain: Vec::new(),
            inflater: Decompress::new(true),
            done: false,
            footer_seen: false,
            compressed_bytes: 0,
            zeroed: None,
            zeroed_ranges: Vec::new(),
            last_listed_lba: None,
        };
        let mut sector = [0u8; 512];
        r.read_exact(&mut sector, "header")?;
        r.header = StreamHeader::validate(&RawHeader::decode(&sector), 0)?;
        let h = r.header;
        if h.descriptor_size > 0 {
            r.skip_to(h.descriptor_offset * SECTOR, "descriptor")?;
            let len = usize::try_from(h.descriptor_size * SECTOR).unwrap_or(usize::MAX);
            let mut desc = vec![0u8; len];
            r.read_exact(&mut desc, "descriptor")?;
            let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
            r.descriptor = String::from_utf8_lossy(&desc[..end]).into_owned();
        }
        if h.zeroed_grain_gtes {
            r.zeroed = Some(ZeroedGrains::default());
        }
        if h.gd_offset != GD_AT_END && h.gd_offset != 0 {
            // Needed for zeroed grains; otherwise read when the layout is
            // the usual one, to see a stream cut between two grains.
            r.read_upfront_tables(h.zeroed_grain_gtes)?;
        }
        r.skip_to(h.overhead * SECTOR, "overhead")?;
        let grain = usize::try_from(h.grain_bytes()).unwrap_or(usize::MAX);
        r.grain = vec![0u8; grain];
        Ok(r)
    }

    /// The validated header.
    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    /// Capacity of the virtual disk in bytes.
    pub fn capacity(&self) -> u64 {
        self.header.capacity_bytes()
    }

    /// The embedded descriptor text.
    pub fn descriptor(&self) -> &str {
        &self.descriptor
    }

    /// The grains that grain-table entries mark as zeroed (the header's
    /// zeroed-grain flag), as sorted byte ranges of the disk, none of which
    /// holds a grain of the stream. Complete once
    /// [`next_grain`](Self::next_grain) has returned `None`; empty without
    /// the flag.
    /// On a standalone disk they read as zeros like holes; in a delta
    /// disk they hide the parent's data where holes show it.
    pub fn zeroed_grains(&self) -> &[Range<u64>] {
        &self.zeroed_ranges
    }

    /// Bytes of compressed grain data read so far.
    pub fn compressed_bytes(&self) -> u64 {
        self.compressed_bytes
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Takes the inner reader back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(VmdkError::Truncated {
                        what,
                        offset: self.pos,
                    });
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(VmdkError::Io {
                        op: "reading",
                        offset: self.pos,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn skip_to(&mut self, target: u64, what: &'static str) -> Result<()> {
        if target < self.pos {
            return Err(VmdkError::corrupt(
                what,
                target,
                format!("lies before offset {:#x}, already read", self.pos),
            ));
        }
        let mut buf = [0u8; 4096];
        while self.pos < target {
            let n = usize::try_from((target - self.pos).min(4096)).unwrap_or(4096);
            self.read_exact(&mut buf[..n], what)?;
        }
        Ok(())
    }

    /// The next grain, or `None` after the end-of-stream marker.
    pub fn next_grain(&mut self) -> Result<Option<Grain<'_>>> {
        while !self.done {
            let marker_offset = self.pos;
            let mut sector = [0u8; 512];
            if !self.read_marker(&mut sector)? {
                self.end()?;
                break;
            }
            let val = u64::from_le_bytes(sector[0..8].try_into().unwrap_or_default());
            let size = u32::from_le_bytes(sector[8..12].try_into().unwrap_or_default());
            if size != 0 {
                let len = self.read_grain(val, size, &sector, marker_offset)?;
                let offset = val * SECTOR;
                return Ok(Some(Grain {
                    offset,
                    data: &self.grain[..len],
                }));
            }
            let kind = u32::from_le_bytes(sector[12..16].try_into().unwrap_or_default());
            self.metadata(kind, val, marker_offset)?;
        }
        Ok(None)
    }

    /// Reads a marker sector. `Ok(false)` at a clean end of input where
    /// the layout allows one: qemu-img's streams, whose grain tables are
    /// reserved up front, end after the last grain without an
    /// end-of-stream marker. With the grain directory in the footer the
    /// footer and end-of-stream marker are required.
    fn read_marker(&mut self, sector: &mut [u8; 512]) -> Result<bool> {
        let at = self.pos;
        let mut done = 0;
        while done < sector.len() {
            match self.inner.read(&mut sector[done..]) {
                Ok(0) if done == 0 && self.header.gd_offset != GD_AT_END => return Ok(false),
                Ok(0) => {
                    return Err(VmdkError::Truncated {
                        what: if self.header.gd_offset == GD_AT_END && done == 0 {
                            "stream ends without its footer and end-of-stream marker"
                        } else {
                            "marker"
                        },
                        offset: at,
                    });
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(VmdkError::Io {
                        op: "reading",
                        offset: self.pos,
                        source,
                    });
                }
            }
        }
        Ok(true)
    }

    /// Handles a metadata marker of `kind` covering `sectors` sectors.
    fn metadata(&mut self, kind: u32, sectors: u64, at: u64) -> Result<()> {
        let h = self.header;
        match kind {
            MARKER_EOS => {
                if sectors != 0 {
                    return Err(VmdkError::corrupt(
                        "end-of-stream marker",
                        at,
                        format!("claims {sectors} sectors"),
                    ));
                }
                if h.gd_offset == GD_AT_END && !self.footer_seen {
                    return Err(VmdkError::corrupt(
                        "end-of-stream marker",
                        at,
                        "no footer came before it, and the header has no grain directory offset",
                    ));
                }
                self.end()?;
            }
            MARKER_GT | MARKER_GD => {
                let limit = if kind == MARKER_GT { 4 } else { h.gd_sectors() };
                if sectors > limit {
                    return Err(VmdkError::corrupt(
                        if kind == MARKER_GT {
                            "grain table marker"
                        } else {
                            "grain directory marker"
                        },
                        at,
                        format!("{sectors} sectors, at most {limit} expected"),
                    ));
                }
                if self.zeroed.is_some() {
                    self.read_table_or_directory(kind, sectors)?;
                } else {
                    self.skip_to(self.pos + sectors * SECTOR, "grain table or directory")?;
                }
            }
            MARKER_FOOTER => {
                if sectors != 1 || self.footer_seen {
                    return Err(VmdkError::corrupt(
                        "footer marker",
                        at,
                        if self.footer_seen {
                            "second footer".to_string()
                        } else {
                            format!("{sectors} sectors, 1 expected")
                        },
                    ));
                }
                self.footer_seen = true;
                let mut sector = [0u8; 512];
                let footer_at = self.pos;
                self.read_exact(&mut sector, "footer")?;
                let footer = StreamHeader::validate(&RawHeader::decode(&sector), footer_at)?;
                if footer.capacity_sectors != h.capacity_sectors
                    || footer.grain_sectors != h.grain_sectors
                {
                    return Err(VmdkError::corrupt(
                        "footer",
                        footer_at,
                        "capacity or grain size differs from the header",
                    ));
                }
                if footer.gd_offset == GD_AT_END {
                    return Err(VmdkError::corrupt(
                        "footer",
                        footer_at,
                        "grain directory offset is unset",
                    ));
                }
            }
            other => {
                return Err(VmdkError::corrupt(
                    "marker",
                    at,
                    format!("unknown metadata marker type {other}"),
                ));
            }
        }
        Ok(())
    }

    /// The stream has ended: checks that it held the last grain its
    /// up-front tables list, and settles the zeroed grains.
    fn end(&mut self) -> Result<()> {
        self.done = true;
        let h = self.header;
        if let Some(lba) = self.last_listed_lba
            && self.next_min_lba <= lba
        {
            return Err(VmdkError::Truncated {
                what: "stream ends before a grain its grain table lists",
                offset: self.pos,
            });
        }
        if let Some(mut z) = self.zeroed.take() {
            let runs = z.finish(h.grain_count(), self.pos)?;
            let g = h.grain_bytes();
            let cap = h.capacity_bytes();
            self.zeroed_ranges = runs
                .into_iter()
                .map(|r| (r.start * g).min(cap)..(r.end * g).min(cap))
                .filter(|r| !r.is_empty())
                .collect();
        }
        Ok(())
    }

    /// Reads a grain table or the grain directory that follows a marker
    /// (the layout with the directory at the end), for zeroed grains.
    fn read_table_or_directory(&mut self, kind: u32, sectors: u64) -> Result<()> {
        let first_sector = self.pos / SECTOR;
        let mut sector = [0u8; 512];
        let mut table = Vec::new();
        for k in 0..sectors {
            self.read_exact(&mut sector, "grain table or directory")?;
            if kind == MARKER_GT {
                table.extend_from_slice(&sector);
            } else if let Some(z) = &mut self.zeroed {
                z.directory_entries(k * 128, &sector);
            }
        }
        if kind == MARKER_GT
            && let Some(z) = &mut self.zeroed
        {
            z.table_at(first_sector, &table);
        }
        Ok(())
    }

    /// In the layout that reserves the grain directory and tables in the
    /// header area, reads the directory and then the tables it names (which
    /// must follow it there): for zeroed grains, and for the last grain
    /// they list. With `required` (zeroed grains) a layout other than that
    /// is refused; otherwise the tables are just not used.
    fn read_upfront_tables(&mut self, required: bool) -> Result<()> {
        let h = self.header;
        let unsupported = |what: String| {
            if required {
                Err(VmdkError::Unsupported { what })
            } else {
                Ok(())
            }
        };
        let gd_bytes = h.gd_sectors() * SECTOR;
        let gd_at = h.gd_offset.saturating_mul(SECTOR);
        let gd_end = gd_at.saturating_add(gd_bytes);
        if gd_at < self.pos || gd_end > h.overhead * SECTOR {
            return unsupported(format!(
                "zeroed-grain entries with a grain directory at sector {} outside the header \
                 area",
                h.gd_offset
            ));
        }
        if gd_bytes > MAX_UPFRONT_GD_BYTES {
            return unsupported(format!(
                "zeroed-grain entries with a {gd_bytes}-byte grain directory in the header area"
            ));
        }
        self.skip_to(gd_at, "grain directory")?;
        let mut tables: Vec<(u64, u64)> = Vec::new();
        let mut sector = [0u8; 512];
        for k in 0..h.gd_sectors() {
            self.read_exact(&mut sector, "grain directory")?;
            for (i, e) in sector.chunks_exact(4).enumerate() {
                let at = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
                if at != 0 {
                    tables.push((at, k * 128 + i as u64));
                }
            }
        }
        tables.sort_unstable();
        let table_bytes = u64::from(GTES_PER_GT) * 4;
        let mut table = vec![0u8; usize::try_from(table_bytes).unwrap_or(2048)];
        let mut last_listed = None;
        for (at, index) in tables {
            let start = at.saturating_mul(SECTOR);
            if start < self.pos || start.saturating_add(table_bytes) > h.overhead * SECTOR {
                return unsupported(format!(
                    "zeroed-grain entries with grain table {index} at sector {at}, not after the \
                     grain directory in the header area"
                ));
            }
            self.skip_to(start, "grain table")?;
            self.read_exact(&mut table, "grain table")?;
            if let Some(z) = &mut self.zeroed {
                z.table_with_index(index, &table);
            }
            for (i, e) in table.chunks_exact(4).enumerate() {
                let value = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                let grain = index * u64::from(GTES_PER_GT) + i as u64;
                let zeroed = h.zeroed_grain_gtes && value == GTE_ZEROED;
                if value != 0 && !zeroed && grain < h.grain_count() {
                    last_listed = last_listed.max(Some(grain));
                }
            }
        }
        self.last_listed_lba = last_listed.map(|g| g * h.grain_sectors);
        Ok(())
    }

    /// Reads and inflates the grain whose marker sector is `sector`;
    /// returns the number of bytes of `self.grain` to hand out.
    fn read_grain(&mut self, lba: u64, size: u32, sector: &[u8; 512], at: u64) -> Result<usize> {
        let h = self.header;
        let bad = |field, reason: String| Err(VmdkError::corrupt(field, at, reason));
        if !lba.is_multiple_of(h.grain_sectors) {
            return bad("grain marker", format!("lba {lba} is not grain-aligned"));
        }
        if lba >= h.capacity_sectors {
            return bad(
                "grain marker",
                format!(
                    "lba {lba} is outside the capacity of {} sectors",
                    h.capacity_sectors
                ),
            );
        }
        if lba < self.next_min_lba {
            return bad(
                "grain marker",
                format!(
                    "lba {lba} does not follow the previous grain (grains must come in \
                     increasing order, each once)"
                ),
            );
        }
        let grain_bytes = h.grain_bytes();
        let max_compressed = grain_bytes + grain_bytes / 8 + 1024;
        if u64::from(size) > max_compressed {
            return bad(
                "grain marker",
                format!(
                    "compressed size {size} exceeds the {max_compressed}-byte bound for a grain"
                ),
            );
        }
        let size = size as usize;
        self.compressed.clear();
        self.compressed.resize(size, 0);
        let first = size.min(500);
        self.compressed[..first].copy_from_slice(&sector[12..12 + first]);
        if size > first {
            let mut rest = std::mem::take(&mut self.compressed);
            let r = self.read_exact(&mut rest[first..], "compressed grain");
            self.compressed = rest;
            r?;
        }
        let total = (12 + size as u64).div_ceil(SECTOR) * SECTOR;
        self.skip_to(at + total, "grain padding")?;
        self.compressed_bytes += size as u64;

        let remaining = (h.capacity_sectors - lba) * SECTOR;
        let expected_last = remaining.min(grain_bytes);
        self.inflater.reset(true);
        let mut status = self
            .inflater
            .decompress(&self.compressed, &mut self.grain, FlushDecompress::None)
            .map_err(|source| VmdkError::Inflate {
                offset: at,
                lba,
                source,
            })?;
        if status != Status::StreamEnd && self.inflater.total_out() == grain_bytes {
            // The output is full: let the decoder read the stream's end
            // (final block code, checksum) with one byte of room, which
            // must stay unused.
            let used = usize::try_from(self.inflater.total_in())
                .unwrap_or(size)
                .min(size);
            let mut spare = [0u8; 1];
            status = self
                .inflater
                .decompress(&self.compressed[used..], &mut spare, FlushDecompress::None)
                .map_err(|source| VmdkError::Inflate {
                    offset: at,
                    lba,
                    source,
                })?;
        }
        let produced = self.inflater.total_out();
        let consumed = self.inflater.total_in();
        if produced > grain_bytes {
            return bad(
                "compressed grain",
                format!("lba {lba}: inflates past the grain size of {grain_bytes} bytes"),
            );
        }
        if status != Status::StreamEnd {
            return bad(
                "compressed grain",
                format!(
                    "lba {lba}: deflate stream does not end within one grain ({produced} bytes \
                     produced; the data is truncated or inflates past {grain_bytes} bytes)"
                ),
            );
        }
        if consumed != size as u64 {
            return bad(
                "compressed grain",
                format!(
                    "lba {lba}: {} bytes follow the deflate stream",
                    size as u64 - consumed
                ),
            );
        }
        if produced != grain_bytes && produced != expected_last {
            return bad(
                "compressed grain",
                format!("lba {lba}: inflates to {produced} bytes, expected {grain_bytes}"),
            );
        }
        self.next_min_lba = lba + h.grain_sectors;
        if let Some(z) = &mut self.zeroed {
            z.data_grain(lba / h.grain_sectors);
        }
        Ok(usize::try_from(expected_last.min(produced)).unwrap_or(0))
    }
}
