//! Structural check of a VHDX file: headers, region tables, metadata, the
//! log, every BAT entry (state, range, overlap) and leaked space. Repair
//! replays a dirty log.

use std::path::Path;

use uuid::Uuid;

use super::bat::{PayloadState, SB_PRESENT, entry_offset};
use super::format::{HEADER_OFFSETS, MIB, REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, us};
use super::header;
use super::log::{self, LogRegion};
use super::region;
use crate::{CheckReport, Format, Result, Severity};

pub(super) fn check_file(path: &Path, repair: bool) -> Result<CheckReport> {
    let mut report = CheckReport::new(Format::Vhdx);
    let file = crate::open_file(path, !repair)?;
    let file_len = file.len()?;
    if let Err(e) = header::read_identifier(&file) {
        report.add(Severity::Error, Some(0), e.to_string());
        return Ok(report);
    }
    let slots = header::read_slots(&file)?;
    for (i, d) in slots.decoded.iter().enumerate() {
        if d.is_none() {
            report.add(
                Severity::Warning,
                Some(HEADER_OFFSETS[i]),
                format!("header copy {} is not valid", i + 1),
            );
        }
    }
    let mut current = match header::choose(&slots) {
        Ok(c) => c,
        Err(e) => {
            report.add(Severity::Error, Some(HEADER_OFFSETS[0]), e.to_string());
            return Ok(report);
        }
    };
    let log_region = LogRegion {
        offset: current.header.log_offset,
        length: current.header.log_length,
    };
    let mut replay = match log::read_log(&file, log_region, current.header.log_guid) {
        Ok(r) => r,
        Err(e) => {
            report.add(Severity::Error, Some(log_region.offset), e.to_string());
            return Ok(report);
        }
    };
    if let Some(r) = &replay {
        report.log_was_dirty = true;
        report.add(
            Severity::Warning,
            Some(log_region.offset),
            format!(
                "the log holds {} unreplayed updates (up to sequence {}); a read-write \
                 open replays them",
                r.updates.len(),
                r.last_sequence_number
            ),
        );
        if repair {
            r.apply(&file)?;
            let mut h = current.header.next()?;
            h.log_guid = Uuid::nil();
            let slot = 1 - current.slot;
            file.write_all_at(&h.encode()[..], HEADER_OFFSETS[slot])?;
            file.sync_data()?;
            current = header::CurrentHeader { header: h, slot };
            replay = None;
            if let Some(f) = report.findings.last_mut() {
                f.repaired = true;
            }
        }
    }
    let mut buf = vec![0u8; REGION_TABLE_SIZE];
    for (i, at) in REGION_TABLE_OFFSETS.into_iter().enumerate() {
        super::read_overlaid(&file, replay.as_ref(), &mut buf, at)?;
        if !region::is_intact(&buf) {
            report.add(
                Severity::Warning,
                Some(at),
                format!("region table copy {} is not valid", i + 1),
            );
        }
    }
    let (regions, meta, geometry) =
        match super::parse_tables(&file, replay.as_ref(), &current.header) {
            Ok(t) => t,
            Err(e) => {
                report.add(Severity::Error, None, e.to_string());
                return Ok(report);
            }
        };
    let differencing = meta.has_parent;
    let bs = geometry.block_size;
    report.total_blocks = geometry.payload_blocks();

    // Space the structures take, for overlap and leak checks.
    let mut used: Vec<(u64, u64, String)> = vec![
        (0, MIB, "the header section".into()),
        (
            log_region.offset,
            u64::from(log_region.length),
            "the log".into(),
        ),
        (
            regions.metadata.offset,
            u64::from(regions.metadata.length),
            "the metadata region".into(),
        ),
        (
            regions.bat.offset,
            u64::from(regions.bat.length),
            "the BAT".into(),
        ),
    ];
    let entries = geometry.total_entries();
    let mut page = vec![0u8; 1 << 20];
    let per = MIB / 8;
    let mut base = 0u64;
    let mut bad_offsets = 0u64;
    while base < entries {
        let n = (entries - base).min(per);
        super::read_overlaid(
            &file,
            replay.as_ref(),
            &mut page[..us(n * 8)],
            regions.bat.offset + base * 8,
        )?;
        for k in 0..n {
            let index = base + k;
            let at = regions.bat.offset + index * 8;
            let e = super::format::u64_at(&page, us(k * 8));
            let is_bitmap = index % (geometry.chunk_ratio + 1) == geometry.chunk_ratio;
            let state = e & 7;
            let offset = entry_offset(e);
            let (has_data, len, what) = if is_bitmap {
                match state {
                    0 => (false, 0, "sector bitmap"),
                    SB_PRESENT if differencing => (true, MIB, "sector bitmap"),
                    _ => {
                        report.add(
                            Severity::Error,
                            Some(at),
                            format!("sector bitmap entry {index} has invalid state {state}"),
                        );
                        continue;
                    }
                }
            } else {
                match PayloadState::from_bits(e) {
                    None => {
                        report.add(
                            Severity::Error,
                            Some(at),
                            format!("payload entry {index} has reserved state {state}"),
                        );
                        continue;
                    }
                    Some(PayloadState::PartiallyPresent) if !differencing => {
                        report.add(
                            Severity::Error,
                            Some(at),
                            format!(
                                "payload entry {index} is partially present in an image \
                                 without a parent"
                            ),
                        );
                        continue;
                    }
                    Some(s) => (s.has_data(), bs, "payload block"),
                }
            };
            if !has_data {
                if offset != 0 {
                    bad_offsets += 1;
                }
                continue;
            }
            if offset < MIB || offset >= file_len {
                report.add(
                    Severity::Error,
                    Some(at),
                    format!(
                        "{what} entry {index} points at {offset:#x}, outside the file's data area"
                    ),
                );
                continue;
            }
            if !is_bitmap {
                report.allocated_blocks += 1;
            }
            if offset + len > file_len {
                report.add(
                    Severity::Warning,
                    Some(at),
                    format!("{what} entry {index} at {offset:#x} runs past the end of the file"),
                );
            }
            used.push((offset, len, format!("{what} entry {index}")));
        }
        base += n;
    }
    if bad_offsets > 0 {
        report.add(
            Severity::Warning,
            Some(regions.bat.offset),
            format!("{bad_offsets} entries without data carry a non-zero file offset"),
        );
    }
    used.sort_by_key(|u| u.0);
    let mut reach: Option<(u64, usize)> = None;
    for (i, u) in used.iter().enumerate() {
        if let Some((end, j)) = reach
            && u.0 < end
        {
            report.add(
                Severity::Error,
                Some(u.0),
                format!("{} overlaps {}", u.2, used[j].2),
            );
        }
        let end = u.0.saturating_add(u.1);
        if reach.is_none_or(|(e, _)| end > e) {
            reach = Some((end, i));
        }
    }
    // Leaks: MiB units of the file no structure claims that hold data.
    let mut leaked = 0u64;
    let mut pos = MIB;
    let mut idx = 0;
    while pos < file_len {
        while idx < used.len() && used[idx].0.saturating_add(used[idx].1) <= pos {
            idx += 1;
        }
        let claimed = used[idx..]
            .iter()
            .take_while(|u| u.0 <= pos)
            .any(|u| u.0.saturating_add(u.1) > pos);
        let next = (pos + MIB).min(file_len);
        if !claimed
            && let Some((data, _)) = file.next_data(pos)?
            && data < next
        {
            leaked += next - pos;
        }
        pos = next;
    }
    if leaked > 0 {
        report.add(
            Severity::Leak,
            None,
            format!("{leaked} bytes of the file hold data no BAT entry refers to"),
        );
    }
    Ok(report)
}
