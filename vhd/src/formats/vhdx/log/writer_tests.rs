//! Unit tests of the log writer: placement in the ring, order of writes
//! and flushes, limits.
#![allow(clippy::cast_possible_truncation)]

use std::fs::OpenOptions;

use super::tests::*;
use super::*;
use crate::ErrorKind;

#[test]
fn commit_applies_and_leaves_nothing_newer_to_replay() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    w.commit(&file, &two_updates(), FILE_LEN, FILE_LEN).unwrap();
    assert_eq!(read(&file, 3 << 20, 4096), page(1).to_vec());
    let second = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(2),
    }];
    w.commit(&file, &second, FILE_LEN, FILE_LEN).unwrap();
    assert_eq!(read(&file, 3 << 20, 4096), page(2).to_vec());
    // The newest entry names itself as the tail: replay holds it alone.
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.last_sequence_number, 2);
    assert_eq!(r.updates, second);
}

#[test]
fn commit_extends_the_file_to_last_file_offset() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    w.commit(&file, &two_updates(), FILE_LEN, FILE_LEN + (2 << 20))
        .unwrap();
    assert_eq!(file.len().unwrap(), FILE_LEN + (2 << 20));
}

#[test]
fn unapplied_entries_form_one_sequence_replayed_in_order() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    let a = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(1),
    }];
    let b = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(2),
    }];
    w.write_entry_only(&file, &a, FILE_LEN, FILE_LEN).unwrap();
    w.write_entry_only(&file, &b, FILE_LEN, FILE_LEN).unwrap();
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.last_sequence_number, 2);
    assert_eq!(r.updates, [a.clone(), b.clone()].concat());
    // A commit after them applies them all, in order.
    w.commit(&file, &[], FILE_LEN, FILE_LEN).unwrap();
    assert_eq!(read(&file, 3 << 20, 4096), page(2).to_vec());
}

#[test]
fn sequence_wrapping_around_the_end_of_the_log_replays() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 40);
    // Two sectors before the end: the first entry (8 KiB) ends exactly at
    // the end of the region, the second starts at its beginning.
    w.start_at(u64::from(LOG_LEN) - 8192);
    let a = vec![LogUpdate::Page {
        offset: 3 << 20,
        data: page(1),
    }];
    let b = vec![
        LogUpdate::Page {
            offset: (3 << 20) + 4096,
            data: page(2),
        },
        LogUpdate::Page {
            offset: (3 << 20) + 8192,
            data: page(3),
        },
    ];
    w.write_entry_only(&file, &a, FILE_LEN, FILE_LEN).unwrap();
    w.write_entry_only(&file, &b, FILE_LEN, FILE_LEN).unwrap();
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.last_sequence_number, 41);
    assert_eq!(r.updates, [a.clone(), b].concat());
    // An entry that cannot follow them before the end is refused.
    let big: Vec<LogUpdate> = (0..250u64)
        .map(|i| LogUpdate::Page {
            offset: (2 << 20) + i * 4096,
            data: page(4),
        })
        .collect();
    let e = w
        .write_entry_only(&file, &big, FILE_LEN, FILE_LEN)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn writer_wraps_without_straddling_or_overwriting_the_previous_entry() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    // 600 commits of 12 KiB entries go round the 1 MiB log several times.
    for i in 0..600u64 {
        let updates = vec![
            LogUpdate::Page {
                offset: 3 << 20,
                data: page((i % 200) as u8),
            },
            LogUpdate::Page {
                offset: (3 << 20) + 4096,
                data: page((i % 7) as u8),
            },
        ];
        w.commit(&file, &updates, FILE_LEN, FILE_LEN).unwrap();
        let r = replay(&file, guid(1)).unwrap();
        assert_eq!(r.last_sequence_number, i + 1);
        assert_eq!(r.updates, updates);
        let mut log = vec![0u8; LOG_LEN as usize];
        file.read_exact_at(&mut log, LOG_AT).unwrap();
        let mut view = scan::LogView::memory(&log, LOG_AT);
        let head = *scan::find_active(&mut view, guid(1))
            .unwrap()
            .unwrap()
            .head()
            .unwrap();
        assert!(head.pos + u64::from(head.header.entry_length) <= u64::from(LOG_LEN));
    }
}

