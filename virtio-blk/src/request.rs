//! One virtio-blk request: its framing (header, data, status) taken from the
//! chain's buffers, its checks against the device's limits and capacity, and
//! its execution against the disk image.
//!
//! The device makes no assumption about how the driver arranged the
//! descriptors (virtio 1.2, 2.6.4): the header is the first 16 device-readable
//! bytes, the status the last device-writable byte, and the data everything
//! between, whichever descriptors carry them.

use thiserror::Error;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError};

use crate::chain::{ChainBuffers, Segment, check_buffer};
use crate::config::{ID_BYTES, Limits, SECTOR_SIZE};
use crate::guest::{with_buffer, with_buffer_mut};
use crate::zeroes::write_explicit_zeroes;

/// Bytes of `struct virtio_blk_req` before the data.
const HEADER_SIZE: usize = 16;
/// Bytes of `struct virtio_blk_discard_write_zeroes`.
const RANGE_SIZE: usize = 16;

/// Why a request was answered with an error status.
#[derive(Debug, Error)]
pub enum RequestError {
    /// Fewer than 16 device-readable bytes.
    #[error("request header is {len} bytes, expected 16")]
    ShortHeader {
        /// Device-readable bytes in the chain.
        len: u64,
    },
    /// Data buffers of the wrong direction for the request type.
    #[error("request type {kind} carries {len} bytes of {direction} data it must not have")]
    WrongDirection {
        /// The request type.
        kind: u32,
        /// "device-readable" or "device-writable".
        direction: &'static str,
        /// How many bytes.
        len: u64,
    },
    /// Data length not a multiple of 512 (reads and writes) or of 16
    /// (discard and write zeroes), or zero where data is required.
    #[error("request data length {len} is not a positive multiple of {unit}")]
    BadLength {
        /// Data length.
        len: u64,
        /// Required unit.
        unit: u64,
    },
    /// A request that needs a data buffer came without one.
    #[error("request type {kind} has no data buffer")]
    MissingData {
        /// The request type.
        kind: u32,
    },
    /// More data segments than `seg_max`.
    #[error("request has {count} data segments, more than seg_max {max}")]
    TooManySegments {
        /// Segments in the request.
        count: usize,
        /// The limit.
        max: u32,
    },
    /// A data segment larger than `size_max`.
    #[error("data segment of {len} bytes exceeds size_max {max}")]
    SegmentTooLarge {
        /// The segment length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// More discard or write-zeroes ranges than allowed, or one too long.
    #[error("{what} exceeds the device limit {max} (got {got})")]
    OverLimit {
        /// Which limit.
        what: &'static str,
        /// The limit.
        max: u32,
        /// The value in the request.
        got: u64,
    },
    /// Sectors outside the disk.
    #[error("sectors {sector}+{len_bytes} bytes are outside a disk of {capacity} sectors")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Length in bytes.
        len_bytes: u64,
        /// Capacity in sectors.
        capacity: u64,
    },
    /// A write to a read-only device.
    #[error("write request to a read-only device")]
    ReadOnly,
    /// Guest memory could not be accessed.
    #[error("guest memory access failed")]
    Memory(#[source] GuestMemoryError),
    /// The disk image failed.
    #[error("disk image i/o failed")]
    Image(#[source] vhd::Error),
}

/// What the device does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    /// Write `status` to the status byte and return the chain with `used`
    /// bytes written.
    Status { status: u8, used: u32 },
    /// The chain cannot be answered (no status byte): return it with 0 bytes.
    NoStatus,
}

/// What a request needs from the device.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub image: &'a dyn vhd::DiskImage,
    pub capacity: u64,
    pub read_only: bool,
    pub limits: Limits,
    pub id: &'a [u8; ID_BYTES],
    pub discard: bool,
    pub write_zeroes: bool,
    pub writethrough: bool,
}

/// Serves the request whose buffers are in `bufs` (consumed: header and
/// status bytes are cut out of them).
pub(crate) fn handle<M: GuestMemoryBackend>(
    mem: &M,
    bufs: &mut ChainBuffers,
    ctx: &Context<'_>,
) -> Completion {
    let Some(status_addr) = take_status(&mut bufs.writable) else {
        log::debug!("virtio-blk: request without a device-writable status byte dropped");
        return Completion::NoStatus;
    };
    let (status, used) = match execute(mem, bufs, ctx) {
        Ok(done) => done,
        Err(e) => {
            log_error(&e);
            let data_in = total(&bufs.writable);
            (VIRTIO_BLK_S_IOERR, used_len(data_in, 0))
        }
    };
    let status = u8::try_from(status).unwrap_or(1);
    if mem.write_obj(status, status_addr).is_err() {
        // Checked by the chain walk; only a region removed under us fails.
        return Completion::NoStatus;
    }
    Completion::Status { status, used }
}

