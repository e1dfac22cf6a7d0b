//! `baton plugin new | check | test`: the plugin author's loop without a
//! server. `new` scaffolds a Rust plugin crate (with the WIT, a manifest and
//! a transcript), `check` loads a component the way the server would and
//! says what is wrong, `test` replays a transcript with host calls mocked.

use anyhow::{Context, Result, bail};
use baton_plugins::testing::{Transcript, replay};
use baton_plugins::{PluginHost, PluginSettings};
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// The WIT package this binary serves, for scaffolded projects.
const WIT: &str = include_str!("../../../sdk/wit/plugin.wit");

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Scaffold a plugin project: a Rust crate with the WIT, plugin.toml and a test transcript.
    New {
        kind: Kind,
        /// The plugin's id and folder name (a-z, 0-9, -).
        name: String,
        /// Where to create the folder (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The Rust SDK to depend on (default: this source tree's sdk/rust).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Load a plugin as the server would (a folder, its plugin.toml or its .wasm) and report.
    Check { path: PathBuf },
    /// Replay a transcript (TOML) against a plugin, with host calls mocked.
    Test {
        /// The plugin's folder (or its plugin.toml).
        path: PathBuf,
        /// The transcript; default `transcript.toml` in the plugin's folder.
        #[arg(long)]
        transcript: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Trigger,
    PowerUp,
    Action,
}

pub async fn run(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New {
            kind,
            name,
            dir,
            sdk,
        } => new(kind, &name, &dir, sdk),
        PluginCommand::Check { path } => check(&path).await,
        PluginCommand::Test {
            path,
            transcript,
            json,
        } => test(&path, transcript, json).await,
    }
}

/// The plugin folder a path names: the folder, or the one holding the file.
fn folder_of(path: &Path) -> Result<PathBuf> {
    let folder = if path.is_dir() {
        path.to_path_buf()
    } else if path.is_file() {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        bail!("{} does not exist", path.display());
    };
    let folder = if folder.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        folder
    };
    if !folder.join("plugin.toml").is_file() {
        bail!("{} has no plugin.toml", folder.display());
    }
    Ok(folder)
}

fn scratch_host() -> Result<PluginHost> {
    let scratch = std::env::temp_dir().join("baton-plugin-check");
    PluginHost::new(scratch, None, PluginSettings::default())
}

async fn check(path: &Path) -> Result<()> {
    let folder = folder_of(path)?;
    let host = scratch_host()?;
    let status = host
        .check_folder(&folder)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", folder.display()))?;
    println!(
        "ok: {} {} ({} world)",
        status.id,
        status.version.unwrap_or_default(),
        status.world.map(|w| w.as_str()).unwrap_or("?")
    );
    println!("  imports: {}", status.imports.join(", "));
    println!("  capabilities: {}", status.capabilities.join(", "));
    if !status.allowed_hosts.is_empty() {
        println!("  allowed hosts: {}", status.allowed_hosts.join(", "));
    }
    if let Some(l) = status.limits {
        println!(
            "  limits: {} ms, {} MiB{}",
            l.deadline_ms,
            l.memory_mb,
            l.fuel.map(|f| format!(", {f} fuel")).unwrap_or_default()
        );
    }
    if let Some(tool) = status.tool {
        println!("  tool: {} — {}", tool.name, tool.description);
        println!("  parameters: {}", tool.parameters);
    }
    if !status.phrases.is_empty() {
        println!("  phrases: {}", status.phrases.join(" | "));
    }
    Ok(())
}

async fn test(path: &Path, transcript: Option<PathBuf>, json: bool) -> Result<()> {
    let folder = folder_of(path)?;
    let file = transcript.unwrap_or_else(|| folder.join("transcript.toml"));
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read the transcript {}", file.display()))?;
    let transcript: Transcript = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message()))?;
    if transcript.turns.is_empty() {
        bail!("{} has no [[turn]]", file.display());
    }
    let reports = replay(&folder, transcript)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", folder.display()))?;
    let failed = reports.iter().filter(|r| r.mismatch.is_some()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            let mark = if r.mismatch.is_some() { "FAIL" } else { "ok" };
            println!("turn {}: {} {}  [{mark}]", r.turn, r.result, r.detail);
            for call in &r.host_calls {
                println!("    host: {}", serde_json::to_string(call)?);
            }
            if let Some(m) = &r.mismatch {
                println!("    {m}");
            }
        }
        println!(
            "{} turns, {} as expected, {failed} not",
            reports.len(),
            reports.len() - failed
        );
    }
    if failed > 0 {
        bail!("{failed} turn(s) did not go as expected");
    }
    Ok(())
}

