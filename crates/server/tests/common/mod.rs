//! The test harness: a real server on a real database (SQLite in a temp
//! directory, or a fresh PostgreSQL database that is dropped afterwards),
//! driven over HTTP on loopback.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::app::RunningServer;
use switchyard::config::Config;
use switchyard_domain::Role;
use switchyard_domain::id::OrganizationId;

pub mod browser;
pub mod process;
pub mod recording;
pub mod relay;
pub mod s3;
pub mod sipp;
pub mod webhooks;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// PostgreSQL for tests: `SWITCHYARD_TEST_DATABASE_URL` or the local default.
pub fn pg_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn peers_required() -> bool {
    std::env::var("SWITCHYARD_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// A PostgreSQL database made for one test and dropped when this is dropped.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// `None` (skip) if PostgreSQL is unreachable and peers are not required.
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let admin = pg_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) if !peers_required() => {
                eprintln!(
                    "SKIPPED: PostgreSQL unreachable at {admin}: {e} (set SWITCHYARD_REQUIRE_PEERS=1 to fail instead)"
                );
                return None;
            }
            Err(e) => panic!(
                "PostgreSQL is required (SWITCHYARD_REQUIRE_PEERS=1) but unreachable at {admin}: {e}"
            ),
        };
        let name = format!("sy_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin.clone());
        Some(Self {
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime (or during a panic): use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A running server with its database and the first-run API key.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub api_key: String,
    pub org: OrganizationId,
    pub owner_password: String,
    pub http: reqwest::Client,
    pub config: Config,
    _dir: TempDir,
    _pg: Option<PgDatabase>,
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p =
            std::env::temp_dir().join(format!("switchyard-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn base_config(dir: &std::path::Path) -> Config {
    Config {
        database_url: format!("sqlite://{}", dir.join("switchyard.db").display()),
        http_addr: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        scheduler_interval_ms: 50,
        // Generous limits so tests only hit them on purpose.
        rate_limit_per_second: 10_000,
        rate_limit_burst: 10_000,
        call_create_per_second: 10_000,
        call_create_burst: 10_000,
        login_max_failures: 10_000,
        login_max_failures_per_account: 10_000,
        login_max_failures_per_address: 10_000,
        // The control-plane tests drive calls' statuses themselves: the SIP
        // engine is off unless a test turns it on (then on its own port;
        // RTP ports are shared and skipped when another test holds them).
        sip_enabled: false,
        sip_addr: "127.0.0.1:0".into(),
        // Retention tests see their sweep within a second.
        recording_retention_sweep_seconds: 1,
        // Webhook receivers in tests listen on loopback; the SSRF tests
        // clear this. Fast polling keeps delivery tests short.
        webhook_allow_destinations: vec!["127.0.0.0/8".into(), "::1/128".into()],
        webhook_poll_interval_ms: 20,
        ..Config::default()
    }
}

impl TestServer {
    /// Starts a server; `None` if the back-end is unavailable and optional.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        Self::start_with_options(backend, tweak, switchyard::app::StartOptions::default()).await
    }

    /// As [`Self::start_with`], with start options (a webhook clock, say).
    pub async fn start_with_options(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        options: switchyard::app::StartOptions,
    ) -> Option<Self> {
        init_test_logging();
        let dir = TempDir::new();
        let mut config = base_config(&dir.0);
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = PgDatabase::create().await?;
                config.database_url = db.url.clone();
                Some(db)
            }
        };
        tweak(&mut config);
        let server = RunningServer::start_with(&config, options)
            .await
            .expect("server starts");
        let initial = server
            .initial
            .clone()
            .expect("first run creates credentials");
        Some(Self {
            base: format!("http://{}", server.addr),
            api_key: initial.api_key,
            org: initial.organization_id,
            owner_password: initial.password,
            server: Some(server),
            http: reqwest::Client::new(),
            config,
            _dir: dir,
            _pg: pg,
        })
    }

    pub fn store(&self) -> &switchyard_store::Store {
        &self.server.as_ref().expect("running").store
    }

    /// Where the SIP engine listens (it must be enabled).
    pub fn sip_addr(&self) -> std::net::SocketAddr {
        self.server
            .as_ref()
            .and_then(|s| s.engine.as_ref())
            .expect("the SIP engine runs")
            .sip_addr()
    }

    pub fn services(&self) -> &switchyard_service::Services {
        &self.server.as_ref().expect("running").services
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// A request with the first-run API key.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.call_as(&Cred::Key(self.api_key.clone()), method, path, body)
            .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn call_as(
        &self,
        cred: &Cred,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        req = match cred {
            Cred::None => req,
            Cred::Key(k) => req.header("X-API-Key", k),
            Cred::Bearer(t) => req.bearer_auth(t),
            Cred::BearerOrg(t, org) => req.bearer_auth(t).header("X-Organization-ID", org),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::from(req.send().await.expect("request sent")).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Resp {
        Resp::from(req.send().await.expect("request sent")).await
    }

    /// Logs in as the first-run owner.
    pub async fn owner_token(&self) -> String {
        self.login(
            switchyard::bootstrap::OWNER_EMAIL,
            &self.owner_password.clone(),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .call_as(
                &Cred::None,
                Method::POST,
                "/auth/login",
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login: {}", r.body);
        r.body["access_token"].as_str().expect("token").to_owned()
    }

    /// A new organization with an OWNER user and an API key.
    pub async fn new_org(&self, name: &str) -> OtherOrg {
        let s = self.services();
        let org = s.store.create_organization(name).await.expect("org");
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let user = s
            .auth
            .create_user(&email, None, "password123")
            .await
            .expect("user");
        s.store
            .add_membership(org.id, user.id, Role::Owner)
            .await
            .expect("membership");
        let (_, key) = s
            .auth
            .create_api_key(org.id, "k".into(), None, None, Some(user.id))
            .await
            .expect("key");
        OtherOrg {
            id: org.id,
            key,
            email,
        }
    }

    /// A user with `role` in the first-run organization; returns a bearer token.
    pub async fn user_with_role(&self, role: Role) -> String {
        let s = self.services();
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let user = s
            .auth
            .create_user(&email, None, "password123")
            .await
            .expect("user");
        s.store
            .add_membership(self.org, user.id, role)
            .await
            .expect("membership");
        self.login(&email, "password123").await
    }

    /// Gives the first-run organization a trunk and a default number.
    pub async fn with_route(&self) -> Value {
        let t = self
            .post(
                "/sip-trunks",
                json!({"name": "local", "host": "127.0.0.1", "port": 5070}),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
        let n = self
            .post(
                "/phone-numbers",
                json!({"number": "+15550001000", "sip_trunk_id": t.body["id"]}),
            )
            .await;
        assert_eq!(n.status, StatusCode::CREATED, "{}", n.body);
        n.body
    }

    pub async fn create_call(&self, body: Value) -> Value {
        let r = self.post("/calls", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
}

pub struct OtherOrg {
    pub id: OrganizationId,
    pub key: String,
    pub email: String,
}

pub enum Cred {
    None,
    Key(String),
    Bearer(String),
    BearerOrg(String, String),
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    async fn from(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            text,
        }
    }

    /// Asserts the error envelope with `status` and `code`; returns `param`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> Option<String> {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let err = self
            .body
            .get("error")
            .unwrap_or_else(|| panic!("no envelope: {}", self.text));
        assert_eq!(err["code"], code, "body: {}", self.text);
        assert!(err["message"].is_string(), "message: {}", self.text);
        assert!(
            err.as_object()
                .map(|o| o.contains_key("param"))
                .unwrap_or(false),
            "param key: {}",
            self.text
        );
        err["param"].as_str().map(str::to_owned)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `SWITCHYARD_TEST_LOG=debug` (any tracing filter) shows the servers' logs
/// in a test's output.
pub fn init_test_logging() {
    if let Ok(filter) = std::env::var("SWITCHYARD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Defines each test twice: on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($( async fn $name:ident($srv:ident : TestServer) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(owned) = TestServer::start(Backend::Sqlite).await else { return };
                    {
                        let $srv = &owned;
                        $body
                    }
                    owned.stop().await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(owned) = TestServer::start(Backend::Postgres).await else { return };
                    {
                        let $srv = &owned;
                        $body
                    }
                    owned.stop().await;
                }
            )*
        }
    };
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (as JWTs use it).
pub fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url without padding; panics on anything else.
pub fn b64url_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = B64URL
            .iter()
            .position(|&a| a == c)
            .expect("base64url character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A phone number with a trunk of its own for another organization, through its key.
pub async fn route_for(srv: &TestServer, key: &str, number: &str) -> Value {
    let cred = Cred::Key(key.to_owned());
    let t = srv
        .call_as(
            &cred,
            Method::POST,
            "/sip-trunks",
            Some(json!({"name": format!("trunk-{number}"), "host": "127.0.0.1", "port": 5070})),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let n = srv
        .call_as(
            &cred,
            Method::POST,
            "/phone-numbers",
            Some(json!({"number": number, "sip_trunk_id": t.body["id"]})),
        )
        .await;
    assert_eq!(n.status, StatusCode::CREATED, "{}", n.body);
    n.body
}
