//! Who may start an inbound call: only an organization's trunks. A new
//! INVITE is taken only from an address one of the number's organization's
//! trunks stands for: the addresses its `host` resolves to, or a network in
//! its `inbound_allow`. Anyone else gets 403, or no answer at all
//! (`sip_untrusted_inbound = "drop"`), decided from the source address
//! alone before the number is looked at, so that known and unknown numbers
//! get the same answer and cannot be enumerated. A trusted source calling a
//! number of an organization that does not trust it gets the 404 of an
//! unknown number.
//!
//! The table of trusted sources is built from every trunk in the database,
//! with each host name resolved, and built again every [`REFRESH_EVERY`]
//! (DNS changes, trunks changed by another server process) and before the
//! next INVITE after a trunk changed through this process's API. A name
//! that does not resolve keeps the addresses it had.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rsipstack::sip::StatusCode;
use rsipstack::transaction::transaction::Transaction;
use switchyard_domain::destination::Cidr;
use switchyard_domain::id::OrganizationId;
use switchyard_domain::model::SipTrunk;
use switchyard_store::Store;

use crate::engine::Inner;

/// How often the table is rebuilt without a change seen here.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// The longest one host name's resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// What an INVITE from an untrusted source gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UntrustedInbound {
    /// 403 Forbidden.
    #[default]
    Reject,
    /// No answer (the sender cannot tell a server is here).
    Drop,
}

/// The sources one trunk stands for.
#[derive(Debug, Clone, PartialEq)]
struct TrunkSources {
    organization: OrganizationId,
    addresses: Vec<IpAddr>,
    networks: Vec<Cidr>,
}

/// Every trunk's sources: which organizations trust an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustTable {
    trunks: Vec<TrunkSources>,
}

impl TrustTable {
    /// The table for `trunks`, with `resolved` giving each host's addresses
    /// (IP literals need no entry). Networks that do not parse (none should:
    /// the API checked them) are skipped.
    pub fn build(trunks: &[SipTrunk], resolved: &HashMap<String, Vec<IpAddr>>) -> Self {
        let trunks = trunks
            .iter()
            .map(|t| TrunkSources {
                organization: t.organization_id,
                addresses: literal(&t.host)
                    .map(|ip| vec![ip])
                    .or_else(|| resolved.get(&t.host).cloned())
                    .unwrap_or_default(),
                networks: t
                    .inbound_allow
                    .iter()
                    .filter_map(|n| n.parse().ok())
                    .collect(),
            })
            .collect();
        Self { trunks }
    }

    /// The organizations with a trunk that stands for `source`.
    pub fn organizations(&self, source: IpAddr) -> Vec<OrganizationId> {
        let source = source.to_canonical();
        let mut orgs: Vec<OrganizationId> = Vec::new();
        for t in &self.trunks {
            let ours = t.addresses.iter().any(|a| a.to_canonical() == source)
                || t.networks.iter().any(|n| n.contains(source));
            if ours && !orgs.contains(&t.organization) {
                orgs.push(t.organization);
            }
        }
        orgs
    }
}

/// An IP address written as a host (IPv6 possibly in brackets).
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Where a request came from: the packet's source address (never what its
/// Via says, which the sender writes).
pub(crate) fn source_of(tx: &Transaction) -> Option<IpAddr> {
    let remote = tx.connection.as_ref()?.get_remote_addr()?;
    Some(remote.get_socketaddr().ok()?.ip().to_canonical())
}

/// Judges a new INVITE by its source alone. Untrusted: answered 403 (or
/// not at all) and `None`. Trusted: the organizations that trust it.
pub(crate) async fn admit(
    engine: &Inner,
    tx: &mut Transaction,
) -> anyhow::Result<Option<Vec<OrganizationId>>> {
    let source = source_of(tx);
    let trusting = match source {
        Some(ip) => engine.trust.organizations(&engine.store, ip).await,
        None => Vec::new(),
    };
    if !trusting.is_empty() {
        return Ok(Some(trusting));
    }
    metrics::counter!("switchyard_sip_untrusted_invites_total").increment(1);
    tracing::debug!(source = ?source, "INVITE from a source that is no organization's trunk");
    match engine.cfg.untrusted_inbound {
        UntrustedInbound::Reject => tx.reply(StatusCode::Forbidden).await?,
        UntrustedInbound::Drop => {}
    }
    Ok(None)
}

/// The engine's table, kept fresh.
pub(crate) struct InboundTrust {
    table: RwLock<Arc<TrustTable>>,
    /// Set when a trunk changed (and at start): rebuild before the next use.
    stale: AtomicBool,
    rebuilding: tokio::sync::Mutex<()>,
    /// Each host name's last good resolution.
    resolved: Mutex<HashMap<String, Vec<IpAddr>>>,
}

