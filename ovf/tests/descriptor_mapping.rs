//! Mapping details: every allocation-unit spelling, hardware section choice,
//! range bounds, duplicates, direct file references and unknown controllers.

use ovf::descriptor::{
    ApplianceDescription, Backing, Bus, DiskFormat, MapError, MapOptions, UnmappedReason,
    VmDescription, describe, parse,
};

const HEAD: &str = r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">"#;

fn item(props: &str) -> String {
    format!("<Item>{props}</Item>")
}

fn vm_with(prelude: &str, hardware: &str) -> Result<VmDescription, MapError> {
    app_with(prelude, hardware).map(|mut a| a.vms.remove(0))
}

fn app_with(prelude: &str, hardware: &str) -> Result<ApplianceDescription, MapError> {
    let doc = format!(
        "{HEAD}{prelude}<VirtualSystem ovf:id=\"vm\"><Info>x</Info>{hardware}</VirtualSystem></Envelope>"
    );
    let env = parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    describe(&env, &MapOptions::default())
}

fn memory(units: Option<&str>, quantity: u64) -> Result<Option<u64>, MapError> {
    let units = units
        .map(|u| format!("<rasd:AllocationUnits>{u}</rasd:AllocationUnits>"))
        .unwrap_or_default();
    let hw = format!(
        "<VirtualHardwareSection><Info>h</Info>{}</VirtualHardwareSection>",
        item(&format!(
            "{units}<rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>{quantity}</rasd:VirtualQuantity>"
        ))
    );
    vm_with("", &hw).map(|vm| vm.memory_bytes)
}

#[test]
fn every_memory_unit_spelling() {
    let cases: &[(&str, u64)] = &[
        ("byte * 2^20", 1 << 20),
        ("byte*2^20", 1 << 20),
        ("byte * 2^30", 1 << 30),
        ("byte*2^30", 1 << 30),
        ("byte * 2^10", 1 << 10),
        ("bytes * 2^20", 1 << 20),
        ("byte * 1024 * 1024", 1 << 20),
        ("byte * 10^6", 1_000_000),
        ("byte", 1),
        ("MegaBytes", 1 << 20),
        ("Megabytes", 1 << 20),
        ("MB", 1 << 20),
        ("MiB", 1 << 20),
        ("GigaBytes", 1 << 30),
        ("GB", 1 << 30),
        ("GiB", 1 << 30),
        ("KiloBytes", 1 << 10),
        ("KB", 1 << 10),
        (" byte  *  2^20 ", 1 << 20),
    ];
    for (units, multiplier) in cases {
        assert_eq!(
            memory(Some(units), 512).unwrap(),
            Some(512 * multiplier),
            "{units}"
        );
    }
    // No units: MiB, as producers that omit them mean.
    assert_eq!(memory(None, 512).unwrap(), Some(512 << 20));
    for bad in ["hertz * 10^6", "byte * 2^x", "furlongs", "byte * 0"] {
        assert!(
            matches!(memory(Some(bad), 1), Err(MapError::InvalidUnits { .. })),
            "{bad}"
        );
    }
}

#[test]
fn virtual_quantity_units_are_used_when_allocation_units_are_absent() {
    let hw = format!(
        "<VirtualHardwareSection><Info>h</Info>{}</VirtualHardwareSection>",
        item(
            "<rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity><rasd:VirtualQuantityUnits>byte * 2^30</rasd:VirtualQuantityUnits>"
        )
    );
    assert_eq!(vm_with("", &hw).unwrap().memory_bytes, Some(2 << 30));
}

#[test]
fn every_capacity_unit_spelling() {
    for (units, multiplier) in [
        ("byte", 1u64),
        ("byte * 2^20", 1 << 20),
        ("byte * 2^30", 1 << 30),
        ("byte*2^30", 1 << 30),
        ("byte * 2^40", 1 << 40),
        ("GigaBytes", 1 << 30),
        ("MegaBytes", 1 << 20),
    ] {
        let prelude = format!(
            "<DiskSection><Info>d</Info><Disk ovf:diskId=\"d\" ovf:capacity=\"3\" ovf:capacityAllocationUnits=\"{units}\"/></DiskSection>"
        );
        let hw = format!(
            "<VirtualHardwareSection><Info>h</Info>{}</VirtualHardwareSection>",
            item(
                "<rasd:HostResource>ovf:/disk/d</rasd:HostResource><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType>"
            )
        );
        let app = app_with(&prelude, &hw).unwrap();
        assert_eq!(
            app.vms[0].disks[0].backing,
            Backing::Disk(ovf::descriptor::DiskIndex(0))
        );
        assert_eq!(app.disks[0].capacity_bytes, 3 * multiplier, "{units}");
        assert!(app.disks[0].file.is_none(), "blank disk");
    }
}

