//! Project automation. `cargo xtask test` is the one command that runs the
//! whole test suite on a fresh machine: it installs what is missing, makes
//! sure PostgreSQL answers, gives the suite a throw-away database, and runs
//! every check. `.ci/run` calls exactly this.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("plugins") => plugins(),
        _ => {
            eprintln!("usage: cargo xtask test [--no-lint] [-- <cargo test args>]");
            eprintln!(
                "       cargo xtask plugins   (build the example plugins into plugins/examples/dist)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test(args: &[String]) -> Result<()> {
    let lint = !args.iter().any(|a| a == "--no-lint");
    let passthrough: Vec<String> = args
        .iter()
        .skip_while(|a| *a != "--")
        .skip(1)
        .cloned()
        .collect();

    step("toolchain: the wasm32-wasip2 target");
    // Plugins and their examples are built for it; rustup is a no-op when present.
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;

    plugins()?;

    step("the browser suite's peers: Debian's Chromium and npm playwright-core");
    ensure_browser()?;

    step("the email tests' peers: Debian's Postfix and Dovecot, and the vmail user");
    ensure_mail_servers()?;

    step("the Slack tests' peer: slack_sdk from PyPI, in a virtual environment");
    let python = ensure_slack_sdk()?;

    step("PostgreSQL: make sure it answers");
    ensure_postgres()?;
    let db = format!("baton_ci_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {db}"))?;
    psql(&format!("CREATE DATABASE {db}"))?;
    let pg_url = format!("postgres://postgres@127.0.0.1:5432/{db}");

    let mut summary = None;
    let outcome = (|| -> Result<()> {
        if lint {
            step("rustfmt");
            run(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
            step("clippy");
            run(Command::new("cargo").args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ]))?;
        }
        step("build the baton binary (the process tests start it)");
        run(Command::new("cargo").args(["build", "--quiet", "-p", "baton"]))?;
        step("cargo test, on SQLite and PostgreSQL");
        let (passed, failed, ok) = cargo_test(&passthrough, &pg_url, &python)?;
        summary = Some((passed, failed));
        if !ok || failed > 0 {
            bail!("the test suite failed");
        }
        Ok(())
    })();

    step("drop the throw-away databases");
    drop_test_databases(&db);
    if let Some((passed, failed)) = summary {
        // One closing line for the whole suite, whatever test binary ran last.
        println!("\nsummary: {passed} passed, {failed} failed");
    }
    outcome
}

/// The official Slack SDK the Slack tests sign their requests with.
const SLACK_SDK: &str = "slack_sdk==3.36.0";

/// A Python with `slack_sdk`, in a virtual environment under `target/`;
/// returns the interpreter's path (the tests read it from `BATON_TEST_PYTHON`).
fn ensure_slack_sdk() -> Result<PathBuf> {
    let venv = root().join("target/test-python");
    let python = venv.join("bin/python");
    let has_sdk = |p: &Path| {
        Command::new(p)
            .args(["-c", "import slack_sdk.signature"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_sdk(&python) {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SLACK_SDK,
        ]))?;
    }
    Ok(python)
}

/// The componentize-py release the Python example is built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Builds the example plugins for wasm32-wasip2 (the Rust ones with cargo,
/// the Python one with componentize-py from PyPI, in a virtual environment
/// under `plugins/examples/target`) and lays each out, ready to drop into a
/// plugins folder, as `plugins/examples/dist/<name>/{plugin.toml,*.wasm}`.
fn plugins() -> Result<()> {
    step("example plugins: cargo build --target wasm32-wasip2");
    let examples = root().join("plugins/examples");
    run(Command::new("cargo")
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(examples.join("Cargo.toml")))?;
    let dist = examples.join("dist");
    let built = examples.join("target/wasm32-wasip2/release");
    for entry in std::fs::read_dir(&examples)? {
        let dir = entry?.path();
        let manifest = dir.join("plugin.toml");
        if !manifest.is_file() || !dir.join("Cargo.toml").is_file() {
            continue;
        }
        let name = dir.file_name().unwrap_or_default();
        let component = component_of(&manifest)?;
        let out = dist.join(name);
        std::fs::create_dir_all(&out)?;
        std::fs::copy(&manifest, out.join("plugin.toml"))?;
        std::fs::copy(built.join(&component), out.join(&component))
            .with_context(|| format!("{} was not built", component))?;
    }

    step("example plugins: the Python one, with componentize-py");
    let venv = examples.join("target/pyenv");
    let tool = venv.join("bin/componentize-py");
    if !tool.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
        ]))?;
    }
    let py = examples.join("python-billing");
    let component = component_of(&py.join("plugin.toml"))?;
    let out = dist.join("python-billing");
    std::fs::create_dir_all(&out)?;
    // Its own narrow world (wit/world.wit) over the SDK's package as a
    // dependency: componentize-py imports every interface of its world.
    let wit = examples.join("target/python-billing-wit");
    std::fs::create_dir_all(wit.join("deps/baton-plugin"))?;
    std::fs::copy(py.join("wit/world.wit"), wit.join("world.wit"))?;
    std::fs::copy(
        root().join("sdk/wit/plugin.wit"),
        wit.join("deps/baton-plugin/plugin.wit"),
    )?;
    run(Command::new(&tool)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "billing", "componentize", "app", "-p"])
        .arg(&py)
        .arg("-o")
        .arg(out.join(&component))
        .stdout(Stdio::null()))?;
    std::fs::copy(py.join("plugin.toml"), out.join("plugin.toml"))?;
    eprintln!("example plugins are in {}", dist.display());
    Ok(())
}

