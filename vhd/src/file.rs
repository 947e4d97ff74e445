//! A file with its path, whose operations return this crate's errors.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, OnceLock};

use crate::{Error, Result};

/// An open image file. Positional I/O only: the file cursor is never used for
/// data, so one `ImageFile` can serve several threads at once.
pub struct ImageFile {
    file: File,
    path: PathBuf,
    observer: Option<Arc<dyn IoObserver>>,
    /// A read-only window (start, length) of the file that holds the image,
    /// e.g. a member inside an OVA; `None` for the whole file.
    window: Option<(u64, u64)>,
    /// Write-back started ahead of flushes.
    behind: WriteBehind,
}

/// Bytes of a sequential run (or, in bulk mode, of any writes) between two
/// write-back starts.
const WRITE_BEHIND_KICK: u64 = 8 << 20;
/// How far past a sequential run's end a write may start and still
/// continue it.
const RUN_GAP: u64 = 4 << 20;
/// Bytes written between two sweeps of clean pages in bulk mode.
const WRITE_BEHIND_SWEEP: u64 = 64 << 20;

/// Starts write-back of written data before a flush asks for it, so that
/// the flush waits for a short tail instead of everything written since the
/// last one. Advice only: durability comes from
/// [`ImageFile::sync_data`] alone, and every failure here only costs speed.
///
/// Always on for sequential runs: every 8 MiB a run of writes moving
/// forward covers (at least three quarters of it written), the write-back
/// of that range starts (a guest streaming a file, a log). In
/// bulk mode ([`ImageFile::set_write_behind`]) every 8 MiB of any writes
/// starts it for the range they span, and every 64 MiB the pages whose
/// write-back has finished leave the page cache.
#[derive(Debug)]
struct WriteBehind {
    bulk: AtomicBool,
    /// Bulk mode: bytes written since write-back was last started, and
    /// since the last sweep.
    pending: AtomicU64,
    pending_sweep: AtomicU64,
    /// Bulk mode: lowest offset and highest end written since write-back
    /// was last started.
    lo: AtomicU64,
    hi: AtomicU64,
    /// The current sequential run's range not yet handed to write-back.
    /// A write continues the run when it starts inside it or at most
    /// [`RUN_GAP`] past its end: a format's metadata written beside the
    /// data (a VHD block's bitmap, and its footer a block ahead) does not
    /// break the run.
    run_start: AtomicU64,
    run_end: AtomicU64,
    /// Bytes written into that range.
    run_written: AtomicU64,
    /// A second open file description of the same file, for the
    /// write-behind thread: it shares the page cache but not the writer's
    /// lock, so an image closed while advice about it waits in the queue is
    /// not left locked. `None` where it cannot be opened.
    shadow: OnceLock<Option<Arc<File>>>,
}

impl Default for WriteBehind {
    fn default() -> Self {
        WriteBehind {
            bulk: AtomicBool::new(false),
            pending: AtomicU64::new(0),
            pending_sweep: AtomicU64::new(0),
            lo: AtomicU64::new(u64::MAX),
            hi: AtomicU64::new(0),
            run_start: AtomicU64::new(u64::MAX),
            run_end: AtomicU64::new(0),
            run_written: AtomicU64::new(0),
            shadow: OnceLock::new(),
        }
    }
}

