//! A guard for raw images whose format was found by probing.
//!
//! [`open`](crate::open) calls a file raw when it finds no signature. If
//! whoever writes to that raw disk (a guest) can write a VHDX or VHD
//! signature where detection looks, the next open takes the file for a
//! VHDX or VHD image, whose headers the writer chose: parent locators that
//! name host files, sizes, offsets. If it can write the signature of a
//! format detection refuses (QCOW, VMDK, VDI, QED), the disk no longer
//! opens, and a tool that reads those formats would take the writer's
//! container for the disk. [`SignatureGuard`] refuses exactly the writes,
//! zeroing and discards that would leave such a signature where
//! [`detect`](crate::detect) looks (offsets 0 and 0x40, and the footer
//! positions at the end); everything else passes through. Callers that name
//! the format explicitly need no guard.

use std::sync::{Mutex, MutexGuard};

use crate::open::{FOREIGN_SIGNATURES, MAX_SIGNATURE, SIGNATURES};
use crate::{DiskImage, Error, Extent, ImageInfo, Result};

/// Every signature detection honours: the formats it opens, and those it
/// refuses (a raw disk made to look like one would no longer open).
fn all_signatures() -> impl Iterator<Item = &'static (crate::open::At, &'static [u8], &'static str)>
{
    SIGNATURES.iter().chain(FOREIGN_SIGNATURES)
}

/// Wraps a raw image and refuses writes that would make it detect as
/// another format.
#[derive(Debug)]
pub struct SignatureGuard<I> {
    inner: I,
    /// Held across the check and the write of any request that touches a
    /// watched window, so that two requests cannot each write half of a
    /// signature.
    windows: Mutex<()>,
    /// The watched windows for the size the image had when guarded, so
    /// that a write far from them costs one comparison per window.
    watched: Vec<(u64, usize)>,
    /// That size.
    watched_size: u64,
}

/// The windows detection reads in an image of `size` bytes: offset, and
/// length (that of the longest signature starting there; several share
/// offset 0).
fn watched(size: u64) -> Vec<(u64, usize)> {
    let mut w: Vec<(u64, usize)> = Vec::with_capacity(4);
    for &(at, sig, _) in all_signatures() {
        if let Some(off) = at.offset(size, sig.len()) {
            match w.iter_mut().find(|(o, _)| *o == off) {
                Some((_, len)) => *len = (*len).max(sig.len()),
                None => w.push((off, sig.len())),
            }
        }
    }
    w
}

/// The watched windows a request touches, and the lock held across its
/// check and its write.
type Held<'a> = (Vec<(u64, usize)>, MutexGuard<'a, ()>);

impl<I: DiskImage> SignatureGuard<I> {
    /// Guards `inner`.
    pub fn new(inner: I) -> Self {
        let watched_size = inner.virtual_size();
        SignatureGuard {
            inner,
            windows: Mutex::new(()),
            watched: watched(watched_size),
            watched_size,
        }
    }

    /// The wrapped image.
    pub fn inner(&self) -> &I {
        &self.inner
    }

