//! The metadata region: its table and the system items (file parameters,
//! sizes, page 83 identifier, parent locator).

use uuid::Uuid;

use super::format::{
    FILE_PARAMETERS_GUID, LOGICAL_SECTOR_GUID, MAX_TABLE_ENTRIES, MAX_VIRTUAL_SIZE,
    METADATA_TABLE_SIZE, MIB, PAGE83_GUID, PARENT_LOCATOR_GUID, PHYSICAL_SECTOR_GUID,
    VHDX_LOCATOR_TYPE, VIRTUAL_DISK_SIZE_GUID, corrupt, guid_at, put_guid, put_u16, put_u32,
    put_u64, to_utf16le, u16_at, u32_at, u64_at, unsupported, utf16le,
};
use crate::Result;

const SIGNATURE: &[u8; 8] = b"metadata";
const ENTRY_LEN: usize = 32;
const FLAG_IS_USER: u32 = 1;
const FLAG_IS_VIRTUAL_DISK: u32 = 2;
const FLAG_IS_REQUIRED: u32 = 4;

/// The parent locator: key/value pairs, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ParentLocator {
    pub entries: Vec<(String, String)>,
}

impl ParentLocator {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The validated metadata of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub block_size: u32,
    pub leave_block_allocated: bool,
    pub has_parent: bool,
    pub virtual_size: u64,
    pub page83: Uuid,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub parent_locator: Option<ParentLocator>,
    /// Offset of the virtual disk size item inside the metadata region.
    pub virtual_size_item: u32,
}

struct Item {
    id: Uuid,
    offset: u32,
    length: u32,
    flags: u32,
}

