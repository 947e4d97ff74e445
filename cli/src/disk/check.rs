//! `vmimport disk check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::Severity;

use super::fail;
use crate::output::{OutputFormat, error_chain};

/// Exit status: the image has errors.
const EXIT_CORRUPT: u8 = 2;
/// Exit status: only leaked space was found.
const EXIT_LEAKS: u8 = 3;

/// Arguments of `disk check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Replay logs and fix what is safe to fix.
    #[arg(long, short = 'r')]
    repair: bool,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    /// The image to check.
    image: PathBuf,
}

pub fn run(a: CheckArgs) -> ExitCode {
    if ovf::vmdk::is_sparse_extent(&a.image) {
        return run_vmdk(&a);
    }
    let report = match vhd::check(&a.image, a.repair) {
        Ok(r) => r,
        Err(e) => {
            return fail(format_args!(
                "cannot check {}: {}",
                a.image.display(),
                error_chain(&e)
            ));
        }
    };
    match a.output {
        OutputFormat::Json => {
            if let Err(code) = super::print_json(&report) {
                return code;
            }
        }
        OutputFormat::Human => {
            for f in &report.findings {
                let sev = match f.severity {
                    Severity::Error => "error",
                    Severity::Leak => "leak",
                    Severity::Warning => "warning",
                };
                let at = f.offset.map(|o| format!(" at {o:#x}")).unwrap_or_default();
                let fixed = if f.repaired { " (repaired)" } else { "" };
                println!("{sev}{at}: {}{fixed}", f.message);
            }
            if report.log_was_dirty {
                println!(
                    "the log held unreplayed entries{}",
                    if a.repair { " (replayed)" } else { "" }
                );
            }
            if report.total_blocks > 0 {
                println!(
                    "{}/{} blocks allocated",
                    report.allocated_blocks, report.total_blocks
                );
            }
            if report.is_clean() {
                println!("no errors were found on the image");
            } else {
                println!(
                    "{} errors and {} leaks found on the image",
                    report.count(Severity::Error),
                    report.count(Severity::Leak)
                );
            }
        }
    }
    if report.count(Severity::Error) > 0 {
        ExitCode::from(EXIT_CORRUPT)
    } else if report.count(Severity::Leak) > 0 {
        ExitCode::from(EXIT_LEAKS)
    } else {
        ExitCode::SUCCESS
    }
}

/// A streamOptimized VMDK: its tables, then every grain of the stream.
/// The JSON has the shape of the other formats' reports.
fn run_vmdk(a: &CheckArgs) -> ExitCode {
    if a.repair {
        return fail("repairing a VMDK image is not supported (check it without --repair)");
    }
    let check = match ovf::vmdk::check_vmdk_file(&a.image) {
        Ok(c) => c,
        Err(e) => {
            return fail(format_args!(
                "cannot check {}: {}",
                a.image.display(),
                error_chain(&e)
            ));
        }
    };
    let total = check
        .info
        .as_ref()
        .map_or(0, |i| i.virtual_size.div_ceil(i.grain_size));
    let findings: Vec<serde_json::Value> = check
        .problem
        .iter()
        .map(|e| {
            serde_json::json!({
                "severity": "error",
                "offset": e.offset(),
                "message": error_chain(e),
                "repaired": false,
            })
        })
        .collect();
    match a.output {
        OutputFormat::Json => {
            let report = serde_json::json!({
                "format": "vmdk",
                "findings": findings,
                "log_was_dirty": false,
                "allocated_blocks": check.grains,
                "total_blocks": total,
            });
            if let Err(code) = super::print_json(&report) {
                return code;
            }
        }
        OutputFormat::Human => {
            if let Some(e) = &check.problem {
                let at = e
                    .offset()
                    .map(|o| format!(" at {o:#x}"))
                    .unwrap_or_default();
                println!("error{at}: {}", error_chain(e));
            }
            if total > 0 {
                println!("{}/{total} grains read", check.grains);
            }
            if check.problem.is_none() {
                println!("no errors were found on the image");
            } else {
                println!("1 error found on the image");
            }
        }
    }
    if check.problem.is_some() {
        ExitCode::from(EXIT_CORRUPT)
    } else {
        ExitCode::SUCCESS
    }
}
