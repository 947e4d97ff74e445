//! Descriptors in the styles of the producers that exist, parsed and mapped
//! to VM descriptions.

use ovf::descriptor::{
    ApplianceDescription, Backing, Bus, Content, DiskAttachment, DiskFormat, DiskInfo, FileInfo,
    ItemKind, MapError, MapOptions, NicModel, OvfVersion, UnmappedReason, VmDescription, describe,
    parse,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn sample(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/descriptors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn appliance(name: &str) -> ApplianceDescription {
    let env = parse(&sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    describe(&env, &MapOptions::default()).unwrap()
}

fn one_vm(name: &str) -> (ApplianceDescription, VmDescription) {
    let mut app = appliance(name);
    assert_eq!(app.vms.len(), 1, "{name}");
    let vm = app.vms.remove(0);
    (app, vm)
}

fn disk<'a>(app: &'a ApplianceDescription, a: &DiskAttachment) -> &'a DiskInfo {
    match a.backing {
        Backing::Disk(i) => &app.disks[i.0],
        Backing::File(_) => panic!("{} is backed by a file", a.instance_id),
    }
}

fn file(app: &ApplianceDescription, b: Option<Backing>) -> Option<&FileInfo> {
    match b? {
        Backing::Disk(i) => app.disk_file(i),
        Backing::File(f) => app.files.get(f.0),
    }
}

fn disk_ids(app: &ApplianceDescription, vm: &VmDescription) -> Vec<String> {
    vm.disks
        .iter()
        .map(|d| disk(app, d).disk_id.clone())
        .collect()
}

#[test]
fn virtualbox_ovf10() {
    let env = parse(&sample("virtualbox-ovf10.ovf")).unwrap();
    assert_eq!(env.version, OvfVersion::V1);
    assert_eq!(env.lang.as_deref(), Some("en-US"));
    let Content::System(vs) = &env.content else {
        panic!("expected a VirtualSystem")
    };
    // The vbox:Machine section is kept, not required.
    assert_eq!(vs.sections.extensions.len(), 1);
    assert_eq!(vs.sections.extensions[0].element.name.local, "Machine");
    assert!(!vs.sections.extensions[0].required);

    let (app, vm) = one_vm("virtualbox-ovf10.ovf");
    assert_eq!(vm.name, "sample-vm");
    assert_eq!(vm.vcpus, Some(2));
    assert_eq!(vm.memory_bytes, Some(2048 * MIB));
    assert_eq!(vm.system_types, ["virtualbox-2.2"]);
    assert_eq!(vm.controllers.len(), 2);
    assert_eq!(vm.controllers[0].bus, Bus::Ide);
    assert_eq!(vm.controllers[1].bus, Bus::Sata);
    assert_eq!(vm.disks.len(), 1);
    let d = disk(&app, &vm.disks[0]);
    assert_eq!(d.disk_id, "vmdisk1");
    assert_eq!(
        file(&app, Some(vm.disks[0].backing)).unwrap().href,
        "sample-vm-disk001.vmdk"
    );
    assert_eq!(d.capacity_bytes, 20 * GIB);
    assert_eq!(d.format, DiskFormat::VmdkStreamOptimized);
    let a = vm.disks[0].address.as_ref().unwrap();
    assert_eq!(
        (a.bus, a.controller_index, a.position),
        (Bus::Sata, 0, Some(0))
    );
    assert_eq!(vm.cdroms.len(), 1);
    assert!(vm.cdroms[0].image.is_none());
    assert_eq!(vm.cdroms[0].address.as_ref().unwrap().bus, Bus::Ide);
    assert_eq!(vm.nics.len(), 1);
    assert_eq!(vm.nics[0].adapter, NicModel::E1000);
    assert_eq!(vm.nics[0].network.as_deref(), Some("NAT"));
    assert!(vm.nics[0].network_declared);
    let os = vm.os.as_ref().unwrap();
    assert_eq!(os.id, 94);
    assert_eq!(os.name.as_deref(), Some("Ubuntu 64-Bit"));
    assert_eq!(vm.products[0].product.as_deref(), Some("Sample Appliance"));
    assert!(!vm.eula_present);
    // USB and sound are listed with their reasons.
    let reasons: Vec<_> = vm
        .unmapped
        .iter()
        .map(|u| (&u.instance_id[..], &u.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "6",
                &UnmappedReason::NotModelled {
                    device: "USB controller"
                }
            ),
            (
                "7",
                &UnmappedReason::NotModelled {
                    device: "sound card"
                }
            ),
        ]
    );
    assert_eq!(vm.ignored_sections, ["vbox:Machine"]);
}