/// Decodes the metadata region whose table (its first 64 KiB) is `table`,
/// found at file offset `at`, `region_len` bytes long. `read(offset, len)`
/// returns `len` bytes at `offset` inside the region; it is called only for
/// known items, each at most 1 MiB.
pub(crate) fn decode(
    table: &[u8],
    at: u64,
    region_len: u64,
    mut read: impl FnMut(u32, usize) -> Result<Vec<u8>>,
) -> Result<Metadata> {
    let table = table
        .get(..METADATA_TABLE_SIZE)
        .ok_or_else(|| corrupt("metadata table", at, "region is shorter than its table"))?;
    if &table[..8] != SIGNATURE {
        return Err(corrupt("metadata table", at, "signature is not metadata"));
    }
    let count = u16_at(table, 10);
    if u32::from(count) > MAX_TABLE_ENTRIES {
        return Err(corrupt(
            "metadata table entry count",
            at + 10,
            format!("{count} entries (at most {MAX_TABLE_ENTRIES})"),
        ));
    }
    let mut items: Vec<Item> = Vec::new();
    for i in 0..usize::from(count) {
        let e = 32 + i * ENTRY_LEN;
        let e_at = at + e as u64;
        let item = Item {
            id: guid_at(table, e),
            offset: u32_at(table, e + 16),
            length: u32_at(table, e + 20),
            flags: u32_at(table, e + 24),
        };
        let user = item.flags & FLAG_IS_USER != 0;
        if item.length == 0 {
            if item.offset != 0 {
                return Err(corrupt(
                    "metadata entry offset",
                    e_at + 16,
                    "an empty item must have offset 0",
                ));
            }
        } else {
            let end = u64::from(item.offset) + u64::from(item.length);
            if (item.offset as usize) < METADATA_TABLE_SIZE
                || u64::from(item.length) > MIB
                || end > region_len
            {
                return Err(corrupt(
                    "metadata entry",
                    e_at,
                    format!(
                        "item {} at {:#x}+{:#x} lies outside the item area of the region",
                        item.id, item.offset, item.length
                    ),
                ));
            }
        }
        for other in &items {
            if other.id == item.id && (other.flags & FLAG_IS_USER != 0) == user {
                return Err(corrupt(
                    "metadata entry",
                    e_at,
                    format!("item {} appears twice", item.id),
                ));
            }
            let (a0, a1) = (
                u64::from(item.offset),
                u64::from(item.offset) + u64::from(item.length),
            );
            let (b0, b1) = (
                u64::from(other.offset),
                u64::from(other.offset) + u64::from(other.length),
            );
            if item.length != 0 && other.length != 0 && a0 < b1 && b0 < a1 {
                return Err(corrupt(
                    "metadata entry",
                    e_at,
                    format!("item {} overlaps item {}", item.id, other.id),
                ));
            }
        }
        items.push(item);
    }

    let find = |id: Uuid| {
        items
            .iter()
            .find(|i| i.id == id && i.flags & FLAG_IS_USER == 0)
    };
    for item in &items {
        let known = item.flags & FLAG_IS_USER == 0
            && [
                FILE_PARAMETERS_GUID,
                VIRTUAL_DISK_SIZE_GUID,
                PAGE83_GUID,
                LOGICAL_SECTOR_GUID,
                PHYSICAL_SECTOR_GUID,
                PARENT_LOCATOR_GUID,
            ]
            .contains(&item.id);
        if !known && item.flags & FLAG_IS_REQUIRED != 0 {
            return Err(unsupported(format!(
                "unknown metadata item {} is marked required",
                item.id
            )));
        }
    }
    let mut data = |id: Uuid, name: &'static str, len: usize| -> Result<(Vec<u8>, u32)> {
        let item = find(id)
            .ok_or_else(|| corrupt("metadata table", at, format!("the {name} item is missing")))?;
        if (item.length as usize) < len {
            return Err(corrupt(
                "metadata item",
                at + u64::from(item.offset),
                format!("the {name} item is {} bytes, expected {len}", item.length),
            ));
        }
        Ok((read(item.offset, len)?, item.offset))
    };

    let (fp, fp_off) = data(FILE_PARAMETERS_GUID, "file parameters", 8)?;
    let block_size = u32_at(&fp, 0);
    let flags = u32_at(&fp, 4);
    if !block_size.is_power_of_two() || !(1 << 20..=256 << 20).contains(&block_size) {
        return Err(corrupt(
            "file parameters block size",
            at + u64::from(fp_off),
            format!("{block_size} is not a power of two from 1 MiB to 256 MiB"),
        ));
    }
    let (ls, ls_off) = data(LOGICAL_SECTOR_GUID, "logical sector size", 4)?;
    let logical_sector_size = u32_at(&ls, 0);
    if logical_sector_size != 512 && logical_sector_size != 4096 {
        return Err(corrupt(
            "logical sector size",
            at + u64::from(ls_off),
            format!("{logical_sector_size} is neither 512 nor 4096"),
        ));
    }
    let (ps, ps_off) = data(PHYSICAL_SECTOR_GUID, "physical sector size", 4)?;
    let physical_sector_size = u32_at(&ps, 0);
    if physical_sector_size != 512 && physical_sector_size != 4096 {
        return Err(corrupt(
            "physical sector size",
            at + u64::from(ps_off),
            format!("{physical_sector_size} is neither 512 nor 4096"),
        ));
    }
    let (vs, vs_off) = data(VIRTUAL_DISK_SIZE_GUID, "virtual disk size", 8)?;
    let virtual_size = u64_at(&vs, 0);
    if virtual_size == 0
        || virtual_size > MAX_VIRTUAL_SIZE
        || !virtual_size.is_multiple_of(u64::from(logical_sector_size))
    {
        return Err(corrupt(
            "virtual disk size",
            at + u64::from(vs_off),
            format!(
                "{virtual_size} is not a multiple of the {logical_sector_size}-byte sector \
                 between one sector and 64 TiB"
            ),
        ));
    }
    let (p83, _) = data(PAGE83_GUID, "page 83 data", 16)?;
    let page83 = guid_at(&p83, 0);
    let has_parent = flags & 2 != 0;
    let parent_locator = if has_parent {
        let item = find(PARENT_LOCATOR_GUID).ok_or_else(|| {
            corrupt(
                "metadata table",
                at,
                "a differencing image has no parent locator item",
            )
        })?;
        let (offset, length) = (item.offset, item.length as usize);
        let bytes = read(offset, length)?;
        Some(decode_locator(&bytes, at + u64::from(offset))?)
    } else {
        None
    };
    Ok(Metadata {
        block_size,
        leave_block_allocated: flags & 1 != 0,
        has_parent,
        virtual_size,
        page83,
        logical_sector_size,
        physical_sector_size,
        parent_locator,
        virtual_size_item: vs_off,
    })
}