#[test]
fn hardware_section_chosen_by_system_type() {
    let doc = format!(
        "{HEAD}<VirtualSystem ovf:id=\"vm\"><Info>x</Info>\
         <VirtualHardwareSection><Info>a</Info><System><vssd:VirtualSystemType>vmx-07 vmx-08</vssd:VirtualSystemType></System>{}</VirtualHardwareSection>\
         <VirtualHardwareSection><Info>b</Info><System><vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType></System>{}</VirtualHardwareSection>\
         </VirtualSystem></Envelope>",
        item(
            "<rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity>"
        ),
        item(
            "<rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>6</rasd:VirtualQuantity>"
        ),
    );
    let env = parse(doc.as_bytes()).unwrap();
    let first = describe(&env, &MapOptions::default())
        .unwrap()
        .vms
        .remove(0);
    assert_eq!(first.vcpus, Some(2));
    assert_eq!(first.system_types, ["vmx-07", "vmx-08"]);
    let pick = |t: &str| {
        describe(
            &env,
            &MapOptions {
                system_type: Some(t.into()),
                ..MapOptions::default()
            },
        )
    };
    assert_eq!(pick("VirtualBox-2.2").unwrap().vms[0].vcpus, Some(6));
    assert_eq!(pick("vmx-08").unwrap().vms[0].vcpus, Some(2));
    assert!(matches!(
        pick("xen-3.0"),
        Err(MapError::UnknownSystemType { .. })
    ));
}

#[test]
fn bounds_duplicates_and_missing_values_are_reported() {
    let hw = format!(
        "<VirtualHardwareSection><Info>h</Info>{}{}{}{}{}{}</VirtualHardwareSection>",
        "<Item ovf:bound=\"min\"><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>128</rasd:VirtualQuantity></Item>",
        "<Item ovf:bound=\"normal\"><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>256</rasd:VirtualQuantity></Item>",
        item(
            "<rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity>"
        ),
        item("<rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>"),
        item(
            "<rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>0</rasd:VirtualQuantity>"
        ),
        item("<rasd:InstanceID>6</rasd:InstanceID>"),
    );
    let vm = vm_with("", &hw).unwrap();
    assert_eq!(vm.memory_bytes, Some(256 << 20));
    assert_eq!(vm.vcpus, None);
    let reasons: Vec<_> = vm
        .unmapped
        .iter()
        .map(|u| (u.instance_id.as_str(), u.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "1",
                UnmappedReason::RangeBound {
                    bound: "min".into()
                }
            ),
            ("3", UnmappedReason::Duplicate),
            ("4", UnmappedReason::MissingQuantity),
            ("5", UnmappedReason::InvalidQuantity { value: 0 }),
            ("6", UnmappedReason::NoResourceType),
        ]
    );
    // Every reason renders a message.
    assert!(vm.unmapped.iter().all(|u| !u.reason.to_string().is_empty()));
}