fn log_error(e: &RequestError) {
    match e {
        RequestError::Image(source) => log::warn!("virtio-blk: {e}: {source}"),
        RequestError::Memory(source) => log::debug!("virtio-blk: {e}: {source}"),
        _ => log::debug!("virtio-blk: malformed request: {e}"),
    }
}

/// The used length: bytes written contiguously from the start of the
/// device-writable area (the status byte counts when all data before it was
/// written).
fn used_len(data_in: u64, written: u64) -> u32 {
    let n = if written == data_in {
        written + 1
    } else {
        written
    };
    u32::try_from(n).unwrap_or(0)
}

/// Removes the last device-writable byte from `writable` and returns its
/// address.
fn take_status(writable: &mut Vec<Segment>) -> Option<GuestAddress> {
    let last = writable.last_mut()?;
    // Segments are never empty (the walk skips zero-length buffers).
    let offset = u64::from(last.len.checked_sub(1)?);
    let addr = last.addr.checked_add(offset)?;
    last.len -= 1;
    if last.len == 0 {
        writable.pop();
    }
    Some(addr)
}

fn total(segs: &[Segment]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

/// Reads `buf.len()` bytes starting `skip` bytes into the concatenation of
/// `segs`. Returns false when the segments are too short.
fn read_stream<M: GuestMemoryBackend>(
    mem: &M,
    segs: &[Segment],
    mut skip: u64,
    buf: &mut [u8],
) -> Result<bool, RequestError> {
    let mut done = 0usize;
    for seg in segs {
        if done == buf.len() {
            break;
        }
        let len = u64::from(seg.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let avail = usize::try_from(len - skip).unwrap_or(usize::MAX);
        let n = avail.min(buf.len() - done);
        let addr = seg
            .addr
            .checked_add(skip)
            .ok_or(RequestError::Memory(GuestMemoryError::GuestAddressOverflow))?;
        let dst = buf
            .get_mut(done..done + n)
            .ok_or(RequestError::Memory(GuestMemoryError::GuestAddressOverflow))?;
        mem.read_slice(dst, addr).map_err(RequestError::Memory)?;
        done += n;
        skip = 0;
    }
    Ok(done == buf.len())
}

/// Removes the first `n` bytes from `segs`.
fn drop_prefix(segs: &mut Vec<Segment>, mut n: u64) {
    let mut whole = 0;
    for seg in segs.iter_mut() {
        if n == 0 {
            break;
        }
        let len = u64::from(seg.len);
        if n >= len {
            n -= len;
            whole += 1;
        } else {
            // n < seg.len, so it fits in u32.
            let cut = u32::try_from(n).unwrap_or(seg.len);
            seg.addr = GuestAddress(seg.addr.0.wrapping_add(u64::from(cut)));
            seg.len -= cut;
            n = 0;
        }
    }
    segs.drain(..whole);
}

fn execute<M: GuestMemoryBackend>(
    mem: &M,
    bufs: &mut ChainBuffers,
    ctx: &Context<'_>,
) -> Result<(u32, u32), RequestError> {
    let mut header = [0u8; HEADER_SIZE];
    if !read_stream(mem, &bufs.readable, 0, &mut header)? {
        return Err(RequestError::ShortHeader {
            len: total(&bufs.readable),
        });
    }
    drop_prefix(&mut bufs.readable, HEADER_SIZE as u64);
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sector = u64::from_le_bytes([
        header[8], header[9], header[10], header[11], header[12], header[13], header[14],
        header[15],
    ]);
    let data_out = total(&bufs.readable);
    let data_in = total(&bufs.writable);
    match kind {
        VIRTIO_BLK_T_IN => {
            no_data(kind, "device-readable", data_out)?;
            check_rw(ctx, &bufs.writable, sector, data_in)?;
            read(mem, ctx, &bufs.writable, sector)?;
            Ok((VIRTIO_BLK_S_OK, used_len(data_in, data_in)))
        }
        VIRTIO_BLK_T_OUT => {
            no_data(kind, "device-writable", data_in)?;
            if ctx.read_only {
                return Err(RequestError::ReadOnly);
            }
            check_rw(ctx, &bufs.readable, sector, data_out)?;
            write(mem, ctx, &bufs.readable, sector)?;
            settle(ctx)?;
            Ok((VIRTIO_BLK_S_OK, 1))
        }
        VIRTIO_BLK_T_FLUSH => {
            no_data(kind, "device-readable", data_out)?;
            no_data(kind, "device-writable", data_in)?;
            ctx.image.flush().map_err(RequestError::Image)?;
            Ok((VIRTIO_BLK_S_OK, 1))
        }
        VIRTIO_BLK_T_GET_ID => {
            no_data(kind, "device-readable", data_out)?;
            if data_in == 0 {
                return Err(RequestError::MissingData { kind });
            }
            let written = get_id(mem, ctx, &bufs.writable)?;
            Ok((VIRTIO_BLK_S_OK, used_len(data_in, written)))
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            let negotiated = if kind == VIRTIO_BLK_T_DISCARD {
                ctx.discard
            } else {
                ctx.write_zeroes
            };
            if !negotiated {
                return Ok((VIRTIO_BLK_S_UNSUPP, used_len(data_in, 0)));
            }
            no_data(kind, "device-writable", data_in)?;
            if ctx.read_only {
                return Err(RequestError::ReadOnly);
            }
            let status = ranges(mem, ctx, &bufs.readable, kind == VIRTIO_BLK_T_DISCARD)?;
            Ok((status, 1))
        }
        _ => Ok((VIRTIO_BLK_S_UNSUPP, used_len(data_in, 0))),
    }
}

fn no_data(kind: u32, direction: &'static str, len: u64) -> Result<(), RequestError> {
    if len == 0 {
        Ok(())
    } else {
        Err(RequestError::WrongDirection {
            kind,
            direction,
            len,
        })
    }
}

/// Checks a read or write: length, segment count and sizes, and range.
fn check_rw(
    ctx: &Context<'_>,
    segs: &[Segment],
    sector: u64,
    len: u64,
) -> Result<(), RequestError> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(RequestError::BadLength {
            len,
            unit: SECTOR_SIZE,
        });
    }
    let max = ctx.limits.seg_max;
    if u32::try_from(segs.len()).map_or(true, |n| n > max) {
        return Err(RequestError::TooManySegments {
            count: segs.len(),
            max,
        });
    }
    if let Some(big) = segs.iter().find(|s| s.len > ctx.limits.size_max) {
        return Err(RequestError::SegmentTooLarge {
            len: big.len,
            max: ctx.limits.size_max,
        });
    }
    check_range(ctx, sector, len)
}

