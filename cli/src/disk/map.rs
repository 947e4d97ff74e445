//! `vmimport disk map`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::{Allocation, DiskImage, OpenOptions};

use super::fail;
use crate::output::{OutputFormat, error_chain};

/// Arguments of `disk map`.
#[derive(Debug, Args)]
pub struct MapArgs {
    /// How to print the map.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    /// The image to map.
    image: PathBuf,
}

pub fn run(a: MapArgs) -> ExitCode {
    let image = match vhd::open(&a.image, &OpenOptions::read_only()) {
        Ok(i) => i,
        Err(e) => {
            return fail(format_args!(
                "cannot open {}: {}",
                a.image.display(),
                error_chain(&e)
            ));
        }
    };
    let extents = match vhd::map_range(&image, 0, image.virtual_size()) {
        Ok(e) => e,
        Err(e) => {
            return fail(format_args!(
                "cannot map {}: {}",
                a.image.display(),
                error_chain(&e)
            ));
        }
    };
    match a.output {
        OutputFormat::Json => {
            if let Err(code) = super::print_json(&extents) {
                return code;
            }
        }
        OutputFormat::Human => {
            println!(
                "{:>18} {:>18} {:>12} {:>6}",
                "offset", "length", "holds", "depth"
            );
            for e in &extents {
                let what = match (e.allocation, e.depth) {
                    (Allocation::Data, 0) => "data",
                    (Allocation::Data, _) => "parent data",
                    (Allocation::Zero, _) => "zero",
                    (Allocation::Unallocated, _) => "unallocated",
                };
                println!(
                    "{:#18x} {:#18x} {what:>12} {:>6}",
                    e.offset, e.length, e.depth
                );
            }
        }
    }
    ExitCode::SUCCESS
}
