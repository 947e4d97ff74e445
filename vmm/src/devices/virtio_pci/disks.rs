//! Puts the VM definition's disks on the PCI bus: each image opened through
//! `vhd::open` (a writable image is locked against a second writer), wrapped
//! in a virtio-blk device and its virtio-pci transport, one slot each.

use std::sync::{Arc, Mutex};

use virtio_blk::{Block, BlockOptions};
use vm_memory::GuestMemoryMmap;

use super::interrupt::GsiRoutes;
use super::{BAR_SIZE, VirtioPciBlock};
use crate::config::{DiskConfig, DiskFormat};
use crate::error::{Error, Result};
use crate::pci::{BarAllocator, PciRoot};
use crate::tables::mptable::PciIrq;

/// IOAPIC pins INTx is spread over (the ones no legacy device uses).
const INTX_PINS: [u8; 4] = [5, 9, 10, 11];

fn format_name(f: vhd::Format) -> &'static str {
    match f {
        vhd::Format::Raw => "raw",
        vhd::Format::Vhd => "vhd",
        vhd::Format::Vhdx => "vhdx",
    }
}

/// Slot and INTA# wiring of the disks, in order: disk i in slot i + 1
/// (slot 0 is the host bridge), INTA# on one of [`INTX_PINS`].
pub fn intx_routes(disks: usize) -> Vec<PciIrq> {
    (1..=disks.min(crate::pci::SLOTS - 1))
        .filter_map(|slot| {
            let slot = u8::try_from(slot).ok()?;
            Some(PciIrq {
                slot,
                ioapic_pin: INTX_PINS[usize::from(slot) % INTX_PINS.len()],
            })
        })
        .collect()
}

/// A raw disk whose format was only probed is served through a
/// [`vhd::SignatureGuard`]: the guest must not be able to turn it into a VHD
/// or VHDX image (whose parent locators would name host files) for the next
/// time it is opened. A definition that names the format gets the image as
/// it is.
fn guard_probed_raw(disk: &DiskConfig, image: vhd::Image) -> Arc<dyn vhd::DiskImage> {
    if disk.format.is_none() && !disk.readonly && image.format() == vhd::Format::Raw {
        Arc::new(vhd::SignatureGuard::new(image))
    } else {
        Arc::new(image)
    }
}

/// Opens `disk` and wraps it in a virtio-blk device.
pub fn open_disk(disk: &DiskConfig) -> Result<Block<GuestMemoryMmap>> {
    let options = vhd::OpenOptions {
        read_only: disk.readonly,
        ..vhd::OpenOptions::default()
    };
    let image = vhd::open(&disk.path, &options).map_err(|source| Error::Disk {
        path: disk.path.clone(),
        source,
    })?;
    if let Some(expected) = disk.format {
        let want = match expected {
            DiskFormat::Raw => vhd::Format::Raw,
            DiskFormat::Vhd => vhd::Format::Vhd,
            DiskFormat::Vhdx => vhd::Format::Vhdx,
        };
        if image.format() != want {
            return Err(Error::DiskFormat {
                path: disk.path.clone(),
                found: format_name(image.format()).to_string(),
                expected: format_name(want).to_string(),
            });
        }
    }
    let options = BlockOptions {
        serial: disk.serial.clone().unwrap_or_default(),
        read_only: disk.readonly,
        ..BlockOptions::default()
    };
    Block::new(guard_probed_raw(disk, image), &options).map_err(|source| Error::BlockDevice {
        path: disk.path.clone(),
        source,
    })
}

/// Adds one virtio-blk device per disk to `root`.
pub fn attach(
    root: &mut PciRoot,
    bars: &mut BarAllocator,
    disks: &[DiskConfig],
    mem: &Arc<GuestMemoryMmap>,
    routes: &Arc<GsiRoutes>,
) -> Result<()> {
    let routes_intx = intx_routes(disks.len());
    for (i, disk) in disks.iter().enumerate() {
        let block = Arc::new(open_disk(disk)?);
        let slot = root.free_slot().map_err(|_| Error::PciFull(i))?;
        let bar = bars.allocate(BAR_SIZE).ok_or(Error::PciFull(i))?;
        let pin = routes_intx
            .get(i)
            .filter(|r| r.slot == slot)
            .map(|r| r.ioapic_pin)
            .ok_or(Error::PciFull(i))?;
        let dev = VirtioPciBlock::new(block, mem.clone(), routes.clone(), bar, pin)?;
        root.insert(slot, Arc::new(Mutex::new(dev)))
            .map_err(|_| Error::PciFull(i))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probed_raw_disk_cannot_be_made_to_look_like_a_vhdx() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let open = || vhd::open(&path, &vhd::OpenOptions::default()).unwrap();
        let probed = guard_probed_raw(&DiskConfig::new(&path), open());
        let e = probed.write_at(b"vhdxfile", 0).unwrap_err();
        assert!(matches!(e, vhd::Error::SignatureRefused { .. }), "{e}");
        probed.write_at(b"data", 0).unwrap();
        drop(probed);
        // Named raw: the user said what the file is; writes go through.
        let named = DiskConfig {
            format: Some(DiskFormat::Raw),
            ..DiskConfig::new(&path)
        };
        let image = guard_probed_raw(&named, open());
        image.write_at(b"vhdxfile", 0).unwrap();
    }
}