#[test]
fn drives_referring_to_files_and_odd_host_resources() {
    let prelude = "<References><File ovf:id=\"raw\" ovf:href=\"disk.img\"/><File ovf:id=\"iso\" ovf:href=\"boot.iso\"/></References>\
        <DiskSection><Info>d</Info><Disk ovf:diskId=\"cd\" ovf:capacity=\"1\" ovf:fileRef=\"iso\" ovf:format=\"http://www.ecma-international.org/publications/standards/Ecma-119.htm\"/></DiskSection>\
        <NetworkSection><Info>n</Info><Network ovf:name=\"lan\"/></NetworkSection>";
    let hw = format!(
        "<VirtualHardwareSection><Info>h</Info>{}{}{}{}{}{}{}{}</VirtualHardwareSection>",
        item(
            "<rasd:InstanceID>c1</rasd:InstanceID><rasd:ResourceSubType>weird-hba</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType>"
        ),
        item(
            "<rasd:HostResource>ovf:/file/raw</rasd:HostResource><rasd:InstanceID>d1</rasd:InstanceID><rasd:Parent>c1</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType>"
        ),
        item(
            "<rasd:HostResource>ovf:/disk/cd</rasd:HostResource><rasd:InstanceID>cd1</rasd:InstanceID><rasd:ResourceType>16</rasd:ResourceType>"
        ),
        item(
            "<rasd:HostResource>/dev/sda</rasd:HostResource><rasd:InstanceID>d2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType>"
        ),
        item(
            "<rasd:HostResource>ovf:/disk/missing</rasd:HostResource><rasd:InstanceID>d3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType>"
        ),
        item("<rasd:InstanceID>d4</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType>"),
        item(
            "<rasd:Connection>wan</rasd:Connection><rasd:InstanceID>n1</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType><rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>"
        ),
        item("<rasd:InstanceID>v1</rasd:InstanceID><rasd:ResourceType>32768</rasd:ResourceType>"),
    );
    let app = app_with(prelude, &hw).unwrap();
    let vm = &app.vms[0];
    assert_eq!(vm.disks.len(), 1);
    let d = &vm.disks[0];
    assert_eq!(d.backing, Backing::File(ovf::descriptor::FileIndex(0)));
    assert_eq!(app.files[0].href, "disk.img");
    assert!(d.address.is_none(), "the controller was not recognised");
    let Some(Backing::Disk(cd)) = vm.cdroms[0].image else {
        panic!("CD-ROM should hold the ISO disk")
    };
    assert_eq!(app.disk_file(cd).unwrap().href, "boot.iso");
    assert_eq!(app.disks[cd.0].format, DiskFormat::Iso);
    assert_eq!(vm.nics[0].network.as_deref(), Some("wan"));
    assert!(!vm.nics[0].network_declared);
    assert!(!vm.nics[0].connected);
    let reasons: Vec<_> = vm
        .unmapped
        .iter()
        .map(|u| (u.instance_id.as_str(), u.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "c1",
                UnmappedReason::UnknownControllerSubtype {
                    sub_type: "weird-hba".into()
                }
            ),
            (
                "d2",
                UnmappedReason::UnsupportedHostResource {
                    value: "/dev/sda".into()
                }
            ),
            (
                "d3",
                UnmappedReason::UnknownDisk {
                    disk_id: "missing".into()
                }
            ),
            ("d4", UnmappedReason::NoHostResource),
            (
                "v1",
                UnmappedReason::UnsupportedResourceType {
                    resource_type: 32768
                }
            ),
        ]
    );
    assert!(
        vm.unmapped.iter().all(|u| u.required),
        "items default to required"
    );
}

#[test]
fn controller_indices_count_per_bus() {
    let hw = format!(
        "<VirtualHardwareSection><Info>h</Info>{}{}{}{}{}</VirtualHardwareSection>",
        item(
            "<rasd:InstanceID>i0</rasd:InstanceID><rasd:ResourceSubType>PIIX4</rasd:ResourceSubType><rasd:ResourceType>5</rasd:ResourceType>"
        ),
        item(
            "<rasd:InstanceID>s0</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType>"
        ),
        item(
            "<rasd:InstanceID>i1</rasd:InstanceID><rasd:ResourceSubType>PIIX4</rasd:ResourceSubType><rasd:ResourceType>5</rasd:ResourceType>"
        ),
        item(
            "<rasd:InstanceID>v0</rasd:InstanceID><rasd:ResourceSubType>virtio-scsi</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType>"
        ),
        item(
            "<rasd:InstanceID>b0</rasd:InstanceID><rasd:ResourceSubType>virtio</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType>"
        ),
    );
    let vm = vm_with("", &hw).unwrap();
    let got: Vec<_> = vm
        .controllers
        .iter()
        .map(|c| (c.instance_id.as_str(), c.bus, c.index))
        .collect();
    assert_eq!(
        got,
        [
            ("i0", Bus::Ide, 0),
            ("s0", Bus::Scsi, 0),
            ("i1", Bus::Ide, 1),
            ("v0", Bus::Scsi, 1),
            ("b0", Bus::Virtio, 0),
        ]
    );
}
