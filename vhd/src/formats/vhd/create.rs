//! Creating and resizing VHD images.

use std::fs::OpenOptions as FsOpenOptions;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::footer::{DiskType, FOOTER_SIZE, Footer, MAX_SIZE};
use super::geometry::Geometry;
use super::header::{
    DynamicHeader, HEADER_SIZE, LOCATORS, LocatorEntry, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE,
};
use super::{Layout, VhdImage, locator, lock, parent, read, write};
use crate::file::ImageFile;
use crate::open::parent_dir;
use crate::{
    ChainContext, CreateOptions, DiskImage, Error, Format, ImageType, OpenOptions, Result,
};

/// Default block size: 2 MiB, as Hyper-V and QEMU write.
pub const DEFAULT_BLOCK_SIZE: u64 = 2 << 20;

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Rounds `size` up to 512 and checks the 2040 GiB limit.
fn disk_size(size: u64) -> Result<u64> {
    let s = size
        .checked_next_multiple_of(512)
        .filter(|s| *s <= MAX_SIZE)
        .ok_or_else(|| invalid(format!("a VHD holds at most {MAX_SIZE} bytes, not {size}")))?;
    Ok(s)
}

pub fn create(path: &Path, o: &CreateOptions) -> Result<VhdImage> {
    if o.format != Format::Vhd {
        return Err(invalid("VHD creation asked for another format"));
    }
    if o.logical_sector_size != 512 || o.physical_sector_size.is_some_and(|p| p != 512) {
        return Err(Error::unsupported(
            Format::Vhd,
            "sector sizes other than 512 bytes (VHD has no sector size field)",
        ));
    }
    let block_size = o.block_size.unwrap_or(DEFAULT_BLOCK_SIZE);
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(invalid(format!(
            "VHD block size {block_size} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
        )));
    }
    let parent = match (&o.parent, o.image_type) {
        (Some(p), ImageType::Differencing) => {
            let img = crate::open(p, &OpenOptions::read_only())?;
            let canon = p.canonicalize().map_err(|e| Error::io("resolving", p, e))?;
            Some((img, canon))
        }
        (None, ImageType::Differencing) | (Some(_), _) => {
            return Err(invalid(
                "a parent is given exactly when creating a differencing image",
            ));
        }
        _ => None,
    };
    let requested = match (o.size, &parent) {
        (Some(s), _) => s,
        (None, Some((p, _))) => crate::DiskImage::virtual_size(p),
        (None, None) => return Err(invalid("a VHD needs a size")),
    };
    let size = disk_size(requested)?;
    let f = FsOpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    let file = ImageFile::new(f, path);
    let written = match &parent {
        None if o.image_type == ImageType::Fixed => write_fixed(&file, size),
        _ => write_sparse(&file, path, size, block_size, parent.as_ref()),
    };
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    sync_dir(path);
    let mut allowed = vec![parent_dir(path).canonicalize().unwrap_or_default()];
    if let Some((_, canon)) = &parent {
        allowed.push(parent_dir(canon));
    }
    let ctx = ChainContext {
        depth: 1,
        allowed_dirs: allowed,
        options: OpenOptions::default(),
    };
    VhdImage::open(file, false, &ctx)
}

/// Makes the new directory entry durable (best effort: some file systems
/// refuse to sync directories).
fn sync_dir(path: &Path) {
    if let Ok(d) = std::fs::File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
}

fn write_fixed(file: &ImageFile, size: u64) -> Result<()> {
    if size > 0 {
        file.allocate(0, size)?;
    }
    let footer = Footer::new(DiskType::Fixed, size, u64::MAX);
    file.write_all_at(&footer.encode(), size)?;
    file.sync_data()
}

