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
    trunk_with_number(srv, peer, transport, extra, FROM).await
}

/// A trunk to the SIPp peer with `number` on it.
async fn trunk_with_number(
    srv: &TestServer,
    peer: &Sipp,
    transport: Transport,
    extra: Value,
    number: &str,
) -> String {
    let mut body = json!({"name": format!("sipp-{number}"), "host": "127.0.0.1", "port": peer.port, "transport": transport.api_name()});
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
            sc::recv_invite(),
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

fn reject(code: u16, reason: &str) -> String {
    sc::doc(
        "reject",
        &[
            sc::recv_invite(),
            sc::respond(100, "Trying", "", false),
            sc::respond(code, reason, "", false),
            sc::recv("ACK"),
        ]
        .concat(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_responses_map_to_statuses() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    let cases: &[(u16, &str, &str, Option<&str>)] = &[
        (486, "Busy Here", "BUSY", None),
        (600, "Busy Everywhere", "BUSY", None),
        (480, "Temporarily Unavailable", "NO_ANSWER", None),
        (408, "Request Timeout", "NO_ANSWER", None),
        (
            503,
            "Service Unavailable",
            "FAILED",
            Some("trunk_unavailable"),
        ),
        (404, "Not Found", "FAILED", Some("number_not_found")),
        (403, "Forbidden", "FAILED", Some("forbidden")),
        (
            488,
            "Not Acceptable Here",
            "FAILED",
            Some("media_not_acceptable"),
        ),
        (500, "Server Internal Error", "FAILED", Some("sip_500")),
    ];
    let mut running = Vec::new();
    for (i, (code, reason, _, _)) in cases.iter().enumerate() {
        let peer = Sipp::uas("reject", &reject(*code, reason), Transport::Udp, 1);
        let number = format!("+1555000{:04}", 2000 + i);
        trunk_with_number(&srv, &peer, Transport::Udp, json!({}), &number).await;
        let call = srv
            .create_call(json!({"to_number": TO, "from_number": number}))
            .await;
        running.push((peer, call["id"].as_str().unwrap().to_owned()));
    }
    for ((peer, id), (code, _, status, reason)) in running.into_iter().zip(cases) {
        let terminal = ["COMPLETED", "BUSY", "NO_ANSWER", "FAILED", "CANCELED"];
        let call = wait_status(&srv, &id, &terminal, Duration::from_secs(20)).await;
        assert_eq!(call["status"], *status, "{code}: {call}");
        assert_eq!(call["sip_status"], *code, "{call}");
        assert_eq!(call["failure_reason"].as_str(), *reason, "{code}: {call}");
        assert!(call["call_end_time"].is_string(), "{call}");
        assert!(
            call["call_start_time"].is_null() && call["duration_seconds"].is_null(),
            "never answered: {call}"
        );
        assert!(call["recording_status"].is_null(), "{call}");
        peer.finish(Duration::from_secs(10)).await.assert_success();
        assert_eq!(
            history(&srv, &id).await,
            ["QUEUED", "DIALING", *status],
            "{code}: 100 Trying is not ringing"
        );
    }
    srv.stop().await;
}

fn ring_until_cancel() -> String {
    sc::doc(
        "ring",
        &[
            sc::recv_invite(),
            sc::respond(180, "Ringing", "", false),
            sc::recv("CANCEL"),
            sc::ok_in_dialog(),
            sc::respond(487, "Request Terminated", "", false),
            sc::recv("ACK"),
        ]
        .concat(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_within_the_ring_timeout_cancels() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    let peer = Sipp::uas("ring", &ring_until_cancel(), Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv
        .create_call(json!({"to_number": TO, "ring_timeout_seconds": 5}))
        .await;
    let id = call["id"].as_str().unwrap().to_owned();
    let ringing = wait_status(&srv, &id, &["RINGING"], Duration::from_secs(10)).await;
    assert_eq!(ringing["sip_status"], 180);
    let done = wait_status(
        &srv,
        &id,
        &["NO_ANSWER", "FAILED", "CANCELED"],
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(done["status"], "NO_ANSWER", "{done}");
    assert_eq!(done["failure_reason"], "ring_timeout");
    assert_eq!(done["sip_status"], 487);
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    assert_eq!(run.count_requests("CANCEL"), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_while_ringing_sends_cancel() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    let peer = Sipp::uas("ring", &ring_until_cancel(), Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    wait_status(&srv, &id, &["RINGING"], Duration::from_secs(10)).await;
    let r = srv.post(&format!("/calls/{id}/end"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["previous_status"], "RINGING", "{}", r.body);
    let done = wait_status(
        &srv,
        &id,
        &["CANCELED", "FAILED", "NO_ANSWER"],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(done["status"], "CANCELED", "{done}");
    assert!(done["failure_reason"].is_null(), "{done}");
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    assert_eq!(run.count_requests("CANCEL"), 1);
    assert_eq!(
        history(&srv, &id).await,
        ["QUEUED", "DIALING", "RINGING", "CANCELED"]
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_while_dialing_sends_cancel_after_the_provisional() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    // The trunk only says 100 Trying: the call stays DIALING until ended.
    let scenario = sc::doc(
        "trying",
        &[
            sc::recv_invite(),
            sc::respond(100, "Trying", "", false),
            sc::recv("CANCEL"),
            sc::ok_in_dialog(),
            sc::respond(487, "Request Terminated", "", false),
            sc::recv("ACK"),
        ]
        .concat(),
    );
    let peer = Sipp::uas("trying", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    // The INVITE has reached the trunk once SIPp logged it.
    eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(peer.path("messages.log"))
            .is_ok_and(|m| m.contains("SIP/2.0 100 Trying"))
            .then_some(())
    })
    .await;
    assert_eq!(
        srv.get(&format!("/calls/{id}")).await.body["status"],
        "DIALING"
    );
    let r = srv.post(&format!("/calls/{id}/end"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["previous_status"], "DIALING", "{}", r.body);
    let done = wait_status(&srv, &id, &["CANCELED", "FAILED"], Duration::from_secs(10)).await;
    assert_eq!(done["status"], "CANCELED", "{done}");
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    assert_eq!(run.count_requests("CANCEL"), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_end_bye_completes_the_call() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    let scenario = sc::doc(
        "far-bye",
        &[
            sc::recv_invite_for_bye(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::pause(1500),
            sc::uas_bye(),
            sc::recv_response(200, false),
        ]
        .concat(),
    );
    let peer = Sipp::uas("far-bye", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    let done = wait_status(&srv, &id, &["COMPLETED", "FAILED"], Duration::from_secs(15)).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let d = done["duration_seconds"].as_f64().expect("duration");
    assert!((1.0..5.0).contains(&d), "answered for about 1.5 s: {d}");
    // Recorded: stored by the worker once the call ended.
    assert!(
        matches!(
            done["recording_status"].as_str(),
            Some("PROCESSING" | "AVAILABLE")
        ),
        "{done}"
    );
    common::recording::wait_available(&srv, id.parse().expect("call id"), Duration::from_secs(30))
        .await;
    peer.finish(Duration::from_secs(10)).await.assert_success();
    assert_eq!(
        history(&srv, &id).await,
        ["QUEUED", "DIALING", "IN_PROGRESS", "COMPLETED"]
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_hangs_up_with_bye() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    let peer = Sipp::uas("answer", &answer_then_wait_for_bye(), Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv
        .create_call(json!({"to_number": TO, "max_duration_seconds": 10}))
        .await;
    let id = call["id"].as_str().unwrap().to_owned();
    let done = wait_status(&srv, &id, &["COMPLETED", "FAILED"], Duration::from_secs(25)).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["failure_reason"], "max_duration_reached", "{done}");
    let d = done["duration_seconds"].as_f64().expect("duration");
    assert!((9.5..12.0).contains(&d), "{d}");
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    assert_eq!(run.count_requests("BYE"), 1);
    srv.stop().await;
}

/// A trunk that challenges the INVITE (401 or 407), then answers the retry
/// with 200 when `accept`, or challenges it again. SIPp checks MD5
/// credentials in `Authorization` itself (`verifyauth`); its check reads
/// no `Proxy-Authorization` and knows no SHA-256, so for those the test
/// checks the digest ([`digest_is_valid`]).
fn challenge(code: u16, algorithm: &str, accept: bool) -> String {
    let (reason, header) = match code {
        401 => ("Unauthorized", "WWW-Authenticate"),
        _ => ("Proxy Authentication Required", "Proxy-Authenticate"),
    };
    let challenge = format!(
        "{header}: Digest realm=\"sipp.test\", nonce=\"n[pid]x[call_number]\", algorithm={algorithm}, qop=\"auth\"\n"
    );
    let sipp_verifies = code == 401 && algorithm == "MD5";
    let retry = if sipp_verifies {
        "<recv request=\"INVITE\" crlf=\"true\"><action>\n\
         <ereg regexp=\"[0-9]+\" search_in=\"hdr\" header=\"CSeq:\" assign_to=\"inv_cseq\"/>\n\
         <verifyauth assign_to=\"authvalid\" username=\"alice\" password=\"secret\"/>\n\
         </action></recv>\n\
         <nop hide=\"true\" test=\"authvalid\" next=\"good\"/>\n\
         <nop><action><log message=\"AUTH_FAIL\"/></action></nop>\n"
            .to_owned()
    } else {
        let next = if accept { "<nop next=\"good\"/>\n" } else { "" };
        format!("{}{next}", sc::recv_invite())
    };
    sc::doc(
        "challenge",
        &[
            sc::recv_invite(),
            sc::respond(code, reason, &challenge, false),
            sc::recv("ACK"),
            retry,
            sc::respond(code, reason, &challenge, false),
            "<recv request=\"ACK\" next=\"done\"/>\n<label id=\"good\"/>\n<nop><action><log message=\"AUTH_OK\"/></action></nop>\n".to_owned(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
            "<label id=\"done\"/>\n".to_owned(),
        ]
        .concat(),
    )
}

/// Checks the digest response (RFC 7616, qop=auth) in the retried INVITE
/// that SIPp received, against `password`.
fn digest_is_valid(messages: &str, header: &str, password: &str) -> bool {
    use md5::Digest as _;
    let line = messages
        .lines()
        .find(|l| l.starts_with(&format!("{header}:")))
        .unwrap_or_else(|| panic!("no {header} in:\n{messages}"));
    let param = |name: &str| -> String {
        let at = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{name} in {line}"))
            + name.len()
            + 1;
        let rest = &line[at..];
        match rest.strip_prefix('"') {
            Some(q) => q[..q.find('"').expect("closing quote")].to_owned(),
            None => rest.split([',', ' ']).next().unwrap_or_default().to_owned(),
        }
    };
    let hash = |s: String| -> String {
        if param("algorithm").eq_ignore_ascii_case("SHA-256") {
            hex::encode(sha2::Sha256::digest(s.as_bytes()))
        } else {
            hex::encode(md5::Md5::digest(s.as_bytes()))
        }
    };
    let ha1 = hash(format!(
        "{}:{}:{password}",
        param("username"),
        param("realm")
    ));
    let ha2 = hash(format!("INVITE:{}", param("uri")));
    let expected = hash(format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        param("nonce"),
        param("nc"),
        param("cnonce"),
        param("qop")
    ));
    expected == param("response")
}

async fn digest_auth(code: u16, algorithm: &str) {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    for (i, (password, answered)) in [("secret", true), ("wrong", false)].into_iter().enumerate() {
        let peer = Sipp::uas(
            "challenge",
            &challenge(code, algorithm, answered),
            Transport::Udp,
            1,
        );
        let number = format!("+1555000{:04}", 3000 + i);
        trunk_with_number(
            &srv,
            &peer,
            Transport::Udp,
            json!({"username": "alice", "password": password}),
            &number,
        )
        .await;
        let call = srv
            .create_call(json!({"to_number": TO, "from_number": number}))
            .await;
        let id = call["id"].as_str().unwrap().to_owned();
        let c = wait_status(
            &srv,
            &id,
            &["IN_PROGRESS", "FAILED"],
            Duration::from_secs(20),
        )
        .await;
        if answered {
            assert_eq!(c["status"], "IN_PROGRESS", "{code} {algorithm}: {c}");
            srv.post(&format!("/calls/{id}/end"), json!({})).await;
            wait_status(&srv, &id, &["COMPLETED"], Duration::from_secs(10)).await;
        } else {
            assert_eq!(c["status"], "FAILED", "{c}");
            assert_eq!(c["failure_reason"], "authentication_failed", "{c}");
            assert_eq!(c["sip_status"], code, "{c}");
        }
        let run = peer.finish(Duration::from_secs(10)).await;
        run.assert_success();
        if code == 401 && algorithm == "MD5" {
            let verdict = if answered { "AUTH_OK" } else { "AUTH_FAIL" };
            assert!(
                run.log.contains(verdict),
                "{verdict} expected in:\n{}",
                run.log
            );
        }
        let header = if code == 401 {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        assert!(
            digest_is_valid(&run.messages, header, "secret") == answered,
            "{header} digest valid for alice/secret: {answered}"
        );
        let answer = run
            .messages
            .lines()
            .find(|l| l.starts_with(&format!("{header}:")))
            .unwrap_or_default();
        assert!(
            answer.contains(&format!("algorithm={algorithm}")),
            "answered with the challenged algorithm: {answer}"
        );
        assert_eq!(
            run.count_requests("INVITE"),
            2,
            "one challenge, one retry, no loop"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_401_md5_with_good_and_bad_password() {
    digest_auth(401, "MD5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_407_md5_with_good_and_bad_password() {
    digest_auth(407, "MD5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_401_sha256_with_good_and_bad_password() {
    digest_auth(401, "SHA-256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_407_sha256_with_good_and_bad_password() {
    digest_auth(407, "SHA-256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_max_concurrent_calls_holds_extra_calls_in_queued() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    let peer = Sipp::uas("answer", &answer_then_wait_for_bye(), Transport::Udp, 3);
    trunk_to(
        &srv,
        &peer,
        Transport::Udp,
        json!({"max_concurrent_calls": 2}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let c = srv.create_call(json!({"to_number": TO})).await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let statuses = || async {
        let mut s = Vec::new();
        for id in &ids {
            s.push(
                srv.get(&format!("/calls/{id}")).await.body["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        s
    };
    let live_count = |s: &[String]| s.iter().filter(|x| *x == "IN_PROGRESS").count();
    eventually(Duration::from_secs(15), || async {
        (live_count(&statuses().await) == 2).then_some(())
    })
    .await;
    // Several dispatch rounds later the third is still waiting, undialed.
    let rounds_later = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < rounds_later {
        let s = statuses().await;
        assert_eq!(live_count(&s), 2, "{s:?}");
        assert_eq!(s.iter().filter(|x| *x == "QUEUED").count(), 1, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let invites = std::fs::read_to_string(peer.path("messages.log")).unwrap_or_default();
    assert_eq!(
        invites
            .lines()
            .filter(|l| l.starts_with("INVITE sip:"))
            .count(),
        2,
        "never over the trunk's limit"
    );
    // A slot frees: the waiting call is dialed.
    let s = statuses().await;
    let first_live = ids[s.iter().position(|x| x == "IN_PROGRESS").unwrap()].clone();
    let waiting = ids[s.iter().position(|x| x == "QUEUED").unwrap()].clone();
    srv.post(&format!("/calls/{first_live}/end"), json!({}))
        .await;
    wait_status(&srv, &waiting, &["IN_PROGRESS"], Duration::from_secs(15)).await;
    for id in &ids {
        srv.post(&format!("/calls/{id}/end"), json!({})).await;
    }
    peer.finish(Duration::from_secs(20)).await.assert_success();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timer_we_refresh_when_the_trunk_asks() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    // The trunk asks for a 4 s session that we (the UAC) refresh: two
    // refreshing re-INVITEs, each carrying Session-Expires, then our BYE.
    let refresh = [
        "<recv request=\"INVITE\" crlf=\"true\"><action>\n\
         <ereg regexp=\"[0-9]+\" search_in=\"hdr\" header=\"Session-Expires:\" check_it=\"true\" assign_to=\"se\"/>\n\
         <log message=\"REFRESH [$se]\"/>\n</action></recv>\n"
            .to_owned(),
        sc::ok_in_dialog_with_sdp("Session-Expires: 4;refresher=uac\n"),
        sc::recv("ACK"),
    ]
    .concat();
    let scenario = sc::doc(
        "timer",
        &[
            sc::recv_invite(),
            sc::respond(
                200,
                "OK",
                "Session-Expires: 4;refresher=uac\nRequire: timer\n",
                true,
            ),
            sc::recv("ACK"),
            refresh.clone(),
            refresh,
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let peer = Sipp::uas("timer", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    wait_status(&srv, &id, &["IN_PROGRESS"], Duration::from_secs(10)).await;
    // Two refreshes, about 2 s apart.
    eventually(Duration::from_secs(10), || async {
        let log = std::fs::read_to_string(peer.path("scenario.log")).unwrap_or_default();
        (log.matches("REFRESH 4").count() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        srv.get(&format!("/calls/{id}")).await.body["status"],
        "IN_PROGRESS",
        "refreshed sessions stay up"
    );
    srv.post(&format!("/calls/{id}/end"), json!({})).await;
    let done = wait_status(&srv, &id, &["COMPLETED", "FAILED"], Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    peer.finish(Duration::from_secs(10)).await.assert_success();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timer_expires_when_the_trunk_does_not_refresh() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    // A 6 s session the trunk should refresh and does not: we hang up at
    // 6 - min(32, 6/3) = 4 s.
    let scenario = sc::doc(
        "timer",
        &[
            sc::recv_invite(),
            sc::respond(
                200,
                "OK",
                "Session-Expires: 6;refresher=uas\nRequire: timer\n",
                true,
            ),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let peer = Sipp::uas("timer", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    let done = wait_status(&srv, &id, &["COMPLETED", "FAILED"], Duration::from_secs(15)).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["failure_reason"], "session_expired", "{done}");
    let d = done["duration_seconds"].as_f64().expect("duration");
    assert!((3.5..5.5).contains(&d), "{d}");
    peer.finish(Duration::from_secs(10)).await.assert_success();
    srv.stop().await;
}

/// What the trunk expects back for its re-INVITE.
enum Expect<'a> {
    /// A 200 whose SDP matches the regular expression; logged under the label.
    Answer(&'a str, &'a str),
    /// A refusal with this code.
    Refused(u16),
}

/// A re-INVITE from the trunk (hold, codec change) carrying `sdp_media`,
/// then the ACK (a new transaction for a 2xx, the INVITE's own for an error).
fn uas_reinvite(cseq: u32, sdp_media: &str, expect: Expect) -> String {
    let dialog = "From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SY[call_number]\nTo: [$caller]\n[last_Call-ID:]\n";
    let (recv, branch) = match expect {
        Expect::Answer(regexp, label) => (
            format!(
                "<recv response=\"200\"><action>\n<ereg regexp=\"{regexp}\" search_in=\"body\" check_it=\"true\" assign_to=\"{label}\"/>\n<log message=\"{label} [${label}]\"/>\n</action></recv>\n"
            ),
            "[branch]",
        ),
        Expect::Refused(code) => (format!("<recv response=\"{code}\"/>\n"), "[branch-2]"),
    };
    format!(
        "<send retrans=\"500\"><![CDATA[\n\nINVITE [$contact_uri] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n{dialog}CSeq: {cseq} INVITE\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: [len]\n\nv=0\no=sipp 1 {cseq} IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\n{sdp_media}]]></send>\n\
         {recv}\
         <send><![CDATA[\n\nACK [$contact_uri] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}\n{dialog}CSeq: {cseq} ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvites_for_hold_and_codec_change_are_answered() {
    let Some(srv) = engine_server(Backend::Sqlite).await else {
        return;
    };
    let scenario = sc::doc(
        "reinvite",
        &[
            sc::recv_invite_for_bye(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            uas_reinvite(
                2,
                "m=audio [media_port] RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=sendonly\n",
                Expect::Answer("a=recvonly", "HOLD"),
            ),
            uas_reinvite(3, "m=audio [media_port] RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=sendrecv\n", Expect::Answer("RTP/AVP 8[^0-9]", "PCMA")),
            uas_reinvite(4, "m=audio [media_port] RTP/AVP 18\na=rtpmap:18 G729/8000\n", Expect::Refused(488)),
            "<nop><action><log message=\"REFUSED_G729\"/></action></nop>\n".to_owned(),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let peer = Sipp::uas("reinvite", &scenario, Transport::Udp, 1);
    trunk_to(&srv, &peer, Transport::Udp, json!({})).await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = call["id"].as_str().unwrap().to_owned();
    wait_status(&srv, &id, &["IN_PROGRESS"], Duration::from_secs(10)).await;
    eventually(Duration::from_secs(15), || async {
        let log = std::fs::read_to_string(peer.path("scenario.log")).unwrap_or_default();
        log.contains("REFUSED_G729").then_some(())
    })
    .await;
    assert_eq!(
        srv.get(&format!("/calls/{id}")).await.body["status"],
        "IN_PROGRESS",
        "a refused re-INVITE keeps the call"
    );
    srv.post(&format!("/calls/{id}/end"), json!({})).await;
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    assert!(
        run.log.contains("HOLD a=recvonly"),
        "hold answered recvonly:\n{}",
        run.log
    );
    assert!(
        run.log.contains("PCMA RTP/AVP 8"),
        "codec change answered with PCMA:\n{}",
        run.log
    );
    srv.stop().await;
}
