//! The browser suite: `tests/browser/handover.mjs` (playwright-core driving
//! Debian's Chromium, headless) plays the whole hand-over through the demo
//! page's widget and two agents' inboxes against a real server.
//!
//! `cargo xtask test` installs Chromium and playwright-core first; run alone,
//! this test says what is missing instead of passing quietly.

use anyhow::{Context, Result, bail};
use baton_tests::{Backend, Server, TestDb};
use std::path::{Path, PathBuf};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> Result<PathBuf> {
    let path = std::env::var_os("BATON_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !path.exists() {
        bail!(
            "{} is missing: install Debian's chromium (`cargo xtask test` does) or set BATON_CHROMIUM",
            path.display()
        );
    }
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_and_two_agents_hand_over_in_a_real_browser() -> Result<()> {
    let chromium = chromium()?;
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").exists() {
        bail!(
            "playwright-core is not installed: run `npm ci` in {} (`cargo xtask test` does)",
            dir.display()
        );
    }
    let db = TestDb::new(Backend::Sqlite).await?;
    // A hand-over leaves a task for Bob, so the Tasks page has something to show.
    let config = "[[bot.handover.actions]]\ntype = \"task\"\nassignee = \"bob@example.com\"\n";
    let server = Server::start(&db, config).await?;
    server
        .add_user(
            "alice@example.com",
            "Alice Martin",
            "responder",
            "alice-password",
        )
        .await?;
    server
        .add_user("bob@example.com", "Bob Chen", "admin", "bob-password")
        .await?;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .join("target/screenshots");
    std::fs::create_dir_all(&shots)?;

    let base = server.base();
    let output = tokio::process::Command::new("node")
        .arg(dir.join("handover.mjs"))
        .current_dir(&dir)
        .env("BATON_URL", &base)
        .env("BATON_CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", &shots)
        .env("AGENT_A", "alice@example.com:alice-password:Alice Martin")
        .env("AGENT_B", "bob@example.com:bob-password:Bob Chen")
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run node (install Node.js)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if !output.status.success() {
        bail!(
            "the browser suite failed ({}); screenshots in {}",
            output.status,
            shots.display()
        );
    }
    for name in [
        "widget-laptop.png",
        "inbox-laptop.png",
        "widget-phone.png",
        "inbox-phone.png",
    ] {
        let file = shots.join(name);
        let size = std::fs::metadata(&file)
            .with_context(|| format!("screenshot {} was not saved", file.display()))?
            .len();
        assert!(size > 10_000, "{name} is suspiciously small ({size} bytes)");
    }
    Ok(())
}
