//! Opening images: format detection from content, the `Image` enum over every
//! format, and the resolution of differencing parents.

use std::fs::OpenOptions as FsOpenOptions;
use std::path::{Path, PathBuf};

use crate::file::ImageFile;
use crate::formats::raw::RawImage;
use crate::formats::vhd::VhdImage;
use crate::formats::vhdx::VhdxImage;
use crate::{CheckReport, DiskImage, Error, Extent, Format, ImageInfo, ImageType, Result};

/// Default limit on the length of a differencing chain.
pub const DEFAULT_MAX_CHAIN_DEPTH: u32 = 64;

/// How to open an image.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Open without write access. Parents are always opened read-only.
    pub read_only: bool,
    /// Skip detection and open as this format.
    pub format: Option<Format>,
    /// Directories inside which parent locators may be followed. `None`
    /// means the directory that holds the image being opened.
    pub allowed_parent_dirs: Option<Vec<PathBuf>>,
    /// Longest differencing chain accepted (the image itself counts as 1).
    pub max_chain_depth: u32,
    /// Take an exclusive advisory lock (flock) on images opened writable, so
    /// that a second writer is refused.
    pub lock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            format: None,
            allowed_parent_dirs: None,
            max_chain_depth: DEFAULT_MAX_CHAIN_DEPTH,
            lock: true,
        }
    }
}

impl OpenOptions {
    /// Options for a read-only open.
    pub fn read_only() -> Self {
        OpenOptions {
            read_only: true,
            ..Default::default()
        }
    }
}

/// How the current open sits in a differencing chain.
#[derive(Debug, Clone)]
pub struct ChainContext {
    /// 1 for the image the caller named, 2 for its parent, ...
    pub depth: u32,
    /// Canonical directories inside which parents may be opened.
    pub allowed_dirs: Vec<PathBuf>,
    /// The options of the top-level open.
    pub options: OpenOptions,
}

/// An open image of any supported format.
#[derive(Debug)]
pub enum Image {
    /// A raw image.
    Raw(RawImage),
    /// A VHD image.
    Vhd(VhdImage),
    /// A VHDX image.
    Vhdx(VhdxImage),
}

impl Image {
    /// The container format.
    pub fn format(&self) -> Format {
        match self {
            Image::Raw(_) => Format::Raw,
            Image::Vhd(_) => Format::Vhd,
            Image::Vhdx(_) => Format::Vhdx,
        }
    }

    /// Changes the virtual size to `new_size` bytes (formats that support it).
    pub fn resize(&self, new_size: u64) -> Result<()> {
        match self {
            Image::Raw(i) => i.resize(new_size),
            Image::Vhd(i) => i.resize(new_size),
            Image::Vhdx(i) => i.resize(new_size),
        }
    }

    /// Marks a new image as staging, being filled before anything can open
    /// it (see [`VhdImage::set_staging`]): its file is written behind in
    /// bulk (see
    /// [`ImageFile::set_write_behind`](crate::ImageFile::set_write_behind)),
    /// so that its final flush waits for a short tail and a large output
    /// does not push everything else out of the page cache.
    pub fn set_staging(&self, staging: bool) {
        match self {
            Image::Raw(i) => i.image_file().set_write_behind(staging),
            Image::Vhd(i) => i.set_staging(staging),
            Image::Vhdx(i) => i.image_file().set_write_behind(staging),
        }
    }

    fn inner(&self) -> &dyn DiskImage {
        match self {
            Image::Raw(i) => i,
            Image::Vhd(i) => i,
            Image::Vhdx(i) => i,
        }
    }
}

impl DiskImage for Image {
    fn virtual_size(&self) -> u64 {
        self.inner().virtual_size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner().logical_sector_size()
    }
    fn physical_sector_size(&self) -> u32 {
        self.inner().physical_sector_size()
    }
    fn read_only(&self) -> bool {
        self.inner().read_only()
    }
    // The data path calls each format directly and inline: every frame
    // still on the stack when the read or write system call returns costs
    // a mispredicted return where the kernel refills the return stack
    // buffer (a Spectre mitigation), which is measurable on 4 KiB requests.
    #[inline]
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match self {
            Image::Raw(i) => i.read_at(buf, offset),
            Image::Vhd(i) => i.read_at(buf, offset),
            Image::Vhdx(i) => i.read_at(buf, offset),
        }
    }
    #[inline]
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        match self {
            Image::Raw(i) => i.write_at(buf, offset),
            Image::Vhd(i) => i.write_at(buf, offset),
            Image::Vhdx(i) => i.write_at(buf, offset),
        }
    }
    fn flush(&self) -> Result<()> {
        self.inner().flush()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner().write_zeroes(offset, len)
    }
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.inner().discard(offset, len)
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        self.inner().block_status(offset, len)
    }
    fn info(&self) -> ImageInfo {
        self.inner().info()
    }
}

