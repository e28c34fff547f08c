//! What our SIP messages carry, read off the wire by a real peer (SIPp as
//! the trunk, every message it received from `-trace_msg`): addresses built
//! from parsed parts and no header we did not mean to send (issue 11
//! item 1); our own host in Call-IDs, no third party's domain anywhere
//! (item 15); digest answers to SHA-512-256 challenges (item 19).

mod common;

use std::time::Duration;

use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
use common::{Backend, TestServer, eventually};
use serde_json::{Value, json};
use switchyard_domain::id::SipTrunkId;
use switchyard_domain::{CallDirection, CallStatus};
use switchyard_store::NewCall;

const FROM: &str = "+15550001000";

async fn engine_server(tweak: impl FnOnce(&mut switchyard::config::Config)) -> Option<TestServer> {
    if !sipp_available() {
        return None;
    }
    TestServer::start_with(Backend::Sqlite, |c| {
        c.sip_enabled = true;
        tweak(c);
    })
    .await
}

/// A trunk to the SIPp peer with `number` on it; its ID.
async fn trunk_to(srv: &TestServer, peer: &Sipp, extra: Value, number: &str) -> String {
    let mut body =
        json!({"name": format!("sipp-{number}"), "host": "127.0.0.1", "port": peer.port});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let t = srv.post("/sip-trunks", body).await;
    assert_eq!(t.status, 201, "{}", t.body);
    let n = srv
        .post(
            "/phone-numbers",
            json!({"number": number, "sip_trunk_id": t.body["id"]}),
        )
        .await;
    assert_eq!(n.status, 201, "{}", n.body);
    t.body["id"].as_str().expect("trunk id").to_owned()
}

async fn wait_status(srv: &TestServer, id: &str, statuses: &[&str]) -> Value {
    eventually(Duration::from_secs(20), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        statuses.iter().any(|s| c["status"] == *s).then_some(c)
    })
    .await
}

/// The messages SIPp received, each as its text (from `-trace_msg`, where
/// each message follows a `----` line and a "... message received" line).
fn received(messages: &str) -> Vec<String> {
    let mut out = Vec::new();
    for section in messages.split("\n----------------------------------------------- ") {
        let mut lines = section.lines();
        lines.next(); // the time stamp
        let Some(what) = lines.next() else { continue };
        if what.contains("message received") {
            let text: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
            out.push(text.join("\n"));
        }
    }
    out
}

/// The header names of a message, in order (up to the blank line).
fn header_names(message: &str) -> Vec<String> {
    message
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split(':').next().unwrap_or_default().trim().to_owned())
        .collect()
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Every header an INVITE of ours carries, and nothing else.
const INVITE_HEADERS: &[&str] = &[
    "Via",
    "Call-ID",
    "From",
    "To",
    "CSeq",
    "Max-Forwards",
    "User-Agent",
    "Contact",
    "Content-Type",
    "X-Switchyard-Call-Id",
    "Supported",
    "Content-Length",
];

fn busy() -> String {
    sc::doc(
        "busy",
        &[
            sc::recv_invite(),
            sc::respond(486, "Busy Here", "", false),
            sc::recv("ACK"),
        ]
        .concat(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_uri_with_parameters_reaches_the_trunk_as_parsed_and_adds_no_header() {
    let Some(srv) = engine_server(|_| {}).await else {
        return;
    };
    let peer = Sipp::uas("busy", &busy(), Transport::Udp, 1);
    trunk_to(&srv, &peer, json!({}), FROM).await;
    let port = peer.port;
    let to = format!("SIP:svc%20x@127.0.0.1:{port};User=phone;x-tag=a%5Bb%5D;lr");
    let call = srv.create_call(json!({"to_number": to})).await;
    let uri = format!("sip:svc%20x@127.0.0.1:{port};User=phone;x-tag=a%5Bb%5D;lr");
    assert_eq!(call["to_number"], uri.as_str(), "{call}");
    let id = call["id"].as_str().unwrap().to_owned();
    let ended = wait_status(&srv, &id, &["BUSY", "FAILED"]).await;
    assert_eq!(ended["status"], "BUSY", "{ended}");
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    let got = received(&run.messages);
    let invite = got
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("no INVITE in:\n{}", run.messages));
    assert_eq!(
        invite.lines().next(),
        Some(format!("INVITE {uri} SIP/2.0").as_str())
    );
    assert_eq!(header(invite, "To"), Some(format!("<{uri}>").as_str()));
    assert_eq!(
        header(invite, "From").map(|f| f.split(";tag=").next().unwrap_or_default()),
        Some(format!("<sip:{FROM}@127.0.0.1>").as_str())
    );
    assert_eq!(header_names(invite), INVITE_HEADERS, "{invite}");
    srv.stop().await;
}

/// A destination stored before the grammar was enforced (or written by
/// anything but the API) is parsed again before dialling: the injection of
/// the issue fails the call and never reaches the trunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_destination_outside_the_grammar_is_never_sent() {
    let Some(srv) = engine_server(|_| {}).await else {
        return;
    };
    let peer = Sipp::uas("busy", &busy(), Transport::Udp, 1);
    let trunk = trunk_to(&srv, &peer, json!({}), FROM).await;
    let injected = "sip:svc@127.0.0.1;x=1 SIP/2.0\r\nP-Asserted-Identity: <sip:+19995550000@127.0.0.1>\r\nX-A: b";
    let now = switchyard_domain::timefmt::now_ms();
    let stored = srv
        .store()
        .insert_call(
            NewCall {
                organization_id: srv.org,
                status: CallStatus::Queued,
                call_time: now,
                call_direction: CallDirection::Outbound,
                to_number: Some(injected.into()),
                from_number: Some(FROM.into()),
                call_type: None,
                load_id: None,
                created_by_id: None,
                metadata: None,
                agent: None,
                record: false,
                ring_timeout_seconds: 30,
                max_duration_seconds: 60,
                sip_trunk_id: Some(SipTrunkId::parse(&trunk).expect("trunk id")),
                claimed_by: None,
            },
            None,
        )
        .await
        .expect("insert");
    let id = stored.id.to_string();
    let failed = wait_status(&srv, &id, &["FAILED", "BUSY", "COMPLETED"]).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["failure_reason"], "invalid_destination", "{failed}");
    // The next call on the trunk is the first INVITE the trunk sees.
    let next = srv.create_call(json!({"to_number": "+14155552671"})).await;
    wait_status(&srv, next["id"].as_str().unwrap(), &["BUSY"]).await;
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    let got = received(&run.messages);
    let invites: Vec<_> = got.iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert_eq!(invites.len(), 1, "{}", run.messages);
    assert!(invites[0].starts_with("INVITE sip:+14155552671@127.0.0.1:"));
    assert!(
        !run.messages.contains("P-Asserted-Identity") && !run.messages.contains("X-A:"),
        "{}",
        run.messages
    );
    srv.stop().await;
}

