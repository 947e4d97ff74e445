//! `vmimport disk info`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::{DiskImage, ImageInfo, OpenOptions, map_range};

use crate::output::{OutputFormat, error_chain, human_size};

/// Arguments of `disk info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    /// The image to describe.
    image: PathBuf,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    #[serde(flatten)]
    info: ImageInfo,
    allocated_bytes: u64,
    zero_bytes: u64,
    unallocated_bytes: u64,
    parent_bytes: u64,
}

pub fn run(args: InfoArgs) -> ExitCode {
    if ovf::vmdk::is_sparse_extent(&args.image) {
        return run_vmdk(&args);
    }
    let image = match vhd::open(&args.image, &OpenOptions::read_only()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "vmimport: cannot open {}: {}",
                args.image.display(),
                error_chain(&e)
            );
            return ExitCode::from(super::EXIT_FAILED);
        }
    };
    let info = image.info();
    let mut report = Report {
        info,
        allocated_bytes: 0,
        zero_bytes: 0,
        unallocated_bytes: 0,
        parent_bytes: 0,
    };
    match map_range(&image, 0, image.virtual_size()) {
        Ok(extents) => {
            for e in extents {
                if e.depth > 0 && e.allocation == vhd::Allocation::Data {
                    report.parent_bytes += e.length;
                }
                match e.allocation {
                    vhd::Allocation::Data if e.depth == 0 => report.allocated_bytes += e.length,
                    vhd::Allocation::Data => {}
                    vhd::Allocation::Zero => report.zero_bytes += e.length,
                    vhd::Allocation::Unallocated => report.unallocated_bytes += e.length,
                }
            }
        }
        Err(e) => {
            eprintln!(
                "vmimport: cannot map {}: {}",
                args.image.display(),
                error_chain(&e)
            );
            return ExitCode::from(super::EXIT_FAILED);
        }
    }
    match args.output {
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("vmimport: cannot encode the report: {e}");
                return ExitCode::from(super::EXIT_FAILED);
            }
        },
        OutputFormat::Human => print_human(&report),
    }
    ExitCode::SUCCESS
}

/// A streamOptimized VMDK, described from its header, descriptor and grain
/// tables. The JSON carries the same fields as for other images where they
/// apply, and the VMDK's own beside them.
fn run_vmdk(args: &InfoArgs) -> ExitCode {
    let v = match ovf::vmdk::describe_vmdk_file(&args.image) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "vmimport: cannot describe {}: {}",
                args.image.display(),
                error_chain(&e)
            );
            return ExitCode::from(super::EXIT_FAILED);
        }
    };
    let kind = v
        .create_type
        .clone()
        .unwrap_or_else(|| "streamOptimized".into());
    match args.output {
        OutputFormat::Json => {
            let report = serde_json::json!({
                "path": v.path,
                "format": "vmdk",
                "type": kind,
                "virtual_size": v.virtual_size,
                "file_size": v.file_size,
                "block_size": v.grain_size,
                "logical_sector_size": 512,
                "physical_sector_size": 512,
                "version": v.version,
                "identifiers": [["cid", v.cid], ["parent_cid", v.parent_cid]],
                "tables_at_end": v.tables_at_end,
                "allocated_bytes": v.allocated_bytes,
                "zero_bytes": v.zeroed_bytes,
                "unallocated_bytes": v.unallocated_bytes,
                "parent_bytes": 0,
            });
            if let Err(code) = super::print_json(&report) {
                return code;
            }
        }
        OutputFormat::Human => {
            println!("image:           {}", v.path.display());
            println!("format:          vmdk ({kind}, version {})", v.version);
            println!("virtual size:    {}", human_size(v.virtual_size));
            println!("file size:       {}", human_size(v.file_size));
            println!("grain size:      {}", human_size(v.grain_size));
            println!("sector size:     512 logical, 512 physical");
            if let Some(c) = &v.cid {
                println!("cid:             {c}");
            }
            if let Some(c) = &v.parent_cid {
                println!("parent cid:      {c}");
            }
            println!(
                "grain tables:    {}",
                if v.tables_at_end {
                    "at the end (footer)"
                } else {
                    "up front"
                }
            );
            println!("allocated:       {}", human_size(v.allocated_bytes));
            println!("zero:            {}", human_size(v.zeroed_bytes));
            println!("unallocated:     {}", human_size(v.unallocated_bytes));
        }
    }
    ExitCode::SUCCESS
}

fn print_human(r: &Report) {
    print_info(&r.info, 0);
    println!("allocated:       {}", human_size(r.allocated_bytes));
    if r.parent_bytes > 0 {
        println!("from parents:    {}", human_size(r.parent_bytes));
    }
    println!("zero:            {}", human_size(r.zero_bytes));
    println!("unallocated:     {}", human_size(r.unallocated_bytes));
}

fn print_info(i: &ImageInfo, level: usize) {
    let pad = "  ".repeat(level);
    println!("{pad}image:           {}", i.path.display());
    println!("{pad}format:          {} ({})", i.format, i.image_type);
    println!("{pad}virtual size:    {}", human_size(i.virtual_size));
    println!("{pad}file size:       {}", human_size(i.file_size));
    if let Some(b) = i.block_size {
        println!("{pad}block size:      {}", human_size(b));
    }
    println!(
        "{pad}sector size:     {} logical, {} physical",
        i.logical_sector_size, i.physical_sector_size
    );
    if let Some(c) = &i.creator {
        println!("{pad}creator:         {c}");
    }
    for (k, v) in &i.identifiers {
        println!("{pad}{:<17}{v}", format!("{k}:"));
    }
    if let Some(d) = i.log_dirty {
        println!(
            "{pad}log:             {}",
            if d { "dirty" } else { "clean" }
        );
    }
    if let Some(p) = &i.parent {
        println!("{pad}parent:");
        print_info(p, level + 1);
    }
}
