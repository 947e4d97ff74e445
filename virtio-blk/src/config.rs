//! Feature bits, device limits and the configuration space
//! (`struct virtio_blk_config`, little-endian, byte-addressed).

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

/// Size of a virtio-blk sector: the unit of `sector` in request headers and
/// of `capacity`, whatever the image's logical sector size.
pub const SECTOR_SIZE: u64 = 512;

/// Length of the device ID string returned by `VIRTIO_BLK_T_GET_ID`.
pub const ID_BYTES: usize = 20;

/// Bytes of the configuration space this device exposes: every field up to
/// and including `write_zeroes_may_unmap` and its padding (secure erase and
/// zoned fields are not offered).
pub const CONFIG_SPACE_SIZE: usize = 60;

/// Offset of `writeback` in the configuration space, the only field the
/// driver may write.
pub(crate) const WRITEBACK_OFFSET: usize = 32;

/// A feature bit as a mask.
pub const fn bit(n: u32) -> u64 {
    1u64 << n
}

/// `VIRTIO_F_VERSION_1`.
pub const F_VERSION_1: u64 = bit(VIRTIO_F_VERSION_1);
/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const F_INDIRECT_DESC: u64 = bit(VIRTIO_RING_F_INDIRECT_DESC);
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const F_EVENT_IDX: u64 = bit(VIRTIO_RING_F_EVENT_IDX);
/// `VIRTIO_BLK_F_SIZE_MAX`.
pub const F_SIZE_MAX: u64 = bit(VIRTIO_BLK_F_SIZE_MAX);
/// `VIRTIO_BLK_F_SEG_MAX`.
pub const F_SEG_MAX: u64 = bit(VIRTIO_BLK_F_SEG_MAX);
/// `VIRTIO_BLK_F_RO`.
pub const F_RO: u64 = bit(VIRTIO_BLK_F_RO);
/// `VIRTIO_BLK_F_BLK_SIZE`.
pub const F_BLK_SIZE: u64 = bit(VIRTIO_BLK_F_BLK_SIZE);
/// `VIRTIO_BLK_F_FLUSH`.
pub const F_FLUSH: u64 = bit(VIRTIO_BLK_F_FLUSH);
/// `VIRTIO_BLK_F_TOPOLOGY`.
pub const F_TOPOLOGY: u64 = bit(VIRTIO_BLK_F_TOPOLOGY);
/// `VIRTIO_BLK_F_CONFIG_WCE`.
pub const F_CONFIG_WCE: u64 = bit(VIRTIO_BLK_F_CONFIG_WCE);
/// `VIRTIO_BLK_F_MQ`.
pub const F_MQ: u64 = bit(VIRTIO_BLK_F_MQ);
/// `VIRTIO_BLK_F_DISCARD`.
pub const F_DISCARD: u64 = bit(VIRTIO_BLK_F_DISCARD);
/// `VIRTIO_BLK_F_WRITE_ZEROES`.
pub const F_WRITE_ZEROES: u64 = bit(VIRTIO_BLK_F_WRITE_ZEROES);

/// Limits the device advertises and enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single data segment in bytes (`size_max`).
    pub size_max: u32,
    /// Most data segments in one request (`seg_max`).
    pub seg_max: u32,
    /// Most sectors one discard segment may cover.
    pub max_discard_sectors: u32,
    /// Most segments in one discard request.
    pub max_discard_seg: u32,
    /// Most sectors one write-zeroes segment may cover.
    pub max_write_zeroes_sectors: u32,
    /// Most segments in one write-zeroes request.
    pub max_write_zeroes_seg: u32,
}

impl Limits {
    /// The limits for queues of `queue_size` entries: `seg_max` leaves room
    /// for the header and status descriptors, so that a request never needs
    /// more descriptors than the queue holds.
    pub fn for_queue_size(queue_size: u16) -> Self {
        Limits {
            size_max: 1 << 20,
            seg_max: u32::from(queue_size.saturating_sub(2)).max(1),
            // 1 GiB per segment: large enough for mkfs and fstrim, small
            // enough that one request cannot monopolise the queue for long.
            max_discard_sectors: 1 << 21,
            max_discard_seg: 32,
            max_write_zeroes_sectors: 1 << 21,
            max_write_zeroes_seg: 32,
        }
    }
}

/// What the configuration space is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigSource {
    pub capacity_sectors: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub writeback: u8,
    pub num_queues: u16,
    pub limits: Limits,
    pub write_zeroes_may_unmap: bool,
}