impl InboundTrust {
    pub fn new() -> Self {
        Self {
            table: RwLock::new(Arc::new(TrustTable::default())),
            stale: AtomicBool::new(true),
            rebuilding: tokio::sync::Mutex::new(()),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// A trunk changed: rebuild before the next INVITE is judged.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// The organizations that trust `source` (rebuilding first if stale).
    pub async fn organizations(&self, store: &Store, source: IpAddr) -> Vec<OrganizationId> {
        if self.stale.load(Ordering::SeqCst) {
            self.rebuild(store, false).await;
        }
        let table = match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        table.organizations(source)
    }

    /// Builds the table again from the database and DNS. With `always`
    /// false, only if still stale once the lock is ours (another caller may
    /// have just rebuilt it).
    pub async fn rebuild(&self, store: &Store, always: bool) {
        let _one_at_a_time = self.rebuilding.lock().await;
        if !always && !self.stale.load(Ordering::SeqCst) {
            return;
        }
        // Cleared before reading, so a change made meanwhile marks it again.
        self.stale.store(false, Ordering::SeqCst);
        let trunks = match store.sip_trunks_for_engine().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the trunks for inbound trust; keeping the last table");
                self.stale.store(true, Ordering::SeqCst);
                return;
            }
        };
        let resolved = self.resolve_hosts(&trunks).await;
        let table = Arc::new(TrustTable::build(&trunks, &resolved));
        match self.table.write() {
            Ok(mut t) => *t = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }

    /// Every trunk host name's addresses, resolved at once; a name that
    /// fails keeps its last good addresses.
    async fn resolve_hosts(&self, trunks: &[SipTrunk]) -> HashMap<String, Vec<IpAddr>> {
        let mut names: Vec<&str> = trunks
            .iter()
            .map(|t| t.host.as_str())
            .filter(|h| literal(h).is_none())
            .collect();
        names.sort_unstable();
        names.dedup();
        let lookups = names.iter().map(|name| async move {
            let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((*name, 0)))
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map(|addrs| addrs.map(|a| a.ip().to_canonical()).collect::<Vec<_>>());
            (*name, found)
        });
        let results = futures::future::join_all(lookups).await;
        let mut last = match self.resolved.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut now = HashMap::new();
        for (name, found) in results {
            match found {
                Ok(addrs) if !addrs.is_empty() => {
                    now.insert(name.to_owned(), addrs);
                }
                other => {
                    let error = other.err().unwrap_or_else(|| "no addresses".into());
                    tracing::warn!(host = name, %error, "trunk host does not resolve; keeping its last addresses for inbound trust");
                    if let Some(previous) = last.get(name) {
                        now.insert(name.to_owned(), previous.clone());
                    }
                }
            }
        }
        *last = now.clone();
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(org: OrganizationId, host: &str, allow: &[&str]) -> SipTrunk {
        SipTrunk {
            id: switchyard_domain::id::SipTrunkId::new(),
            organization_id: org,
            name: "t".into(),
            host: host.into(),
            port: 5060,
            transport: "udp".into(),
            username: None,
            has_password: false,
            realm: None,
            from_domain: None,
            max_concurrent_calls: None,
            inbound_allow: allow.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn sources_are_the_hosts_addresses_and_the_allowed_networks() {
        let (a, b) = (OrganizationId::new(), OrganizationId::new());
        let resolved = HashMap::from([(
            "sip.carrier.example".to_owned(),
            vec![ip("198.51.100.7"), ip("2001:db8::7")],
        )]);
        let table = TrustTable::build(
            &[
                trunk(a, "sip.carrier.example", &[]),
                trunk(a, "192.0.2.1", &["203.0.113.0/24"]),
                trunk(b, "[2001:db8::1]", &["192.0.2.0/24"]),
            ],
            &resolved,
        );
        assert_eq!(table.organizations(ip("198.51.100.7")), vec![a]);
        assert_eq!(table.organizations(ip("2001:db8::7")), vec![a]);
        assert_eq!(table.organizations(ip("203.0.113.200")), vec![a]);
        assert_eq!(table.organizations(ip("2001:db8::1")), vec![b]);
        // 192.0.2.1 is a's host and inside b's network.
        assert_eq!(table.organizations(ip("192.0.2.1")), vec![a, b]);
        assert_eq!(table.organizations(ip("192.0.2.9")), vec![b]);
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(table.organizations(ip("::ffff:198.51.100.7")), vec![a]);
        assert!(table.organizations(ip("198.51.100.8")).is_empty());
        assert!(table.organizations(ip("127.0.0.1")).is_empty());
    }

    #[test]
    fn an_unresolved_host_stands_for_no_address() {
        let org = OrganizationId::new();
        let table = TrustTable::build(&[trunk(org, "nowhere.invalid", &[])], &HashMap::new());
        assert!(table.organizations(ip("0.0.0.0")).is_empty());
        assert!(table.organizations(ip("127.0.0.1")).is_empty());
    }
}
