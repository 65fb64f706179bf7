//! Scheduled runs taken once per due time (see [`crate::roles::Schedules`]).

use crate::{Result, Store, now_ms};
use rusqlite::params;

impl crate::roles::Schedules for Store {
    fn claim_due(&self, key: &str, due_ms: i64) -> Result<bool> {
        self.with_write(|c| {
            let taken = c
                .prepare_cached(
                    "INSERT INTO schedule_runs (key, due_ms, claimed_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key, due_ms) DO NOTHING",
                )?
                .execute(params![key, due_ms, now_ms()])?;
            Ok(taken == 1)
        })
    }

    fn forget_due_claims(&self, before_ms: i64) -> Result<usize> {
        self.with_write(|c| Ok(c.execute("DELETE FROM schedule_runs WHERE due_ms < ?1", [before_ms])?))
    }
}
