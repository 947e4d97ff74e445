//! A streamOptimized VMDK writer: grains in increasing order, grain tables
//! written as each fills, then the grain directory, footer and
//! end-of-stream marker (the layout with `gdOffset` all ones in the header
//! and the real one in the footer). Memory use is one grain table and the
//! grain directory, not proportional to the data.

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;

use super::error::{Result, VmdkError};
use super::header::{
    COMPRESS_DEFLATE, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NEWLINE_CHECK, FLAG_ZEROED_GTE,
    GD_AT_END, GTE_ZEROED, GTES_PER_GT, MAGIC, MAX_CAPACITY_SECTORS, MAX_GRAIN_SECTORS, RawHeader,
    SECTOR, StreamHeader,
};
use super::reader::{MARKER_EOS, MARKER_FOOTER, MARKER_GD, MARKER_GT};

/// Options of [`StreamWriter`].
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Grain size in bytes (a power of two, multiple of 512; 64 KiB default).
    pub grain_size: u64,
    /// Deflate level 0-9 (6 default).
    pub level: u32,
    /// Set the header's zeroed-grain flag, so that
    /// [`StreamWriter::write_zeroed_grain`] can mark grains zeroed in the
    /// grain tables (as delta disks do over a parent's data).
    pub zeroed_grain_gtes: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            grain_size: 64 << 10,
            level: 6,
            zeroed_grain_gtes: false,
        }
    }
}

const DESCRIPTOR_SECTORS: u64 = 20;

/// Writes a streamOptimized VMDK to any `Write`.
#[derive(Debug)]
pub struct StreamWriter<W: Write> {
    out: W,
    /// Sectors written so far.
    pos: u64,
    header: StreamHeader,
    raw: RawHeader,
    level: u32,
    /// Sector offset of each grain table (0 = none).
    gd: Vec<u32>,
    /// The grain table being filled and its index.
    gt: Vec<u32>,
    gt_index: Option<u64>,
    next_grain: u64,
    buf: Vec<u8>,
}

