//! SQLite's write-ahead log, checkpointed off the write path.
//!
//! By default SQLite checkpoints inside the commit that grows the WAL past
//! 1 000 pages: that commit copies pages into the database file and waits
//! for its fsync while it still holds the one writer's turn, so on a busy
//! disk every write behind it (a call's event, a webhook claim) waits for
//! seconds. Here commits never checkpoint (`wal_autocheckpoint = 0` on the
//! pool); a task on a connection of its own runs a PASSIVE checkpoint every
//! [`EVERY`], which copies what no reader still needs without blocking
//! readers or the writer, and the next writer then starts the log again
//! from its beginning. The task ends when the last clone of the store is
//! dropped; SQLite checkpoints the rest when the last connection closes.

use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

/// How often the log is checkpointed. At a thousand writes a second a
/// second's worth of log is a few MiB: a short copy.
pub(crate) const EVERY: Duration = Duration::from_millis(500);

/// Keeps the checkpoint task running; it stops when this is dropped.
pub(crate) struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

impl Checkpointer {
    pub(crate) fn start(options: SqliteConnectOptions) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut conn: Option<SqliteConnection> = None;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {}
                }
                if conn.is_none() {
                    match options.connect().await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpoint: cannot open the database");
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let started = Instant::now();
                match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut *c)
                    .await
                {
                    Ok((_busy, log_frames, copied)) => {
                        metrics::histogram!("switchyard_sqlite_checkpoint_seconds")
                            .record(started.elapsed().as_secs_f64());
                        metrics::gauge!("switchyard_sqlite_wal_frames").set(log_frames as f64);
                        tracing::trace!(log_frames, copied, "WAL checkpointed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                        conn = None;
                    }
                }
            }
            if let Some(c) = conn {
                let _ = c.close().await;
            }
        });
        Self { _stop: stop }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{Store, StoreOptions, on_pool};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_leave_checkpoints_to_the_background_task() {
        let dir = std::env::temp_dir().join(format!("sy-wal-{}", uuid::Uuid::new_v4().simple()));
        let file = dir.join("t.db");
        let url = format!("sqlite://{}", file.display());
        let store = Store::connect(&url, &StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let every_commit: i64 = on_pool!(store, |pool| {
            sqlx::query_scalar("PRAGMA wal_autocheckpoint")
                .fetch_one(pool)
                .await
                .expect("pragma")
        });
        assert_eq!(every_commit, 0, "a commit must not run a checkpoint");
        for i in 0..50 {
            store
                .create_organization(&format!("org {i}"))
                .await
                .expect("write");
        }
        // Nothing but the checkpointer copies pages into the database file
        // while the store is open; the schema alone is dozens of pages.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if size >= 16 * 4096 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the WAL was not checkpointed into the database file (still {size} bytes)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