fn check_range(ctx: &Context<'_>, sector: u64, len_bytes: u64) -> Result<(), RequestError> {
    let end = sector
        .checked_mul(SECTOR_SIZE)
        .and_then(|start| start.checked_add(len_bytes));
    match end {
        Some(end) if end <= ctx.capacity.saturating_mul(SECTOR_SIZE) => Ok(()),
        _ => Err(RequestError::OutOfRange {
            sector,
            len_bytes,
            capacity: ctx.capacity,
        }),
    }
}

/// After a write-like request: in writethrough mode the data must be
/// durable before completion is reported.
fn settle(ctx: &Context<'_>) -> Result<(), RequestError> {
    if ctx.writethrough {
        ctx.image.flush().map_err(RequestError::Image)?;
    }
    Ok(())
}

/// Largest buffer handed to the image in one call when joining segments:
/// large enough that joining pays, small enough that an image never sees a
/// guest-sized buffer (a request may carry seg_max * size_max bytes).
const MAX_JOINED: u32 = 4 << 20;

/// Joins segments that are adjacent in guest memory and in one region, up
/// to [`MAX_JOINED`] bytes, so that a buffer the guest split into pages
/// costs one image call.
fn coalesce<M: GuestMemoryBackend>(
    mem: &M,
    segs: &[Segment],
    mut f: impl FnMut(Segment) -> Result<(), RequestError>,
) -> Result<(), RequestError> {
    let mut iter = segs.iter().copied();
    let Some(mut cur) = iter.next() else {
        return Ok(());
    };
    for next in iter {
        let joined = cur
            .addr
            .checked_add(u64::from(cur.len))
            .filter(|end| *end == next.addr)
            .and_then(|_| cur.len.checked_add(next.len))
            .filter(|&len| len <= MAX_JOINED)
            .filter(|&len| check_buffer(mem, cur.addr, len).is_ok());
        match joined {
            Some(len) => cur.len = len,
            None => {
                f(cur)?;
                cur = next;
            }
        }
    }
    f(cur)
}

