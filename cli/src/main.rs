//! `vmimport`: import OVF/OVA appliances, inspect and convert disk images,
//! and run virtual machines. The binary only parses arguments and prints
//! results; the work is done by the library crates.

mod boot;
mod disk;
mod import;
mod output;
mod run;

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
    /// Import an appliance (.ova, .ovf, or a directory): verify it, convert
    /// its disks and write a VM definition. `vmimport PACKAGE` does the same.
    Import(import::ImportArgs),
    /// Describe an appliance without converting anything.
    Inspect(import::InspectArgs),
    /// Inspect, create, convert and check disk images.
    #[command(subcommand)]
    Disk(disk::DiskCommand),
    /// Boot a kernel (bzImage or PVH ELF) on the built-in KVM VMM.
    Boot(boot::BootArgs),
    /// Boot a VM definition file (TOML) on the built-in KVM VMM.
    Run(run::RunArgs),
}

/// Subcommand names; anything else in first position is a package to import.
const SUBCOMMANDS: [&str; 7] = ["import", "inspect", "disk", "boot", "run", "help", "--help"];

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str())
        && !first.starts_with('-')
        && !SUBCOMMANDS.contains(&first)
    {
        args.insert(1, "import".into());
    }
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Import(args) => import::run_import(args),
        Command::Inspect(args) => import::run_inspect(args),
        Command::Disk(cmd) => disk::run(cmd),
        Command::Boot(args) => boot::run(args),
        Command::Run(args) => run::run(args),
    }
}