/// Opens a file for an image, taking the writer's lock when asked.
pub(crate) fn open_file(path: &Path, read_only: bool) -> Result<ImageFile> {
    let file = FsOpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    Ok(ImageFile::new(file, path))
}

fn lock_exclusive(file: &ImageFile) -> Result<()> {
    use rustix::fs::{FlockOperation, flock};
    // A lock can outlive its holder's close for a moment when another
    // thread forks (the child shares the descriptor until it execs), so a
    // busy lock is retried briefly before it is reported.
    for _ in 0..50 {
        match flock(file.file(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                std::thread::sleep(std::time::Duration::from_millis(4))
            }
            Err(e) => return Err(Error::io("locking", file.path(), e.into())),
        }
    }
    Err(Error::io(
        "locking (another process has it open for writing)",
        file.path(),
        std::io::Error::from(std::io::ErrorKind::WouldBlock),
    ))
}

/// Where a signature sits in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// At this offset from the start.
    Start(u64),
    /// This many bytes before the end.
    End(u64),
}

impl At {
    /// The signature's offset in a file of `len` bytes, if it fits there.
    pub(crate) fn offset(self, len: u64, sig_len: usize) -> Option<u64> {
        let off = match self {
            At::Start(o) => o,
            At::End(k) => len.checked_sub(k)?,
        };
        (off.checked_add(sig_len as u64)? <= len).then_some(off)
    }
}

/// The signatures of the formats this crate reads, and the format each
/// names: VHDX at the start; VHD by its footer, or the footer's copy at the
/// start.
pub(crate) const SIGNATURES: &[(At, &[u8], &str)] = &[
    (At::Start(0), b"vhdxfile", "VHDX"),
    (At::End(512), b"conectix", "VHD"),
    // Windows before Virtual PC 2004 wrote a 511-byte footer.
    (At::End(511), b"conectix", "VHD"),
    (At::Start(0), b"conectix", "VHD"),
];

/// The signatures of image formats this crate recognises only to refuse
/// them. None of these or [`SIGNATURES`] is longer than
/// [`MAX_SIGNATURE`] bytes.
pub(crate) const FOREIGN_SIGNATURES: &[(At, &[u8], &str)] = &[
    (At::Start(0), b"QFI\xfb", "QCOW"),
    // Hosted sparse and streamOptimized extents, ESX sparse (COWD), and
    // the text descriptor ("# Disk DescriptorFile").
    (At::Start(0), b"KDMV", "VMDK"),
    (At::Start(0), b"COWD", "VMDK"),
    (At::Start(0), b"# Disk DescriptorFile", "VMDK"),
    (At::Start(0), b"QED\0", "QED"),
    // VirtualBox: the image signature 0xbeda107f, little-endian, at 0x40.
    (At::Start(0x40), b"\x7f\x10\xda\xbe", "VDI"),
];

/// No signature is longer than this.
pub(crate) const MAX_SIGNATURE: usize = 32;

const _: () = {
    let mut i = 0;
    while i < SIGNATURES.len() {
        assert!(SIGNATURES[i].1.len() <= MAX_SIGNATURE);
        i += 1;
    }
    let mut i = 0;
    while i < FOREIGN_SIGNATURES.len() {
        assert!(FOREIGN_SIGNATURES[i].1.len() <= MAX_SIGNATURE);
        i += 1;
    }
};