    /// The watched windows `offset..end` touches, with the window lock
    /// held, after checking the range; `None` if it touches none.
    fn hold_windows(&self, offset: u64, end: u64) -> Result<Option<Held<'_>>> {
        let size = self.inner.virtual_size();
        let resized;
        let all = if size == self.watched_size {
            &self.watched
        } else {
            resized = watched(size);
            &resized
        };
        let touches = |&(w, len): &(u64, usize)| w < end && offset < w + len as u64;
        if !all.iter().any(touches) {
            return Ok(None);
        }
        let touched: Vec<(u64, usize)> = all.iter().copied().filter(touches).collect();
        crate::check_range(offset, end - offset, size)?;
        let held = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Some((touched, held)))
    }

    /// The error if the request covering `offset..end` would leave a
    /// signature in a watched window. Called with the window lock held;
    /// `byte(i)` is the byte the request leaves at `offset + i`.
    fn check(
        &self,
        offset: u64,
        end: u64,
        byte: impl Fn(u64) -> Option<u8>,
        windows: &[(u64, usize)],
    ) -> Result<()> {
        let size = self.inner.virtual_size();
        for &(w, len) in windows {
            let mut after = [0u8; MAX_SIGNATURE];
            let after = &mut after[..len];
            self.inner.read_at(after, w)?;
            for (i, b) in after.iter_mut().enumerate() {
                let at = w + i as u64;
                if (offset..end).contains(&at)
                    && let Some(v) = byte(at - offset)
                {
                    *b = v;
                }
            }
            for &(at, sig, format) in all_signatures() {
                if at.offset(size, sig.len()) == Some(w) && after.starts_with(sig) {
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
        let Some((touched, _held)) = self.hold_windows(offset, end)? else {
            return self.inner.write_at(buf, offset);
        };
        let byte = |i: u64| usize::try_from(i).ok().and_then(|i| buf.get(i).copied());
        self.check(offset, end, byte, &touched)?;
        self.inner.write_at(buf, offset)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    // Zeros can complete a signature that holds a zero byte (QED's), so
    // zeroing and discarding are checked like writes.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let Some((touched, _held)) = self.hold_windows(offset, offset.saturating_add(len))? else {
            return self.inner.write_zeroes(offset, len);
        };
        self.check(offset, offset + len, |_| Some(0), &touched)?;
        self.inner.write_zeroes(offset, len)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let Some((touched, _held)) = self.hold_windows(offset, offset.saturating_add(len))? else {
            return self.inner.discard(offset, len);
        };
        self.check(offset, offset + len, |_| Some(0), &touched)?;
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
    use crate::{CreateOptions, Format, ImageType, OpenOptions};

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
                format: "VHDX",
                offset: 0
            }
        ));
        // The footer windows at the end, assembled the same way.
        let size = 64u64 << 10;
        g.write_at(b"conecti", size - 511).unwrap();
        let e = g.write_at(b"x", size - 504).unwrap_err();
        assert!(matches!(e, Error::SignatureRefused { format: "VHD", .. }));
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
    fn refuses_the_signatures_of_formats_detection_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let g = raw(dir.path(), 1 << 20);
        for (buf, off, format) in [
            (&b"QFI\xfb"[..], 0, "QCOW"),
            (b"KDMV", 0, "VMDK"),
            (b"COWD", 0, "VMDK"),
            (b"# Disk DescriptorFile", 0, "VMDK"),
            (b"QED\0", 0, "QED"),
            (b"\x7f\x10\xda\xbe", 0x40, "VDI"),
        ] {
            let e = g.write_at(buf, off).unwrap_err();
            assert!(
                matches!(e, Error::SignatureRefused { format: f, offset } if f == format && offset == off),
                "{e}"
            );
        }
        // QED's signature ends in a zero byte: zeroing or discarding it into
        // place is refused too, and the rest of the disk is zeroed freely.
        g.write_at(b"QEDx", 0).unwrap();
        assert!(g.write_zeroes(3, 1).is_err());
        assert!(g.discard(3, 1).is_err());
        g.write_zeroes(0, 1 << 20).unwrap();
        g.discard(0, 1 << 20).unwrap();
        // The same bytes elsewhere, and near misses, are written.
        g.write_at(b"KDMV", 512).unwrap();
        g.write_at(b"\x7f\x10\xda\xbe", 0x44).unwrap();
        g.write_at(b"KDMW", 0).unwrap();
        g.write_at(b"# Disk Descriptor", 0).unwrap();
        g.flush().unwrap();
        let path = dir.path().join("disk.raw");
        let again = crate::open(&path, &OpenOptions::read_only()).unwrap();
        assert_eq!(again.info().format, Format::Raw);
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
