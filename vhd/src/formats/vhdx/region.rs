//! The region table: where the BAT and the metadata region lie.

use uuid::Uuid;

use super::format::{
    BAT_GUID, MAX_TABLE_ENTRIES, METADATA_GUID, MIB, REGION_TABLE_SIZE, checksum, corrupt, guid_at,
    put_guid, put_u32, put_u64, seal, u32_at, u64_at, unsupported,
};
use crate::Result;

const SIGNATURE: &[u8; 4] = b"regi";
const HEADER_LEN: usize = 16;
const ENTRY_LEN: usize = 32;

/// A region of the file, validated: 1 MiB aligned, past the first MiB,
/// a non-zero multiple of 1 MiB long, not wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub offset: u64,
    pub length: u32,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        // Validated at construction not to wrap.
        self.offset + u64::from(self.length)
    }

    /// Whether the two regions share a byte.
    pub fn overlaps(&self, other_offset: u64, other_len: u64) -> bool {
        let other_end = other_offset.saturating_add(other_len);
        self.offset < other_end && other_offset < self.end()
    }
}

/// The regions this implementation knows, from a valid table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegionTable {
    pub bat: Region,
    pub metadata: Region,
}

/// Whether `buf` (a whole table) has the right signature and checksum.
pub(crate) fn is_intact(buf: &[u8]) -> bool {
    buf.len() == REGION_TABLE_SIZE && &buf[..4] == SIGNATURE && u32_at(buf, 4) == checksum(buf, 4)
}

/// Decodes and validates a region table whose checksum is right. `at` is
/// the table's offset in the file, for messages.
pub(crate) fn decode(buf: &[u8], at: u64) -> Result<RegionTable> {
    if !is_intact(buf) {
        return Err(corrupt(
            "region table",
            at,
            "signature or checksum is wrong",
        ));
    }
    let count = u32_at(buf, 8);
    if count > MAX_TABLE_ENTRIES {
        return Err(corrupt(
            "region table entry count",
            at + 8,
            format!("{count} entries (at most {MAX_TABLE_ENTRIES})"),
        ));
    }
    let mut seen: Vec<(Uuid, Region)> = Vec::new();
    let mut bat = None;
    let mut metadata = None;
    for i in 0..count as usize {
        let e = HEADER_LEN + i * ENTRY_LEN;
        let e_at = at + e as u64;
        let guid = guid_at(buf, e);
        let offset = u64_at(buf, e + 16);
        let length = u32_at(buf, e + 24);
        let required = u32_at(buf, e + 28) & 1 != 0;
        if offset < MIB || !offset.is_multiple_of(MIB) {
            return Err(corrupt(
                "region table entry offset",
                e_at + 16,
                format!("{offset:#x} is not 1 MiB aligned past the first MiB"),
            ));
        }
        if length == 0 || u64::from(length) % MIB != 0 {
            return Err(corrupt(
                "region table entry length",
                e_at + 24,
                format!("{length} is not a non-zero multiple of 1 MiB"),
            ));
        }
        if offset.checked_add(u64::from(length)).is_none() {
            return Err(corrupt(
                "region table entry",
                e_at,
                "region wraps past 2^64",
            ));
        }
        let region = Region { offset, length };
        for (g, r) in &seen {
            if *g == guid {
                return Err(corrupt(
                    "region table entry",
                    e_at,
                    format!("region {guid} appears twice"),
                ));
            }
            if r.overlaps(offset, u64::from(length)) {
                return Err(corrupt(
                    "region table entry",
                    e_at,
                    format!("region {guid} overlaps region {g}"),
                ));
            }
        }
        seen.push((guid, region));
        if guid == BAT_GUID {
            bat = Some(region);
        } else if guid == METADATA_GUID {
            metadata = Some(region);
        } else if required {
            return Err(unsupported(format!(
                "unknown region {guid} is marked required"
            )));
        }
    }
    match (bat, metadata) {
        (Some(bat), Some(metadata)) => Ok(RegionTable { bat, metadata }),
        (None, _) => Err(corrupt("region table", at, "there is no BAT region")),
        (_, None) => Err(corrupt("region table", at, "there is no metadata region")),
    }
}

/// A copy of the intact table `buf` with the BAT entry moved to `bat`,
/// every other entry kept; `None` if it has no BAT entry.
pub(crate) fn with_bat(buf: &[u8], bat: Region) -> Option<Vec<u8>> {
    let mut out = buf.get(..REGION_TABLE_SIZE)?.to_vec();
    let count = u32_at(&out, 8).min(MAX_TABLE_ENTRIES) as usize;
    let e = (0..count)
        .map(|i| HEADER_LEN + i * ENTRY_LEN)
        .find(|&e| guid_at(&out, e) == BAT_GUID)?;
    put_u64(&mut out, e + 16, bat.offset);
    put_u32(&mut out, e + 24, bat.length);
    seal(&mut out, 4);
    Some(out)
}

/// Encodes a table holding the BAT and metadata regions, both required.
pub(crate) fn encode(table: &RegionTable) -> Vec<u8> {
    let mut b = vec![0u8; REGION_TABLE_SIZE];
    b[..4].copy_from_slice(SIGNATURE);
    put_u32(&mut b, 8, 2);
    for (i, (guid, r)) in [(BAT_GUID, table.bat), (METADATA_GUID, table.metadata)]
        .into_iter()
        .enumerate()
    {
        let e = HEADER_LEN + i * ENTRY_LEN;
        put_guid(&mut b, e, guid);
        put_u64(&mut b, e + 16, r.offset);
        put_u32(&mut b, e + 24, r.length);
        put_u32(&mut b, e + 28, 1);
    }
    seal(&mut b, 4);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RegionTable {
        RegionTable {
            bat: Region {
                offset: 3 * MIB,
                length: 1 << 20,
            },
            metadata: Region {
                offset: 2 * MIB,
                length: 1 << 20,
            },
        }
    }

    #[test]
    fn round_trip() {
        let b = encode(&table());
        assert_eq!(decode(&b, 0).unwrap(), table());
    }

    #[test]
    fn overlap_and_duplicates_are_corrupt() {
        let mut t = table();
        t.bat.offset = 2 * MIB;
        assert!(decode(&encode(&t), 0).is_err());
        let mut b = encode(&table());
        let (first, second) = b.split_at_mut(HEADER_LEN + ENTRY_LEN);
        second[..16].copy_from_slice(&first[HEADER_LEN..HEADER_LEN + 16]);
        seal(&mut b, 4);
        assert!(decode(&b, 0).is_err());
    }

    #[test]
    fn unknown_required_region_is_refused() {
        let mut b = encode(&table());
        put_u32(&mut b, 8, 3);
        let e = HEADER_LEN + 2 * ENTRY_LEN;
        put_guid(&mut b, e, Uuid::from_u128(42));
        put_u64(&mut b, e + 16, 8 * MIB);
        put_u32(&mut b, e + 24, 1 << 20);
        put_u32(&mut b, e + 28, 0);
        seal(&mut b, 4);
        assert!(decode(&b, 0).is_ok());
        put_u32(&mut b, e + 28, 1);
        seal(&mut b, 4);
        let err = decode(&b, 0).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
    }
}
