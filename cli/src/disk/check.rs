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