fn read<M: GuestMemoryBackend>(
    mem: &M,
    ctx: &Context<'_>,
    segs: &[Segment],
    sector: u64,
) -> Result<(), RequestError> {
    // check_range proved sector * 512 + total fits in u64.
    let mut offset = sector * SECTOR_SIZE;
    coalesce(mem, segs, |seg| {
        with_buffer_mut(mem, seg, |buf| ctx.image.read_at(buf, offset))
            .map_err(RequestError::Memory)?
            .map_err(RequestError::Image)?;
        offset += u64::from(seg.len);
        Ok(())
    })
}

fn write<M: GuestMemoryBackend>(
    mem: &M,
    ctx: &Context<'_>,
    segs: &[Segment],
    sector: u64,
) -> Result<(), RequestError> {
    let mut offset = sector * SECTOR_SIZE;
    coalesce(mem, segs, |seg| {
        with_buffer(mem, seg, |buf| ctx.image.write_at(buf, offset))
            .map_err(RequestError::Memory)?
            .map_err(RequestError::Image)?;
        offset += u64::from(seg.len);
        Ok(())
    })
}

/// Writes the device ID into the device-writable data; returns the bytes
/// written.
fn get_id<M: GuestMemoryBackend>(
    mem: &M,
    ctx: &Context<'_>,
    segs: &[Segment],
) -> Result<u64, RequestError> {
    let mut rest: &[u8] = ctx.id;
    let mut written = 0u64;
    for seg in segs {
        if rest.is_empty() {
            break;
        }
        let n = rest
            .len()
            .min(usize::try_from(seg.len).unwrap_or(usize::MAX));
        let (now, later) = rest.split_at(n);
        mem.write_slice(now, seg.addr)
            .map_err(RequestError::Memory)?;
        written += now.len() as u64;
        rest = later;
    }
    Ok(written)
}

/// One `struct virtio_blk_discard_write_zeroes`.
#[derive(Debug, Clone, Copy)]
struct Range {
    sector: u64,
    num_sectors: u32,
    flags: u32,
}

