//! `vmimport disk bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use vhd::OpenOptions;
use vhd::ops::{BenchOptions, BenchPattern};

use super::fail;
use crate::output::{OutputFormat, error_chain, parse_size};

/// Request order on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PatternArg {
    /// One request after the other.
    Seq,
    /// Pseudo-random aligned offsets.
    Rand,
}

/// Arguments of `disk bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Write (a verifiable pattern) instead of reading.
    #[arg(long, short = 'w')]
    write: bool,
    /// Request order.
    #[arg(long, value_enum, default_value = "seq")]
    pattern: PatternArg,
    /// Request size.
    #[arg(long, short = 's', value_parser = parse_size, default_value = "4K")]
    block_size: u64,
    /// Number of requests.
    #[arg(long, short = 'c', default_value_t = 75_000)]
    count: u64,
    /// Distance between sequential requests (default: the request size).
    #[arg(long, short = 'S', value_parser = parse_size)]
    step: Option<u64>,
    /// Offset of the first request.
    #[arg(long, short = 'o', value_parser = parse_size, default_value = "0")]
    offset: u64,
    /// Threads issuing requests.
    #[arg(long, short = 'T', default_value_t = 1)]
    threads: usize,
    /// Flush after every N writes.
    #[arg(long)]
    flush_every: Option<u64>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    /// The image to measure.
    image: PathBuf,
}

pub fn run(a: BenchArgs) -> ExitCode {
    let options = if a.write {
        OpenOptions::default()
    } else {
        OpenOptions::read_only()
    };
    let image = match vhd::open(&a.image, &options) {
        Ok(i) => i,
        Err(e) => {
            return fail(format_args!(
                "cannot open {}: {}",
                a.image.display(),
                error_chain(&e)
            ));
        }
    };
    let opts = BenchOptions {
        write: a.write,
        pattern: match a.pattern {
            PatternArg::Seq => BenchPattern::Sequential,
            PatternArg::Rand => BenchPattern::Random,
        },
        block_size: a.block_size,
        count: a.count,
        step: a.step,
        offset: a.offset,
        threads: a.threads,
        flush_every: a.flush_every,
    };
    match vhd::ops::bench(&image, &opts) {
        Ok(r) => {
            match a.output {
                OutputFormat::Json => {
                    if let Err(code) = super::print_json(&r) {
                        return code;
                    }
                }
                OutputFormat::Human => println!(
                    "{} {} requests of {} bytes in {:.3} s: {:.0} ops/s, {:.1} MB/s",
                    r.ops,
                    if a.write { "write" } else { "read" },
                    a.block_size,
                    r.seconds,
                    r.ops_per_second,
                    r.mb_per_second
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!(
            "benchmark failed on {}: {}",
            a.image.display(),
            error_chain(&e)
        )),
    }
}