/// The `component` file a plugin.toml names.
fn component_of(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "component").then(|| v.trim().trim_matches('"').to_owned())
        })
        .with_context(|| format!("{} names no component", manifest.display()))
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines.
fn cargo_test(passthrough: &[String], pg_url: &str, python: &Path) -> Result<(u64, u64, bool)> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("cargo")
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(passthrough)
        .env("BATON_TEST_POSTGRES_URL", pg_url)
        .env("BATON_TEST_PYTHON", python)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("cannot read cargo test output")?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count(rest, " passed");
                failed += count(rest, " failed");
            }
        }
    }
    let status = child.wait().context("cargo test did not finish")?;
    Ok((passed, failed, status.success()))
}

/// The number before `label` in a line like `ok. 3 passed; 0 failed; …`.
fn count(line: &str, label: &str) -> u64 {
    line.split(';')
        .find(|part| part.trim_end().ends_with(label.trim()))
        .and_then(|part| part.split_whitespace().rev().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Installs Chromium from Debian and playwright-core from npm when missing.
/// Never the npm `playwright` package: it tries to download its own browser.
fn ensure_browser() -> Result<()> {
    if !Path::new("/usr/bin/chromium").exists() {
        let apt = |args: &[&str]| {
            let mut cmd = Command::new("apt-get");
            cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            run(&mut cmd)
        };
        if apt(&[
            "install",
            "-y",
            "--no-install-recommends",
            "chromium",
            "fonts-liberation",
        ])
        .is_err()
        {
            // A fresh machine may have no package lists yet.
            apt(&["update"])?;
            apt(&[
                "install",
                "-y",
                "--no-install-recommends",
                "chromium",
                "fonts-liberation",
            ])?;
        }
    }
    let browser = root().join("tests/browser");
    if !browser.join("node_modules/playwright-core").exists() {
        // `run` works from the repository root, hence `--prefix`.
        run(Command::new("npm").args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--prefix",
            "tests/browser",
        ]))?;
    }
    Ok(())
}

/// Installs Postfix and Dovecot (IMAP) from Debian when missing, and adds
/// the `vmail` user (uid and gid 5000) the test mailboxes belong to. The
/// tests start private instances of both on free loopback ports and never
/// use the system-wide daemons (a machine with systemd may start them).
fn ensure_mail_servers() -> Result<()> {
    let missing = ["/usr/sbin/postfix", "/usr/sbin/dovecot", "/usr/bin/openssl"]
        .iter()
        .any(|p| !Path::new(p).exists());
    if missing {
        // A local-only Postfix: no question asked during the install.
        let mut debconf = Command::new("debconf-set-selections")
            .stdin(Stdio::piped())
            .spawn()?;
        if let Some(stdin) = debconf.stdin.as_mut() {
            use std::io::Write;
            stdin.write_all(b"postfix postfix/main_mailer_type select Local only\n")?;
        }
        debconf.wait()?;
        let packages = ["postfix", "dovecot-imapd", "openssl"];
        let apt = |args: &[&str]| {
            let mut cmd = Command::new("apt-get");
            cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            run(&mut cmd)
        };
        let install = |apt: &dyn Fn(&[&str]) -> Result<()>| {
            let mut args = vec!["install", "-y", "--no-install-recommends"];
            args.extend(packages);
            apt(&args)
        };
        if install(&apt).is_err() {
            apt(&["update"])?;
            install(&apt)?;
        }
    }
    if !quiet_ok(Command::new("id").args(["-u", "vmail"])) {
        if !quiet_ok(Command::new("getent").args(["group", "5000"])) {
            run(Command::new("groupadd").args(["-g", "5000", "vmail"]))?;
        }
        run(Command::new("useradd").args([
            "-u",
            "5000",
            "-g",
            "5000",
            "-M",
            "-d",
            "/nonexistent",
            "-s",
            "/usr/sbin/nologin",
            "vmail",
        ]))?;
    }
    Ok(())
}

fn psql(sql: &str) -> Result<()> {
    run(Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", PG_ADMIN_URL, "-c", sql])
        .stdout(Stdio::null()))
}

fn pg_answers() -> bool {
    quiet_ok(Command::new("psql").args(["-X", "-q", PG_ADMIN_URL, "-c", "SELECT 1"]))
}

fn ensure_postgres() -> Result<()> {
    if pg_answers() {
        return Ok(());
    }
    eprintln!("PostgreSQL does not answer on 127.0.0.1:5432; starting it");
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .context("no /etc/postgresql: install PostgreSQL (Debian package `postgresql`)")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for version in &versions {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", version, "main", "start"])
            .status();
    }
    for _ in 0..60 {
        if pg_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("PostgreSQL did not start (tried versions {versions:?})")
}

/// Drops the suite's database and every per-test database made inside it.
fn drop_test_databases(db: &str) {
    let list = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            PG_ADMIN_URL,
            "-c",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{db}%'"),
        ])
        .output();
    let Ok(out) = list else { return };
    for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
        if !name.is_empty() {
            let _ = psql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn reads_cargo_test_result_lines() {
        let line =
            "FAILED. 7 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 6.12s";
        assert_eq!(count(line, " passed"), 7);
        assert_eq!(count(line, " failed"), 1);
        assert_eq!(count("ok. 0 passed; 0 failed", " passed"), 0);
    }
}
