//! `vmimport disk ...`: the qemu-img-like tools.

mod info;

use std::process::ExitCode;

use clap::Subcommand;

/// Disk image subcommands.
#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Show what an image is: format, sizes, identifiers, parent chain.
    Info(info::InfoArgs),
}

/// Runs a disk subcommand.
pub fn run(cmd: DiskCommand) -> ExitCode {
    match cmd {
        DiskCommand::Info(a) => info::run(a),
    }
}

/// Exit status for "could not run" (bad arguments, unreadable file).
pub const EXIT_FAILED: u8 = 1;
