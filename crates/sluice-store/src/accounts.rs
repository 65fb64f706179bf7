//! Dashboard accounts and their sessions. The operator's admin has no tenant; tenant users
//! are an `owner` or a `user` (a user may be granted what owners may do). Passwords are
//! argon2id PHC strings; session tokens, like API keys, are stored only as a SHA-256.

use crate::{Account, Role, SecondFactor};
use crate::{Result, Store, StoreError, now_ms};
use rusqlite::{OptionalExtension, params};

/// As for API keys: an account whose tenant row is gone matches nothing.
const ACCOUNT_SELECT: &str =
    "SELECT u.id, t.name, u.email, u.role, u.manages, u.password_hash, u.totp_sealed IS NOT NULL
    FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE (u.tenant_id IS NULL OR t.id IS NOT NULL)";

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let role: String = r.get(3)?;
    Ok(Account {
        id: r.get(0)?,
        tenant: r.get(1)?,
        email: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::User),
        manages: r.get(4)?,
        password_hash: r.get(5)?,
        second_factor: r.get(6)?,
    })
}

/// Replaces an account's recovery codes (hashed) in `tx`.
fn put_recovery_codes(tx: &rusqlite::Transaction<'_>, account: i64, hashes: &[String]) -> Result<()> {
    tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [account])?;
    for hash in hashes {
        tx.execute(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
            params![account, hash],
        )?;
    }
    Ok(())
}

impl crate::roles::Accounts for Store {
    fn add_account(&self, tenant: Option<&str>, email: &str, role: Role, password_hash: &str) -> Result<i64> {
        self.with(|c| {
            let tenant_id = tenant.map(|t| crate::tenant_id(c, t)).transpose()?;
            let inserted = c.execute(
                "INSERT INTO users (tenant_id, email, role, manages, password_hash, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (email) DO NOTHING",
                params![tenant_id, email, role.as_str(), role != Role::User, password_hash, now_ms()],
            )?;
            if inserted == 0 {
                return Err(StoreError::AccountExists(email.to_owned()));
            }
            Ok(c.last_insert_rowid())
        })
    }

    fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        self.with(|c| {
            Ok(c.query_row(&format!("{ACCOUNT_SELECT} AND u.email = ?1"), [email], account_row).optional()?)
        })
    }

    fn accounts(&self, tenant: Option<&str>) -> Result<Vec<Account>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{ACCOUNT_SELECT} AND ((?1 IS NULL AND u.tenant_id IS NULL) OR t.name = ?1) ORDER BY u.email"
            ))?;
            let rows = stmt.query_map([tenant], account_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn set_account_password(&self, email: &str, password_hash: &str) -> Result<()> {
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE users SET password_hash = ?2 WHERE email = ?1",
                params![email, password_hash],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchAccount(email.to_owned()));
            }
            // A reset link asked for before no longer sets a password over this one.
            tx.execute(
                "DELETE FROM password_resets WHERE user_id = (SELECT id FROM users WHERE email = ?1)",
                [email],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn set_account_manages(&self, email: &str, manages: bool) -> Result<()> {
        self.with(|c| {
            match c.execute(
                "UPDATE users SET manages = ?2 WHERE email = ?1 AND tenant_id IS NOT NULL",
                params![email, manages],
            )? {
                0 => Err(StoreError::NoSuchAccount(email.to_owned())),
                _ => Ok(()),
            }
        })
    }

    fn set_account_role(&self, email: &str, role: Role) -> Result<()> {
        // A tenant's account only (the operator's admin has no tenant and stays as it is);
        // an owner manages, a user made of an owner no longer does until granted again.
        let changed = self.with_write(|c| {
            Ok(c.execute(
                "UPDATE users SET role = ?2, manages = ?3 WHERE email = ?1 AND tenant_id IS NOT NULL",
                params![email, role.as_str(), role == Role::Owner],
            )?)
        })?;
        if changed == 0 {
            return Err(StoreError::NoSuchAccount(email.to_owned()));
        }
        Ok(())
    }

    fn create_session(&self, account: i64, token_hash: &str, csrf: &str, lifetime_ms: i64) -> Result<()> {
        self.insert_session(account, token_hash, csrf, lifetime_ms, false)
    }

    fn session(&self, token_hash: &str) -> Result<Option<(Account, String)>> {
        Ok(self.session_row(token_hash, false)?.map(|(a, csrf, _)| (a, csrf)))
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
        self.with_write(|c| {
            let taken = c.execute(
                "UPDATE sessions SET tries = tries + 1 WHERE token_hash = ?1 AND pending = 1 AND tries < ?2",
                params![token_hash, max],
            )?;
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
        self.with_write(|c| {
            let now = now_ms();
            // A new token: a pending cookie someone planted does not become a session.
            let done = c.execute(
                "UPDATE sessions SET token_hash = ?4, csrf = ?5, pending = 0, tries = 0, created_ms = ?2, expires_ms = ?3
                 WHERE token_hash = ?1 AND pending = 1 AND expires_ms > ?2",
                params![token_hash, now, now + lifetime_ms, new_token_hash, new_csrf],
            )?;
            Ok(done == 1)
        })
    }

    fn second_factor(&self, account: i64) -> Result<SecondFactor> {
        self.with(|c| {
            let found = c
                .query_row(
                    "SELECT totp_sealed, totp_pending, totp_last_step,
                        (SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_ms IS NULL)
                     FROM users WHERE id = ?1",
                    [account],
                    |r| {
                        Ok(SecondFactor {
                            sealed: r.get(0)?,
                            pending: r.get(1)?,
                            last_step: r.get(2)?,
                            recovery_codes_left: r.get(3)?,
                        })
                    },
                )
                .optional()?;
            Ok(found.unwrap_or_default())
        })
    }

    fn start_second_factor(&self, account: i64, sealed: &str) -> Result<()> {
        self.with_write(|c| {
            c.execute("UPDATE users SET totp_pending = ?2 WHERE id = ?1", params![account, sealed])?;
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
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Only the secret the page showed (one enrolled meanwhile in another tab is not
            // switched on by this tab's code), and never over one that is on: replacing a
            // second factor takes switching it off first (the password and a code).
            let moved = tx.execute(
                "UPDATE users SET totp_sealed = totp_pending, totp_pending = NULL, totp_last_step = ?3
                 WHERE id = ?1 AND totp_pending = ?2 AND totp_sealed IS NULL",
                params![account, pending, step],
            )?;
            if moved == 0 {
                return Ok(false);
            }
            put_recovery_codes(&tx, account, recovery_hashes)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn disable_second_factor(&self, email: &str) -> Result<bool> {
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE users SET totp_sealed = NULL, totp_pending = NULL, totp_last_step = NULL
                 WHERE email = ?1 AND totp_sealed IS NOT NULL",
                [email],
            )?;
            tx.execute(
                "DELETE FROM recovery_codes WHERE user_id = (SELECT id FROM users WHERE email = ?1)",
                [email],
            )?;
            tx.commit()?;
            Ok(changed == 1)
        })
    }

    fn use_second_factor_step(&self, account: i64, step: i64) -> Result<bool> {
        self.with_write(|c| {
            let used = c.execute(
                "UPDATE users SET totp_last_step = ?2
                 WHERE id = ?1 AND totp_sealed IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                params![account, step],
            )?;
            Ok(used == 1)
        })
    }

    fn replace_recovery_codes(&self, account: i64, hashes: &[String]) -> Result<bool> {
        self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let on: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1 AND totp_sealed IS NOT NULL)",
                [account],
                |r| r.get(0),
            )?;
            if !on {
                return Ok(false);
            }
            put_recovery_codes(&tx, account, hashes)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn use_recovery_code(&self, account: i64, code_hash: &str) -> Result<bool> {
        self.with_write(|c| {
            let used = c.execute(
                "UPDATE recovery_codes SET used_ms = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_ms IS NULL",
                params![account, code_hash, now_ms()],
            )?;
            Ok(used == 1)
        })
    }

    fn any_second_factor(&self) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE totp_sealed IS NOT NULL OR totp_pending IS NOT NULL)",
                [],
                |r| r.get(0),
            )?)
        })
    }

    fn end_session(&self, token_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
            Ok(())
        })
    }

    fn end_sessions_of(&self, email: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = ?1)",
                [email],
            )?;
            Ok(())
        })
    }

    fn start_password_reset(
        &self,
        email: &str,
        token_hash: &str,
        lifetime_ms: i64,
    ) -> Result<Option<Account>> {
        let Some(account) = self.account_by_email(email)? else { return Ok(None) };
        let kept = self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Spent and expired links go as new ones come.
            tx.execute(
                "DELETE FROM password_resets WHERE expires_ms < ?1 OR used_ms IS NOT NULL",
                [now_ms()],
            )?;
            let live: i64 =
                tx.query_row("SELECT count(*) FROM password_resets WHERE user_id = ?1", [account.id], |r| {
                    r.get(0)
                })?;
            if live >= crate::roles::MAX_LIVE_RESETS {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO password_resets (token_hash, user_id, expires_ms) VALUES (?1, ?2, ?3)",
                params![token_hash, account.id, now_ms() + lifetime_ms],
            )?;
            tx.commit()?;
            Ok(true)
        })?;
        Ok(kept.then_some(account))
    }

    fn password_reset_is_live(&self, token_hash: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM password_resets WHERE token_hash = ?1 AND used_ms IS NULL AND expires_ms >= ?2)",
                params![token_hash, now_ms()],
                |r| r.get(0),
            )?)
        })
    }

    fn finish_password_reset(&self, token_hash: &str, password_hash: &str) -> Result<Option<Account>> {
        let email: Option<String> = self.with_write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let user: Option<(i64, String)> = tx
                .query_row(
                    "SELECT u.id, u.email FROM password_resets r JOIN users u ON u.id = r.user_id
                     WHERE r.token_hash = ?1 AND r.used_ms IS NULL AND r.expires_ms >= ?2",
                    params![token_hash, now_ms()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((id, email)) = user else { return Ok(None) };
            // Every link of the account is spent with this one: an older one cannot set the
            // password again.
            tx.execute("UPDATE password_resets SET used_ms = ?2 WHERE user_id = ?1", params![id, now_ms()])?;
            tx.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id, password_hash])?;
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
            tx.commit()?;
            Ok(Some(email))
        })?;
        match email {
            Some(e) => self.account_by_email(&e),
            None => Ok(None),
        }
    }

    fn remove_account(&self, email: &str) -> Result<()> {
        self.with_write(|c| {
            // Its sessions go with it (ON DELETE CASCADE): a removed user is logged out at once.
            if c.execute("DELETE FROM users WHERE email = ?1", [email])? == 0 {
                return Err(crate::StoreError::NoSuchAccount(email.to_owned()));
            }
            Ok(())
        })
    }
}

