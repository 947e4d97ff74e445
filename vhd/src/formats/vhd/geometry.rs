//! Cylinder/head/sector geometry, computed exactly as the VHD specification's
//! algorithm does (appendix "CHS Calculation").

/// A CHS geometry as the footer stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

/// The largest geometry the specification's algorithm produces.
const MAX_SECTORS: u64 = 65535 * 16 * 255;

impl Geometry {
    /// The geometry the specification assigns to a disk of `size` bytes.
    /// It may cover fewer sectors than the disk has (it rounds down).
    pub fn for_size(size: u64) -> Self {
        let total = (size / 512).min(MAX_SECTORS);
        let (spt, heads, cth) = if total >= 65535 * 16 * 63 {
            (255u64, 16u64, total / 255)
        } else {
            let mut spt = 17u64;
            let mut cth = total / spt;
            let mut heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                spt = 31;
                heads = 16;
                cth = total / spt;
            }
            if cth >= heads * 1024 {
                spt = 63;
                heads = 16;
                cth = total / spt;
            }
            (spt, heads, cth)
        };
        // Every value is bounded by the clamp above, so these never saturate.
        Geometry {
            cylinders: u16::try_from(cth / heads).unwrap_or(u16::MAX),
            heads: u8::try_from(heads).unwrap_or(u8::MAX),
            sectors: u8::try_from(spt).unwrap_or(u8::MAX),
        }
    }

    /// Bytes the geometry covers.
    pub fn size(&self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors) * 512
    }

    /// Whether this is the maximum geometry (65535/16/255), which marks disks
    /// too large for CHS.
    pub fn is_max(&self) -> bool {
        self.cylinders == 65535 && self.heads == 16 && self.sectors == 255
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specification_examples() {
        // Windows 10 image of 4 MiB: 120/4/17 (measured).
        let g = Geometry::for_size(4 << 20);
        assert_eq!((g.cylinders, g.heads, g.sectors), (120, 4, 17));
        // 31 GiB sits in the 63-sector range, 127 GiB in the 255-sector one.
        let g = Geometry::for_size(31 << 30);
        assert_eq!((g.cylinders, g.heads, g.sectors), (64495, 16, 63));
        let g = Geometry::for_size(127 << 30);
        assert_eq!((g.heads, g.sectors), (16, 255));
        assert!(!g.is_max());
        // The cap.
        let g = Geometry::for_size(2040 << 30);
        assert!(g.is_max());
        let g = Geometry::for_size(0);
        assert_eq!(g.size(), 0);
    }

    #[test]
    fn never_exceeds_the_size() {
        for mb in [1u64, 3, 10, 100, 511, 1000, 4000, 40000, 130_000] {
            let size = mb << 20;
            assert!(Geometry::for_size(size).size() <= size);
        }
    }
}
