//! Finding the active sequence of a log (MS-VHDX 2.3.2 and 2.3.3) and
//! decoding its updates.
//!
//! The log is read through a [`LogView`], either a copy of the region in
//! memory or positional reads of the file, wrapping at the end of the region.
//! Every read is charged against a budget proportional to the region's size,
//! so that a crafted log cannot make the search run for long: the search is
//! otherwise quadratic in the worst case (each 4 KiB position may start an
//! entry as long as the log).

use std::collections::HashMap;

use uuid::Uuid;

use super::LogUpdate;
use super::format::{
    Descriptor, EntryHeader, SECTOR, SECTOR_LEN, checksum_first_sector, data_sector_sequence,
    descriptor_sectors, descriptor_slot, join_page,
};
use crate::file::ImageFile;
use crate::{Error, Format, Result};

/// Bytes the search may read, as a multiple of the log size, plus a floor.
const BUDGET_FACTOR: u64 = 16;
const BUDGET_FLOOR: u64 = 64 << 20;

enum Source<'a> {
    Memory(&'a [u8]),
    File { file: &'a ImageFile, offset: u64 },
}

/// The log region as a circular sequence of 4 KiB sectors.
pub(super) struct LogView<'a> {
    source: Source<'a>,
    len: u64,
    /// File offset of the region, for error messages.
    base: u64,
    budget: u64,
}

impl<'a> LogView<'a> {
    /// A view of a log held in memory (`log.len()` a non-zero multiple of
    /// 4 KiB) that the file holds at `base`.
    pub(super) fn memory(log: &'a [u8], base: u64) -> Self {
        let len = log.len() as u64;
        LogView {
            source: Source::Memory(log),
            len,
            base,
            budget: budget(len),
        }
    }

