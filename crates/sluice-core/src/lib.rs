//! Domain types of sluice. Pure: no I/O, no async, no knowledge of SSH, SQL or HTTP.
//!
//! Everything a client sends is parsed into one of these types at the edge ("parse, don't
//! validate"): a [`TenantName`] is always a safe directory and login name, a [`VirtualPath`]
//! is always inside the tenant's root, a [`TreeLayout`] decides what may happen where.

pub mod access;
pub mod audit;
pub mod cells;
pub mod connector;
pub mod defender;
pub mod delivery;
pub mod history;
pub mod import;
pub mod json;
pub mod layout;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod oneroster;
pub mod password;
pub mod people;
pub mod photo;
pub mod saved_export;
pub mod schedule;
pub mod settings;
pub mod spool;
pub mod tenant;
pub mod totp;
pub mod upload;
pub mod views;
pub mod vpath;
pub mod webhook;

pub use layout::{FolderName, Node, Operation, PolicyError, TreeLayout};
pub use password::{PasswordError, PasswordHash};
pub use settings::{SettingsChange, SettingsContext, SettingsError};
pub use tenant::{Blackout, Routing, Tenant, TenantName, TenantNameError, Trigger};
pub use upload::{Sha256Hex, SnapshotName, UploadEvent, hmac_sha256_hex, is_transfer_temp_name, sha256_of};
pub use vpath::{FileName, FileNameError, PathError, VirtualPath};
