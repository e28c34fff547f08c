//! Configuration: defaults that work with no file, then an optional TOML
//! file, then `SWITCHYARD_*` environment variables (nested keys with `__`).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use switchyard_domain::destination::DestinationPolicy;
use switchyard_telephony::inbound_trust::UntrustedInbound;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `sqlite://path` (default) or `postgres://…`.
    pub database_url: String,
    pub http_addr: String,
    pub data_dir: PathBuf,
    /// HS256 secret for login tokens; generated into `data_dir` when absent.
    pub jwt_secret: Option<String>,
    pub token_ttl_seconds: u64,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub call_create_per_second: u32,
    pub call_create_burst: u32,
    /// Failed logins of one account from one client address before a lock.
    pub login_max_failures: u32,
    /// Failed logins of one account from addresses that never signed in to it.
    pub login_max_failures_per_account: u32,
    /// Failed logins from one address over all accounts.
    pub login_max_failures_per_address: u32,
    /// The first lock past a limit; each further failure doubles it.
    pub login_lockout_seconds: u64,
    pub login_lockout_max_seconds: u64,
    /// Failures are forgotten this long after the last one.
    pub login_failure_window_seconds: u64,
    pub scheduler_interval_ms: u64,
    /// Due calls claimed per database round trip.
    pub scheduler_batch: i64,
    pub database_max_connections: u32,
    /// `text` or `json`.
    pub log_format: String,
    /// Whether the SIP engine runs (off: the API only; calls wait in QUEUED).
    pub sip_enabled: bool,
    /// Where SIP listens, UDP and TCP on the same port.
    pub sip_addr: String,
    /// The IP peers should reach us at (Contact, Via, SDP), when it is not
    /// the bind address (behind NAT, or bound to 0.0.0.0).
    pub sip_advertised_ip: Option<String>,
    /// Our host in what we generate (the Call-IDs): a host name or an IP
    /// address; default: the advertised address.
    pub sip_domain: Option<String>,
    /// What an INVITE gets from a source that is none of the organization's
    /// trunks (their hosts' addresses and `inbound_allow` networks):
    /// `reject` (403) or `drop` (no answer).
    pub sip_untrusted_inbound: String,
    /// Where RTP binds; default: the SIP bind address's IP.
    pub rtp_ip: Option<String>,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Live calls this process takes; more inbound INVITEs get 503.
    pub max_live_calls: usize,
    /// A WAV file (8 kHz, 16-bit, mono) played once to every answered call
    /// until the agent speaks; then silence.
    pub prompt_file: Option<PathBuf>,
    /// A live call with no RTP from the far end for this long is ended.
    pub no_media_timeout_seconds: u64,
    /// Threads that run live calls' media; default: one per core.
    pub media_threads: usize,
    /// Whether inbound calls are recorded (outbound calls: `record` per call).
    pub record_inbound_calls: bool,
    /// Where clients reach this server (`https://calls.example.com`), for
    /// the URLs it hands out; default: the Host the request came to.
    pub public_url: Option<String>,
    /// `local` (files under `recording_storage_dir`) or `s3`.
    pub recording_storage: String,
    /// Local storage's directory; default `data_dir/objects`.
    pub recording_storage_dir: Option<PathBuf>,
    pub s3_bucket: Option<String>,
    /// Prepended to every object key.
    pub s3_prefix: String,
    /// For S3-compatible services other than AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Default: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from the environment.
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// Allow an `http://` endpoint.
    pub s3_allow_http: bool,
    /// `signed` (a Switchyard URL with an HMAC) or `presigned` (S3's own URL).
    pub recording_url_mode: String,
    pub recording_url_ttl_seconds: u64,
    /// Key of the signed URLs (≥ 32 characters, the same on every server);
    /// generated into `data_dir` when absent.
    pub recording_url_secret: Option<String>,
    /// The key that seals trunk passwords and webhook signing secrets in
    /// the database (≥ 32 characters, the same on every server of one
    /// database); generated into `data_dir/secrets.key` when absent.
    pub secrets_key: Option<String>,
    /// Keys being rotated out: they still open what they sealed; each
    /// start seals such values again with `secrets_key`.
    #[serde(deserialize_with = "string_or_list")]
    pub secrets_key_previous: Vec<String>,
    /// Recordings encoded at once (0: this process encodes none).
    pub recording_workers: usize,
    /// Days an organization keeps recordings unless it sets its own.
    pub recording_retention_days: i64,
    /// How often recordings past retention are looked for.
    pub recording_retention_sweep_seconds: u64,
    /// Special-use networks (CIDRs) webhooks may be sent to anyway, e.g.
    /// `127.0.0.0/8` for a receiver on this machine. Without them, loopback,
    /// private, link-local and other special-use addresses are refused.
    /// A TOML list, or one string of comma-separated CIDRs (as the
    /// environment gives it).
    #[serde(deserialize_with = "string_or_list")]
    pub webhook_allow_destinations: Vec<String>,
    /// Whether this process delivers webhooks (off: the API and the outbox
    /// still work; another process on the same PostgreSQL delivers).
    pub webhook_delivery_enabled: bool,
    /// How often an idle delivery worker looks for new events and due retries.
    pub webhook_poll_interval_ms: u64,
    /// Deliveries in flight at once, per process.
    pub webhook_concurrency: usize,
    /// The time limit of one delivery, connecting to the end of the answer.
    pub webhook_timeout_ms: u64,
    /// An ACTIVE endpoint whose deliveries all fail for this long is DISABLED.
    pub webhook_disable_after_seconds: u64,
    /// Trunks and numbers to create in the Default organization at start.
    #[serde(default)]
    pub sip_trunks: Vec<TrunkSeed>,
}

