//! Direct kernel boot: detects the kernel format, loads it through
//! linux-loader, places the command line and initrd and writes the
//! protocol's boot information.
//!
//! - bzImage (Linux boot protocol 2.12 or later, `XLF_KERNEL_64`): entered at
//!   the 64-bit entry (load address + 0x200) with boot_params in `rsi`. The
//!   64-bit entry is the one Firecracker uses; it needs only the VMM's
//!   identity map and skips the kernel's own long-mode switch, and the
//!   32-bit protected-mode path is exercised by PVH anyway.
//! - ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note: PVH, entered in 32-bit
//!   protected mode with hvm_start_info in `rbx`.

pub mod linux;
pub mod pvh;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::{self, KernelLoader, KernelLoaderResult, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::config::BootConfig;
use crate::layout::{self, CMDLINE_MAX_SIZE, CMDLINE_START, HIGH_MEMORY_START};
use crate::x86::regs::EntryPoint;

/// Kernel image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// Linux bzImage.
    BzImage,
    /// ELF with a PVH entry note.
    PvhElf,
}

/// What went wrong while loading the kernel or writing boot information.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A boot file could not be opened or read.
    #[error("cannot read {what} {path}")]
    Io {
        /// "kernel" or "initrd".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel is neither an ELF nor a bzImage.
    #[error("kernel {0} is neither an ELF image nor a bzImage (no ELF magic, no HdrS header)")]
    UnknownFormat(PathBuf),
    /// An ELF kernel without a PVH entry note.
    #[error(
        "ELF kernel {0} has no XEN_ELFNOTE_PHYS32_ENTRY note; only PVH entry is supported for ELF kernels"
    )]
    ElfWithoutPvh(PathBuf),
    /// The bzImage's setup header is unusable.
    #[error("bzImage {path} is unsupported: {reason}")]
    BzImage {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// linux-loader refused the image.
    #[error("cannot load kernel {path}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: loader::Error,
    },
    /// The image or its initrd does not fit guest memory.
    #[error("{what} of {size} bytes does not fit below {limit:#x} in guest memory")]
    TooBig {
        /// "kernel" or "initrd".
        what: &'static str,
        /// Bytes needed.
        size: u64,
        /// Address limit.
        limit: u64,
    },
    /// The command line is longer than the kernel accepts.
    #[error("kernel command line is {len} bytes; the kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Length without NUL.
        len: usize,
        /// Kernel limit.
        max: usize,
    },
    /// The command line has characters the loader refuses.
    #[error("invalid kernel command line")]
    Cmdline(#[source] linux_loader::cmdline::Error),
    /// Writing the command line failed.
    #[error("cannot write the command line to guest memory")]
    CmdlineWrite(#[source] loader::Error),
    /// Writing boot_params or hvm_start_info failed.
    #[error("cannot write the boot information to guest memory")]
    Configure(#[source] linux_loader::configurator::Error),
    /// Guest memory access failed.
    #[error("guest memory access failed while loading {0}")]
    Memory(&'static str, #[source] GuestMemoryError),
}

/// Everything the vCPU set-up needs from the boot step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSetup {
    /// Format that was detected.
    pub format: KernelFormat,
    /// How the boot vCPU enters.
    pub entry: EntryPoint,
    /// First address after the kernel (including its declared init size).
    pub kernel_end: u64,
    /// Where the initrd went: address and size.
    pub initrd: Option<(u64, u64)>,
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> BootError + 'p {
    move |source| BootError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Detects the kernel format from its content.
pub fn detect_format(kernel: &mut File, path: &Path) -> Result<KernelFormat, BootError> {
    let mut head = [0u8; 0x206];
    kernel
        .seek(SeekFrom::Start(0))
        .map_err(io_err("kernel", path))?;
    let n = read_up_to(kernel, &mut head).map_err(io_err("kernel", path))?;
    if n >= 4 && head[..4] == *b"\x7fELF" {
        return Ok(KernelFormat::PvhElf);
    }
    if n >= 0x206 && head[0x202..0x206] == *b"HdrS" {
        return Ok(KernelFormat::BzImage);
    }
    Err(BootError::UnknownFormat(path.to_path_buf()))
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Builds the linux-loader command line from the configured string.
pub fn make_cmdline(text: &str) -> Result<Cmdline, BootError> {
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(BootError::Cmdline)?;
    if !text.trim().is_empty() {
        cmdline
            .insert_str(text.trim())
            .map_err(BootError::Cmdline)?;
    }
    Ok(cmdline)
}

/// Places an initrd of `size` bytes as high as possible below `limit`
/// (exclusive), page-aligned, not below `floor`.
pub fn place_initrd(size: u64, floor: u64, limit: u64) -> Result<u64, BootError> {
    let too_big = BootError::TooBig {
        what: "initrd",
        size,
        limit,
    };
    let start = limit.checked_sub(size).ok_or(too_big)? & !0xfff;
    if start < floor {
        return Err(BootError::TooBig {
            what: "initrd",
            size,
            limit,
        });
    }
    Ok(start)
}

/// Loads the initrd file at the highest suitable address.
fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    floor: u64,
    limit: u64,
) -> Result<(u64, u64), BootError> {
    let mut file = File::open(path).map_err(io_err("initrd", path))?;
    let size = file.metadata().map_err(io_err("initrd", path))?.len();
    let addr = place_initrd(size, floor, limit)?;
    let len = usize::try_from(size).map_err(|_| BootError::TooBig {
        what: "initrd",
        size,
        limit,
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| BootError::Memory("initrd", e))?;
    Ok((addr, size))
}

/// Loads the kernel, command line and initrd; writes boot_params or
/// hvm_start_info with the e820 map and `rsdp`.
pub fn load(
    mem: &GuestMemoryMmap,
    config: &BootConfig,
    memory_size: u64,
    rsdp: GuestAddress,
) -> Result<BootSetup, BootError> {
    let path = config.kernel.as_path();
    let mut kernel = File::open(path).map_err(io_err("kernel", path))?;
    let format = detect_format(&mut kernel, path)?;
    let low_end = layout::low_memory_end(memory_size);
    let cmdline = make_cmdline(&config.cmdline)?;
    match format {
        KernelFormat::BzImage => {
            let header = linux::check_header(&mut kernel, path)?;
            let result = load_with::<loader::BzImage>(mem, &mut kernel, path)?;
            let kernel_end = linux::kernel_end(&result, &header)?;
            if kernel_end > low_end {
                return Err(BootError::TooBig {
                    what: "kernel",
                    size: kernel_end - result.kernel_load.0,
                    limit: low_end,
                });
            }
            let max_cmdline = linux::max_cmdline(&header);
            let len = cmdline
                .as_cstring()
                .map_err(BootError::Cmdline)?
                .as_bytes()
                .len();
            if len > max_cmdline {
                return Err(BootError::CmdlineTooLong {
                    len,
                    max: max_cmdline,
                });
            }
            loader::load_cmdline(mem, CMDLINE_START, &cmdline).map_err(BootError::CmdlineWrite)?;
            let initrd = match &config.initrd {
                Some(p) => {
                    let limit = linux::initrd_limit(&header).min(low_end);
                    Some(load_initrd(mem, p, kernel_end, limit)?)
                }
                None => None,
            };
            let params = linux::boot_params(&result, &layout::e820_map(memory_size), initrd, rsdp);
            linux::write(mem, &params)?;
            let entry = EntryPoint::Linux64 {
                entry: result.kernel_load.0 + linux::ENTRY_64_OFFSET,
                boot_params: layout::ZERO_PAGE_START.0,
            };
            Ok(BootSetup {
                format,
                entry,
                kernel_end,
                initrd,
            })
        }
        KernelFormat::PvhElf => {
            let result = load_with::<loader::Elf>(mem, &mut kernel, path)?;
            let PvhBootCapability::PvhEntryPresent(entry) = result.pvh_boot_cap else {
                return Err(BootError::ElfWithoutPvh(path.to_path_buf()));
            };
            if result.kernel_end > low_end {
                return Err(BootError::TooBig {
                    what: "kernel",
                    size: result.kernel_end,
                    limit: low_end,
                });
            }
            loader::load_cmdline(mem, CMDLINE_START, &cmdline).map_err(BootError::CmdlineWrite)?;
            let kernel_end = result.kernel_end.next_multiple_of(4096);
            let initrd = match &config.initrd {
                Some(p) => Some(load_initrd(mem, p, kernel_end, low_end)?),
                None => None,
            };
            pvh::write(mem, &layout::e820_map(memory_size), initrd, rsdp)?;
            let entry = EntryPoint::Pvh {
                entry: entry.0,
                start_info: layout::PVH_INFO_START.0,
            };
            Ok(BootSetup {
                format,
                entry,
                kernel_end,
                initrd,
            })
        }
    }
}

fn load_with<L: KernelLoader>(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    path: &Path,
) -> Result<KernelLoaderResult, BootError> {
    L::load(mem, None, kernel, Some(HIGH_MEMORY_START)).map_err(|source| BootError::Load {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_goes_high_and_page_aligned() {
        assert_eq!(
            place_initrd(0x1800, 0x20_0000, 0x800_0000).unwrap(),
            0x7ff_e000
        );
        assert_eq!(
            place_initrd(0x1000, 0x20_0000, 0x800_0000).unwrap(),
            0x7ff_f000
        );
        assert!(place_initrd(0x800_0000, 0x20_0000, 0x800_0000).is_err());
        assert!(place_initrd(u64::MAX, 0, 0x800_0000).is_err());
    }

    #[test]
    fn cmdline_is_checked() {
        assert!(make_cmdline("console=ttyS0 foo=bar").is_ok());
        assert!(make_cmdline("").is_ok());
        assert!(make_cmdline("bad\u{7}").is_err());
    }
}
