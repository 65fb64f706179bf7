//! What `/metrics` reports, counted where it happens (the SFTP layer, the import worker) and
//! rendered in the Prometheus text format. Plain atomics: counting never blocks or fails.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Import statuses counted by name; anything else is counted as `other`.
const STATUSES: [&str; 7] = ["complete", "incomplete", "failed", "held", "discarded", "superseded", "other"];
/// Row outcomes, in the order [`Metrics::import_finished`] takes them.
const OUTCOMES: [&str; 5] = ["added", "updated", "unchanged", "deleted", "rejected"];
/// Upper bounds of the import duration histogram, in seconds.
const BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0];

#[derive(Debug, Default)]
pub struct Metrics {
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    sftp_sessions: AtomicI64,
    sftp_open_handles: AtomicI64,
    failed_logins: AtomicU64,
    http_connections: AtomicI64,
    http_refused: AtomicU64,
    bans: AtomicU64,
    /// By service (sftp, dashboard) and reason (banned, account_limit).
    refused: [[AtomicU64; 2]; 2],
    imports: [AtomicU64; STATUSES.len()],
    rows: [AtomicU64; OUTCOMES.len()],
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_micros: AtomicU64,
}

/// Read at scrape time from the store, not counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Upload events not yet turned into imports.
    pub queue_depth: u64,
    /// Sources the defender bans now.
    pub banned_sources: u64,
    /// With `[storage] backend = "s3"`: what the bucket has done.
    pub object_storage: Option<ObjectStorage>,
}

/// What the object storage bucket has done since the process started (read from it at
/// scrape time).
#[derive(Debug, Default, Clone, Copy)]
pub struct ObjectStorage {
    /// Calls that ended in an error of the store's, or no answer in time.
    pub failed_calls: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Objects being read through local copies now (open downloads).
    pub copies_open: u64,
}

/// Why the defender refused a connection or login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source is banned.
    Banned,
    /// The account took its share of failed logins.
    AccountLimit,
}

const SERVICES: [&str; 2] = ["sftp", "dashboard"];
const REFUSALS: [&str; 2] = ["banned", "account_limit"];

impl Metrics {
    pub fn upload(&self, bytes: u64) {
        self.uploads.fetch_add(1, Relaxed);
        self.upload_bytes.fetch_add(bytes, Relaxed);
    }

    pub fn session_opened(&self) {
        self.sftp_sessions.fetch_add(1, Relaxed);
    }

    pub fn session_closed(&self) {
        self.sftp_sessions.fetch_sub(1, Relaxed);
    }

    pub fn sessions(&self) -> i64 {
        self.sftp_sessions.load(Relaxed)
    }

    pub fn handle_opened(&self) {
        self.sftp_open_handles.fetch_add(1, Relaxed);
    }

    pub fn handle_closed(&self) {
        self.sftp_open_handles.fetch_sub(1, Relaxed);
    }

    /// Files and folders open in SFTP sessions now.
    pub fn open_handles(&self) -> i64 {
        self.sftp_open_handles.load(Relaxed)
    }

    pub fn failed_login(&self) {
        self.failed_logins.fetch_add(1, Relaxed);
    }

    pub fn failed_logins(&self) -> u64 {
        self.failed_logins.load(Relaxed)
    }

    pub fn http_connection_opened(&self) {
        self.http_connections.fetch_add(1, Relaxed);
    }

    pub fn http_connection_closed(&self) {
        self.http_connections.fetch_sub(1, Relaxed);
    }

    /// An HTTP connection closed at once: its address had all it may open.
    pub fn http_connection_refused(&self) {
        self.http_refused.fetch_add(1, Relaxed);
    }

    /// The defender banned a source.
    pub fn banned(&self) {
        self.bans.fetch_add(1, Relaxed);
    }

    /// The defender refused a connection (SFTP) or a login (dashboard) before its password
    /// was checked.
    pub fn refused(&self, service: crate::defender::Service, why: Refused) {
        let s = match service {
            crate::defender::Service::Sftp => 0,
            crate::defender::Service::Dashboard => 1,
        };
        self.refused[s][why as usize].fetch_add(1, Relaxed);
    }

