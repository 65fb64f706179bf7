//! Integration tests: each starts the real `sluice` binary on an ephemeral port with a
//! temporary data directory and talks to it with real clients.

mod common;

mod audit;
mod cli;
mod concurrency;
mod curl;
mod hardening;
mod imports;
mod manifest;
mod openssh;
mod paramiko;
mod psftp;
mod sftp_rust;