/// Decodes a parent locator item.
fn decode_locator(b: &[u8], at: u64) -> Result<ParentLocator> {
    if b.len() < 20 {
        return Err(corrupt("parent locator", at, "shorter than its header"));
    }
    let kind = guid_at(b, 0);
    if kind != VHDX_LOCATOR_TYPE {
        return Err(unsupported(format!("parent locator type {kind}")));
    }
    let count = usize::from(u16_at(b, 18));
    let mut entries: Vec<(String, String)> = Vec::with_capacity(count.min(64));
    for i in 0..count {
        let e = 20 + i * 12;
        let entry = b.get(e..e + 12).ok_or_else(|| {
            corrupt(
                "parent locator",
                at,
                format!("entry {i} lies past the item"),
            )
        })?;
        let field = |off: u32, len: u16, what: &str| -> Result<String> {
            let s = usize::try_from(off).ok();
            let bytes = s
                .and_then(|s| b.get(s..s.checked_add(usize::from(len))?))
                .ok_or_else(|| {
                    corrupt(
                        "parent locator",
                        at + e as u64,
                        format!("{what} of entry {i} lies past the item"),
                    )
                })?;
            utf16le(bytes).ok_or_else(|| {
                corrupt(
                    "parent locator",
                    at + e as u64,
                    format!("{what} of entry {i} is not UTF-16"),
                )
            })
        };
        let key = field(u32_at(entry, 0), u16_at(entry, 8), "key")?;
        let value = field(u32_at(entry, 4), u16_at(entry, 10), "value")?;
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(corrupt(
                "parent locator",
                at + e as u64,
                format!("key {key} appears twice"),
            ));
        }
        entries.push((key, value));
    }
    Ok(ParentLocator { entries })
}

/// Encodes a parent locator item.
pub(crate) fn encode_locator(loc: &ParentLocator) -> Vec<u8> {
    let count = loc.entries.len();
    let mut out = vec![0u8; 20 + 12 * count];
    put_guid(&mut out, 0, VHDX_LOCATOR_TYPE);
    put_u16(&mut out, 18, u16::try_from(count).unwrap_or(u16::MAX));
    for (i, (k, v)) in loc.entries.iter().enumerate() {
        let (k, v) = (to_utf16le(k), to_utf16le(v));
        let e = 20 + 12 * i;
        let ko = out.len();
        out.extend_from_slice(&k);
        let vo = out.len();
        out.extend_from_slice(&v);
        put_u32(&mut out, e, u32::try_from(ko).unwrap_or(u32::MAX));
        put_u32(&mut out, e + 4, u32::try_from(vo).unwrap_or(u32::MAX));
        put_u16(&mut out, e + 8, u16::try_from(k.len()).unwrap_or(u16::MAX));
        put_u16(&mut out, e + 10, u16::try_from(v.len()).unwrap_or(u16::MAX));
    }
    out
}

/// Offset of the items inside the metadata region written by [`encode`].
pub(crate) const ITEM_AREA: usize = METADATA_TABLE_SIZE;

