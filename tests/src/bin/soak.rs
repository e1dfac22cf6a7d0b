//! The soak as a command of its own: mixed traffic with a `kill -9` of a
//! random node every few minutes, then every book checked (see
//! `baton_tests::soak`). Build the server first (`cargo build -p baton`,
//! same profile), then:
//!
//! ```text
//! cargo run -p baton-tests --bin soak -- [--minutes 30] [--kill-every-secs 180]
//!     [--backend sqlite|postgres] [--visitors 20] [--telegram-users 5]
//! ```
//!
//! PostgreSQL (two nodes) needs `BATON_TEST_POSTGRES_URL`. Loopback only.

use anyhow::{Context, Result, bail};
use baton_tests::Backend;
use baton_tests::soak::{Soak, run};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<()> {
    let mut soak = Soak {
        backend: Backend::Sqlite,
        length: Duration::from_secs(30 * 60),
        kill_every: Duration::from_secs(180),
        widget_visitors: 20,
        telegram_users: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => soak.length = Duration::from_secs(value()?.parse::<u64>()? * 60),
            "--kill-every-secs" => soak.kill_every = Duration::from_secs(value()?.parse()?),
            "--visitors" => soak.widget_visitors = value()?.parse()?,
            "--telegram-users" => soak.telegram_users = value()?.parse()?,
            "--backend" => {
                soak.backend = match value()?.as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    other => bail!("--backend is sqlite or postgres, not `{other}`"),
                }
            }
            other => {
                bail!("unknown argument `{other}` (see the doc comment of tests/src/bin/soak.rs)")
            }
        }
    }
    if soak.kill_every.is_zero() {
        bail!("--kill-every-secs must be above 0");
    }
    eprintln!("soak: {soak:?}");
    let report = run(&soak).await?;
    println!("soak passed: {report}");
    Ok(())
}