fn sector_u32(pos: u64) -> Result<u32> {
    u32::try_from(pos).map_err(|_| {
        VmdkError::InvalidArgument(format!(
            "stream grows past 2 TiB of sectors (sector {pos}), beyond 32-bit table entries"
        ))
    })
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream for a disk of `capacity` bytes (a multiple of 512):
    /// writes the header and the embedded descriptor.
    pub fn new(out: W, capacity: u64, options: WriterOptions) -> Result<Self> {
        let g = options.grain_size;
        if g < SECTOR || !g.is_power_of_two() || g / SECTOR > MAX_GRAIN_SECTORS {
            return Err(VmdkError::InvalidArgument(format!(
                "grain size {g} is not a power of two between 512 and {}",
                MAX_GRAIN_SECTORS * SECTOR
            )));
        }
        if !capacity.is_multiple_of(SECTOR) || capacity / SECTOR > MAX_CAPACITY_SECTORS {
            return Err(VmdkError::InvalidArgument(format!(
                "capacity {capacity} is not a multiple of 512 up to {} bytes",
                MAX_CAPACITY_SECTORS * SECTOR
            )));
        }
        let grain_sectors = g / SECTOR;
        let overhead = (1 + DESCRIPTOR_SECTORS).div_ceil(grain_sectors) * grain_sectors;
        let raw = RawHeader {
            magic: MAGIC,
            version: 3,
            flags: FLAG_NEWLINE_CHECK
                | FLAG_COMPRESSED
                | FLAG_MARKERS
                | if options.zeroed_grain_gtes {
                    FLAG_ZEROED_GTE
                } else {
                    0
                },
            capacity: capacity / SECTOR,
            grain_size: grain_sectors,
            descriptor_offset: 1,
            descriptor_size: DESCRIPTOR_SECTORS,
            num_gtes_per_gt: GTES_PER_GT,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            overhead,
            unclean_shutdown: 0,
            newline_chars: *b"\n \r\n",
            compress_algorithm: COMPRESS_DEFLATE,
        };
        let header = StreamHeader::validate(&raw, 0)?;
        let tables = header.grain_count().div_ceil(u64::from(GTES_PER_GT));
        let tables = usize::try_from(tables)
            .map_err(|_| VmdkError::InvalidArgument("too many grain tables".into()))?;
        let mut w = StreamWriter {
            out,
            pos: 0,
            header,
            raw,
            level: options.level.min(9),
            gd: vec![0; tables],
            gt: vec![0; GTES_PER_GT as usize],
            gt_index: None,
            next_grain: 0,
            buf: Vec::new(),
        };
        w.emit(&raw.encode())?;
        let desc = descriptor(capacity / SECTOR);
        let mut block = vec![0u8; usize::try_from(DESCRIPTOR_SECTORS * SECTOR).unwrap_or(0)];
        let n = desc.len().min(block.len());
        block[..n].copy_from_slice(&desc.as_bytes()[..n]);
        w.emit(&block)?;
        w.pad_to(overhead)?;
        Ok(w)
    }

    fn emit(&mut self, data: &[u8]) -> Result<()> {
        debug_assert!((data.len() as u64).is_multiple_of(SECTOR));
        self.out.write_all(data).map_err(|source| VmdkError::Io {
            op: "writing",
            offset: self.pos * SECTOR,
            source,
        })?;
        self.pos += data.len() as u64 / SECTOR;
        Ok(())
    }

    fn pad_to(&mut self, sector: u64) -> Result<()> {
        let zero = [0u8; 512];
        while self.pos < sector {
            self.emit(&zero)?;
        }
        Ok(())
    }

    fn marker(&mut self, sectors: u64, kind: u32) -> Result<()> {
        let mut m = [0u8; 512];
        m[0..8].copy_from_slice(&sectors.to_le_bytes());
        m[12..16].copy_from_slice(&kind.to_le_bytes());
        self.emit(&m)
    }

    /// Grain size in bytes.
    pub fn grain_size(&self) -> u64 {
        self.header.grain_bytes()
    }

    /// Marks the grain at byte `offset` (grain-aligned, after every grain
    /// written before) zeroed: a grain-table entry of 1 and no grain in the
    /// stream. Needs [`WriterOptions::zeroed_grain_gtes`].
    pub fn write_zeroed_grain(&mut self, offset: u64) -> Result<()> {
        if self.raw.flags & FLAG_ZEROED_GTE == 0 {
            return Err(VmdkError::InvalidArgument(
                "zeroed grains need the zeroed-grain flag in the header".into(),
            ));
        }
        let index = self.next_slot(offset)?;
        let slot = usize::try_from(index % u64::from(GTES_PER_GT)).unwrap_or(0);
        self.gt[slot] = GTE_ZEROED;
        self.next_grain = index + 1;
        Ok(())
    }

    /// Checks that a grain at `offset` may come next and switches to its
    /// grain table; returns the grain's index.
    fn next_slot(&mut self, offset: u64) -> Result<u64> {
        let h = self.header;
        let g = h.grain_bytes();
        if !offset.is_multiple_of(g) || offset >= h.capacity_bytes() {
            return Err(VmdkError::InvalidArgument(format!(
                "grain at {offset:#x} is not an aligned grain inside the disk"
            )));
        }
        let index = offset / g;
        if index < self.next_grain {
            return Err(VmdkError::InvalidArgument(format!(
                "grain at {offset:#x} does not follow the previous grain"
            )));
        }
        let table = index / u64::from(GTES_PER_GT);
        if self.gt_index != Some(table) {
            self.flush_table()?;
            self.gt_index = Some(table);
        }
        Ok(index)
    }

    /// Writes the grain starting at byte `offset` (grain-aligned, after
    /// every grain written before). `data` is one grain, or shorter for the
    /// last grain of a disk whose size is not grain-aligned, or shorter in
    /// general (the rest of the grain reads as zeros).
    pub fn write_grain(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let h = self.header;
        let g = h.grain_bytes();
        if data.len() as u64 > g {
            return Err(VmdkError::InvalidArgument(format!(
                "grain at {offset:#x} of {} bytes is larger than a grain",
                data.len()
            )));
        }
        let index = self.next_slot(offset)?;
        // The grain inflates to a full grain unless it is the last one.
        let full = usize::try_from(g.min(h.capacity_bytes() - offset)).unwrap_or(0);
        let mut encoder =
            ZlibEncoder::new(std::mem::take(&mut self.buf), Compression::new(self.level));
        let io = |source| VmdkError::Io {
            op: "compressing",
            offset,
            source,
        };
        encoder.write_all(data).map_err(io)?;
        if data.len() < full {
            let zeros = vec![0u8; full - data.len()];
            encoder.write_all(&zeros).map_err(io)?;
        }
        let compressed = encoder.finish().map_err(io)?;
        let marker_sector = self.pos;
        let size = u32::try_from(compressed.len())
            .map_err(|_| VmdkError::InvalidArgument("compressed grain too large".into()))?;
        let total = (12 + compressed.len()).div_ceil(512) * 512;
        let mut block = vec![0u8; total];
        block[0..8].copy_from_slice(&(offset / SECTOR).to_le_bytes());
        block[8..12].copy_from_slice(&size.to_le_bytes());
        block[12..12 + compressed.len()].copy_from_slice(&compressed);
        self.emit(&block)?;
        self.buf = compressed;
        self.buf.clear();
        let slot = usize::try_from(index % u64::from(GTES_PER_GT)).unwrap_or(0);
        self.gt[slot] = sector_u32(marker_sector)?;
        self.next_grain = index + 1;
        Ok(())
    }

    fn flush_table(&mut self) -> Result<()> {
        let Some(table) = self.gt_index.take() else {
            return Ok(());
        };
        self.marker(4, MARKER_GT)?;
        let at = sector_u32(self.pos)?;
        let mut bytes = Vec::with_capacity(2048);
        for e in &self.gt {
            bytes.extend_from_slice(&e.to_le_bytes());
        }
        self.emit(&bytes)?;
        self.gt.fill(0);
        if let Some(slot) = usize::try_from(table).ok().and_then(|t| self.gd.get_mut(t)) {
            *slot = at;
        }
        Ok(())
    }

    /// Writes the last grain table, the grain directory, the footer and the
    /// end-of-stream marker; returns the output.
    pub fn finish(mut self) -> Result<W> {
        self.flush_table()?;
        let gd_sectors = self.header.gd_sectors();
        self.marker(gd_sectors, MARKER_GD)?;
        let gd_at = self.pos;
        let mut bytes = vec![0u8; usize::try_from(gd_sectors * SECTOR).unwrap_or(0)];
        for (i, e) in self.gd.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&e.to_le_bytes());
        }
        self.emit(&bytes)?;
        self.marker(1, MARKER_FOOTER)?;
        let footer = RawHeader {
            gd_offset: gd_at,
            ..self.raw
        };
        self.emit(&footer.encode())?;
        self.marker(0, MARKER_EOS)?;
        self.out.flush().map_err(|source| VmdkError::Io {
            op: "flushing",
            offset: self.pos * SECTOR,
            source,
        })?;
        Ok(self.out)
    }
}

/// The embedded descriptor of a monolithic streamOptimized disk.
fn descriptor(capacity_sectors: u64) -> String {
    let cylinders = (capacity_sectors / (16 * 63)).clamp(1, 16383);
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\n# Extent description\n\
         RW {capacity_sectors} SPARSE \"disk.vmdk\"\n\n# The Disk Data Base\n#DDB\n\n\
         ddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\nddb.geometry.heads = \"16\"\n\
         ddb.geometry.sectors = \"63\"\n"
    )
}