#[test]
fn virtualbox_ovf20_storage_and_ethernet_port_items() {
    let env = parse(&sample("virtualbox-ovf20.ovf")).unwrap();
    assert_eq!(env.version, OvfVersion::V2);
    let Content::System(vs) = &env.content else {
        panic!("expected a VirtualSystem")
    };
    let kinds: Vec<_> = vs.sections.hardware[0]
        .items
        .iter()
        .map(|i| i.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ItemKind::StorageItem)
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ItemKind::EthernetPortItem)
            .count(),
        1
    );

    let (app, vm) = one_vm("virtualbox-ovf20.ovf");
    assert_eq!(vm.memory_bytes, Some(GIB));
    assert_eq!(vm.controllers.len(), 2);
    assert_eq!(vm.controllers[0].bus, Bus::Nvme);
    assert_eq!(vm.controllers[1].bus, Bus::Scsi);
    assert_eq!(vm.controllers[1].model.as_deref(), Some("VirtioSCSI"));
    // Boot order follows the controllers, not the item order.
    assert_eq!(disk_ids(&app, &vm), ["vmdisk1", "vmdisk2"]);
    assert_eq!(disk(&app, &vm.disks[0]).capacity_bytes, 10 * GIB);
    assert_eq!(disk(&app, &vm.disks[1]).capacity_bytes, 512 * MIB);
    assert_eq!(vm.nics[0].adapter, NicModel::Virtio);
    assert_eq!(
        vm.os.as_ref().unwrap().name.as_deref(),
        Some("Linux 64-Bit")
    );
    assert!(vm.unmapped.is_empty(), "{:?}", vm.unmapped);
}

