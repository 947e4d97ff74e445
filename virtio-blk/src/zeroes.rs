//! Zeroing a range while keeping it allocated (WRITE_ZEROES without UNMAP).

use vhd::DiskImage;

/// Zeros written per call.
const CHUNK: usize = 64 * 1024;

/// Static zeros: lives in .bss, costs no allocation per request.
static ZEROES: [u8; CHUNK] = [0u8; CHUNK];

/// Writes `len` zero bytes at `offset` with ordinary writes, so that the
/// range is allocated afterwards (unlike [`DiskImage::write_zeroes`], which
/// may deallocate).
pub(crate) fn write_explicit_zeroes(
    image: &dyn DiskImage,
    offset: u64,
    len: u64,
) -> vhd::Result<()> {
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(len - done).map_or(CHUNK, |rest| rest.min(CHUNK));
        let at = offset.checked_add(done).ok_or(vhd::Error::OutOfRange {
            offset,
            len,
            size: image.virtual_size(),
        })?;
        image.write_at(&ZEROES[..n], at)?;
        done += n as u64;
    }
    Ok(())
}
