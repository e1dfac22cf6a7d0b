//! The `baton` binary: `serve` (the default), `migrate`, `user add`, `token create`.
//!
//! Everything a command needs is resolved the same way for every command
//! (flags, then `BATON_*` variables, then defaults), so `baton user add` acts
//! on the very database `baton serve` uses.
//!
//! Architecture invariant: this crate wires the others together and owns
//! process concerns (arguments, logging, signals); it holds no domain logic.

use anyhow::{Context, Result, anyhow, bail};
use axum::serve::ListenerExt;
use baton_channel_web::WebChannel;
use baton_model::Role;
use baton_runtime::auth::{TokenKind, check_password_policy, hash_password, new_token, token_hash};
use baton_runtime::llm::{self, LlmBot};
use baton_runtime::{Bot, Config, KnowledgeBot, Runtime};
use baton_store::{NewUser, Store};
use baton_web::{AppState, WebOptions, router};
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

mod plugin;

#[derive(Parser, Debug)]
#[command(
    name = "baton",
    version,
    about = "Baton: bot-to-human hand-over on every channel"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the data lives; every command reads these the same way.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Folder for the SQLite database and plugins.
    #[arg(
        long,
        env = "BATON_DATA_DIR",
        default_value = "./baton-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// A `postgres://` URL; SQLite in the data dir when absent.
    #[arg(
        long,
        env = "BATON_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// The configuration file; `baton.toml` is read when present.
    #[arg(long, env = "BATON_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address `serve` listens on.
    #[arg(
        long,
        env = "BATON_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: String,
    /// Mark cookies `Secure`; set this when serving behind HTTPS.
    #[arg(long, env = "BATON_SECURE_COOKIES", global = true)]
    pub secure_cookies: bool,
    /// Folder plugins load from; `<data dir>/plugins` when absent.
    #[arg(long, env = "BATON_PLUGINS_DIR", global = true)]
    pub plugins_dir: Option<PathBuf>,
}

