//! Whole-image operations built on [`DiskImage`](crate::DiskImage): convert,
//! compare, commit and benchmark. They work on every format alike, so the
//! command-line tools and library users share them.

mod bench;
mod commit;
mod compare;
mod convert;

pub use bench::{BenchOptions, BenchPattern, BenchResult, bench, check_pattern, fill_pattern};
pub use commit::{CommitStats, commit};
pub use compare::{Difference, compare};
pub use convert::{ConvertOptions, ConvertStats, convert, same_file, write_new_image};

/// Reports progress: bytes done out of a total.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Whether every byte of `buf` is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(16);
    let body = chunks.by_ref().all(|c| {
        c.try_into()
            .is_ok_and(|a: [u8; 16]| u128::from_ne_bytes(a) == 0)
    });
    body && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::is_zero;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 4099]));
        let mut v = vec![0u8; 4099];
        v[4098] = 1;
        assert!(!is_zero(&v));
        v[4098] = 0;
        v[17] = 1;
        assert!(!is_zero(&v));
    }
}
