//! A guard for raw images whose format was found by probing.
//!
//! [`open`](crate::open) calls a file raw when it finds no signature. If
//! whoever writes to that raw disk (a guest) can write a VHDX or VHD
//! signature where detection looks, the next open takes the file for a
//! VHDX or VHD image, whose headers the writer chose: parent locators that
//! name host files, sizes, offsets. [`SignatureGuard`] refuses exactly the
//! writes that would leave such a signature where [`detect`](crate::detect)
//! looks (offset 0, and the footer positions at the end); everything else
//! passes through. Callers that name the format explicitly need no guard.

use std::sync::Mutex;

use crate::{DiskImage, Error, Extent, Format, ImageInfo, Result};

/// A signature and the format it makes detection report.
const SIGNATURES: [(&[u8; 8], Format); 2] =
    [(b"vhdxfile", Format::Vhdx), (b"conectix", Format::Vhd)];

/// Wraps a raw image and refuses writes that would make it detect as
/// another format.
#[derive(Debug)]
pub struct SignatureGuard<I> {
    inner: I,
    /// Held across the check and the write of any request that touches a
    /// watched window, so that two requests cannot each write half of a
    /// signature.
    windows: Mutex<()>,
}

impl<I: DiskImage> SignatureGuard<I> {
    /// Guards `inner`.
    pub fn new(inner: I) -> Self {
        SignatureGuard {
            inner,
            windows: Mutex::new(()),
        }
    }

    /// The wrapped image.
    pub fn inner(&self) -> &I {
        &self.inner
    }

    /// Start offsets of the 8-byte windows detection reads.
    fn watched(&self) -> Vec<u64> {
        let size = self.inner.virtual_size();
        let mut w = Vec::with_capacity(3);
        if size >= 8 {
            w.push(0);
        }
        if size >= 512 {
            w.push(size - 512);
            w.push(size - 511);
        }
        w
    }

    /// The error if writing `buf` at `offset` would leave a signature in a
    /// watched window. Called with the window lock held.
    fn check(&self, buf: &[u8], offset: u64, windows: &[u64]) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        for &w in windows {
            let mut after = [0u8; 8];
            self.inner.read_at(&mut after, w)?;
            for (i, b) in after.iter_mut().enumerate() {
                let at = w + i as u64;
                if (offset..end).contains(&at) {
                    let k = usize::try_from(at - offset).unwrap_or(usize::MAX);
                    if let Some(v) = buf.get(k) {
                        *b = *v;
                    }
                }
            }
            for (sig, format) in SIGNATURES {
                if &after == sig {
                    return Err(Error::SignatureRefused { format, offset: w });
                }
            }
        }
        Ok(())
    }
}

impl<I: DiskImage> DiskImage for SignatureGuard<I> {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }

    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }

    fn physical_sector_size(&self) -> u32 {
        self.inner.physical_sector_size()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        let touched: Vec<u64> = self
            .watched()
            .into_iter()
            .filter(|&w| w < end && offset < w + 8)
            .collect();
        if touched.is_empty() {
            return self.inner.write_at(buf, offset);
        }
        crate::check_range(offset, buf.len() as u64, self.inner.virtual_size())?;
        let _held = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.check(buf, offset, &touched)?;
        self.inner.write_at(buf, offset)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    // Zeros never form a signature (neither holds a zero byte), so zeroing
    // and discarding pass through; a guarded write sees their result
    // because it reads the window under the lock.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.write_zeroes(offset, len)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.discard(offset, len)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        self.inner.block_status(offset, len)
    }

    fn info(&self) -> ImageInfo {
        self.inner.info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CreateOptions, ImageType, OpenOptions};

    fn raw(dir: &std::path::Path, size: u64) -> SignatureGuard<crate::Image> {
        let path = dir.join("disk.raw");
        drop(
            crate::create(
                &path,
                &CreateOptions::new(Format::Raw, ImageType::Fixed, size),
            )
            .unwrap(),
        );
        SignatureGuard::new(crate::open(&path, &OpenOptions::default()).unwrap())
    }

    #[test]
    fn refuses_signatures_where_detection_looks() {
        let dir = tempfile::tempdir().unwrap();
        let g = raw(dir.path(), 1 << 20);
        let size = 1u64 << 20;
        for (buf, off) in [
            (b"vhdxfile".to_vec(), 0),
            (b"conectix".to_vec(), 0),
            (b"conectix".to_vec(), size - 512),
            (b"conectix".to_vec(), size - 511),
        ] {
            let e = g.write_at(&buf, off).unwrap_err();
            assert!(matches!(e, Error::SignatureRefused { .. }), "{e}");
            assert_eq!(e.kind(), crate::ErrorKind::ReadOnly);
        }
        // A whole first sector holding a VHDX header start.
        let mut sector = vec![0u8; 512];
        sector[..8].copy_from_slice(b"vhdxfile");
        assert!(g.write_at(&sector, 0).is_err());
        // Elsewhere, or not a signature: written.
        g.write_at(b"vhdxfile", 8).unwrap();
        g.write_at(b"conectix", size - 1024).unwrap();
        g.write_at(b"vhdxfilE", 0).unwrap();
        // Nothing refused reached the file: it still opens as raw.
        g.flush().unwrap();
        let path = dir.path().join("disk.raw");
        let again = crate::open(&path, &OpenOptions::read_only()).unwrap();
        assert_eq!(again.info().format, Format::Raw);
    }

    #[test]
    fn a_signature_cannot_be_assembled_from_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let g = raw(dir.path(), 64 << 10);
        g.write_at(b"vhdx", 0).unwrap();
        let e = g.write_at(b"file", 4).unwrap_err();
        assert!(matches!(
            e,
            Error::SignatureRefused {
                format: Format::Vhdx,
                offset: 0
            }
        ));
        // The footer windows at the end, assembled the same way.
        let size = 64u64 << 10;
        g.write_at(b"conecti", size - 511).unwrap();
        let e = g.write_at(b"x", size - 504).unwrap_err();
        assert!(matches!(
            e,
            Error::SignatureRefused {
                format: Format::Vhd,
                ..
            }
        ));
        // Two halves written at once: one of them is refused, every time.
        let b = std::sync::Barrier::new(2);
        for _ in 0..200 {
            g.write_zeroes(0, 8).unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    b.wait();
                    let _ = g.write_at(b"vhdx", 0);
                });
                s.spawn(|| {
                    b.wait();
                    let _ = g.write_at(b"file", 4);
                });
            });
            let mut head = [0u8; 8];
            g.read_at(&mut head, 0).unwrap();
            assert_ne!(&head, b"vhdxfile");
        }
    }

    #[test]
    fn tiny_images_and_out_of_range_writes() {
        let dir = tempfile::tempdir().unwrap();
        let g = raw(dir.path(), 512);
        assert!(g.write_at(b"conectix", 0).is_err());
        assert!(matches!(
            g.write_at(b"12345678", 508).unwrap_err(),
            Error::OutOfRange { .. }
        ));
        g.write_zeroes(0, 512).unwrap();
    }
}
