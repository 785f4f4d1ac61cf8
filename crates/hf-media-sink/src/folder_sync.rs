//! Making renames durable at the cost of one folder sync for many stores (a group commit).
//!
//! A rename is durable once its folder is synced, and one sync makes durable every rename made in that
//! folder before it began. So a store that renamed its files calls [`sync_folder`]: if no sync of the
//! folder is running, it runs one; if one is running, it began too early to cover this store's renames,
//! so the store waits for it to end, then the first of the waiters runs the next one, which covers them
//! all. Under load, tens of stores share one sync instead of syncing the folder each.
//!
//! Shared by every [`FileSink`](crate::FileSink) of the process, keyed by the folder's path (two sinks
//! writing into one folder share its syncs). Blocking: called from the sink's blocking tasks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};

/// The syncs of one folder.
#[derive(Debug, Default)]
struct Folder {
    state: Mutex<Syncs>,
    ended: Condvar,
}

/// Counters of one folder's syncs: sync number `begun` is the last one started.
#[derive(Debug, Default)]
struct Syncs {
    begun: u64,
    ended: u64,
    running: bool,
}

/// The folders being synced or waited for. An entry leaves once nobody uses it.
static FOLDERS: LazyLock<Mutex<HashMap<PathBuf, Arc<Folder>>>> = LazyLock::new(Mutex::default);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The counters are only changed together under the lock (and a running sync is ended by
    // `Running`'s drop, panic or not): a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Returns once a sync of `dir` that began after this call has ended: every rename made in `dir`
/// before the call is then durable. Best effort, like the sync itself: a folder that cannot be opened
/// or synced is not an error (the renames happened; only their durability is in doubt).
pub(crate) fn sync_folder(dir: &Path) {
    let folder = Arc::clone(lock(&FOLDERS).entry(dir.to_path_buf()).or_default());
    {
        let mut syncs = lock(&folder.state);
        // The next sync to begin is the first that covers this caller's renames.
        let needed = syncs.begun + 1;
        while syncs.ended < needed {
            if syncs.running {
                syncs = folder.ended.wait(syncs).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            syncs.begun += 1;
            syncs.running = true;
            let running = Running {
                folder: &folder,
                this: syncs.begun,
            };
            drop(syncs);
            sync_now(dir);
            drop(running);
            syncs = lock(&folder.state);
        }
    }
    // Every reference but the map's is dropped under the map's lock (clones are only made under it
    // too): the last user sees the map's alone and removes the entry.
    let mut folders = lock(&FOLDERS);
    drop(folder);
    if folders.get(dir).is_some_and(|folder| Arc::strong_count(folder) == 1) {
        folders.remove(dir);
    }
}

/// A sync in progress: ended when dropped (also if the sync panicked), waking the waiters.
struct Running<'a> {
    folder: &'a Folder,
    this: u64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut syncs = lock(&self.folder.state);
        syncs.ended = syncs.ended.max(self.this);
        syncs.running = false;
        self.folder.ended.notify_all();
    }
}

/// Syncs the folder `dir` itself (its entries), now, best effort: for a folder just created, whose
/// entry in its parent is made once (the file sink's new folders).
pub(crate) fn sync_now(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How many syncs of `dir` have begun (0 when the folder has no entry).
    fn begun(dir: &Path) -> u64 {
        lock(&FOLDERS).get(dir).map_or(0, |folder| lock(&folder.state).begun)
    }

    #[test]
    fn a_lone_call_syncs_once_and_leaves_no_entry() {
        let tmp = tempfile::tempdir().expect("tempdir");
        sync_folder(tmp.path());
        assert_eq!(begun(tmp.path()), 0, "the entry left with its last user");
        assert!(!lock(&FOLDERS).contains_key(tmp.path()));
        // A folder that cannot be opened is not an error.
        sync_folder(&tmp.path().join("missing"));
    }

    #[test]
    fn concurrent_callers_share_syncs_and_each_waits_for_one_begun_after_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let done = Arc::new(AtomicUsize::new(0));
        // Keep the entry alive meanwhile, to count the syncs of all the callers.
        let folder = Arc::clone(lock(&FOLDERS).entry(dir.clone()).or_default());
        let callers: Vec<_> = (0..32)
            .map(|_| {
                let (dir, done) = (dir.clone(), Arc::clone(&done));
                std::thread::spawn(move || {
                    let before = begun(&dir);
                    sync_folder(&dir);
                    let state = lock(&lock(&FOLDERS)[&dir].state).ended;
                    assert!(
                        state > before,
                        "a sync that began after the call ended before it returned"
                    );
                    done.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        for caller in callers {
            caller.join().expect("no panic");
        }
        assert_eq!(done.load(Ordering::Relaxed), 32);
        let syncs = lock(&folder.state);
        assert!(syncs.begun >= 1 && syncs.begun <= 32, "{} syncs", syncs.begun);
        assert_eq!(syncs.begun, syncs.ended);
        assert!(!syncs.running);
        drop(syncs);
        drop(folder);
        lock(&FOLDERS).remove(&dir);
    }
}