fn new(kind: Kind, name: &str, dir: &Path, sdk: Option<PathBuf>) -> Result<()> {
    let ok = (1..=60).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("the name `{name}` must be 1 to 60 of a-z, 0-9 and -, starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let sdk = match sdk {
        Some(p) => p,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the Rust SDK is not at {}; pass --sdk <path to baton's sdk/rust>",
            sdk.display()
        )
    })?;
    let krate = name.replace('-', "_");
    let (world, lib, manifest_extra, transcript) = match kind {
        Kind::Trigger => ("trigger", TRIGGER_LIB, "", TRIGGER_TRANSCRIPT),
        Kind::PowerUp => (
            "power-up",
            POWER_UP_LIB,
            "phrases = [\"hello plugin\"]\n",
            POWER_UP_TRANSCRIPT,
        ),
        Kind::Action => ("action", ACTION_LIB, "", ACTION_TRANSCRIPT),
    };
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::create_dir_all(root.join("wit"))?;
    std::fs::write(root.join("wit/plugin.wit"), WIT)?;
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nbaton-plugin-sdk = {{ path = {sdk:?} }}\n\n\
             [profile.release]\nopt-level = \"s\"\nlto = true\nstrip = true\npanic = \"abort\"\n\n\
             # A workspace of its own, wherever it is created.\n[workspace]\n",
            sdk = sdk.display().to_string()
        ),
    )?;
    std::fs::write(root.join("src/lib.rs"), lib)?;
    std::fs::write(
        root.join("plugin.toml"),
        format!(
            "id = \"{name}\"\nversion = \"0.1.0\"\nworld = \"{world}\"\n\
             component = \"target/wasm32-wasip2/release/{krate}.wasm\"\n\
             description = \"\"\n\
             # Host interfaces the plugin may import: log, kv, http, conversation,\n\
             # tags, messages, notify, config. Baton refuses any other.\n\
             capabilities = [\"log\", \"config\"]\n\
             # allowed_hosts = [\"api.example.com\"]   # with the http capability\n\
             {manifest_extra}\n[limits]\n# deadline_ms = 20\n# memory_mb = 64\n# fuel = 10000000\n\n\
             [config]\nkeyword = \"help\"\n"
        ),
    )?;
    std::fs::write(root.join("transcript.toml"), transcript)?;
    std::fs::write(root.join(".gitignore"), "/target\n")?;
    std::fs::write(
        root.join("README.md"),
        format!(
            "# {name}\n\nA Baton {world} plugin.\n\n\
             ```sh\nrustup target add wasm32-wasip2\n\
             cargo build --release --target wasm32-wasip2\n\
             baton plugin check .\n\
             baton plugin test .          # replays transcript.toml, host calls mocked\n```\n\n\
             Install: copy (or link) this folder into Baton's plugins folder\n\
             (`BATON_PLUGINS_DIR`, by default `<data dir>/plugins`); it loads without a restart.\n"
        ),
    )?;
    println!("created {} ({world})", root.display());
    println!(
        "next: cd {} && cargo build --release --target wasm32-wasip2 && baton plugin test .",
        root.display()
    );
    Ok(())
}

const TRIGGER_LIB: &str = r#"//! A trigger: hands the conversation to a human when the visitor says the keyword.
baton_plugin_sdk::trigger!(Plugin);

struct Plugin;

impl Guest for Plugin {
    fn on_event(event: Event) -> Option<Escalation> {
        let keyword = config::get("keyword").unwrap_or_else(|| "help".into());
        let word = baton_plugin_sdk::find_keyword(&event.text, &keyword)?;
        log::log(log::Level::Info, &format!("keyword {word} seen"));
        Some(Escalation {
            note: Some(format!("the visitor said {word}")),
            priority: 1,
            department: None,
            tags: vec![word],
        })
    }
}
"#;

const POWER_UP_LIB: &str = r##"//! A power-up: asks the visitor's name, then greets them.
baton_plugin_sdk::power_up!(Plugin);

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Descriptor {
        Descriptor {
            name: "greet".into(),
            description: "Greet the visitor by name.".into(),
            parameters: r#"{"type":"object","properties":{"name":{"type":"string"}}}"#.into(),
        }
    }

    fn invoke(call: Invocation) -> Step {
        if call.turn == 0 {
            return Step::Ask("What's your name?".into());
        }
        Step::Reply(format!("Nice to meet you, {}!", call.text.trim()))
    }
}
"##;

const ACTION_LIB: &str = r#"//! An action: runs after each hand-over.
baton_plugin_sdk::action!(Plugin);

struct Plugin;

impl Guest for Plugin {
    fn run(job: Job) -> Outcome {
        log::log(log::Level::Info, &format!("handed over: {} ({})", job.conversation.id, job.reason));
        Outcome::Done(format!("saw the hand-over of {}", job.conversation.id))
    }
}
"#;

const TRIGGER_TRANSCRIPT: &str = r#"# Replayed by `baton plugin test .`: each turn, what must come of it.
[[turn]]
visitor = "hello there"
expect = "none"

[[turn]]
visitor = "I need HELP with my order"
expect = "escalate"
expect_text = "help"
"#;

const POWER_UP_TRANSCRIPT: &str = r#"# Replayed by `baton plugin test .`: each turn, what must come of it.
[[turn]]
visitor = "hello plugin"
expect = "ask"

[[turn]]
visitor = "Ada"
expect = "reply"
expect_text = "Nice to meet you, Ada!"
"#;

const ACTION_TRANSCRIPT: &str = r#"# Replayed by `baton plugin test .`: each hand-over, what must come of it.
[conversation]
id = "c-1"
channel = "web"

[[turn]]
handover = "visitor_request"
expect = "done"
expect_text = "c-1"
"#;