/// The trunk's digest realm (it comes back in our answer).
const REALM: &str = "sipp.test";

/// Challenged, then answered, then hung up by the API: INVITE, ACK (of the
/// 401), INVITE, ACK, BYE reach the trunk.
fn challenge_answer_bye() -> String {
    let challenge = format!(
        "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"n[pid]x[call_number]\", algorithm=MD5, qop=\"auth\"\n"
    );
    sc::doc(
        "answer",
        &[
            sc::recv_invite(),
            sc::respond(401, "Unauthorized", &challenge, false),
            sc::recv("ACK"),
            sc::recv_invite(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    )
}

/// The names in `text` that look like DNS names (a dot, and a last label
/// that starts with a letter), e.g. `restsend.com`.
fn domain_names(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| {
            t.contains('.')
                && t.rsplit('.').next().is_some_and(|top| {
                    top.len() >= 2 && top.starts_with(|c: char| c.is_ascii_alphabetic())
                })
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Runs one challenged, answered and hung-up call and returns every
/// message the trunk received.
async fn messages_of_one_call(sip_domain: Option<&str>) -> Option<Vec<String>> {
    let domain = sip_domain.map(str::to_owned);
    let srv = engine_server(|c| c.sip_domain = domain).await?;
    let peer = Sipp::uas("answer", &challenge_answer_bye(), Transport::Udp, 1);
    trunk_to(
        &srv,
        &peer,
        json!({"username": "alice", "password": "secret"}),
        FROM,
    )
    .await;
    let call = srv.create_call(json!({"to_number": "+14155552671"})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    let live = wait_status(&srv, &id, &["IN_PROGRESS", "FAILED"]).await;
    assert_eq!(live["status"], "IN_PROGRESS", "{live}");
    srv.post(&format!("/calls/{id}/end"), json!({})).await;
    wait_status(&srv, &id, &["COMPLETED"]).await;
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    srv.stop().await;
    let got = received(&run.messages);
    let methods: Vec<&str> = got
        .iter()
        .map(|m| m.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        methods,
        ["INVITE", "ACK", "INVITE", "ACK", "BYE"],
        "{}",
        run.messages
    );
    Some(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_ids_name_sip_domain_and_no_foreign_domain_reaches_the_trunk() {
    let Some(got) = messages_of_one_call(Some("switchyard.test")).await else {
        return;
    };
    for m in &got {
        assert!(!m.to_ascii_lowercase().contains("restsend"), "{m}");
        let call_id = header(m, "Call-ID").unwrap_or_else(|| panic!("no Call-ID in {m}"));
        assert!(call_id.ends_with("@switchyard.test"), "{call_id}");
        for name in domain_names(m) {
            // Ours, or the trunk's own realm in our digest answer.
            assert!(
                name == "switchyard.test" || name == REALM,
                "a foreign domain {name} in:\n{m}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_ids_name_the_advertised_address_by_default() {
    let Some(got) = messages_of_one_call(None).await else {
        return;
    };
    for m in &got {
        assert!(!m.to_ascii_lowercase().contains("restsend"), "{m}");
        let call_id = header(m, "Call-ID").unwrap_or_else(|| panic!("no Call-ID in {m}"));
        assert!(call_id.ends_with("@127.0.0.1"), "{call_id}");
        for name in domain_names(m) {
            assert_eq!(name, REALM, "a foreign domain in:\n{m}");
        }
    }
}

/// A trunk that challenges the INVITE (401 or 407) with `algorithm`, then
/// answers the retry with 200 when `accept`, or challenges it again. SIPp
/// 3.6 verifies MD5 only: the test checks the digest itself
/// ([`digest_is_valid`]).
fn challenge(code: u16, algorithm: &str, accept: bool) -> String {
    let (reason, header) = match code {
        401 => ("Unauthorized", "WWW-Authenticate"),
        _ => ("Proxy Authentication Required", "Proxy-Authenticate"),
    };
    let challenge = format!(
        "{header}: Digest realm=\"{REALM}\", nonce=\"n[pid]x[call_number]\", algorithm={algorithm}, qop=\"auth\"\n"
    );
    let next = if accept { "<nop next=\"good\"/>\n" } else { "" };
    sc::doc(
        "challenge",
        &[
            sc::recv_invite(),
            sc::respond(code, reason, &challenge, false),
            sc::recv("ACK"),
            sc::recv_invite(),
            next.to_owned(),
            sc::respond(code, reason, &challenge, false),
            "<recv request=\"ACK\" next=\"done\"/>\n<label id=\"good\"/>\n".to_owned(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
            "<label id=\"done\"/>\n".to_owned(),
        ]
        .concat(),
    )
}

/// The parameters of a digest answer (`Digest k=v, k="v", ...`).
fn digest_params(line: &str) -> Vec<(String, String)> {
    let rest = line
        .split_once("Digest")
        .map(|(_, r)| r)
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = rest.trim_start_matches([' ', ',']);
    while let Some((key, after)) = rest.split_once('=') {
        let (value, after) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"').expect("closing quote");
                (&q[..end], &q[end + 1..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        rest = after.trim_start_matches([' ', ',']);
    }
    out
}

/// Whether the SHA-512-256 digest (RFC 7616 §3.4.1, qop=auth) in the
/// retried INVITE's `header` is right for `password`.
fn digest_is_valid(invite: &str, header_name: &str, password: &str) -> bool {
    use sha2::Digest as _;
    let line =
        header(invite, header_name).unwrap_or_else(|| panic!("no {header_name} in {invite}"));
    let params = digest_params(line);
    let p = |name: &str| -> &str {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    assert_eq!(p("algorithm"), "SHA-512-256", "{line}");
    let h = |s: String| hex::encode(sha2::Sha512_256::digest(s.as_bytes()));
    let ha1 = h(format!("{}:{}:{password}", p("username"), p("realm")));
    let ha2 = h(format!("INVITE:{}", p("uri")));
    let expected = h(format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        p("nonce"),
        p("nc"),
        p("cnonce"),
        p("qop")
    ));
    expected == p("response")
}

async fn sha512_256_digest(code: u16) {
    let Some(srv) = engine_server(|_| {}).await else {
        return;
    };
    let header_name = if code == 401 {
        "Authorization"
    } else {
        "Proxy-Authorization"
    };
    for (i, (password, answered)) in [("secret", true), ("wrong", false)].into_iter().enumerate() {
        let peer = Sipp::uas(
            "challenge",
            &challenge(code, "SHA-512-256", answered),
            Transport::Udp,
            1,
        );
        let number = format!("+1555000{:04}", 4000 + i);
        trunk_to(
            &srv,
            &peer,
            json!({"username": "alice", "password": password}),
            &number,
        )
        .await;
        let call = srv
            .create_call(json!({"to_number": "+14155552671", "from_number": number}))
            .await;
        let id = call["id"].as_str().unwrap().to_owned();
        let c = wait_status(&srv, &id, &["IN_PROGRESS", "FAILED"]).await;
        if answered {
            assert_eq!(c["status"], "IN_PROGRESS", "{c}");
            srv.post(&format!("/calls/{id}/end"), json!({})).await;
            wait_status(&srv, &id, &["COMPLETED"]).await;
        } else {
            assert_eq!(c["status"], "FAILED", "{c}");
            assert_eq!(c["failure_reason"], "authentication_failed", "{c}");
            assert_eq!(c["sip_status"], code, "{c}");
        }
        let run = peer.finish(Duration::from_secs(10)).await;
        run.assert_success();
        let got = received(&run.messages);
        let invites: Vec<_> = got.iter().filter(|m| m.starts_with("INVITE ")).collect();
        assert_eq!(
            invites.len(),
            2,
            "one challenge, one retry: {}",
            run.messages
        );
        assert!(header(invites[0], header_name).is_none());
        assert_eq!(
            digest_is_valid(invites[1], header_name, "secret"),
            answered,
            "{header_name} is a SHA-512-256 digest of alice/secret: {answered}\n{}",
            invites[1]
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_401_sha512_256_with_good_and_bad_password() {
    sha512_256_digest(401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_407_sha512_256_with_good_and_bad_password() {
    sha512_256_digest(407).await;
}
