//! One delivery: a signed POST with the endpoint's headers.
//!
//! Safety, whatever the URL says: only http(s); the destination's addresses
//! are checked against the [`DestinationPolicy`] after DNS resolution, when
//! the connection is made (so a name that resolved to a public address when
//! the endpoint was saved and to 169.254.169.254 now is refused: DNS
//! rebinding); redirects are not followed (a 3xx is a failure); proxies
//! from the environment are ignored (they would resolve for us); at most
//! [`MAX_RESPONSE_BYTES`] of the response is read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use switchyard_domain::destination::{self, DestinationHost, DestinationPolicy};

use crate::signing;

/// The most of a response body read; the rest is left unread.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The most of a response body kept in the attempt's `response_body_excerpt`.
pub const EXCERPT_BYTES: usize = 1024;

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Delivered {
        status_code: u16,
        body_excerpt: String,
        duration_ms: i64,
    },
    Failed {
        /// `None`: no HTTP response (refused, connection failure, timeout).
        status_code: Option<u16>,
        body_excerpt: String,
        error_message: String,
        duration_ms: i64,
    },
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub url: &'a str,
    /// The endpoint's own headers (validated when saved).
    pub headers: &'a BTreeMap<String, String>,
    /// `webhook-id`.
    pub message_id: &'a str,
    pub body: &'a str,
    /// Every secret that signs (one `v1,` entry each).
    pub secrets: &'a [String],
}

/// A destination the policy refuses; found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("destination refused: {0}")]
struct Refused(String);

/// Resolves names with the system resolver, then refuses the lot if any
/// address is not permitted.
struct CheckedResolver {
    policy: Arc<DestinationPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_checked(
            self.policy.clone(),
            name.as_str().to_owned(),
        ))
    }
}

async fn resolve_checked(
    policy: Arc<DestinationPolicy>,
    host: String,
) -> Result<Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    if addrs.is_empty() {
        return Err(Refused(format!("{host} has no address")).into());
    }
    for addr in &addrs {
        policy
            .check(addr.ip())
            .map_err(|why| Refused(format!("{host} resolves to {why}")))?;
    }
    Ok(Box::new(addrs.into_iter()))
}

/// Posts deliveries; one per process, sharing its connection pool.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<DestinationPolicy>,
    timeout: Duration,
}

impl Sender {
    /// `timeout`: for the whole exchange, from connecting to the end of the
    /// response (Envoy's window is 15 s).
    pub fn new(policy: Arc<DestinationPolicy>, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("Switchyard-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    pub async fn send(&self, delivery: Delivery<'_>) -> SendOutcome {
        let started = Instant::now();
        let elapsed =
            |started: Instant| i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let fail = |error_message: String, started: Instant| SendOutcome::Failed {
            status_code: None,
            body_excerpt: String::new(),
            error_message,
            duration_ms: elapsed(started),
        };
        // The URL was checked when saved; check again (the policy may be
        // stricter now), and IP literals here: they never reach the resolver.
        let parsed = match destination::parse_url(delivery.url) {
            Ok(p) => p,
            Err(why) => return fail(format!("destination refused: the URL {why}"), started),
        };
        if let DestinationHost::Ip(ip) = parsed.host
            && let Err(why) = self.policy.check(ip)
        {
            return fail(format!("destination refused: {why}"), started);
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let signature = match signing::signature_header(
            delivery.secrets,
            delivery.message_id,
            timestamp,
            delivery.body.as_bytes(),
        ) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot sign: {e}"), started),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in delivery.headers {
            // Validated when saved; anything that no longer parses is left out.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        let fixed = [
            ("content-type", "application/json".to_owned()),
            ("webhook-id", delivery.message_id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        for (name, value) in fixed {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let response = self
            .client
            .post(parsed.url.as_str())
            .headers(headers)
            .body(delivery.body.to_owned())
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return fail(self.describe(&e), started),
        };
        let status = response.status();
        let mut body = Vec::new();
        let mut read_error = None;
        while body.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(self.describe(&e));
                    break;
                }
            }
        }
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]).into_owned();
        let duration_ms = elapsed(started);
        match (status.is_success(), read_error) {
            (true, None) => SendOutcome::Delivered {
                status_code: status.as_u16(),
                body_excerpt: excerpt,
                duration_ms,
            },
            (true, Some(error)) => SendOutcome::Failed {
                status_code: Some(status.as_u16()),
                body_excerpt: excerpt,
                error_message: format!("reading the response: {error}"),
                duration_ms,
            },
            (false, _) => SendOutcome::Failed {
                status_code: Some(status.as_u16()),
                body_excerpt: excerpt,
                error_message: format!("the endpoint answered HTTP {}", status.as_u16()),
                duration_ms,
            },
        }
    }

    /// A reqwest error as an attempt's `error_message`.
    fn describe(&self, error: &reqwest::Error) -> String {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut chain = Vec::new();
        while let Some(e) = source {
            if let Some(refused) = e.downcast_ref::<Refused>() {
                return refused.to_string();
            }
            let text = e.to_string();
            if chain.last() != Some(&text) {
                chain.push(text);
            }
            source = e.source();
        }
        if error.is_timeout() {
            return format!("no response within {} s", self.timeout.as_secs_f64());
        }
        chain.join(": ")
    }
}
