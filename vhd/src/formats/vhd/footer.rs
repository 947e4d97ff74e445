//! The hard disk footer: the 512-byte structure at the end of every VHD (and,
//! for dynamic and differencing disks, its copy at offset 0).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::geometry::Geometry;
use super::{be16, be32, be64, put_be16, put_be32, put_be64};
use crate::{Error, Format, Result};

/// Size of the footer on disk.
pub const FOOTER_SIZE: usize = 512;
/// The footer's cookie.
pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
/// Creator application this crate writes. Readers such as QEMU 10 size a disk
/// by its current size unless the creator is `vpc ` or `qemu`, so images
/// created here are seen at exactly the size they were created with.
pub const CREATOR_APP: &[u8; 4] = b"vmim";
/// Creator version this crate writes (1.0).
pub const CREATOR_VERSION: u32 = 0x0001_0000;
/// Creator host OS written: `Wi2k`, the value Windows and QEMU write, since
/// some readers expect one of the two values the specification defines.
pub const CREATOR_OS: &[u8; 4] = b"Wi2k";
/// Largest virtual size accepted at creation: 2040 GiB, the limit of Virtual
/// PC, Hyper-V and QEMU.
pub const MAX_SIZE: u64 = 2040 << 30;
/// Seconds between 1970-01-01 and 2000-01-01, the VHD epoch.
const VHD_EPOCH: u64 = 946_684_800;

/// The disk types of the footer's disk-type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// Data then footer.
    Fixed,
    /// Blocks allocated on first write.
    Dynamic,
    /// Blocks not present here come from a parent.
    Differencing,
}

impl DiskType {
    fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }
}

/// A decoded and validated footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Offset of the dynamic header (`u64::MAX` for fixed disks).
    pub data_offset: u64,
    /// Modification time stamp, seconds since 2000-01-01 UTC.
    pub timestamp: u32,
    /// Creator application tag.
    pub creator_app: [u8; 4],
    /// Creator version.
    pub creator_version: u32,
    /// Creator host OS tag.
    pub creator_os: [u8; 4],
    /// Size at creation.
    pub original_size: u64,
    /// Current size field.
    pub current_size: u64,
    /// Cylinder/head/sector geometry.
    pub geometry: Geometry,
    /// Disk type.
    pub disk_type: DiskType,
    /// Unique id of this disk.
    pub uuid: [u8; 16],
    /// Saved-state flag.
    pub saved_state: u8,
}

/// The one's complement of the byte sum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
}

/// Seconds since 2000-01-01 UTC for `t` (0 before the epoch, saturating).
pub fn vhd_time(t: SystemTime) -> u32 {
    let unix = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(unix.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX)
}

/// The current time as a VHD time stamp.
pub fn now() -> u32 {
    vhd_time(SystemTime::now())
}

/// A VHD time stamp as a `SystemTime`.
pub fn to_system_time(ts: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(VHD_EPOCH + u64::from(ts))
}

impl Footer {
    /// A footer for a new disk of `size` bytes (a multiple of 512).
    pub fn new(disk_type: DiskType, size: u64, data_offset: u64) -> Self {
        Footer {
            data_offset,
            timestamp: now(),
            creator_app: *CREATOR_APP,
            creator_version: CREATOR_VERSION,
            creator_os: *CREATOR_OS,
            original_size: size,
            current_size: size,
            geometry: Geometry::for_size(size),
            disk_type,
            uuid: *Uuid::new_v4().as_bytes(),
            saved_state: 0,
        }
    }

