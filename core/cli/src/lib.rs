//! The `baton` binary: `serve` (the default), `migrate`, `user add`, `token create`.
//!
//! Everything a command needs is resolved the same way for every command
//! (flags, then `BATON_*` variables, then defaults), so `baton user add` acts
//! on the very database `baton serve` uses.
//!
//! Architecture invariant: this crate wires the others together and owns
//! process concerns (arguments, logging, signals); it holds no domain logic.

use anyhow::{Context, Result, anyhow, bail};
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
    /// The address browsers reach Baton at (`https://support.example.com`);
    /// state-changing requests from any other origin are refused. Without
    /// it, a request's own `Host` is the served origin.
    #[arg(long, env = "BATON_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Serve `/metrics` without credentials on this address too (one only
    /// the monitoring system reaches, e.g. 127.0.0.1:9090).
    #[arg(long, env = "BATON_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<String>,
    /// A bearer token that opens `/metrics` on the main address.
    #[arg(
        long,
        env = "BATON_METRICS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// Let webhooks and `webhook` actions reach loopback, private and
    /// link-local addresses (`[security] allow_private_webhooks`).
    #[arg(long, env = "BATON_ALLOW_PRIVATE_WEBHOOKS", global = true)]
    pub allow_private_webhooks: bool,
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
    /// Remove (deactivate) a staff account: its sessions and API tokens stop
    /// working, the conversations it held go back to the queue.
    Remove {
        #[arg(long)]
        email: String,
    },
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
    /// List API tokens (id, user, label, created, last used); one user's with --email.
    List {
        #[arg(long)]
        email: Option<String>,
    },
    /// Revoke an API token by its id (from `baton token list`): it stops working at once.
    Revoke { id: String },
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
        Some(Command::User(UserCommand::Remove { email })) => {
            let store = open_store(&cli.common).await?;
            let user = store
                .user_by_email(&email)
                .await
                .context("cannot look up the user")?
                .with_context(|| format!("no active user with email {email}"))?;
            // Everything that may fail comes before the removal: a removed
            // user's conversations must go back to the queue.
            let runtime = removal_runtime(&store, &cli.common)?;
            let now = baton_runtime::Clock::system().now();
            let outcome = store
                .deactivate_user(&user.id, now)
                .await
                .with_context(|| format!("cannot remove {email}"))?;
            let result = match outcome {
                baton_store::Deactivation::Done => {
                    runtime
                        .user_removed(&baton_model::AgentRef {
                            id: user.id.clone(),
                            name: user.name.clone(),
                        })
                        .await;
                    println!("removed {} <{}>", user.name, user.email);
                    Ok(())
                }
                baton_store::Deactivation::LastOwner => Err(anyhow!(
                    "{email} is the last owner; make someone else an owner first"
                )),
                baton_store::Deactivation::NotFound
                | baton_store::Deactivation::AlreadyDeactivated => {
                    Err(anyhow!("no active user with email {email}"))
                }
            };
            store.close().await;
            result
        }
        Some(Command::Token(TokenCommand::List { email })) => {
            let store = open_store(&cli.common).await?;
            let user_id = match &email {
                Some(email) => Some(
                    store
                        .user_by_email(email)
                        .await
                        .context("cannot look up the user")?
                        .with_context(|| format!("no active user with email {email}"))?
                        .id,
                ),
                None => None,
            };
            let tokens = store
                .list_api_tokens(user_id.as_deref())
                .await
                .context("cannot list tokens")?;
            for t in tokens {
                let used = t
                    .token
                    .last_used_at
                    .map_or_else(|| "never used".to_owned(), |at| format!("last used {at}"));
                println!(
                    "{}\t{}\t{}\tcreated {}\t{used}",
                    t.token.id, t.user_email, t.token.name, t.token.created_at
                );
            }
            store.close().await;
            Ok(())
        }
        Some(Command::Token(TokenCommand::Revoke { id })) => {
            let store = open_store(&cli.common).await?;
            let done = store
                .revoke_api_token(&id)
                .await
                .context("cannot revoke the token")?;
            store.close().await;
            if !done {
                bail!("no API token with id {id}; `baton token list` shows them");
            }
            println!("revoked {id}");
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

/// The runtime `baton user remove` puts a removed user's conversations back
/// in the queue with, through the same path the API uses. On PostgreSQL a
/// running server hears of it at once; on SQLite its inboxes see the change
/// when they next load (the events are in the outbox, and webhooks get them).
fn removal_runtime(store: &Store, common: &Common) -> Result<Runtime> {
    let config = load_config(common)?;
    let bot = KnowledgeBot::from_config(&config).context("cannot load the knowledge base")?;
    Ok(Runtime::new(store.clone(), config, Arc::new(bot)))
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
/// `BATON_ALLOW_PRIVATE_WEBHOOKS=true` (or the flag) turns the setting on over the file.
pub fn load_config(common: &Common) -> Result<Config> {
    let path = match &common.config {
        Some(p) => Some(p.clone()),
        None if Path::new("baton.toml").exists() => Some(PathBuf::from("baton.toml")),
        None => None,
    };
    let mut config = match path {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            Config::from_toml(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => Config::default(),
    };
    if common.allow_private_webhooks {
        config.security.allow_private_webhooks = true;
    }
    Ok(config)
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
    let public_origin = common
        .public_url
        .as_deref()
        .map(public_origin)
        .transpose()?;
    let metrics_addr: Option<SocketAddr> = common
        .metrics_listen
        .as_deref()
        .map(|a| {
            a.parse().with_context(|| {
                format!("BATON_METRICS_LISTEN `{a}` is not an address like 127.0.0.1:9090")
            })
        })
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let metrics_listener = match metrics_addr {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} for metrics"))?,
        ),
        None => None,
    };
    let runtime = build_runtime(store, config)?;
    runtime
        .load_bot_settings()
        .await
        .context("cannot load the saved bot settings")?;
    start_plugins(common, &runtime).await?;
    runtime.start_background().await?;
    if runtime.config().security.allow_private_webhooks {
        warn!("webhooks may reach private and loopback addresses (allow_private_webhooks)");
    }
    let state = AppState::new(
        runtime.clone(),
        WebOptions {
            secure_cookies: common.secure_cookies,
            plugins_dir: Some(common.plugins_dir()),
            public_origin,
            metrics_token: common.metrics_token.clone().filter(|t| !t.is_empty()),
        },
    );
    if let Some(metrics) = metrics_listener {
        let app = baton_web::metrics_router(state.clone());
        info!(address = %metrics.local_addr().context("cannot read the metrics address")?, "metrics are served without credentials on this address");
        tokio::spawn(async move {
            if let Err(e) = baton_web::serve(metrics, app, std::future::pending()).await {
                warn!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let streams = state.clone();
    let app = router(state);
    info!(address = %local, database = %describe_db(common), "baton is serving on http://{local} (demo site /, inbox /inbox, widget /widget.js)");
    let stop = async move {
        shutdown_signal().await;
        // Open streams end now, so that clients reconnect elsewhere and the
        // drain does not wait on them.
        streams.stop_streams();
    };
    let served = baton_web::serve(listener, app, stop).await;
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

/// `BATON_PUBLIC_URL` as an origin: `scheme://host[:port]`, no path; a
/// default port (`:443` over https) is dropped, as browsers drop it.
fn public_origin(url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let bad = || format!("BATON_PUBLIC_URL `{url}` is not a URL like https://support.example.com");
    let (scheme, authority) = trimmed.split_once("://").with_context(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    if !(scheme == "http" || scheme == "https")
        || authority.is_empty()
        || authority.contains(['/', '?', '#', ' ', '@'])
    {
        bail!(bad());
    }
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(authority);
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
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