/// A list of strings, or one string of comma-separated items.
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSeed {
    pub name: String,
    pub host: String,
    pub port: Option<i64>,
    pub transport: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub realm: Option<String>,
    pub from_domain: Option<String>,
    pub max_concurrent_calls: Option<i64>,
    /// CIDRs the trunk's INVITEs may come from besides its host's addresses.
    #[serde(default)]
    pub inbound_allow: Vec<String>,
    #[serde(default)]
    pub numbers: Vec<String>,
}

const ENV_KEYS: &[&str] = &[
    "database_url",
    "http_addr",
    "data_dir",
    "jwt_secret",
    "token_ttl_seconds",
    "rate_limit_per_second",
    "rate_limit_burst",
    "call_create_per_second",
    "call_create_burst",
    "login_max_failures",
    "login_max_failures_per_account",
    "login_max_failures_per_address",
    "login_lockout_seconds",
    "login_lockout_max_seconds",
    "login_failure_window_seconds",
    "scheduler_interval_ms",
    "scheduler_batch",
    "database_max_connections",
    "log_format",
    "sip_enabled",
    "sip_addr",
    "sip_advertised_ip",
    "sip_domain",
    "sip_untrusted_inbound",
    "rtp_ip",
    "rtp_port_min",
    "rtp_port_max",
    "max_live_calls",
    "prompt_file",
    "no_media_timeout_seconds",
    "media_threads",
    "record_inbound_calls",
    "public_url",
    "recording_storage",
    "recording_storage_dir",
    "s3_bucket",
    "s3_prefix",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_allow_http",
    "recording_url_mode",
    "recording_url_ttl_seconds",
    "recording_url_secret",
    "secrets_key",
    "secrets_key_previous",
    "recording_workers",
    "recording_retention_days",
    "recording_retention_sweep_seconds",
    "webhook_allow_destinations",
    "webhook_delivery_enabled",
    "webhook_poll_interval_ms",
    "webhook_concurrency",
    "webhook_timeout_ms",
    "webhook_disable_after_seconds",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://./data/switchyard.db".into(),
            http_addr: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            jwt_secret: None,
            token_ttl_seconds: 8 * 3600,
            rate_limit_per_second: 50,
            rate_limit_burst: 100,
            call_create_per_second: 10,
            call_create_burst: 20,
            login_max_failures: 5,
            login_max_failures_per_account: 20,
            login_max_failures_per_address: 50,
            login_lockout_seconds: 1,
            login_lockout_max_seconds: 300,
            login_failure_window_seconds: 900,
            scheduler_interval_ms: 500,
            scheduler_batch: 100,
            database_max_connections: 16,
            log_format: "text".into(),
            sip_enabled: true,
            sip_addr: "127.0.0.1:5060".into(),
            sip_advertised_ip: None,
            sip_domain: None,
            sip_untrusted_inbound: "reject".into(),
            rtp_ip: None,
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            max_live_calls: 2000,
            prompt_file: None,
            no_media_timeout_seconds: 30,
            media_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            record_inbound_calls: true,
            public_url: None,
            recording_storage: "local".into(),
            recording_storage_dir: None,
            s3_bucket: None,
            s3_prefix: String::new(),
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            recording_url_mode: "signed".into(),
            recording_url_ttl_seconds: 3600,
            recording_url_secret: None,
            secrets_key: None,
            secrets_key_previous: Vec::new(),
            // Half the cores: encoding must leave room for live calls.
            recording_workers: std::thread::available_parallelism()
                .map(|n| (n.get() / 2).max(1))
                .unwrap_or(1),
            recording_retention_days: 90,
            recording_retention_sweep_seconds: 3600,
            webhook_allow_destinations: Vec::new(),
            webhook_delivery_enabled: true,
            webhook_poll_interval_ms: 50,
            webhook_concurrency: 64,
            webhook_timeout_ms: 15_000,
            webhook_disable_after_seconds: 5 * 24 * 3600,
            sip_trunks: Vec::new(),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only known keys come from the environment: other SWITCHYARD_* variables
        // (the test suite's, say) are not configuration.
        let env = Env::prefixed("SWITCHYARD_")
            .split("__")
            .filter(|k| ENV_KEYS.iter().any(|f| k.as_str().eq_ignore_ascii_case(f)));
        let figment = figment.merge(env);
        let config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if !matches!(config.log_format.as_str(), "text" | "json") {
            anyhow::bail!("configuration: log_format must be text or json");
        }
        config.engine_addresses()?;
        config.untrusted_inbound()?;
        if config.rtp_port_min >= config.rtp_port_max || config.rtp_port_min < 1024 {
            anyhow::bail!(
                "configuration: rtp_port_min..rtp_port_max must be a range above 1023 (got {}..{})",
                config.rtp_port_min,
                config.rtp_port_max
            );
        }
        config.login_limits()?;
        if config.max_live_calls == 0 {
            anyhow::bail!("configuration: max_live_calls must be at least 1");
        }
        if !(1..=256).contains(&config.media_threads) {
            anyhow::bail!("configuration: media_threads must be between 1 and 256");
        }
        config.recording_storage()?;
        config.recording_url_mode()?;
        if !(60..=7 * 86400).contains(&config.recording_url_ttl_seconds) {
            anyhow::bail!(
                "configuration: recording_url_ttl_seconds must be between 60 and 604800 (got {})",
                config.recording_url_ttl_seconds
            );
        }
        if !(0..=36500).contains(&config.recording_retention_days) {
            anyhow::bail!("configuration: recording_retention_days must be between 0 and 36500");
        }
        if config
            .recording_url_secret
            .as_ref()
            .is_some_and(|s| s.len() < 32)
        {
            anyhow::bail!("configuration: recording_url_secret must be at least 32 characters");
        }
        if let Some(url) = &config.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!(
                "configuration: public_url must start with http:// or https:// (got {url:?})"
            );
        }
        config.webhook_destinations()?;
        if config.webhook_concurrency == 0 || config.webhook_timeout_ms == 0 {
            anyhow::bail!(
                "configuration: webhook_concurrency and webhook_timeout_ms must be at least 1"
            );
        }
        Ok(config)
    }

    /// The webhook destination policy from `webhook_allow_destinations`.
    /// The failed-login limits (`login_*`).
    pub fn login_limits(&self) -> anyhow::Result<switchyard_api::LoginLimitConfig> {
        let counts = [
            self.login_max_failures,
            self.login_max_failures_per_account,
            self.login_max_failures_per_address,
        ];
        if counts.contains(&0) {
            anyhow::bail!("configuration: login_max_failures* must be at least 1");
        }
        if self.login_lockout_seconds == 0
            || self.login_lockout_seconds > self.login_lockout_max_seconds
            || self.login_failure_window_seconds == 0
        {
            anyhow::bail!(
                "configuration: login_lockout_seconds must be at least 1 and at most login_lockout_max_seconds, login_failure_window_seconds at least 1"
            );
        }
        Ok(switchyard_api::LoginLimitConfig {
            max_failures: self.login_max_failures,
            max_failures_per_account: self.login_max_failures_per_account,
            max_failures_per_address: self.login_max_failures_per_address,
            lockout: std::time::Duration::from_secs(self.login_lockout_seconds),
            max_lockout: std::time::Duration::from_secs(self.login_lockout_max_seconds),
            window: std::time::Duration::from_secs(self.login_failure_window_seconds),
        })
    }

    pub fn webhook_destinations(&self) -> anyhow::Result<DestinationPolicy> {
        DestinationPolicy::parse(&self.webhook_allow_destinations)
            .map_err(|e| anyhow::anyhow!("configuration: webhook_allow_destinations: {e}"))
    }
}

