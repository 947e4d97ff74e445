//! Hostile streamOptimized VMDKs: each is refused quickly with a typed
//! error, with no allocation in proportion to a declared size.
#![allow(clippy::cast_possible_truncation)]

use std::io::Write;

use flate2::write::ZlibEncoder;
use ovf::vmdk::{
    GD_AT_END, MAGIC, RawHeader, StreamReader, StreamWriter, VmdkError, WriterOptions,
};

fn raw_header(capacity: u64, grain: u64) -> RawHeader {
    RawHeader {
        magic: MAGIC,
        version: 3,
        flags: 1 | (1 << 16) | (1 << 17),
        capacity,
        grain_size: grain,
        descriptor_offset: 0,
        descriptor_size: 0,
        num_gtes_per_gt: 512,
        rgd_offset: 0,
        gd_offset: 1,
        overhead: 1,
        unclean_shutdown: 0,
        newline_chars: *b"\n \r\n",
        compress_algorithm: 1,
    }
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A stream with `header`, then grain markers `(lba, size field, bytes)`,
/// then an end-of-stream marker.
fn stream(header: &RawHeader, grains: &[(u64, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = header.encode().to_vec();
    for (lba, size, bytes) in grains {
        let start = out.len();
        out.extend_from_slice(&lba.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(bytes);
        let len = out.len() - start;
        out.resize(start + len.div_ceil(512).max(1) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 512]);
    out
}

fn read_all(bytes: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, VmdkError> {
    let mut r = StreamReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(g) = r.next_grain()? {
        out.push((g.offset, g.data.to_vec()));
    }
    Ok(out)
}

fn grain(lba: u64, data: &[u8]) -> (u64, u32, Vec<u8>) {
    let z = zlib(data);
    (lba, z.len() as u32, z)
}

#[test]
fn well_formed_baseline() {
    let h = raw_header(256, 8);
    let g = vec![0xabu8; 4096];
    let got = read_all(&stream(&h, &[grain(0, &g), grain(16, &g)])).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].0, 16 * 512);
}

#[test]
fn bad_headers() {
    let cases: Vec<(RawHeader, &str)> = vec![
        (
            RawHeader {
                magic: 0x1234,
                ..raw_header(256, 8)
            },
            "magic",
        ),
        (raw_header(256, 100), "grain size"),
        (raw_header(256, 0), "grain size"),
        (raw_header(256, 1 << 20), "grain size"),
        (raw_header(1 << 50, 128), "capacity"),
        (
            RawHeader {
                num_gtes_per_gt: 0,
                ..raw_header(256, 8)
            },
            "grain table",
        ),
        (
            RawHeader {
                newline_chars: *b"\n \n\n",
                ..raw_header(256, 8)
            },
            "newline",
        ),
        (
            RawHeader {
                overhead: 1 << 40,
                ..raw_header(256, 8)
            },
            "overhead",
        ),
        (
            RawHeader {
                descriptor_size: 1 << 30,
                descriptor_offset: 1,
                ..raw_header(256, 8)
            },
            "descriptor",
        ),
    ];
    for (h, what) in cases {
        let e = read_all(&stream(&h, &[])).unwrap_err();
        assert!(matches!(e, VmdkError::Corrupt { .. }), "{what}: {e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
    let plain_sparse = RawHeader {
        flags: 1,
        ..raw_header(256, 8)
    };
    let e = read_all(&stream(&plain_sparse, &[])).unwrap_err();
    assert!(matches!(e, VmdkError::Unsupported { .. }), "{e}");
    let lzw = RawHeader {
        compress_algorithm: 2,
        ..raw_header(256, 8)
    };
    assert!(matches!(
        read_all(&stream(&lzw, &[])),
        Err(VmdkError::Unsupported { .. })
    ));
}

#[test]
fn grain_claiming_4_gib() {
    let h = raw_header(256, 8);
    let e = read_all(&stream(&h, &[(0, u32::MAX, vec![0u8; 500])])).unwrap_err();
    assert!(e.to_string().contains("compressed size"), "{e}");
}

#[test]
fn corrupt_deflate_stream() {
    let h = raw_header(256, 8);
    let mut g = grain(
        0,
        &(0..4096u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let n = g.2.len();
    for b in &mut g.2[2..n / 2] {
        *b ^= 0x5a;
    }
    let e = read_all(&stream(&h, &[g])).unwrap_err();
    assert!(
        matches!(e, VmdkError::Inflate { .. } | VmdkError::Corrupt { .. }),
        "{e}"
    );
}

#[test]
fn grains_of_the_wrong_size() {
    let h = raw_header(256, 8);
    // Short (not the last grain), long, and with trailing bytes.
    let short = grain(0, &[1u8; 1000]);
    let long = grain(0, &[1u8; 5000]);
    let mut trailing = grain(0, &[1u8; 4096]);
    trailing.2.extend_from_slice(b"junk");
    trailing.1 += 4;
    for g in [short, long, trailing] {
        let e = read_all(&stream(&h, &[g])).unwrap_err();
        assert!(matches!(e, VmdkError::Corrupt { .. }), "{e}");
    }
    // A last grain cut by the capacity may be short.
    let h = raw_header(12, 8);
    let got = read_all(&stream(&h, &[grain(8, &[3u8; 2048])])).unwrap();
    assert_eq!(got[0].1.len(), 2048);
}

#[test]
fn bad_grain_addresses() {
    let h = raw_header(256, 8);
    let g = vec![1u8; 4096];
    for grains in [
        vec![grain(256, &g)],               // outside the capacity
        vec![grain(3, &g)],                 // not aligned
        vec![grain(16, &g), grain(8, &g)],  // backwards
        vec![grain(16, &g), grain(16, &g)], // twice
        vec![grain(u64::MAX - 7, &g)],      // overflow bait
    ] {
        let e = read_all(&stream(&h, &grains)).unwrap_err();
        assert!(e.to_string().contains("grain marker"), "{e}");
    }
}

#[test]
fn bad_metadata_markers() {
    let h = raw_header(256, 8);
    let mut bytes = stream(&h, &[]);
    // Turn the end-of-stream marker into an unknown type, then into a
    // grain table claiming a billion sectors.
    bytes[512 + 12] = 9;
    assert!(read_all(&bytes).is_err());
    bytes[512 + 12] = 1;
    bytes[512..520].copy_from_slice(&(1u64 << 30).to_le_bytes());
    let e = read_all(&bytes).unwrap_err();
    assert!(e.to_string().contains("grain table"), "{e}");
}

#[test]
fn truncated_streams() {
    let mut w = StreamWriter::new(Vec::new(), 1 << 20, WriterOptions::default()).unwrap();
    w.write_grain(
        0,
        &(0..65536u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let full = w.finish().unwrap();
    assert!(read_all(&full).is_ok());
    let header = RawHeader::decode(full[..512].try_into().unwrap());
    assert_eq!(header.gd_offset, GD_AT_END);
    // Inside the grain, and before the footer: the footer layout requires
    // the footer and end-of-stream marker.
    for cut in [65536 + 1000, full.len() - 1536, full.len() - 512, 300] {
        let e = read_all(&full[..cut]).unwrap_err();
        assert!(matches!(e, VmdkError::Truncated { .. }), "cut {cut}: {e}");
    }
}
