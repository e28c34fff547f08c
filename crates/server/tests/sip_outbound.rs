//! Outbound calls through a real SIP peer: SIPp plays the trunk (answers,
//! rejects, rings, challenges) and the call object must follow what
//! happened on the wire.

mod common;

use std::time::Duration;

use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
use common::{Backend, TestServer, eventually};
use serde_json::{Value, json};

const TO: &str = "+14155552671";
const FROM: &str = "+15550001000";

async fn engine_server(backend: Backend) -> Option<TestServer> {
    if !sipp_available() {
        return None;
    }
    TestServer::start_with(backend, |c| c.sip_enabled = true).await
}

/// A trunk to the SIPp peer with the organization's default number on it.
async fn trunk_to(srv: &TestServer, peer: &Sipp, transport: Transport, extra: Value) -> String {
    let mut body = json!({"name": "sipp", "host": "127.0.0.1", "port": peer.port, "transport": transport.api_name()});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let t = srv.post("/sip-trunks", body).await;
    assert_eq!(t.status, 201, "{}", t.body);
    let n = srv
        .post(
            "/phone-numbers",
            json!({"number": FROM, "sip_trunk_id": t.body["id"]}),
        )
        .await;
    assert_eq!(n.status, 201, "{}", n.body);
    t.body["id"].as_str().expect("trunk id").to_owned()
}

/// Polls the call until its status is one of `statuses`.
async fn wait_status(srv: &TestServer, id: &str, statuses: &[&str], timeout: Duration) -> Value {
    eventually(timeout, || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        statuses.iter().any(|s| c["status"] == *s).then_some(c)
    })
    .await
}

/// The statuses the call went through, from its stored events.
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

fn answer_then_wait_for_bye() -> String {
    sc::doc(
        "answer",
        &[
            sc::recv("INVITE"),
            sc::respond(180, "Ringing", "", false),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    )
}

async fn answered_call_ended_by_the_api_sends_bye(backend: Backend, transport: Transport) {
    let Some(srv) = engine_server(backend).await else {
        return;
    };
    let peer = Sipp::uas("answer", &answer_then_wait_for_bye(), transport, 1);
    trunk_to(&srv, &peer, transport, json!({})).await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    let live = wait_status(
        &srv,
        &id,
        &["IN_PROGRESS", "FAILED"],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(live["status"], "IN_PROGRESS", "{live}");
    assert_eq!(live["sip_status"], 200);
    assert!(live["call_start_time"].is_string(), "{live}");
    assert_eq!(live["recording_status"], "RECORDING");

    let r = srv.post(&format!("/calls/{id}/end"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["previous_status"], "IN_PROGRESS", "{}", r.body);
    let ended = wait_status(&srv, &id, &["COMPLETED"], Duration::from_secs(10)).await;
    assert!(ended["call_end_time"].is_string());
    assert!(
        ended["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0),
        "{ended}"
    );
    assert!(ended["failure_reason"].is_null(), "{ended}");

    let run = peer.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert_eq!(run.count_requests("BYE"), 1, "one BYE reached the trunk");
    assert_eq!(
        history(&srv, &id).await,
        ["QUEUED", "DIALING", "RINGING", "IN_PROGRESS", "COMPLETED"]
    );
    // Caller ID is the call's from_number.
    assert!(
        run.messages.contains(&format!("From: <sip:{FROM}@"))
            || run.messages.contains(&format!("<sip:{FROM}@")),
        "INVITE From carries the caller ID:\n{}",
        run.messages
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_udp_answered_call_ended_by_the_api_sends_bye() {
    answered_call_ended_by_the_api_sends_bye(Backend::Sqlite, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tcp_answered_call_ended_by_the_api_sends_bye() {
    answered_call_ended_by_the_api_sends_bye(Backend::Postgres, Transport::Tcp).await;
}
