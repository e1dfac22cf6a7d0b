//! In-process fan-out of committed events, and across nodes through
//! PostgreSQL `LISTEN/NOTIFY`.
//!
//! On SQLite (one node) the runtime publishes an event right after its
//! transaction commits. On PostgreSQL every node, the writing one included,
//! learns of events only through the `baton_events` channel, whose payload is
//! the outbox sequence number; so all nodes see the same events in commit
//! order, and a node never sees an event whose transaction rolled back.

use baton_store::{Backend, Store, StoredEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::{debug, warn};

/// Subscribers that lag this far behind lose the oldest events and must resync.
const CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<StoredEvent>>,
    backend: Backend,
}

impl EventBus {
    pub fn new(backend: Backend) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx, backend }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.tx.subscribe()
    }

    /// Called after a commit. On PostgreSQL the listener publishes instead.
    pub(crate) fn committed(&self, events: Vec<StoredEvent>) {
        if self.backend == Backend::Sqlite {
            for e in events {
                self.publish(Arc::new(e));
            }
        }
    }

    fn publish(&self, event: Arc<StoredEvent>) {
        // No subscriber is not an error: nobody is watching right now.
        let _ = self.tx.send(event);
    }

    /// Runs the PostgreSQL listener until the process ends, reconnecting as
    /// needed; it publishes every event after `from` (read before the node
    /// started serving, so nothing committed since is skipped).
    pub(crate) async fn listen_postgres(self, store: Store, from: i64) {
        let mut last_seen = from;
        loop {
            match self.listen_once(&store, &mut last_seen).await {
                Ok(()) => {}
                Err(e) => warn!(error = %e, "event listener lost its connection; reconnecting"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn listen_once(&self, store: &Store, last_seen: &mut i64) -> Result<(), sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect(store.url()).await?;
        listener.listen("baton_events").await?;
        // Whatever committed while we were away is read from the outbox.
        self.catch_up(store, last_seen).await;
        loop {
            match listener.try_recv().await? {
                Some(note) => {
                    let Ok(seq) = note.payload().parse::<i64>() else {
                        warn!(
                            payload = note.payload(),
                            "ignoring a malformed event notification"
                        );
                        continue;
                    };
                    match store.event_by_seq(seq).await {
                        Ok(Some(event)) => {
                            *last_seen = (*last_seen).max(seq);
                            self.publish(Arc::new(event));
                        }
                        Ok(None) => debug!(seq, "notified event is gone"),
                        Err(e) => warn!(seq, error = %e, "cannot load a notified event"),
                    }
                }
                // The connection dropped: notifications may have been missed.
                None => self.catch_up(store, last_seen).await,
            }
        }
    }

    async fn catch_up(&self, store: &Store, last_seen: &mut i64) {
        match store.events_after(*last_seen, 1000).await {
            Ok(events) => {
                for e in events {
                    *last_seen = (*last_seen).max(e.seq);
                    self.publish(Arc::new(e));
                }
            }
            Err(e) => warn!(error = %e, "cannot catch up on events"),
        }
    }
}