impl Store {
    fn insert_session(
        &self,
        account: i64,
        token_hash: &str,
        csrf: &str,
        lifetime_ms: i64,
        pending: bool,
    ) -> Result<()> {
        self.with_write(|c| {
            let now = now_ms();
            c.execute("DELETE FROM sessions WHERE expires_ms < ?1", [now])?;
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms, pending)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![token_hash, account, csrf, now, now + lifetime_ms, pending],
            )?;
            Ok(())
        })
    }

    /// A live session: full ones, or ones waiting for their second factor (with their tries).
    fn session_row(&self, token_hash: &str, pending: bool) -> Result<Option<(Account, String, i64)>> {
        self.with(|c| {
            let sql =
                "SELECT u.id, t.name, u.email, u.role, u.manages, u.password_hash, u.totp_sealed IS NOT NULL,
                    s.csrf, s.tries
                FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN tenants t ON t.id = u.tenant_id
                WHERE s.token_hash = ?1 AND s.expires_ms > ?2 AND s.pending = ?3
                  AND (u.tenant_id IS NULL OR t.id IS NOT NULL)";
            Ok(c.query_row(sql, params![token_hash, now_ms(), pending], |r| {
                Ok((account_row(r)?, r.get::<_, String>(7)?, r.get::<_, i64>(8)?))
            })
            .optional()?)
        })
    }
}
