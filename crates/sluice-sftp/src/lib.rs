//! The SSH/SFTP front door of sluice: authentication, per-tenant virtual tree, atomic
//! uploads. Emits upload events into the store; knows nothing about CSV or imports.

pub mod fs;
pub mod protocol;
pub mod session;
pub mod ssh;

pub use session::{SftpLimits, SftpShared};
pub use ssh::{SftpServer, SshError, SshSettings, algorithms, negotiation_hint, parse_public_key};
