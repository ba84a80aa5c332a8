//! The embedded store's data: keys, leases and deletion waiters, behind one lock.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::backend::observe::{Change, Kv};
use tokio::time::Instant;

use crate::liveness::{Liveness, LostReason};
use crate::{Error, Result, Write};

struct Record {
    value: Vec<u8>,
    create_rev: i64,
    /// 0: no lease.
    lease: u64,
}

struct Lease {
    ttl: Duration,
    expires: Instant,
}

/// What a deletion watcher gets: nothing to wait for, or a signal and the instant at which
/// the key's lease could expire.
pub(super) enum Lookup {
    Gone,
    Present {
        rx: oneshot::Receiver<()>,
        expiry: Option<Instant>,
    },
}

fn entry(key: &str, kv: &Record) -> Kv {
    Kv {
        key: key.to_string(),
        value: kv.value.clone(),
        create_rev: kv.create_rev,
        lease: kv.lease,
    }
}

/// A held entry's lost signal, fired by the delete itself (no task per grant).
struct HeldEntry {
    create_rev: i64,
    lease: u64,
    grant: Liveness,
    session: Liveness,
}

#[derive(Default)]
pub(super) struct State {
    rev: i64,
    next_lease: u64,
    keys: BTreeMap<String, Record>,
    leases: HashMap<u64, Lease>,
    /// No lease expires before this instant (a lower bound: renewals only move expiries
    /// later), so most operations skip the scan over every lease.
    earliest_expiry: Option<Instant>,
    on_delete: HashMap<String, Vec<oneshot::Sender<()>>>,
    held: HashMap<String, HeldEntry>,
    prefix_watchers: Vec<(String, mpsc::UnboundedSender<Result<Change>>)>,
}

impl State {
    pub(super) fn rev(&self) -> i64 {
        self.rev
    }