    /// An import ended: its status, rows by outcome (added, updated, unchanged, deleted,
    /// rejected) and how long it took.
    pub fn import_finished(&self, status: &str, rows: [u64; 5], took: std::time::Duration) {
        let i = STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len() - 1);
        self.imports[i].fetch_add(1, Relaxed);
        for (counter, n) in self.rows.iter().zip(rows) {
            counter.fetch_add(n, Relaxed);
        }
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.duration_buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Relaxed);
        self.duration_micros.fetch_add(took.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Held imports a newer applied import superseded (counted under
    /// `sluice_imports_total{status="superseded"}`; they end without running again).
    pub fn imports_superseded(&self, n: u64) {
        let i = STATUSES.iter().position(|s| *s == "superseded").unwrap_or(STATUSES.len() - 1);
        self.imports[i].fetch_add(n, Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        let mut text = |name: &str, kind: &str, help: &str, lines: String| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{lines}");
        };
        text(
            "sluice_uploads_total",
            "counter",
            "Uploads completed over SFTP.",
            format!("sluice_uploads_total {}\n", self.uploads.load(Relaxed)),
        );
        text(
            "sluice_upload_bytes_total",
            "counter",
            "Bytes of completed uploads.",
            format!("sluice_upload_bytes_total {}\n", self.upload_bytes.load(Relaxed)),
        );
        text(
            "sluice_sftp_sessions",
            "gauge",
            "SFTP sessions open now.",
            format!("sluice_sftp_sessions {}\n", self.sftp_sessions.load(Relaxed).max(0)),
        );
        text(
            "sluice_sftp_open_handles",
            "gauge",
            "Files and folders open in SFTP sessions now.",
            format!("sluice_sftp_open_handles {}\n", self.sftp_open_handles.load(Relaxed).max(0)),
        );
        text(
            "sluice_failed_logins_total",
            "counter",
            "SSH authentication attempts refused.",
            format!("sluice_failed_logins_total {}\n", self.failed_logins.load(Relaxed)),
        );
        text(
            "sluice_http_connections",
            "gauge",
            "HTTP connections open now (TLS handshakes included).",
            format!("sluice_http_connections {}\n", self.http_connections.load(Relaxed).max(0)),
        );
        text(
            "sluice_http_connections_refused_total",
            "counter",
            "HTTP connections closed at once: their address had [http] max_connections_per_ip open.",
            format!("sluice_http_connections_refused_total {}\n", self.http_refused.load(Relaxed)),
        );
        text(
            "sluice_defender_bans_total",
            "counter",
            "Sources (an IPv4 address, an IPv6 /64) the defender banned.",
            format!("sluice_defender_bans_total {}\n", self.bans.load(Relaxed)),
        );
        text(
            "sluice_defender_banned_sources",
            "gauge",
            "Sources banned now.",
            format!("sluice_defender_banned_sources {}\n", gauges.banned_sources),
        );
        let mut refused = String::new();
        for (service, counts) in SERVICES.iter().zip(&self.refused) {
            for (reason, n) in REFUSALS.iter().zip(counts) {
                let _ = writeln!(
                    refused,
                    "sluice_defender_refused_total{{service=\"{service}\",reason=\"{reason}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
        text(
            "sluice_defender_refused_total",
            "counter",
            "Connections (sftp) and logins (dashboard) the defender refused, by why.",
            refused,
        );
        text(
            "sluice_import_queue_depth",
            "gauge",
            "Uploads waiting to be imported.",
            format!("sluice_import_queue_depth {}\n", gauges.queue_depth),
        );
        let by_status: String = STATUSES
            .iter()
            .zip(&self.imports)
            .map(|(s, n)| format!("sluice_imports_total{{status=\"{s}\"}} {}\n", n.load(Relaxed)))
            .collect();
        text("sluice_imports_total", "counter", "Imports finished, by status.", by_status);
        let by_outcome: String = OUTCOMES
            .iter()
            .zip(&self.rows)
            .map(|(o, n)| format!("sluice_import_rows_total{{outcome=\"{o}\"}} {}\n", n.load(Relaxed)))
            .collect();
        text("sluice_import_rows_total", "counter", "Rows of finished imports, by outcome.", by_outcome);
        let mut histogram: String = BUCKETS
            .iter()
            .zip(&self.duration_buckets)
            .map(|(b, n)| {
                format!("sluice_import_duration_seconds_bucket{{le=\"{b}\"}} {}\n", n.load(Relaxed))
            })
            .collect();
        let count = self.duration_count.load(Relaxed);
        let _ = write!(
            histogram,
            "sluice_import_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             sluice_import_duration_seconds_sum {}\n\
             sluice_import_duration_seconds_count {count}\n",
            self.duration_micros.load(Relaxed) as f64 / 1e6
        );
        text("sluice_import_duration_seconds", "histogram", "How long imports took.", histogram);
        if let Some(bucket) = gauges.object_storage {
            for (name, kind, help, value) in [
                (
                    "sluice_object_storage_failed_calls_total",
                    "counter",
                    "Calls to the object storage bucket that failed or got no answer in time.",
                    bucket.failed_calls,
                ),
                (
                    "sluice_object_storage_read_bytes_total",
                    "counter",
                    "Bytes copied out of the object storage bucket.",
                    bucket.bytes_read,
                ),
                (
                    "sluice_object_storage_written_bytes_total",
                    "counter",
                    "Bytes put into the object storage bucket.",
                    bucket.bytes_written,
                ),
                (
                    "sluice_object_storage_read_copies",
                    "gauge",
                    "Files of the bucket being read through local copies now.",
                    bucket.copies_open,
                ),
            ] {
                text(name, kind, help, format!("{name} {value}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_and_renders_the_prometheus_text_format() {
        let m = Metrics::default();
        m.upload(100);
        m.upload(50);
        m.session_opened();
        m.handle_opened();
        m.handle_opened();
        m.handle_closed();
        m.failed_login();
        m.http_connection_opened();
        m.http_connection_opened();
        m.http_connection_closed();
        m.http_connection_refused();
        m.banned();
        m.refused(crate::defender::Service::Sftp, Refused::Banned);
        m.refused(crate::defender::Service::Sftp, Refused::Banned);
        m.refused(crate::defender::Service::Dashboard, Refused::AccountLimit);
        m.import_finished("complete", [3, 1, 0, 0, 0], Duration::from_millis(80));
        m.import_finished("held", [0, 0, 0, 5, 0], Duration::from_secs(2));
        m.import_finished("running?", [0; 5], Duration::from_secs(1000));
        let text = m.render(Gauges { queue_depth: 4, banned_sources: 3, object_storage: None });
        assert!(!text.contains("object_storage"), "no bucket, no bucket metrics");
        let bucket = ObjectStorage { failed_calls: 2, bytes_read: 30, bytes_written: 40, copies_open: 1 };
        let with_bucket =
            m.render(Gauges { queue_depth: 4, banned_sources: 3, object_storage: Some(bucket) });
        for line in [
            "sluice_object_storage_failed_calls_total 2",
            "sluice_object_storage_read_bytes_total 30",
            "sluice_object_storage_written_bytes_total 40",
            "sluice_object_storage_read_copies 1",
            "# TYPE sluice_object_storage_read_copies gauge",
        ] {
            assert!(with_bucket.lines().any(|l| l == line), "missing {line:?} in:\n{with_bucket}");
        }
        for line in [
            "sluice_uploads_total 2",
            "sluice_upload_bytes_total 150",
            "sluice_sftp_sessions 1",
            "sluice_sftp_open_handles 1",
            "sluice_failed_logins_total 1",
            "sluice_http_connections 1",
            "sluice_http_connections_refused_total 1",
            "sluice_import_queue_depth 4",
            "sluice_defender_bans_total 1",
            "sluice_defender_banned_sources 3",
            "sluice_defender_refused_total{service=\"sftp\",reason=\"banned\"} 2",
            "sluice_defender_refused_total{service=\"sftp\",reason=\"account_limit\"} 0",
            "sluice_defender_refused_total{service=\"dashboard\",reason=\"account_limit\"} 1",
            "sluice_imports_total{status=\"complete\"} 1",
            "sluice_imports_total{status=\"held\"} 1",
            "sluice_imports_total{status=\"other\"} 1",
            "sluice_import_rows_total{outcome=\"added\"} 3",
            "sluice_import_rows_total{outcome=\"deleted\"} 5",
            "sluice_import_duration_seconds_bucket{le=\"0.1\"} 1",
            "sluice_import_duration_seconds_bucket{le=\"5\"} 2",
            "sluice_import_duration_seconds_bucket{le=\"+Inf\"} 3",
            "sluice_import_duration_seconds_count 3",
            "# TYPE sluice_import_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every sample line is `name{labels} value` with a number.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }
}
