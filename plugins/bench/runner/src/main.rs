//! Cost per visitor message of evaluating 1 and 10 trigger plugins
//! (instantiate + call), p50 and p99, for:
//! - Baton's host: the example `vip-trigger` component, a fresh
//!   instance from its `InstancePre` per call, under its limits, with its
//!   `config.get` host call;
//! - the same logic as a native Rust function (the ceiling);
//! - the same logic as an Extism plugin run by the `extism` crate (the
//!   peer), both a fresh instance per call (like Baton) and one instance
//!   reused across calls (Extism's usual way).
//! Prints a table with the ratios. Run by ./run.sh.

use baton_plugins::testing::MockApi;
use baton_plugins::{ConversationInfo, HostApi, PluginHost, PluginSettings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ITERATIONS: usize = 4_000;
const WARMUP: usize = 200;
const TEXT: &str = "Hello, do you ship tents to Norway before the weekend?";

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

fn measure(mut once: impl FnMut()) -> (f64, f64) {
    for _ in 0..WARMUP {
        once();
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        once();
        samples.push(t.elapsed());
    }
    percentiles(samples)
}

/// The trigger's logic, natively: config lookup, keyword match, verdict.
#[inline(never)]
fn native(config: &BTreeMap<String, String>, text: &str) -> Option<(String, u8, Vec<String>)> {
    let keywords = config.get("keywords").map(String::as_str).unwrap_or("vip,urgent");
    let word = baton_plugin_sdk::find_keyword(text, keywords)?;
    Some((format!("the visitor said {word}"), 2, vec!["vip".into()]))
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let vip = root.join("plugins/examples/dist/vip-trigger");
    let extism_wasm = root.join("plugins/bench/target/wasm32-unknown-unknown/release/extism_vip.wasm");
    assert!(vip.join("plugin.toml").is_file(), "run `cargo xtask plugins` first (./run.sh does)");
    assert!(extism_wasm.is_file(), "build extism-vip first (./run.sh does)");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    let conv = ConversationInfo::default();
    let config: BTreeMap<String, String> = [("keywords".to_owned(), "vip,urgent".to_owned())].into();
    let wasm = std::fs::read(&extism_wasm).unwrap();

    println!("plugin triggers: cost per visitor message ({ITERATIONS} messages, µs)");
    println!("{:<44} {:>9} {:>9} {:>12}", "", "p50", "p99", "p50 ratio");
    for n in [1usize, 10] {
        // Baton: n copies of the trigger, each a plugin of its own.
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let to = dir.path().join(format!("vip{i}"));
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&vip).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
            let manifest = to.join("plugin.toml");
            let text = std::fs::read_to_string(&manifest).unwrap().replace("id = \"vip\"", &format!("id = \"vip{i}\""));
            std::fs::write(&manifest, format!("{text}\n[limits]\ndeadline_ms = 1000\n")).unwrap();
        }
        let host = PluginHost::new(dir.path().to_path_buf(), None, PluginSettings::default()).unwrap();
        rt.block_on(host.rescan());
        assert_eq!(host.list().iter().filter(|p| p.state == "on").count(), n);
        let baton = measure(|| {
            let hit = rt.block_on(host.trigger(api.clone(), &conv, TEXT));
            assert!(hit.is_none());
        });
        assert!(host.list().iter().all(|p| p.stats.failures == 0));

        let native = measure(|| {
            for _ in 0..n {
                assert!(std::hint::black_box(native(&config, std::hint::black_box(TEXT))).is_none());
            }
        });

        let manifest = extism::Manifest::new([extism::Wasm::data(wasm.clone())])
            .with_config_key("keywords", "vip,urgent");
        let compiled: Vec<extism::CompiledPlugin> = (0..n)
            .map(|_| extism::CompiledPlugin::new(extism::PluginBuilder::new(manifest.clone()).with_wasi(false)).unwrap())
            .collect();
        let fresh = measure(|| {
            for c in &compiled {
                let mut plugin = extism::Plugin::new_from_compiled(c).unwrap();
                let out: String = plugin.call("on_event", TEXT).unwrap();
                assert!(out.is_empty());
            }
        });
        let mut reused: Vec<extism::Plugin> = compiled.iter().map(|c| extism::Plugin::new_from_compiled(c).unwrap()).collect();
        let warm = measure(|| {
            for p in reused.iter_mut() {
                let out: String = p.call("on_event", TEXT).unwrap();
                assert!(out.is_empty());
            }
        });

        let row = |name: &str, (p50, p99): (f64, f64)| {
            println!("{name:<44} {p50:>9.1} {p99:>9.1} {:>11.1}x", p50 / native.0);
        };
        println!("-- {n} trigger(s)");
        row("native Rust function (ceiling)", native);
        row("Baton host (fresh instance per call)", baton);
        row("Extism 1.30 (fresh instance per call)", fresh);
        row("Extism 1.30 (instance reused)", warm);
        println!(
            "   p50: Baton is {:.1}x faster than Extism with a fresh instance; a reused Extism instance (state kept between calls) is {:.1}x faster than Baton",
            fresh.0 / baton.0,
            baton.0 / warm.0
        );
    }
}
