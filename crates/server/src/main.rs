//! `switchyard`: serve the API, migrate the database, administer tenants.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use switchyard::app::{RunningServer, open_store};
use switchyard::config::Config;
use switchyard_domain::Role;
use switchyard_domain::id::OrganizationId;
use switchyard_service::AuthService;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Self-hostable voice-AI calling platform (Envoy-compatible API)"
)]
struct Cli {
    /// A TOML configuration file (optional; every key also reads SWITCHYARD_<KEY>).
    #[arg(long, short, env = "SWITCHYARD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (migrates the database first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Create and list organizations, users and API keys.
    #[command(subcommand)]
    Admin(Admin),
    /// Benchmarks (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
    /// API throughput and latency with wrk, against a seeded database.
    Api(switchyard::bench::ApiBenchArgs),
    /// The SIP engine under SIPp load: call setup rate, or calls held with media.
    Sip(switchyard::bench_sip::SipBenchArgs),
    /// Recording encoding (WAV to audio/mp4) against ffmpeg on the same audio.
    Recordings(switchyard::bench_recordings::RecordingBenchArgs),
    /// Webhook deliveries per second and state-change-to-receipt latency, 1/10/100 endpoints.
    Webhooks(switchyard::bench_webhooks::WebhookBenchArgs),
}

#[derive(Subcommand)]
enum Admin {
    /// Create an organization.
    CreateOrg {
        #[arg(long)]
        name: String,
    },
    /// Create a user and make them a member of an organization.
    CreateUser {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// At least 8 characters.
        #[arg(long, env = "SWITCHYARD_ADMIN_PASSWORD")]
        password: String,
        #[arg(long)]
        name: Option<String>,
        /// OWNER, ADMIN or MEMBER.
        #[arg(long, default_value = "MEMBER")]
        role: String,
    },
    /// Create an API key (printed once).
    CreateApiKey {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
    },
    /// List organizations.
    ListOrgs,
    /// List the users of an organization.
    ListUsers {
        #[arg(long)]
        org: String,
    },
    /// List the API keys of an organization.
    ListApiKeys {
        #[arg(long)]
        org: String,
    },
    /// Set how many days an organization keeps call recordings (0: until
    /// the next retention sweep), or `--days default` for the server's
    /// `recording_retention_days`.
    SetRecordingRetention {
        #[arg(long)]
        org: String,
        #[arg(long)]
        days: String,
    },
}

fn init_tracing(config: &Config) {
    let filter =
        EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn org_id(text: &str) -> anyhow::Result<OrganizationId> {
    OrganizationId::parse(text).map_err(|e| anyhow::anyhow!("--org: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn admin(config: &Config, cmd: Admin) -> anyhow::Result<()> {
    let store = open_store(config, false).await?;
    let secret = switchyard::bootstrap::jwt_secret(config)?;
    let auth = AuthService::new(
        store.clone(),
        &secret,
        std::time::Duration::from_secs(config.token_ttl_seconds),
    );
    let fail = |e: switchyard_service::Error| {
        anyhow::anyhow!("{} ({})", e.message, e.param.unwrap_or_default())
    };
    match cmd {
        Admin::CreateOrg { name } => {
            let org = store.create_organization(name.trim()).await?;
            println!("{}", serde_json::to_string_pretty(&org)?);
        }
        Admin::CreateUser {
            org,
            email,
            password,
            name,
            role,
        } => {
            let org = store.get_organization(org_id(&org)?).await?;
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("--role must be one of {}", Role::allowed()))?;
            let user = auth
                .create_user(&email, name, &password)
                .await
                .map_err(fail)?;
            store.add_membership(org.id, user.id, role).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"user": user, "organization_id": org.id, "role": role})
                )?
            );
        }
        Admin::CreateApiKey { org, name } => {
            let org = store.get_organization(org_id(&org)?).await?;
            let (key, secret) = auth
                .create_api_key(org.id, name, None, None, None)
                .await
                .map_err(fail)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"api_key": key, "key": secret}))?
            );
            eprintln!("The key is shown only now; store it safely.");
        }
        Admin::ListOrgs => println!(
            "{}",
            serde_json::to_string_pretty(&store.list_organizations().await?)?
        ),
        Admin::ListUsers { org } => {
            let users = store.list_users(org_id(&org)?).await?;
            let rows: Vec<_> = users
                .into_iter()
                .map(|(u, r)| serde_json::json!({"user": u, "role": r}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Admin::ListApiKeys { org } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&store.list_api_keys(org_id(&org)?).await?)?
            )
        }
        Admin::SetRecordingRetention { org, days } => {
            let org = store.get_organization(org_id(&org)?).await?;
            let days = match days.trim() {
                "default" => None,
                n => Some(
                    n.parse::<i64>()
                        .ok()
                        .filter(|d| (0..=36500).contains(d))
                        .ok_or_else(|| {
                            anyhow::anyhow!("--days must be 0 to 36500, or default (got {n:?})")
                        })?,
                ),
            };
            store.set_recording_retention(org.id, days).await?;
            let effective = days.unwrap_or(config.recording_retention_days);
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "organization_id": org.id,
                    "recording_retention_days": days,
                    "effective_days": effective,
                }))?
            );
        }
    }
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    switchyard::private_files::restrict_umask();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(&config);
    match cli.command {
        Command::Serve => {
            let server = RunningServer::start(&config).await?;
            println!(
                "Switchyard listening on http://{} (API docs at /docs)",
                server.addr
            );
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.stop().await;
        }
        Command::Migrate => {
            let store = open_store(&config, false).await?;
            println!("migrations applied ({:?})", store.backend());
            store.close().await;
        }
        Command::Bench(Bench::Api(args)) => switchyard::bench::run_api(&config, args).await?,
        Command::Bench(Bench::Sip(args)) => switchyard::bench_sip::run_sip(&config, args).await?,
        Command::Bench(Bench::Recordings(args)) => {
            switchyard::bench_recordings::run_recordings(args)?
        }
        Command::Bench(Bench::Webhooks(args)) => {
            switchyard::bench_webhooks::run_webhooks(&config, args).await?
        }
        Command::Admin(cmd) => {
            switchyard::private_files::private_dir(&config.data_dir)?;
            admin(&config, cmd).await?
        }
    }
    Ok(())
}
