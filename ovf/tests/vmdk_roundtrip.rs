//! Property: any disk written with the streamOptimized writer reads back
//! identically with the stream reader, holes included.
#![allow(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;

use ovf::vmdk::{StreamReader, StreamWriter, WriterOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Disk {
    capacity: u64,
    grain: u64,
    /// grain index -> (fill kind, seed)
    grains: BTreeMap<u64, (u8, u8)>,
}

fn disk() -> impl Strategy<Value = Disk> {
    (
        1u64..3000,
        prop::sample::select(vec![512u64, 4096, 65536]),
        0u8..=9,
    )
        .prop_flat_map(|(sectors, grain, level)| {
            let capacity = sectors * 512;
            let count = capacity.div_ceil(grain);
            (
                Just(capacity),
                Just(grain),
                prop::collection::btree_map(0..count, (0u8..3, any::<u8>()), 0..40),
                Just(level),
            )
        })
        .prop_map(|(capacity, grain, grains, _)| Disk {
            capacity,
            grain,
            grains,
        })
}

fn grain_data(kind: u8, seed: u8, len: usize) -> Vec<u8> {
    match kind {
        0 => vec![seed; len],
        1 => (0..len).map(|i| (i as u8).wrapping_mul(seed | 1)).collect(),
        _ => {
            let mut x = u32::from(seed) | 1;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn write_then_read(d in disk(), level in 0u32..=9) {
        let opts = WriterOptions {
            grain_size: d.grain,
            level,
            ..WriterOptions::default()
        };
        let mut w = StreamWriter::new(Vec::new(), d.capacity, opts).unwrap();
        let mut expected = vec![0u8; d.capacity as usize];
        for (&i, &(kind, seed)) in &d.grains {
            let off = i * d.grain;
            let len = d.grain.min(d.capacity - off) as usize;
            let data = grain_data(kind, seed, len);
            expected[off as usize..off as usize + len].copy_from_slice(&data);
            w.write_grain(off, &data).unwrap();
        }
        let bytes = w.finish().unwrap();

        let mut r = StreamReader::new(&bytes[..]).unwrap();
        prop_assert_eq!(r.capacity(), d.capacity);
        prop_assert!(r.descriptor().contains("streamOptimized"));
        let mut got = vec![0u8; d.capacity as usize];
        let mut seen = Vec::new();
        while let Some(g) = r.next_grain().unwrap() {
            let off = g.offset as usize;
            got[off..off + g.data.len()].copy_from_slice(g.data);
            seen.push(g.offset / d.grain);
        }
        prop_assert_eq!(seen, d.grains.keys().copied().collect::<Vec<_>>());
        prop_assert!(got == expected);
    }
}
