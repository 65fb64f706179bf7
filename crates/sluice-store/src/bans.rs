//! The defender's bans, so that they survive a restart and so that `sluice defender list` and
//! `unban` (another process) see and lift the running server's bans. One row per source: the
//! current ban, or the last one while the defender remembers it to lengthen the next.

use crate::{Result, Store, StoreError};
use rusqlite::params;
use sluice_core::defender::{Ban, Happening, Service, What};
use sluice_core::net::Source;

impl crate::roles::Bans for Store {
    fn save_ban(&self, ban: &Ban) -> Result<bool> {
        self.with_write(|c| {
            let written = c
                .prepare_cached(
                    "INSERT INTO bans (source, banned_until_ms, ban_count, reason, banned_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (source) DO UPDATE SET banned_until_ms = excluded.banned_until_ms,
                        ban_count = excluded.ban_count, reason = excluded.reason, banned_at_ms = excluded.banned_at_ms
                     WHERE bans.banned_until_ms <= excluded.banned_at_ms",
                )?
                .execute(params![ban.source.to_string(), ban.until_ms, ban.count, ban.reason, ban.at_ms])?;
            Ok(written > 0)
        })
    }

    fn bans(&self, after_ms: i64) -> Result<Vec<Ban>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT source, banned_until_ms, ban_count, reason, banned_at_ms FROM bans
                 WHERE banned_until_ms > ?1 ORDER BY banned_until_ms DESC, source",
            )?;
            let rows = stmt.query_map([after_ms], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            let mut bans = Vec::new();
            for row in rows {
                let (source, until_ms, count, reason, at_ms) = row?;
                let source: Source =
                    source.parse().map_err(|e| StoreError::Corrupt(format!("bans.source: {e}")))?;
                bans.push(Ban { source, at_ms, until_ms, count, score: 0, reason });
            }
            Ok(bans)
        })
    }

    fn lift_ban(&self, source: &Source, now_ms: i64) -> Result<bool> {
        self.with_write(|c| {
            let in_force = c.query_row(
                "SELECT count(*) FROM bans WHERE source = ?1 AND banned_until_ms > ?2",
                params![source.to_string(), now_ms],
                |r| r.get::<_, i64>(0),
            )? > 0;
            c.execute("DELETE FROM bans WHERE source = ?1", [source.to_string()])?;
            Ok(in_force)
        })
    }

    fn forget_bans(&self, until_ms: i64) -> Result<usize> {
        self.with_write(|c| Ok(c.execute("DELETE FROM bans WHERE banned_until_ms <= ?1", [until_ms])?))
    }

    fn bans_in_force(&self, now_ms: i64) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c
                .prepare_cached("SELECT count(*) FROM bans WHERE banned_until_ms > ?1")?
                .query_row([now_ms], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn share_happenings(&self, node: &str, happenings: &[Happening]) -> Result<()> {
        if happenings.is_empty() {
            return Ok(());
        }
        self.with_write(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO defender_happenings (node, at_ms, source, service, what, account, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for h in happenings {
                    let (what, account) = h.what.as_parts();
                    let (source, account) = (h.source.to_string(), account.map(storable));
                    insert.execute(params![
                        node,
                        h.at_ms,
                        source,
                        h.service.as_str(),
                        what,
                        account,
                        h.count
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn happenings_after(
        &self,
        after: i64,
        node: &str,
        limit: usize,
    ) -> Result<Vec<(i64, Option<Happening>)>> {
        self.with(|c| {
            let mut q = c.prepare_cached(
                "SELECT id, at_ms, source, service, what, account, count FROM defender_happenings
                 WHERE id > ?1 AND node <> ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = q.query_map(params![after, node, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })?;
            let mut read = Vec::new();
            for row in rows {
                let (id, at_ms, source, service, what, account, count): (
                    i64,
                    i64,
                    String,
                    String,
                    String,
                    _,
                    i64,
                ) = row?;
                read.push((id, happening(at_ms, &source, &service, &what, account, count)));
            }
            Ok(read)
        })
    }

    fn forget_happenings(&self, kept_ms: i64) -> Result<usize> {
        self.with_write(|c| {
            Ok(c.execute(
                "DELETE FROM defender_happenings WHERE written_ms < CAST(unixepoch('subsec') * 1000 AS INTEGER) - ?1",
                [kept_ms],
            )?)
        })
    }
}

/// A row of `defender_happenings`, as both stores read it: `None` when this build does not
/// know what it says.
pub fn happening(
    at_ms: i64,
    source: &str,
    service: &str,
    what: &str,
    account: Option<String>,
    count: i64,
) -> Option<Happening> {
    Some(Happening {
        at_ms,
        source: source.parse().ok()?,
        service: Service::parse(service)?,
        what: What::from_parts(what, account)?,
        count: u32::try_from(count.max(1)).unwrap_or(u32::MAX),
    })
}

/// An account name as both stores keep it: a NUL (which PostgreSQL's text cannot hold) is
/// U+FFFD.
pub fn storable(account: &str) -> String {
    account.replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bans;

    fn ban(source: &str, at_ms: i64, until_ms: i64, count: u32) -> Ban {
        Ban {
            source: source.parse().unwrap(),
            at_ms,
            until_ms,
            count,
            score: 0,
            reason: "sftp: failed login".into(),
        }
    }

    #[test]
    fn bans_persist_across_opening_and_a_lift_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            s.save_ban(&ban("203.0.113.9", 1000, 10_000, 1)).unwrap();
            s.save_ban(&ban("2001:db8:0:7::/64", 1000, 20_000, 3)).unwrap();
            s.save_ban(&ban("198.51.100.1", 0, 500, 1)).unwrap();
            // A source banned again: its row is replaced.
            s.save_ban(&ban("203.0.113.9", 11_000, 40_000, 2)).unwrap();
        }
        // Another process (the CLI) sees what the server saved.
        let s = Store::open(&path).unwrap();
        let now = 5000;
        let in_force = s.bans(now).unwrap();
        assert_eq!(
            in_force,
            vec![ban("203.0.113.9", 11_000, 40_000, 2), ban("2001:db8:0:7::/64", 1000, 20_000, 3)]
        );
        assert_eq!(s.bans_in_force(now).unwrap(), 2);
        assert_eq!(s.bans(0).unwrap().len(), 3, "the ended one is remembered");
        assert!(s.lift_ban(&"2001:db8:0:7::1".parse().unwrap(), now).unwrap(), "any address of the /64");
        assert!(!s.lift_ban(&"198.51.100.1".parse().unwrap(), now).unwrap(), "ended: nothing in force");
        assert!(!s.lift_ban(&"192.0.2.1".parse().unwrap(), now).unwrap());
        assert_eq!(s.bans(0).unwrap(), vec![ban("203.0.113.9", 11_000, 40_000, 2)]);
        s.save_ban(&ban("198.51.100.1", 0, 500, 1)).unwrap();
        assert_eq!(s.forget_bans(500).unwrap(), 1);
        assert_eq!(s.bans(0).unwrap().len(), 1);
    }

    #[test]
    fn a_row_this_build_cannot_read_is_passed_over_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.with_write(|c| {
            c.execute_batch(
                "INSERT INTO defender_happenings (node, at_ms, source, service, what, account, count)
                 VALUES ('newer', 1, '192.0.2.1', 'sftp', 'guessed_a_second_factor', 'sftp:acme', 1),
                        ('newer', 2, '192.0.2.1', 'sftp', 'protocol_error', NULL, 3)",
            )?;
            Ok(())
        })
        .unwrap();
        let read = s.happenings_after(0, "here", 10).unwrap();
        assert_eq!(read.len(), 2, "both numbers, so that the reader goes on past them");
        assert!(read[0].1.is_none());
        assert_eq!(read[1].1.as_ref().map(|h| h.count), Some(3));
    }
}