/// Encodes a metadata region (table and items) for `m`; the result is
/// shorter than the region, whose rest is zeros.
pub(crate) fn encode(m: &Metadata) -> Vec<u8> {
    let mut items: Vec<(Uuid, Vec<u8>, u32)> = Vec::new();
    let mut fp = vec![0u8; 8];
    put_u32(&mut fp, 0, m.block_size);
    put_u32(
        &mut fp,
        4,
        u32::from(m.leave_block_allocated) | (u32::from(m.has_parent) << 1),
    );
    items.push((FILE_PARAMETERS_GUID, fp, FLAG_IS_REQUIRED));
    let mut vs = vec![0u8; 8];
    put_u64(&mut vs, 0, m.virtual_size);
    let vd = FLAG_IS_REQUIRED | FLAG_IS_VIRTUAL_DISK;
    items.push((VIRTUAL_DISK_SIZE_GUID, vs, vd));
    let mut p83 = vec![0u8; 16];
    put_guid(&mut p83, 0, m.page83);
    items.push((PAGE83_GUID, p83, vd));
    items.push((
        LOGICAL_SECTOR_GUID,
        m.logical_sector_size.to_le_bytes().to_vec(),
        vd,
    ));
    items.push((
        PHYSICAL_SECTOR_GUID,
        m.physical_sector_size.to_le_bytes().to_vec(),
        vd,
    ));
    if let Some(loc) = &m.parent_locator {
        items.push((PARENT_LOCATOR_GUID, encode_locator(loc), FLAG_IS_REQUIRED));
    }
    let mut out = vec![0u8; ITEM_AREA];
    out[..8].copy_from_slice(SIGNATURE);
    put_u16(&mut out, 10, u16::try_from(items.len()).unwrap_or(0));
    for (i, (id, data, flags)) in items.into_iter().enumerate() {
        let e = 32 + i * ENTRY_LEN;
        let offset = out.len();
        out.extend_from_slice(&data);
        put_guid(&mut out, e, id);
        put_u32(&mut out, e + 16, u32::try_from(offset).unwrap_or(0));
        put_u32(&mut out, e + 20, u32::try_from(data.len()).unwrap_or(0));
        put_u32(&mut out, e + 24, flags);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Metadata {
        Metadata {
            block_size: 32 << 20,
            leave_block_allocated: false,
            has_parent: true,
            virtual_size: 1 << 30,
            page83: Uuid::from_u128(5),
            logical_sector_size: 512,
            physical_sector_size: 4096,
            parent_locator: Some(ParentLocator {
                entries: vec![
                    (
                        "parent_linkage".into(),
                        "{00000000-0000-0000-0000-000000000001}".into(),
                    ),
                    ("relative_path".into(), ".\\p.vhdx".into()),
                ],
            }),
            virtual_size_item: 0x10008,
        }
    }

    fn region(m: &Metadata) -> Vec<u8> {
        let mut r = encode(m);
        r.resize(1 << 20, 0);
        r
    }

    fn decode(r: &[u8], at: u64) -> Result<Metadata> {
        super::decode(r, at, r.len() as u64, |o, l| {
            Ok(r[o as usize..o as usize + l].to_vec())
        })
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(decode(&region(&m), 0).unwrap(), m);
    }

    #[test]
    fn bad_block_sizes_are_corrupt() {
        for bs in [0u32, 3 << 20, 0x8000_0000, 512 << 20, 1 << 19] {
            let mut m = sample();
            m.block_size = bs;
            assert!(decode(&region(&m), 0).is_err(), "block size {bs}");
        }
    }

    #[test]
    fn bad_sector_sizes_are_corrupt() {
        let mut m = sample();
        m.logical_sector_size = 1024;
        assert!(decode(&region(&m), 0).is_err());
        let mut m = sample();
        m.physical_sector_size = 0;
        assert!(decode(&region(&m), 0).is_err());
    }

    #[test]
    fn overlapping_items_are_corrupt() {
        let mut r = region(&sample());
        // Point the virtual disk size item at the file parameters.
        put_u32(&mut r, 32 + ENTRY_LEN + 16, 0x10000);
        assert!(decode(&r, 0).is_err());
    }

    #[test]
    fn unknown_required_item_is_refused_optional_ignored() {
        let mut r = region(&sample());
        let n = usize::from(u16_at(&r, 10));
        put_u16(&mut r, 10, u16::try_from(n + 1).unwrap());
        let e = 32 + n * ENTRY_LEN;
        put_guid(&mut r, e, Uuid::from_u128(77));
        put_u32(&mut r, e + 16, 0x20000);
        put_u32(&mut r, e + 20, 8);
        assert!(decode(&r, 0).is_ok());
        put_u32(&mut r, e + 24, FLAG_IS_REQUIRED);
        assert_eq!(
            decode(&r, 0).unwrap_err().kind(),
            crate::ErrorKind::Unsupported
        );
    }
}
