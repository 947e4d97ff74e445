//! Linux boot protocol: setup header checks and the zero page
//! (`boot_params`) with the e820 map, command line, initrd and RSDP.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::KernelLoaderResult;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::layout::{CMDLINE_START, E820Entry, ZERO_PAGE_START};

/// Offset of the 64-bit entry from the protected-mode load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// "HdrS".
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// boot_flag value.
pub const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// Oldest protocol accepted: 2.12 introduced `xloadflags`.
pub const MIN_PROTOCOL: u16 = 0x020c;
/// loadflags: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 0x01;
/// xloadflags: the kernel has the 64-bit entry at +0x200.
pub const XLF_KERNEL_64: u16 = 0x0001;
/// type_of_loader: "undefined" boot loader.
pub const LOADER_UNDEFINED: u8 = 0xff;
/// Maximum number of e820 entries in the zero page.
pub const E820_MAX: usize = 128;
/// Offset of the setup header in the image and in boot_params.
const SETUP_HEADER_OFFSET: u64 = 0x1f1;

/// Reads and checks the setup header: magic, boot flag, protocol version
/// 2.12 or later, LOADED_HIGH and the 64-bit entry.
pub fn check_header(kernel: &mut File, path: &Path) -> Result<setup_header, BootError> {
    let mut hdr = setup_header::default();
    let io = |source| BootError::Io {
        what: "kernel",
        path: path.to_path_buf(),
        source,
    };
    kernel
        .seek(SeekFrom::Start(SETUP_HEADER_OFFSET))
        .map_err(io)?;
    kernel
        .read_exact(hdr.as_mut_slice())
        .map_err(|source| BootError::Io {
            what: "kernel",
            path: path.to_path_buf(),
            source,
        })?;
    validate_header(&hdr).map_err(|reason| BootError::BzImage {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(hdr)
}

/// The checks of [`check_header`] on a header already read.
pub fn validate_header(hdr: &setup_header) -> Result<(), String> {
    let magic = hdr.header;
    let flag = hdr.boot_flag;
    let version = hdr.version;
    let xloadflags = hdr.xloadflags;
    if magic != HDRS_MAGIC {
        return Err(format!("setup header magic {magic:#x} is not HdrS"));
    }
    if flag != BOOT_FLAG_MAGIC {
        return Err(format!("boot_flag {flag:#x} is not 0xaa55"));
    }
    if version < MIN_PROTOCOL {
        return Err(format!(
            "boot protocol {}.{} is older than 2.12",
            version >> 8,
            version & 0xff
        ));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err("loadflags lacks LOADED_HIGH (zImage kernels are not supported)".into());
    }
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err("xloadflags lacks XLF_KERNEL_64: no 64-bit entry point".into());
    }
    Ok(())
}

/// End of the kernel in memory: the larger of the loaded image and the
/// header's `init_size` (the memory the kernel needs while starting).
pub fn kernel_end(result: &KernelLoaderResult, hdr: &setup_header) -> Result<u64, BootError> {
    let init_size = u64::from(hdr.init_size);
    let with_init = result
        .kernel_load
        .0
        .checked_add(init_size)
        .ok_or(BootError::TooBig {
            what: "kernel",
            size: init_size,
            limit: u64::MAX,
        })?;
    Ok(with_init.max(result.kernel_end).next_multiple_of(4096))
}

/// Highest address + 1 the initrd may occupy (`initrd_addr_max`).
pub fn initrd_limit(hdr: &setup_header) -> u64 {
    let max = hdr.initrd_addr_max;
    if max == 0 {
        0x3800_0000
    } else {
        u64::from(max) + 1
    }
}

/// Longest command line the kernel accepts, without the NUL.
pub fn max_cmdline(hdr: &setup_header) -> usize {
    let size = hdr.cmdline_size;
    if size == 0 {
        255
    } else {
        usize::try_from(size).unwrap_or(usize::MAX)
    }
}

/// Fills boot_params from the loaded header and the VMM's choices.
pub fn boot_params(
    result: &KernelLoaderResult,
    e820: &[E820Entry],
    initrd: Option<(u64, u64)>,
    rsdp: GuestAddress,
) -> boot_params {
    let mut params = boot_params::default();
    if let Some(hdr) = result.setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.boot_flag = BOOT_FLAG_MAGIC;
    params.hdr.header = HDRS_MAGIC;
    params.hdr.code32_start = u32::try_from(result.kernel_load.0).unwrap_or(0);
    params.hdr.cmd_line_ptr = u32::try_from(CMDLINE_START.0).unwrap_or(0);
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = u32::try_from(addr & 0xffff_ffff).unwrap_or(0);
        params.hdr.ramdisk_size = u32::try_from(size & 0xffff_ffff).unwrap_or(0);
        params.ext_ramdisk_image = u32::try_from(addr >> 32).unwrap_or(0);
        params.ext_ramdisk_size = u32::try_from(size >> 32).unwrap_or(0);
    }
    params.acpi_rsdp_addr = rsdp.0;
    let n = e820.len().min(E820_MAX);
    for (slot, entry) in params.e820_table.iter_mut().zip(e820.iter().take(n)) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params.e820_entries = u8::try_from(n).unwrap_or(u8::MAX);
    params
}

