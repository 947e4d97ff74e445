//! `vmimport disk commit`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use vhd::OpenOptions;

use super::{fail, with_progress};
use crate::output::error_chain;

/// Arguments of `disk commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Show a progress bar on a terminal.
    #[arg(long, short = 'p')]
    progress: bool,
    /// The differencing image whose data goes into its parent.
    child: PathBuf,
}

pub fn run(a: CommitArgs) -> ExitCode {
    let r = with_progress(a.progress, "committing", |report| {
        vhd::ops::commit(&a.child, &OpenOptions::default(), Some(report))
    });
    match r {
        Ok(s) => {
            println!(
                "committed {} into {}: {} bytes copied, {} zeroed; {} is now empty",
                a.child.display(),
                s.parent.display(),
                s.bytes_copied,
                s.bytes_zeroed,
                a.child.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!(
            "cannot commit {}: {}",
            a.child.display(),
            error_chain(&e)
        )),
    }
}
