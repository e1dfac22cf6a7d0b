//! Every task the runtime spawns, so that a stop knows them all.
//!
//! Two kinds: *held* tasks own work in the database under a lease (webhook
//! deliveries, platform deliveries, plugin actions); a stop lets them hand
//! it back and waits for them, up to a deadline. The others (bot turns,
//! channel loops, sweeps) are cut when the stop comes; a bot turn cut short
//! is still due in the database, and the next node to look runs it again
//! (see `turn.rs`).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::warn;

#[derive(Default)]
pub(crate) struct Supervisor {
    held: Mutex<JoinSet<()>>,
    others: Mutex<JoinSet<()>>,
}

impl Supervisor {
    /// A task that the stop waits for.
    pub(crate) fn spawn_held(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// A task that the stop cuts.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.others.lock().unwrap_or_else(|p| p.into_inner());
        // Reap what ended, so the set holds only what runs.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// Waits up to `grace` for the held tasks (which were told to stop),
    /// then cuts everything still running.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        let mut held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        let waited =
            tokio::time::timeout(grace, async { while held.join_next().await.is_some() {} }).await;
        if waited.is_err() {
            warn!(tasks = held.len(), "background tasks did not stop in time");
            held.shutdown().await;
        }
        let mut others =
            std::mem::take(&mut *self.others.lock().unwrap_or_else(|p| p.into_inner()));
        others.shutdown().await;
    }
}
