//! The VHDX metadata log (MS-VHDX 2.3): replay on open and the writer that
//! puts every metadata update through it.
//!
//! The log is a ring of 4 KiB sectors at a place the header names. Each
//! entry holds 4 KiB page writes and zeroed ranges. An update goes to its
//! final place only after its entry is durable (write entry, flush, apply,
//! flush), so after a power cut the newest valid sequence of entries is
//! replayed on the next open and the metadata is whole again.
//!
//! - [`read_log`] finds the active sequence exactly as the specification
//!   describes and returns its updates as a [`Replay`], which a writable
//!   open applies to the file ([`Replay::apply`]) and a read-only open lays
//!   over what it reads ([`Replay::overlay`]).
//! - [`LogWriter`] writes entries circularly in the region, each entry's
//!   tail naming itself once everything before it is applied.
//!
//! One deliberate leniency: the specification says that a non-zero log GUID
//! with no valid sequence makes the file corrupt. A writer that stores a
//! new log GUID in the header before its first entry is durable (QEMU does)
//! leaves exactly that state after a power cut, with nothing lost, so
//! [`read_log`] reports "nothing to replay" there, as QEMU does, rather than
//! making a consistent image impossible to open.
//!
//! Where QEMU differs (block/vhdx-log.c): it ranks sequences by their first
//! entry rather than their head and ignores the head's Tail, so of a
//! sequence of several unapplied entries that wraps round the end of the
//! region it replays only the entries after the wrap. Here the whole
//! sequence is replayed, from the entry the head's Tail names, as the
//! specification says. The writer below never leaves such a log: `commit`
//! applies every entry before the next one is written.

mod format;
mod scan;
mod writer;

#[cfg(test)]
mod qemu_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod writer_tests;

use std::fmt;

use uuid::Uuid;

use crate::file::ImageFile;
use crate::{Error, Format, Result};

#[allow(unused_imports)] // the driver's use; unused while it is being written
pub(crate) use writer::LogWriter;

/// Log regions start and end on 1 MiB boundaries.
const LOG_ALIGNMENT: u64 = 1 << 20;
/// Below this many bytes, the whole log region is read into memory at once.
const IN_MEMORY_LIMIT: u64 = 64 << 20;
/// No VHDX file is larger (64 TiB of data and its metadata fit well below):
/// a log asking the file to grow past this is refused.
const MAX_FILE_SIZE: u64 = 1 << 47;
/// The two headers (64 KiB and 128 KiB) are never updated through the log.
const HEADERS: (u64, u64) = (64 << 10, 192 << 10);

/// One update carried by the log.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum LogUpdate {
    /// Replace the 4 KiB page at `offset` (4 KiB aligned) with `data`.
    Page { offset: u64, data: Box<[u8; 4096]> },
    /// Zero `length` bytes (a multiple of 4 KiB) at `offset` (4 KiB aligned).
    Zero { offset: u64, length: u64 },
}

impl fmt::Debug for LogUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogUpdate::Page { offset, data } => f
                .debug_struct("Page")
                .field("offset", &format_args!("{offset:#x}"))
                .field(
                    "crc32c",
                    &format_args!("{:#010x}", crc32c::crc32c(&data[..])),
                )
                .finish(),
            LogUpdate::Zero { offset, length } => f
                .debug_struct("Zero")
                .field("offset", &format_args!("{offset:#x}"))
                .field("length", &format_args!("{length:#x}"))
                .finish(),
        }
    }
}

impl LogUpdate {
    /// The file range the update covers.
    fn range(&self) -> (u64, u64) {
        match self {
            LogUpdate::Page { offset, .. } => (*offset, 4096),
            LogUpdate::Zero { offset, length } => (*offset, *length),
        }
    }
}

/// Where the log lives in the file (the header's LogOffset and LogLength).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogRegion {
    pub offset: u64,
    pub length: u32,
}

/// What replaying the active sequence of a log does to the file.
#[derive(Debug)]
pub(crate) struct Replay {
    /// Every update of the active sequence, in log order; later ones win.
    pub updates: Vec<LogUpdate>,
    /// The head entry's FlushedFileOffset (already checked against the file).
    #[allow(dead_code)] // a description of the log, for reports
    pub flushed_file_offset: u64,
    /// The head entry's LastFileOffset: the file is at least this long after replay.
    pub last_file_offset: u64,
    /// The head entry's sequence number.
    pub last_sequence_number: u64,
}

impl Replay {
    /// Applies every update, extends the file to `last_file_offset` if
    /// shorter, and flushes.
    pub(crate) fn apply(&self, file: &ImageFile) -> Result<()> {
        apply_updates(file, &self.updates, self.last_file_offset)?;
        file.sync_data()
    }

    /// Overlays the updates on `buf`, which holds the file's bytes at
    /// `offset` (a read-only open of a dirty image replays in memory).
    pub(crate) fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset.saturating_add(buf.len() as u64);
        for update in &self.updates {
            let (start, length) = update.range();
            let from = start.max(offset);
            let to = start.saturating_add(length).min(end);
            if from >= to {
                continue;
            }
            // Both ends lie inside `buf`, whose length is a usize.
            let (Ok(lo), Ok(hi)) = (usize::try_from(from - offset), usize::try_from(to - offset))
            else {
                continue;
            };
            let Some(target) = buf.get_mut(lo..hi) else {
                continue;
            };
            match update {
                LogUpdate::Zero { .. } => target.fill(0),
                LogUpdate::Page { data, .. } => {
                    let (Ok(a), Ok(b)) =
                        (usize::try_from(from - start), usize::try_from(to - start))
                    else {
                        continue;
                    };
                    if let Some(source) = data.get(a..b) {
                        target.copy_from_slice(source);
                    }
                }
            }
        }
    }
}

