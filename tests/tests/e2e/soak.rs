//! The soak's short mode: a little under a minute of mixed traffic with
//! kills, on each backend (`baton_tests::soak`; the long run is
//! `cargo run -p baton-tests --bin soak`).

use anyhow::Result;
use baton_tests::soak::{Soak, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_kills_loses_nothing_and_leaves_nothing_stuck() -> Result<()> {
    baton_tests::on_every_backend(|backend| async move {
        let report = run(&Soak::short(backend)).await?;
        eprintln!("{backend:?}: {report}");
        Ok(())
    })
    .await
}
