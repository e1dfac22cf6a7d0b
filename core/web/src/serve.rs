//! The connection loop: HTTP/1.1 over hyper, with the timeouts that
//! `axum::serve` does not set.
//!
//! A connection must send a complete request head within
//! [`HEADER_READ_TIMEOUT`], whether it is new or idle between two requests
//! on a kept-alive connection; otherwise it is closed. Without this, a
//! client that opens connections and sends nothing (or one byte at a time)
//! holds a task and a socket each for as long as it likes.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long a client may take to send a request head, and how long a
/// kept-alive connection may sit idle before its next one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for requests under way before it closes what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// requests under way finish (up to ten seconds) and cuts what is left.
/// Upgraded connections (WebSockets) run on their own: the web state's
/// `stop_streams` ends them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment
                    // rather than spin; a reset before accept is nothing.
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap the connections that ended, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        // Chat frames are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            req.map(axum::body::Body::new)
        });
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, %remote, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        stopping = true;
                        if changed.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "stopping: requests still under way after {}s are cut",
            DRAIN_TIMEOUT.as_secs()
        );
        connections.shutdown().await;
    }
    Ok(())
}