impl Config {
    /// Where recordings are kept, from `recording_storage` and `s3_*`.
    pub fn recording_storage(&self) -> anyhow::Result<switchyard_recordings::StorageConfig> {
        use switchyard_recordings::StorageConfig;
        match self.recording_storage.as_str() {
            "local" => Ok(StorageConfig::Local {
                root: self
                    .recording_storage_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("objects")),
            }),
            "s3" => {
                let bucket = self
                    .s3_bucket
                    .clone()
                    .filter(|b| !b.trim().is_empty())
                    .ok_or_else(|| {
                        anyhow::anyhow!("configuration: recording_storage = \"s3\" needs s3_bucket")
                    })?;
                Ok(StorageConfig::S3 {
                    bucket,
                    prefix: self.s3_prefix.clone(),
                    endpoint: self.s3_endpoint.clone(),
                    region: self.s3_region.clone(),
                    access_key_id: self.s3_access_key_id.clone(),
                    secret_access_key: self.s3_secret_access_key.clone(),
                    allow_http: self.s3_allow_http,
                })
            }
            other => anyhow::bail!(
                "configuration: recording_storage must be local or s3 (got {other:?})"
            ),
        }
    }

    pub fn recording_url_mode(&self) -> anyhow::Result<switchyard_service::recordings::UrlMode> {
        use switchyard_service::recordings::UrlMode;
        match self.recording_url_mode.as_str() {
            "signed" => Ok(UrlMode::Signed),
            "presigned" if self.recording_storage == "s3" => Ok(UrlMode::Presigned),
            "presigned" => anyhow::bail!(
                "configuration: recording_url_mode = \"presigned\" needs recording_storage = \"s3\""
            ),
            other => anyhow::bail!(
                "configuration: recording_url_mode must be signed or presigned (got {other:?})"
            ),
        }
    }
}

