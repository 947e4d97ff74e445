//! The transport driven the way a driver (or a hostile guest) would, on a
//! real KVM VM (the routes and irqfds need one).

use std::sync::Arc;

use kvm_ioctls::Kvm;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::common::{STATUS_FEATURES_OK, STATUS_NEEDS_RESET};
use super::interrupt::GsiRoutes;
use super::*;

fn transport(dir: &std::path::Path) -> VirtioPciBlock {
    let kvm = Kvm::new().expect("/dev/kvm is needed for these tests; load kvm_intel or kvm_amd");
    let vm = kvm.create_vm().unwrap();
    vm.create_irq_chip().unwrap();
    let mem = Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap());
    let image = vhd::create(
        &dir.join("disk.raw"),
        &vhd::CreateOptions::new(vhd::Format::Raw, vhd::ImageType::Fixed, 1 << 20),
    )
    .unwrap();
    let block =
        Arc::new(Block::new(Arc::new(image), &virtio_blk::BlockOptions::default()).unwrap());
    let routes = Arc::new(GsiRoutes::new(Arc::new(vm)));
    VirtioPciBlock::new(block, mem, routes, 0x1_0000_0000, 5).unwrap()
}

fn status(t: &mut VirtioPciBlock) -> u8 {
    let mut b = [0u8];
    t.read_bar(0, COMMON_OFFSET + 0x14, &mut b);
    b[0]
}

fn w(t: &mut VirtioPciBlock, off: u64, data: &[u8]) {
    t.write_bar(0, COMMON_OFFSET + off, data);
}

#[test]
fn header_and_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = transport(dir.path());
    let mut b = [0u8; 4];
    t.read_config(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1042_1af4);
    // Walk the list: common, ISR, device, notify, PCI access, MSI-X.
    let mut kinds = Vec::new();
    t.read_config(0x34, &mut b[..1]);
    let mut cap = u64::from(b[0]);
    while cap != 0 {
        t.read_config(cap, &mut b);
        kinds.push((b[0], if b[0] == 0x09 { b[3] } else { 0 }));
        cap = u64::from(b[1]);
    }
    assert_eq!(
        kinds,
        vec![(9, 1), (9, 3), (9, 4), (9, 2), (9, 5), (0x11, 0)]
    );
}

#[test]
fn negotiation_and_a_queue_outside_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = transport(dir.path());
    // A driver that does not accept VERSION_1 is refused.
    w(&mut t, 0x14, &[3]);
    w(&mut t, 0x14, &[3 | STATUS_FEATURES_OK]);
    assert_eq!(status(&mut t) & STATUS_FEATURES_OK, 0);
    w(&mut t, 0x14, &[0]);
    assert_eq!(status(&mut t), 0);
    // Accept VERSION_1 only.
    w(&mut t, 0x14, &[3]);
    w(&mut t, 0x08, &1u32.to_le_bytes());
    w(&mut t, 0x0c, &1u32.to_le_bytes());
    w(&mut t, 0x14, &[3 | STATUS_FEATURES_OK]);
    assert_ne!(status(&mut t) & STATUS_FEATURES_OK, 0);
    // Queue 0 with its rings beyond guest memory: DRIVER_OK fails and
    // the device asks for a reset instead of serving it.
    w(&mut t, 0x16, &0u16.to_le_bytes());
    w(&mut t, 0x18, &8u16.to_le_bytes());
    w(&mut t, 0x20, &0x4000_0000u64.to_le_bytes());
    w(&mut t, 0x28, &0x4000_1000u64.to_le_bytes());
    w(&mut t, 0x30, &0x4000_2000u64.to_le_bytes());
    w(&mut t, 0x1c, &1u16.to_le_bytes());
    w(&mut t, 0x14, &[3 | STATUS_FEATURES_OK | 4]);
    assert_ne!(status(&mut t) & STATUS_NEEDS_RESET, 0);
    assert!(!t.device.is_active());
    // After reset the same queue in memory works.
    w(&mut t, 0x14, &[0]);
    w(&mut t, 0x14, &[3]);
    w(&mut t, 0x08, &1u32.to_le_bytes());
    w(&mut t, 0x0c, &1u32.to_le_bytes());
    w(&mut t, 0x14, &[3 | STATUS_FEATURES_OK]);
    w(&mut t, 0x18, &8u16.to_le_bytes());
    w(&mut t, 0x20, &0x10_0000u64.to_le_bytes());
    w(&mut t, 0x28, &0x10_1000u64.to_le_bytes());
    w(&mut t, 0x30, &0x10_2000u64.to_le_bytes());
    w(&mut t, 0x1c, &1u16.to_le_bytes());
    w(&mut t, 0x14, &[3 | STATUS_FEATURES_OK | 4]);
    assert_eq!(status(&mut t), 3 | STATUS_FEATURES_OK | 4);
    assert!(t.device.is_active());
    // Moving the ring now is ignored.
    w(&mut t, 0x20, &0x20_0000u64.to_le_bytes());
    let mut b = [0u8; 8];
    t.read_bar(0, COMMON_OFFSET + 0x20, &mut b);
    assert_eq!(u64::from_le_bytes(b), 0x10_0000);
    // An available index a whole ring ahead breaks the queue: the device
    // sets DEVICE_NEEDS_RESET (the notification goes through the BAR, as
    // when no ioeventfd catches it).
    t.mem.write_obj(100u16, GuestAddress(0x10_1002)).unwrap();
    t.write_bar(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
    let mut broken = false;
    for _ in 0..500 {
        if status(&mut t) & STATUS_NEEDS_RESET != 0 {
            broken = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(broken, "status {:#x}", status(&mut t));
    w(&mut t, 0x14, &[0]);
    assert_eq!(status(&mut t), 0);
}

#[test]
fn msix_through_config_space_and_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = transport(dir.path());
    let ctl = t.msix_cap as u64 + 2;
    let mut b = [0u8; 2];
    t.read_config(ctl, &mut b);
    assert_eq!(u16::from_le_bytes(b), 1, "two vectors, disabled");
    t.write_config(ctl, &msix::CONTROL_ENABLE.to_le_bytes());
    t.read_config(ctl, &mut b);
    assert_eq!(u16::from_le_bytes(b), msix::CONTROL_ENABLE | 1);
    // Program vector 1 and unmask it: the route reaches KVM.
    t.write_bar(0, MSIX_TABLE_OFFSET + 16, &0xfee0_0000u32.to_le_bytes());
    t.write_bar(0, MSIX_TABLE_OFFSET + 24, &0x41u32.to_le_bytes());
    t.write_bar(0, MSIX_TABLE_OFFSET + 28, &0u32.to_le_bytes());
    let mut e = [0u8; 16];
    t.read_bar(0, MSIX_TABLE_OFFSET + 16, &mut e);
    assert_eq!(&e[8..12], &0x41u32.to_le_bytes());
    // Through the PCI configuration access capability: the same table.
    let cap = t.pci_cfg_cap as u64;
    t.write_config(cap + 4, &[0]);
    t.write_config(
        cap + 8,
        &u32::try_from(MSIX_TABLE_OFFSET + 24).unwrap().to_le_bytes(),
    );
    t.write_config(cap + 12, &4u32.to_le_bytes());
    let mut d = [0u8; 4];
    t.read_config(cap + 16, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x41);
    // A window length the capability does not allow does not reach the
    // BAR: the data register reads as the plain register it is.
    t.write_config(cap + 12, &3u32.to_le_bytes());
    t.read_config(cap + 16, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0);
}
