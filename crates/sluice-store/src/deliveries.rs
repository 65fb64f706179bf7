//! Notifications waiting to be sent, and the log of those sent or given up. An import's end
//! queues one delivery per recipient and webhook; the notifier sends them later, so sending
//! can never block or fail an import.

use crate::{Channel, Delivery};
use crate::{Result, Store, now_ms};
use rusqlite::params;
use sluice_core::delivery::About;

/// A delivery with its tenant's name, in [`DeliveryRow`]'s order (every backend's
/// `deliveries` and `tenants` tables have these columns).
/// The deliveries a claim takes (`?1` now, `?2` per tenant): pending, due, not under a live
/// lease, of tenants none of whose deliveries is under one; each tenant's oldest first.
const DUE_TO_CLAIM: &str = "SELECT id FROM (
    SELECT d.id, ROW_NUMBER() OVER (PARTITION BY d.tenant_id ORDER BY d.id) AS n FROM deliveries d
    WHERE d.status = 'pending' AND d.next_ms <= ?1 AND (d.lease_until_ms IS NULL OR d.lease_until_ms < ?1)
      AND NOT EXISTS (SELECT 1 FROM deliveries o
                      WHERE o.tenant_id = d.tenant_id AND o.status = 'pending' AND o.lease_until_ms >= ?1))
  WHERE n <= ?2";

pub const DELIVERY_SELECT: &str =
    "SELECT d.id, t.name, d.import_id, d.channel, d.target, d.status, d.attempts, d.last_error,
    d.created_ms, d.finished_ms, d.export_run FROM deliveries d JOIN tenants t ON t.id = d.tenant_id";

/// A delivery as every backend stores it (the columns of [`DELIVERY_SELECT`], in order), read
/// by [`DeliveryRow::into_delivery`].
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub tenant: String,
    pub import_id: Option<i64>,
    pub channel: String,
    pub target: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub export_run: Option<i64>,
}

impl DeliveryRow {
    /// The delivery this row holds: of an export's run when it names one, else of an import.
    pub fn into_delivery(self) -> Delivery {
        Delivery {
            id: self.id,
            tenant: self.tenant,
            about: match (self.import_id, self.export_run) {
                (_, Some(run)) => About::ExportRun(run),
                (import, None) => About::Import(import.unwrap_or(0)),
            },
            channel: if self.channel == "email" { Channel::Email } else { Channel::Webhook },
            target: self.target,
            status: self.status,
            attempts: self.attempts.max(0) as u32,
            last_error: self.last_error,
            created_ms: self.created_ms,
            finished_ms: self.finished_ms,
        }
    }
}

/// What one notification goes to, as queued: (`email` or `webhook`, the address or URL) for
/// each of a tenant's recipients (`notify_emails`, comma-separated) and its webhook (if any).
pub fn delivery_targets<'a>(emails: &'a str, webhook_url: &'a str) -> Vec<(&'static str, &'a str)> {
    emails
        .split(',')
        .filter(|e| !e.is_empty())
        .map(|e| ("email", e))
        .chain((!webhook_url.is_empty()).then_some(("webhook", webhook_url)))
        .collect()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        import_id: r.get(2)?,
        channel: r.get(3)?,
        target: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        last_error: r.get(7)?,
        created_ms: r.get(8)?,
        finished_ms: r.get(9)?,
        export_run: r.get(10)?,
    }
    .into_delivery())
}

impl crate::roles::Deliveries for Store {
    fn queue_deliveries(&self, import_id: i64) -> Result<usize> {
        self.queue(About::Import(import_id))
    }

    fn queue_export_failure(&self, run_id: i64) -> Result<usize> {
        self.queue(About::ExportRun(run_id))
    }

    fn claim_deliveries(&self, per_tenant: usize, lease: std::time::Duration) -> Result<Vec<Delivery>> {
        self.with_write(|c| {
            let now = now_ms();
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let claimed = {
                let mut stmt =
                    tx.prepare(&format!("{DELIVERY_SELECT} WHERE d.id IN ({DUE_TO_CLAIM}) ORDER BY d.id"))?;
                stmt.query_map(params![now, per_tenant as i64], row)?.collect::<rusqlite::Result<Vec<_>>>()?
            };
            {
                let mut lease = tx.prepare("UPDATE deliveries SET lease_until_ms = ?2 WHERE id = ?1")?;
                for d in &claimed {
                    lease.execute(params![d.id, until])?;
                }
            }
            tx.commit()?;
            Ok(claimed)
        })
    }

    fn release_deliveries(&self, ids: &[i64]) -> Result<()> {
        self.with_write(|c| {
            let tx = c.transaction()?;
            {
                let mut release = tx.prepare("UPDATE deliveries SET lease_until_ms = NULL WHERE id = ?1")?;
                for id in ids {
                    release.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn delivery_attempted(&self, id: i64, error: Option<&str>, retry_at_ms: Option<i64>) -> Result<()> {
        self.with(|c| {
            let now = now_ms();
            match (error, retry_at_ms) {
                (None, _) => c.execute(
                    "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, last_error = NULL, finished_ms = ?2,
                     lease_until_ms = NULL WHERE id = ?1",
                    params![id, now],
                )?,
                (Some(e), Some(at)) => c.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, next_ms = ?3, lease_until_ms = NULL WHERE id = ?1",
                    params![id, e, at],
                )?,
                (Some(e), None) => c.execute(
                    "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?2, finished_ms = ?3,
                     lease_until_ms = NULL WHERE id = ?1",
                    params![id, e, now],
                )?,
            };
            Ok(())
        })
    }

    fn deliveries(&self, tenant: &str, limit: usize) -> Result<Vec<Delivery>> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("{DELIVERY_SELECT} WHERE t.name = ?1 ORDER BY d.id DESC LIMIT ?2"))?;
            let rows =
                stmt.query_map(params![tenant, limit as i64], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

impl Store {
    /// Queues one delivery per recipient and webhook of the tenant of what `about` names.
    fn queue(&self, about: About) -> Result<usize> {
        // Immediate: a read-then-write transaction whose snapshot another import's commit
        // overtook would fail at once, without waiting (imports of tenants run in parallel).
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (sql, id, import, run) = match about {
                About::Import(id) => (
                    "SELECT t.id, t.notify_emails, t.webhook_url FROM imports i JOIN tenants t ON t.id = i.tenant_id WHERE i.id = ?1",
                    id,
                    Some(id),
                    None,
                ),
                About::ExportRun(id) => (
                    "SELECT t.id, t.notify_emails, t.webhook_url FROM export_runs r JOIN tenants t ON t.id = r.tenant_id WHERE r.id = ?1",
                    id,
                    None,
                    Some(id),
                ),
            };
            let (tenant_id, emails, url): (i64, String, String) =
                tx.query_row(sql, [id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let now = now_ms();
            let mut n = 0;
            for (channel, target) in delivery_targets(&emails, &url) {
                tx.execute(
                    "INSERT INTO deliveries (tenant_id, import_id, export_run, channel, target, status, next_ms, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
                    params![tenant_id, import, run, channel, target, now],
                )?;
                n += 1;
            }
            tx.commit()?;
            Ok(n)
        })
    }
}
