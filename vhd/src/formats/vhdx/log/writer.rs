//! Writing log entries (MS-VHDX 2.3): encode, place in the ring, write,
//! flush, apply, flush.

use uuid::Uuid;

use super::format::{
    Descriptor, EntryHeader, SECTOR, SECTOR_LEN, checksum_first_sector, descriptor_sectors,
    descriptor_slot, set_checksum, split_page,
};
use super::{LogRegion, LogUpdate, apply_updates};
use crate::file::ImageFile;
use crate::{Error, Result};

/// Writes metadata updates through the log of one VHDX file.
///
/// The writer owns the log region for a session: `log_guid` must be new
/// for the session (no entry under it may be in the region yet) and be
/// stored in the header before the first entry can matter. Entries go
/// around the region one after the other; an entry never straddles the end
/// of the region (it starts again at the beginning instead) and never
/// overwrites the entry written just before it, so a torn write always
/// leaves the previous entry (already applied, so replaying it again
/// changes nothing) as the newest valid one.
#[derive(Debug)]
pub(crate) struct LogWriter {
    region: LogRegion,
    log_guid: Uuid,
    /// Sequence number of the next entry; `None` once 2^64 - 1 was used.
    next_sequence: Option<u64>,
    /// Where the next entry goes if it fits before the end of the region.
    head: u64,
    /// The most recently written entry (start, length).
    last_entry: Option<(u64, u64)>,
    /// Entries written but not applied: where the oldest starts, how many
    /// bytes they take, and their updates in order.
    pending: Option<Pending>,
    /// A write, flush or apply failed: the state of the log is unknown
    /// until the file is reopened (and its log replayed).
    failed: bool,
}

#[derive(Debug)]
struct Pending {
    tail: u64,
    bytes: u64,
    updates: Vec<LogUpdate>,
}

/// An encoded entry ready to be written.
pub(super) struct Encoded {
    pub bytes: Vec<u8>,
}

impl LogWriter {
    /// A writer for an empty (or fully applied) log region with `log_guid`,
    /// first sequence number `first_sequence` (> 0; 0 is taken as 1).
    pub(crate) fn new(region: LogRegion, log_guid: Uuid, first_sequence: u64) -> Self {
        LogWriter {
            region,
            log_guid,
            next_sequence: Some(first_sequence.max(1)),
            head: 0,
            last_entry: None,
            pending: None,
            failed: false,
        }
    }

    /// Writes one entry holding `updates`, flushes, applies them in place
    /// (with any entry written earlier and not yet applied), makes the file
    /// at least `last_file_offset` long, flushes. Errors with
    /// InvalidArgument if they cannot fit in the log.
    pub(crate) fn commit(
        &mut self,
        file: &ImageFile,
        updates: &[LogUpdate],
        flushed_file_offset: u64,
        last_file_offset: u64,
    ) -> Result<()> {
        let length = self.prepare(updates)?;
        if self.pending.is_some() && self.contiguous_slot(length).is_none() {
            // The entry cannot follow the unapplied ones in the ring: apply
            // them first, after which the log holds nothing to replay.
            self.apply_pending(file, last_file_offset)?;
        }
        let pos = self.write_entry(file, updates, length, flushed_file_offset, last_file_offset)?;
        let mut all = self.pending.take().map(|p| p.updates).unwrap_or_default();
        all.extend_from_slice(updates);
        let applied = apply_updates(file, &all, last_file_offset).and_then(|()| file.sync_data());
        if let Err(e) = applied {
            self.failed = true;
            return Err(e);
        }
        self.finish(pos, length);
        Ok(())
    }

