//! Dashboard accounts and their sessions on PostgreSQL, as `sluice-store`'s `accounts.rs`
//! keeps them on SQLite. Where SQLite's write lock made a read-then-write safe, the account's
//! row is locked here (`FOR UPDATE`), so two nodes answering the same person at once cannot
//! both pass a check that only one may pass (a fourth live reset link, a recovery code set
//! over a second factor switched off meanwhile).

use crate::{PgStore, db, tenant_id};
use postgres::Row;
use sluice_store::roles::MAX_LIVE_RESETS;
use sluice_store::{Account, Accounts, Result, Role, SecondFactor, StoreError, now_ms};

/// As on SQLite: an account whose tenant row is gone matches nothing.
const ACCOUNT_SELECT: &str =
    "SELECT u.id, t.name, u.email, u.role, u.manages, u.password_hash, u.totp_sealed IS NOT NULL
    FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE (u.tenant_id IS NULL OR t.id IS NOT NULL)";

fn account(r: &Row) -> Account {
    Account {
        id: r.get(0),
        tenant: r.get(1),
        email: r.get(2),
        role: Role::parse(r.get(3)).unwrap_or(Role::User),
        manages: r.get(4),
        password_hash: r.get(5),
        second_factor: r.get(6),
    }
}

impl PgStore {
    fn insert_session(
        &self,
        account: i64,
        token_hash: &str,
        csrf: &str,
        lifetime_ms: i64,
        pending: bool,
    ) -> Result<()> {
        self.with(|c| {
            let now = now_ms();
            c.execute("DELETE FROM sessions WHERE expires_ms < $1", &[&now]).map_err(db)?;
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms, pending)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&token_hash, &account, &csrf, &now, &now.saturating_add(lifetime_ms), &pending],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    /// A live session: full ones, or ones waiting for their second factor (with their tries).
    fn session_row(&self, token_hash: &str, pending: bool) -> Result<Option<(Account, String, i64)>> {
        self.with(|c| {
            let row = c
                .query_opt(
                    "SELECT u.id, t.name, u.email, u.role, u.manages, u.password_hash, u.totp_sealed IS NOT NULL,
                        s.csrf, s.tries
                     FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN tenants t ON t.id = u.tenant_id
                     WHERE s.token_hash = $1 AND s.expires_ms > $2 AND s.pending = $3
                       AND (u.tenant_id IS NULL OR t.id IS NOT NULL)",
                    &[&token_hash, &now_ms(), &pending],
                )
                .map_err(db)?;
            Ok(row.map(|r| (account(&r), r.get(7), r.get(8))))
        })
    }

    /// Replaces an account's recovery codes in `tx`.
    fn put_recovery_codes(tx: &mut postgres::Transaction<'_>, account: i64, hashes: &[String]) -> Result<()> {
        tx.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&account]).map_err(db)?;
        for hash in hashes {
            tx.execute("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)", &[&account, hash])
                .map_err(db)?;
        }
        Ok(())
    }
}

impl Accounts for PgStore {
    fn add_account(&self, tenant: Option<&str>, email: &str, role: Role, password_hash: &str) -> Result<i64> {
        self.with(|c| {
            let tenant_id = tenant.map(|t| tenant_id(c, t)).transpose()?;
            let row = c
                .query_opt(
                    "INSERT INTO users (tenant_id, email, role, manages, password_hash, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING RETURNING id",
                    &[&tenant_id, &email, &role.as_str(), &(role != Role::User), &password_hash, &now_ms()],
                )
                .map_err(db)?;
            row.map(|r| r.get(0)).ok_or_else(|| StoreError::AccountExists(email.to_owned()))
        })
    }

    fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        self.with(|c| {
            let sql = format!("{ACCOUNT_SELECT} AND u.email = $1");
            Ok(c.query_opt(sql.as_str(), &[&email]).map_err(db)?.as_ref().map(account))
        })
    }

    fn accounts(&self, tenant: Option<&str>) -> Result<Vec<Account>> {
        self.with(|c| {
            let sql = format!(
                "{ACCOUNT_SELECT} AND (($1::text IS NULL AND u.tenant_id IS NULL) OR t.name = $1)
                 ORDER BY u.email COLLATE \"C\""
            );
            Ok(c.query(sql.as_str(), &[&tenant]).map_err(db)?.iter().map(account).collect())
        })
    }

    fn set_account_password(&self, email: &str, password_hash: &str) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let changed = tx
                .execute("UPDATE users SET password_hash = $2 WHERE email = $1", &[&email, &password_hash])
                .map_err(db)?;
            if changed == 0 {
                return Err(StoreError::NoSuchAccount(email.to_owned()));
            }
            // A reset link asked for before no longer sets a password over this one.
            tx.execute(
                "DELETE FROM password_resets WHERE user_id = (SELECT id FROM users WHERE email = $1)",
                &[&email],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }

    fn set_account_manages(&self, email: &str, manages: bool) -> Result<()> {
        self.with(|c| {
            match c
                .execute(
                    "UPDATE users SET manages = $2 WHERE email = $1 AND tenant_id IS NOT NULL",
                    &[&email, &manages],
                )
                .map_err(db)?
            {
                0 => Err(StoreError::NoSuchAccount(email.to_owned())),
                _ => Ok(()),
            }
        })
    }

    fn set_account_role(&self, email: &str, role: Role) -> Result<()> {
        self.with(|c| {
            match c
                .execute(
                    "UPDATE users SET role = $2, manages = $3 WHERE email = $1 AND tenant_id IS NOT NULL",
                    &[&email, &role.as_str(), &(role == Role::Owner)],
                )
                .map_err(db)?
            {
                0 => Err(StoreError::NoSuchAccount(email.to_owned())),
                _ => Ok(()),
            }
        })
    }

    fn create_session(&self, account: i64, token_hash: &str, csrf: &str, lifetime_ms: i64) -> Result<()> {
        self.insert_session(account, token_hash, csrf, lifetime_ms, false)
    }

    fn session(&self, token_hash: &str) -> Result<Option<(Account, String)>> {
        Ok(self.session_row(token_hash, false)?.map(|(a, csrf, _)| (a, csrf)))
    }

    fn end_session(&self, token_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash]).map_err(db)?;
            Ok(())
        })
    }

    fn end_sessions_of(&self, email: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = $1)",
                &[&email],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn remove_account(&self, email: &str) -> Result<()> {
        self.with(|c| {
            // Its sessions go with it (ON DELETE CASCADE): a removed user is logged out at once.
            match c.execute("DELETE FROM users WHERE email = $1", &[&email]).map_err(db)? {
                0 => Err(StoreError::NoSuchAccount(email.to_owned())),
                _ => Ok(()),
            }
        })
    }

    fn start_password_reset(
        &self,
        email: &str,
        token_hash: &str,
        lifetime_ms: i64,
    ) -> Result<Option<Account>> {
        let Some(account) = self.account_by_email(email)? else { return Ok(None) };
        let kept = self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // The account's row first: asks for links of one account take turns across nodes.
            tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&account.id]).map_err(db)?;
            let now = now_ms();
            // Spent and expired links go as new ones come.
            tx.execute("DELETE FROM password_resets WHERE expires_ms < $1 OR used_ms IS NOT NULL", &[&now])
                .map_err(db)?;
            let live: i64 = tx
                .query_one("SELECT count(*) FROM password_resets WHERE user_id = $1", &[&account.id])
                .map_err(db)?
                .get(0);
            if live >= MAX_LIVE_RESETS {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO password_resets (token_hash, user_id, expires_ms) VALUES ($1, $2, $3)",
                &[&token_hash, &account.id, &now.saturating_add(lifetime_ms)],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(true)
        })?;
        Ok(kept.then_some(account))
    }

    fn finish_password_reset(&self, token_hash: &str, password_hash: &str) -> Result<Option<Account>> {
        let email: Option<String> = self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // The account's row first, as every other change of an account takes it (two links
            // of one account used at once, or a link beside a password change, would otherwise
            // lock each other's rows in opposite orders); then the link is read again, in a
            // statement that sees what a change that held the lock before committed.
            let Some(owner) = tx
                .query_opt("SELECT user_id FROM password_resets WHERE token_hash = $1", &[&token_hash])
                .map_err(db)?
            else {
                return Ok(None);
            };
            let owner: i64 = owner.get(0);
            tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&owner]).map_err(db)?;
            let now = now_ms();
            let user = tx
                .query_opt(
                    "SELECT u.id, u.email FROM password_resets r JOIN users u ON u.id = r.user_id
                     WHERE r.token_hash = $1 AND r.used_ms IS NULL AND r.expires_ms >= $2",
                    &[&token_hash, &now],
                )
                .map_err(db)?;
            let Some(user) = user else { return Ok(None) };
            let (id, email): (i64, String) = (user.get(0), user.get(1));
            // Every link of the account is spent with this one.
            tx.execute("UPDATE password_resets SET used_ms = $2 WHERE user_id = $1", &[&id, &now])
                .map_err(db)?;
            tx.execute("UPDATE users SET password_hash = $2 WHERE id = $1", &[&id, &password_hash])
                .map_err(db)?;
            tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&id]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(email))
        })?;
        match email {
            Some(e) => self.account_by_email(&e),
            None => Ok(None),
        }
    }

    fn password_reset_is_live(&self, token_hash: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_one(
                "SELECT EXISTS (SELECT 1 FROM password_resets WHERE token_hash = $1 AND used_ms IS NULL AND expires_ms >= $2)",
                &[&token_hash, &now_ms()],
            )
            .map_err(db)?
            .get(0))
        })
    }

    fn create_pending_session(
        &self,
        account: i64,
        token_hash: &str,
        csrf: &str,
        lifetime_ms: i64,
    ) -> Result<()> {
        self.insert_session(account, token_hash, csrf, lifetime_ms, true)
    }

    fn pending_session(&self, token_hash: &str) -> Result<Option<(Account, String, i64)>> {
        self.session_row(token_hash, true)
    }

    fn take_pending_try(&self, token_hash: &str, max: i64) -> Result<bool> {
        self.with(|c| {
            let taken = c
                .execute(
                    "UPDATE sessions SET tries = tries + 1 WHERE token_hash = $1 AND pending AND tries < $2",
                    &[&token_hash, &max],
                )
                .map_err(db)?;
            Ok(taken == 1)
        })
    }

    fn complete_session(
        &self,
        token_hash: &str,
        new_token_hash: &str,
        new_csrf: &str,
        lifetime_ms: i64,
    ) -> Result<bool> {
        self.with(|c| {
            let now = now_ms();
            // A new token: a pending cookie someone planted does not become a session.
            let done = c
                .execute(
                    "UPDATE sessions SET token_hash = $4, csrf = $5, pending = FALSE, tries = 0, created_ms = $2,
                         expires_ms = $3
                     WHERE token_hash = $1 AND pending AND expires_ms > $2",
                    &[&token_hash, &now, &now.saturating_add(lifetime_ms), &new_token_hash, &new_csrf],
                )
                .map_err(db)?;
            Ok(done == 1)
        })
    }

    fn second_factor(&self, account: i64) -> Result<SecondFactor> {
        self.with(|c| {
            let row = c
                .query_opt(
                    "SELECT totp_sealed, totp_pending, totp_last_step,
                        (SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_ms IS NULL)
                     FROM users WHERE id = $1",
                    &[&account],
                )
                .map_err(db)?;
            Ok(row
                .map(|r| SecondFactor {
                    sealed: r.get(0),
                    pending: r.get(1),
                    last_step: r.get(2),
                    recovery_codes_left: r.get(3),
                })
                .unwrap_or_default())
        })
    }

    fn start_second_factor(&self, account: i64, sealed: &str) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE users SET totp_pending = $2 WHERE id = $1", &[&account, &sealed])
                .map_err(db)?;
            Ok(())
        })
    }

    fn enable_second_factor(
        &self,
        account: i64,
        pending: &str,
        step: i64,
        recovery_hashes: &[String],
    ) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // Only the secret the page showed, and never over one that is on.
            let moved = tx
                .execute(
                    "UPDATE users SET totp_sealed = totp_pending, totp_pending = NULL, totp_last_step = $3
                     WHERE id = $1 AND totp_pending = $2 AND totp_sealed IS NULL",
                    &[&account, &pending, &step],
                )
                .map_err(db)?;
            if moved == 0 {
                return Ok(false);
            }
            Self::put_recovery_codes(&mut tx, account, recovery_hashes)?;
            tx.commit().map_err(db)?;
            Ok(true)
        })
    }

    fn disable_second_factor(&self, email: &str) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let changed = tx
                .execute(
                    "UPDATE users SET totp_sealed = NULL, totp_pending = NULL, totp_last_step = NULL
                     WHERE email = $1 AND totp_sealed IS NOT NULL",
                    &[&email],
                )
                .map_err(db)?;
            tx.execute(
                "DELETE FROM recovery_codes WHERE user_id = (SELECT id FROM users WHERE email = $1)",
                &[&email],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(changed == 1)
        })
    }

    fn use_second_factor_step(&self, account: i64, step: i64) -> Result<bool> {
        self.with(|c| {
            let used = c
                .execute(
                    "UPDATE users SET totp_last_step = $2
                     WHERE id = $1 AND totp_sealed IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $2)",
                    &[&account, &step],
                )
                .map_err(db)?;
            Ok(used == 1)
        })
    }

    fn replace_recovery_codes(&self, account: i64, hashes: &[String]) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // Locked while the codes are replaced: a second factor switched off meanwhile on
            // another node does not get codes back.
            let on = tx
                .query_opt(
                    "SELECT 1 FROM users WHERE id = $1 AND totp_sealed IS NOT NULL FOR UPDATE",
                    &[&account],
                )
                .map_err(db)?
                .is_some();
            if !on {
                return Ok(false);
            }
            Self::put_recovery_codes(&mut tx, account, hashes)?;
            tx.commit().map_err(db)?;
            Ok(true)
        })
    }

    fn use_recovery_code(&self, account: i64, code_hash: &str) -> Result<bool> {
        self.with(|c| {
            let used = c
                .execute(
                    "UPDATE recovery_codes SET used_ms = $3 WHERE user_id = $1 AND code_hash = $2 AND used_ms IS NULL",
                    &[&account, &code_hash, &now_ms()],
                )
                .map_err(db)?;
            Ok(used == 1)
        })
    }

    fn any_second_factor(&self) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_one(
                "SELECT EXISTS (SELECT 1 FROM users WHERE totp_sealed IS NOT NULL OR totp_pending IS NOT NULL)",
                &[],
            )
            .map_err(db)?
            .get(0))
        })
    }
}