/// The format of an image this crate does not read, if the file holds one
/// of its signatures.
pub(crate) fn foreign_format(file: &ImageFile) -> Result<Option<&'static str>> {
    // Every signature but the footer's sits in the first bytes: one read.
    const HEAD: usize = 128;
    let len = file.len()?;
    let mut head = [0u8; HEAD];
    let head = &mut head[..usize::try_from(len).map_or(HEAD, |l| l.min(HEAD))];
    file.read_exact_at(head, 0)?;
    let mut buf = [0u8; MAX_SIGNATURE];
    for &(at, sig, name) in FOREIGN_SIGNATURES {
        let Some(off) = at.offset(len, sig.len()) else {
            continue;
        };
        let found = match head.get(usize::try_from(off).unwrap_or(usize::MAX)..) {
            Some(rest) if rest.len() >= sig.len() => &rest[..sig.len()],
            _ => {
                file.read_exact_at(&mut buf[..sig.len()], off)?;
                &buf[..sig.len()]
            }
        };
        if found == sig {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Detects the format of an open file from its content: VHDX or VHD by
/// their signatures, anything else raw, except that a file holding the
/// signature of a format this crate does not read (QCOW, VMDK, VDI, QED) is
/// refused with [`Error::ForeignFormat`].
pub fn detect(file: &ImageFile) -> Result<Format> {
    let format = detect_ours(file)?;
    if format == Format::Raw
        && let Some(name) = foreign_format(file)?
    {
        return Err(Error::ForeignFormat {
            path: file.path().to_path_buf(),
            format: name,
        });
    }
    Ok(format)
}

fn detect_ours(file: &ImageFile) -> Result<Format> {
    let len = file.len()?;
    let mut head = [0u8; 8];
    if len >= 8 {
        file.read_exact_at(&mut head, 0)?;
        if &head == b"vhdxfile" {
            return Ok(Format::Vhdx);
        }
    }
    if len >= 512 {
        let mut tail = [0u8; 8];
        file.read_exact_at(&mut tail, len - 512)?;
        if &tail == b"conectix" {
            return Ok(Format::Vhd);
        }
        file.read_exact_at(&mut tail, len - 511)?;
        if &tail == b"conectix" {
            return Ok(Format::Vhd);
        }
        if &head == b"conectix" {
            return Ok(Format::Vhd);
        }
    }
    Ok(Format::Raw)
}

/// Opens, read-only, an image stored as `len` bytes at `start` inside the
/// file at `path` (for example a disk member of an OVA package), detecting
/// its format from its content. Differencing images are opened only if
/// `options` allows their parents' directories.
pub fn open_window(path: &Path, start: u64, len: u64, options: &OpenOptions) -> Result<Image> {
    let file = FsOpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    let file = ImageFile::window(file, path, start, len)?;
    let mut allowed_dirs = Vec::new();
    for d in options.allowed_parent_dirs.iter().flatten() {
        if let Ok(c) = d.canonicalize() {
            allowed_dirs.push(c);
        }
    }
    let options = OpenOptions {
        read_only: true,
        ..options.clone()
    };
    let ctx = ChainContext {
        depth: 1,
        allowed_dirs,
        options: options.clone(),
    };
    let format = match options.format {
        Some(f) => f,
        None => detect(&file)?,
    };
    Ok(match format {
        Format::Raw => Image::Raw(RawImage::from_file(file, true)?),
        Format::Vhd => Image::Vhd(VhdImage::open(file, true, &ctx)?),
        Format::Vhdx => Image::Vhdx(VhdxImage::open(file, true, &ctx)?),
    })
}

/// Opens the image at `path`, detecting its format from its content.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Image> {
    let dir = parent_dir(path);
    let allowed = match &options.allowed_parent_dirs {
        Some(dirs) => dirs.clone(),
        None => vec![dir],
    };
    let mut allowed_dirs = Vec::with_capacity(allowed.len());
    for d in allowed {
        // A directory that does not exist allows nothing.
        if let Ok(c) = d.canonicalize() {
            allowed_dirs.push(c);
        }
    }
    let ctx = ChainContext {
        depth: 1,
        allowed_dirs,
        options: options.clone(),
    };
    open_in_chain(path, options.read_only, options.format, &ctx)
}

fn open_in_chain(
    path: &Path,
    read_only: bool,
    format: Option<Format>,
    ctx: &ChainContext,
) -> Result<Image> {
    if ctx.depth > ctx.options.max_chain_depth {
        return Err(Error::ChainTooDeep {
            path: path.to_path_buf(),
            limit: ctx.options.max_chain_depth,
        });
    }
    let file = open_file(path, read_only)?;
    if !read_only && ctx.options.lock {
        lock_exclusive(&file)?;
    }
    let format = match format {
        Some(f) => f,
        None => detect(&file)?,
    };
    Ok(match format {
        Format::Raw => Image::Raw(RawImage::from_file(file, read_only)?),
        Format::Vhd => Image::Vhd(VhdImage::open(file, read_only, ctx)?),
        Format::Vhdx => Image::Vhdx(VhdxImage::open(file, read_only, ctx)?),
    })
}

/// The directory holding `path` ("." for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Opens the parent of `child` from the paths its locators name, in order of
/// preference. Relative candidates are taken relative to the child's
/// directory. A candidate is used only if it exists and its canonical path
/// lies inside one of the allowed directories; the parent is opened
/// read-only, one level deeper in the chain. The caller checks the parent's
/// identity.
pub fn open_parent(child: &Path, candidates: &[PathBuf], ctx: &ChainContext) -> Result<Image> {
    let base = parent_dir(child);
    let mut tried = Vec::new();
    let mut refused = None;
    for c in candidates {
        let full = if c.is_absolute() {
            c.clone()
        } else {
            base.join(c)
        };
        tried.push(full.display().to_string());
        let Ok(canon) = full.canonicalize() else {
            continue;
        };
        if !canon.is_file() {
            continue;
        }
        if !ctx.allowed_dirs.iter().any(|d| canon.starts_with(d)) {
            refused.get_or_insert(canon);
            continue;
        }
        let next = ChainContext {
            depth: ctx.depth + 1,
            allowed_dirs: ctx.allowed_dirs.clone(),
            options: ctx.options.clone(),
        };
        return open_in_chain(&canon, true, None, &next);
    }
    match refused {
        Some(parent) => Err(Error::ParentNotAllowed {
            child: child.to_path_buf(),
            parent,
        }),
        None => Err(Error::ParentNotFound {
            child: child.to_path_buf(),
            tried,
        }),
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Container format.
    pub format: Format,
    /// Storage type.
    pub image_type: ImageType,
    /// Virtual size in bytes (for differencing images, `None` takes the
    /// parent's size).
    pub size: Option<u64>,
    /// Block size in bytes; `None` picks the format's default.
    pub block_size: Option<u64>,
    /// Logical sector size (512 or 4096; VHD and raw support 512 only).
    pub logical_sector_size: u32,
    /// Physical sector size (512 or 4096); `None` picks the format's default.
    pub physical_sector_size: Option<u32>,
    /// Parent image of a differencing image.
    pub parent: Option<PathBuf>,
}

impl CreateOptions {
    /// Options for a `format` image of `image_type` and `size` bytes with
    /// every other parameter at its default.
    pub fn new(format: Format, image_type: ImageType, size: u64) -> Self {
        CreateOptions {
            format,
            image_type,
            size: Some(size),
            block_size: None,
            logical_sector_size: 512,
            physical_sector_size: None,
            parent: None,
        }
    }

    /// Options for a differencing image of `format` over `parent`.
    pub fn differencing(format: Format, parent: &Path) -> Self {
        CreateOptions {
            format,
            image_type: ImageType::Differencing,
            size: None,
            block_size: None,
            logical_sector_size: 512,
            physical_sector_size: None,
            parent: Some(parent.to_path_buf()),
        }
    }
}

/// Creates a new image at `path` (which must not exist) and returns it open
/// for writing.
pub fn create(path: &Path, options: &CreateOptions) -> Result<Image> {
    if (options.image_type == ImageType::Differencing) != options.parent.is_some() {
        return Err(Error::InvalidArgument(
            "a parent is given exactly when creating a differencing image".into(),
        ));
    }
    Ok(match options.format {
        Format::Raw => {
            if options.logical_sector_size != 512 {
                return Err(Error::unsupported(
                    Format::Raw,
                    "raw images have 512-byte logical sectors",
                ));
            }
            let size = options
                .size
                .ok_or_else(|| Error::InvalidArgument("a raw image needs a size".into()))?;
            Image::Raw(RawImage::create(path, size, options.image_type)?)
        }
        Format::Vhd => Image::Vhd(VhdImage::create(path, options)?),
        Format::Vhdx => Image::Vhdx(VhdxImage::create(path, options)?),
    })
}

/// Checks the structure of the image file at `path` (format detected from
/// content), repairing what is safe to repair when `repair` is set.
pub fn check(path: &Path, repair: bool) -> Result<CheckReport> {
    let format = detect(&open_file(path, true)?)?;
    match format {
        Format::Raw => Ok(CheckReport::new(Format::Raw)),
        Format::Vhd => VhdImage::check_file(path, repair),
        Format::Vhdx => VhdxImage::check_file(path, repair),
    }
}
