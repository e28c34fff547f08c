//! The webhook receiver (`tests/webhook_receiver.py`, verifying with the
//! PyPI `standardwebhooks` library) as a child process, and helpers for
//! endpoints that point at it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{TestServer, eventually, peers_required};

fn venv_python() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

/// Whether the official verifier is installed; panics instead of `false`
/// under `SWITCHYARD_REQUIRE_PEERS=1`.
pub fn verifier_available() -> bool {
    let python = venv_python();
    let available = python.exists()
        && Command::new(&python)
            .args(["-c", "import standardwebhooks"])
            .status()
            .is_ok_and(|s| s.success());
    if !available {
        assert!(
            !peers_required(),
            "the standardwebhooks verifier is required: run scripts/install-test-deps.sh"
        );
        eprintln!("SKIPPED: no .venv with standardwebhooks (run scripts/install-test-deps.sh)");
    }
    available
}

/// A running receiver, killed when dropped.
pub struct Receiver {
    child: Child,
    pub port: u16,
    http: reqwest::Client,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// `None` (skip) when the verifier is missing and not required.
    pub fn start() -> Option<Self> {
        if !verifier_available() {
            return None;
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
        let mut child = Command::new(venv_python())
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("receiver's first line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        Some(Self {
            child,
            port,
            http: reqwest::Client::new(),
        })
    }

    /// Where endpoint `name` receives.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{name}", self.port)
    }

    fn control(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/_control/endpoints/{name}", self.port)
    }

    /// Sets how `name` verifies (`secrets`: label → whsec_) and answers;
    /// keys left out keep their values.
    pub async fn configure(&self, name: &str, config: Value) {
        let r = self
            .http
            .put(self.control(name))
            .json(&config)
            .send()
            .await
            .expect("configure receiver");
        assert!(r.status().is_success());
    }

    /// Answers the requests `name` is holding, and stops holding.
    pub async fn release(&self, name: &str) {
        let r = self
            .http
            .post(format!("{}/release", self.control(name)))
            .send()
            .await
            .expect("release");
        assert!(r.status().is_success());
    }

    /// `{requests, unique_ids, deliveries: [{webhook_id, json, headers, verified, answered, …}]}`.
    pub async fn summary(&self, name: &str) -> Value {
        self.http
            .get(self.control(name))
            .send()
            .await
            .expect("receiver summary")
            .json()
            .await
            .expect("summary JSON")
    }

    /// Waits until `name` has had at least `count` requests; returns them.
    pub async fn wait_for(&self, name: &str, count: usize, timeout: Duration) -> Vec<Value> {
        eventually(timeout, || async {
            let s = self.summary(name).await;
            let d = s["deliveries"].as_array().cloned().unwrap_or_default();
            (d.len() >= count).then_some(d)
        })
        .await
    }
}

/// Creates an endpoint for `events` at the receiver's `name`, and tells the
/// receiver its secret (as label "current"). Returns the endpoint (with
/// `signing_secret`).
pub async fn endpoint_at(
    srv: &TestServer,
    receiver: &Receiver,
    name: &str,
    events: &[&str],
) -> Value {
    let r = srv
        .post(
            "/webhooks/endpoints",
            json!({"url": receiver.url(name), "event_types": events}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    receiver
        .configure(
            name,
            json!({"secrets": {"current": r.body["signing_secret"]}}),
        )
        .await;
    r.body
}

/// The endpoint's attempts (newest first), from the API.
pub async fn attempts(srv: &TestServer, endpoint_id: &str) -> Vec<Value> {
    let r = srv
        .get(&format!(
            "/webhooks/endpoints/{endpoint_id}/messages?page_size=100"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until the endpoint has an attempt matching `check`; returns it.
pub async fn wait_attempt(
    srv: &TestServer,
    endpoint_id: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(timeout, || async {
        attempts(srv, endpoint_id)
            .await
            .into_iter()
            .find(|a| check(a))
    })
    .await
}

/// Creates a call (with no trunk the call just waits in QUEUED): one
/// `call.created` event.
pub async fn make_call(srv: &TestServer) -> Value {
    srv.create_call(json!({"to_number": "+14155552671"})).await
}
