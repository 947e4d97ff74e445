//! Zero-copy access to guest buffers for the disk image.
//!
//! [`vhd::DiskImage`] reads into and writes from byte slices. Copying each
//! request through a bounce buffer would double the memory traffic of every
//! transfer, so the device lends the image the host mapping of the guest
//! buffer itself, for the duration of one call.

use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestMemoryBackend, GuestMemoryError};

use crate::chain::Segment;

fn usize_len(seg: Segment) -> Result<usize, GuestMemoryError> {
    usize::try_from(seg.len).map_err(|_| GuestMemoryError::InvalidBackendAddress)
}

/// Runs `f` on the bytes of the guest buffer `seg`, which the device fills
/// (a read from the disk). The buffer must lie inside one region.
pub(crate) fn with_buffer_mut<M, R>(
    mem: &M,
    seg: Segment,
    f: impl FnOnce(&mut [u8]) -> R,
) -> Result<R, GuestMemoryError>
where
    M: GuestMemoryBackend + ?Sized,
{
    let len = usize_len(seg)?;
    let slice = mem.get_slice(seg.addr, len)?;
    let guard = slice.ptr_guard_mut();
    // SAFETY: `get_slice` checked that `len` bytes at `seg.addr` lie inside
    // one mapped region (so the pointer is non-null and the length fits),
    // and `guard` keeps that mapping alive until the end of this function,
    // after the slice is dropped. The mapping is shared with the guest,
    // which may access it at any time, and a hostile guest may even point
    // requests on two queues at the same bytes: exclusivity cannot be
    // promised for guest-owned memory, so the slice is used only as the
    // destination of the image's copy (pread or memcpy), is never read back
    // by this crate, and does not outlive `f`.
    let buf = unsafe { std::slice::from_raw_parts_mut(guard.as_ptr(), guard.len()) };
    let out = f(buf);
    slice.bitmap().mark_dirty(0, len);
    Ok(out)
}

/// Runs `f` on the bytes of the guest buffer `seg`, which the device reads
/// (a write to the disk). The buffer must lie inside one region.
pub(crate) fn with_buffer<M, R>(
    mem: &M,
    seg: Segment,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, GuestMemoryError>
where
    M: GuestMemoryBackend + ?Sized,
{
    let len = usize_len(seg)?;
    let slice = mem.get_slice(seg.addr, len)?;
    let guard = slice.ptr_guard();
    // SAFETY: `get_slice` checked that `len` bytes at `seg.addr` lie inside
    // one mapped region, and `guard` keeps that mapping alive until the end
    // of this function, after the slice is dropped. The guest may change the
    // bytes while the image copies them out (its own race, which only
    // decides which bytes reach the disk); the slice is the source of a copy
    // and is confined to `f`.
    let buf = unsafe { std::slice::from_raw_parts(guard.as_ptr(), guard.len()) };
    Ok(f(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn fills_and_reads_guest_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1000), 0x2000)]).unwrap();
        let seg = Segment {
            addr: GuestAddress(0x1800),
            len: 16,
        };
        with_buffer_mut(&mem, seg, |b| b.copy_from_slice(&[7u8; 16])).unwrap();
        let mut back = [0u8; 16];
        mem.read_slice(&mut back, GuestAddress(0x1800)).unwrap();
        assert_eq!(back, [7u8; 16]);
        let sum = with_buffer(&mem, seg, |b| b.iter().map(|&x| u32::from(x)).sum::<u32>()).unwrap();
        assert_eq!(sum, 7 * 16);
    }

    #[test]
    fn refuses_buffers_outside_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1000), 0x1000)]).unwrap();
        let past = Segment {
            addr: GuestAddress(0x1f00),
            len: 0x200,
        };
        assert!(with_buffer_mut(&mem, past, |_| ()).is_err());
        let before = Segment {
            addr: GuestAddress(0),
            len: 1,
        };
        assert!(with_buffer(&mem, before, |_| ()).is_err());
    }
}
