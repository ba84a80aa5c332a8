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
CREATE TABLE IF NOT EXISTS tenure_semaphores (name text PRIMARY KEY, tag bigint NOT NULL, permits integer NOT NULL);
COMMIT;";

/// Whether every object exists (and so `SCHEMA` need not run).
pub(crate) const SCHEMA_PRESENT: &str = "SELECT to_regclass('tenure_fence') IS NOT NULL \
AND to_regclass('tenure_kv') IS NOT NULL AND to_regclass('tenure_names') IS NOT NULL \
AND to_regclass('tenure_semaphores') IS NOT NULL";

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

/// `TRY_LOCK` for a reader of a read/write lock: the shared lock (a `ShareLock` in
/// `pg_locks`), which PostgreSQL refuses while a writer holds *or waits* (a shared request that
/// conflicts with a queued exclusive one does not pass it). When not granted, the writer in the
/// way: the holder, else the first waiting writer. $1 key, $2 value.
pub(crate) const TRY_LOCK_SHARED: &str = concat!(
    "SELECT s.t, CASE WHEN s.t IS NULL THEN (SELECT l.pid FROM pg_locks l \
WHERE l.locktype = 'advisory' AND l.mode = 'ExclusiveLock' AND l.objsubid = 1 AND l.database = \
(SELECT oid FROM pg_database WHERE datname = current_database()) AND ",
    lock_key!(),
    " = $1 ORDER BY l.granted DESC LIMIT 1) END, CASE WHEN s.t IS NOT NULL THEN set_config('application_name', \
left(s.t::text || ' ' || $2, 63), false) END, pg_backend_pid() \
FROM (SELECT CASE WHEN pg_try_advisory_lock_shared($1) THEN nextval('tenure_fence') END AS t) s"
);

/// Waits in the server's queue for the shared lock: behind every request queued before it that
/// it conflicts with (a writer), so writers are not starved by a stream of readers. $1 key.
pub(crate) const LOCK_SHARED: &str = "SELECT pg_advisory_lock_shared($1)";

/// Downgrades a writer to a reader on its holding connection, in one statement: first the
/// shared lock, then the release of the exclusive one. A process that holds the exclusive lock
/// is granted the shared one at once even with writers queued (PostgreSQL puts a request ahead
/// of the waiters that wait for a lock it holds, and grants it if nobody else holds), so the
/// key is never unheld, and the release of the exclusive lock then wakes only the readers
/// queued before the first waiting writer. Answers whether the exclusive lock was held. $1 key.
pub(crate) const DOWNGRADE: &str =
    "SELECT pg_advisory_unlock($1) FROM (SELECT pg_advisory_lock_shared($1) OFFSET 0) s";

/// Releases a read/write grant, whatever mode it holds (a downgrade abandoned midway may
/// leave it holding both): whether the connection held the key, then everything it holds (a
/// lock connection holds one key only). $1 key.
pub(crate) const UNLOCK_RW: &str = concat!(
    "WITH h AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' \
AND l.granted AND l.objsubid = 1 AND l.pid = pg_backend_pid() AND ",
    lock_key!(),
    " = $1) AS held) SELECT h.held, pg_advisory_unlock_all() FROM h"
);

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

/// The semaphore's queue key, tried: whether it was granted, and the process. $1 key.
pub(crate) const SEM_TRY_QUEUE: &str = "SELECT pg_try_advisory_lock($1), pg_backend_pid()";

/// Run by the holder of a semaphore's queue key (so by one acquisition of the name at a
/// time): the permit count recorded for the name, the process of one current permit holder
/// (slots of the name's tag), and, when no count is recorded, or another one is but nobody
/// holds a permit, records this one. The caller refuses when the recorded count differs and a
/// holder exists. $1 name, $2 tag (as the unsigned `classid`), $3 permits.
pub(crate) const SEM_RECORD: &str = "WITH h AS (SELECT l.pid FROM pg_locks l \
WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND l.database = \
(SELECT oid FROM pg_database WHERE datname = current_database()) AND l.classid::bigint = $2 \
ORDER BY l.pid LIMIT 1), \
r AS (SELECT permits FROM tenure_semaphores WHERE name = $1), \
up AS (INSERT INTO tenure_semaphores (name, tag, permits) SELECT $1, $2, $3 \
WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.permits = $3) \
AND NOT (EXISTS (SELECT 1 FROM r) AND EXISTS (SELECT 1 FROM h)) \
ON CONFLICT (name) DO UPDATE SET permits = EXCLUDED.permits, tag = EXCLUDED.tag) \
SELECT (SELECT permits FROM r), (SELECT pid FROM h), pg_backend_pid()";

/// Takes the first free permit slot (`pg_try_advisory_lock(tag, i)`, i in 0..permits; the
/// scan stops at the first granted, since `LIMIT 1` pulls rows one at a time), then — only
/// if one was taken, so while holding it — the token, the holder's `application_name`, and
/// the release of the queue key, in one statement. No row when every slot is taken (nothing
/// taken, the queue key still held). $1 tag (int4), $2 permits, $3 value, $4 queue key.
pub(crate) const SEM_TRY_SLOT: &str = "SELECT u.i, u.t, \
set_config('application_name', left(u.t::text || ' ' || $3, 63), false), \
pg_advisory_unlock($4), pg_backend_pid() \
FROM (SELECT t.i, nextval('tenure_fence') AS t FROM (SELECT i FROM generate_series(0, $2 - 1) i \
WHERE pg_try_advisory_lock($1, i) LIMIT 1) t OFFSET 0) u";

/// Releases a permit slot. $1 tag, $2 slot.
pub(crate) const SEM_UNLOCK: &str = "SELECT pg_advisory_unlock($1, $2)";

/// `GUARDED_WRITE` for a permit: the holding connection must hold slot $4 (encoded as
/// `lock_key!()` reads a two-`int4` key: tag in the high half, slot in the low).
pub(crate) const GUARDED_WRITE_PERMIT: &str = concat!(
    "WITH held AS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
AND l.objsubid = 2 AND l.pid = pg_backend_pid() AND ",
    lock_key!(),
    " = $4), \
del AS (DELETE FROM tenure_kv WHERE key = ANY($1) AND EXISTS (SELECT 1 FROM held)), \
ins AS (INSERT INTO tenure_kv (key, value) SELECT * FROM unnest($2::text[], $3::bytea[]) \
WHERE EXISTS (SELECT 1 FROM held) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
SELECT EXISTS (SELECT 1 FROM held)"
);

/// Every held permit slot of this database whose tag a semaphore recorded: its name, recorded
/// count, holder process and `application_name` (`<token> <value>`).
pub(crate) const PERMITS: &str = "SELECT s.name, s.permits, l.pid, a.application_name \
FROM pg_locks l JOIN tenure_semaphores s ON s.tag = l.classid::bigint \
LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted AND l.database = \
(SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY l.pid";
