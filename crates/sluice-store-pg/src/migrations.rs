//! The PostgreSQL schema, in order, recorded in `sluice_schema`. Applied on connect from any
//! earlier version in one go (no manual step between releases), in one transaction under a
//! transaction-scoped advisory lock: nodes that start together wait for the first, then find
//! nothing left to do.
//!
//! The tables and columns are those of the SQLite store (`sluice-store/src/migrations.rs`)
//! as they are now, in PostgreSQL's types, so that one row codec (`RawTenant` and the like)
//! reads both; this store starts at its own version 1, not at SQLite's history. Names that
//! lists are ordered by compare as bytes (`COLLATE "C"`), as SQLite's do, whatever locale the
//! database was created with.

use crate::db;
use postgres::Client;
use sluice_store::{Result, StoreError};

/// Any constant shared by every sluice node: the key of the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x736c_7569_6365; // "sluice"

const MIGRATIONS: &[&str] = &[
    // 1: tenants and their SSH keys, the defender's bans, the audit log
    "CREATE TABLE tenants (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT COLLATE \"C\" NOT NULL UNIQUE,
        folders TEXT NOT NULL,
        disabled BOOLEAN NOT NULL DEFAULT FALSE,
        password_hash TEXT,
        created_ms BIGINT NOT NULL,
        trigger TEXT NOT NULL DEFAULT 'on_upload',
        schedule TEXT,
        timezone TEXT NOT NULL DEFAULT 'UTC',
        type_triggers TEXT NOT NULL DEFAULT '',
        safeguards TEXT NOT NULL DEFAULT '',
        notify_emails TEXT NOT NULL DEFAULT '',
        webhook_url TEXT NOT NULL DEFAULT '',
        webhook_secret TEXT NOT NULL DEFAULT '',
        read_settings TEXT NOT NULL DEFAULT '',
        routing TEXT NOT NULL DEFAULT 'folders',
        type_schedules TEXT NOT NULL DEFAULT '',
        settle_secs BIGINT NOT NULL DEFAULT 0,
        blackouts TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE tenant_keys (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        algorithm TEXT NOT NULL,
        key_base64 TEXT NOT NULL,
        comment TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        UNIQUE (tenant_id, key_base64)
    );
    CREATE TABLE bans (
        source TEXT COLLATE \"C\" PRIMARY KEY,
        banned_until_ms BIGINT NOT NULL,
        ban_count BIGINT NOT NULL,
        reason TEXT NOT NULL,
        banned_at_ms BIGINT NOT NULL
    );
    CREATE TABLE audit_log (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at_ms BIGINT NOT NULL,
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
    -- Append-only, as in SQLite: no entry changes, and none leaves before it is a day old.
    CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'the audit log is append-only';
        END IF;
        IF OLD.at_ms > (extract(epoch FROM now())::bigint - 86400) * 1000 THEN
            RAISE EXCEPTION 'the audit log is append-only: an entry leaves only after its retention';
        END IF;
        RETURN OLD;
    END $$;
    CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
    -- TRUNCATE skips row triggers: refused as a whole.
    CREATE FUNCTION audit_log_is_not_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only';
    END $$;
    CREATE TRIGGER audit_log_is_not_truncated BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_not_truncated();",
    // 2: API keys (a SHA-256 of each token; tenant_id NULL: the operator's), with their scope
    "CREATE TABLE api_keys (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_ms BIGINT NOT NULL,
        revoked_ms BIGINT,
        access TEXT NOT NULL DEFAULT 'write' CHECK (access IN ('read', 'write')),
        types TEXT NOT NULL DEFAULT ''
    );",
    // 3: the upload queue (a lease per claim: claimed with FOR UPDATE SKIP LOCKED, so nodes
    // claiming at once each get another event) and the imports it feeds
    "CREATE TABLE upload_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        consumed_ms BIGINT,
        lease_until_ms BIGINT,
        import_id BIGINT,
        requested BOOLEAN NOT NULL DEFAULT FALSE,
        duplicate_of BIGINT
    );
    CREATE INDEX upload_events_pending ON upload_events (id) WHERE consumed_ms IS NULL;
    CREATE INDEX upload_events_by_path ON upload_events (tenant_id, path, id);
    CREATE TABLE imports (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        file_name TEXT NOT NULL,
        source TEXT NOT NULL,
        upload_id BIGINT,
        status TEXT NOT NULL,
        encoding TEXT,
        rows BIGINT NOT NULL DEFAULT 0,
        added BIGINT NOT NULL DEFAULT 0,
        updated BIGINT NOT NULL DEFAULT 0,
        unchanged BIGINT NOT NULL DEFAULT 0,
        deleted BIGINT NOT NULL DEFAULT 0,
        rejected BIGINT NOT NULL DEFAULT 0,
        message TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        held_file TEXT,
        report_file TEXT,
        created_ms BIGINT NOT NULL,
        finished_ms BIGINT,
        decided_by TEXT,
        decided_ms BIGINT,
        manifest_upload BIGINT,
        delimiter TEXT,
        superseded_by BIGINT,
        record_types TEXT,
        acknowledged_by TEXT,
        acknowledged_ms BIGINT
    );
    CREATE INDEX imports_by_tenant ON imports (tenant_id, id);
    CREATE INDEX imports_by_type ON imports (tenant_id, type, id);
    CREATE INDEX imports_by_manifest ON imports (manifest_upload) WHERE manifest_upload IS NOT NULL;",
    // 4: dashboard accounts, their sessions (a SHA-256 of each token; pending: the password
    // given, the second factor not yet), password reset links (hashed), a second factor's
    // recovery codes (hashed)
    "CREATE TABLE users (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT REFERENCES tenants(id) ON DELETE CASCADE,
        email TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'owner', 'user')),
        manages BOOLEAN NOT NULL DEFAULT FALSE,
        password_hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        totp_sealed TEXT,
        totp_pending TEXT,
        totp_last_step BIGINT
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        pending BOOLEAN NOT NULL DEFAULT FALSE,
        tries BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE TABLE password_resets (
        token_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        expires_ms BIGINT NOT NULL,
        used_ms BIGINT
    );
    CREATE INDEX password_resets_by_user ON password_resets (user_id);
    CREATE TABLE recovery_codes (
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_ms BIGINT,
        PRIMARY KEY (user_id, code_hash)
    );",
    // 5: notifications waiting and sent (of an import, or of a saved export's failed run:
    // exactly one); saved exports (unique by tenant and name whatever its case) and the log of
    // their runs; connectors (the credential sealed, the host key pinned; unique as exports'
    // names are), the log of every transfer, and the remote files already pulled. Names are
    // compared and ordered as bytes (COLLATE "C"): lower() then folds ASCII only, as SQLite's.
    "CREATE TABLE deliveries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        import_id BIGINT,
        export_run BIGINT,
        channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
        target TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts BIGINT NOT NULL DEFAULT 0,
        next_ms BIGINT NOT NULL,
        last_error TEXT,
        created_ms BIGINT NOT NULL,
        finished_ms BIGINT,
        CHECK ((import_id IS NULL) <> (export_run IS NULL))
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_ms);
    CREATE TABLE saved_exports (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT COLLATE \"C\" NOT NULL,
        type TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('csv', 'xlsx', 'photos')),
        columns TEXT NOT NULL,
        filters TEXT NOT NULL,
        bom BOOLEAN NOT NULL,
        run_when TEXT NOT NULL,
        seen_import BIGINT NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL,
        push_to TEXT COLLATE \"C\",
        in_exports BOOLEAN NOT NULL DEFAULT TRUE,
        PRIMARY KEY (tenant_id, name)
    );
    CREATE UNIQUE INDEX saved_exports_by_lower_name ON saved_exports (tenant_id, lower(name));
    CREATE TABLE export_runs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        export TEXT COLLATE \"C\" NOT NULL,
        cause TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        finished_ms BIGINT,
        status TEXT NOT NULL CHECK (status IN ('running', 'written', 'failed')),
        rows BIGINT,
        bytes BIGINT,
        destination TEXT,
        error TEXT
    );
    CREATE INDEX export_runs_by_tenant ON export_runs (tenant_id, id);
    CREATE TABLE connectors (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT COLLATE \"C\" NOT NULL,
        address TEXT NOT NULL,
        auth TEXT NOT NULL CHECK (auth IN ('password', 'private_key')),
        secret TEXT NOT NULL,
        host_key TEXT,
        rename BOOLEAN NOT NULL DEFAULT TRUE,
        created_ms BIGINT NOT NULL,
        pull TEXT,
        after_pull TEXT,
        PRIMARY KEY (tenant_id, name)
    );
    CREATE UNIQUE INDEX connectors_by_lower_name ON connectors (tenant_id, lower(name));
    CREATE TABLE connector_log (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        connector TEXT COLLATE \"C\" NOT NULL,
        at_ms BIGINT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('push', 'pull')),
        file TEXT NOT NULL,
        bytes BIGINT,
        error TEXT
    );
    CREATE INDEX connector_log_by_tenant ON connector_log (tenant_id, id);
    CREATE TABLE pulled (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        connector TEXT COLLATE \"C\" NOT NULL,
        remote_path TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, connector, remote_path, size, mtime)
    );",
    // 6: what imports load: their errors, the records (TEXT JSON as written, so that every
    // backend hands back the same text), the search rows kept beside them, tombstones of
    // records deleted by hand, people and their roles, records' photos. A record's search
    // row and photo go with it (one statement-level trigger, whatever deletes it).
    "CREATE TABLE import_errors (
        import_id BIGINT NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        line BIGINT NOT NULL,
        column_name TEXT NOT NULL,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        value TEXT NOT NULL,
        record_key TEXT NOT NULL DEFAULT '',
        record_name TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (import_id, seq)
    );
    CREATE TABLE records (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        data TEXT NOT NULL,
        hash BIGINT NOT NULL,
        created_import BIGINT NOT NULL,
        updated_import BIGINT NOT NULL,
        line BIGINT,
        inactive BOOLEAN NOT NULL DEFAULT FALSE,
        previous_data TEXT,
        previous_import BIGINT,
        PRIMARY KEY (tenant_id, type, key)
    );
    -- Deactivated records only (few): an index on (tenant, type, inactive) for all of them
    -- was chosen over the primary key for anti-joins by key when statistics were stale, and
    -- read every record of the type for each row (50,000 guardians' roles: minutes).
    CREATE INDEX records_inactive ON records (tenant_id, type, key) WHERE inactive;
    CREATE TABLE record_search (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        key_f TEXT COLLATE \"C\" NOT NULL,
        first_f TEXT COLLATE \"C\" NOT NULL,
        last_f TEXT COLLATE \"C\" NOT NULL,
        email_f TEXT COLLATE \"C\" NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
    );
    CREATE INDEX record_search_by_key ON record_search (tenant_id, type, key_f);
    CREATE INDEX record_search_by_name ON record_search (tenant_id, type, last_f, first_f);
    CREATE INDEX record_search_by_first ON record_search (tenant_id, type, first_f);
    CREATE INDEX record_search_by_email ON record_search (tenant_id, type, email_f);
    CREATE TABLE record_search_columns (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT COLLATE \"C\" NOT NULL,
        paths TEXT NOT NULL,
        PRIMARY KEY (tenant_id, type)
    );
    CREATE TABLE deleted_records (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        deleted_ms BIGINT NOT NULL,
        deleted_by TEXT NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
    );
    CREATE TABLE people (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        first_name TEXT COLLATE \"C\" NOT NULL,
        last_name TEXT COLLATE \"C\" NOT NULL,
        email TEXT COLLATE \"C\" NOT NULL,
        phone TEXT COLLATE \"C\" NOT NULL
    );
    CREATE INDEX people_by_contact ON people (tenant_id, last_name, first_name, email, phone);
    CREATE TABLE person_roles (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        role TEXT COLLATE \"C\" NOT NULL,
        source_id TEXT NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
    );
    CREATE INDEX person_roles_by_person ON person_roles (person_id);
    CREATE INDEX person_roles_by_source ON person_roles (tenant_id, role, source_id);
    CREATE TABLE photos (
        tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        type TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        sha256 TEXT NOT NULL,
        format TEXT NOT NULL,
        width BIGINT NOT NULL,
        height BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        import_id BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, type, key)
    );
    CREATE INDEX photos_by_image ON photos (tenant_id, sha256);
    CREATE FUNCTION records_erased() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM record_search s USING erased e
            WHERE s.tenant_id = e.tenant_id AND s.type = e.type AND s.key = e.key;
        DELETE FROM photos p USING erased e
            WHERE p.tenant_id = e.tenant_id AND p.type = e.type AND p.key = e.key;
        RETURN NULL;
    END $$;
    CREATE TRIGGER records_erased AFTER DELETE ON records
        REFERENCING OLD TABLE AS erased FOR EACH STATEMENT EXECUTE FUNCTION records_erased();",
    // 7: people linked on the server, a batch of records per call, in the order given: the
    // algorithm of sluice-store's `people::Linker` (see there), each record against every
    // person and role linked before it. Returns the records kept apart from a namesake.
    "CREATE FUNCTION sluice_link_people(p_tenant BIGINT, p_type TEXT, p_role TEXT, p_had_roles BOOLEAN,
        p_keys TEXT[], p_lines BIGINT[], p_sources TEXT[], p_firsts TEXT[], p_lasts TEXT[],
        p_emails TEXT[], p_phones TEXT[])
    RETURNS TABLE (o_line BIGINT, o_other BIGINT, o_email TEXT, o_phone TEXT)
    LANGUAGE plpgsql
    -- Its lookups are planned once per session and kept (PL/pgSQL's generic plans): planned
    -- while a tenant has few people, they scanned the table, and each call grew slower as
    -- the import added people (100,000 students: minutes). Every lookup has its index.
    SET enable_seqscan = off
    AS $$
    DECLARE
        i INT;
        k TEXT; src TEXT; f TEXT; l TEXT; e TEXT; ph TEXT;
        known BIGINT; by_contact BIGINT; namesake BIGINT; person BIGINT;
        b_person BIGINT; b_role TEXT; b_source TEXT;
    BEGIN
        FOR i IN 1 .. COALESCE(array_length(p_keys, 1), 0) LOOP
            k := p_keys[i]; src := p_sources[i]; f := p_firsts[i]; l := p_lasts[i];
            e := p_emails[i]; ph := p_phones[i];
            known := NULL;
            IF src <> '' THEN
                SELECT MIN(r.person_id) INTO known FROM person_roles r
                    WHERE r.tenant_id = p_tenant AND r.role = p_role AND r.source_id = src;
            END IF;
            by_contact := NULL;
            -- Names alone are no identity: a contact matches only with an email or phone.
            IF e <> '' OR ph <> '' THEN
                SELECT MIN(p.id) INTO by_contact FROM people p WHERE p.tenant_id = p_tenant
                    AND p.last_name = l AND p.first_name = f AND p.email = e AND p.phone = ph;
            END IF;
            SELECT MIN(p.id) INTO namesake FROM people p
                WHERE p.tenant_id = p_tenant AND p.last_name = l AND p.first_name = f;
            IF known IS NOT NULL THEN
                UPDATE people SET first_name = f, last_name = l, email = e, phone = ph WHERE id = known
                    AND NOT (first_name = f AND last_name = l AND email = e AND phone = ph);
                person := known;
            ELSIF by_contact IS NOT NULL AND (src = '' OR NOT EXISTS (SELECT 1 FROM person_roles r
                    WHERE r.person_id = by_contact AND r.role = p_role AND r.source_id <> ''
                    AND r.source_id <> src)) THEN
                person := by_contact;
            ELSE
                INSERT INTO people (tenant_id, first_name, last_name, email, phone)
                    VALUES (p_tenant, f, l, e, ph) RETURNING id INTO person;
                IF namesake IS NOT NULL THEN
                    o_line := p_lines[i];
                    o_other := namesake;
                    SELECT p.email, p.phone INTO o_email, o_phone FROM people p WHERE p.id = namesake;
                    RETURN NEXT;
                END IF;
            END IF;
            IF p_had_roles THEN
                SELECT r.person_id, r.role, r.source_id INTO b_person, b_role, b_source FROM person_roles r
                    WHERE r.tenant_id = p_tenant AND r.type = p_type AND r.key = k;
                IF NOT FOUND THEN
                    INSERT INTO person_roles (tenant_id, type, key, person_id, role, source_id)
                        VALUES (p_tenant, p_type, k, person, p_role, src);
                ELSIF NOT (b_person = person AND b_role = p_role AND b_source = src) THEN
                    UPDATE person_roles SET person_id = person, role = p_role, source_id = src
                        WHERE tenant_id = p_tenant AND type = p_type AND key = k;
                END IF;
            ELSE
                INSERT INTO person_roles (tenant_id, type, key, person_id, role, source_id)
                    VALUES (p_tenant, p_type, k, person, p_role, src);
            END IF;
        END LOOP;
    END $$;",
    // 8: an upload's own bytes, kept from its close until it is imported (a newer upload of
    // the same name may replace the file in the folder first)
    "ALTER TABLE upload_events ADD COLUMN snapshot TEXT;",
    // 9: a notifier claims the deliveries it sends (several nodes, one queue)
    "ALTER TABLE deliveries ADD COLUMN lease_until_ms BIGINT;",
    // 10: each scheduled run taken once per due time, whichever node asks first
    "CREATE TABLE schedule_runs (
        key TEXT NOT NULL,
        due_ms BIGINT NOT NULL,
        claimed_ms BIGINT NOT NULL,
        PRIMARY KEY (key, due_ms)
    );",
    // 11: the process running an export run (nodes each sweep their own at start)
    "ALTER TABLE export_runs ADD COLUMN owner TEXT;",
    // 12: a scheduled run is done when its process finished it; one whose process ended
    // before that is taken over (runs claimed before this are taken as done)
    "ALTER TABLE schedule_runs ADD COLUMN owner TEXT;
     ALTER TABLE schedule_runs ADD COLUMN done_ms BIGINT;
     UPDATE schedule_runs SET done_ms = claimed_ms;
     CREATE INDEX schedule_runs_unfinished ON schedule_runs (key) WHERE done_ms IS NULL;",
    // 13: the tables an import fills by the million keep their tenant without a foreign key:
    // its check ran once per row written (a query each: a third of a 1,000,000-row import).
    // An import locks its tenant's row once instead (`FOR KEY SHARE`, what each check took),
    // and removing a tenant deletes these rows itself, after that lock.
    "ALTER TABLE records DROP CONSTRAINT records_tenant_id_fkey;
     ALTER TABLE record_search DROP CONSTRAINT record_search_tenant_id_fkey;
     ALTER TABLE people DROP CONSTRAINT people_tenant_id_fkey;
     ALTER TABLE person_roles DROP CONSTRAINT person_roles_tenant_id_fkey;",
    // 14: what each node's defender saw, for the others to count (a minute's worth, by the
    // database's clock: the nodes' clocks may differ)
    "CREATE TABLE defender_happenings (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        node TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        source TEXT NOT NULL,
        service TEXT NOT NULL,
        what TEXT NOT NULL,
        account TEXT,
        count BIGINT NOT NULL,
        written_ms BIGINT NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    );
    CREATE INDEX defender_happenings_by_time ON defender_happenings (written_ms);",
    // 15: the column order each CSV type's records are stored in (SQLite's 44)
    "CREATE TABLE type_layouts (type TEXT PRIMARY KEY, columns TEXT NOT NULL);",
];

pub(crate) fn migrate(client: &mut Client) -> Result<()> {
    // One transaction, the lock first: a node that starts beside another waits, then finds
    // the schema current (even `CREATE TABLE IF NOT EXISTS` races without it). An upgrade
    // that fails half-way leaves the schema as it was.
    let mut tx = client.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version BIGINT NOT NULL)").map_err(db)?;
    let current: i64 =
        tx.query_one("SELECT COALESCE(MAX(version), 0) FROM sluice_schema", &[]).map_err(db)?.get(0);
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew { found: current, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(current).unwrap_or(0)) {
        tx.batch_execute(sql).map_err(db)?;
        tx.execute("INSERT INTO sluice_schema (version) VALUES ($1)", &[&(i as i64 + 1)]).map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(())
}

/// The schema version this build makes.
pub(crate) fn known() -> i64 {
    MIGRATIONS.len() as i64
}
