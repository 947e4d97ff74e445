//! The VHDX log (interim implementation: updates are written in place and
//! flushed; an image whose log holds entries is refused rather than read
//! without replaying them).

use uuid::Uuid;

use super::format::{MIB, guid_at, unsupported, us};
use crate::Result;
use crate::file::ImageFile;

/// One change to the file carried by the log.
#[derive(Debug, Clone)]
pub(crate) enum LogUpdate {
    /// Replace the 4 KiB page at `offset` (4 KiB aligned) with `data`.
    Page { offset: u64, data: Box<[u8; 4096]> },
    /// Zero `length` bytes (a multiple of 4 KiB) at `offset` (4 KiB aligned).
    #[allow(dead_code)] // built by the log reader
    Zero { offset: u64, length: u64 },
}

/// Where the log lies in the file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogRegion {
    pub offset: u64,
    pub length: u32,
}

/// The updates of a log that must be replayed.
#[derive(Debug)]
#[allow(dead_code)] // built by the log reader
pub(crate) struct Replay {
    pub updates: Vec<LogUpdate>,
    pub flushed_file_offset: u64,
    pub last_file_offset: u64,
    pub last_sequence_number: u64,
}

impl Replay {
    /// Applies every update, extends the file to `last_file_offset` if
    /// shorter, flushes.
    pub(crate) fn apply(&self, file: &ImageFile) -> Result<()> {
        for u in &self.updates {
            match u {
                LogUpdate::Page { offset, data } => file.write_all_at(&data[..], *offset)?,
                LogUpdate::Zero { offset, length } => file.write_zeroes_at(*offset, *length)?,
            }
        }
        if file.len()? < self.last_file_offset {
            file.set_len(self.last_file_offset)?;
        }
        file.sync_data()
    }

    /// Overlays the updates on `buf`, which holds the file's bytes at `offset`.
    pub(crate) fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset.saturating_add(buf.len() as u64);
        for u in &self.updates {
            let (u_off, u_len) = match u {
                LogUpdate::Page { offset, .. } => (*offset, 4096),
                LogUpdate::Zero { offset, length } => (*offset, *length),
            };
            let lo = u_off.max(offset);
            let hi = u_off.saturating_add(u_len).min(end);
            if lo >= hi {
                continue;
            }
            let dst = &mut buf[us(lo - offset)..us(hi - offset)];
            match u {
                LogUpdate::Page { data, .. } => {
                    dst.copy_from_slice(&data[us(lo - u_off)..us(hi - u_off)])
                }
                LogUpdate::Zero { .. } => dst.fill(0),
            }
        }
    }
}

/// Finds the active sequence of the log; `Ok(None)` when nothing is to be
/// replayed.
pub(crate) fn read_log(
    file: &ImageFile,
    region: LogRegion,
    log_guid: Uuid,
) -> Result<Option<Replay>> {
    if log_guid.is_nil() {
        return Ok(None);
    }
    let len = u64::from(region.length);
    let mut chunk = vec![0u8; usize::try_from(MIB).unwrap_or(1 << 20)];
    let mut pos = 0u64;
    while pos < len {
        let n = us((len - pos).min(MIB));
        let got = file.read_at_zero_fill(&mut chunk[..n], region.offset + pos)?;
        if got == 0 {
            break;
        }
        for sector in chunk[..n].chunks_exact(4096) {
            if &sector[..4] == b"loge" && guid_at(sector, 32) == log_guid {
                return Err(unsupported(
                    "the log holds entries to replay, which this build cannot replay",
                ));
            }
        }
        pos += n as u64;
    }
    Ok(None)
}

/// Writes metadata updates through the log.
#[derive(Debug)]
pub(crate) struct LogWriter {
    region: LogRegion,
}

impl LogWriter {
    /// A writer for an empty (or fully applied) log region.
    pub(crate) fn new(region: LogRegion, _log_guid: Uuid, _first_sequence: u64) -> Self {
        LogWriter { region }
    }

    /// Applies `updates` in place and flushes.
    pub(crate) fn commit(
        &mut self,
        file: &ImageFile,
        updates: &[LogUpdate],
        _flushed_file_offset: u64,
        _last_file_offset: u64,
    ) -> Result<()> {
        let pages: u64 = updates
            .iter()
            .map(|u| match u {
                LogUpdate::Page { .. } => 1,
                LogUpdate::Zero { .. } => 0,
            })
            .sum();
        if (pages + 1 + updates.len() as u64 / 32) * 4096 > u64::from(self.region.length) {
            return Err(crate::Error::InvalidArgument(format!(
                "{} updates do not fit in a log of {} bytes",
                updates.len(),
                self.region.length
            )));
        }
        for u in updates {
            match u {
                LogUpdate::Page { offset, data } => file.write_all_at(&data[..], *offset)?,
                LogUpdate::Zero { offset, length } => file.write_zeroes_at(*offset, *length)?,
            }
        }
        file.sync_data()
    }
}
