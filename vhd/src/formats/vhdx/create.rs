//! Creating VHDX files: fixed (payload preallocated), dynamic and
//! differencing, with the defaults Hyper-V and qemu use.
//!
//! Layout: identifier, headers and region tables in the first MiB, then a
//! 1 MiB log, a 1 MiB metadata region, the BAT, and the payload.

use std::fs::OpenOptions as FsOpenOptions;
use std::path::Path;

use uuid::Uuid;

use super::VhdxImage;
use super::bat::{Geometry, PayloadState, make_entry};
use super::format::{HEADER_OFFSETS, MAX_VIRTUAL_SIZE, MIB, REGION_TABLE_OFFSETS, round_up};
use super::header::{self, Header};
use super::metadata::{self, Metadata, ParentLocator};
use super::parent;
use super::region::{self, Region, RegionTable};
use crate::file::ImageFile;
use crate::open::parent_dir;
use crate::{
    ChainContext, CreateOptions, DiskImage, Error, Format, ImageType, OpenOptions, Result,
};

/// Default block size of dynamic and fixed images (as Hyper-V and qemu).
pub(crate) const DEFAULT_BLOCK_SIZE: u64 = 32 * MIB;
/// Default block size of differencing images (as Hyper-V).
pub(crate) const DEFAULT_DIFF_BLOCK_SIZE: u64 = 2 * MIB;
/// Size of the log of new images.
pub(crate) const LOG_SIZE: u32 = 1 << 20;

const LOG_OFFSET: u64 = MIB;
const METADATA_OFFSET: u64 = 2 * MIB;
const BAT_OFFSET: u64 = 3 * MIB;

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

