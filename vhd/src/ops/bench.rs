//! A small I/O benchmark over any image, in the manner of `qemu-img bench`.

use std::time::Instant;

use crate::{DiskImage, Error, Result};

/// Order of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchPattern {
    /// Each request follows the previous one by `step` bytes.
    Sequential,
    /// Requests land at pseudo-random aligned offsets (seeded, repeatable).
    Random,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Write instead of read.
    pub write: bool,
    /// Request order.
    pub pattern: BenchPattern,
    /// Request size in bytes.
    pub block_size: u64,
    /// Number of requests in all.
    pub count: u64,
    /// Distance between sequential requests (default: the block size).
    pub step: Option<u64>,
    /// Offset of the first request.
    pub offset: u64,
    /// Threads issuing requests.
    pub threads: usize,
    /// Flush after every N writes (per thread).
    pub flush_every: Option<u64>,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BenchResult {
    /// Requests completed.
    pub ops: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Requests per second.
    pub ops_per_second: f64,
    /// Throughput in MB/s (10^6 bytes).
    pub mb_per_second: f64,
}

/// The byte pattern benchmark writes carry: each 8-byte word holds its own
/// disk offset, so any later read can check it whatever the write order.
pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    for (i, w) in buf.chunks_mut(8).enumerate() {
        let v = (offset + 8 * i as u64).to_le_bytes();
        w.copy_from_slice(&v[..w.len()]);
    }
}

/// Checks a buffer read at `offset` against [`fill_pattern`] (where
/// `offset` is 8-byte aligned).
pub fn check_pattern(buf: &[u8], offset: u64) -> Option<u64> {
    let mut want = vec![0u8; buf.len()];
    fill_pattern(&mut want, offset);
    buf.iter()
        .zip(&want)
        .position(|(a, b)| a != b)
        .map(|i| offset + i as u64)
}

fn request_offset(opts: &BenchOptions, i: u64, span: u64, rng: &mut u64) -> u64 {
    match opts.pattern {
        BenchPattern::Sequential => {
            let step = opts.step.unwrap_or(opts.block_size);
            opts.offset + (i.wrapping_mul(step)) % span
        }
        BenchPattern::Random => {
            // xorshift64*: repeatable and cheap.
            *rng ^= *rng >> 12;
            *rng ^= *rng << 25;
            *rng ^= *rng >> 27;
            let r = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let slots = (span / opts.block_size).max(1);
            opts.offset + (r % slots) * opts.block_size
        }
    }
}

/// Runs the benchmark on `image`.
pub fn bench(image: &dyn DiskImage, opts: &BenchOptions) -> Result<BenchResult> {
    let size = image.virtual_size();
    let bs = opts.block_size;
    if bs == 0 || opts.offset.checked_add(bs).is_none_or(|end| end > size) {
        return Err(Error::InvalidArgument(format!(
            "a {bs}-byte request at offset {} does not fit in the {size}-byte disk",
            opts.offset
        )));
    }
    if opts.write && image.read_only() {
        return Err(Error::ReadOnly);
    }
    let buf_len = usize::try_from(bs)
        .map_err(|_| Error::InvalidArgument(format!("request size {bs} is too large")))?;
    let span = size - opts.offset - bs + 1;
    let threads = opts.threads.max(1) as u64;
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for t in 0..threads {
            handles.push(s.spawn(move || -> Result<()> {
                let mut buf = vec![0u8; buf_len];
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                let mut done = 0u64;
                let mut i = t;
                while i < opts.count {
                    let off = request_offset(opts, i, span, &mut rng);
                    if opts.write {
                        fill_pattern(&mut buf, off);
                        image.write_at(&buf, off)?;
                        done += 1;
                        if opts
                            .flush_every
                            .is_some_and(|n| n > 0 && done.is_multiple_of(n))
                        {
                            image.flush()?;
                        }
                    } else {
                        image.read_at(&mut buf, off)?;
                    }
                    i += threads;
                }
                if opts.write && opts.flush_every.is_some() {
                    image.flush()?;
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| Error::InvalidArgument("a benchmark thread panicked".into()))??;
        }
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let bytes = opts.count * bs;
    Ok(BenchResult {
        ops: opts.count,
        bytes,
        seconds,
        ops_per_second: opts.count as f64 / seconds,
        mb_per_second: bytes as f64 / seconds / 1e6,
    })
}
