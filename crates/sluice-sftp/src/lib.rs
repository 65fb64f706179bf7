//! The SSH/SFTP front door of sluice: authentication, per-tenant virtual tree, atomic
//! uploads. Emits upload events into the store; knows nothing about CSV or imports.

pub mod fs;
pub mod limits;
mod processor;
pub mod protocol;
pub mod proxy;
pub mod session;
pub mod ssh;
mod tenant_state;
mod upload;

pub use limits::{FdBudget, SftpLimits, raise_fd_limit};
pub use session::SftpShared;
pub use ssh::{SftpServer, SshError, SshSettings, algorithms, negotiation_hint, parse_public_key};
