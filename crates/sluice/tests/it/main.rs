//! Integration tests: each starts the real `sluice` binary on an ephemeral port with a
//! temporary data directory and talks to it with real clients.

mod common;

mod api;
mod audit;
mod audit_log;
mod backup;
mod browser;
mod clever;
mod cli;
mod clients;
mod concurrency;
mod connectors;
mod curl;
mod dashboard;
mod exports;
mod front_door;
mod hardening;
mod http_limits;
mod imports;
mod manifest;
mod metrics;
mod migrate;
mod never_lost;
mod nodes;
mod notifications;
mod object_storage;
mod oneroster;
mod openssh;
mod parallel_imports;
mod paramiko;
mod people;
mod permissions;
mod photos;
mod proxy_protocol;
mod psftp;
mod real_files;
mod records;
mod routing;
mod safeguards;
mod schedules;
mod sftp_rust;
mod soak;
mod tls;
