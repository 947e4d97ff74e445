//! `vmimport disk resize`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::{DiskImage, OpenOptions};

use super::fail;
use crate::output::{error_chain, parse_size};

/// Arguments of `disk resize`.
#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// Allow making the image smaller (only when the cut-off tail holds no data).
    #[arg(long)]
    shrink: bool,
    /// The image to resize.
    image: PathBuf,
    /// New virtual size (512, 64K, 10M, 2G, 1T), or +SIZE / -SIZE.
    size: String,
}

pub fn run(a: ResizeArgs) -> ExitCode {
    let image = match vhd::open(&a.image, &OpenOptions::default()) {
        Ok(i) => i,
        Err(e) => {
            return fail(format_args!(
                "cannot open {}: {}",
                a.image.display(),
                error_chain(&e)
            ));
        }
    };
    let old = image.virtual_size();
    let new = match a.size.strip_prefix('+') {
        Some(d) => parse_size(d).map(|d| old.checked_add(d)),
        None => match a.size.strip_prefix('-') {
            Some(d) => parse_size(d).map(|d| old.checked_sub(d)),
            None => parse_size(&a.size).map(Some),
        },
    };
    let new = match new {
        Ok(Some(n)) => n,
        Ok(None) => return fail(format_args!("size {} is out of range", a.size)),
        Err(e) => return fail(e),
    };
    if new < old {
        if !a.shrink {
            return fail(format_args!(
                "{} bytes is smaller than the current {old}: pass --shrink to cut the disk",
                new
            ));
        }
        match vhd::map_range(&image, new, old - new) {
            Ok(extents) => {
                if let Some(e) = extents.iter().find(|e| !e.allocation.reads_as_zero()) {
                    return fail(format_args!(
                        "refusing to shrink: the tail holds data at offset {:#x}",
                        e.offset
                    ));
                }
            }
            Err(e) => {
                return fail(format_args!(
                    "cannot map {}: {}",
                    a.image.display(),
                    error_chain(&e)
                ));
            }
        }
    }
    match image.resize(new).and_then(|()| image.flush()) {
        Ok(()) => {
            println!("resized {} from {old} to {new} bytes", a.image.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!(
            "cannot resize {}: {}",
            a.image.display(),
            error_chain(&e)
        )),
    }
}
