//! Notifications on PostgreSQL, as `sluice-store`'s `deliveries.rs` keeps them on SQLite: an
//! import's end (or a saved export's failed run) queues one delivery per recipient and webhook,
//! in one transaction; the notifier sends them later and records each attempt.
//!
//! Several nodes' notifiers share the queue: a claim takes a transaction-scoped advisory lock
//! (claims are serialised; a window function cannot be combined with `FOR UPDATE`), picks
//! what is due as SQLite does and leases it, so no delivery is sent by two nodes.

use crate::{PgStore, db};
use postgres::Row;
use sluice_core::delivery::About;
use sluice_store::{DELIVERY_SELECT, Deliveries, Delivery, DeliveryRow, Result, delivery_targets, now_ms};

/// The advisory lock a delivery claim holds for its transaction.
const CLAIM_LOCK: i64 = 0x736c_6463; // "sldc"

fn delivery(r: &Row) -> Delivery {
    DeliveryRow {
        id: r.get(0),
        tenant: r.get(1),
        import_id: r.get(2),
        channel: r.get(3),
        target: r.get(4),
        status: r.get(5),
        attempts: r.get(6),
        last_error: r.get(7),
        created_ms: r.get(8),
        finished_ms: r.get(9),
        export_run: r.get(10),
    }
    .into_delivery()
}

/// A count or limit as a BIGINT parameter.
pub(crate) fn bigint(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Deliveries for PgStore {
    fn queue_deliveries(&self, import_id: i64) -> Result<usize> {
        self.queue(About::Import(import_id))
    }

    fn queue_export_failure(&self, run_id: i64) -> Result<usize> {
        self.queue(About::ExportRun(run_id))
    }

    fn claim_deliveries(&self, per_tenant: usize, lease: std::time::Duration) -> Result<Vec<Delivery>> {
        self.with(|c| {
            let now = now_ms();
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            let mut tx = c.transaction().map_err(db)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK]).map_err(db)?;
            let sql = format!(
                "{DELIVERY_SELECT} WHERE d.id IN (SELECT id FROM (
                    SELECT d.id, ROW_NUMBER() OVER (PARTITION BY d.tenant_id ORDER BY d.id) AS n FROM deliveries d
                    WHERE d.status = 'pending' AND d.next_ms <= $1
                      AND (d.lease_until_ms IS NULL OR d.lease_until_ms < $1)
                      AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.tenant_id = d.tenant_id
                                      AND o.status = 'pending' AND o.lease_until_ms >= $1)) due
                  WHERE n <= $2)
                 ORDER BY d.id"
            );
            let claimed: Vec<Delivery> =
                tx.query(sql.as_str(), &[&now, &bigint(per_tenant)]).map_err(db)?.iter().map(delivery).collect();
            let ids: Vec<i64> = claimed.iter().map(|d| d.id).collect();
            tx.execute("UPDATE deliveries SET lease_until_ms = $2 WHERE id = ANY($1)", &[&ids, &until])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(claimed)
        })
    }

    fn release_deliveries(&self, ids: &[i64]) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE deliveries SET lease_until_ms = NULL WHERE id = ANY($1)", &[&ids])
                .map_err(db)?;
            Ok(())
        })
    }

    fn delivery_attempted(&self, id: i64, error: Option<&str>, retry_at_ms: Option<i64>) -> Result<()> {
        self.with(|c| {
            let now = now_ms();
            match (error, retry_at_ms) {
                (None, _) => c.execute(
                    "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, last_error = NULL, finished_ms = $2,
                     lease_until_ms = NULL WHERE id = $1",
                    &[&id, &now],
                ),
                (Some(e), Some(at)) => c.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, last_error = $2, next_ms = $3, lease_until_ms = NULL
                     WHERE id = $1",
                    &[&id, &e, &at],
                ),
                (Some(e), None) => c.execute(
                    "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = $2, finished_ms = $3,
                     lease_until_ms = NULL WHERE id = $1",
                    &[&id, &e, &now],
                ),
            }
            .map_err(db)?;
            Ok(())
        })
    }

    fn deliveries(&self, tenant: &str, limit: usize) -> Result<Vec<Delivery>> {
        self.with(|c| {
            let sql = format!("{DELIVERY_SELECT} WHERE t.name = $1 ORDER BY d.id DESC LIMIT $2");
            let rows = c.query(sql.as_str(), &[&tenant, &bigint(limit)]).map_err(db)?;
            Ok(rows.iter().map(delivery).collect())
        })
    }
}

impl PgStore {
    /// Queues one delivery per recipient and webhook of the tenant of what `about` names, all
    /// or none (one transaction: a notifier never sees half of them).
    fn queue(&self, about: About) -> Result<usize> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let (sql, id, import, run) = match about {
                About::Import(id) => (
                    "SELECT t.id, t.notify_emails, t.webhook_url FROM imports i JOIN tenants t ON t.id = i.tenant_id
                     WHERE i.id = $1",
                    id,
                    Some(id),
                    None,
                ),
                About::ExportRun(id) => (
                    "SELECT t.id, t.notify_emails, t.webhook_url FROM export_runs r JOIN tenants t ON t.id = r.tenant_id
                     WHERE r.id = $1",
                    id,
                    None,
                    Some(id),
                ),
            };
            // As on SQLite, an import or run that is not there is an error, not zero deliveries.
            let tenant = tx.query_one(sql, &[&id]).map_err(db)?;
            let (tenant_id, emails, url): (i64, String, String) = (tenant.get(0), tenant.get(1), tenant.get(2));
            let now = now_ms();
            let targets = delivery_targets(&emails, &url);
            for (channel, target) in &targets {
                tx.execute(
                    "INSERT INTO deliveries (tenant_id, import_id, export_run, channel, target, status, next_ms, created_ms)
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
                    &[&tenant_id, &import, &run, channel, target, &now],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(targets.len())
        })
    }
}
