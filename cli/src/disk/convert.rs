//! `vmimport disk convert`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::ops::{ConvertOptions, ConvertStats};
use vhd::{CreateOptions, DiskImage, Format, ImageType, OpenOptions};

use super::{FormatArg, TypeArg, fail, with_progress};
use crate::output::{OutputFormat, error_chain, parse_size};

/// Arguments of `disk convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Output format (default: vhdx).
    #[arg(long, short = 'O', value_enum, default_value = "vhdx")]
    format: FormatArg,
    /// Output type: fixed or dynamic (default: dynamic).
    #[arg(long = "type", short = 't', value_enum, default_value = "dynamic")]
    image_type: TypeArg,
    /// Output block size (e.g. 2M, 32M).
    #[arg(long, value_parser = parse_size)]
    block_size: Option<u64>,
    /// Output logical sector size: 512 or 4096 (default: the input's).
    #[arg(long)]
    logical_sector_size: Option<u32>,
    /// Show a progress bar on a terminal.
    #[arg(long, short = 'p')]
    progress: bool,
    /// How to print the summary.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    /// Input image (any supported format; chains are flattened).
    input: PathBuf,
    /// Output image.
    output_image: PathBuf,
}

pub fn run(a: ConvertArgs) -> ExitCode {
    if a.image_type == TypeArg::Differencing {
        return fail("convert flattens chains: the output cannot be a differencing image");
    }
    if ovf::vmdk::is_sparse_extent(&a.input) {
        return convert_vmdk(&a);
    }
    let source = match vhd::open(&a.input, &OpenOptions::read_only()) {
        Ok(s) => s,
        Err(e) => {
            return fail(format_args!(
                "cannot open {}: {}",
                a.input.display(),
                error_chain(&e)
            ));
        }
    };
    let create = output_options(
        &a,
        source.logical_sector_size(),
        source.physical_sector_size(),
    );
    let result = with_progress(a.progress, "converting", |report| {
        vhd::ops::convert(
            &source,
            &a.output_image,
            &ConvertOptions { create },
            Some(report),
        )
    });
    match result {
        Ok(stats) => print_stats(&a, &stats),
        Err(e) => fail(format_args!(
            "cannot convert {}: {}",
            a.input.display(),
            error_chain(&e)
        )),
    }
}

/// The output's format and parameters, sector sizes defaulting to the
/// input's.
fn output_options(a: &ConvertArgs, logical: u32, physical: u32) -> CreateOptions {
    let format = Format::from(a.format);
    let logical = a.logical_sector_size.unwrap_or(match format {
        Format::Vhdx => logical,
        _ => 512,
    });
    let mut create = CreateOptions::new(format, ImageType::from(a.image_type), 0);
    create.block_size = a.block_size;
    create.logical_sector_size = logical;
    if format == Format::Vhdx {
        create.physical_sector_size = Some(physical.max(logical));
    }
    create
}

/// A streamOptimized VMDK input, read in one pass by the VMDK reader.
fn convert_vmdk(a: &ConvertArgs) -> ExitCode {
    let create = output_options(a, 512, 512);
    let result = with_progress(a.progress, "converting", |report| {
        ovf::vmdk::convert_vmdk_file(&a.input, &a.output_image, &create, Some(report))
    });
    match result {
        Ok(c) => print_stats(
            a,
            &ConvertStats {
                virtual_size: c.capacity,
                bytes_read: c.compressed_bytes,
                bytes_written: c.data_bytes,
                bytes_skipped: c.capacity.saturating_sub(c.data_bytes),
            },
        ),
        Err(e) => fail(format_args!(
            "cannot convert {}: {}",
            a.input.display(),
            error_chain(&e)
        )),
    }
}

fn print_stats(a: &ConvertArgs, stats: &ConvertStats) -> ExitCode {
    match a.output {
        OutputFormat::Json => {
            if let Err(code) = super::print_json(stats) {
                return code;
            }
        }
        OutputFormat::Human => println!(
            "converted {} -> {}: {} bytes read, {} written, {} skipped as holes",
            a.input.display(),
            a.output_image.display(),
            stats.bytes_read,
            stats.bytes_written,
            stats.bytes_skipped
        ),
    }
    ExitCode::SUCCESS
}