impl WriteBehind {
    /// Notes `len` bytes written at `offset` of `file`. Threads racing here
    /// can only make the advice less precise.
    fn wrote(&self, file: &File, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        if self.bulk.load(Relaxed) {
            self.lo.fetch_min(offset, Relaxed);
            self.hi.fetch_max(end, Relaxed);
            if self.pending.fetch_add(len, Relaxed).saturating_add(len) >= WRITE_BEHIND_KICK {
                self.pending.store(0, Relaxed);
                let lo = self.lo.swap(u64::MAX, Relaxed);
                let hi = self.hi.swap(0, Relaxed);
                self.advise(file, lo, hi.checked_sub(lo));
            }
            if self
                .pending_sweep
                .fetch_add(len, Relaxed)
                .saturating_add(len)
                >= WRITE_BEHIND_SWEEP
            {
                self.pending_sweep.store(0, Relaxed);
                // Over the whole file, POSIX_FADV_DONTNEED also drops the
                // pages whose write-back has finished.
                self.advise(file, 0, None);
            }
            return;
        }
        let (start, run_end) = (self.run_start.load(Relaxed), self.run_end.load(Relaxed));
        if offset < start || offset > run_end.saturating_add(RUN_GAP) {
            self.run_start.store(offset, Relaxed);
            self.run_end.store(end, Relaxed);
            self.run_written.store(len, Relaxed);
            return;
        }
        let run_end = run_end.max(end);
        self.run_end.store(run_end, Relaxed);
        let written = self.run_written.fetch_add(len, Relaxed).saturating_add(len);
        let span = run_end - start;
        if span >= WRITE_BEHIND_KICK {
            self.run_start.store(run_end, Relaxed);
            self.run_written.store(0, Relaxed);
            // Only a dense run: the advice also drops the range's clean
            // pages, and a sparse one (scattered writes that happened to
            // land near each other) would cost the cache what it holds
            // between them.
            if written.saturating_mul(4) >= span.saturating_mul(3) {
                self.advise(file, start, Some(span));
            }
        }
    }
}

/// Advice queued for the write-behind thread: a file, an offset and a
/// length (`None`: to the end of the file).
type Queued = (Arc<File>, u64, Option<u64>);