#[test]
fn vmware_ovftool_default_configuration() {
    let env = parse(&sample("vmware-ovftool.ovf")).unwrap();
    let f = &env.references[0];
    assert_eq!(f.compression.as_deref(), Some("gzip"));
    assert_eq!(f.chunk_size, Some(2_147_483_648));
    assert_eq!(f.size, Some(734_003_200));
    let (app, vm) = one_vm("vmware-ovftool.ovf");
    assert_eq!(vm.name, "Example Appliance");
    assert_eq!(app.configuration.as_deref(), Some("medium"));
    assert_eq!(vm.vcpus, Some(4));
    assert_eq!(vm.memory_bytes, Some(8 * GIB));
    assert_eq!(vm.system_types, ["vmx-13", "vmx-14", "vmx-19"]);
    let buses: Vec<_> = vm.controllers.iter().map(|c| c.bus).collect();
    assert_eq!(buses, [Bus::Scsi, Bus::Sata, Bus::Nvme]);
    assert_eq!(disk_ids(&app, &vm), ["vmdisk1", "vmdisk2"]);
    assert_eq!(disk(&app, &vm.disks[0]).capacity_bytes, 16 * GIB);
    assert_eq!(disk(&app, &vm.disks[0]).populated_size, Some(1_887_436_800));
    // ${data.size} resolves to the property default (20) in GiB.
    assert_eq!(disk(&app, &vm.disks[1]).capacity_bytes, 20 * GIB);
    let f = file(&app, Some(vm.disks[0].backing)).unwrap();
    assert_eq!(
        (f.compression.as_deref(), f.chunk_size),
        (Some("gzip"), Some(2 << 30))
    );
    assert_eq!(file(&app, vm.cdroms[0].image).unwrap().href, "tools.iso");
    assert_eq!(vm.cdroms[0].address.as_ref().unwrap().bus, Bus::Sata);
    assert_eq!(vm.nics[0].adapter, NicModel::Vmxnet3);
    assert_eq!(vm.nics[0].network.as_deref(), Some("VM Network"));
    let os = vm.os.as_ref().unwrap();
    assert_eq!(os.vmw_os_type.as_deref(), Some("other4xLinux64Guest"));
    assert!(vm.eula_present);
    assert_eq!(vm.annotation.as_deref(), Some("Built for tests"));
    let p = &vm.products[0];
    assert_eq!(p.full_version.as_deref(), Some("4.0.1-build7"));
    let keys: Vec<_> = p.properties.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "appliance.hostname",
            "appliance.ip0",
            "appliance.data.size",
            "appliance.root.password"
        ]
    );
    assert_eq!(p.properties[0].category.as_deref(), Some("Networking"));
    assert_eq!(p.properties[2].category.as_deref(), Some("Storage"));
    assert!(p.properties[3].password);
    assert_eq!(
        p.properties[3].default_value, None,
        "password defaults are withheld"
    );
    let unmapped: Vec<_> = vm
        .unmapped
        .iter()
        .map(|u| (&u.instance_id[..], u.required))
        .collect();
    assert_eq!(unmapped, [("6", false), ("11", false)]);
    assert!(
        vm.ignored_sections
            .contains(&"vmw:BootOrderSection".to_string())
    );
    assert!(vm.ignored_sections.contains(&"vmw:Config".to_string()));
}

#[test]
fn vmware_ovftool_other_configurations() {
    let env = parse(&sample("vmware-ovftool.ovf")).unwrap();
    for (cfg, cpus, mem) in [("small", 2, 4096 * MIB), ("large", 8, 16 * GIB)] {
        let opts = MapOptions {
            configuration: Some(cfg.into()),
            ..MapOptions::default()
        };
        let app = describe(&env, &opts).unwrap();
        assert_eq!(app.configuration.as_deref(), Some(cfg));
        let vm = &app.vms[0];
        assert_eq!(vm.vcpus, Some(cpus), "{cfg}");
        assert_eq!(vm.memory_bytes, Some(mem), "{cfg}");
        assert!(
            vm.unmapped
                .iter()
                .all(|u| u.reason != UnmappedReason::Duplicate)
        );
    }
    // A value the user chose overrides the property default.
    let chosen = MapOptions {
        property_values: vec![("appliance.data.size".into(), "32".into())],
        ..MapOptions::default()
    };
    let app = describe(&env, &chosen).unwrap();
    let d = &app.vms[0].disks[1];
    assert_eq!(disk(&app, d).disk_id, "vmdisk2");
    assert_eq!(disk(&app, d).capacity_bytes, 32 * GIB);
    let bad = MapOptions {
        configuration: Some("huge".into()),
        ..MapOptions::default()
    };
    assert!(matches!(
        describe(&env, &bad),
        Err(MapError::UnknownConfiguration(c)) if c == "huge"
    ));
}