/// Serves DISCARD (`discard` true) or WRITE_ZEROES: every range is copied
/// out of guest memory and checked before the first one is executed.
fn ranges<M: GuestMemoryBackend>(
    mem: &M,
    ctx: &Context<'_>,
    segs: &[Segment],
    discard: bool,
) -> Result<u32, RequestError> {
    let len = total(segs);
    let unit = RANGE_SIZE as u64;
    if len == 0 || !len.is_multiple_of(unit) {
        return Err(RequestError::BadLength { len, unit });
    }
    let (max_seg, max_sectors, what) = if discard {
        (
            ctx.limits.max_discard_seg,
            ctx.limits.max_discard_sectors,
            "discard",
        )
    } else {
        (
            ctx.limits.max_write_zeroes_seg,
            ctx.limits.max_write_zeroes_sectors,
            "write zeroes",
        )
    };
    let count = len / unit;
    if count > u64::from(max_seg) {
        return Err(RequestError::OverLimit {
            what: if discard {
                "discard segment count"
            } else {
                "write zeroes segment count"
            },
            max: max_seg,
            got: count,
        });
    }
    // count <= max_seg, a u32 the device chose.
    let mut list = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for i in 0..count {
        let mut raw = [0u8; RANGE_SIZE];
        read_stream(mem, segs, i * unit, &mut raw)?;
        let r = Range {
            sector: u64::from_le_bytes(raw[0..8].try_into().unwrap_or([0; 8])),
            num_sectors: u32::from_le_bytes(raw[8..12].try_into().unwrap_or([0; 4])),
            flags: u32::from_le_bytes(raw[12..16].try_into().unwrap_or([0; 4])),
        };
        list.push(r);
    }
    let allowed_flags = if discard {
        0
    } else {
        VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
    };
    if list.iter().any(|r| r.flags & !allowed_flags != 0) {
        log::debug!("virtio-blk: {what} with unsupported flags");
        return Ok(VIRTIO_BLK_S_UNSUPP);
    }
    for r in &list {
        if r.num_sectors > max_sectors {
            return Err(RequestError::OverLimit {
                what: if discard {
                    "discard sectors"
                } else {
                    "write zeroes sectors"
                },
                max: max_sectors,
                got: u64::from(r.num_sectors),
            });
        }
        check_range(ctx, r.sector, u64::from(r.num_sectors) * SECTOR_SIZE)?;
    }
    for r in &list {
        let offset = r.sector * SECTOR_SIZE;
        let bytes = u64::from(r.num_sectors) * SECTOR_SIZE;
        if bytes == 0 {
            continue;
        }
        let done = if discard {
            ctx.image.discard(offset, bytes)
        } else if r.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 {
            ctx.image.write_zeroes(offset, bytes)
        } else {
            // Without UNMAP the range must stay allocated: write real zeros.
            write_explicit_zeroes(ctx.image, offset, bytes)
        };
        match done {
            Ok(()) => {}
            // The format cannot do it (a fixed image cannot deallocate):
            // the request is unsupported, not an I/O error.
            Err(e) if discard && e.kind() == vhd::ErrorKind::Unsupported => {
                log::debug!("virtio-blk: discard unsupported by the image: {e}");
                return Ok(VIRTIO_BLK_S_UNSUPP);
            }
            Err(e) => return Err(RequestError::Image(e)),
        }
    }
    settle(ctx)?;
    Ok(VIRTIO_BLK_S_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            addr: GuestAddress(addr),
            len,
        }
    }

    #[test]
    fn status_is_the_last_writable_byte() {
        let mut w = vec![seg(0x1000, 512), seg(0x3000, 1)];
        assert_eq!(take_status(&mut w), Some(GuestAddress(0x3000)));
        assert_eq!(w, vec![seg(0x1000, 512)]);
        let mut w = vec![seg(0x1000, 513)];
        assert_eq!(take_status(&mut w), Some(GuestAddress(0x1200)));
        assert_eq!(w, vec![seg(0x1000, 512)]);
        assert_eq!(take_status(&mut Vec::new()), None);
    }

    #[test]
    fn prefix_is_cut_across_segments() {
        let mut r = vec![seg(0x1000, 10), seg(0x2000, 10), seg(0x3000, 4)];
        drop_prefix(&mut r, 16);
        assert_eq!(r, vec![seg(0x2006, 4), seg(0x3000, 4)]);
        let mut r = vec![seg(0x1000, 16)];
        drop_prefix(&mut r, 16);
        assert!(r.is_empty());
    }

    #[test]
    fn adjacent_segments_are_joined_up_to_a_limit() {
        use vm_memory::GuestMemoryMmap;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 16 << 20),
            (GuestAddress(16 << 20), 16 << 20),
        ])
        .unwrap();
        let calls = |segs: &[Segment]| {
            let mut v = Vec::new();
            coalesce(&mem, segs, |s| {
                v.push((s.addr.0, s.len));
                Ok(())
            })
            .unwrap();
            v
        };
        let pages: Vec<Segment> = (0..4).map(|i| seg(0x10_0000 + i * 4096, 4096)).collect();
        assert_eq!(calls(&pages), vec![(0x10_0000, 16384)]);
        // A gap, and a region boundary, split.
        assert_eq!(
            calls(&[seg(0x1000, 512), seg(0x1400, 512)]),
            vec![(0x1000, 512), (0x1400, 512)]
        );
        let edge = (16 << 20) - 4096;
        assert_eq!(
            calls(&[seg(edge, 4096), seg(16 << 20, 4096)]),
            vec![(edge, 4096), (16 << 20, 4096)]
        );
        // 8 MiB of adjacent 1 MiB segments: two calls of 4 MiB.
        let big: Vec<Segment> = (0..8)
            .map(|i| seg(0x20_0000 + i * (1 << 20), 1 << 20))
            .collect();
        assert_eq!(
            calls(&big),
            vec![(0x20_0000, 4 << 20), (0x60_0000, 4 << 20)]
        );
    }

    #[test]
    fn used_length_counts_only_contiguous_bytes() {
        assert_eq!(used_len(4096, 4096), 4097);
        assert_eq!(used_len(0, 0), 1);
        assert_eq!(used_len(4096, 0), 0);
        assert_eq!(used_len(512, 20), 20);
    }
}
