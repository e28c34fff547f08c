//! `switchyard`: serve the API, migrate the database, administer tenants.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use switchyard::app::{RunningServer, open_store};
use switchyard::config::Config;
use switchyard::logging::{notice, print_out};
use switchyard_domain::Role;
use switchyard_domain::id::OrganizationId;
use switchyard_service::AuthService;

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

/// Runs an admin command; prints its result (JSON) on stdout once the
/// database is closed, so that a closed pipe cannot cut a write short.
async fn admin(config: &Config, cmd: Admin) -> anyhow::Result<()> {
    let store = open_store(config, false).await?;
    let result = admin_command(config, &store, cmd).await;
    store.close().await;
    print_out(&result?);
    Ok(())
}

async fn admin_command(
    config: &Config,
    store: &switchyard_store::Store,
    cmd: Admin,
) -> anyhow::Result<String> {
    use serde_json::json;
    fn pretty<T: serde::Serialize>(value: T) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&value)
    }
    let secret = switchyard::bootstrap::jwt_secret(config)?;
    let auth = AuthService::new(
        store.clone(),
        &secret,
        std::time::Duration::from_secs(config.token_ttl_seconds),
    );
    let fail = |e: switchyard_service::Error| {
        anyhow::anyhow!("{} ({})", e.message, e.param.unwrap_or_default())
    };
    Ok(match cmd {
        Admin::CreateOrg { name } => pretty(store.create_organization(name.trim()).await?)?,
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
            pretty(json!({"user": user, "organization_id": org.id, "role": role}))?
        }
        Admin::CreateApiKey { org, name } => {
            let org = store.get_organization(org_id(&org)?).await?;
            let (key, secret) = auth
                .create_api_key(org.id, name, None, None, None)
                .await
                .map_err(fail)?;
            eprintln!("The key is shown only now; store it safely.");
            pretty(json!({"api_key": key, "key": secret}))?
        }
        Admin::ListOrgs => pretty(store.list_organizations().await?)?,
        Admin::ListUsers { org } => {
            let users = store.list_users(org_id(&org)?).await?;
            let rows: Vec<_> = users
                .into_iter()
                .map(|(u, r)| json!({"user": u, "role": r}))
                .collect();
            pretty(rows)?
        }
        Admin::ListApiKeys { org } => pretty(store.list_api_keys(org_id(&org)?).await?)?,
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
            pretty(json!({
                "organization_id": org.id,
                "recording_retention_days": days,
                "effective_days": effective,
            }))?
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    switchyard::private_files::restrict_umask();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    switchyard::logging::init(&config);
    match cli.command {
        Command::Serve => {
            let server = RunningServer::start(&config).await?;
            notice(&format!(
                "Switchyard listening on http://{} (API docs at /docs)",
                server.addr
            ));
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.stop().await;
        }
        Command::Migrate => {
            let store = open_store(&config, false).await?;
            print_out(&format!("migrations applied ({:?})", store.backend()));
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
