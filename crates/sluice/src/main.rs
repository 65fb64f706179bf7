//! `sluice`: the binary. Parses the command line and configuration, wires the crates
//! together, and maps failures to the exit codes of the contract (0 ok, 1 rejected input,
//! 2 usage or configuration error).

/// Prints a line of a command's output (`failure::out_line`): a closed pipe drops the rest of
/// the output, quietly, where `println!` would panic; another write error returns it.
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::failure::out_line(format_args!($($arg)*))?
    };
}

mod accounts;
mod audit;
mod backup;
mod cli;
mod config;
mod connectors;
mod dirs;
mod dispatch;
mod exports;
mod failure;
mod hostkey;
mod imports;
mod migrate;
mod operations;
mod serve;
mod tenants;
mod types;

use std::process::ExitCode;

fn main() -> ExitCode {
    private_files();
    tune_allocator();
    dispatch::main()
}

/// Everything sluice writes (the database and its WAL, reports, uploads, staging, archive,
/// tenant folders) holds records, password hashes or a tenant's files: it is private to
/// sluice's user whatever umask the shell or service manager started it with. New files are
/// 0600 and new directories 0700; `DataDirs::create` closes an existing data directory.
fn private_files() {
    // SAFETY: umask only sets this process's file-creation mask; called before any thread starts.
    unsafe {
        libc::umask(0o077);
    }
}

/// SFTP moves data in packets of up to 256 KiB. With glibc's defaults each such buffer is
/// mmap'd or trimmed back to the kernel when freed, so every packet page-faults fresh zeroed
/// pages in (measured: ~10% of upload CPU). Fixed thresholds keep freed buffers for reuse.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator tuning parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}
