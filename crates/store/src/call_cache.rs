//! A read cache of calls, for SQLite only, where one server process owns the
//! database file (a lock file enforces it). It is correct by construction
//! rather than by bookkeeping: every write to the database, whatever it
//! touches, empties the cache when it finishes, and a reader only fills the
//! cache if no write finished since it started reading. No code path has to
//! remember to invalidate anything.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use switchyard_domain::model::Call;

/// Entries kept at most; the cache empties itself when full.
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
struct Inner {
    /// Incremented by every finished write.
    generation: u64,
    calls: HashMap<uuid::Uuid, Call>,
}

pub(crate) struct CallCache {
    inner: Mutex<Inner>,
    /// Held for the life of the cache: the exclusive lock on `<db>.lock`.
    _owner: File,
}

impl CallCache {
    /// Takes the owner lock of the SQLite file at `db_path`; fails if another
    /// process holds it.
    pub(crate) fn own(db_path: &Path) -> std::io::Result<Self> {
        let mut lock_path = db_path.as_os_str().to_owned();
        lock_path.push(".lock");
        let mut options = File::options();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&lock_path)?;
        file.try_lock().map_err(|_| {
            std::io::Error::other(format!(
                "another Switchyard server is using the SQLite database {} (lock {}); run one server per SQLite file, \
                 or use PostgreSQL for several",
                db_path.display(),
                Path::new(&lock_path).display()
            ))
        })?;
        Ok(Self {
            inner: Mutex::new(Inner::default()),
            _owner: file,
        })
    }

    /// The current generation, read before a database read.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().map(|i| i.generation).unwrap_or(u64::MAX)
    }

    pub(crate) fn get(&self, id: uuid::Uuid) -> Option<Call> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.calls.get(&id).cloned())
    }

    /// Keeps `call` if no write finished since `generation` was read.
    pub(crate) fn fill(&self, generation: u64, call: &Call) {
        if let Ok(mut i) = self.inner.lock() {
            if i.generation != generation {
                return;
            }
            if i.calls.len() >= MAX_ENTRIES {
                i.calls.clear();
            }
            i.calls.insert(call.id.uuid(), call.clone());
        }
    }

    /// Called after every write.
    pub(crate) fn written(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.generation = i.generation.wrapping_add(1);
            i.calls.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_lock_is_exclusive() {
        let dir = std::env::temp_dir().join(format!("sy-cache-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("x.db");
        let first = CallCache::own(&db).unwrap();
        let err = CallCache::own(&db).err().expect("second owner refused");
        assert!(err.to_string().contains("another Switchyard server"));
        drop(first);
        assert!(CallCache::own(&db).is_ok(), "released with the first");
        let _ = std::fs::remove_dir_all(dir);
    }
}
