//! Structural check and repair of VHD files.
//!
//! Checked: the footer and its copy (checksums and agreement), the dynamic
//! header (checksum, block size, table placement), every BAT entry (inside
//! the file, overlapping neither metadata nor another block), the table's
//! padding, each allocated block's bitmap (readable), and space no
//! structure uses (leaks).
//!
//! Repaired (only what is safe): a bad or stale footer copy is rewritten
//! from the good footer; a missing or bad footer at the end is rewritten
//! from a good copy, placed after the last block; leaked space at the end of
//! the file is cut off (footer moved first, then the file truncated);
//! non-`0xFFFFFFFF` table padding is reset.

use std::path::Path;

use super::bat::{self, UNALLOCATED};
use super::be32;
use super::footer::{DiskType, FOOTER_SIZE, Footer};
use super::header::{DynamicHeader, HEADER_SIZE};
use crate::file::ImageFile;
use crate::{CheckReport, Format, Result, Severity};

struct Checker<'a> {
    file: &'a ImageFile,
    repair: bool,
    report: CheckReport,
}

impl Checker<'_> {
    fn add(&mut self, severity: Severity, offset: u64, message: impl Into<String>) {
        self.report.add(severity, Some(offset), message);
    }

    fn repaired(&mut self) {
        if let Some(f) = self.report.findings.last_mut() {
            f.repaired = true;
        }
    }
}

pub fn check_file(path: &Path, repair: bool) -> Result<CheckReport> {
    let file = crate::open_file(path, !repair)?;
    let mut c = Checker {
        file: &file,
        repair,
        report: CheckReport::new(Format::Vhd),
    };
    let len = file.len()?;
    if len < FOOTER_SIZE as u64 {
        c.add(Severity::Error, 0, "the file is shorter than a footer");
        return Ok(c.report);
    }
    let tail_at = len - FOOTER_SIZE as u64;
    let mut tail = [0u8; FOOTER_SIZE];
    file.read_exact_at(&mut tail, tail_at)?;
    let mut head = [0u8; FOOTER_SIZE];
    file.read_exact_at(&mut head, 0)?;
    let end = Footer::decode(&tail, tail_at);
    let copy = Footer::decode(&head, 0);
    let (footer, end_ok) = match (end, copy) {
        (Ok(e), _) if e.disk_type == DiskType::Fixed => {
            if e.virtual_size() > tail_at {
                c.add(
                    Severity::Error,
                    tail_at,
                    format!(
                        "the footer's size of {} bytes exceeds the {tail_at} bytes of data",
                        e.virtual_size()
                    ),
                );
            }
            return Ok(c.report);
        }
        (Ok(e), copy) => {
            let problem = match copy {
                Ok(cp) if cp == e => None,
                Ok(_) => Some("the footer copy at offset 0 differs from the footer".to_string()),
                Err(err) => Some(format!("the footer copy at offset 0 is invalid: {err}")),
            };
            if let Some(p) = problem {
                c.add(Severity::Error, 0, p);
                if c.repair {
                    file.write_all_at(&e.encode(), 0)?;
                    file.sync_data()?;
                    c.repaired();
                }
            }
            (e, true)
        }
        (Err(err), Ok(cp)) if cp.disk_type != DiskType::Fixed => {
            c.add(
                Severity::Error,
                tail_at,
                format!("the footer at the end is missing or invalid ({err}); the copy is good"),
            );
            (cp, false)
        }
        (Err(err), _) => {
            c.add(Severity::Error, tail_at, format!("no valid footer: {err}"));
            return Ok(c.report);
        }
    };
    let data_end = if end_ok { tail_at } else { len };
    let hdr_at = footer.data_offset;
    if hdr_at < FOOTER_SIZE as u64
        || hdr_at
            .checked_add(HEADER_SIZE as u64)
            .is_none_or(|e| e > len)
    {
        c.add(
            Severity::Error,
            16,
            format!("the dynamic header offset {hdr_at:#x} is outside the file"),
        );
        return Ok(c.report);
    }
    let mut hb = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut hb, hdr_at)?;
    let header = match DynamicHeader::decode(&hb, hdr_at, len) {
        Ok(h) => h,
        Err(e) => {
            c.add(Severity::Error, hdr_at, e.to_string());
            return Ok(c.report);
        }
    };
    check_blocks(&mut c, &footer, &header, hdr_at, data_end, end_ok)?;
    Ok(c.report)
}

