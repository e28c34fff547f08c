//! `POST /calls/{id}/end` before the answer: the user's end wins, whatever
//! the trunk does (RFC 3261 §9.1). SIPp plays trunks that never answer an
//! INVITE, that never answer the CANCEL or never send the 487, and one
//! whose 200 crosses our CANCEL; each call must be CANCELED within a few
//! seconds of the end. (The friendly cases, a trunk that answers CANCEL
//! with 200 and 487, are in `sip_outbound.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
use common::{Backend, TestServer, eventually};
use serde_json::{Value, json};

const TO: &str = "+14155552671";
const FROM: &str = "+15550001000";
/// How soon after the end the call must be CANCELED.
const FEW_SECONDS: Duration = Duration::from_secs(6);

async fn engine_server() -> Option<TestServer> {
    if !sipp_available() {
        return None;
    }
    TestServer::start_with(Backend::Sqlite, |c| c.sip_enabled = true).await
}

/// A trunk to the SIPp peer with the organization's default number on it.
async fn trunk_to(srv: &TestServer, peer: &Sipp) {
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": "sipp", "host": "127.0.0.1", "port": peer.port, "transport": "udp"}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let n = srv
        .post(
            "/phone-numbers",
            json!({"number": FROM, "sip_trunk_id": t.body["id"]}),
        )
        .await;
    assert_eq!(n.status, 201, "{}", n.body);
}

async fn status_of(srv: &TestServer, id: &str) -> Value {
    srv.get(&format!("/calls/{id}")).await.body
}

/// What SIPp has logged so far.
fn messages(peer: &Sipp) -> String {
    std::fs::read_to_string(peer.path("messages.log")).unwrap_or_default()
}

fn count(messages: &str, method: &str) -> usize {
    let start = format!("{method} sip:");
    messages.lines().filter(|l| l.starts_with(&start)).count()
}

/// Places a call, waits until SIPp has logged `seen` (the INVITE reached
/// it, or our provisional went out), ends the call, and returns the call
/// once it is final, asserting it became CANCELED within a few seconds.
async fn end_once(srv: &TestServer, peer: &Sipp, seen: &str) -> Value {
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), || async {
        messages(peer).contains(seen).then_some(())
    })
    .await;
    assert_eq!(status_of(srv, &id).await["status"], "DIALING");
    let ended = Instant::now();
    let r = srv.post(&format!("/calls/{id}/end"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["previous_status"], "DIALING", "{}", r.body);
    let terminal = ["CANCELED", "NO_ANSWER", "FAILED", "COMPLETED", "BUSY"];
    let done = eventually(Duration::from_secs(60), || async {
        let c = status_of(srv, &id).await;
        terminal.iter().any(|s| c["status"] == *s).then_some(c)
    })
    .await;
    let took = ended.elapsed();
    assert_eq!(done["status"], "CANCELED", "{done}");
    assert!(done["failure_reason"].is_null(), "{done}");
    assert!(done["call_end_time"].is_string(), "{done}");
    assert!(
        took < FEW_SECONDS,
        "CANCELED {took:?} after the end, not within {FEW_SECONDS:?}"
    );
    done
}

/// A trunk that says nothing to the INVITE for 8 s, then rings: the end
/// stops the INVITE's retransmissions at once, and the late 180 is
/// CANCELed (a CANCEL cannot go before a provisional response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_before_any_response_stops_the_invite_and_cancels_a_late_ring() {
    let Some(srv) = engine_server().await else {
        return;
    };
    let scenario = sc::doc(
        "silent",
        &[
            sc::recv_invite(),
            sc::pause(8000),
            sc::respond(180, "Ringing", "", false),
            sc::recv("CANCEL"),
            sc::ok_in_dialog(),
            sc::respond(487, "Request Terminated", "", false),
            sc::recv("ACK"),
        ]
        .concat(),
    );
    let peer = Sipp::uas("silent", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer).await;
    let done = end_once(&srv, &peer, "INVITE sip:").await;
    assert!(done["sip_status"].is_null(), "no response yet: {done}");
    let invites_at_end = count(&messages(&peer), "INVITE");
    let run = peer.finish(Duration::from_secs(30)).await;
    run.assert_success();
    assert_eq!(
        run.count_requests("INVITE"),
        invites_at_end,
        "the INVITE was retransmitted after the call ended:\n{}",
        run.messages
    );
    assert_eq!(run.count_requests("CANCEL"), 1, "{}", run.messages);
    srv.stop().await;
}

/// A trunk that sends 100 Trying, answers the CANCEL with 200, and never
/// sends the 487 (RFC 3261 §9.1: a UAC cannot rely on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_after_trying_is_canceled_without_a_487() {
    let Some(srv) = engine_server().await else {
        return;
    };
    let scenario = sc::doc(
        "no-487",
        &[
            sc::recv_invite(),
            sc::respond(100, "Trying", "", false),
            sc::recv("CANCEL"),
            sc::ok_in_dialog(),
            sc::pause(1000),
        ]
        .concat(),
    );
    let peer = Sipp::uas("no-487", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer).await;
    end_once(&srv, &peer, "SIP/2.0 100 Trying").await;
    let run = peer.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert_eq!(run.count_requests("CANCEL"), 1, "{}", run.messages);
    srv.stop().await;
}

/// A trunk that sends 100 Trying and never answers anything after it, not
/// even the CANCEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_after_trying_is_canceled_when_the_cancel_is_not_answered() {
    let Some(srv) = engine_server().await else {
        return;
    };
    let scenario = sc::doc(
        "deaf",
        &[
            sc::recv_invite(),
            sc::respond(100, "Trying", "", false),
            sc::recv("CANCEL"),
            sc::pause(1000),
        ]
        .concat(),
    );
    let peer = Sipp::uas("deaf", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer).await;
    end_once(&srv, &peer, "SIP/2.0 100 Trying").await;
    let run = peer.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert!(run.count_requests("CANCEL") >= 1, "{}", run.messages);
    srv.stop().await;
}

/// A trunk that answers the INVITE with 200 right after our CANCEL reached
/// it: the call is still CANCELED, and that session is ACKed and ended with
/// a BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_crossing_the_cancel_is_acked_and_hung_up() {
    let Some(srv) = engine_server().await else {
        return;
    };
    let scenario = sc::doc(
        "crossing",
        &[
            sc::recv_invite(),
            sc::respond(100, "Trying", "", false),
            sc::recv("CANCEL"),
            // The CANCEL's 200, then the INVITE's 200 that crossed it (sent
            // the other way round, our ACK can overtake SIPp's second send).
            sc::ok_in_dialog(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let peer = Sipp::uas("crossing", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer).await;
    let done = end_once(&srv, &peer, "SIP/2.0 100 Trying").await;
    assert!(
        done["call_start_time"].is_null() && done["duration_seconds"].is_null(),
        "never live: {done}"
    );
    let run = peer.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert_eq!(run.count_requests("CANCEL"), 1, "{}", run.messages);
    assert_eq!(run.count_requests("ACK"), 1, "{}", run.messages);
    assert_eq!(run.count_requests("BYE"), 1, "{}", run.messages);
    srv.stop().await;
}