/// The process's write-behind thread, started on first use; `None` if it
/// could not be.
fn write_behind_queue() -> Option<&'static SyncSender<Queued>> {
    static QUEUE: OnceLock<Option<SyncSender<Queued>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel::<Queued>(64);
            std::thread::Builder::new()
                .name("vhd-write-behind".into())
                .spawn(move || {
                    for (file, offset, len) in rx {
                        fadvise_dontneed(&file, offset, len);
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// POSIX_FADV_DONTNEED on `len` bytes at `offset` (`None`: to the end). On
/// a range just written it starts the write-back of its dirty pages without
/// waiting for it, and drops only pages already clean.
fn fadvise_dontneed(file: &File, offset: u64, len: Option<u64>) {
    let len = len.and_then(std::num::NonZeroU64::new);
    let _ = rustix::fs::fadvise(file, offset, len, rustix::fs::Advice::DontNeed);
}

impl WriteBehind {
    /// Has [`fadvise_dontneed`] applied to `file` by the write-behind
    /// thread. Starting write-back is slow (the file system allocates
    /// delayed blocks and builds the requests then: about 2 ms per 8 MiB
    /// here), so the writer hands it over instead of stalling. A full queue
    /// drops the advice (the next flush does the work instead); without the
    /// thread or a second descriptor, the writer applies it itself.
    fn advise(&self, file: &File, offset: u64, len: Option<u64>) {
        if len == Some(0) {
            return;
        }
        let shadow = self.shadow.get_or_init(|| {
            File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .ok()
                .map(Arc::new)
        });
        match (shadow, write_behind_queue()) {
            (Some(f), Some(tx)) => {
                let _ = tx.try_send((Arc::clone(f), offset, len));
            }
            _ => fadvise_dontneed(file, offset, len),
        }
    }
}

impl std::fmt::Debug for ImageFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageFile")
            .field("path", &self.path)
            .field("observed", &self.observer.is_some())
            .field("window", &self.window)
            .finish()
    }
}

/// Sees every change an [`ImageFile`] makes, in order, after it is made.
/// Crash-consistency tests use it to rebuild the file as a power cut at any
/// point would have left it.
pub trait IoObserver: Send + Sync {
    /// `data` was written at `offset`.
    fn write(&self, offset: u64, data: &[u8]);
    /// The file was made durable (fdatasync returned).
    fn sync(&self);
    /// The file's length was set to `len`.
    fn set_len(&self, len: u64);
    /// `len` bytes at `offset` were made to read as zeros (hole punched or
    /// zero range), the file length unchanged unless the range extended it.
    fn zero(&self, offset: u64, len: u64);
}

impl ImageFile {
    /// Wraps an open file.
    pub fn new(file: File, path: &Path) -> Self {
        ImageFile {
            file,
            path: path.to_path_buf(),
            observer: None,
            window: None,
            behind: WriteBehind::default(),
        }
    }

    /// Wraps `len` bytes of `file` starting at `start` as a read-only image
    /// file (an image stored inside another file, such as an OVA member).
    /// Offsets are relative to `start`; every write fails with
    /// [`Error::ReadOnly`].
    pub fn window(file: File, path: &Path, start: u64, len: u64) -> Result<Self> {
        if start.checked_add(len).is_none() {
            return Err(Error::InvalidArgument(format!(
                "window of {len} bytes at {start} overflows"
            )));
        }
        Ok(ImageFile {
            file,
            path: path.to_path_buf(),
            observer: None,
            window: Some((start, len)),
            behind: WriteBehind::default(),
        })
    }

    /// Bulk write-behind, for a file being filled before anything reads
    /// it: every 8 MiB written, write-back of the range they span starts,
    /// and every 64 MiB the pages already clean leave the page cache, so a
    /// large output does not push everything else out of it. (Sequential
    /// runs always get write-behind.)
    pub fn set_write_behind(&self, on: bool) {
        self.behind.bulk.store(on, Relaxed);
    }

    /// Whether this is a read-only window of a larger file.
    pub fn is_window(&self) -> bool {
        self.window.is_some()
    }

    fn writable(&self) -> Result<()> {
        if self.window.is_some() {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Wraps an open file, reporting every change to `observer`.
    pub fn with_observer(file: File, path: &Path, observer: Arc<dyn IoObserver>) -> Self {
        ImageFile {
            file,
            path: path.to_path_buf(),
            observer: Some(observer),
            window: None,
            behind: WriteBehind::default(),
        }
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reads exactly `buf.len()` bytes at `offset`. A file that ends early
    /// gives an I/O error of kind `UnexpectedEof`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut offset = offset;
        if let Some((start, len)) = self.window {
            if offset
                .checked_add(buf.len() as u64)
                .is_none_or(|end| end > len)
            {
                let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(Error::io("reading", &self.path, e));
            }
            offset += start;
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io("reading", &self.path, e))
    }

    /// Reads up to `buf.len()` bytes at `offset`, zero-filling whatever lies
    /// past the end of the file. Returns how many bytes came from the file.
    /// Inline, with the system call made in place (no libc frame): this is
    /// the read of every data request.
    #[inline]
    pub fn read_at_zero_fill(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let (base, limit) = match self.window {
            Some((start, len)) => {
                let avail = len.saturating_sub(offset);
                (
                    start,
                    usize::try_from(avail).map_or(buf.len(), |a| a.min(buf.len())),
                )
            }
            None => (0, buf.len()),
        };
        let mut done = 0;
        while done < limit {
            let pos = base + offset + done as u64;
            match rustix::io::pread(&self.file, &mut buf[done..limit], pos) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("reading", &self.path, e.into())),
            }
        }
        buf[done..].fill(0);
        Ok(done)
    }

    /// Writes all of `buf` at `offset`. Inline, with the system call made
    /// in place, as [`read_at_zero_fill`](Self::read_at_zero_fill).
    #[inline]
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.writable()?;
        let mut done = 0;
        while done < buf.len() {
            match rustix::io::pwrite(&self.file, &buf[done..], offset + done as u64) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(Error::io("writing", &self.path, e));
                }
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("writing", &self.path, e.into())),
            }
        }
        if let Some(o) = &self.observer {
            o.write(offset, buf);
        }
        self.behind.wrote(&self.file, offset, buf.len() as u64);
        Ok(())
    }

    /// Makes written data durable (fdatasync).
    pub fn sync_data(&self) -> Result<()> {
        if self.window.is_some() {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io("flushing", &self.path, e))?;
        if let Some(o) = &self.observer {
            o.sync();
        }
        Ok(())
    }

    /// Current length of the file.
    pub fn len(&self) -> Result<u64> {
        if let Some((_, len)) = self.window {
            return Ok(len);
        }
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("querying the size of", &self.path, e))
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Sets the length of the file.
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.writable()?;
        self.file
            .set_len(len)
            .map_err(|e| Error::io("resizing", &self.path, e))?;
        if let Some(o) = &self.observer {
            o.set_len(len);
        }
        Ok(())
    }

    /// Writes `len` zero bytes at `offset`, in bounded chunks.
    pub fn write_zeroes_at(&self, offset: u64, len: u64) -> Result<()> {
        const CHUNK: usize = 1 << 20;
        let chunk = |left: u64| usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let zeros = vec![0u8; chunk(len)];
        let mut done = 0u64;
        while done < len {
            let n = chunk(len - done);
            self.write_all_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Deallocates `len` bytes at `offset` so that they read as zeros,
    /// keeping the file size. Falls back to writing zeros where the file
    /// system cannot punch holes.
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        self.writable()?;
        use rustix::fs::{FallocateFlags, fallocate};
        match fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        ) {
            Ok(()) => {
                self.notify_zero(offset, len);
                Ok(())
            }
            Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {
                self.write_zeroes_at(offset, len)
            }
            Err(e) => Err(Error::io("punching a hole in", &self.path, e.into())),
        }
    }

    /// Makes `len` bytes at `offset` read as zeros, allocated, keeping the
    /// file size where the range is inside it.
    pub fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.writable()?;
        use rustix::fs::{FallocateFlags, fallocate};
        match fallocate(&self.file, FallocateFlags::ZERO_RANGE, offset, len) {
            Ok(()) => {
                self.notify_zero(offset, len);
                Ok(())
            }
            Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {
                self.write_zeroes_at(offset, len)
            }
            Err(e) => Err(Error::io("zeroing a range of", &self.path, e.into())),
        }
    }

    fn notify_zero(&self, offset: u64, len: u64) {
        if let Some(o) = &self.observer {
            o.zero(offset, len);
        }
    }

    /// Preallocates `len` bytes at `offset` (extending the file).
    pub fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.writable()?;
        use rustix::fs::{FallocateFlags, fallocate};
        match fallocate(&self.file, FallocateFlags::empty(), offset, len) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {
                let end = offset
                    .checked_add(len)
                    .ok_or_else(|| Error::InvalidArgument("allocation past 2^64".into()))?;
                if self.len()? < end {
                    self.set_len(end)?;
                }
                Ok(())
            }
            Err(e) => Err(Error::io("allocating space in", &self.path, e.into())),
        }
    }

    /// The next offset at or after `offset` that holds data, and the end of
    /// that data run, from the file system's hole map. `None` when only a
    /// hole follows. Falls back to "all data" where the file system cannot
    /// tell.
    pub fn next_data(&self, offset: u64) -> Result<Option<(u64, u64)>> {
        if let Some((start, len)) = self.window {
            if offset >= len {
                return Ok(None);
            }
            let found = self.next_data_raw(start + offset)?;
            return Ok(found.and_then(|(d, h)| {
                let (d, h) = (d.saturating_sub(start), h.saturating_sub(start).min(len));
                (d < len).then_some((d.max(offset), h))
            }));
        }
        self.next_data_raw(offset)
    }

    fn next_data_raw(&self, offset: u64) -> Result<Option<(u64, u64)>> {
        use rustix::fs::{SeekFrom, seek};
        let data = match seek(&self.file, SeekFrom::Data(offset)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => return Ok(None),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                return Ok(Some((offset, u64::MAX)));
            }
            Err(e) => return Err(Error::io("mapping holes of", &self.path, e.into())),
        };
        let hole = match seek(&self.file, SeekFrom::Hole(data)) {
            Ok(h) => h,
            Err(rustix::io::Errno::NXIO) => u64::MAX,
            Err(e) => return Err(Error::io("mapping holes of", &self.path, e.into())),
        };
        Ok(Some((data, hole)))
    }
}
