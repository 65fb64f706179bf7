//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use crate::{Result, StoreError};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: tenants, credentials, upload events
    "CREATE TABLE tenants (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        folders TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE tenant_keys (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        algorithm TEXT NOT NULL,
        key_base64 TEXT NOT NULL,
        comment TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        UNIQUE (tenant_id, key_base64)
    );
    CREATE TABLE upload_events (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        consumed_ms INTEGER
    );
    CREATE INDEX upload_events_pending ON upload_events (consumed_ms, id);",
    // 2: imports, their errors, and the records they load
    "CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        file_name TEXT NOT NULL,
        source TEXT NOT NULL,
        upload_id INTEGER,
        status TEXT NOT NULL,
        encoding TEXT,
        rows INTEGER NOT NULL DEFAULT 0,
        added INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        unchanged INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        message TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        held_file TEXT,
        report_file TEXT,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER
    );
    CREATE INDEX imports_by_tenant ON imports (tenant_id, id);
    CREATE TABLE import_errors (
        import_id INTEGER NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        line INTEGER NOT NULL,
        column_name TEXT NOT NULL,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (import_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE records (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        hash INTEGER NOT NULL,
        created_import INTEGER NOT NULL,
        updated_import INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
    ) WITHOUT ROWID;
    ALTER TABLE upload_events ADD COLUMN lease_until_ms INTEGER;
    ALTER TABLE upload_events ADD COLUMN import_id INTEGER;",
    // 3: when a tenant's uploads are imported
    "ALTER TABLE tenants ADD COLUMN trigger TEXT NOT NULL DEFAULT 'on_upload';",
    // 4: the line a record came from in the import that last wrote it
    "ALTER TABLE records ADD COLUMN line INTEGER;",
    // 5: scheduled imports
    "ALTER TABLE tenants ADD COLUMN schedule TEXT;
     ALTER TABLE tenants ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';",
    // 6: per-type trigger overrides, `type=trigger` pairs separated by commas
    "ALTER TABLE tenants ADD COLUMN type_triggers TEXT NOT NULL DEFAULT '';",
    // 7: per-type safeguard settings, `TYPE.LIMIT=PERCENT` pairs separated by commas
    "ALTER TABLE tenants ADD COLUMN safeguards TEXT NOT NULL DEFAULT '';",
    // 8: people and the records that are their roles
    "CREATE TABLE people (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        email TEXT NOT NULL,
        phone TEXT NOT NULL
    );
    CREATE INDEX people_by_contact ON people (tenant_id, last_name, first_name, email, phone);
    CREATE TABLE person_roles (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        key TEXT NOT NULL,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        source_id TEXT NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
    ) WITHOUT ROWID;
    CREATE INDEX person_roles_by_person ON person_roles (person_id);
    CREATE INDEX person_roles_by_source ON person_roles (tenant_id, role, source_id);",
    // 9: a package record marked tobedeleted (mirrors its JSON status, for counting without
    // parsing every record)
    "ALTER TABLE records ADD COLUMN inactive INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX records_by_state ON records (tenant_id, type, inactive);",
    // 10: API keys (a SHA-256 of each token; tenant_id NULL: the operator's)
    "CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );",
    // 11: dashboard accounts and sessions
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER REFERENCES tenants(id) ON DELETE CASCADE,
        email TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'owner', 'user')),
        manages INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 12: notifications: a tenant's recipients and webhook, and the delivery log
    "ALTER TABLE tenants ADD COLUMN notify_emails TEXT NOT NULL DEFAULT '';
     ALTER TABLE tenants ADD COLUMN webhook_url TEXT NOT NULL DEFAULT '';
     ALTER TABLE tenants ADD COLUMN webhook_secret TEXT NOT NULL DEFAULT '';
     CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        import_id INTEGER NOT NULL,
        channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
        target TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL,
        last_error TEXT,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER
     );
     CREATE INDEX deliveries_due ON deliveries (status, next_ms);",
    // 13: an upload event queued by a sync: imported whatever the trigger, by whichever
    // process claims it
    "ALTER TABLE upload_events ADD COLUMN requested INTEGER NOT NULL DEFAULT 0;",
    // 14: who approved or discarded a held import, and when
    "ALTER TABLE imports ADD COLUMN decided_by TEXT;
     ALTER TABLE imports ADD COLUMN decided_ms INTEGER;",
    // 15: the `.done` manifest (its upload event) that an import of a listed file belongs to
    "ALTER TABLE imports ADD COLUMN manifest_upload INTEGER;
     CREATE INDEX imports_by_manifest ON imports (manifest_upload) WHERE manifest_upload IS NOT NULL;",
    // 16: an upload that repeated an earlier one's bytes (a client's retry) and was not
    // imported again; the earlier uploads of a file are found by path
    "ALTER TABLE upload_events ADD COLUMN duplicate_of INTEGER;
     CREATE INDEX upload_events_by_path ON upload_events (tenant_id, path, id);",
    // 17: the defender's bans (an IPv4 address or an IPv6 /64 each): in force until
    // `banned_until_ms`, then remembered to lengthen the next one; scores stay in memory
    "CREATE TABLE bans (
        source TEXT PRIMARY KEY,
        banned_until_ms INTEGER NOT NULL,
        ban_count INTEGER NOT NULL,
        reason TEXT NOT NULL,
        banned_at_ms INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 18 (realfiles): how a tenant's files are read (strictness, delimiters per type), the
    // delimiter an import read its file with, and the record each stored error belongs to
    // (its key and name, so a data manager finds it without the original file)
    "ALTER TABLE tenants ADD COLUMN read_settings TEXT NOT NULL DEFAULT '';
     ALTER TABLE imports ADD COLUMN delimiter TEXT;
     ALTER TABLE import_errors ADD COLUMN record_key TEXT NOT NULL DEFAULT '';
     ALTER TABLE import_errors ADD COLUMN record_name TEXT NOT NULL DEFAULT '';",
    // 19: a held import a newer applied import of its type superseded (it can no longer be
    // approved; its file is kept), and the record types a package import carries (a package
    // supersedes held packages that carry any of the same files)
    "ALTER TABLE imports ADD COLUMN superseded_by INTEGER;
     ALTER TABLE imports ADD COLUMN record_types TEXT;",
    // 20: OneRoster users' and user profiles' passwords are no longer stored: remove those an
    // older version kept (the next import of each record then counts it as updated once)
    "UPDATE records SET data = json_remove(data, '$.password')
     WHERE type IN ('oneroster.users', 'oneroster.userProfiles') AND json_type(data, '$.password') IS NOT NULL;",
    // 21: saved exports (a tenant's export definitions by name; `seen_import`: the newest
    // applied import of its type an after-import export has answered) and the log of their runs
    "CREATE TABLE saved_exports (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('csv', 'xlsx')),
        columns TEXT NOT NULL,
        filters TEXT NOT NULL,
        bom INTEGER NOT NULL,
        run_when TEXT NOT NULL,
        seen_import INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, name)
     );
     CREATE UNIQUE INDEX saved_exports_by_lower_name ON saved_exports (tenant_id, lower(name));
     CREATE TABLE export_runs (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        export TEXT NOT NULL,
        cause TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        status TEXT NOT NULL CHECK (status IN ('running', 'written', 'failed')),
        rows INTEGER,
        bytes INTEGER,
        destination TEXT,
        error TEXT
     );
     CREATE INDEX export_runs_by_tenant ON export_runs (tenant_id, id);
     CREATE INDEX imports_by_type ON imports (tenant_id, type, id);",
    // 22: a notification tells of an import or of a saved export's failed run (exactly one)
    "CREATE TABLE deliveries_22 (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        import_id INTEGER,
        export_run INTEGER,
        channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
        target TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL,
        last_error TEXT,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        CHECK ((import_id IS NULL) <> (export_run IS NULL))
     );
     INSERT INTO deliveries_22 (id, tenant_id, import_id, channel, target, status, attempts, next_ms, last_error,
        created_ms, finished_ms)
     SELECT id, tenant_id, import_id, channel, target, status, attempts, next_ms, last_error, created_ms, finished_ms
     FROM deliveries;
     DROP TABLE deliveries;
     ALTER TABLE deliveries_22 RENAME TO deliveries;
     CREATE INDEX deliveries_due ON deliveries (status, next_ms);",
    // 23: connectors (a tenant's own SFTP servers: the credential sealed, the host key pinned),
    // the connector a saved export pushes to, and the log of every transfer attempt
    "CREATE TABLE connectors (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        auth TEXT NOT NULL CHECK (auth IN ('password', 'private_key')),
        secret TEXT NOT NULL,
        host_key TEXT,
        rename INTEGER NOT NULL DEFAULT 1,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, name)
     );
     CREATE UNIQUE INDEX connectors_by_lower_name ON connectors (tenant_id, lower(name));
     ALTER TABLE saved_exports ADD COLUMN push_to TEXT;
     CREATE TABLE connector_log (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        connector TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('push', 'pull')),
        file TEXT NOT NULL,
        bytes INTEGER,
        error TEXT
     );
     CREATE INDEX connector_log_by_tenant ON connector_log (tenant_id, id);",
    // 24: connectors that pull (`on_demand` or a cron schedule; what happens to a pulled remote
    // file), and the remote files already pulled (by path, size and time, with their SHA-256),
    // so that none is fetched twice, across restarts
    "ALTER TABLE connectors ADD COLUMN pull TEXT;
     ALTER TABLE connectors ADD COLUMN after_pull TEXT;
     CREATE TABLE pulled (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        connector TEXT NOT NULL,
        remote_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, connector, remote_path, size, mtime)
     ) WITHOUT ROWID;",
    // 25: a saved export that goes to its connector alone, not kept in /exports
    "ALTER TABLE saved_exports ADD COLUMN in_exports INTEGER NOT NULL DEFAULT 1;",
    // 26: records' photos (the image itself is a file named by its SHA-256 in the tenant's
    // image store, DATA_DIR/photos/TENANT/); a record's photo goes with the record
    "CREATE TABLE photos (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        key TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        format TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        import_id INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
     ) WITHOUT ROWID;
     CREATE INDEX photos_by_image ON photos (tenant_id, sha256);
     CREATE TRIGGER photos_of_deleted_records AFTER DELETE ON records BEGIN
        DELETE FROM photos WHERE tenant_id = old.tenant_id AND type = old.type AND key = old.key;
     END;",
    // 27: where a tenant's uploads go: `folders`, `root` (by required file name) or `both`
    "ALTER TABLE tenants ADD COLUMN routing TEXT NOT NULL DEFAULT 'folders';",
    // 28: per-type schedules (`TYPE=CRON` pairs separated by `;`), the settle time, blackout
    // date ranges (`FROM..TO` separated by commas)
    "ALTER TABLE tenants ADD COLUMN type_schedules TEXT NOT NULL DEFAULT '';
     ALTER TABLE tenants ADD COLUMN settle_secs INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE tenants ADD COLUMN blackouts TEXT NOT NULL DEFAULT '';",
    // 29: a saved export may write photos (one image per record): the format's CHECK widened,
    // which SQLite does by rebuilding the table (nothing refers to it)
    "CREATE TABLE saved_exports_29 (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('csv', 'xlsx', 'photos')),
        columns TEXT NOT NULL,
        filters TEXT NOT NULL,
        bom INTEGER NOT NULL,
        run_when TEXT NOT NULL,
        seen_import INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        push_to TEXT,
        in_exports INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (tenant_id, name)
     );
     INSERT INTO saved_exports_29 (tenant_id, name, type, format, columns, filters, bom, run_when, seen_import,
         created_ms, push_to, in_exports)
     SELECT tenant_id, name, type, format, columns, filters, bom, run_when, seen_import, created_ms, push_to, in_exports
     FROM saved_exports;
     DROP TABLE saved_exports;
     ALTER TABLE saved_exports_29 RENAME TO saved_exports;
     CREATE UNIQUE INDEX saved_exports_by_lower_name ON saved_exports (tenant_id, lower(name));",
    // 30: search by key, names and email (folded text, prefix ranges; kept by the
    // loader in each import's transaction; the paths each type was indexed with, so a type
    // whose columns changed, or records from before this migration, are indexed whole at their
    // type's next import: until then only by key), and the tombstones of records deleted by
    // hand (an import that carries the key again says it adds it back)
    "CREATE TABLE record_search (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        key TEXT NOT NULL,
        key_f TEXT NOT NULL,
        first_f TEXT NOT NULL,
        last_f TEXT NOT NULL,
        email_f TEXT NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
     ) WITHOUT ROWID;
     CREATE INDEX record_search_by_key ON record_search (tenant_id, type, key_f);
     CREATE INDEX record_search_by_name ON record_search (tenant_id, type, last_f, first_f);
     CREATE INDEX record_search_by_first ON record_search (tenant_id, type, first_f);
     CREATE INDEX record_search_by_email ON record_search (tenant_id, type, email_f);
     CREATE TABLE record_search_columns (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        paths TEXT NOT NULL,
        PRIMARY KEY (tenant_id, type)
     ) WITHOUT ROWID;
     INSERT INTO record_search (tenant_id, type, key, key_f, first_f, last_f, email_f)
        SELECT tenant_id, type, key, sluice_fold(key), '', '', '' FROM records;
     CREATE TABLE deleted_records (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        key TEXT NOT NULL,
        deleted_ms INTEGER NOT NULL,
        deleted_by TEXT NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
     ) WITHOUT ROWID;",
    // 31: the audit log: who changed what, when, from where (append-only: no row is ever
    // changed; rows older than the retention are purged)
    "CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        tenant TEXT,
        actor_kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        before TEXT,
        after TEXT
     );
     CREATE INDEX audit_log_by_tenant ON audit_log (tenant, id);
     CREATE INDEX audit_log_by_time ON audit_log (at_ms);
     CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE ON audit_log
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_log_keeps_a_day BEFORE DELETE ON audit_log
     WHEN old.at_ms > (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: an entry leaves only after its retention'); END;",
    // 32: a record's previous version (its data before the import that last changed it, and
    // the import that had written that): the record page shows what changed
    "ALTER TABLE records ADD COLUMN previous_data TEXT;
     ALTER TABLE records ADD COLUMN previous_import INTEGER;",
    // 33: a failed or incomplete import acknowledged (looked at): by whom, when
    "ALTER TABLE imports ADD COLUMN acknowledged_by TEXT;
     ALTER TABLE imports ADD COLUMN acknowledged_ms INTEGER;",
    // 34: an API key's scope: read-only or read and write, and the import types it reaches
    // (comma-separated; empty: all)
    "ALTER TABLE api_keys ADD COLUMN access TEXT NOT NULL DEFAULT 'write' CHECK (access IN ('read', 'write'));
     ALTER TABLE api_keys ADD COLUMN types TEXT NOT NULL DEFAULT '';",
    // 35: password resets by email: each link's token kept only as its SHA-256, single-use,
    // expiring
    "CREATE TABLE password_resets (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        expires_ms INTEGER NOT NULL,
        used_ms INTEGER
     ) WITHOUT ROWID;",
    // 36: a second factor (TOTP): the account's secret sealed, one being enrolled, the last
    // step used (a code works once); recovery codes kept hashed; a session that has the
    // password but not yet the second factor is pending, its wrong codes counted
    "ALTER TABLE users ADD COLUMN totp_sealed TEXT;
     ALTER TABLE users ADD COLUMN totp_pending TEXT;
     ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
     ALTER TABLE sessions ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE recovery_codes (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_ms INTEGER,
        PRIMARY KEY (user_id, code_hash)
     ) WITHOUT ROWID;",
    // 37: an upload's own bytes, kept from its close until it is imported (a newer upload of
    // the same name may replace the file in the folder first)
    "ALTER TABLE upload_events ADD COLUMN snapshot TEXT;",
    // 38: a notifier claims the deliveries it sends (several nodes, one queue)
    "ALTER TABLE deliveries ADD COLUMN lease_until_ms INTEGER;",
    // 39: each scheduled run taken once per due time (several servers, one store)
    "CREATE TABLE schedule_runs (
        key TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        claimed_ms INTEGER NOT NULL,
        PRIMARY KEY (key, due_ms)
     ) WITHOUT ROWID;",
    // 40: the process running an export run (servers sharing the store each sweep their own)
    "ALTER TABLE export_runs ADD COLUMN owner TEXT;",
    // 41: a scheduled run is done when its process finished it; one whose process ended
    // before that is taken over (runs claimed before this are taken as done)
    "ALTER TABLE schedule_runs ADD COLUMN owner TEXT;
     ALTER TABLE schedule_runs ADD COLUMN done_ms INTEGER;
     UPDATE schedule_runs SET done_ms = claimed_ms;
     CREATE INDEX schedule_runs_unfinished ON schedule_runs (key) WHERE done_ms IS NULL;",
    // 42: what each node's defender saw, for the others sharing the store to count (a minute's
    // worth, by the database's clock; written only by nodes on PostgreSQL, here so that both
    // stores have the same tables)
    "CREATE TABLE defender_happenings (
        id INTEGER PRIMARY KEY,
        node TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        service TEXT NOT NULL,
        what TEXT NOT NULL,
        account TEXT,
        count INTEGER NOT NULL,
        written_ms INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
     );
     CREATE INDEX defender_happenings_by_time ON defender_happenings (written_ms);",
    // 43: the records' state in two indexes that a change of state touches less: every key
    // (for counting a type without reading the records' data), which marking a record
    // inactive leaves alone, and the inactive records only (few, side by side), instead of one
    // index of every record by state, in which each record marked moved from one end to the
    // other (thousands of scattered pages written by a delta of a few thousand rows)
    "CREATE INDEX records_keys ON records (tenant_id, type, key);
     CREATE INDEX records_inactive ON records (tenant_id, type, key) WHERE inactive = 1;
     DROP INDEX records_by_state;",
    // 44: the column order each CSV type's records are stored in (a JSON array of names), so
    // that a type whose columns change has its records rewritten in the new order
    // (`Records::settle_layouts`)
    "CREATE TABLE type_layouts (type TEXT PRIMARY KEY, columns TEXT NOT NULL) WITHOUT ROWID;",
];

pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    migrate_up_to(conn, MIGRATIONS.len())
}

/// Applies the migrations after the store's version up to `version` (all of them: the store's
/// own; fewer: a test's store as an earlier build left it).
pub(crate) fn migrate_up_to(conn: &Connection, version: usize) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew { found: current, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version).skip(current as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