impl ConfigSource {
    /// The configuration space bytes.
    pub fn bytes(&self) -> [u8; CONFIG_SPACE_SIZE] {
        let mut c = [0u8; CONFIG_SPACE_SIZE];
        put(&mut c, 0, &self.capacity_sectors.to_le_bytes());
        put(&mut c, 8, &self.limits.size_max.to_le_bytes());
        put(&mut c, 12, &self.limits.seg_max.to_le_bytes());
        // 16..20: geometry, not offered.
        put(&mut c, 20, &self.logical_sector_size.to_le_bytes());
        let exp = physical_block_exp(self.logical_sector_size, self.physical_sector_size);
        c[24] = exp;
        c[25] = 0; // alignment_offset
        let min_io: u16 = 1 << exp;
        put(&mut c, 26, &min_io.to_le_bytes());
        put(&mut c, 28, &0u32.to_le_bytes()); // opt_io_size: no preference
        c[WRITEBACK_OFFSET] = self.writeback;
        put(&mut c, 34, &self.num_queues.to_le_bytes());
        put(&mut c, 36, &self.limits.max_discard_sectors.to_le_bytes());
        put(&mut c, 40, &self.limits.max_discard_seg.to_le_bytes());
        let align = self.physical_sector_size.max(self.logical_sector_size) / 512;
        put(&mut c, 44, &align.max(1).to_le_bytes());
        put(
            &mut c,
            48,
            &self.limits.max_write_zeroes_sectors.to_le_bytes(),
        );
        put(&mut c, 52, &self.limits.max_write_zeroes_seg.to_le_bytes());
        c[56] = u8::from(self.write_zeroes_may_unmap);
        c
    }
}

fn put(c: &mut [u8; CONFIG_SPACE_SIZE], at: usize, bytes: &[u8]) {
    if let Some(dst) = c.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// log2(physical / logical), 0 when the physical sector is not a larger
/// power-of-two multiple of the logical one.
fn physical_block_exp(logical: u32, physical: u32) -> u8 {
    if logical == 0 || physical <= logical || !physical.is_multiple_of(logical) {
        return 0;
    }
    let ratio = physical / logical;
    if ratio.is_power_of_two() {
        // trailing_zeros of a u32 is at most 31.
        u8::try_from(ratio.trailing_zeros()).unwrap_or(0)
    } else {
        0
    }
}

/// Copies the bytes of `space` at `offset` into `data`; bytes past the end
/// of the space read as zero.
pub(crate) fn read_bytes(space: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| space.get(o))
            .copied()
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(logical: u32, physical: u32) -> ConfigSource {
        ConfigSource {
            capacity_sectors: 0x0123_4567_89ab,
            logical_sector_size: logical,
            physical_sector_size: physical,
            writeback: 1,
            num_queues: 4,
            limits: Limits::for_queue_size(256),
            write_zeroes_may_unmap: true,
        }
    }

    #[test]
    fn layout_matches_virtio_blk_config() {
        let c = source(512, 4096).bytes();
        assert_eq!(&c[0..8], &0x0123_4567_89abu64.to_le_bytes());
        assert_eq!(u32::from_le_bytes(c[8..12].try_into().unwrap()), 1 << 20);
        assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), 254);
        assert_eq!(&c[16..20], &[0, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512);
        assert_eq!(c[24], 3, "4096 / 512 = 2^3");
        assert_eq!(u16::from_le_bytes(c[26..28].try_into().unwrap()), 8);
        assert_eq!(c[32], 1);
        assert_eq!(c[33], 0);
        assert_eq!(u16::from_le_bytes(c[34..36].try_into().unwrap()), 4);
        assert_eq!(u32::from_le_bytes(c[44..48].try_into().unwrap()), 8);
        assert_eq!(c[56], 1);
        assert_eq!(&c[57..60], &[0, 0, 0]);
    }

    #[test]
    fn native_4k_disk() {
        let c = source(4096, 4096).bytes();
        assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 4096);
        assert_eq!(c[24], 0);
        assert_eq!(u16::from_le_bytes(c[26..28].try_into().unwrap()), 1);
    }

    #[test]
    fn reads_past_the_end_are_zero() {
        let space = [1u8, 2, 3];
        let mut out = [9u8; 5];
        read_bytes(&space, 1, &mut out);
        assert_eq!(out, [2, 3, 0, 0, 0]);
        read_bytes(&space, u64::MAX, &mut out);
        assert_eq!(out, [0; 5]);
    }

    #[test]
    fn odd_sector_sizes_give_exponent_zero() {
        assert_eq!(physical_block_exp(512, 512), 0);
        assert_eq!(physical_block_exp(512, 1536), 0);
        assert_eq!(physical_block_exp(4096, 512), 0);
        assert_eq!(physical_block_exp(0, 512), 0);
    }
}
