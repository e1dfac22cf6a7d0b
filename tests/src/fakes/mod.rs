//! Small local servers that speak the real wire protocols of the platforms
//! we cannot reach from a test machine (Telegram, Discord, Slack). The real
//! client crates (teloxide, serenity, slack-morphism) talk to them.

pub mod discord;
pub mod slack;
pub mod telegram;

use anyhow::Result;

/// Serves a router on `127.0.0.1:0` for the rest of the process; returns its base URL.
pub async fn spawn_router(app: axum::Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}
