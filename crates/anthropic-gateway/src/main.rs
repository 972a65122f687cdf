//! The `anthropic-gateway` command: serves the gateway a TOML file describes, checks such a
//! file, makes virtual keys.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anthropic_gateway::config::{Config, KeyEntry, KeyHash, KeyName, ModelName, Usd};
use anthropic_gateway::{keys, serve_options, server, start};
use clap::{Parser, Subcommand};

/// One resilient front door to the Anthropic Messages API: virtual keys, per-caller limits
/// and budgets, pacing shared across replicas, retries, fallbacks, metrics.
#[derive(Parser, Debug)]
#[command(version, about, after_help = ENV_HELP)]
struct Args {
    /// The configuration file (TOML). Without one, the defaults (and the environment).
    #[arg(short, long, env = "ANTHROPIC_GATEWAY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration (file and environment) and exit: 0 when it is usable.
    #[arg(long)]
    check: bool,
    /// Serve from the embedded mock of the API (no key, no network): to try the gateway.
    #[arg(long)]
    mock: bool,
    /// Where to listen (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

const ENV_HELP: &str = "Environment: ANTHROPIC_API_KEY (the upstream key; see upstream.api_key_env), \
ANTHROPIC_BASE_URL, and ANTHROPIC_GATEWAY__SECTION__FIELD to override any field \
(ANTHROPIC_GATEWAY__PACING__STORE=redis). Signals: SIGTERM or Ctrl-C end gracefully, SIGHUP \
reloads keys, prices and limits.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Virtual keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Prints the `sha256:` hash of a secret read from standard input (for a `[[key]]`).
    Hash,
    /// Makes a new key: prints its secret once, and its `[[key]]` table or stores it in Redis.
    New {
        /// Its name (logs and metrics).
        #[arg(long)]
        name: String,
        /// The models it may use (comma-separated; none: every model).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Its requests per minute.
        #[arg(long)]
        requests_per_minute: Option<std::num::NonZeroU64>,
        /// Its tokens per minute.
        #[arg(long)]
        tokens_per_minute: Option<std::num::NonZeroU64>,
        /// Its budget, in USD.
        #[arg(long)]
        budget_usd: Option<f64>,
        /// The budget's period in days (absent: a total).
        #[arg(long, requires = "budget_usd")]
        budget_period_days: Option<std::num::NonZeroU32>,
        /// Store it in this Redis (for `keys.redis = true`) instead of printing its table.
        #[arg(
            long,
            value_name = "URL",
            env = "ANTHROPIC_GATEWAY_REDIS",
            hide_env_values = true
        )]
        redis: Option<String>,
        /// The Redis key prefix (`pacing.prefix`).
        #[arg(long, default_value = "anthropic-gateway")]
        prefix: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("anthropic-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anthropic-gateway: {e}");
            ExitCode::from(2)
        }
    }
}

fn load(args: &Args) -> Result<Config, Box<dyn std::error::Error>> {
    let mut config = match &args.config {
        Some(path) => Config::load(path, std::env::vars())?,
        None => Config::parse("", "(defaults)".as_ref(), std::env::vars())?,
    };
    if args.mock {
        config.upstream.mock = true;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    Ok(config)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(Command::Key(cmd)) = args.command {
        return key_command(cmd).await;
    }
    let config = load(&args)?;
    if args.check {
        config.upstream_key(|v| std::env::var(v).ok())?;
        serve_options(&config)?;
        println!(
            "configuration OK: listen {}, {} key(s) in the file{}, pacing {:?}",
            config.listen,
            config.key.len(),
            if config.keys.redis {
                " and keys in Redis"
            } else {
                ""
            },
            config.pacing.store
        );
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let options = serve_options(&config)?;
    let started = start(&config, |v| std::env::var(v).ok()).await?;
    let gateway = started.gateway.clone();
    if config.key.is_empty() && !config.keys.redis {
        tracing::warn!("no virtual keys are configured: every /v1 request is refused with 401");
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let upstream = match &started.mock {
        Some(m) => format!("the embedded mock at {}", m.url()),
        None => config.upstream.base_url.as_deref().map_or(
            "https://api.anthropic.com".to_owned(),
            anthropic_gateway::config::redact_url_userinfo,
        ),
    };
    tracing::info!(
        "anthropic-gateway on {scheme}://{}, calling {upstream}",
        listener.local_addr()?
    );
    // SIGHUP: the keys, prices and limits again from the file.
    if let Some(path) = args.config.clone() {
        let gw = gateway.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match Config::load(&path, std::env::vars()) {
                    Ok(new) => {
                        gw.reload(&new);
                        tracing::info!(
                            keys = new.key.len(),
                            "configuration reloaded (keys, prices, limits)"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload refused; the configuration in use stays")
                    }
                }
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let unready = gateway.clone();
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        unready.set_unready();
    };
    server::serve(listener, gateway.router(), options, shutdown).await;
    drop(started);
    Ok(())
}

async fn key_command(cmd: KeyCommand) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        KeyCommand::Hash => {
            let mut secret = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut secret)?;
            let secret = secret.trim();
            if secret.is_empty() {
                return Err("no secret on standard input".into());
            }
            println!("sha256:{}", KeyHash::of(secret).hex());
        }
        KeyCommand::New {
            name,
            models,
            requests_per_minute,
            tokens_per_minute,
            budget_usd,
            budget_period_days,
            redis,
            prefix,
        } => {
            let name = KeyName::new(&name)?;
            if budget_usd.is_some_and(|b| !b.is_finite() || b < 0.0) {
                return Err("--budget-usd: a finite amount, not negative".into());
            }
            let secret = keys::new_secret();
            let hash = KeyHash::of(&secret);
            let entry = KeyEntry {
                name,
                hash: Some(hash),
                models: (!models.is_empty()).then(|| models.into_iter().map(ModelName).collect()),
                requests_per_minute,
                tokens_per_minute,
                budget_usd: budget_usd.map(Usd),
                budget_period_days,
            };
            match redis {
                Some(url) => {
                    let mut con = anthropic_gateway::connect_redis(&url).await?;
                    keys::store_in_redis(&mut con, &prefix, hash, &entry).await?;
                    eprintln!("stored in Redis under {prefix}:keys");
                }
                None => {
                    let table = toml::to_string(&entry)?;
                    eprintln!("add to the configuration file:\n\n[[key]]\n{table}");
                }
            }
            println!("{secret}");
        }
    }
    Ok(())
}