    /// Drops every lease whose time has come, with its keys.
    pub(super) fn expire(&mut self, now: Instant) {
        if !self.earliest_expiry.is_some_and(|at| now >= at) {
            return;
        }
        let due: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.revoke(id);
        }
        self.earliest_expiry = self.leases.values().map(|l| l.expires).min();
    }

    pub(super) fn grant(&mut self, ttl: Duration, now: Instant) -> u64 {
        self.next_lease += 1;
        let id = self.next_lease;
        let expires = now + ttl;
        self.leases.insert(id, Lease { ttl, expires });
        self.earliest_expiry = Some(self.earliest_expiry.map_or(expires, |at| at.min(expires)));
        id
    }

    pub(super) fn renew(&mut self, id: u64, now: Instant) -> Option<Duration> {
        let lease = self.leases.get_mut(&id)?;
        lease.expires = now + lease.ttl;
        Some(lease.ttl)
    }

    pub(super) fn remaining(&self, id: u64, now: Instant) -> Option<Duration> {
        self.leases
            .get(&id)
            .map(|l| l.expires.saturating_duration_since(now))
    }

    pub(super) fn check_lease(&self, id: u64) -> Result<()> {
        if self.leases.contains_key(&id) {
            Ok(())
        } else {
            Err(Error::SessionLost {
                reason: LostReason::LeaseExpired,
            })
        }
    }

    pub(super) fn revoke(&mut self, id: u64) {
        if self.leases.remove(&id).is_none() {
            return;
        }
        let doomed: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, kv)| kv.lease == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.delete(&k);
        }
    }

    /// Creates `key` under `lease` unless it exists; returns its create revision.
    pub(super) fn put_if_absent(&mut self, key: &str, value: &[u8], lease: u64) -> u64 {
        if let Some(kv) = self.keys.get(key) {
            return kv.create_rev as u64;
        }
        self.rev += 1;
        let kv = Record {
            value: value.to_vec(),
            create_rev: self.rev,
            lease,
        };
        self.keys.insert(key.to_string(), kv);
        self.notify_put(key);
        self.rev as u64
    }

    /// The earliest instant a lease of a key under `prefix` could expire.
    pub(super) fn next_expiry(&self, prefix: &str) -> Option<Instant> {
        self.keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, kv)| self.leases.get(&kv.lease))
            .map(|l| l.expires)
            .min()
    }

    /// Creates `key` under `lease`, or replaces its value if it is already `lease`'s; `false`
    /// (and nothing written) if it exists under another lease or none.
    pub(super) fn put_owned(&mut self, key: &str, value: &[u8], lease: u64) -> bool {
        match self.keys.get(key) {
            None => {
                self.put_if_absent(key, value, lease);
                true
            }
            Some(kv) if kv.lease == lease => self.set_value(key, value),
            Some(_) => false,
        }
    }

    /// Replaces the value of `key`, keeping its lease and create revision.
    pub(super) fn set_value(&mut self, key: &str, value: &[u8]) -> bool {
        let Some(kv) = self.keys.get_mut(key) else {
            return false;
        };
        kv.value = value.to_vec();
        self.rev += 1;
        self.notify_put(key);
        true
    }

    /// The entries under `prefix`, and a channel of every later change to them.
    pub(super) fn watch_prefix(
        &mut self,
        prefix: &str,
    ) -> (Vec<Kv>, mpsc::UnboundedReceiver<Result<Change>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.prefix_watchers.push((prefix.to_string(), tx));
        (self.entries(prefix), rx)
    }

    pub(super) fn entries(&self, prefix: &str) -> Vec<Kv> {
        self.under(prefix).map(|(k, kv)| entry(k, kv)).collect()
    }

    fn notify(&mut self, key: &str, change: impl Fn() -> Change) {
        self.prefix_watchers.retain(|(prefix, tx)| {
            !key.starts_with(prefix.as_str()) || tx.send(Ok(change())).is_ok()
        });
    }

    fn notify_put(&mut self, key: &str) {
        if let Some(kv) = self.keys.get(key) {
            let e = entry(key, kv);
            self.notify(key, || Change::Put(e.clone()));
        }
    }

    pub(super) fn create_rev(&self, key: &str) -> Option<u64> {
        self.keys.get(key).map(|kv| kv.create_rev as u64)
    }

    pub(super) fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.keys.get(key).map(|kv| kv.value.clone())
    }

    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Record)> + 'a {
        self.keys
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// The entry with the lowest create revision under `prefix`.
    pub(super) fn first_in(&self, prefix: &str) -> Option<(String, u64)> {
        self.under(prefix)
            .min_by_key(|(_, kv)| kv.create_rev)
            .map(|(k, kv)| (k.clone(), kv.create_rev as u64))
    }

    /// The entry with the highest create revision below `token` under `prefix`.
    pub(super) fn just_before(&self, prefix: &str, token: u64) -> Option<String> {
        self.under(prefix)
            .filter(|(_, kv)| (kv.create_rev as u64) < token)
            .max_by_key(|(_, kv)| kv.create_rev)
            .map(|(k, _)| k.clone())
    }

    /// The newest entry under `prefix` that is not a reader (`<prefix>read/…`), created before
    /// `before` if given: what a read/write lock's reader waits for.
    pub(super) fn last_writer(&self, prefix: &str, before: Option<u64>) -> Option<(String, u64)> {
        let readers = format!("{prefix}read/");
        self.under(prefix)
            .filter(|(k, kv)| {
                !k.starts_with(&readers) && !matches!(before, Some(b) if kv.create_rev as u64 >= b)
            })
            .max_by_key(|(_, kv)| kv.create_rev)
            .map(|(k, kv)| (k.clone(), kv.create_rev as u64))
    }

    /// Sets `key` to `value` under `lease`, creating it if absent.
    pub(super) fn put_leased(&mut self, key: &str, value: &[u8], lease: u64) {
        if !self.set_value(key, value) {
            self.put_if_absent(key, value, lease);
        }
    }

    #[cfg(test)]
    pub(super) fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.under(prefix).map(|(k, _)| k.clone()).collect()
    }

    pub(super) fn delete(&mut self, key: &str) -> bool {
        let Some(gone) = self.keys.remove(key) else {
            return false;
        };
        self.deleted(key);
        if let Some(held) = self.held.remove(key) {
            if held.create_rev == gone.create_rev {
                self.entry_lost(&held);
            }
        }
        true
    }

    /// What every delete does once the key is gone: a new revision, and its watchers told.
    fn deleted(&mut self, key: &str) {
        self.rev += 1;
        self.notify(key, || Change::Delete(key.to_string()));
        // Emptiness first: on the uncontended path nothing waits, and this saves hashing.
        if !self.on_delete.is_empty() {
            for tx in self.on_delete.remove(key).unwrap_or_default() {
                let _ = tx.send(());
            }
        }
    }

    /// Fires a held entry's signal as a watching task would (`queue::entry_gone`): with its
    /// lease gone, the session is lost too.
    fn entry_lost(&self, held: &HeldEntry) {
        if !self.leases.contains_key(&held.lease) {
            held.session.lose(LostReason::LeaseExpired);
        }
        held.grant.lose(LostReason::EntryDeleted);
    }

    /// Has the delete of held entry `key` (created at `create_rev` under `lease`) fire
    /// `grant`, unless it is deleted by [`State::delete_own`]; fires at once if it is gone
    /// already.
    pub(super) fn fire_on_delete(
        &mut self,
        key: &str,
        (create_rev, lease): (i64, u64),
        grant: &Liveness,
        session: &Liveness,
    ) {
        let held = HeldEntry {
            create_rev,
            lease,
            grant: grant.clone(),
            session: session.clone(),
        };
        if self.create_rev(key) == Some(create_rev as u64) {
            self.held.insert(key.to_string(), held);
        } else {
            self.entry_lost(&held);
        }
    }

    /// Deletes our own held entry: its signal must not fire.
    pub(super) fn delete_own(&mut self, key: &str) -> bool {
        self.held.remove(key);
        if self.keys.remove(key).is_none() {
            return false;
        }
        self.deleted(key);
        true
    }

    pub(super) fn apply(&mut self, ops: &[Write]) {
        for op in ops {
            match op {
                Write::Put { key, value } => {
                    self.rev += 1;
                    let create_rev = self.keys.get(key).map_or(self.rev, |kv| kv.create_rev);
                    let kv = Record {
                        value: value.clone(),
                        create_rev,
                        lease: 0,
                    };
                    self.keys.insert(key.clone(), kv);
                    self.notify_put(key);
                }
                Write::Delete { key } => {
                    self.delete(key);
                }
            }
        }
    }

    /// Watches for the deletion of `key` as it was at revision `rev`: a key created later
    /// under the same name is another entry (the same session re-enqueued), so it counts as
    /// gone, exactly as an etcd watch from `rev + 1` would report the delete.
    /// How many deletion watchers each key has (herd-freedom checks). A held entry's own
    /// lost signal counts as one, as a watching task would.
    #[cfg(test)]
    pub(super) fn delete_watchers(&self) -> Vec<(String, usize)> {
        let mut watched: HashMap<String, usize> = self
            .on_delete
            .iter()
            .map(|(k, w)| (k.clone(), w.iter().filter(|w| !w.is_closed()).count()))
            .collect();
        for key in self.held.keys() {
            *watched.entry(key.clone()).or_default() += 1;
        }
        watched.into_iter().filter(|(_, n)| *n > 0).collect()
    }

    pub(super) fn watch_delete(&mut self, key: &str, rev: i64) -> Lookup {
        let Some(kv) = self.keys.get(key).filter(|kv| kv.create_rev <= rev) else {
            return Lookup::Gone;
        };
        let expiry = self.leases.get(&kv.lease).map(|l| l.expires);
        let (tx, rx) = oneshot::channel();
        let waiters = self.on_delete.entry(key.to_string()).or_default();
        waiters.retain(|w| !w.is_closed());
        waiters.push(tx);
        Lookup::Present { rx, expiry }
    }
}
