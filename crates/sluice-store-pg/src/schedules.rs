//! Scheduled runs taken once per due time, as on SQLite: the primary key decides which node
//! gets a due time (`ON CONFLICT DO NOTHING`: a node asking at the same moment waits for the
//! first one's insert, then finds it taken), and a run left unfinished by a node that ended
//! is taken over by whichever node's conditional update moves it first.

use crate::{PgStore, db};
use sluice_store::{Result, Schedules, now_ms};

impl Schedules for PgStore {
    fn claim_due(&self, key: &str, due_ms: i64, owner: &str) -> Result<bool> {
        self.with(|c| {
            let taken = c
                .execute(
                    "INSERT INTO schedule_runs (key, due_ms, claimed_ms, owner) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key, due_ms) DO NOTHING",
                    &[&key, &due_ms, &now_ms(), &owner],
                )
                .map_err(db)?;
            Ok(taken == 1)
        })
    }

    fn finish_due(&self, key: &str, due_ms: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE schedule_runs SET done_ms = $3 WHERE key = $1 AND due_ms = $2",
                &[&key, &due_ms, &now_ms()],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn retake_due(
        &self,
        prefix: &str,
        owner: &str,
        ended: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let unfinished = c
                .query(
                    "SELECT key, due_ms, owner FROM schedule_runs
                     WHERE done_ms IS NULL AND owner IS NOT NULL AND starts_with(key, $1)
                     ORDER BY due_ms, key",
                    &[&prefix],
                )
                .map_err(db)?;
            let mut taken = Vec::new();
            for r in unfinished {
                let (key, due_ms, was): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
                if was == owner || !ended(&was) {
                    continue;
                }
                let moved = c.execute(
                    "UPDATE schedule_runs SET owner = $4, claimed_ms = $5
                     WHERE key = $1 AND due_ms = $2 AND owner = $3 AND done_ms IS NULL",
                    &[&key, &due_ms, &was, &owner, &now_ms()],
                );
                match moved {
                    Ok(1) => taken.push((key, due_ms)),
                    Ok(_) => {}
                    // What was taken over is the caller's to run (the rest stays the ended
                    // process's, for the next look).
                    Err(_) if !taken.is_empty() => break,
                    Err(e) => return Err(db(e)),
                }
            }
            Ok(taken)
        })
    }

    fn forget_due_claims(&self, before_ms: i64) -> Result<usize> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM schedule_runs WHERE due_ms < $1 AND (done_ms IS NOT NULL OR due_ms < $1 - $2)",
                    &[&before_ms, &sluice_store::UNFINISHED_KEPT_MS],
                )
                .map_err(db)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