fn check_blocks(
    c: &mut Checker<'_>,
    footer: &Footer,
    header: &DynamicHeader,
    hdr_at: u64,
    data_end: u64,
    end_ok: bool,
) -> Result<()> {
    let file = c.file;
    let bs = header.block_size;
    let span = bat::bitmap_size(bs) + bs;
    let entries = u64::from(header.max_table_entries);
    let needed = footer.virtual_size().div_ceil(bs);
    c.report.total_blocks = needed;
    if entries < needed {
        c.add(
            Severity::Error,
            hdr_at + 28,
            format!("the table has {entries} entries, the disk needs {needed}"),
        );
    }
    let table_len = entries * 4;
    let padded = table_len
        .next_multiple_of(512)
        .min(data_end.saturating_sub(header.table_offset));
    let mut raw = vec![0u8; usize::try_from(padded.max(table_len)).unwrap_or(0)];
    file.read_at_zero_fill(&mut raw, header.table_offset)?;
    let mut meta: Vec<(u64, u64, &str)> = vec![
        (0, FOOTER_SIZE as u64, "footer copy"),
        (hdr_at, hdr_at + HEADER_SIZE as u64, "dynamic header"),
        (
            header.table_offset,
            header.table_offset + padded.max(table_len),
            "block allocation table",
        ),
    ];
    for l in header.locators.iter().filter(|l| l.is_used()) {
        let end = l
            .data_offset
            .saturating_add(u64::from(l.data_length).next_multiple_of(512));
        if end > data_end {
            c.add(
                Severity::Error,
                l.data_offset,
                "parent locator data lies outside the file",
            );
        } else {
            meta.push((l.data_offset, end, "parent locator data"));
        }
    }
    let errors_before = c.report.count(Severity::Error);
    let mut used: Vec<(u64, u64, u64)> = Vec::new();
    for i in 0..entries {
        let at = header.table_offset + 4 * i;
        let v = be32(&raw, usize::try_from(4 * i).unwrap_or(0));
        if v == UNALLOCATED {
            continue;
        }
        let start = u64::from(v) * 512;
        let end = start + span;
        if i >= needed {
            c.add(
                Severity::Leak,
                at,
                format!("block {i} lies beyond the disk's end but is allocated"),
            );
        }
        if end > data_end {
            c.add(
                Severity::Error,
                at,
                format!("block {i} at {start:#x} extends past the end of the data ({data_end:#x})"),
            );
            continue;
        }
        if let Some(m) = meta.iter().find(|m| start < m.1 && m.0 < end) {
            c.add(
                Severity::Error,
                at,
                format!("block {i} at {start:#x} overlaps the {}", m.2),
            );
            continue;
        }
        let mut bitmap = vec![0u8; usize::try_from(span - bs).unwrap_or(0)];
        file.read_exact_at(&mut bitmap, start)?;
        used.push((start, end, at));
    }
    c.report.allocated_blocks = used.len() as u64;
    // Table padding must read as unallocated.
    if padded > table_len {
        let pad = raw
            .get(usize::try_from(table_len).unwrap_or(0)..)
            .unwrap_or(&[]);
        if pad.iter().any(|&b| b != 0xFF) {
            c.add(
                Severity::Warning,
                header.table_offset + table_len,
                "the table's padding is not 0xFFFFFFFF",
            );
            if c.repair {
                file.write_all_at(&vec![0xFF; pad.len()], header.table_offset + table_len)?;
                file.sync_data()?;
                c.repaired();
            }
        }
    }
    used.sort_unstable();
    for w in used.windows(2) {
        if w[1].0 < w[0].1 {
            c.add(
                Severity::Error,
                w[1].2,
                format!(
                    "the block at {:#x} overlaps the block at {:#x}",
                    w[1].0, w[0].0
                ),
            );
        }
    }
    // Leaks: space between structures that nothing uses.
    let mut regions: Vec<(u64, u64)> = meta.iter().map(|m| (m.0, m.1)).collect();
    regions.extend(used.iter().map(|u| (u.0, u.1)));
    regions.sort_unstable();
    let mut pos = 0u64;
    for (s, e) in &regions {
        // Gaps under 4 KiB are the padding that aligns a block's data.
        if *s > pos && *s - pos >= 4096 {
            c.add(
                Severity::Leak,
                pos,
                format!("{} bytes at {pos:#x} are not used", s - pos),
            );
        }
        pos = pos.max(*e);
    }
    let used_end = pos.next_multiple_of(512);
    let trailing = data_end > used_end;
    if trailing && end_ok {
        c.add(
            Severity::Leak,
            used_end,
            format!(
                "{} bytes at the end of the file are not used",
                data_end - used_end
            ),
        );
    }
    // Blocks in doubt keep everything in place.
    let blocks_ok = c.report.count(Severity::Error) == errors_before;
    if c.repair && blocks_ok && (trailing || !end_ok) {
        // The footer goes right after the last structure, then the file is cut.
        file.write_all_at(&footer.encode(), used_end)?;
        file.sync_data()?;
        file.set_len(used_end + FOOTER_SIZE as u64)?;
        file.sync_data()?;
        for f in c.report.findings.iter_mut() {
            let end_footer =
                !end_ok && f.offset == Some(data_end.saturating_sub(FOOTER_SIZE as u64));
            if f.offset == Some(used_end) || end_footer {
                f.repaired = true;
            }
        }
        if !end_ok
            && let Some(f) = c
                .report
                .findings
                .iter_mut()
                .find(|f| f.message.contains("footer at the end"))
        {
            f.repaired = true;
        }
    }
    Ok(())
}
