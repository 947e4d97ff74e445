//! Constants of the VHDX format and little helpers to decode and encode its
//! little-endian fields.

use uuid::Uuid;

use crate::{Error, Format};

/// One kibibyte.
pub(crate) const KIB: u64 = 1024;
/// One mebibyte: the alignment of every region and block in the file.
pub(crate) const MIB: u64 = 1024 * 1024;
/// The largest virtual disk the specification allows (64 TiB).
pub(crate) const MAX_VIRTUAL_SIZE: u64 = 64 * 1024 * 1024 * MIB;

/// File type identifier signature at offset 0.
pub(crate) const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";
/// The two header copies.
pub(crate) const HEADER_OFFSETS: [u64; 2] = [64 * KIB, 128 * KIB];
/// Size of a header (the checksum covers all of it).
pub(crate) const HEADER_SIZE: usize = 4096;
/// The two region table copies.
pub(crate) const REGION_TABLE_OFFSETS: [u64; 2] = [192 * KIB, 256 * KIB];
/// Size of a region table (the checksum covers all of it).
pub(crate) const REGION_TABLE_SIZE: usize = 64 * 1024;
/// Size of the metadata table at the start of the metadata region.
pub(crate) const METADATA_TABLE_SIZE: usize = 64 * 1024;
/// Largest number of entries in a region or metadata table.
pub(crate) const MAX_TABLE_ENTRIES: u32 = 2047;

/// Region: the block allocation table.
pub(crate) const BAT_GUID: Uuid = Uuid::from_u128(0x2DC27766_F623_4200_9D64_115E9BFD4A08);
/// Region: the metadata region.
pub(crate) const METADATA_GUID: Uuid = Uuid::from_u128(0x8B7CA206_4790_4B9A_B8FE_575F050F886E);
/// Metadata item: file parameters.
pub(crate) const FILE_PARAMETERS_GUID: Uuid =
    Uuid::from_u128(0xCAA16737_FA36_4D43_B3B6_33F0AA44E76B);
/// Metadata item: virtual disk size.
pub(crate) const VIRTUAL_DISK_SIZE_GUID: Uuid =
    Uuid::from_u128(0x2FA54224_CD1B_4876_B211_5DBED83BF4B8);
/// Metadata item: SCSI page 83 identifier.
pub(crate) const PAGE83_GUID: Uuid = Uuid::from_u128(0xBECA12AB_B2E6_4523_93EF_C309E000C746);
/// Metadata item: logical sector size.
pub(crate) const LOGICAL_SECTOR_GUID: Uuid =
    Uuid::from_u128(0x8141BF1D_A96F_4709_BA47_F233A8FAAB5F);
/// Metadata item: physical sector size.
pub(crate) const PHYSICAL_SECTOR_GUID: Uuid =
    Uuid::from_u128(0xCDA348C7_445D_4471_9CC9_E9885251C556);
/// Metadata item: parent locator.
pub(crate) const PARENT_LOCATOR_GUID: Uuid =
    Uuid::from_u128(0xA8D35F2D_B30B_454D_ABF7_D3D84834AB0C);
/// Parent locator type of VHDX parents.
pub(crate) const VHDX_LOCATOR_TYPE: Uuid = Uuid::from_u128(0xB04AEFB7_D19E_4A81_B789_25B8E9445913);

/// A corruption error of this format.
pub(crate) fn corrupt(field: &'static str, offset: u64, reason: impl Into<String>) -> Error {
    Error::corrupt(Format::Vhdx, field, offset, reason)
}

/// An unsupported-feature error of this format.
pub(crate) fn unsupported(what: impl Into<String>) -> Error {
    Error::unsupported(Format::Vhdx, what)
}

/// Reads a little-endian u16 at `at`; the caller guarantees the bounds.
pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&buf[at..at + 2]);
    u16::from_le_bytes(b)
}

/// Reads a little-endian u32 at `at`; the caller guarantees the bounds.
pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian u64 at `at`; the caller guarantees the bounds.
pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads an on-disk GUID (mixed-endian) at `at`.
pub(crate) fn guid_at(buf: &[u8], at: usize) -> Uuid {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[at..at + 16]);
    Uuid::from_bytes_le(b)
}

/// Writes a little-endian u16 at `at`.
pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u32 at `at`.
pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u64 at `at`.
pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Writes an on-disk GUID at `at`.
pub(crate) fn put_guid(buf: &mut [u8], at: usize, g: Uuid) {
    buf[at..at + 16].copy_from_slice(&g.to_bytes_le());
}

/// CRC-32C of `buf` taken with the 4-byte checksum field at `field` zeroed.
pub(crate) fn checksum(buf: &[u8], field: usize) -> u32 {
    let crc = crc32c::crc32c(&buf[..field]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &buf[field + 4..])
}

/// Stores the checksum of `buf` in its field at `field`.
pub(crate) fn seal(buf: &mut [u8], field: usize) {
    let c = checksum(buf, field);
    put_u32(buf, field, c);
}

/// `v` rounded up to a multiple of `align` (a power of two), `None` on
/// overflow.
pub(crate) fn round_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// A length or index known to fit in memory as `usize` (bounded by a
/// block, a page or a buffer already allocated); saturates otherwise.
pub(crate) fn us(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Decodes UTF-16LE bytes.
pub(crate) fn utf16le(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// Encodes `s` as UTF-16LE bytes.
pub(crate) fn to_utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_round_trip_is_mixed_endian() {
        let mut b = [0u8; 16];
        put_guid(&mut b, 0, BAT_GUID);
        assert_eq!(&b[..4], &[0x66, 0x77, 0xC2, 0x2D]);
        assert_eq!(guid_at(&b, 0), BAT_GUID);
    }

    #[test]
    fn checksum_ignores_its_field() {
        let mut a = vec![7u8; 64];
        seal(&mut a, 4);
        let c = u32_at(&a, 4);
        assert_eq!(checksum(&a, 4), c);
        a[10] ^= 1;
        assert_ne!(checksum(&a, 4), c);
    }
}
