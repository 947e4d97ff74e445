//! `vmimport disk ...`: the qemu-img-like tools.
//!
//! Exit status: 0 success; 1 the command could not run (bad arguments, an
//! unreadable file, a refused operation). `check` uses 2 for an image with
//! errors and 3 for leaked space only; `compare` uses 1 when the images
//! differ and 2 when it could not run, as qemu-img does.

mod bench;
mod check;
mod commit;
mod compare;
mod convert;
mod create;
mod info;
mod map;
mod resize;

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use vhd::{Format, ImageType};

/// Disk image subcommands.
#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Show what an image is: format, sizes, identifiers, parent chain.
    Info(info::InfoArgs),
    /// Create a new image.
    Create(create::CreateArgs),
    /// Convert any image (chains flattened) into a new image of any format.
    Convert(convert::ConvertArgs),
    /// Check an image's structure, optionally repairing it.
    Check(check::CheckArgs),
    /// Compare the content of two images.
    Compare(compare::CompareArgs),
    /// Merge a differencing image into its parent.
    Commit(commit::CommitArgs),
    /// Change the virtual size of an image.
    Resize(resize::ResizeArgs),
    /// List the data, zero and parent-backed ranges of an image.
    Map(map::MapArgs),
    /// Measure read or write performance on an image.
    Bench(bench::BenchArgs),
}

/// Runs a disk subcommand.
pub fn run(cmd: DiskCommand) -> ExitCode {
    match cmd {
        DiskCommand::Info(a) => info::run(a),
        DiskCommand::Create(a) => create::run(a),
        DiskCommand::Convert(a) => convert::run(a),
        DiskCommand::Check(a) => check::run(a),
        DiskCommand::Compare(a) => compare::run(a),
        DiskCommand::Commit(a) => commit::run(a),
        DiskCommand::Resize(a) => resize::run(a),
        DiskCommand::Map(a) => map::run(a),
        DiskCommand::Bench(a) => bench::run(a),
    }
}

/// Exit status for "could not run" (bad arguments, unreadable file).
pub const EXIT_FAILED: u8 = 1;

/// Prints an error and returns the "could not run" status.
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("vmimport: {msg}");
    ExitCode::from(EXIT_FAILED)
}

/// Image format names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Raw bytes.
    Raw,
    /// VHD (Virtual PC, Hyper-V legacy, Azure).
    Vhd,
    /// VHDX (Hyper-V).
    Vhdx,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Raw => Format::Raw,
            FormatArg::Vhd => Format::Vhd,
            FormatArg::Vhdx => Format::Vhdx,
        }
    }
}

/// Image type names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// Every byte stored in place.
    Fixed,
    /// Blocks allocated on first write.
    Dynamic,
    /// Blocks not written come from a parent.
    Differencing,
}

impl From<TypeArg> for ImageType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Fixed => ImageType::Fixed,
            TypeArg::Dynamic => ImageType::Dynamic,
            TypeArg::Differencing => ImageType::Differencing,
        }
    }
}

/// Runs `work` with a progress report that drives a bar on standard error
/// when `enabled` and standard error is a terminal (a no-op otherwise), and
/// clears the bar when `work` returns.
pub fn with_progress<T>(
    enabled: bool,
    what: &str,
    work: impl FnOnce(vhd::ops::Progress<'_>) -> T,
) -> T {
    use std::io::IsTerminal;
    let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    });
    let report = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let result = work(&report);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    result
}

/// Prints `value` as pretty JSON on standard output.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ExitCode> {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            Ok(())
        }
        Err(e) => Err(fail(format_args!("cannot encode the result as JSON: {e}"))),
    }
}

/// A spinner with a message on standard error when it is a terminal.
pub fn spinner(enabled: bool, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}