pub(super) fn create(path: &Path, o: &CreateOptions) -> Result<VhdxImage> {
    if o.format != Format::Vhdx {
        return Err(invalid(format!(
            "cannot create a {} image as VHDX",
            o.format
        )));
    }
    let lss = o.logical_sector_size;
    if lss != 512 && lss != 4096 {
        return Err(invalid(format!(
            "logical sector size {lss} (VHDX has 512 or 4096)"
        )));
    }
    let pss = o.physical_sector_size.unwrap_or(4096);
    if pss != 512 && pss != 4096 {
        return Err(invalid(format!(
            "physical sector size {pss} (VHDX has 512 or 4096)"
        )));
    }
    let differencing = o.image_type == ImageType::Differencing;
    let block_size = o.block_size.unwrap_or(if differencing {
        DEFAULT_DIFF_BLOCK_SIZE
    } else {
        DEFAULT_BLOCK_SIZE
    });
    if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&block_size) {
        return Err(invalid(format!(
            "block size {block_size} is not a power of two from 1 MiB to 256 MiB"
        )));
    }

    // A differencing image records its parent's identity and path.
    let mut parent_info = None;
    if differencing {
        let parent_path = o
            .parent
            .as_ref()
            .ok_or_else(|| invalid("a differencing image needs a parent".into()))?;
        let parent = crate::open(parent_path, &OpenOptions::read_only())?;
        if parent.logical_sector_size() != lss {
            return Err(invalid(format!(
                "the parent has {}-byte logical sectors, the child would have {lss}",
                parent.logical_sector_size()
            )));
        }
        let canon = parent_path
            .canonicalize()
            .map_err(|e| Error::io("resolving", parent_path, e))?;
        parent_info = Some((parent, canon));
    }
    let size = match (o.size, &parent_info) {
        (Some(s), _) => s,
        (None, Some((p, _))) => p.virtual_size(),
        (None, None) => return Err(invalid("a VHDX image needs a size".into())),
    };
    if size == 0 || size % u64::from(lss) != 0 || size > MAX_VIRTUAL_SIZE {
        return Err(invalid(format!(
            "disk size {size} is not a multiple of {lss} bytes between one sector and 64 TiB"
        )));
    }

    let f = FsOpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    let file = ImageFile::new(f, path);
    let geometry = Geometry::new(block_size, u64::from(lss), size, differencing);
    let bat_len = round_up(geometry.total_entries() * 8, MIB)
        .unwrap_or(MIB)
        .max(MIB);
    let data_start = BAT_OFFSET + bat_len;
    let fixed = o.image_type == ImageType::Fixed;

    let mut parent_locator = None;
    let mut allowed_dirs = Vec::new();
    if let Some((parent, canon)) = &parent_info {
        let child_dir = parent_dir(path)
            .canonicalize()
            .map_err(|e| Error::io("resolving", path, e))?;
        let linkage = parent::identity(parent).unwrap_or(Uuid::nil());
        let braced = |g: Uuid| format!("{{{g}}}");
        parent_locator = Some(ParentLocator {
            entries: vec![
                ("parent_linkage".into(), braced(linkage)),
                (
                    "relative_path".into(),
                    parent::relative_windows_path(&child_dir, canon),
                ),
            ],
        });
        allowed_dirs.push(parent_dir(canon));
    }
    let meta = Metadata {
        block_size: u32::try_from(block_size).map_err(|_| invalid("block size".into()))?,
        leave_block_allocated: fixed,
        has_parent: differencing,
        virtual_size: size,
        page83: Uuid::new_v4(),
        logical_sector_size: lss,
        physical_sector_size: pss,
        parent_locator,
        virtual_size_item: 0,
    };
    let md = metadata::encode(&meta);
    if md.len() as u64 > MIB {
        return Err(invalid("the parent locator is too long".into()));
    }

    file.write_all_at(
        &header::encode_identifier(concat!("vmimport ", env!("CARGO_PKG_VERSION"))),
        0,
    )?;
    let first = Header {
        sequence_number: 1,
        file_write_guid: Uuid::new_v4(),
        data_write_guid: Uuid::new_v4(),
        log_guid: Uuid::nil(),
        log_version: 0,
        version: 1,
        log_length: LOG_SIZE,
        log_offset: LOG_OFFSET,
    };
    let second = Header {
        sequence_number: 2,
        ..first
    };
    file.write_all_at(&first.encode()[..], HEADER_OFFSETS[0])?;
    file.write_all_at(&second.encode()[..], HEADER_OFFSETS[1])?;
    let table = region::encode(&RegionTable {
        bat: Region {
            offset: BAT_OFFSET,
            length: u32::try_from(bat_len).map_err(|_| invalid("disk too large".into()))?,
        },
        metadata: Region {
            offset: METADATA_OFFSET,
            length: 1 << 20,
        },
    });
    for at in REGION_TABLE_OFFSETS {
        file.write_all_at(&table, at)?;
    }
    file.write_all_at(&md, METADATA_OFFSET)?;

    let blocks = geometry.payload_blocks();
    if fixed {
        let data_len = blocks * block_size;
        file.allocate(data_start, data_len)?;
        // The BAT, written a MiB at a time.
        let per = MIB / 8;
        let mut block = 0u64;
        let mut chunk = Vec::with_capacity(1 << 20);
        let mut index_base = 0u64;
        while index_base < geometry.total_entries() {
            chunk.clear();
            let end = (index_base + per).min(geometry.total_entries());
            for index in index_base..end {
                let v = if index % (geometry.chunk_ratio + 1) == geometry.chunk_ratio {
                    0
                } else {
                    let e = make_entry(
                        PayloadState::FullyPresent.bits(),
                        data_start + block * block_size,
                    );
                    block += 1;
                    e
                };
                chunk.extend_from_slice(&v.to_le_bytes());
            }
            file.write_all_at(&chunk, BAT_OFFSET + index_base * 8)?;
            index_base = end;
        }
    } else {
        file.set_len(data_start)?;
    }
    file.sync_data()?;
    drop(file);

    let f = FsOpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    let ctx = ChainContext {
        depth: 1,
        allowed_dirs,
        options: OpenOptions::default(),
    };
    VhdxImage::open(ImageFile::new(f, path), false, &ctx)
}