impl Common {
    /// `--plugins-dir`, else `<data dir>/plugins`.
    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage staff accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write, check and test plugins without a server.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a staff account; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// owner, admin, responder or viewer.
        #[arg(long, default_value = "responder")]
        role: String,
        /// Read the password from standard input (the only way; it keeps it out of `ps`).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List staff accounts.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for a user and print it (and nothing else) on stdout.
    Create {
        #[arg(long)]
        email: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

/// The process entry point.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    init_logging(serving);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info,sqlx=warn" } else { "warn" };
    let filter = EnvFilter::try_from_env("BATON_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Logs go to stderr so that `baton token create` can print only the token.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None | Some(Command::Serve) => serve(&cli.common).await,
        Some(Command::Plugin(command)) => plugin::run(command).await,
        Some(Command::Migrate) => {
            let store = open_store(&cli.common).await?;
            println!("migrations applied ({})", describe_db(&cli.common));
            store.close().await;
            Ok(())
        }
        Some(Command::User(UserCommand::Add {
            email,
            name,
            role,
            password_stdin,
        })) => {
            if !password_stdin {
                bail!("pass --password-stdin and send the password on standard input");
            }
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            check_password_policy(password).map_err(|e| anyhow::anyhow!(e))?;
            if !email.contains('@') {
                bail!("`{email}` is not an email address");
            }
            let hash = hash_password(password).map_err(|e| anyhow::anyhow!(e))?;
            let store = open_store(&cli.common).await?;
            let now = baton_runtime::Clock::system().now();
            let user = store
                .create_user(
                    NewUser {
                        email: &email,
                        name: &name,
                        role,
                        password_hash: &hash,
                    },
                    now,
                )
                .await
                .with_context(|| format!("cannot create user {email}"))?;
            println!("created {} <{}> as {}", user.name, user.email, user.role);
            store.close().await;
            Ok(())
        }
        Some(Command::User(UserCommand::List)) => {
            let store = open_store(&cli.common).await?;
            for u in store.list_users().await.context("cannot list users")? {
                println!("{}\t{}\t{}\t{}", u.id, u.email, u.name, u.role);
            }
            store.close().await;
            Ok(())
        }
        Some(Command::Token(TokenCommand::Create { email, name })) => {
            let store = open_store(&cli.common).await?;
            let user = store
                .user_by_email(&email)
                .await
                .context("cannot look up the user")?
                .with_context(|| {
                    format!("no user with email {email}; create one with `baton user add`")
                })?;
            let token = new_token(TokenKind::Api);
            let now = baton_runtime::Clock::system().now();
            store
                .create_api_token(&user.id, &name, &token_hash(&token), now)
                .await
                .context("cannot store the token")?;
            println!("{token}");
            store.close().await;
            Ok(())
        }
    }
}

fn describe_db(common: &Common) -> String {
    match &common.database_url {
        Some(url) => baton_store::redact(url),
        None => format!("SQLite at {}", common.data_dir.join("baton.db").display()),
    }
}

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(common: &Common) -> Result<Store> {
    let store = match &common.database_url {
        Some(url) => Store::connect(url).await,
        None => Store::open_data_dir(&common.data_dir).await,
    }
    .with_context(|| format!("cannot open the database ({})", describe_db(common)))?;
    store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database ({})", describe_db(common)))?;
    Ok(store)
}

/// Reads the configuration: `--config`/`BATON_CONFIG`, else `./baton.toml` when present.
pub fn load_config(common: &Common) -> Result<Config> {
    let path = match &common.config {
        Some(p) => p.clone(),
        None if Path::new("baton.toml").exists() => PathBuf::from("baton.toml"),
        None => return Ok(Config::default()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    Config::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Builds the runtime with its bot and channels, ready to serve. Fails with
/// a clear message when a bot's knowledge folder cannot be loaded.
pub fn build_runtime(store: Store, config: Config) -> Result<Runtime> {
    build_runtime_with_env(store, config, |k| std::env::var(k).ok())
}

/// [`build_runtime`], reading the channels' secrets through `env` (tests pass a map).
pub fn build_runtime_with_env(
    store: Store,
    config: Config,
    env: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Runtime> {
    let knowledge =
        Arc::new(KnowledgeBot::from_config(&config).context("cannot load the knowledge base")?);
    for (id, entries) in knowledge.sizes() {
        info!(bot = %id, entries, "knowledge base loaded");
    }
    let bot: Arc<dyn Bot> = match &config.llm {
        Some(llm) => {
            info!(base_url = %llm.base_url, model = %llm.model, "answering with an LLM; the built-in bot is the fallback");
            Arc::new(LlmBot::new(
                knowledge,
                llm.clone(),
                std::env::var(llm::API_KEY_ENV).ok(),
            ))
        }
        None => knowledge,
    };
    let channels = platform_channels(&config, env)?;
    let runtime = Runtime::new(store, config, bot);
    runtime.register_channel(Arc::new(WebChannel));
    for channel in channels {
        info!(channel = %channel.kind(), "channel on");
        runtime.register_channel(channel);
    }
    Ok(runtime)
}

/// The platform channels switched on by `[channels.<kind>]` tables, with
/// their secrets from the environment. Fails naming what is missing.
pub fn platform_channels(
    config: &Config,
    env: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Vec<Arc<dyn baton_channel::Channel>>> {
    let mut out: Vec<Arc<dyn baton_channel::Channel>> = vec![];
    for (kind, table) in &config.channels {
        let channel: Arc<dyn baton_channel::Channel> = match kind.as_str() {
            "telegram" => Arc::new(
                baton_channel_telegram::TelegramChannel::from_config(table, env)
                    .map_err(|e| anyhow!(e))?,
            ),
            "slack" => Arc::new(
                baton_channel_slack::SlackChannel::from_config(table, env)
                    .map_err(|e| anyhow!(e))?,
            ),
            "discord" => Arc::new(
                baton_channel_discord::DiscordChannel::from_config(table, env)
                    .map_err(|e| anyhow!(e))?,
            ),
            "email" => Arc::new(
                baton_channel_email::EmailChannel::from_config(table, env)
                    .map_err(|e| anyhow!(e))?,
            ),
            other => bail!("[channels.{other}] is not a channel this build knows"),
        };
        out.push(channel);
    }
    Ok(out)
}

async fn serve(common: &Common) -> Result<()> {
    let config = load_config(common)?;
    let addr: SocketAddr = common.listen.parse().with_context(|| {
        format!(
            "--listen `{}` is not an address like 127.0.0.1:8080",
            common.listen
        )
    })?;
    let store = open_store(common).await?;
    if store.count_users().await.context("cannot count users")? == 0 {
        warn!(
            "no staff accounts yet. Create the first one with:\n  \
             echo 'a long password' | baton user add --email you@example.com \
             --name 'Sam Rivera' --role owner --password-stdin\n  \
             (from the source tree: cargo run --release -- user add ...)\n  \
             then sign in at http://{addr}/inbox"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // Chat frames are small and latency matters more than packet count.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let runtime = build_runtime(store, config)?;
    runtime
        .load_bot_settings()
        .await
        .context("cannot load the saved bot settings")?;
    start_plugins(common, &runtime).await?;
    runtime.start_background().await?;
    let app = router(AppState::new(
        runtime.clone(),
        WebOptions {
            secure_cookies: common.secure_cookies,
            plugins_dir: Some(common.plugins_dir()),
        },
    ));
    info!(address = %local, database = %describe_db(common), "baton is serving on http://{local} (demo site /, inbox /inbox, widget /widget.js)");
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    // Hand on the work under way however serving ended.
    runtime.shutdown().await;
    served.context("server error")?;
    info!("baton stopped");
    Ok(())
}

/// Loads the plugins folder and watches it: plugins dropped in, changed or
/// removed take effect without a restart.
async fn start_plugins(common: &Common, runtime: &Runtime) -> Result<()> {
    let dir = common.plugins_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), "cannot create the plugins folder: {e}");
    }
    let host = baton_plugins::PluginHost::new(
        dir.clone(),
        Some(common.data_dir.join("plugin-cache")),
        runtime.config().plugins.clone(),
    )
    .context("cannot start the plugin host")?;
    host.set_off(
        runtime
            .store()
            .plugins_switched_off()
            .await
            .context("cannot read the plugin switches")?,
    );
    host.rescan().await;
    let list = host.list();
    let on = list.iter().filter(|p| p.state == "on").count();
    info!(dir = %dir.display(), plugins = list.len(), on, "plugins loaded; the folder is watched for changes");
    let host = Arc::new(host);
    host.watch();
    runtime.install_plugins(host);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
