//! Bytes as an OVF descriptor: parsed, then mapped to VM descriptions under
//! the default and every declared deployment option and system type.
#![no_main]

use ovf::descriptor::{MapOptions, describe, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = parse(data) else { return };
    let _ = describe(&envelope, &MapOptions::default());
    let configurations: Vec<String> = envelope
        .deployment_options
        .iter()
        .flat_map(|s| s.configurations.iter().map(|c| c.id.clone()))
        .take(4)
        .collect();
    for configuration in configurations {
        let options = MapOptions {
            configuration: Some(configuration),
            system_type: Some("vmx-07".into()),
            // A user's value for a property a capacity may refer to.
            property_values: vec![("size".into(), "4".into())],
        };
        let _ = describe(&envelope, &options);
    }
    // What we write is parsed again.
    if let Ok(bytes) = ovf::descriptor::write(&envelope) {
        let _ = parse(&bytes);
    }
});