/// Checks the header's LogVersion: only version 0 exists, and a log of
/// another version can be ignored only when there is nothing to replay.
#[allow(dead_code)] // for the header parser
pub(crate) fn check_log_version(log_version: u16, log_guid: Uuid) -> Result<()> {
    if log_version != 0 && !log_guid.is_nil() {
        return Err(Error::unsupported(
            Format::Vhdx,
            format!("log version {log_version} (only version 0 can be replayed)"),
        ));
    }
    Ok(())
}

/// Finds the active sequence of the log; `Ok(None)` when nothing is to be
/// replayed (a nil log GUID, an empty region, or no valid sequence).
pub(crate) fn read_log(
    file: &ImageFile,
    region: LogRegion,
    log_guid: Uuid,
) -> Result<Option<Replay>> {
    if log_guid.is_nil() || region.length == 0 {
        return Ok(None);
    }
    let length = u64::from(region.length);
    let corrupt =
        |reason: String| Error::corrupt(Format::Vhdx, "log region", region.offset, reason);
    if region.offset < LOG_ALIGNMENT
        || !region.offset.is_multiple_of(LOG_ALIGNMENT)
        || !length.is_multiple_of(LOG_ALIGNMENT)
    {
        return Err(corrupt(format!(
            "log of {length:#x} bytes at {:#x} is not on 1 MiB boundaries past the header",
            region.offset
        )));
    }
    let file_len = file.len()?;
    let end = region
        .offset
        .checked_add(length)
        .filter(|e| *e <= file_len)
        .ok_or_else(|| {
            corrupt(format!(
                "log of {length:#x} bytes runs past the end of the {file_len:#x}-byte file"
            ))
        })?;
    let memory;
    let mut view = if length <= IN_MEMORY_LIMIT {
        let mut buf = vec![0u8; usize::try_from(length).unwrap_or(0)];
        file.read_exact_at(&mut buf, region.offset)?;
        memory = buf;
        scan::LogView::memory(&memory, region.offset)
    } else {
        scan::LogView::file(file, region.offset, length)
    };
    let Some(sequence) = scan::find_active(&mut view, log_guid)? else {
        return Ok(None);
    };
    let Some(head) = sequence.head().copied() else {
        return Ok(None);
    };
    let entry_at = region.offset + head.pos;
    if head.header.flushed_file_offset > file_len {
        return Err(Error::corrupt(
            Format::Vhdx,
            "log entry FlushedFileOffset",
            entry_at,
            format!(
                "the file was truncated: the log says it was {:#x} bytes, it is {file_len:#x}",
                head.header.flushed_file_offset
            ),
        ));
    }
    if head.header.last_file_offset > MAX_FILE_SIZE {
        return Err(Error::corrupt(
            Format::Vhdx,
            "log entry LastFileOffset",
            entry_at,
            format!(
                "{:#x} is larger than any VHDX file",
                head.header.last_file_offset
            ),
        ));
    }
    let updates = scan::collect_updates(&mut view, &sequence, log_guid)?;
    for update in &updates {
        let (start, len) = update.range();
        let stop = start.saturating_add(len);
        let why = if stop > MAX_FILE_SIZE {
            Some("reaches past the largest VHDX file")
        } else if start < HEADERS.1 && stop > HEADERS.0 {
            Some("overwrites the headers, which are never updated through the log")
        } else if start < end && stop > region.offset {
            Some("overwrites the log itself")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::corrupt(
                Format::Vhdx,
                "log descriptor",
                entry_at,
                format!("update of {len:#x} bytes at {start:#x} {why}"),
            ));
        }
    }
    Ok(Some(Replay {
        updates,
        flushed_file_offset: head.header.flushed_file_offset,
        last_file_offset: head.header.last_file_offset,
        last_sequence_number: head.header.sequence_number,
    }))
}

/// Writes `updates` in order to their places, then makes the file at least
/// `last_file_offset` long. Zeroed ranges past the end of the file only
/// extend it.
fn apply_updates(file: &ImageFile, updates: &[LogUpdate], last_file_offset: u64) -> Result<()> {
    for update in updates {
        match update {
            LogUpdate::Page { offset, data } => file.write_all_at(&data[..], *offset)?,
            LogUpdate::Zero { offset, length } => {
                let stop = offset
                    .checked_add(*length)
                    .ok_or_else(|| Error::InvalidArgument("log zero range past 2^64".into()))?;
                let len = file.len()?;
                let inside = stop.min(len);
                if *offset < inside {
                    file.zero_range(*offset, inside - offset)?;
                }
                if stop > len {
                    file.set_len(stop)?;
                }
            }
        }
    }
    if file.len()? < last_file_offset {
        file.set_len(last_file_offset)?;
    }
    Ok(())
}