fn write_sparse(
    file: &ImageFile,
    path: &Path,
    size: u64,
    block_size: u64,
    parent: Option<&(crate::Image, std::path::PathBuf)>,
) -> Result<()> {
    let entries = u32::try_from(size.div_ceil(block_size).max(1))
        .map_err(|_| invalid("too many blocks for a VHD block allocation table"))?;
    let table_offset = (FOOTER_SIZE + HEADER_SIZE) as u64;
    let table_len = (u64::from(entries) * 4).next_multiple_of(512);
    let mut end = table_offset + table_len;
    let mut header = DynamicHeader {
        table_offset,
        max_table_entries: entries,
        block_size,
        parent_uuid: [0; 16],
        parent_timestamp: 0,
        parent_name: [0; 512],
        locators: [LocatorEntry::default(); LOCATORS],
    };
    let mut locator_data = Vec::new();
    let disk_type = if let Some((p, canon)) = parent {
        let (uuid, ts) = parent::identity_of(p, canon);
        header.parent_uuid = uuid;
        header.parent_timestamp = ts;
        let name = canon
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        header.set_parent_name(&name);
        let child_dir = parent_dir(path)
            .canonicalize()
            .map_err(|e| Error::io("resolving", path, e))?;
        let absolute = locator::utf16le(&canon.to_string_lossy());
        let relative = locator::utf16le(&locator::relative_windows(&child_dir, canon));
        for (k, (code, data)) in [(b"W2ku", absolute), (b"W2ru", relative)]
            .into_iter()
            .enumerate()
        {
            header.locators[k] = locator::entry(code, &data, end);
            let space = (data.len() as u64).next_multiple_of(512);
            locator_data.push((end, data));
            end += space;
        }
        DiskType::Differencing
    } else {
        DiskType::Dynamic
    };
    let footer = Footer::new(disk_type, size, FOOTER_SIZE as u64).encode();
    file.write_all_at(&footer, 0)?;
    file.write_all_at(&header.encode(), FOOTER_SIZE as u64)?;
    // The table and its padding: every entry unallocated.
    let table = vec![0xFFu8; usize::try_from(table_len).map_err(|_| invalid("table too large"))?];
    file.write_all_at(&table, table_offset)?;
    for (at, data) in &locator_data {
        let mut padded = data.clone();
        padded.resize(data.len().next_multiple_of(512), 0);
        file.write_all_at(&padded, *at)?;
    }
    file.write_all_at(&footer, end)?;
    file.sync_data()
}

/// Changes the virtual size of `img` to `new_size` (rounded up to 512).
pub fn resize(img: &VhdImage, new_size: u64) -> Result<()> {
    img.writable()?;
    let new_size = disk_size(new_size)?;
    let old = img.virtual_size();
    let file = &img.file;
    match &img.layout {
        Layout::Fixed => {
            let mut footer = write(&img.footer);
            footer.current_size = new_size;
            footer.geometry = Geometry::for_size(new_size);
            // The new footer first: a crash leaves either the old footer at
            // the end or the new one.
            file.write_all_at(&footer.encode(), new_size)?;
            if new_size > old {
                file.sync_data()?;
                file.zero_range(old, FOOTER_SIZE as u64)?;
            } else {
                file.set_len(new_size + FOOTER_SIZE as u64)?;
            }
            file.sync_data()?;
            img.size.store(new_size, Ordering::Release);
            Ok(())
        }
        Layout::Sparse(s) => {
            // The table may grow into its padding (the sector it ends in).
            let padding_entries =
                (u64::from(s.header.max_table_entries) * 4).next_multiple_of(512) / 4;
            if new_size.div_ceil(s.block_size) > padding_entries {
                return Err(Error::unsupported(
                    Format::Vhd,
                    format!(
                        "growing a dynamic VHD beyond its table's capacity of {} bytes",
                        padding_entries * s.block_size
                    ),
                ));
            }
            if new_size < old && s.parent.is_none() {
                // Deallocate what is cut off so that growing again reads zeros.
                img.write_zeroes(new_size, old - new_size)?;
            }
            img.flush()?;
            let mut st = lock(&s.alloc);
            let entries = u64::from(st.table_entries);
            if new_size > entries * s.block_size {
                let mut header = s.header.clone();
                header.max_table_entries = u32::try_from(new_size.div_ceil(s.block_size))
                    .map_err(|_| invalid("too many blocks"))?;
                let added = u64::from(header.max_table_entries) - entries;
                let fill = vec![0xFFu8; usize::try_from(added * 4).unwrap_or(0)];
                file.write_all_at(&fill, s.header.table_offset + entries * 4)?;
                file.sync_data()?;
                let at = read(&img.footer).data_offset;
                file.write_all_at(&header.encode(), at)?;
                st.table_entries = header.max_table_entries;
                // The in-memory table already has a slot for every entry
                // the padding can hold.
            }
            let mut footer = write(&img.footer);
            footer.current_size = new_size;
            footer.geometry = Geometry::for_size(new_size);
            let bytes = footer.encode();
            file.write_all_at(&bytes, st.next_free)?;
            file.sync_data()?;
            file.write_all_at(&bytes, 0)?;
            file.sync_data()?;
            img.size.store(new_size, Ordering::Release);
            Ok(())
        }
    }
}
