//! The end-to-end test harness: it starts the real server (in this process on
//! `127.0.0.1:0`, or as a `baton` process) and talks to it over HTTP and
//! WebSocket exactly as an outside client would.
//!
//! Databases: every test gets its own. SQLite lives in a temp dir;
//! PostgreSQL, when `BATON_TEST_POSTGRES_URL` is set, gets a fresh database
//! created on that server for each test.

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

pub mod fakes;
pub mod mail;
pub mod soak;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which database a test runs on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL too when `BATON_TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if postgres_base_url().is_some() {
        out.push(Backend::Postgres);
    }
    out
}

/// Runs one test body on every backend, naming the backend in any failure.
pub async fn on_every_backend<F, Fut>(body: F) -> Result<()>
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for backend in backends() {
        body(backend)
            .await
            .map_err(|e| e.context(format!("on {backend:?}")))?;
    }
    Ok(())
}

fn postgres_base_url() -> Option<String> {
    std::env::var("BATON_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A throw-away database; the SQLite folder is removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    /// The URL a server should be given (`--database-url`).
    pub url: String,
    pub dir: tempfile::TempDir,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub async fn new(backend: Backend) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let url = match backend {
            Backend::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("baton.db").display()
            ),
            Backend::Postgres => {
                let base = postgres_base_url()
                    .ok_or_else(|| anyhow!("BATON_TEST_POSTGRES_URL is not set"))?;
                let name = format!(
                    "{}_t{}_{}",
                    db_name(&base),
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&base).await.with_context(|| {
                    format!("cannot reach PostgreSQL at {}", baton_store::redact(&base))
                })?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut admin)
                    .await
                    .with_context(|| format!("cannot create database {name}"))?;
                with_db_name(&base, &name)
            }
        };
        Ok(Self { backend, url, dir })
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

fn db_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or("baton");
    path.split('?').next().unwrap_or("baton").to_owned()
}

fn with_db_name(url: &str, name: &str) -> String {
    let (head, tail) = url.rsplit_once('/').unwrap_or((url, ""));
    let query = tail
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{head}/{name}{query}")
}

/// A server running inside the test process.
pub struct Server {
    pub addr: SocketAddr,
    pub runtime: baton_runtime::Runtime,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts the full server (runtime, background work, router) on `127.0.0.1:0`.
    pub async fn start(db: &TestDb, config_toml: &str) -> Result<Server> {
        Self::start_with_env(db, config_toml, &[]).await
    }

    /// [`Server::start`] with these environment variables (channel secrets)
    /// seen by the server alone, not the whole test process.
    pub async fn start_with_env(
        db: &TestDb,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> Result<Server> {
        // `BATON_TEST_LOG=debug` shows the server's log while a test runs.
        if let Ok(filter) = std::env::var("BATON_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let config = baton_runtime::Config::from_toml(config_toml).context("test config")?;
        let store = baton_store::Store::connect(&db.url)
            .await
            .context("connect")?;
        store.migrate().await.context("migrate")?;
        let lookup = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let runtime = baton::build_runtime_with_env(store, config, lookup)?;
        runtime.load_bot_settings().await.context("bot settings")?;
        runtime.start_background().await?;
        let app = baton_web::router(baton_web::AppState::new(
            runtime.clone(),
            Default::default(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = baton_web::serve(listener, app, std::future::pending()).await;
        });
        Ok(Server {
            addr,
            runtime,
            task,
        })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a staff member straight in the store (the CLI does the same).
    pub async fn add_user(
        &self,
        email: &str,
        name: &str,
        role: &str,
        password: &str,
    ) -> Result<()> {
        add_user(self.runtime.store(), email, name, role, password).await
    }
}

impl Server {
    /// Creates `<first name>@example.com` with password `<first name>-password`
    /// (lower-cased) and signs in as them.
    pub async fn staff(&self, name: &str, role: &str) -> Result<StaffClient> {
        let first = name
            .split_whitespace()
            .next()
            .unwrap_or(name)
            .to_lowercase();
        let (email, password) = (format!("{first}@example.com"), format!("{first}-password"));
        self.add_user(&email, name, role, &password).await?;
        StaffClient::login(&self.base(), &email, &password).await
    }

    /// The id of the conversation on a platform thread (a bot conversation
    /// is not in the inbox list, so the test asks the store), once it exists.
    pub async fn conversation_on(
        &self,
        channel: baton_model::ChannelKind,
        thread_key: &str,
        secs: u64,
    ) -> Result<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(c) = self
                .runtime
                .store()
                .conversation_by_thread(channel, thread_key)
                .await?
            {
                return Ok(c.id);
            }
            if std::time::Instant::now() > deadline {
                bail!("no {channel} conversation on thread {thread_key}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn add_user(
    store: &baton_store::Store,
    email: &str,
    name: &str,
    role: &str,
    password: &str,
) -> Result<()> {
    let hash = baton_runtime::auth::hash_password(password).map_err(|e| anyhow!(e))?;
    store
        .create_user(
            baton_store::NewUser {
                email,
                name,
                role: role.parse().map_err(|e| anyhow!("{e}"))?,
                password_hash: &hash,
            },
            baton_runtime::Clock::system().now(),
        )
        .await
        .with_context(|| format!("cannot add user {email}"))?;
    Ok(())
}

/// A `baton` process, for tests that restart it or run several nodes.
pub struct Process {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    pub log: PathBuf,
}

impl Process {
    /// Runs `baton serve` on a free port with this database and config.
    pub async fn start(
        binary: &Path,
        db: &TestDb,
        config_toml: &str,
        log_name: &str,
    ) -> Result<Process> {
        Self::start_with_env(binary, db, config_toml, log_name, &[]).await
    }

    /// Like [`Process::start`], with extra environment variables (secrets).
    pub async fn start_with_env(
        binary: &Path,
        db: &TestDb,
        config_toml: &str,
        log_name: &str,
        env: &[(&str, &str)],
    ) -> Result<Process> {
        let port = free_port()?;
        let config = db.data_dir().join(format!("{log_name}.toml"));
        std::fs::write(&config, config_toml)?;
        let log = db.data_dir().join(format!("{log_name}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .arg("serve")
            .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
            .env("BATON_DATA_DIR", db.data_dir())
            .env("BATON_DATABASE_URL", &db.url)
            .env("BATON_CONFIG", &config)
            .env("BATON_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut p = Process { addr, child, log };
        p.wait_healthy().await?;
        Ok(p)
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "baton exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(r) = client
                .get(format!("http://{}/healthz", self.addr))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "baton did not become healthy: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id, for reading `/proc/<pid>/status`.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends the named signal (`STOP` hangs the process, `CONT` wakes it).
    pub fn signal(&self, name: &str) -> Result<()> {
        let pid = self.child.id().context("the process has exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        ensure!(status.success(), "kill -{name} {pid} failed: {status}");
        Ok(())
    }

    /// What the process has logged so far.
    pub fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process the way an operator would (SIGTERM), then waits.
    /// [`Process::stop`], then what the process logged.
    pub async fn stop_and_read_log(self) -> Result<String> {
        let log = self.log.clone();
        self.stop().await?;
        Ok(std::fs::read_to_string(log)?)
    }

    /// Kills the process with SIGKILL, as a crash would: nothing is handed
    /// back, nothing is flushed.
    pub async fn kill(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                self.child.kill().await?;
                Ok(())
            }
        }
    }
}

/// A receiver that takes connections and never answers: a request sent to
/// it stays under way until [`Silent::close`].
pub struct Silent {
    pub port: u16,
    held: Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn bind() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let held = held.clone();
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    held.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
                }
            })
        };
        Ok(Self { port, held, task })
    }

    /// Waits until someone has connected.
    pub async fn called(&self, secs: u64) -> Result<()> {
        eventually(
            secs,
            || {
                let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                (!held.is_empty()).then_some(())
            },
            || format!("nobody called 127.0.0.1:{}", self.port),
        )
        .await
    }

    /// Stops listening and drops every connection: the port is free again.
    pub async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// What a `baton` command printed, and whether it succeeded.
pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `baton user add` on this test's database, the password on standard input.
pub async fn cli_add_user(
    binary: &Path,
    db: &TestDb,
    email: &str,
    name: &str,
    role: &str,
    password: &str,
) -> Result<()> {
    let args = [
        "user",
        "add",
        "--email",
        email,
        "--name",
        name,
        "--role",
        role,
        "--password-stdin",
    ];
    let added = baton_cli(binary, db, &args, &format!("{password}\n")).await?;
    ensure!(added.success, "baton user add {email}: {}", added.stderr);
    Ok(())
}

/// Runs `baton <args>` on this test's database, with `stdin` as its input.
pub async fn baton_cli(
    binary: &Path,
    db: &TestDb,
    args: &[&str],
    stdin: &str,
) -> Result<CliOutput> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .env("BATON_DATA_DIR", db.data_dir())
        .env("BATON_DATABASE_URL", &db.url)
        .env_remove("BATON_CONFIG")
        .current_dir(db.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run baton {}", args.join(" ")))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    Ok(CliOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The `baton` binary built next to the test executable.
pub fn baton_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target/<profile>/baton; a binary of
    // this crate (the soak) sits in target/<profile> itself.
    let here = exe
        .parent()
        .ok_or_else(|| anyhow!("unexpected executable path {}", exe.display()))?;
    let dir = if here.ends_with("deps") {
        here.parent().unwrap_or(here)
    } else {
        here
    };
    let bin = dir.join("baton");
    if !bin.exists() {
        bail!(
            "{} is missing: build it first with `cargo build -p baton` (the test command does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A visitor with an open widget session.
pub struct VisitorClient {
    pub base: String,
    pub token: String,
    pub conversation_id: String,
    http: reqwest::Client,
}

impl VisitorClient {
    pub async fn start(base: &str) -> Result<Self> {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/api/v1/widget/sessions"))
            .json(&json!({}))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("session: {} {}", resp.status(), resp.text().await?);
        }
        let body: Value = resp.json().await?;
        Ok(Self {
            base: base.to_owned(),
            token: str_at(&body, "/visitor_token")?,
            conversation_id: str_at(&body, "/conversation_id")?,
            http,
        })
    }

    /// A visitor whose session was made elsewhere (say, with known details).
    pub fn resume(base: &str, token: &str, conversation_id: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: token.to_owned(),
            conversation_id: conversation_id.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn say(&self, text: &str) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}/api/v1/widget/messages", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"text": text}))
            .send()
            .await?;
        if resp.status() != 202 {
            bail!("say: {} {}", resp.status(), resp.text().await?);
        }
        Ok(resp.json().await?)
    }

    pub async fn messages(&self) -> Result<Vec<Value>> {
        let body = self.state().await?;
        Ok(body["messages"].as_array().cloned().unwrap_or_default())
    }

    pub async fn ws(&self) -> Result<Ws> {
        let url = format!(
            "{}/api/v1/widget/ws?token={}",
            self.base.replacen("http", "ws", 1),
            self.token
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .context("widget ws")?;
        Ok(ws)
    }

    /// The conversation and its messages, as the widget reads them.
    pub async fn state(&self) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}/api/v1/widget/messages?after=0", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?)
    }

    /// Says `text` and waits for the bot's turn to finish: an answer, or a
    /// hand-over notice. Returns the conversation then.
    pub async fn turn(&self, text: &str) -> Result<Value> {
        let said = self.say(text).await?;
        let seq = said["message"]["seq"].as_i64().unwrap_or(0);
        for _ in 0..200 {
            let state = self.state().await?;
            let answered = state["messages"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["seq"].as_i64().unwrap_or(0) > seq && m["sender"] != "visitor")
            });
            if answered {
                // A hand-over follows the bot's last words; give it a moment.
                tokio::time::sleep(Duration::from_millis(60)).await;
                return Ok(self.state().await?["conversation"].clone());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("no answer to `{text}`")
    }

    /// Waits until a bot message with `seq > after` exists; returns it.
    pub async fn wait_bot_after(&self, after: i64) -> Result<Value> {
        for _ in 0..200 {
            if let Some(m) = self
                .messages()
                .await?
                .into_iter()
                .find(|m| m["sender"] == "bot" && m["seq"].as_i64().unwrap_or(0) > after)
            {
                return Ok(m);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("no bot message after seq {after}")
    }
}

/// A signed-in staff member (cookie session + CSRF header), as the inbox is.
pub struct StaffClient {
    pub base: String,
    pub http: reqwest::Client,
    pub csrf: String,
    pub user: Value,
}

impl StaffClient {
    pub async fn login(base: &str, email: &str, password: &str) -> Result<Self> {
        let http = reqwest::Client::builder().cookie_store(true).build()?;
        let resp = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("login: {} {}", resp.status(), resp.text().await?);
        }
        let body: Value = resp.json().await?;
        Ok(Self {
            base: base.to_owned(),
            http,
            csrf: str_at(&body, "/csrf_token")?,
            user: body["user"].clone(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        status_json(resp).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<(u16, Value)> {
        self.send(reqwest::Method::DELETE, path, Value::Null).await
    }

    /// The stored messages of a conversation.
    pub async fn messages_of(&self, id: &str) -> Result<Vec<Value>> {
        let (status, body) = self.get(&format!("/api/v1/conversations/{id}")).await?;
        if status != 200 {
            bail!("conversation {id}: {status} {body}");
        }
        Ok(body["messages"].as_array().cloned().unwrap_or_default())
    }

    /// Claims a conversation in the inbox and replies, as an agent would.
    pub async fn claim_and_reply(&self, id: &str, text: &str) -> Result<()> {
        let (status, claimed) = self
            .post(&format!("/api/v1/conversations/{id}/claim"), json!({}))
            .await?;
        if status != 200 {
            bail!("claim: {status} {claimed}");
        }
        let (status, sent) = self
            .post(
                &format!("/api/v1/conversations/{id}/messages"),
                json!({"text": text}),
            )
            .await?;
        if status != 201 && status != 200 {
            bail!("reply: {status} {sent}");
        }
        Ok(())
    }

    /// Hands a conversation back to the bot from the inbox.
    pub async fn hand_back(&self, id: &str) -> Result<()> {
        let (status, back) = self
            .post(&format!("/api/v1/conversations/{id}/handback"), json!({}))
            .await?;
        if status != 200 {
            bail!("hand back: {status} {back}");
        }
        Ok(())
    }

    /// Waits (up to 10 s) until the conversation has this status; returns it.
    pub async fn wait_status(&self, id: &str, status: &str) -> Result<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, c) = self.get(&format!("/api/v1/conversations/{id}")).await?;
            if c["conversation"]["status"] == status {
                return Ok(c);
            }
            if std::time::Instant::now() > deadline {
                bail!("never {status}: {c}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The live event stream (`GET /api/v1/events` as a WebSocket), opened
    /// with an API token made for this user.
    pub async fn events(&self) -> Result<Ws> {
        use tungstenite::client::IntoClientRequest;
        let (status, body) = self
            .post("/api/v1/tokens", json!({"name": "events"}))
            .await?;
        if status != 201 {
            bail!("token: {status} {body}");
        }
        let token = str_at(&body, "/token")?;
        let mut request = format!("{}/api/v1/events", self.base.replacen("http", "ws", 1))
            .into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(ws)
    }

    /// Any state-changing request, with the CSRF header the browser would send.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<(u16, Value)> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await?;
        status_json(resp).await
    }
}

pub async fn status_json(resp: reqwest::Response) -> Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?
    };
    Ok((status, value))
}

pub fn str_at(v: &Value, pointer: &str) -> Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no string at {pointer} in {v}"))
}

/// [`eventually`] for a check that does IO itself (an HTTP call, a file
/// read); an error in the check ends the wait at once.
pub async fn eventually_async<T, F, Fut>(
    secs: u64,
    found: F,
    failure: impl Fn() -> String,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = found().await? {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            bail!("{}", failure());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads frames until one satisfies `pred`, or fails after `secs` seconds.
/// Polls `found` every 25 ms until it gives a value, for up to `secs`
/// seconds; then fails with `failure()` (which may show what was seen).
pub async fn eventually<T>(
    secs: u64,
    found: impl Fn() -> Option<T>,
    failure: impl Fn() -> String,
) -> Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = found() {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            bail!("{}", failure());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn next_matching(ws: &mut Ws, secs: u64, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no matching frame within {secs}s"))?
            .ok_or_else(|| anyhow!("socket closed"))??;
        if let tungstenite::Message::Text(t) = frame {
            let v: Value = serde_json::from_str(&t)?;
            if pred(&v) {
                return Ok(v);
            }
        }
    }
}

pub async fn ws_send(ws: &mut Ws, value: Value) -> Result<()> {
    ws.send(tungstenite::Message::Text(value.to_string().into()))
        .await?;
    Ok(())
}

/// An example plugin as `cargo xtask plugins` lays it out (`cargo xtask test` does).
pub fn example_plugin(name: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/examples/dist")
        .join(name);
    if !dir.join("plugin.toml").is_file() {
        bail!(
            "the example plugin `{name}` is not built: run `cargo xtask plugins` (cargo xtask test does)"
        );
    }
    Ok(dir)
}

/// Installs an example plugin into a plugins folder as `folder`, the way an
/// operator would (copied aside, then moved in). `set` replaces `key = value`
/// lines of its manifest (or adds them); the deadline becomes a generous 5 s
/// unless the manifest or `set` says otherwise, so a loaded machine cannot
/// make a test flaky.
pub fn install_plugin(
    plugins: &Path,
    example: &str,
    folder: &str,
    set: &[(&str, &str)],
) -> Result<PathBuf> {
    let from = example_plugin(example)?;
    let staging = plugins.join(format!(".{folder}.tmp"));
    std::fs::create_dir_all(&staging)?;
    for f in std::fs::read_dir(&from)? {
        let f = f?.path();
        if let Some(name) = f.file_name() {
            std::fs::copy(&f, staging.join(name))?;
        }
    }
    let manifest = staging.join("plugin.toml");
    let mut text = std::fs::read_to_string(&manifest)?;
    if !text.contains("[limits]") {
        text.push_str("\n[limits]\ndeadline_ms = 5000\n");
    }
    for (key, value) in set {
        let mut done = false;
        text = text
            .lines()
            .map(|l| {
                if !done && l.split('=').next().map(str::trim) == Some(*key) {
                    done = true;
                    format!("{key} = {value}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        if !done {
            bail!("`{key}` is not in {example}'s plugin.toml");
        }
    }
    std::fs::write(&manifest, text)?;
    let to = plugins.join(folder);
    std::fs::rename(&staging, &to)?;
    Ok(to)
}

/// What [`chat_for`]'s visitors did.
#[derive(Debug, Default)]
pub struct Chatter {
    /// The messages stored: each visitor message the server acknowledged
    /// and each bot answer seen.
    pub stored: u64,
    /// The texts of the visitor messages the server acknowledged (sent back
    /// as stored), every visitor's together.
    pub acknowledged: Vec<String>,
    /// Visitors whose socket failed before the time was up (a server that
    /// was killed), with the first error.
    pub failed: Vec<String>,
}

/// `visitors` widget visitors writing closed-loop over their sockets for
/// `length`: send a message, wait for the bot's answer, send the next. The
/// load of the webhook bench and of the kill tests.
pub async fn chat_for(base: &str, visitors: usize, length: Duration) -> Result<Chatter> {
    let until = std::time::Instant::now() + length;
    let out = std::sync::Arc::new(std::sync::Mutex::new(Chatter::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for v in 0..visitors {
        let visitor = VisitorClient::start(base).await?;
        let ws = visitor.ws().await?;
        let out = out.clone();
        tasks.spawn(async move {
            if let Err(e) = chat_loop(ws, v, until, &out).await {
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .failed
                    .push(format!("{e:#}"));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    Ok(std::mem::take(&mut *out))
}

async fn chat_loop(
    mut ws: Ws,
    visitor: usize,
    until: std::time::Instant,
    out: &std::sync::Mutex<Chatter>,
) -> Result<()> {
    use tungstenite::Message as WsMessage;
    let mut i = 0_u64;
    while std::time::Instant::now() < until {
        // The `;` ends the marker so that message 7's cannot match inside 70's.
        let marker = format!("chat v{visitor} m{i};");
        let frame = json!({"type": "message", "text": marker, "client_id": marker});
        ws.send(WsMessage::Text(frame.to_string().into())).await?;
        // The bot's answer quotes the marker or, failing that, comes after
        // the visitor's own message.
        let mut own_seq: Option<i64> = None;
        loop {
            let Some(frame) = ws.next().await else {
                bail!("the widget socket closed");
            };
            let WsMessage::Text(text) = frame? else {
                continue;
            };
            let f: Value = serde_json::from_str(text.as_str())?;
            if f["type"] == "error" {
                bail!("the server refused a message: {f}");
            }
            if f["type"] != "message" {
                continue;
            }
            let m = &f["message"];
            let text = m["text"].as_str().unwrap_or_default();
            let seq = m["seq"].as_i64();
            match m["sender"].as_str() {
                Some("visitor") if text == marker => {
                    own_seq = seq;
                    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                    out.stored += 1;
                    out.acknowledged.push(marker.clone());
                }
                Some("bot")
                    if text.contains(&marker)
                        || own_seq.zip(seq).is_some_and(|(own, s)| s > own) =>
                {
                    out.lock().unwrap_or_else(|p| p.into_inner()).stored += 1;
                    break;
                }
                _ => {}
            }
        }
        i += 1;
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The benches' server settings: no greeting, no trigger that would hand
/// their made-up messages to a human, and rate limits far above what they send.
pub const BENCH_CONFIG: &str = "\
[bot]
greeting = \"\"

[bot.handover]
cycle_count = 0
lack_of_information = false
frustration = false

[limits]
widget_messages_per_second = 100000
widget_burst = 100000
widget_ip_requests_per_second = 100000
widget_ip_burst = 100000
";
