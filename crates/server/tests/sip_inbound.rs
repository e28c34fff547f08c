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
