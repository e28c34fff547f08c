//! Headless Chromium through ChromeDriver (Debian `chromium` and
//! `chromium-driver`), driven over the W3C WebDriver protocol. Written
//! with reqwest, which the tests already use: a test needs four commands
//! (new session, navigate, execute async script, delete session), less
//! than a WebDriver client crate and its own HTTP stack would bring.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{TempDir, peers_required};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
}

impl Browser {
    /// `None` (skip) when Chromium is not installed and peers are not required.
    pub async fn start() -> Option<Self> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists()
        {
            assert!(
                !peers_required(),
                "Chromium and ChromeDriver are required (SWITCHYARD_REQUIRE_PEERS=1): run scripts/install-test-deps.sh"
            );
            eprintln!(
                "SKIPPED: chromium/chromedriver not installed (scripts/install-test-deps.sh)"
            );
            return None;
        }
        let port = super::sipp::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = TempDir::new();
        // The flags this machine needs (see shared research): no sandbox as
        // root, and no background traffic to hosts the network cannot reach.
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
            format!("--user-data-dir={}", profile.0.display()),
        ];
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
            }}}))
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Some(Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        })
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/session/{}/{path}", self.base, self.session))
            .json(&body)
            .send()
            .await
            .expect("WebDriver command");
        let ok = response.status().is_success();
        let r: Value = response.json().await.expect("WebDriver JSON");
        assert!(ok, "WebDriver {path}: {r}");
        r["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command("url", json!({"url": url})).await;
    }

    /// Runs `script` as an async function body: it ends by calling
    /// `arguments[arguments.length - 1](result)`.
    pub async fn run_async(&self, script: &str, args: Value, timeout: Duration) -> Value {
        self.command("timeouts", json!({"script": timeout.as_millis() as u64}))
            .await;
        self.command("execute/async", json!({"script": script, "args": args}))
            .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed before `close` still ends the session, so
        // Chromium quits (killing the driver alone would leave it running).
        // Plain blocking HTTP: Drop cannot wait on the async client.
        use std::io::{Read, Write};
        let host = self.base.trim_start_matches("http://").to_owned();
        if let Ok(mut s) = std::net::TcpStream::connect(&host) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read(&mut [0u8; 256]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
