//! The audit log: one row per audited action, never changed (a trigger refuses updates);
//! rows older than the retention are purged.

use crate::{Result, Store, StoreError};
use rusqlite::params;
use sluice_core::audit::{Actor, ActorKind, AuditEntry, AuditFilter, AuditOutcome, NewAuditEntry};

impl crate::roles::Audit for Store {
    fn record_audit(&self, e: &NewAuditEntry<'_>) -> Result<i64> {
        self.with_write(|c| {
            c.prepare_cached(
                "INSERT INTO audit_log (at_ms, tenant, actor_kind, actor, source, action, target, outcome, before, after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                crate::now_ms(),
                e.tenant,
                e.actor.kind.as_str(),
                e.actor.name,
                e.actor.source,
                e.action,
                e.target,
                e.outcome.as_str(),
                e.before,
                e.after
            ])?;
            Ok(c.last_insert_rowid())
        })
    }

    fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            // Two statements, so that a tenant's entries come through `audit_log_by_tenant`
            // (tenant, id) rather than a walk of every tenant's entries back to its first.
            let mut stmt = c.prepare(if f.tenant.is_some() {
                "SELECT id, at_ms, tenant, actor_kind, actor, source, action, target, outcome, before, after
                 FROM audit_log WHERE tenant = ?1 AND at_ms >= ?2 AND id < ?4
                 AND (?5 IS NULL OR action = ?5 OR substr(action, 1, length(?5) + 1) = ?5 || '.')
                 ORDER BY id DESC LIMIT ?3"
            } else {
                "SELECT id, at_ms, tenant, actor_kind, actor, source, action, target, outcome, before, after
                 FROM audit_log WHERE ?1 IS NULL AND at_ms >= ?2 AND id < ?4
                 AND (?5 IS NULL OR action = ?5 OR substr(action, 1, length(?5) + 1) = ?5 || '.')
                 ORDER BY id DESC LIMIT ?3"
            })?;
            let before = f.before_id.unwrap_or(i64::MAX);
            let (tenant, since_ms, limit) = (f.tenant.as_deref(), f.since_ms, f.limit);
            let action = f.action.as_deref();
            let rows =
                stmt.query_map(params![tenant, since_ms.unwrap_or(0), limit as i64, before, action], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at_ms, tenant, kind, name, source, action, target, outcome, before, after) = row?;
                let corrupt = |what: &str| StoreError::Corrupt(format!("audit entry {id}: {what}"));
                out.push(AuditEntry {
                    id,
                    at_ms,
                    tenant,
                    actor: Actor {
                        kind: ActorKind::parse(&kind).ok_or_else(|| corrupt("actor kind"))?,
                        name,
                        source,
                    },
                    action,
                    target,
                    outcome: AuditOutcome::parse(&outcome).ok_or_else(|| corrupt("outcome"))?,
                    before,
                    after,
                });
            }
            Ok(out)
        })
    }

    fn purge_audit(&self, before_ms: i64) -> Result<usize> {
        self.with_write(|c| Ok(c.execute("DELETE FROM audit_log WHERE at_ms < ?1", [before_ms])?))
    }
}
