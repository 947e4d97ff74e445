//! `vmimport disk create`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::{CreateOptions, ImageType};

use super::{FormatArg, TypeArg, fail};
use crate::output::{error_chain, parse_size};

/// Arguments of `disk create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Image format.
    #[arg(long, short = 'f', value_enum)]
    format: FormatArg,
    /// Image type (default: dynamic, or differencing when --parent is given).
    #[arg(long = "type", short = 't', value_enum)]
    image_type: Option<TypeArg>,
    /// Parent image of a differencing image.
    #[arg(long)]
    parent: Option<PathBuf>,
    /// Block size (e.g. 2M, 32M).
    #[arg(long, value_parser = parse_size)]
    block_size: Option<u64>,
    /// Logical sector size: 512 or 4096.
    #[arg(long, default_value_t = 512)]
    logical_sector_size: u32,
    /// Physical sector size: 512 or 4096.
    #[arg(long)]
    physical_sector_size: Option<u32>,
    /// Path of the new image (must not exist).
    image: PathBuf,
    /// Virtual size (512, 64K, 10M, 2G, 1T); a differencing image takes its
    /// parent's size when omitted.
    #[arg(value_parser = parse_size)]
    size: Option<u64>,
}

pub fn run(a: CreateArgs) -> ExitCode {
    let image_type = match (a.image_type, &a.parent) {
        (Some(t), _) => ImageType::from(t),
        (None, Some(_)) => ImageType::Differencing,
        (None, None) => ImageType::Dynamic,
    };
    if image_type != ImageType::Differencing && a.size.is_none() {
        return fail("a size is needed (e.g. 10G) unless a differencing image is created");
    }
    let options = CreateOptions {
        format: a.format.into(),
        image_type,
        size: a.size,
        block_size: a.block_size,
        logical_sector_size: a.logical_sector_size,
        physical_sector_size: a.physical_sector_size,
        parent: a.parent.clone(),
    };
    match vhd::create(&a.image, &options).and_then(|img| {
        use vhd::DiskImage;
        img.flush()?;
        Ok(img.info())
    }) {
        Ok(info) => {
            println!(
                "created {} ({} {}, {} bytes)",
                a.image.display(),
                info.format,
                info.image_type,
                info.virtual_size
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!(
            "cannot create {}: {}",
            a.image.display(),
            error_chain(&e)
        )),
    }
}
