//! Writer round trips: `parse(write(model)) == model`, for every sample and
//! for generated models.

use ovf::descriptor::{Envelope, OvfVersion, WriteError, parse, write};

const SAMPLES: &[&str] = &[
    "virtualbox-ovf10.ovf",
    "virtualbox-ovf20.ovf",
    "vmware-ovftool.ovf",
    "vmware-ovf09.ovf",
    "hyperv-vhdx.ovf",
    "ovirt.ovf",
    "citrix.ovf",
    "collection.ovf",
];

fn sample(name: &str) -> Envelope {
    let path = format!(
        "{}/tests/data/descriptors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn round_trip(env: &Envelope, what: &str) {
    let bytes = write(env).unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let text = String::from_utf8(bytes.clone()).unwrap();
    let back = parse(&bytes).unwrap_or_else(|e| panic!("{what}: re-parse: {e}\n{text}"));
    assert_eq!(&back, env, "{what}\n{text}");
    // Writing again gives the same bytes.
    assert_eq!(write(&back).unwrap(), bytes, "{what}");
}

#[test]
fn samples_round_trip() {
    for name in SAMPLES {
        let mut env = sample(name);
        if env.version == OvfVersion::V0_9 {
            assert!(matches!(
                write(&env),
                Err(WriteError::UnsupportedVersion(_))
            ));
            // Converting 0.9 to 1.x is a matter of setting the version.
            env.version = OvfVersion::V1;
        }
        round_trip(&env, name);
    }
}

#[test]
fn samples_round_trip_as_the_other_version() {
    for name in SAMPLES {
        let mut env = sample(name);
        env.version = OvfVersion::V2;
        round_trip(&env, name);
    }
}

#[test]
fn ovf2_items_cannot_be_written_as_ovf1() {
    let mut env = sample("virtualbox-ovf20.ovf");
    env.version = OvfVersion::V1;
    assert!(matches!(
        write(&env),
        Err(WriteError::NotInVersion {
            what: "StorageItem",
            ..
        })
    ));
}

#[test]
fn written_envelope_declares_the_right_namespaces() {
    let env = sample("virtualbox-ovf10.ovf");
    let text = String::from_utf8(write(&env).unwrap()).unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Envelope"));
    assert!(text.contains("xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\""));
    assert!(text.contains("xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\""));
    assert!(text.contains("ovf:version=\"1.0\""));
    assert!(text.contains("<rasd:ResourceType>17</rasd:ResourceType>"));
    // The VirtualBox extension keeps its prefix and its declaration.
    assert!(text.contains("<vbox:Machine xmlns:vbox=\"http://www.virtualbox.org/ovf/machine\""));
    let mut env2 = env;
    env2.version = OvfVersion::V2;
    let text = String::from_utf8(write(&env2).unwrap()).unwrap();
    assert!(text.contains("xmlns=\"http://schemas.dmtf.org/ovf/envelope/2\""));
    assert!(text.contains("xmlns:sasd="));
    assert!(text.contains("ovf:version=\"2.0\""));
}

#[test]
fn written_rasd_properties_are_in_schema_order() {
    let env = sample("vmware-ovftool.ovf");
    let text = String::from_utf8(write(&env).unwrap()).unwrap();
    let item = text
        .split("<Item>")
        .find(|s| s.contains("VmxNet3"))
        .and_then(|s| s.split("</Item>").next())
        .unwrap();
    let names: Vec<&str> = item
        .lines()
        .filter_map(|l| l.trim().strip_prefix("<rasd:"))
        .map(|l| l.split('>').next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(item.contains("<vmw:Config ovf:required=\"false\" vmw:key=\"wakeOnLanEnabled\""));
}
