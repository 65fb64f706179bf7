//! Scheduled runs taken once per due time, as on SQLite: the primary key decides which node
//! gets a due time (`ON CONFLICT DO NOTHING`: a node asking at the same moment waits for the
//! first one's insert, then finds it taken).

use crate::{PgStore, db};
use sluice_store::{Result, Schedules, now_ms};

impl Schedules for PgStore {
    fn claim_due(&self, key: &str, due_ms: i64) -> Result<bool> {
        self.with(|c| {
            let taken = c
                .execute(
                    "INSERT INTO schedule_runs (key, due_ms, claimed_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (key, due_ms) DO NOTHING",
                    &[&key, &due_ms, &now_ms()],
                )
                .map_err(db)?;
            Ok(taken == 1)
        })
    }

    fn forget_due_claims(&self, before_ms: i64) -> Result<usize> {
        self.with(|c| {
            let n = c.execute("DELETE FROM schedule_runs WHERE due_ms < $1", &[&before_ms]).map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
