//! `vmimport disk compare`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::OpenOptions;
use vhd::ops::Difference;

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
    let (Ok(a), Ok(b)) = (open(&args.a), open(&args.b)) else {
        return ExitCode::from(EXIT_ERROR);
    };
    match vhd::ops::compare(&a, &b) {
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
            eprintln!("vmimport: cannot compare: {}", error_chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}
