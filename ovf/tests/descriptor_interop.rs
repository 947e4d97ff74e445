//! The writer's output read by an XML parser we did not write: Python's
//! `xml.etree.ElementTree` (namespace-aware) must see the same elements,
//! namespaces and attributes our parser sees.

use std::io::Write;
use std::process::{Command, Stdio};

use ovf::descriptor::{Content, Envelope, OvfVersion, parse, write};

const SCRIPT: &str = r#"
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ovf = root.tag[1:].split('}')[0]
rasd = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData'
print('root', root.tag)
print('files', ' '.join(f.get('{%s}href' % ovf) for f in root.iter('{%s}File' % ovf)))
print('disks', ' '.join(d.get('{%s}diskId' % ovf) + '=' + d.get('{%s}capacity' % ovf) for d in root.iter('{%s}Disk' % ovf)))
print('types', ' '.join(t.text for h in root.iter('{%s}VirtualHardwareSection' % ovf) for t in h.iter('{%s}ResourceType' % rasd)))
vs = [v.get('{%s}id' % ovf) for v in root.iter('{%s}VirtualSystem' % ovf)]
print('systems', ' '.join(vs))
print('vmwconfig', len(list(root.iter('{http://www.vmware.com/schema/ovf}Config'))))
"#;

fn python(input: &[u8]) -> String {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 is needed for this test: apt-get install python3");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 failed to parse the written descriptor"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn expected(env: &Envelope) -> String {
    let mut systems = Vec::new();
    let mut types = Vec::new();
    let mut configs = 0;
    fn walk<'a>(c: &'a Content, out: &mut Vec<&'a ovf::descriptor::VirtualSystem>) {
        match c {
            Content::System(s) => out.push(s),
            Content::Collection(col) => col.children.iter().for_each(|x| walk(x, out)),
        }
    }
    walk(&env.content, &mut systems);
    for s in &systems {
        for h in &s.sections.hardware {
            configs += h
                .extensions
                .iter()
                .filter(|e| e.name.local == "Config")
                .count();
            for i in &h.items {
                configs += i
                    .extensions
                    .iter()
                    .filter(|e| e.name.local == "Config")
                    .count();
                types.extend(i.resource_type.map(|t| t.to_string()));
            }
        }
    }
    let disks: Vec<String> = env
        .disk_section
        .iter()
        .flat_map(|d| d.disks.iter())
        .map(|d| {
            let cap = match &d.capacity {
                ovf::descriptor::Capacity::Value(v) => v.to_string(),
                ovf::descriptor::Capacity::Property(k) => format!("${{{k}}}"),
            };
            format!("{}={cap}", d.disk_id)
        })
        .collect();
    format!(
        "root {{{}}}Envelope\nfiles {}\ndisks {}\ntypes {}\nsystems {}\nvmwconfig {configs}\n",
        env.version.namespace(),
        env.references
            .iter()
            .map(|f| f.href.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        disks.join(" "),
        types.join(" "),
        systems
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[test]
fn python_reads_what_we_write() {
    for name in [
        "vmware-ovftool.ovf",
        "collection.ovf",
        "virtualbox-ovf10.ovf",
        "vmware-ovf09.ovf",
    ] {
        let path = format!(
            "{}/tests/data/descriptors/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut env = parse(&std::fs::read(path).unwrap()).unwrap();
        for version in [OvfVersion::V1, OvfVersion::V2] {
            env.version = version;
            let bytes = write(&env).unwrap();
            assert_eq!(python(&bytes), expected(&env), "{name} as {version:?}");
        }
    }
}