#[test]
fn vmware_ovf09() {
    let env = parse(&sample("vmware-ovf09.ovf")).unwrap();
    assert_eq!(env.version, OvfVersion::V0_9);
    assert!(env.disk_section.is_some());
    assert_eq!(
        env.network_section.as_ref().unwrap().networks[0].name,
        "Bridged"
    );
    let (app, vm) = one_vm("vmware-ovf09.ovf");
    assert_eq!(vm.id, "legacy");
    assert_eq!(vm.vcpus, Some(1));
    assert_eq!(vm.memory_bytes, Some(256 * MIB));
    assert_eq!(vm.disks.len(), 1);
    assert_eq!(
        disk(&app, &vm.disks[0]).format,
        DiskFormat::VmdkStreamOptimized
    );
    assert_eq!(disk(&app, &vm.disks[0]).capacity_bytes, 4 * GIB);
    assert_eq!(vm.disks[0].name.as_deref(), Some("Harddisk 1"));
    assert_eq!(vm.disks[0].address.as_ref().unwrap().bus, Bus::Scsi);
    assert_eq!(vm.cdroms.len(), 1);
    assert_eq!(vm.nics[0].adapter, NicModel::PcNet32);
    assert!(vm.nics[0].connected);
    assert!(vm.cdroms[0].image.is_none());
    assert_eq!(vm.os.as_ref().unwrap().name.as_deref(), Some("LINUX"));
    assert_eq!(
        vm.unmapped[0].reason,
        UnmappedReason::NotModelled { device: "floppy" }
    );
}

#[test]
fn hyperv_vhd_and_vhdx_formats() {
    let (app, vm) = one_vm("hyperv-vhdx.ovf");
    assert_eq!(vm.memory_bytes, Some(4 * GIB));
    // The SCSI controller comes first in the document, so its disk boots first.
    assert_eq!(disk(&app, &vm.disks[0]).format, DiskFormat::Vhdx);
    assert_eq!(disk(&app, &vm.disks[0]).capacity_bytes, 128 * GIB);
    assert_eq!(
        file(&app, Some(vm.disks[0].backing)).unwrap().href,
        "Virtual Hard Disks/boot.vhdx"
    );
    assert_eq!(disk(&app, &vm.disks[1]).format, DiskFormat::Vhd);
    assert_eq!(disk(&app, &vm.disks[1]).capacity_bytes, 40 * GIB);
    assert_eq!(vm.nics[0].mac_address.as_deref(), Some("00155D012345"));
    assert!(matches!(vm.nics[0].adapter, NicModel::Other(_)));
    assert_eq!(
        vm.os.as_ref().unwrap().name.as_deref(),
        Some("Microsoft Windows 10 64-bit")
    );
}

#[test]
fn ovirt_style() {
    let env = parse(&sample("ovirt.ovf")).unwrap();
    assert_eq!(env.version, OvfVersion::V1);
    let (app, vm) = one_vm("ovirt.ovf");
    assert_eq!(vm.name, "test-vm");
    // CPU count from the socket topology.
    assert_eq!(vm.vcpus, Some(4));
    assert_eq!(vm.memory_bytes, Some(2048 * MIB));
    assert_eq!(vm.disks.len(), 1);
    assert!(
        vm.disks[0].address.is_none(),
        "null-UUID parent is no controller"
    );
    assert_eq!(disk(&app, &vm.disks[0]).capacity_bytes, 8 * GIB);
    assert!(matches!(
        disk(&app, &vm.disks[0]).format,
        DiskFormat::VmdkOther(_)
    ));
    assert_eq!(disk(&app, &vm.disks[0]).parent, None);
    assert_eq!(vm.nics[0].network.as_deref(), Some("ovirtmgmt"));
    assert_eq!(vm.os.as_ref().unwrap().id, 80);
    let reasons: Vec<_> = vm.unmapped.iter().map(|u| &u.reason).collect();
    assert_eq!(
        reasons,
        [
            &UnmappedReason::UnknownControllerSubtype {
                sub_type: String::new()
            },
            &UnmappedReason::UnsupportedResourceType { resource_type: 0 },
        ]
    );
}