    /// Writes one entry holding `updates` and flushes, without applying it:
    /// the file is left with a log to replay, as after a power cut between
    /// the two flushes of [`commit`](Self::commit). Entries written this way
    /// form one sequence with the following ones; one that cannot follow
    /// them in the ring is refused with InvalidArgument.
    #[allow(dead_code)] // for tests and the check tool
    pub(crate) fn write_entry_only(
        &mut self,
        file: &ImageFile,
        updates: &[LogUpdate],
        flushed_file_offset: u64,
        last_file_offset: u64,
    ) -> Result<()> {
        let length = self.prepare(updates)?;
        if self.pending.is_some() && self.contiguous_slot(length).is_none() {
            return Err(Error::InvalidArgument(format!(
                "a log entry of {length:#x} bytes cannot follow the unapplied entries \
                 in the {:#x}-byte log",
                self.region.length
            )));
        }
        let pos = self.write_entry(file, updates, length, flushed_file_offset, last_file_offset)?;
        let pending = self.pending.get_or_insert(Pending {
            tail: pos,
            bytes: 0,
            updates: Vec::new(),
        });
        pending.bytes += length;
        pending.updates.extend_from_slice(updates);
        self.last_entry = Some((pos, length));
        self.head = (pos + length) % u64::from(self.region.length);
        Ok(())
    }

    /// Places the writer as if entries had been written up to `position` in
    /// the region (tests use it to make sequences that wrap around the end).
    #[cfg(test)]
    pub(crate) fn start_at(&mut self, position: u64) {
        self.head = position % u64::from(self.region.length).max(SECTOR);
    }

    /// Refuses to go on after a failure and checks `updates`; returns the
    /// length of their entry.
    fn prepare(&self, updates: &[LogUpdate]) -> Result<u64> {
        if self.failed {
            return Err(Error::InvalidArgument(
                "an earlier log write failed; reopen the image to replay its log".into(),
            ));
        }
        if self.next_sequence.is_none() {
            return Err(Error::InvalidArgument(
                "the log's sequence numbers are used up; the log needs a new GUID".into(),
            ));
        }
        let log_len = u64::from(self.region.length);
        if log_len == 0 || !log_len.is_multiple_of(SECTOR) {
            return Err(Error::InvalidArgument(format!(
                "log region of {log_len:#x} bytes is not a multiple of 4 KiB"
            )));
        }
        let log_end = self.region.offset.saturating_add(log_len);
        let mut data = 0u64;
        for update in updates {
            let (offset, len) = update.range();
            let stop = offset.checked_add(len);
            let bad = match update {
                LogUpdate::Page { .. } => !offset.is_multiple_of(SECTOR),
                LogUpdate::Zero { length, .. } => {
                    !offset.is_multiple_of(SECTOR) || *length == 0 || !length.is_multiple_of(SECTOR)
                }
            };
            let Some(stop) = stop.filter(|_| !bad) else {
                return Err(Error::InvalidArgument(format!(
                    "log update of {len:#x} bytes at {offset:#x} is not whole aligned 4 KiB pages"
                )));
            };
            if offset < log_end && stop > self.region.offset {
                return Err(Error::InvalidArgument(format!(
                    "log update at {offset:#x} overlaps the log itself"
                )));
            }
            if matches!(update, LogUpdate::Page { .. }) {
                data += 1;
            }
        }
        let count = u32::try_from(updates.len())
            .map_err(|_| Error::InvalidArgument("too many log updates for one entry".into()))?;
        let length = (descriptor_sectors(count) + data) * SECTOR;
        let previous = self.last_entry.map_or(0, |(_, l)| l);
        if length > log_len || u32::try_from(length).is_err() || length + previous > log_len {
            return Err(Error::InvalidArgument(format!(
                "a log entry of {length:#x} bytes does not fit in the {log_len:#x}-byte log"
            )));
        }
        Ok(length)
    }

    /// Where an entry of `length` bytes can follow the pending entries.
    fn contiguous_slot(&self, length: u64) -> Option<u64> {
        let log_len = u64::from(self.region.length);
        let pending = self.pending.as_ref()?;
        let end = self.head.checked_add(length)?;
        let fits = end <= log_len && pending.bytes + length <= log_len;
        // The pending entries occupy [tail, head) circularly.
        let clear = pending.tail <= self.head || end <= pending.tail;
        (fits && clear).then_some(self.head)
    }

    /// Where the next entry goes when nothing is pending: at the head, or
    /// at the start of the region if it does not fit before the end.
    fn free_slot(&self, length: u64) -> Result<u64> {
        let log_len = u64::from(self.region.length);
        let pos = if self.head + length <= log_len {
            self.head
        } else {
            0
        };
        if let Some((start, len)) = self.last_entry
            && pos < start + len
            && start < pos + length
        {
            return Err(Error::InvalidArgument(format!(
                "a log entry of {length:#x} bytes does not fit in the {log_len:#x}-byte log \
                 beside the previous one"
            )));
        }
        Ok(pos)
    }

