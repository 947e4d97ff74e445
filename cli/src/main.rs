//! `vmimport`: import OVF/OVA appliances, inspect and convert disk images,
//! and run virtual machines. The binary only parses arguments and prints
//! results; the work is done by the library crates.

mod boot;
mod disk;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Import virtual appliances, work with VHD/VHDX disk images, run VMs.
#[derive(Debug, Parser)]
#[command(name = "vmimport", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, create, convert and check disk images.
    #[command(subcommand)]
    Disk(disk::DiskCommand),
    /// Boot a kernel (bzImage or PVH ELF) on the built-in KVM VMM.
    Boot(boot::BootArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Disk(cmd) => disk::run(cmd),
        Command::Boot(args) => boot::run(args),
    }
}