#[test]
fn citrix_style() {
    let env = parse(&sample("citrix.ovf")).unwrap();
    let Content::System(vs) = &env.content else {
        panic!("expected a VirtualSystem")
    };
    assert_eq!(vs.sections.hardware[0].extensions.len(), 2);
    let (app, vm) = one_vm("citrix.ovf");
    assert_eq!(vm.vcpus, Some(2));
    assert_eq!(vm.memory_bytes, Some(GIB));
    assert_eq!(disk(&app, &vm.disks[0]).format, DiskFormat::Vhd);
    assert_eq!(vm.disks[0].address.as_ref().unwrap().bus, Bus::Ide);
    assert_eq!(vm.nics[0].adapter, NicModel::Unspecified);
    assert_eq!(vm.nics[0].mac_address.as_deref(), Some("aa:bb:cc:00:11:22"));
    assert!(
        vm.ignored_sections
            .contains(&"xenovf:XenServerMetadataSection".to_string())
    );
}

#[test]
fn collection_flattens_with_startup_order_and_shared_properties() {
    let app = appliance("collection.ovf");
    let ids: Vec<_> = app.vms.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["web", "db"]);
    let cids: Vec<_> = app.collections.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(cids, ["stack", "db-tier"]);
    assert_eq!(app.collections[1].parent.map(|p| p.0), Some(0));
    assert_eq!(app.vms[0].collection.map(|c| c.0), Some(0));
    assert_eq!(app.vms[1].collection.map(|c| c.0), Some(1));
    assert_eq!(app.vms[0].startup_order, Some(2));
    assert_eq!(
        app.vms[1].startup_order, None,
        "db-tier itself is ordered, not db"
    );
    let stack = &app.collections[0];
    assert_eq!(stack.startup.len(), 2);
    assert_eq!(
        stack.startup[0].stop_action.as_deref(),
        Some("guestShutdown")
    );
    assert!(stack.eula_present);
    assert_eq!(stack.products[0].properties[0].key, "db.data_gb");
    assert_eq!(stack.ignored_sections, ["ResourceAllocationSection"]);
    assert!(app.vms.iter().all(|v| v.eula_present));
    assert_eq!(app.vms[0].disks[0].address.as_ref().unwrap().bus, Bus::Scsi);
    let db = &app.vms[1];
    assert_eq!(db.memory_bytes, Some(2 * GIB));
    let disks: Vec<_> = db
        .disks
        .iter()
        .map(|d| {
            let info = disk(&app, d);
            (
                info.disk_id.as_str(),
                info.file.is_some(),
                info.capacity_bytes,
            )
        })
        .collect();
    assert_eq!(
        disks,
        [("db-disk", true, 8 * GIB), ("db-data", false, 50 * GIB)]
    );
    assert_eq!(db.nics[0].adapter, NicModel::Vmxnet3);
    assert_eq!(app.networks, ["frontend", "backend"]);
    assert_eq!(app.files.len(), 2);
    assert_eq!(app.disks.len(), 3, "each used disk appears once");
}

#[test]
fn vm_description_serialises_to_json() {
    let app = appliance("vmware-ovftool.ovf");
    let json: serde_json::Value = serde_json::to_value(&app).unwrap();
    let vm = &json["vms"][0];
    assert_eq!(vm["vcpus"], 4);
    assert_eq!(vm["memory_bytes"], 8 * GIB);
    // Disks are listed once, in the order items first use them: Hard Disk 2
    // comes first in the document, Hard Disk 1 boots first.
    assert_eq!(vm["disks"][0]["backing"]["disk"], 1);
    assert_eq!(vm["disks"][0]["address"]["bus"], "scsi");
    assert_eq!(json["disks"][1]["disk_id"], "vmdisk1");
    assert_eq!(json["disks"][1]["format"]["kind"], "vmdk-streamOptimized");
    assert_eq!(json["disks"][1]["file"], 0);
    assert_eq!(json["files"][0]["href"], "appliance-disk1.vmdk");
    assert_eq!(vm["nics"][0]["adapter"]["model"], "vmxnet3");
    assert_eq!(vm["unmapped"][0]["reason"]["reason"], "not_modelled");
}
