//! Scheduled runs taken once per due time (see [`crate::roles::Schedules`]).

use crate::{Result, Store, now_ms};
use rusqlite::params;

/// An unfinished run is forgotten this much later than a finished one (its taker may still
/// be running it, or someone may still take it over).
pub const UNFINISHED_KEPT_MS: i64 = 6 * 86_400_000;

impl crate::roles::Schedules for Store {
    fn claim_due(&self, key: &str, due_ms: i64, owner: &str) -> Result<bool> {
        self.with_write(|c| {
            let taken = c
                .prepare_cached(
                    "INSERT INTO schedule_runs (key, due_ms, claimed_ms, owner) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key, due_ms) DO NOTHING",
                )?
                .execute(params![key, due_ms, now_ms(), owner])?;
            Ok(taken == 1)
        })
    }

    fn finish_due(&self, key: &str, due_ms: i64) -> Result<()> {
        self.with_write(|c| {
            c.prepare_cached("UPDATE schedule_runs SET done_ms = ?3 WHERE key = ?1 AND due_ms = ?2")?
                .execute(params![key, due_ms, now_ms()])?;
            Ok(())
        })
    }

    fn retake_due(
        &self,
        prefix: &str,
        owner: &str,
        ended: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(String, i64)>> {
        let unfinished: Vec<(String, i64, String)> = self.with(|c| {
            let mut q = c.prepare_cached(
                "SELECT key, due_ms, owner FROM schedule_runs
                 WHERE done_ms IS NULL AND owner IS NOT NULL AND substr(key, 1, length(?1)) = ?1
                 ORDER BY due_ms, key",
            )?;
            let rows = q.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        let mut taken = Vec::new();
        for (key, due_ms, was) in unfinished.into_iter().filter(|(_, _, was)| was != owner && ended(was)) {
            let moved = self.with_write(|c| {
                Ok(c.prepare_cached(
                    "UPDATE schedule_runs SET owner = ?4, claimed_ms = ?5
                     WHERE key = ?1 AND due_ms = ?2 AND owner = ?3 AND done_ms IS NULL",
                )?
                .execute(params![key, due_ms, was, owner, now_ms()])?)
            });
            match moved {
                Ok(1) => taken.push((key, due_ms)),
                Ok(_) => {}
                // What was taken over is the caller's to run (the rest stays the ended
                // process's, for the next look).
                Err(_) if !taken.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    fn forget_due_claims(&self, before_ms: i64) -> Result<usize> {
        self.with_write(|c| {
            Ok(c.execute(
                "DELETE FROM schedule_runs WHERE due_ms < ?1 AND (done_ms IS NOT NULL OR due_ms < ?1 - ?2)",
                params![before_ms, UNFINISHED_KEPT_MS],
            )?)
        })
    }
}
