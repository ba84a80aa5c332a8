//! The SQL Tenure sends, in one place: the objects it keeps (created on first use) and the
//! statements of each step. Every statement is one round trip (`query_typed`: no separate
//! prepare), and each step that must happen *while holding* is one statement on the holding
//! connection.

/// The objects, created if missing (docs: backend/postgres/mod.rs, "What Tenure keeps"), under
/// a transaction-level advisory lock so that two processes creating them at once do not trip
/// over each other (concurrent `CREATE … IF NOT EXISTS` can fail on the catalog's unique index).
pub(crate) const SCHEMA: &str = "BEGIN;
SELECT pg_advisory_xact_lock(6172891846722127361);
CREATE SEQUENCE IF NOT EXISTS tenure_fence;
CREATE TABLE IF NOT EXISTS tenure_kv (key text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS tenure_names (key bigint PRIMARY KEY, name text NOT NULL);
COMMIT;";

/// Whether every object exists (and so `SCHEMA` need not run).
pub(crate) const SCHEMA_PRESENT: &str = "SELECT to_regclass('tenure_fence') IS NOT NULL \
AND to_regclass('tenure_kv') IS NOT NULL AND to_regclass('tenure_names') IS NOT NULL";

/// The advisory key of a `pg_locks` row (one `bigint` key: `objsubid = 1`, high half in
/// `classid`, low half in `objid`).
macro_rules! lock_key {
    () => {
        "((l.classid::bigint << 32) | l.objid::bigint)"
    };
}

/// try_lock in one round trip: the lock, then (only if granted, and so while holding) the
/// token and the holder's `application_name` (`<token> <value>`, which `status` reads); when
/// not granted, the holder's process id. A volatile subquery is evaluated once, before the
/// outer list. $1 key, $2 value.
pub(crate) const TRY_LOCK: &str = concat!(
    "SELECT s.t, CASE WHEN s.t IS NULL THEN (SELECT l.pid FROM pg_locks l \
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = \
(SELECT oid FROM pg_database WHERE datname = current_database()) AND ",
    lock_key!(),
    " = $1 LIMIT 1) END, CASE WHEN s.t IS NOT NULL THEN set_config('application_name', \
left(s.t::text || ' ' || $2, 63), false) END, pg_backend_pid() \
FROM (SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('tenure_fence') END AS t) s"
);

/// Waits in the server's queue for the lock. $1 key.
pub(crate) const LOCK: &str = "SELECT pg_advisory_lock($1)";

/// The token, taken once the lock is held, and the holder's `application_name`. $1 value.
pub(crate) const TOKEN: &str = "SELECT s.t, set_config('application_name', \
left(s.t::text || ' ' || $1, 63), false), pg_backend_pid() \
FROM (SELECT nextval('tenure_fence') AS t) s";

/// Releases. $1 key.
pub(crate) const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

/// Releases whatever a connection that was cancelled mid-wait may have been granted.
pub(crate) const UNLOCK_ALL: &str = "SELECT pg_advisory_unlock_all()";

/// The liveness probe.
pub(crate) const PROBE: &str = "SELECT 1";

/// Records a name for `status` (once per name and process). $1 key, $2 name.
pub(crate) const NAME: &str =
    "INSERT INTO tenure_names (key, name) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

/// A plain read of `tenure_kv`. $1 key.
pub(crate) const READ: &str = "SELECT value FROM tenure_kv WHERE key = $1";

/// Deletes, then upserts, in one statement (so atomically). $1 keys to delete, $2 keys and $3
/// values to put; the two key sets are disjoint.
pub(crate) const WRITE: &str = "WITH del AS (DELETE FROM tenure_kv WHERE key = ANY($1)) \
INSERT INTO tenure_kv (key, value) SELECT * FROM unnest($2::text[], $3::bytea[]) \
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";

/// `WRITE`, only if this connection holds the advisory lock $4 at that moment, in one
/// statement on the holding connection; answers whether it held.
pub(crate) const GUARDED_WRITE: &str = concat!(
    "WITH held AS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
AND l.objsubid = 1 AND l.pid = pg_backend_pid() AND ",
    lock_key!(),
    " = $4), \
del AS (DELETE FROM tenure_kv WHERE key = ANY($1) AND EXISTS (SELECT 1 FROM held)), \
ins AS (INSERT INTO tenure_kv (key, value) SELECT * FROM unnest($2::text[], $3::bytea[]) \
WHERE EXISTS (SELECT 1 FROM held) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
SELECT EXISTS (SELECT 1 FROM held)"
);

/// Every advisory lock (one-`bigint` key) of this database: key, process, granted, the
/// holder's `application_name` and the name Tenure recorded for the key, if any; holders first.
pub(crate) const LOCKS: &str = concat!(
    "SELECT ",
    lock_key!(),
    ", l.pid, l.granted, a.application_name, n.name FROM pg_locks l \
LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
LEFT JOIN tenure_names n ON n.key = ",
    lock_key!(),
    " WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.database = \
(SELECT oid FROM pg_database WHERE datname = current_database()) \
ORDER BY l.granted DESC, l.pid"
);