    /// A view reading `len` bytes of `file` at `offset` on demand.
    pub(super) fn file(file: &'a ImageFile, offset: u64, len: u64) -> Self {
        LogView {
            source: Source::File { file, offset },
            len,
            base: offset,
            budget: budget(len),
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Reads the sector at `pos` (taken modulo the log size).
    fn read(&mut self, pos: u64, buf: &mut [u8; SECTOR_LEN]) -> Result<()> {
        let Some(left) = self.budget.checked_sub(SECTOR) else {
            return Err(Error::corrupt(
                Format::Vhdx,
                "log",
                self.base,
                "finding the active sequence needs more reading than a log of this size \
                 can justify; the log is damaged or crafted",
            ));
        };
        self.budget = left;
        let pos = pos % self.len;
        match self.source {
            Source::Memory(log) => {
                let start = usize::try_from(pos).unwrap_or(usize::MAX);
                let sector = start
                    .checked_add(SECTOR_LEN)
                    .and_then(|end| log.get(start..end))
                    .ok_or_else(|| {
                        Error::corrupt(Format::Vhdx, "log", self.base, "log view out of range")
                    })?;
                buf.copy_from_slice(sector);
                Ok(())
            }
            Source::File { file, offset } => file.read_exact_at(buf, offset + pos),
        }
    }
}

fn budget(len: u64) -> u64 {
    len.saturating_mul(BUDGET_FACTOR)
        .saturating_add(BUDGET_FLOOR)
}

/// A valid entry and where it starts in the log.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub pos: u64,
    pub header: EntryHeader,
}

/// Checks the entry at `pos` as MS-VHDX 2.3.1 requires: signature, lengths,
/// a non-zero sequence number, the log GUID, every descriptor (signature,
/// alignment, sequence number), every data sector (signature, sequence
/// number split high/low) and the CRC-32C over the whole entry. Returns its
/// header when valid. When `updates` is given, the entry's updates are
/// appended to it, in descriptor order, if the entry is valid.
fn examine(
    view: &mut LogView<'_>,
    pos: u64,
    log_guid: Uuid,
    updates: Option<&mut Vec<LogUpdate>>,
) -> Result<Option<EntryHeader>> {
    let mut first = [0u8; SECTOR_LEN];
    view.read(pos, &mut first)?;
    let Some(header) = EntryHeader::decode(&first) else {
        return Ok(None);
    };
    let entry_length = u64::from(header.entry_length);
    let descriptor_sectors = descriptor_sectors(header.descriptor_count);
    if entry_length == 0
        || !entry_length.is_multiple_of(SECTOR)
        || entry_length > view.len()
        || !u64::from(header.tail).is_multiple_of(SECTOR)
        || u64::from(header.tail) >= view.len()
        || header.sequence_number == 0
        || header.log_guid != log_guid
        || descriptor_sectors * SECTOR > entry_length
    {
        return Ok(None);
    }
    let collect = updates.is_some();
    let sectors = entry_length / SECTOR;
    let sequence = header.sequence_number;
    let count = u64::from(header.descriptor_count);
    let mut crc = checksum_first_sector(&first);
    let mut descriptors: Vec<Descriptor> = Vec::new();
    let mut pages: Vec<Box<[u8; SECTOR_LEN]>> = Vec::new();
    let mut next_descriptor = 0u64;
    let mut data_descriptors = 0u64;
    let mut data_seen = 0u64;
    let mut sector = [0u8; SECTOR_LEN];
    for index in 0..sectors {
        let buf: &[u8; SECTOR_LEN] = if index == 0 {
            &first
        } else {
            view.read(pos + index * SECTOR, &mut sector)?;
            crc = crc32c::crc32c_append(crc, &sector);
            &sector
        };
        if index < descriptor_sectors {
            while next_descriptor < count {
                let (in_sector, at) = descriptor_slot(next_descriptor);
                if in_sector != index {
                    break;
                }
                let Some(desc) = buf.get(at..).and_then(Descriptor::decode) else {
                    return Ok(None);
                };
                if !descriptor_is_valid(&desc, sequence) {
                    return Ok(None);
                }
                if matches!(desc, Descriptor::Data { .. }) {
                    data_descriptors += 1;
                }
                if collect {
                    descriptors.push(desc);
                }
                next_descriptor += 1;
            }
            if index + 1 == descriptor_sectors && descriptor_sectors + data_descriptors > sectors {
                return Ok(None);
            }
        } else if data_seen < data_descriptors {
            if data_sector_sequence(buf) != Some(sequence) {
                return Ok(None);
            }
            if collect {
                pages.push(Box::new(*buf));
            }
            data_seen += 1;
        }
        // Sectors after the data sectors are padding, covered by the checksum only.
    }
    if crc != header.checksum {
        return Ok(None);
    }
    if let Some(out) = updates {
        let mut pages = pages.into_iter();
        for desc in descriptors {
            match desc {
                Descriptor::Data {
                    file_offset,
                    leading_bytes,
                    trailing_bytes,
                    ..
                } => {
                    let Some(sector) = pages.next() else {
                        return Ok(None);
                    };
                    out.push(LogUpdate::Page {
                        offset: file_offset,
                        data: join_page(&sector, &leading_bytes, &trailing_bytes),
                    });
                }
                Descriptor::Zero {
                    length,
                    file_offset,
                    ..
                } => out.push(LogUpdate::Zero {
                    offset: file_offset,
                    length,
                }),
            }
        }
    }
    Ok(Some(header))
}

/// A descriptor belongs to its entry and describes a 4 KiB-aligned range
/// that does not run past 2^64.
fn descriptor_is_valid(desc: &Descriptor, sequence: u64) -> bool {
    if desc.sequence_number() != sequence || !desc.file_offset().is_multiple_of(SECTOR) {
        return false;
    }
    match *desc {
        Descriptor::Data { file_offset, .. } => file_offset.checked_add(SECTOR).is_some(),
        Descriptor::Zero {
            length,
            file_offset,
            ..
        } => length.is_multiple_of(SECTOR) && file_offset.checked_add(length).is_some(),
    }
}

/// The active sequence: its entries from the one the head's Tail names to
/// the head, in log order.
#[derive(Debug)]
pub(super) struct Sequence {
    pub entries: Vec<Entry>,
}

impl Sequence {
    pub(super) fn head(&self) -> Option<&Entry> {
        self.entries.last()
    }
}

/// Finds the active sequence with the procedure of MS-VHDX 2.3.3: from
/// every candidate tail, extend a sequence while the next entry is valid
/// and numbered one more than the last; keep it if the head entry's Tail
/// names one of its entries; keep the one whose head has the highest
/// sequence number. The scan ends once the candidate tail wraps.
pub(super) fn find_active(view: &mut LogView<'_>, log_guid: Uuid) -> Result<Option<Sequence>> {
    let len = view.len();
    let mut memo: HashMap<u64, Option<EntryHeader>> = HashMap::new();
    let mut candidate: Option<Vec<Entry>> = None;
    let mut candidate_sequence = 0u64;
    let mut tail = 0u64;
    loop {
        let mut current: Vec<Entry> = Vec::new();
        let mut head = tail;
        let mut span = 0u64;
        loop {
            let header = match memo.get(&head) {
                Some(h) => *h,
                None => {
                    let h = examine(view, head, log_guid, None)?;
                    memo.insert(head, h);
                    h
                }
            };
            let Some(header) = header else { break };
            let follows = match current.last() {
                None => true,
                Some(last) => {
                    last.header.sequence_number.checked_add(1) == Some(header.sequence_number)
                }
            };
            // A sequence never holds more than the whole log.
            let Some(new_span) = span
                .checked_add(u64::from(header.entry_length))
                .filter(|s| *s <= len)
            else {
                break;
            };
            if !follows {
                break;
            }
            current.push(Entry { pos: head, header });
            span = new_span;
            head = (head + u64::from(header.entry_length)) % len;
        }
        let start = current.last().and_then(|h| {
            current
                .iter()
                .position(|e| e.pos == u64::from(h.header.tail))
        });
        let valid = start.is_some();
        if let (Some(start), Some(h)) = (start, current.last())
            && h.header.sequence_number > candidate_sequence
        {
            candidate_sequence = h.header.sequence_number;
            candidate = Some(current[start..].to_vec());
        }
        let next = if valid { head } else { (tail + SECTOR) % len };
        if next <= tail {
            break;
        }
        tail = next;
    }
    Ok(candidate.map(|entries| Sequence { entries }))
}

/// The updates of `sequence`, entry after entry, in descriptor order.
pub(super) fn collect_updates(
    view: &mut LogView<'_>,
    sequence: &Sequence,
    log_guid: Uuid,
) -> Result<Vec<LogUpdate>> {
    let mut all = Vec::new();
    for entry in &sequence.entries {
        let mut updates = Vec::new();
        let again = examine(view, entry.pos, log_guid, Some(&mut updates))?;
        if again != Some(entry.header) {
            return Err(Error::corrupt(
                Format::Vhdx,
                "log entry",
                view.base + entry.pos,
                "the entry changed while the log was being read",
            ));
        }
        all.append(&mut updates);
    }
    Ok(all)
}