/// Writes boot_params to the zero page.
pub fn write(mem: &GuestMemoryMmap, params: &boot_params) -> Result<(), BootError> {
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(params, ZERO_PAGE_START),
        mem,
    )
    .map_err(BootError::Configure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::e820_map;
    use vm_memory::Bytes;

    fn header() -> setup_header {
        setup_header {
            header: HDRS_MAGIC,
            boot_flag: BOOT_FLAG_MAGIC,
            version: 0x020f,
            loadflags: LOADED_HIGH,
            xloadflags: XLF_KERNEL_64,
            init_size: 0x30_0000,
            initrd_addr_max: 0x7fff_ffff,
            cmdline_size: 2047,
            code32_start: 0x10_0000,
            ..Default::default()
        }
    }

    #[test]
    fn header_checks() {
        assert!(validate_header(&header()).is_ok());
        let mut h = header();
        h.version = 0x020b;
        assert!(validate_header(&h).unwrap_err().contains("2.12"));
        let mut h = header();
        h.xloadflags = 0;
        assert!(validate_header(&h).unwrap_err().contains("XLF_KERNEL_64"));
        let mut h = header();
        h.loadflags = 0;
        assert!(validate_header(&h).is_err());
        let mut h = header();
        h.header = 0;
        assert!(validate_header(&h).is_err());
        let mut h = header();
        h.boot_flag = 0;
        assert!(validate_header(&h).is_err());
    }

    #[test]
    fn limits_from_the_header() {
        let h = header();
        assert_eq!(initrd_limit(&h), 0x8000_0000);
        assert_eq!(max_cmdline(&h), 2047);
        let r = KernelLoaderResult {
            kernel_load: GuestAddress(0x10_0000),
            kernel_end: 0x18_0000,
            ..Default::default()
        };
        assert_eq!(kernel_end(&r, &h).unwrap(), 0x40_0000);
        let old = setup_header {
            initrd_addr_max: 0,
            cmdline_size: 0,
            ..h
        };
        assert_eq!((initrd_limit(&old), max_cmdline(&old)), (0x3800_0000, 255));
    }

    #[test]
    fn zero_page_fields_at_protocol_offsets() {
        let r = KernelLoaderResult {
            kernel_load: GuestAddress(0x10_0000),
            setup_header: Some(header()),
            ..Default::default()
        };
        let e820 = e820_map(64 << 20);
        let p = boot_params(
            &r,
            &e820,
            Some((0x3ff_0000, 0x1234)),
            GuestAddress(0xe_0000),
        );
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write(&mem, &p).unwrap();
        let z = ZERO_PAGE_START.0;
        let rd32 = |o: u64| -> u32 { mem.read_obj(GuestAddress(z + o)).unwrap() };
        let rd16 = |o: u64| -> u16 { mem.read_obj(GuestAddress(z + o)).unwrap() };
        let rd8 = |o: u64| -> u8 { mem.read_obj(GuestAddress(z + o)).unwrap() };
        let rd64 = |o: u64| -> u64 { mem.read_obj(GuestAddress(z + o)).unwrap() };
        assert_eq!(rd16(0x1fe), 0xaa55);
        assert_eq!(rd32(0x202), HDRS_MAGIC);
        assert_eq!(rd16(0x206), 0x020f);
        assert_eq!(rd8(0x210), 0xff);
        assert_eq!(rd32(0x214), 0x10_0000);
        assert_eq!(rd32(0x218), 0x3ff_0000);
        assert_eq!(rd32(0x21c), 0x1234);
        assert_eq!(rd32(0x228), 0x2_0000);
        assert_eq!(rd32(0x238), 2047);
        assert_eq!(rd64(0x070), 0xe_0000);
        assert_eq!(usize::from(rd8(0x1e8)), e820.len());
        for (i, e) in (0u64..).zip(e820.iter()) {
            let base = 0x2d0 + 20 * i;
            assert_eq!(
                (rd64(base), rd64(base + 8), rd32(base + 16)),
                (e.addr, e.size, e.kind)
            );
        }
    }
}
