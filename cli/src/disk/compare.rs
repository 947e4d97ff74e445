//! `vmimport disk compare`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use vhd::ops::Difference;
use vhd::{DiskImage, OpenOptions};

use crate::output::error_chain;

/// Arguments of `disk compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// First image.
    a: PathBuf,
    /// Second image.
    b: PathBuf,
}

/// Exit status when the images could not be compared.
const EXIT_ERROR: u8 = 2;

pub fn run(args: CompareArgs) -> ExitCode {
    let open = |p: &PathBuf| {
        vhd::open(p, &OpenOptions::read_only())
            .map_err(|e| eprintln!("vmimport: cannot open {}: {}", p.display(), error_chain(&e)))
    };
    let result = match (
        ovf::vmdk::is_sparse_extent(&args.a),
        ovf::vmdk::is_sparse_extent(&args.b),
    ) {
        (true, true) => {
            eprintln!(
                "vmimport: comparing two VMDK images is not supported: convert one of them first"
            );
            return ExitCode::from(EXIT_ERROR);
        }
        (true, false) => {
            let Ok(b) = open(&args.b) else {
                return ExitCode::from(EXIT_ERROR);
            };
            compare_vmdk(&args.a, &b, false)
        }
        (false, true) => {
            let Ok(a) = open(&args.a) else {
                return ExitCode::from(EXIT_ERROR);
            };
            compare_vmdk(&args.b, &a, true)
        }
        (false, false) => {
            let (Ok(a), Ok(b)) = (open(&args.a), open(&args.b)) else {
                return ExitCode::from(EXIT_ERROR);
            };
            vhd::ops::compare(&a, &b).map_err(|e| error_chain(&e))
        }
    };
    match result {
        Ok(None) => {
            println!("images are identical");
            ExitCode::SUCCESS
        }
        Ok(Some(Difference::Content { offset })) => {
            println!("content mismatch at offset {offset} ({offset:#x})");
            ExitCode::from(1)
        }
        Ok(Some(Difference::Size { a, b })) => {
            println!("image sizes differ: {a} and {b} bytes (content equal up to the smaller)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("vmimport: cannot compare: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Compares the VMDK at `vmdk` with `other`; `swapped` when the VMDK was
/// named second, so that a size difference keeps the order.
fn compare_vmdk(
    vmdk: &Path,
    other: &dyn DiskImage,
    swapped: bool,
) -> Result<Option<Difference>, String> {
    match ovf::vmdk::compare_vmdk_file(vmdk, other) {
        Ok(Some(Difference::Size { a, b })) if swapped => Ok(Some(Difference::Size { a: b, b: a })),
        Ok(d) => Ok(d),
        Err(e) => Err(error_chain(&e)),
    }
}