impl Config {
    /// `sip_untrusted_inbound`.
    pub fn untrusted_inbound(&self) -> anyhow::Result<UntrustedInbound> {
        match self.sip_untrusted_inbound.as_str() {
            "reject" => Ok(UntrustedInbound::Reject),
            "drop" => Ok(UntrustedInbound::Drop),
            other => anyhow::bail!(
                "configuration: sip_untrusted_inbound must be reject or drop (got {other:?})"
            ),
        }
    }
}

/// The SIP engine's addresses, parsed from the configuration.
pub struct EngineAddresses {
    pub sip: std::net::SocketAddr,
    pub advertised: Option<std::net::IpAddr>,
    pub rtp: std::net::IpAddr,
    /// `sip_domain`, checked to be a host name or an IP address.
    pub domain: Option<String>,
}

impl Config {
    pub fn engine_addresses(&self) -> anyhow::Result<EngineAddresses> {
        let sip: std::net::SocketAddr = self.sip_addr.parse().map_err(|_| {
            anyhow::anyhow!(
                "configuration: sip_addr must be IP:port, e.g. 0.0.0.0:5060 (got {:?})",
                self.sip_addr
            )
        })?;
        let ip = |key: &str, v: &Option<String>| -> anyhow::Result<Option<std::net::IpAddr>> {
            v.as_deref()
                .map(|t| {
                    t.parse().map_err(|_| {
                        anyhow::anyhow!("configuration: {key} must be an IP address (got {t:?})")
                    })
                })
                .transpose()
        };
        let advertised = ip("sip_advertised_ip", &self.sip_advertised_ip)?;
        let rtp = ip("rtp_ip", &self.rtp_ip)?.unwrap_or(sip.ip());
        if advertised.is_none() && sip.ip().is_unspecified() {
            anyhow::bail!(
                "configuration: sip_addr {sip} listens on every interface; set sip_advertised_ip to the address peers should use"
            );
        }
        let domain = self
            .sip_domain
            .as_deref()
            .map(|d| {
                switchyard_domain::SipHost::parse_field(d)
                    .map(|_| d.to_owned())
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "configuration: sip_domain must be a host name or an IP address (got {d:?})"
                        )
                    })
            })
            .transpose()?;
        Ok(EngineAddresses {
            sip,
            advertised,
            rtp,
            domain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file_and_toml_overrides() {
        let c = Config::default();
        assert_eq!(c.http_addr, "127.0.0.1:8080");
        let dir = std::env::temp_dir().join(format!("sy-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "http_addr = \"127.0.0.1:9999\"\n[[sip_trunks]]\nname = \"t\"\nhost = \"127.0.0.1\"\nnumbers = [\"+15550001111\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.http_addr, "127.0.0.1:9999");
        assert_eq!(c.sip_trunks[0].numbers, vec!["+15550001111"]);
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        assert!(Config::load(Some(&file)).is_err());
    }

    #[test]
    fn untrusted_inbound_is_reject_or_drop() {
        let mut c = Config::default();
        assert_eq!(c.untrusted_inbound().unwrap(), UntrustedInbound::Reject);
        c.sip_untrusted_inbound = "drop".into();
        assert_eq!(c.untrusted_inbound().unwrap(), UntrustedInbound::Drop);
        c.sip_untrusted_inbound = "ignore".into();
        assert!(c.untrusted_inbound().is_err());
    }

    #[test]
    fn webhook_allow_list_reads_a_list_or_a_comma_separated_string() {
        let dir = std::env::temp_dir().join(format!("sy-config-wh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "webhook_allow_destinations = [\"127.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.webhook_allow_destinations, vec!["127.0.0.0/8", "::1"]);
        assert!(
            c.webhook_destinations()
                .unwrap()
                .check("127.0.0.1".parse().unwrap())
                .is_ok()
        );
        std::fs::write(
            &file,
            "webhook_allow_destinations = \"10.0.0.0/8, 127.0.0.1\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(
            c.webhook_allow_destinations,
            vec!["10.0.0.0/8", "127.0.0.1"]
        );
        std::fs::write(&file, "webhook_allow_destinations = [\"localhost\"]\n").unwrap();
        assert!(Config::load(Some(&file)).is_err(), "not a CIDR");
        assert!(
            Config::default()
                .webhook_destinations()
                .unwrap()
                .check("127.0.0.1".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn sip_domain_is_a_host() {
        let with = |d: &str| Config {
            sip_domain: Some(d.into()),
            ..Config::default()
        };
        for ok in ["sip.example.com", "10.0.0.1", "::1", "[2001:db8::1]"] {
            assert_eq!(
                with(ok).engine_addresses().unwrap().domain.as_deref(),
                Some(ok)
            );
        }
        for bad in ["", "a b", "x.com>", "-x.com", "x.com:5060"] {
            assert!(with(bad).engine_addresses().is_err(), "{bad:?}");
        }
        assert_eq!(Config::default().engine_addresses().unwrap().domain, None);
    }
}
