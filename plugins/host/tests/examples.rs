//! The example plugins (built by `cargo xtask plugins`) and the bad ones,
//! run by the host against an in-memory Baton.

use baton_plugins::testing::{HostCall, MockApi};
use baton_plugins::{
    CallError, ConversationInfo, HostApi, HttpResponse, Outcome, PluginHost, PluginSettings, Step,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dist() -> PathBuf {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dist");
    assert!(
        dist.join("vip-trigger/plugin.toml").is_file(),
        "the example plugins are not built: run `cargo xtask plugins` (cargo xtask test does)"
    );
    dist
}

/// A plugins folder holding copies of the named examples.
fn folder(examples: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in examples {
        copy_example(name, &dir.path().join(name));
    }
    dir
}

/// Copies an example. Its deadline becomes a generous 5 s (unless the
/// manifest sets limits), so that a loaded CI machine cannot make a test
/// flaky; tests of the deadline itself set their own.
fn copy_example(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(dist().join(name)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
    let manifest = to.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    if !text.contains("[limits]") {
        std::fs::write(&manifest, format!("{text}\n[limits]\ndeadline_ms = 5000\n")).unwrap();
    }
}

/// Replaces the copied manifest's generous deadline with `limits`.
fn set_limits(dir: &Path, limits: &str) {
    let path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(path, text.replace("deadline_ms = 5000", limits)).unwrap();
}

/// Rewrites one `key = value` line of a copied plugin.toml (or appends it).
fn set_manifest(dir: &Path, key: &str, value: &str) {
    let path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.split('=').next().map(str::trim) == Some(key) && !found {
                found = true;
                format!("{key} = {value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "{key} not in {}", path.display());
    lines.push(String::new());
    std::fs::write(path, lines.join("\n")).unwrap();
}

async fn host(dir: &Path) -> Arc<PluginHost> {
    let host = PluginHost::new(
        dir.to_path_buf(),
        Some(dir.join(".cache")),
        PluginSettings::default(),
    )
    .unwrap();
    host.rescan().await;
    Arc::new(host)
}

fn visitor(email: Option<&str>) -> ConversationInfo {
    let mut c = ConversationInfo::default();
    c.contact.email = email.map(str::to_owned);
    c
}

#[tokio::test]
async fn the_vip_trigger_escalates_on_its_keywords_only() {
    let dir = folder(&["vip-trigger"]);
    let host = host(dir.path()).await;
    let list = host.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, "on", "{:?}", list[0].error);
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    assert!(
        host.trigger(api.clone(), &visitor(None), "where is my tent")
            .await
            .is_none()
    );
    let (id, e) = host
        .trigger(api.clone(), &visitor(None), "This is URGENT!")
        .await
        .unwrap();
    assert_eq!(id, "vip");
    assert_eq!(e.tags, vec!["vip"]);
    assert_eq!(e.priority, 2);
    assert!(e.note.unwrap().contains("urgent"));
    let stats = &host.list()[0].stats;
    assert_eq!((stats.calls, stats.failures), (2, 0));
}

#[tokio::test]
async fn operator_config_overrides_the_manifest_defaults() {
    let dir = folder(&["vip-trigger"]);
    let mut settings = PluginSettings::default();
    settings.config.insert(
        "vip".into(),
        [(
            "vip_emails".to_owned(),
            toml::Value::from("boss@example.com"),
        )]
        .into(),
    );
    let host = PluginHost::new(dir.path().to_path_buf(), None, settings).unwrap();
    host.rescan().await;
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    let hit = host
        .trigger(api.clone(), &visitor(Some("Boss@example.com")), "hello")
        .await;
    assert!(hit.unwrap().1.note.unwrap().contains("VIP list"));
    assert!(
        host.trigger(api, &visitor(Some("ada@example.com")), "hello")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn the_talk_to_a_human_power_up_collects_an_email_over_turns() {
    let dir = folder(&["talk-to-human"]);
    let host = host(dir.path()).await;
    let ups = host.power_ups();
    assert_eq!(ups.len(), 1, "{:?}", host.list()[0].error);
    assert_eq!(ups[0].descriptor.name, "talk_to_a_human");
    assert!(ups[0].phrases.iter().any(|p| p == "talk to a human"));
    let mock = Arc::new(MockApi::default());
    let api: Arc<dyn HostApi> = mock.clone();
    let conv = visitor(None);
    let id = "talk-to-human";
    let step = host
        .invoke_power_up(api.clone(), id, &conv, "{}", "talk to a human", 0)
        .await
        .unwrap();
    assert!(
        matches!(&step, Step::Ask(q) if q.contains("email")),
        "{step:?}"
    );
    let step = host
        .invoke_power_up(api.clone(), id, &conv, "{}", "no thanks", 1)
        .await
        .unwrap();
    assert!(
        matches!(&step, Step::Ask(q) if q.contains("type it again")),
        "{step:?}"
    );
    let step = host
        .invoke_power_up(api.clone(), id, &conv, "{}", "it's ada@example.com", 2)
        .await
        .unwrap();
    let Step::Escalate(e) = step else {
        panic!("{step:?}")
    };
    assert!(e.note.unwrap().contains("ada@example.com"));
    let calls = mock.take_calls();
    assert!(calls.iter().any(|c| matches!(c, HostCall::Notify { email: None, text } if text.contains("ada@example.com"))), "{calls:?}");
    // The tries counter is cleaned up.
    assert!(mock.kv.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_order_status_power_up_calls_its_allow_listed_api() {
    let dir = folder(&["order-status"]);
    let host = host(dir.path()).await;
    let mock = Arc::new(MockApi {
        http: [(
            "GET http://127.0.0.1:8081/orders/10234".to_owned(),
            HttpResponse {
                status: 200,
                headers: vec![],
                body: r#"{"status":"shipped","eta":"Friday"}"#.into(),
            },
        )]
        .into(),
        ..MockApi::default()
    });
    let api: Arc<dyn HostApi> = mock.clone();
    let conv = visitor(None);
    let step = host
        .invoke_power_up(
            api.clone(),
            "order-status",
            &conv,
            "{}",
            "where is my order",
            0,
        )
        .await
        .unwrap();
    assert!(matches!(&step, Step::Ask(_)), "{step:?}");
    let step = host
        .invoke_power_up(api.clone(), "order-status", &conv, "{}", "#10234", 1)
        .await
        .unwrap();
    assert_eq!(
        step,
        Step::Reply("Order 10234 is shipped, expected Friday.".into())
    );
    let step = host
        .invoke_power_up(
            api,
            "order-status",
            &conv,
            r#"{"order_number":"999999"}"#,
            "",
            0,
        )
        .await
        .unwrap();
    assert!(
        matches!(&step, Step::Reply(t) if t.contains("can't find order 999999")),
        "{step:?}"
    );
}

#[tokio::test]
async fn actions_report_done_retry_and_failed() {
    let dir = folder(&["crm-task", "tag-notify"]);
    let host = host(dir.path()).await;
    assert_eq!(host.actions(), vec!["crm-task", "tag-notify"]);
    let ok = Arc::new(MockApi {
        http: [(
            "POST http://127.0.0.1:8082/tasks".to_owned(),
            HttpResponse {
                status: 201,
                headers: vec![],
                body: r#"{"id":42}"#.into(),
            },
        )]
        .into(),
        ..MockApi::default()
    });
    let conv = visitor(Some("ada@example.com"));
    let out = host
        .run_action(ok.clone(), "crm-task", &conv, "k1", "visitor_request", 1)
        .await
        .unwrap();
    assert_eq!(out, Outcome::Done("CRM task 42 created".into()));
    let calls = ok.take_calls();
    assert!(
        matches!(&calls[0], HostCall::Fetch { body: Some(b), .. } if b.contains("\"idempotency_key\":\"k1\"")),
        "{calls:?}"
    );
    let down = Arc::new(MockApi {
        http: [(
            "POST http://127.0.0.1:8082/tasks".to_owned(),
            HttpResponse {
                status: 503,
                ..HttpResponse::default()
            },
        )]
        .into(),
        ..MockApi::default()
    });
    let out = host
        .run_action(down, "crm-task", &conv, "k1", "visitor_request", 1)
        .await
        .unwrap();
    assert_eq!(out, Outcome::Retry("CRM answered 503".into()));
    let out = host
        .run_action(ok.clone(), "tag-notify", &conv, "k2", "frustration", 1)
        .await
        .unwrap();
    assert_eq!(
        out,
        Outcome::Done("tagged `handed-over`, team notified".into())
    );
    assert!(
        ok.conversation
            .lock()
            .unwrap()
            .tags
            .contains(&"handed-over".to_owned())
    );
}

#[tokio::test]
async fn a_python_trigger_built_with_componentize_py_runs() {
    let dir = folder(&["python-billing"]);
    let host = host(dir.path()).await;
    let status = &host.list()[0];
    assert_eq!(status.state, "on", "{:?}", status.error);
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    assert!(
        host.trigger(api.clone(), &visitor(None), "hello there")
            .await
            .is_none()
    );
    let (id, e) = host
        .trigger(api.clone(), &visitor(None), "I want a REFUND now")
        .await
        .unwrap();
    assert_eq!(id, "billing");
    assert_eq!(e.tags, vec!["billing"]);
    assert_eq!(
        host.list()[0].stats.failures,
        0,
        "{:?}",
        host.list()[0].stats.last_error
    );
}

// ----- bad plugins --------------------------------------------------------

/// A folder with the misbehaving trigger in `mode`, beside the VIP trigger.
async fn misbehaving(mode: &str, extra: &[(&str, &str)]) -> (tempfile::TempDir, Arc<PluginHost>) {
    let dir = folder(&["vip-trigger"]);
    let bad = dir.path().join("aaa-misbehave");
    copy_example("misbehave", &bad);
    set_manifest(&bad, "mode", &format!("\"{mode}\""));
    for (k, v) in extra {
        set_manifest(&bad, k, v);
    }
    let host = host(dir.path()).await;
    (dir, host)
}

fn misbehave_stats(host: &PluginHost) -> baton_plugins::PluginStatus {
    host.list()
        .into_iter()
        .find(|p| p.id == "misbehave")
        .unwrap()
}

#[tokio::test]
async fn an_infinite_loop_times_out_and_the_next_trigger_still_runs() {
    let (dir, _) = misbehaving("loop", &[]).await;
    set_limits(&dir.path().join("aaa-misbehave"), "deadline_ms = 200");
    let host = host(dir.path()).await;
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    // The looping trigger (first by id) fails open; the VIP trigger decides.
    let (id, _) = host
        .trigger(api.clone(), &visitor(None), "urgent please")
        .await
        .unwrap();
    assert_eq!(id, "vip");
    let s = misbehave_stats(&host);
    assert_eq!((s.stats.failures, s.stats.timeouts), (1, 1));
    assert!(s.stats.last_error.unwrap().contains("timed out"));
}

#[tokio::test]
async fn a_loop_under_a_fuel_budget_runs_out_of_fuel() {
    let (dir, _) = misbehaving("loop", &[]).await;
    set_limits(
        &dir.path().join("aaa-misbehave"),
        "fuel = 1000000\ndeadline_ms = 60000",
    );
    let host = host(dir.path()).await;
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    assert!(host.trigger(api, &visitor(None), "hello").await.is_none());
    let s = misbehave_stats(&host);
    assert!(
        s.stats
            .last_error
            .clone()
            .unwrap()
            .contains("ran out of fuel"),
        "{:?}",
        s.stats.last_error
    );
}

#[tokio::test]
async fn a_memory_hog_hits_its_cap() {
    let (dir, _) = misbehaving("hog", &[]).await;
    set_limits(
        &dir.path().join("aaa-misbehave"),
        "memory_mb = 16\ndeadline_ms = 60000",
    );
    let host = host(dir.path()).await;
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    assert!(host.trigger(api, &visitor(None), "hello").await.is_none());
    let s = misbehave_stats(&host);
    assert!(
        s.stats.last_error.clone().unwrap().contains("memory limit"),
        "{:?}",
        s.stats.last_error
    );
}

#[tokio::test]
async fn a_panic_is_a_trap_and_repeated_failures_switch_the_plugin_off() {
    let (_dir, host) = misbehaving("trap", &[]).await;
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    for _ in 0..5 {
        assert!(
            host.trigger(api.clone(), &visitor(None), "hello")
                .await
                .is_none()
        );
    }
    let s = misbehave_stats(&host);
    let last = s.stats.last_error.clone().unwrap();
    assert!(
        last.contains("misbehave: a plugin bug"),
        "the panic message is kept: {last}"
    );
    assert!(
        s.stats.last_error.clone().unwrap().contains("trapped"),
        "{:?}",
        s.stats.last_error
    );
    assert_eq!(s.state, "switched_off");
    assert!(
        s.stats
            .switched_off
            .unwrap()
            .contains("5 failed calls in a row")
    );
    // Off means not called any more; switching it on again gives it a chance.
    host.trigger(api.clone(), &visitor(None), "hello").await;
    assert_eq!(misbehave_stats(&host).stats.calls, 5);
    host.switch("misbehave", true).unwrap();
    assert_eq!(misbehave_stats(&host).state, "on");
    host.switch("misbehave", false).unwrap();
    assert_eq!(misbehave_stats(&host).state, "off");
    assert_eq!(
        host.switch("nope", true),
        Err(CallError::NotFound("nope".into()))
    );
}

#[tokio::test]
async fn a_host_off_the_allow_list_is_refused() {
    let (_dir, host) =
        misbehaving("forbidden-host", &[("url", "\"http://127.0.0.1:9/steal\"")]).await;
    let mock = Arc::new(MockApi::default());
    let api: Arc<dyn HostApi> = mock.clone();
    assert!(host.trigger(api, &visitor(None), "hello").await.is_none());
    assert!(mock.take_calls().is_empty(), "the request must never leave");
    assert_eq!(misbehave_stats(&host).stats.failures, 0);
}

#[tokio::test]
async fn garbage_wrong_world_and_ungranted_imports_are_refused_at_load() {
    let dir = folder(&["vip-trigger"]);
    let garbage = dir.path().join("garbage");
    copy_example("vip-trigger", &garbage);
    set_manifest(&garbage, "id", "\"garbage\"");
    std::fs::write(
        garbage.join("vip_trigger.wasm"),
        b"\0asm\x0d\0\x01\0 this is not a component",
    )
    .unwrap();
    let text_file = dir.path().join("text");
    copy_example("vip-trigger", &text_file);
    set_manifest(&text_file, "id", "\"text\"");
    std::fs::write(text_file.join("vip_trigger.wasm"), b"hello").unwrap();
    let wrong = dir.path().join("wrong");
    copy_example("vip-trigger", &wrong);
    set_manifest(&wrong, "id", "\"wrong\"");
    set_manifest(&wrong, "world", "\"action\"");
    let ungranted = dir.path().join("ungranted");
    copy_example("misbehave", &ungranted);
    set_manifest(&ungranted, "id", "\"ungranted\"");
    set_manifest(&ungranted, "capabilities", "[\"log\", \"config\"]");
    set_manifest(&ungranted, "allowed_hosts", "[]");
    let host = host(dir.path()).await;
    let error = |id: &str| {
        let s = host.list().into_iter().find(|p| p.id == id).unwrap();
        assert_eq!(s.state, "error");
        s.error.unwrap()
    };
    assert!(
        error("garbage").contains("not a WebAssembly component"),
        "{}",
        error("garbage")
    );
    assert!(
        error("text").contains("not a WebAssembly file"),
        "{}",
        error("text")
    );
    let e = error("wrong");
    assert!(
        e.contains("does not export `run`") && e.contains("on-event"),
        "{e}"
    );
    let e = error("ungranted");
    assert!(
        e.contains("baton:plugin/http") && e.contains("does not grant the `http` capability"),
        "{e}"
    );
    // The good plugin beside them works.
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    assert!(
        host.trigger(api, &visitor(None), "vip here")
            .await
            .is_some()
    );
}

#[tokio::test]
async fn plugins_reload_when_their_folder_changes() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let api: Arc<dyn HostApi> = Arc::new(MockApi::default());
    assert!(
        host.trigger(api.clone(), &visitor(None), "urgent")
            .await
            .is_none()
    );
    copy_example("vip-trigger", &dir.path().join("vip"));
    host.rescan().await;
    assert!(
        host.trigger(api.clone(), &visitor(None), "urgent")
            .await
            .is_some()
    );
    // A new version (other keywords) replaces the old one.
    set_manifest(&dir.path().join("vip"), "keywords", "[\"gold\"]");
    host.rescan().await;
    assert!(
        host.trigger(api.clone(), &visitor(None), "urgent")
            .await
            .is_none()
    );
    assert!(
        host.trigger(api.clone(), &visitor(None), "gold member")
            .await
            .is_some()
    );
    std::fs::remove_dir_all(dir.path().join("vip")).unwrap();
    host.rescan().await;
    assert!(host.list().is_empty());
    assert!(
        host.trigger(api, &visitor(None), "gold member")
            .await
            .is_none()
    );
    // The compiled artifact was cached.
    assert!(
        std::fs::read_dir(dir.path().join(".cache"))
            .unwrap()
            .count()
            >= 1
    );
}