    /// Applies the pending entries' updates and flushes.
    fn apply_pending(&mut self, file: &ImageFile, last_file_offset: u64) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let done =
            apply_updates(file, &pending.updates, last_file_offset).and_then(|()| file.sync_data());
        if done.is_err() {
            self.failed = true;
        }
        done
    }

    /// Encodes, places, writes and flushes one entry; returns where it went.
    fn write_entry(
        &mut self,
        file: &ImageFile,
        updates: &[LogUpdate],
        length: u64,
        flushed_file_offset: u64,
        last_file_offset: u64,
    ) -> Result<u64> {
        let pos = match self.contiguous_slot(length) {
            Some(pos) => pos,
            None => self.free_slot(length)?,
        };
        let tail = self.pending.as_ref().map_or(pos, |p| p.tail);
        let sequence = self.next_sequence.ok_or_else(|| {
            Error::InvalidArgument("the log's sequence numbers are used up".into())
        })?;
        let encoded = encode(
            updates,
            EntryHeader {
                checksum: 0,
                entry_length: u32::try_from(length)
                    .map_err(|_| Error::InvalidArgument("log entry too long".into()))?,
                tail: u32::try_from(tail).map_err(|_| Error::InvalidArgument("tail".into()))?,
                sequence_number: sequence,
                descriptor_count: u32::try_from(updates.len())
                    .map_err(|_| Error::InvalidArgument("too many log updates".into()))?,
                reserved: 0,
                log_guid: self.log_guid,
                flushed_file_offset,
                last_file_offset,
            },
        );
        let written = file
            .write_all_at(&encoded.bytes, self.region.offset + pos)
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            self.failed = true;
            return Err(e);
        }
        self.next_sequence = sequence.checked_add(1);
        Ok(pos)
    }

    /// Records that the entry at `pos` and everything before it is applied.
    fn finish(&mut self, pos: u64, length: u64) {
        self.pending = None;
        self.last_entry = Some((pos, length));
        self.head = (pos + length) % u64::from(self.region.length);
    }
}

/// Lays out one entry: header and descriptors in the descriptor sectors,
/// then one data sector per page update, then the checksum.
pub(super) fn encode(updates: &[LogUpdate], header: EntryHeader) -> Encoded {
    let desc_sectors = descriptor_sectors(header.descriptor_count);
    let mut bytes = vec![0u8; usize::try_from(header.entry_length).unwrap_or(0)];
    let mut first = [0u8; SECTOR_LEN];
    header.encode(&mut first);
    bytes[..SECTOR_LEN].copy_from_slice(&first);
    let mut data_index = desc_sectors;
    for (index, update) in (0u64..).zip(updates) {
        let descriptor = match update {
            LogUpdate::Page { offset, data } => {
                let (descriptor, sector) = split_page(data, *offset, header.sequence_number);
                let at = byte_index(data_index * SECTOR);
                bytes[at..at + SECTOR_LEN].copy_from_slice(&sector);
                data_index += 1;
                descriptor
            }
            LogUpdate::Zero { offset, length } => Descriptor::Zero {
                reserved: 0,
                length: *length,
                file_offset: *offset,
                sequence_number: header.sequence_number,
            },
        };
        let (sector, within) = descriptor_slot(index);
        let at = byte_index(sector * SECTOR) + within;
        descriptor.encode(&mut bytes[at..at + super::format::DESCRIPTOR_LEN]);
    }
    let mut head = [0u8; SECTOR_LEN];
    head.copy_from_slice(&bytes[..SECTOR_LEN]);
    let crc = crc32c::crc32c_append(checksum_first_sector(&head), &bytes[SECTOR_LEN..]);
    set_checksum(&mut bytes, crc);
    Encoded { bytes }
}

fn byte_index(v: u64) -> usize {
    // Entries are at most 4 GiB and were allocated at that length.
    usize::try_from(v).unwrap_or(usize::MAX)
}