#[test]
fn entry_too_large_for_the_log_is_refused() {
    let (_d, file) = scratch(FILE_LEN);
    let small = LogRegion {
        offset: LOG_AT,
        length: 64 << 10,
    };
    let mut w = LogWriter::new(small, guid(1), 1);
    let updates: Vec<LogUpdate> = (0..16u64)
        .map(|i| LogUpdate::Page {
            offset: (3 << 20) + i * 4096,
            data: page(1),
        })
        .collect();
    let e = w.commit(&file, &updates, FILE_LEN, FILE_LEN).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // One that fits is fine, but the next may not overwrite it.
    w.commit(&file, &updates[..10], FILE_LEN, FILE_LEN).unwrap();
    let e = w
        .commit(&file, &updates[..10], FILE_LEN, FILE_LEN)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    w.commit(&file, &updates[..4], FILE_LEN, FILE_LEN).unwrap();
}

#[test]
fn misaligned_updates_are_refused() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), 1);
    for bad in [
        LogUpdate::Page {
            offset: 512,
            data: page(1),
        },
        LogUpdate::Zero {
            offset: 3 << 20,
            length: 100,
        },
        LogUpdate::Zero {
            offset: 3 << 20,
            length: 0,
        },
        LogUpdate::Zero {
            offset: u64::MAX - 4095,
            length: 8192,
        },
        LogUpdate::Page {
            offset: LOG_AT,
            data: page(1),
        },
    ] {
        let e = w
            .commit(&file, std::slice::from_ref(&bad), FILE_LEN, FILE_LEN)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
}

#[test]
fn sequence_numbers_up_to_u64_max() {
    let (_d, file) = scratch(FILE_LEN);
    let mut w = LogWriter::new(region(), guid(1), u64::MAX - 1);
    let u = two_updates();
    w.write_entry_only(&file, &u, FILE_LEN, FILE_LEN).unwrap();
    w.write_entry_only(&file, &u, FILE_LEN, FILE_LEN).unwrap();
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.last_sequence_number, u64::MAX);
    assert_eq!(r.updates.len(), 4);
    let e = w
        .write_entry_only(&file, &u, FILE_LEN, FILE_LEN)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // Nothing follows u64::MAX, even an entry that looks like its successor.
    put(&file, 2 * 8192, &entry(&u, 0, 0, guid(1)));
    let r = replay(&file, guid(1)).unwrap();
    assert_eq!(r.last_sequence_number, u64::MAX);
}

#[derive(Default)]
struct Trace(std::sync::Mutex<Vec<String>>);

impl crate::IoObserver for Trace {
    fn write(&self, offset: u64, data: &[u8]) {
        let place = if (LOG_AT..LOG_AT + u64::from(LOG_LEN)).contains(&offset) {
            "log"
        } else {
            "target"
        };
        self.0
            .lock()
            .unwrap()
            .push(format!("{place} {}", data.len()));
    }
    fn sync(&self) {
        self.0.lock().unwrap().push("sync".into());
    }
    fn set_len(&self, len: u64) {
        self.0.lock().unwrap().push(format!("set_len {len}"));
    }
    fn zero(&self, _offset: u64, len: u64) {
        self.0.lock().unwrap().push(format!("zero {len}"));
    }
}

#[test]
fn commit_writes_the_entry_flushes_applies_flushes() {
    let (dir, _) = scratch(FILE_LEN);
    let path = dir.path().join("log.vhdx");
    let trace = std::sync::Arc::new(Trace::default());
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let file = ImageFile::with_observer(f, &path, trace.clone());
    let mut w = LogWriter::new(region(), guid(1), 1);
    let mut updates = two_updates();
    updates.push(LogUpdate::Page {
        offset: 2 << 20,
        data: page(9),
    });
    w.commit(&file, &updates, FILE_LEN, FILE_LEN + (1 << 20))
        .unwrap();
    // Where the file system cannot zero a range, zeros are written instead.
    let seen: Vec<String> = trace
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.replace("target 8192", "zero 8192"))
        .collect();
    assert_eq!(
        seen,
        [
            "log 12288",
            "sync",
            "target 4096",
            "zero 8192",
            "target 4096",
            &format!("set_len {}", FILE_LEN + (1 << 20)),
            "sync",
        ]
    );
}
