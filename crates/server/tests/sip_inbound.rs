//! Inbound calls: SIPp calls one of the organization's numbers (over UDP
//! and TCP) and Switchyard answers, refuses an unknown number with 404,
//! and refuses calls over its capacity with 503 and Retry-After.

mod common;

use std::time::Duration;

use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
use common::{Backend, TestServer, eventually};
use serde_json::{Value, json};

const OUR_NUMBER: &str = "+15550001000";
const CALLER: &str = "+14155550123";

async fn engine_server(
    backend: Backend,
    tweak: impl FnOnce(&mut switchyard::config::Config),
) -> Option<TestServer> {
    if !sipp_available() {
        return None;
    }
    TestServer::start_with(backend, |c| {
        c.sip_enabled = true;
        tweak(c);
    })
    .await
}

/// The organization's number on a trunk (inbound calls only need the number).
async fn our_number(srv: &TestServer) {
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": "carrier", "host": "127.0.0.1", "port": 5060}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let n = srv
        .post(
            "/phone-numbers",
            json!({"number": OUR_NUMBER, "sip_trunk_id": t.body["id"]}),
        )
        .await;
    assert_eq!(n.status, 201, "{}", n.body);
}

/// The inbound calls the API lists, newest first.
async fn inbound_calls(srv: &TestServer) -> Vec<Value> {
    let r = srv.get("/calls?call_direction=INBOUND").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

async fn wait_inbound(srv: &TestServer, status: &str) -> Value {
    eventually(Duration::from_secs(15), || async {
        inbound_calls(srv)
            .await
            .into_iter()
            .find(|c| c["status"] == status)
    })
    .await
}

async fn history(srv: &TestServer, id: &str) -> Vec<String> {
    let events = srv
        .store()
        .events_after(0, Some(id), 100)
        .await
        .expect("events");
    let mut seen: Vec<String> = Vec::new();
    for e in events {
        if let Some(s) = e.data["status"].as_str()
            && seen.last().map(String::as_str) != Some(s)
        {
            seen.push(s.to_owned());
        }
    }
    seen
}

/// Calls, waits `talk_ms` after the answer, hangs up.
fn caller_hangs_up_after(talk_ms: u64) -> String {
    sc::doc(
        "caller",
        &[
            sc::uac_invite(CALLER),
            sc::recv_response(100, true),
            sc::recv_response(180, true),
            sc::recv_answer(),
            sc::uac_ack(None),
            sc::pause(talk_ms),
            sc::uac_bye(),
            sc::recv_response(200, false),
        ]
        .concat(),
    )
}

async fn inbound_call_is_answered_and_completed(backend: Backend, transport: Transport) {
    let Some(srv) = engine_server(backend, |_| {}).await else {
        return;
    };
    our_number(&srv).await;
    let caller = Sipp::uac(
        "caller",
        &caller_hangs_up_after(1500),
        transport,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    let live = wait_inbound(&srv, "IN_PROGRESS").await;
    assert_eq!(live["call_direction"], "INBOUND");
    assert_eq!(live["from_number"], CALLER);
    assert_eq!(
        live["phone_number"], CALLER,
        "phone_number is the customer's number"
    );
    assert_eq!(live["to_number"], OUR_NUMBER);
    assert_eq!(live["sip_status"], 200);
    assert!(live["call_start_time"].is_string());
    assert_eq!(live["recording_status"], "RECORDING");
    let run = caller.finish(Duration::from_secs(20)).await;
    run.assert_success();
    let id = live["id"].as_str().unwrap();
    let done = eventually(Duration::from_secs(10), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        (c["status"] == "COMPLETED").then_some(c)
    })
    .await;
    let d = done["duration_seconds"].as_f64().expect("duration");
    assert!((1.0..5.0).contains(&d), "{d}");
    assert_eq!(
        history(&srv, id).await,
        ["RINGING", "IN_PROGRESS", "COMPLETED"]
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_udp_inbound_call_is_answered_and_completed() {
    inbound_call_is_answered_and_completed(Backend::Sqlite, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tcp_inbound_call_is_answered_and_completed() {
    inbound_call_is_answered_and_completed(Backend::Sqlite, Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_udp_inbound_call_is_answered_and_completed() {
    inbound_call_is_answered_and_completed(Backend::Postgres, Transport::Udp).await;
}

/// Calls and expects the final error `code` (then ACKs it).
fn caller_refused(code: u16, check_retry_after: bool) -> String {
    let recv_final = if check_retry_after {
        format!(
            "<recv response=\"{code}\"><action>\n<ereg regexp=\"[0-9]+\" search_in=\"hdr\" header=\"Retry-After:\" check_it=\"true\" assign_to=\"retry\"/>\n<log message=\"RETRY_AFTER [$retry]\"/>\n</action></recv>\n"
        )
    } else {
        sc::recv_response(code, false)
    };
    sc::doc(
        "refused",
        &[
            sc::uac_invite(CALLER),
            sc::recv_response(100, true),
            recv_final,
            sc::uac_ack(Some(3)),
        ]
        .concat(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_number_is_refused_with_404() {
    let Some(srv) = engine_server(Backend::Sqlite, |_| {}).await else {
        return;
    };
    our_number(&srv).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let caller = Sipp::uac(
            "unknown",
            &caller_refused(404, false),
            transport,
            srv.sip_addr(),
            "+19995550000",
            1,
            &[],
        );
        caller
            .finish(Duration::from_secs(20))
            .await
            .assert_success();
    }
    assert!(
        inbound_calls(&srv).await.is_empty(),
        "no call is made for an unknown number"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_is_refused_with_503_and_retry_after() {
    let Some(srv) = engine_server(Backend::Sqlite, |c| c.max_live_calls = 1).await else {
        return;
    };
    our_number(&srv).await;
    let first = Sipp::uac(
        "first",
        &caller_hangs_up_after(4000),
        Transport::Udp,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    wait_inbound(&srv, "IN_PROGRESS").await;
    let second = Sipp::uac(
        "second",
        &caller_refused(503, true),
        Transport::Udp,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    let refused = second.finish(Duration::from_secs(20)).await;
    refused.assert_success();
    assert!(refused.log.contains("RETRY_AFTER 5"), "{}", refused.log);
    first.finish(Duration::from_secs(20)).await.assert_success();
    assert_eq!(
        inbound_calls(&srv).await.len(),
        1,
        "the refused call made no call object"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_call_ended_by_the_api_sends_bye() {
    let Some(srv) = engine_server(Backend::Sqlite, |_| {}).await else {
        return;
    };
    our_number(&srv).await;
    let scenario = sc::doc(
        "caller",
        &[
            sc::uac_invite(CALLER),
            sc::recv_response(100, true),
            sc::recv_response(180, true),
            sc::recv_answer(),
            sc::uac_ack(None),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let caller = Sipp::uac(
        "caller",
        &scenario,
        Transport::Udp,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    let live = wait_inbound(&srv, "IN_PROGRESS").await;
    let id = live["id"].as_str().unwrap();
    let r = srv.post(&format!("/calls/{id}/end"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let run = caller.finish(Duration::from_secs(20)).await;
    run.assert_success();
    let done = srv.get(&format!("/calls/{id}")).await.body;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_interval_below_min_se_is_refused_with_422() {
    let Some(srv) = engine_server(Backend::Sqlite, |_| {}).await else {
        return;
    };
    our_number(&srv).await;
    let scenario = sc::doc(
        "short-timer",
        &[
            sc::uac_invite_with(CALLER, "Supported: timer\nSession-Expires: 30\n"),
            sc::recv_response(100, true),
            "<recv response=\"422\"><action>\n<ereg regexp=\"[0-9]+\" search_in=\"hdr\" header=\"Min-SE:\" check_it=\"true\" assign_to=\"minse\"/>\n<log message=\"MIN_SE [$minse]\"/>\n</action></recv>\n".to_owned(),
            sc::uac_ack(Some(3)),
        ]
        .concat(),
    );
    let caller = Sipp::uac(
        "short-timer",
        &scenario,
        Transport::Udp,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    let run = caller.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert!(run.log.contains("MIN_SE 90"), "{}", run.log);
    assert!(inbound_calls(&srv).await.is_empty());
    // With an acceptable interval the call is answered and the 200 names
    // the caller as the refresher.
    let scenario = sc::doc(
        "timer",
        &[
            sc::uac_invite_with(CALLER, "Supported: timer\nSession-Expires: 1800\n"),
            sc::recv_response(100, true),
            sc::recv_response(180, true),
            "<recv response=\"200\" rtd=\"true\" rrs=\"true\"><action>\n<ereg regexp=\"1800;refresher=uac\" search_in=\"hdr\" header=\"Session-Expires:\" check_it=\"true\" assign_to=\"se\"/>\n<log message=\"SE [$se]\"/>\n</action></recv>\n".to_owned(),
            sc::uac_ack(None),
            sc::uac_bye(),
            sc::recv_response(200, false),
        ]
        .concat(),
    );
    let caller = Sipp::uac(
        "timer",
        &scenario,
        Transport::Udp,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    let run = caller.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert!(run.log.contains("SE 1800;refresher=uac"), "{}", run.log);
    srv.stop().await;
}

// Inbound trust (issue 11 item 3): INVITEs only from the organization's
// trunks. 127.0.0.2 is another host as far as the server can tell.

const UNKNOWN_NUMBER: &str = "+19995550000";
const STRANGER: &str = "127.0.0.2";

/// A trunk of this organization at `host` with `inbound_allow`, and `number` on it.
async fn trunk_with(
    srv: &TestServer,
    name: &str,
    host: &str,
    allow: Value,
    number: &str,
) -> String {
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": name, "host": host, "port": 5060, "inbound_allow": allow}),
        )
        .await;
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

/// Calls `number` from `from` and expects the final `code`; returns the
/// response as SIPp received it, without the headers that echo the request
/// (Via, From, To, Call-ID, CSeq).
async fn refused_from(srv: &TestServer, from: &str, number: &str, code: u16) -> String {
    let caller = Sipp::uac_from(
        from,
        "refused",
        &caller_refused(code, false),
        Transport::Udp,
        srv.sip_addr(),
        number,
        1,
        &[],
    );
    let run = caller.finish(Duration::from_secs(20)).await;
    run.assert_success();
    let status_line = format!("SIP/2.0 {code} ");
    let response: Vec<&str> = run
        .messages
        .lines()
        .skip_while(|l| !l.starts_with(&status_line))
        .take_while(|l| !l.starts_with("-----"))
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
            !["via", "from", "to", "call-id", "cseq"].contains(&name.as_str())
        })
        .collect();
    assert!(!response.is_empty(), "no {code} in:\n{}", run.messages);
    assert!(
        !run.messages.contains("SIP/2.0 100 ") && !run.messages.contains("SIP/2.0 180 "),
        "nothing but the refusal: {}",
        run.messages
    );
    response.join("\n")
}

/// Calls `number` from `from` and expects no answer at all.
async fn unanswered_from(srv: &TestServer, from: &str, number: &str) {
    let scenario = sc::doc(
        "unanswered",
        &[sc::uac_invite(CALLER), sc::pause(2500)].concat(),
    );
    let caller = Sipp::uac_from(
        from,
        "unanswered",
        &scenario,
        Transport::Udp,
        srv.sip_addr(),
        number,
        1,
        &[],
    );
    let run = caller.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert!(
        !run.messages.lines().any(|l| l.starts_with("SIP/2.0 ")),
        "an untrusted INVITE was answered:\n{}",
        run.messages
    );
    assert!(run.count_requests("INVITE") >= 1, "{}", run.messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_sources_get_the_same_403_for_known_and_unknown_numbers() {
    let Some(srv) = engine_server(Backend::Sqlite, |_| {}).await else {
        return;
    };
    our_number(&srv).await;
    let known = refused_from(&srv, STRANGER, OUR_NUMBER, 403).await;
    let unknown = refused_from(&srv, STRANGER, UNKNOWN_NUMBER, 403).await;
    assert!(known.starts_with("SIP/2.0 403 Forbidden"), "{known}");
    assert_eq!(known, unknown, "a number's existence shows");
    assert!(inbound_calls(&srv).await.is_empty(), "no call is made");
    // The trunk's own host is answered as before, and gets 404 for a
    // number that does not exist.
    let caller = Sipp::uac(
        "trusted",
        &caller_hangs_up_after(500),
        Transport::Udp,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    caller
        .finish(Duration::from_secs(20))
        .await
        .assert_success();
    refused_from(&srv, "127.0.0.1", UNKNOWN_NUMBER, 404).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_sources_get_no_answer_when_configured_to_drop() {
    let Some(srv) = engine_server(Backend::Sqlite, |c| {
        c.sip_untrusted_inbound = "drop".into();
    })
    .await
    else {
        return;
    };
    our_number(&srv).await;
    unanswered_from(&srv, STRANGER, OUR_NUMBER).await;
    unanswered_from(&srv, STRANGER, UNKNOWN_NUMBER).await;
    assert!(inbound_calls(&srv).await.is_empty(), "no call is made");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_allow_admits_a_network_and_changes_take_effect_at_once() {
    let Some(srv) = engine_server(Backend::Sqlite, |_| {}).await else {
        return;
    };
    // The trunk's host is elsewhere; its provider also sends from 127.0.0.2/31.
    let trunk = trunk_with(
        &srv,
        "carrier",
        "192.0.2.10",
        json!(["127.0.0.2/31"]),
        OUR_NUMBER,
    )
    .await;
    let caller = Sipp::uac_from(
        STRANGER,
        "allowed",
        &caller_hangs_up_after(500),
        Transport::Udp,
        srv.sip_addr(),
        OUR_NUMBER,
        1,
        &[],
    );
    caller
        .finish(Duration::from_secs(20))
        .await
        .assert_success();
    wait_inbound(&srv, "COMPLETED").await;
    // 127.0.0.1 is neither the host nor in the network.
    refused_from(&srv, "127.0.0.1", OUR_NUMBER, 403).await;
    // Without the network, 127.0.0.2 is a stranger.
    let p = srv
        .call(
            reqwest::Method::PATCH,
            &format!("/sip-trunks/{trunk}"),
            Some(json!({"inbound_allow": []})),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    refused_from(&srv, STRANGER, OUR_NUMBER, 403).await;
    // A host name stands for the addresses it resolves to.
    let p = srv
        .call(
            reqwest::Method::PATCH,
            &format!("/sip-trunks/{trunk}"),
            Some(json!({"host": "localhost"})),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    refused_from(&srv, "127.0.0.1", UNKNOWN_NUMBER, 404).await;
    assert_eq!(inbound_calls(&srv).await.len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_trunk_is_not_trusted_for_our_numbers() {
    let Some(srv) = engine_server(Backend::Sqlite, |_| {}).await else {
        return;
    };
    // Our number's trunk is elsewhere; 127.0.0.1 is another organization's trunk.
    trunk_with(&srv, "carrier", "192.0.2.10", json!([]), OUR_NUMBER).await;
    let other = srv.new_org("Elsewhere").await;
    let t = srv
        .call_as(
            &common::Cred::Key(other.key.clone()),
            reqwest::Method::POST,
            "/sip-trunks",
            Some(json!({"name": "theirs", "host": "127.0.0.1"})),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    // Their trunk gets what an unknown number gets: nothing tells it the
    // number exists elsewhere.
    let ours = refused_from(&srv, "127.0.0.1", OUR_NUMBER, 404).await;
    let unknown = refused_from(&srv, "127.0.0.1", UNKNOWN_NUMBER, 404).await;
    assert_eq!(ours, unknown);
    assert!(inbound_calls(&srv).await.is_empty());
    srv.stop().await;
}
