//! `sluice`: the binary. Parses the command line and configuration, wires the crates
//! together, and maps failures to the exit codes of the contract (0 ok, 1 rejected input,
//! 2 usage or configuration error).

mod cli;
mod config;
mod hostkey;
mod serve;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