    /// Decodes a footer found at file offset `offset`. The bytes must carry
    /// the cookie and a valid checksum.
    pub fn decode(b: &[u8; FOOTER_SIZE], offset: u64) -> Result<Self> {
        let corrupt = |field, reason: String| Error::corrupt(Format::Vhd, field, offset, reason);
        if &b[0..8] != FOOTER_COOKIE {
            return Err(corrupt("footer cookie", "not \"conectix\"".into()));
        }
        let stored = be32(b, 64);
        let mut copy = *b;
        copy[64..68].fill(0);
        let computed = checksum(&copy);
        if stored != computed {
            return Err(corrupt(
                "footer checksum",
                format!("stored {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        let version = be32(b, 12);
        if version >> 16 != 1 {
            return Err(Error::unsupported(
                Format::Vhd,
                format!("footer format version {version:#010x} (only 1.x is known)"),
            ));
        }
        let disk_type = match be32(b, 60) {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            t => return Err(corrupt("footer disk type", format!("{t} is not 2, 3 or 4"))),
        };
        let mut creator_app = [0u8; 4];
        creator_app.copy_from_slice(&b[28..32]);
        let mut creator_os = [0u8; 4];
        creator_os.copy_from_slice(&b[36..40]);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[68..84]);
        Ok(Footer {
            data_offset: be64(b, 16),
            timestamp: be32(b, 24),
            creator_app,
            creator_version: be32(b, 32),
            creator_os,
            original_size: be64(b, 40),
            current_size: be64(b, 48),
            geometry: Geometry {
                cylinders: be16(b, 56),
                heads: b[58],
                sectors: b[59],
            },
            disk_type,
            uuid,
            saved_state: b[84],
        })
    }

    /// Encodes the footer with its checksum.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(FOOTER_COOKIE);
        put_be32(&mut b, 8, 2); // features: the reserved bit is always set
        put_be32(&mut b, 12, 0x0001_0000);
        put_be64(&mut b, 16, self.data_offset);
        put_be32(&mut b, 24, self.timestamp);
        b[28..32].copy_from_slice(&self.creator_app);
        put_be32(&mut b, 32, self.creator_version);
        b[36..40].copy_from_slice(&self.creator_os);
        put_be64(&mut b, 40, self.original_size);
        put_be64(&mut b, 48, self.current_size);
        put_be16(&mut b, 56, self.geometry.cylinders);
        b[58] = self.geometry.heads;
        b[59] = self.geometry.sectors;
        put_be32(&mut b, 60, self.disk_type.code());
        b[68..84].copy_from_slice(&self.uuid);
        b[84] = self.saved_state;
        let sum = checksum(&b);
        put_be32(&mut b, 64, sum);
        b
    }

    /// The virtual size as real producers and readers expect it: the CHS
    /// geometry's size for disks made by Virtual PC (`vpc `) and old QEMU
    /// (`qemu`), unless the geometry is the maximum (65535/16/255), where
    /// the current size field is used; the current size field for everyone
    /// else (Hyper-V `win `, Disk2vhd `d2v `, QEMU `qem2`, XenServer `tap\0`,
    /// XenConverter `CTXS`, Azure `wa\0\0`, this crate, ...). This is the
    /// rule QEMU 10 follows.
    pub fn virtual_size(&self) -> u64 {
        let chs_app = &self.creator_app == b"vpc " || &self.creator_app == b"qemu";
        if chs_app && !self.geometry.is_max() {
            self.geometry.size()
        } else {
            self.current_size
        }
    }

    /// The creator application as text, trailing spaces and NULs removed.
    pub fn creator(&self) -> String {
        let s = String::from_utf8_lossy(&self.creator_app);
        s.trim_end_matches([' ', '\0']).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let f = Footer::new(DiskType::Dynamic, 100 << 20, 512);
        let b = f.encode();
        assert_eq!(Footer::decode(&b, 0).unwrap(), f);
        let mut bad = b;
        bad[100] ^= 1;
        let e = Footer::decode(&bad, 7).unwrap_err();
        assert!(e.to_string().contains("footer checksum"), "{e}");
    }

    #[test]
    fn size_rule_follows_creator() {
        let mut f = Footer::new(DiskType::Fixed, 100 << 20, u64::MAX);
        assert_eq!(f.virtual_size(), 100 << 20);
        f.creator_app = *b"vpc ";
        assert_eq!(f.virtual_size(), f.geometry.size());
        assert!(f.geometry.size() < 100 << 20);
        f.creator_app = *b"wa\0\0";
        assert_eq!(f.virtual_size(), 100 << 20);
        assert_eq!(f.creator(), "wa");
    }

    #[test]
    fn time_stamps_count_from_2000() {
        assert_eq!(vhd_time(UNIX_EPOCH + Duration::from_secs(VHD_EPOCH + 5)), 5);
        assert_eq!(vhd_time(UNIX_EPOCH), 0);
        assert_eq!(vhd_time(to_system_time(1234)), 1234);
    }
}
